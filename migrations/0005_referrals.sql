-- Referrals, closed loop: a health post refers a patient to a reference centre in its network;
-- the centre accepts (and books), answers with advice, or declines; the outcome goes back to the
-- referring facility and the patient through the outbox.
CREATE TABLE referrals (
    id               uuid PRIMARY KEY,
    patient_id       uuid NOT NULL REFERENCES patients (id),
    from_facility_id uuid NOT NULL REFERENCES facilities (id),
    to_facility_id   uuid NOT NULL REFERENCES facilities (id),
    specialty        text NOT NULL CHECK (length(specialty) BETWEEN 1 AND 100),
    urgency          text NOT NULL CHECK (urgency IN ('routine', 'urgent', 'emergency')),
    urgency_rank     smallint GENERATED ALWAYS AS (
                         CASE urgency WHEN 'emergency' THEN 0 WHEN 'urgent' THEN 1 ELSE 2 END) STORED,
    reason           text NOT NULL CHECK (length(reason) BETWEEN 1 AND 2000),
    observation_ids  uuid[] NOT NULL DEFAULT '{}',  -- record entries sent with the referral
    status           text NOT NULL CHECK (status IN ('requested', 'accepted', 'answered', 'declined', 'cancelled')),
    referred_by      uuid NOT NULL REFERENCES users (id),
    channel          text NOT NULL,
    triaged_by       uuid REFERENCES users (id),
    triaged_at       timestamptz,
    outcome_note     text,                           -- the advice, or the reason for declining
    appointment_id   uuid REFERENCES appointments (id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    version          integer NOT NULL DEFAULT 1
);
-- The triage queue: open referrals of a centre, most urgent first, then oldest first.
CREATE INDEX referrals_queue ON referrals (to_facility_id, urgency_rank, created_at) WHERE status = 'requested';
CREATE INDEX referrals_from ON referrals (from_facility_id, created_at);
CREATE INDEX referrals_patient ON referrals (patient_id);

CREATE TABLE referral_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    referral_id   uuid NOT NULL REFERENCES referrals (id),
    at            timestamptz NOT NULL DEFAULT now(),
    actor_user_id uuid REFERENCES users (id),
    from_status   text,
    to_status     text NOT NULL,
    note          text
);
CREATE INDEX referral_events_referral ON referral_events (referral_id, id);
