-- SMS ledger: every outbound SMS is a row written in the transaction of the change that causes
-- it, and sent after that commits by a sender loop that claims due rows (FOR UPDATE SKIP LOCKED
-- + a lease). The ledger records what was sent, to whom, how long, and what became of it.
CREATE TABLE sms_messages (
    id              uuid PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,   -- one row per message a change meant to send
    to_phone        text NOT NULL,
    template        text NOT NULL,
    language        text NOT NULL CHECK (language IN ('km', 'vi', 'fr', 'en')),
    body            text,                   -- wiped once settled when secret (sign-in codes)
    secret          boolean NOT NULL DEFAULT false,
    essential       boolean NOT NULL DEFAULT false,  -- sent even to a number that said STOP
    segments        integer NOT NULL CHECK (segments >= 1),
    encoding        text NOT NULL CHECK (encoding IN ('GSM-7', 'UCS-2')),
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'undelivered', 'failed', 'refused')),
    provider_id     text UNIQUE,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_until     timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sms_messages_due ON sms_messages (next_attempt_at) WHERE status IN ('queued', 'sending');
CREATE INDEX sms_messages_to ON sms_messages (to_phone, created_at);

-- STOP from a number: honoured for every non-essential message to it until START.
CREATE TABLE sms_opt_outs (
    phone        text PRIMARY KEY,
    opted_out_at timestamptz NOT NULL DEFAULT now()
);

-- Inbound messages processed, by Twilio's MessageSid: Twilio retries, a retry is ignored.
CREATE TABLE sms_inbound (
    message_sid text PRIMARY KEY CHECK (length(message_sid) BETWEEN 1 AND 64),
    from_phone  text NOT NULL,
    keyword     text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Diagnosis, drug or result detail goes by SMS only to a patient who chose it.
ALTER TABLE patients ADD COLUMN sms_details_opt_in boolean NOT NULL DEFAULT false;
