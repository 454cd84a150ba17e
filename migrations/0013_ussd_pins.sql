-- The PIN a patient sets on USSD to read their results summary: an argon2 hash, a count of wrong
-- tries and a lock, kept in the database so a new USSD session does not reset the count.
CREATE TABLE ussd_pins (
    patient_id      uuid PRIMARY KEY REFERENCES patients (id),
    pin_hash        text NOT NULL,
    failed_attempts integer NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    locked_until    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
