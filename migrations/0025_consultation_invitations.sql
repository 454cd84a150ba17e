-- Guests invited into a video consultation by an SMS link: a family member, an interpreter (with
-- the language they interpret), a second specialist. The link's token and the key of the browser
-- that opened it are kept as SHA-256 digests only: a copy of this table lets nobody join a call.
-- The link is good until the consultation's window closes (the appointment's end + 60 minutes,
-- computed from the appointment, so a rescheduled consultation moves it), or until revoked.
CREATE TABLE consultation_invitations (
    id             uuid PRIMARY KEY,
    appointment_id uuid NOT NULL REFERENCES appointments (id),
    role           text NOT NULL CHECK (role IN ('family_member', 'interpreter', 'specialist')),
    language       text CHECK (language ~ '^[a-z]{2,3}$'),
    locale         text NOT NULL CHECK (locale IN ('km', 'vi', 'fr', 'en')),
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    phone          text NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    token_hash     bytea NOT NULL UNIQUE,
    device_hash    bytea,
    sms_id         uuid REFERENCES sms_messages (id),
    invited_by     uuid NOT NULL REFERENCES users (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    opened_at      timestamptz,
    joined_at      timestamptz,
    revoked_at     timestamptz,
    revoked_by     uuid REFERENCES users (id),
    -- An interpreter says which language; nobody else has one.
    CHECK ((role = 'interpreter') = (language IS NOT NULL)),
    -- Opened means claimed by one browser (single use).
    CHECK ((opened_at IS NULL) = (device_hash IS NULL)),
    CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
CREATE INDEX consultation_invitations_appointment ON consultation_invitations (appointment_id, created_at);
-- One live invitation per phone and consultation: inviting a number again needs the first revoked.
CREATE UNIQUE INDEX consultation_invitations_live_phone
    ON consultation_invitations (appointment_id, phone) WHERE revoked_at IS NULL;
