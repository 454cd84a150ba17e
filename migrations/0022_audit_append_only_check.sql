-- The append-only check of audit events (0006) compared each updated row as jsonb: two to_jsonb
-- conversions and six key removals per row. The only updates are the sealer's, one per audit event
-- (every audited read and write), and the check was most of their cost (~150 µs of ~180 µs per
-- sealed row on the 2-core bench machine; bench/RESULTS.md). The same rule, compared as rows:
-- the updated row, with its seal columns put back as they were, must equal the old one, column for
-- column, whatever columns the table gains later (composite values compare NULLs as equal).
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unsealed audit_events;
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit events are never deleted' USING ERRCODE = 'restrict_violation';
    END IF;
    unsealed := NEW;
    unsealed.seal_seq := OLD.seal_seq;
    unsealed.prev_id := OLD.prev_id;
    unsealed.hash := OLD.hash;
    IF OLD.seal_seq IS NOT NULL OR unsealed IS DISTINCT FROM OLD THEN
        RAISE EXCEPTION 'audit events are append-only' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
