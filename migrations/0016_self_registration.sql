-- Patients who registered themselves from their own phone (by SMS): what they said that the
-- record does not hold (their village), kept for the CHW of their health post to verify in
-- person. Unverified until a CHW says so; the patient's record itself is an ordinary one.
CREATE TABLE patient_self_registrations (
    patient_id    uuid PRIMARY KEY REFERENCES patients (id),
    channel       text NOT NULL CHECK (channel IN ('app', 'sms', 'ussd')),
    village       text NOT NULL CHECK (length(village) BETWEEN 1 AND 200),
    registered_at timestamptz NOT NULL DEFAULT now(),
    verified_by   uuid REFERENCES users (id),
    verified_at   timestamptz,
    CHECK ((verified_by IS NULL) = (verified_at IS NULL))
);
CREATE INDEX patient_self_registrations_pending ON patient_self_registrations (registered_at)
    WHERE verified_at IS NULL;
