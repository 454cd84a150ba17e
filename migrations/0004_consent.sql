-- Consent to read the shared record, and emergency ("break-glass") access.
--
-- A consent lets the referral network of a facility, one facility, or one practitioner read the
-- patient's record. Revoking sets revoked_at (the row stays: who could read when is history).
CREATE TABLE consents (
    id              uuid PRIMARY KEY,
    patient_id      uuid NOT NULL REFERENCES patients (id),
    scope           text NOT NULL CHECK (scope IN ('network', 'facility', 'practitioner')),
    facility_id     uuid REFERENCES facilities (id),      -- network: whose network; facility: which one
    practitioner_id uuid REFERENCES practitioners (id),
    method          text NOT NULL CHECK (method IN ('app', 'sms', 'ussd', 'chw_witness')),
    witness_name    text CHECK (length(witness_name) BETWEEN 1 AND 200),
    recorded_by     uuid NOT NULL REFERENCES users (id),
    granted_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz,
    revoked_at      timestamptz,
    revoked_by      uuid REFERENCES users (id),
    revoke_reason   text,
    CHECK ((scope = 'practitioner') = (practitioner_id IS NOT NULL)),
    CHECK ((scope = 'practitioner') OR (facility_id IS NOT NULL)),
    CHECK (method <> 'chw_witness' OR witness_name IS NOT NULL)
);
CREATE INDEX consents_patient_active ON consents (patient_id) WHERE revoked_at IS NULL;

-- Time-limited emergency access of one user to one patient's record, with the reason given.
CREATE TABLE break_glass_grants (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id),
    patient_id  uuid NOT NULL REFERENCES patients (id),
    reason      text NOT NULL CHECK (length(reason) BETWEEN 10 AND 2000),
    facility_id uuid REFERENCES facilities (id),
    started_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    CHECK (expires_at > started_at)
);
CREATE INDEX break_glass_grants_user_patient ON break_glass_grants (user_id, patient_id, expires_at);

CREATE INDEX audit_events_patient_id ON audit_events (patient_id, id);
