-- Notifications: the devices people receive pushes on, and every message the worker turns an
-- outbox event into (one row per person and message, its idempotency key unique), with its
-- delivery state. The worker claims rows with FOR UPDATE SKIP LOCKED and a lease
-- (claimed_until): a dead worker's claims are taken back once the lease has passed.

CREATE TABLE devices (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users (id),
    token        text NOT NULL UNIQUE CHECK (length(token) BETWEEN 1 AND 4096),
    platform     text NOT NULL CHECK (platform IN ('android', 'ios', 'web')),
    app_version  text CHECK (length(app_version) <= 64),
    language     text CHECK (language IN ('km', 'vi', 'fr', 'en')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz,          -- FCM said the token is dead, or its owner removed it
    retired_why  text
);
CREATE INDEX devices_live ON devices (user_id) WHERE retired_at IS NULL;

CREATE TABLE notifications (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    key            text NOT NULL UNIQUE,  -- event + message + recipient: planned once, sent once
    outbox_id      bigint,
    kind           text NOT NULL,
    priority       text NOT NULL CHECK (priority IN ('high', 'normal', 'silent')),
    user_id        uuid REFERENCES users (id),  -- the login it is for (NULL: a patient without one)
    patient_id     uuid REFERENCES patients (id),
    appointment_id uuid REFERENCES appointments (id),
    phone          text,                  -- E.164, for the SMS fallback
    language       text NOT NULL,
    title          text NOT NULL,
    body           text NOT NULL,
    data           jsonb NOT NULL DEFAULT '{}',
    channel        text NOT NULL CHECK (channel IN ('push', 'sms')),
    state          text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed', 'cancelled')),
    attempts       integer NOT NULL DEFAULT 0,
    available_at   timestamptz NOT NULL DEFAULT now(),
    claimed_by     uuid,
    claimed_until  timestamptz,
    last_error     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_due ON notifications (available_at) WHERE state = 'pending';
CREATE INDEX notifications_user ON notifications (user_id, created_at DESC);
CREATE INDEX notifications_patient ON notifications (patient_id, created_at DESC);
CREATE INDEX notifications_appointment ON notifications (appointment_id) WHERE state = 'pending';
CREATE INDEX notifications_failed ON notifications (updated_at DESC) WHERE state = 'failed';
