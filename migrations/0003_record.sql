-- The shared patient record: append-only, versioned entries with provenance.
--
-- One row per VERSION of an entry. (id, version) is the key; a correction inserts version n+1
-- and flips version n to 'superseded'; "entered in error" is a new version with that status.
-- Exactly one row per id is not superseded (the head). Rows are never deleted, and nothing but
-- that one status flip may ever be updated: a trigger enforces both, so history survives even a
-- buggy caller.
CREATE TABLE record_entries (
    id             uuid NOT NULL,
    version        integer NOT NULL CHECK (version >= 1),
    patient_id     uuid NOT NULL REFERENCES patients (id),
    kind           text NOT NULL CHECK (kind IN ('encounter', 'observation', 'condition', 'prescription', 'note')),
    status         text NOT NULL CHECK (status IN ('current', 'superseded', 'entered_in_error')),
    encounter_id   uuid,                               -- the entry's encounter (NULL for an encounter)
    appointment_id uuid REFERENCES appointments (id),  -- set on encounters of a consultation
    code           text,                               -- LOINC / ICD-10 code, for search
    body           jsonb NOT NULL,
    effective_at   timestamptz NOT NULL,               -- when it was true clinically
    -- provenance: who, from which facility, when, by which channel, and why (corrections)
    author_user_id uuid NOT NULL REFERENCES users (id),
    author_role    text NOT NULL,
    facility_id    uuid REFERENCES facilities (id),
    channel        text NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    reason         text,
    -- change feed position (offline sync, FHIR _history): every version gets a new one
    seq            bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (id, version)
);
CREATE UNIQUE INDEX record_entries_head ON record_entries (id) WHERE status <> 'superseded';
CREATE INDEX record_entries_patient ON record_entries (patient_id, kind, effective_at) WHERE status <> 'superseded';
CREATE INDEX record_entries_encounter ON record_entries (encounter_id) WHERE status <> 'superseded';
CREATE UNIQUE INDEX record_entries_seq ON record_entries (seq);
-- At most one encounter per consultation.
CREATE UNIQUE INDEX record_entries_one_encounter ON record_entries (appointment_id)
    WHERE kind = 'encounter' AND version = 1;

CREATE FUNCTION record_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'record entries are never deleted' USING ERRCODE = 'restrict_violation';
    END IF;
    IF NEW.status <> 'superseded' OR OLD.status = 'superseded'
       OR (to_jsonb(NEW) - 'status') <> (to_jsonb(OLD) - 'status') THEN
        RAISE EXCEPTION 'record entries are append-only: only a head may be marked superseded'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER record_entries_append_only BEFORE UPDATE OR DELETE ON record_entries
    FOR EACH ROW EXECUTE FUNCTION record_entries_append_only();
