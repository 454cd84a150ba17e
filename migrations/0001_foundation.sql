-- Foundation: identity, facilities, practitioners, patients, availability, appointments,
-- idempotency, audit trail and the outbox. All instants are timestamptz (UTC on the wire);
-- local wall-clock rules are stored as `time` next to the facility's IANA zone.

CREATE EXTENSION IF NOT EXISTS btree_gist;
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE facilities (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind        text NOT NULL CHECK (kind IN ('health_post', 'health_centre', 'district_hospital', 'reference_centre')),
    timezone    text NOT NULL,
    country     text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    province    text,
    latitude    double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude   double precision CHECK (longitude BETWEEN -180 AND 180),
    phone       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The referral network: which reference centres a facility may refer to.
CREATE TABLE referral_links (
    from_facility_id uuid NOT NULL REFERENCES facilities (id),
    to_facility_id   uuid NOT NULL REFERENCES facilities (id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (from_facility_id, to_facility_id),
    CHECK (from_facility_id <> to_facility_id)
);

CREATE TABLE users (
    id              uuid PRIMARY KEY,
    phone           text NOT NULL UNIQUE,
    display_name    text,
    is_system_admin boolean NOT NULL DEFAULT false,
    disabled_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE memberships (
    user_id     uuid NOT NULL REFERENCES users (id),
    facility_id uuid NOT NULL REFERENCES facilities (id),
    role        text NOT NULL CHECK (role IN ('chw', 'clinician', 'specialist', 'facility_admin')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, facility_id, role)
);
CREATE INDEX memberships_facility ON memberships (facility_id, role);

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id),
    family_id   uuid NOT NULL,
    token_hash  bytea NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE practitioners (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL UNIQUE REFERENCES users (id),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    specialties   text[] NOT NULL DEFAULT '{}',
    languages     text[] NOT NULL DEFAULT '{}',
    qualification text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX practitioners_specialties ON practitioners USING gin (specialties);

CREATE TABLE patients (
    id                 uuid PRIMARY KEY,
    names              jsonb NOT NULL,
    search_text        text NOT NULL,   -- lower-cased names in every script, for trigram search
    birth_date         date,
    birth_year         integer CHECK (birth_year BETWEEN 1880 AND 2200),
    sex                text CHECK (sex IN ('female', 'male', 'other', 'unknown')),
    phone              text,
    preferred_language text NOT NULL DEFAULT 'km' CHECK (preferred_language IN ('km', 'vi', 'fr', 'en')),
    preferred_channel  text NOT NULL DEFAULT 'sms' CHECK (preferred_channel IN ('app', 'sms', 'ussd')),
    home_facility_id   uuid NOT NULL REFERENCES facilities (id),
    created_by         uuid REFERENCES users (id),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    version            integer NOT NULL DEFAULT 1
);
CREATE INDEX patients_search ON patients USING gin (search_text gin_trgm_ops);
CREATE INDEX patients_phone ON patients (phone);
CREATE INDEX patients_home ON patients (home_facility_id);

CREATE TABLE patient_identifiers (
    patient_id uuid NOT NULL REFERENCES patients (id),
    system     text NOT NULL CHECK (length(system) BETWEEN 1 AND 200),
    value      text NOT NULL CHECK (length(value) BETWEEN 1 AND 100),
    PRIMARY KEY (system, value)
);
CREATE INDEX patient_identifiers_patient ON patient_identifiers (patient_id);

-- Which login may act for which patient (one shared family phone can hold several).
CREATE TABLE patient_accounts (
    user_id    uuid NOT NULL REFERENCES users (id),
    patient_id uuid NOT NULL REFERENCES patients (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, patient_id)
);
CREATE INDEX patient_accounts_patient ON patient_accounts (patient_id);

-- Weekly availability in the facility's local time; ISO weekday 1 = Monday.
CREATE TABLE availability_rules (
    id              uuid PRIMARY KEY,
    practitioner_id uuid NOT NULL REFERENCES practitioners (id),
    facility_id     uuid NOT NULL REFERENCES facilities (id),
    weekday         smallint NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    start_local     time NOT NULL,
    end_local       time NOT NULL,
    slot_minutes    integer NOT NULL CHECK (slot_minutes BETWEEN 5 AND 480),
    modes           text[] NOT NULL DEFAULT '{video,audio}',
    valid_from      date NOT NULL,
    valid_until     date,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (end_local > start_local),
    CHECK (valid_until IS NULL OR valid_until >= valid_from)
);
CREATE INDEX availability_rules_practitioner ON availability_rules (practitioner_id);
CREATE INDEX availability_rules_facility ON availability_rules (facility_id);

-- Leave of one practitioner, or a holiday closing a whole facility.
CREATE TABLE availability_exceptions (
    id              uuid PRIMARY KEY,
    practitioner_id uuid REFERENCES practitioners (id),
    facility_id     uuid REFERENCES facilities (id),
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    reason          text,
    created_by      uuid REFERENCES users (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    CHECK ((practitioner_id IS NULL) <> (facility_id IS NULL))
);
CREATE INDEX availability_exceptions_practitioner ON availability_exceptions (practitioner_id, starts_at);
CREATE INDEX availability_exceptions_facility ON availability_exceptions (facility_id, starts_at);

CREATE TABLE appointments (
    id              uuid PRIMARY KEY,
    patient_id      uuid NOT NULL REFERENCES patients (id),
    practitioner_id uuid NOT NULL REFERENCES practitioners (id),
    facility_id     uuid NOT NULL REFERENCES facilities (id),
    start_at        timestamptz NOT NULL,
    end_at          timestamptz NOT NULL,
    status          text NOT NULL CHECK (status IN ('booked', 'checked_in', 'in_progress', 'completed', 'cancelled', 'no_show')),
    mode            text NOT NULL CHECK (mode IN ('video', 'audio', 'async')),
    reason          text,
    booked_by       uuid NOT NULL REFERENCES users (id),
    channel         text NOT NULL CHECK (channel IN ('app', 'web', 'sms', 'ussd', 'api')),
    cancel_reason   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    version         integer NOT NULL DEFAULT 1,
    CHECK (end_at > start_at),
    -- The database, not the application, guarantees that a practitioner is never double-booked
    -- and that a patient is never in two consultations at once, whatever the concurrency.
    CONSTRAINT appointments_practitioner_no_overlap EXCLUDE USING gist (
        practitioner_id WITH =, tstzrange(start_at, end_at) WITH &&
    ) WHERE (status IN ('booked', 'checked_in', 'in_progress')),
    CONSTRAINT appointments_patient_no_overlap EXCLUDE USING gist (
        patient_id WITH =, tstzrange(start_at, end_at) WITH &&
    ) WHERE (status IN ('booked', 'checked_in', 'in_progress'))
);
CREATE INDEX appointments_practitioner_start ON appointments (practitioner_id, start_at);
CREATE INDEX appointments_patient_start ON appointments (patient_id, start_at);
CREATE INDEX appointments_facility_start ON appointments (facility_id, start_at);

-- Every state change and reschedule, so history is never overwritten.
CREATE TABLE appointment_events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    appointment_id uuid NOT NULL REFERENCES appointments (id),
    at             timestamptz NOT NULL DEFAULT now(),
    actor_user_id  uuid REFERENCES users (id),
    action         text NOT NULL,
    from_status    text,
    to_status      text NOT NULL,
    start_at       timestamptz NOT NULL,
    end_at         timestamptz NOT NULL,
    reason         text
);
CREATE INDEX appointment_events_appointment ON appointment_events (appointment_id, id);

CREATE TABLE idempotency_keys (
    principal     text NOT NULL,
    key           text NOT NULL,
    fingerprint   bytea NOT NULL,
    status_code   integer,
    headers       jsonb,
    body          bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

-- Who did what to which patient's data, appended in the transaction of the act itself.
CREATE TABLE audit_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    actor_user_id uuid,
    actor_role    text,
    facility_id   uuid,
    patient_id    uuid,
    action        text NOT NULL,
    resource_type text NOT NULL,
    resource_id   text,
    purpose       text,
    channel       text NOT NULL,
    outcome       text NOT NULL,
    request_id    text
);
CREATE INDEX audit_events_patient ON audit_events (patient_id, at);
CREATE INDEX audit_events_facility ON audit_events (facility_id, at);

-- Transactional outbox: events written with the change they announce, delivered later
-- (push, SMS) by a worker; nothing leaves the process before the change commits.
CREATE TABLE outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic        text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    available_at timestamptz NOT NULL DEFAULT now(),
    attempts     integer NOT NULL DEFAULT 0,
    processed_at timestamptz
);
CREATE INDEX outbox_pending ON outbox (available_at) WHERE processed_at IS NULL;
