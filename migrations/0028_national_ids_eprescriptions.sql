-- National identifiers and electronic prescriptions (issue 11).
--
-- patient_identifiers (0001) already keys identifiers by (system, value): two patients can never
-- hold the same national ID. Values of configured national systems are now stored normalised
-- (domain.identifiers); the index below serves the probable-duplicate lookup (name, birth, phone).
CREATE INDEX patients_birth ON patients (birth_date, birth_year);

-- A practitioner's licence to practise (e.g. to prescribe), with the register that issued it.
CREATE TABLE practitioner_licences (
    practitioner_id uuid PRIMARY KEY REFERENCES practitioners (id),
    system          text NOT NULL CHECK (length(system) BETWEEN 1 AND 200),
    number          text NOT NULL CHECK (length(number) BETWEEN 1 AND 64),
    updated_by      uuid NOT NULL REFERENCES users (id),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT practitioner_licences_unique UNIQUE (system, number)
);

-- A facility's code in the national register of health facilities.
CREATE TABLE facility_codes (
    facility_id uuid PRIMARY KEY REFERENCES facilities (id),
    system      text NOT NULL CHECK (length(system) BETWEEN 1 AND 200),
    code        text NOT NULL CHECK (length(code) BETWEEN 1 AND 64),
    updated_by  uuid NOT NULL REFERENCES users (id),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT facility_codes_unique UNIQUE (system, code)
);

-- Each prescription (a record entry of kind 'prescription') gets one code at creation: 15 random
-- Crockford base-32 characters and a check character (domain.prescriptions.codes). The licence
-- and facility code are copied as they were when it was written: a prescription keeps the
-- prescriber's licence even if it is later renewed under another number.
CREATE TABLE prescriptions (
    code             text PRIMARY KEY CHECK (code ~ '^[0-9A-HJKMNP-TV-Z]{16}$'),
    entry_id         uuid NOT NULL UNIQUE,
    patient_id       uuid NOT NULL REFERENCES patients (id),
    prescriber_id    uuid NOT NULL REFERENCES users (id),
    facility_id      uuid REFERENCES facilities (id),
    licence_system   text,
    licence_number   text,
    facility_system  text,
    facility_code    text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX prescriptions_patient ON prescriptions (patient_id);

-- The national-prescription export's own outbox: one row per version of a prescription to send,
-- written in the transaction that writes the version, sent (at least once) by the exporter loop.
CREATE TABLE prescription_exports (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code          text NOT NULL REFERENCES prescriptions (code),
    entry_id      uuid NOT NULL,
    version       integer NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    available_at  timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    sent_at       timestamptz,
    failed_at     timestamptz,
    UNIQUE (entry_id, version)
);
CREATE INDEX prescription_exports_pending ON prescription_exports (available_at)
    WHERE sent_at IS NULL AND failed_at IS NULL;
