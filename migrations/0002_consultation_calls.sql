-- Video consultations: when the call started (the specialist admitted the patient side) and
-- ended, and how long it lasted. The appointment's status carries the state itself.
ALTER TABLE appointments
    ADD COLUMN call_started_at timestamptz,
    ADD COLUMN call_ended_at timestamptz,
    ADD COLUMN call_seconds integer CHECK (call_seconds >= 0);
