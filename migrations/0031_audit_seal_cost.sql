-- What each audit event costs twice (written, then sealed: migration 0006), cut where it is ours.
-- A sync page of 100 patients writes 100 events, and sealing them cost more PostgreSQL CPU than
-- serving the page (bench/RESULTS.md, h-sync).
--
-- 1. The append-only check (0006, 0022) called a PL/pgSQL function for every sealed row, only to
--    find the seal columns the one change. The same rule is now the trigger's WHEN condition,
--    evaluated in the executor without a function call; the function runs only to refuse. The
--    condition names the columns, so a column added later must be added here too:
--    tests/domain/audit/test_chain.py checks that every column but the seal's is named.
-- 2. Deletes keep a trigger of their own (a WHEN on UPDATE OR DELETE may not read NEW).
-- 3. audit_events_facility indexed every event, though most have no facility (a sync page's, a
--    patient's own reads): each such event paid an index entry when written and another when
--    sealed (sealing writes a new row version). Readers ask `facility_id = $1`, which a partial
--    index on the rows with a facility serves as well.
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit events are never deleted' USING ERRCODE = 'restrict_violation';
    END IF;
    RAISE EXCEPTION 'audit events are append-only' USING ERRCODE = 'restrict_violation';
END $$;

DROP TRIGGER audit_events_append_only ON audit_events;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events FOR EACH ROW
    WHEN (OLD.seal_seq IS NOT NULL
          OR (OLD.id, OLD.at, OLD.actor_user_id, OLD.actor_role, OLD.facility_id, OLD.patient_id, OLD.action,
              OLD.resource_type, OLD.resource_id, OLD.purpose, OLD.channel, OLD.outcome, OLD.request_id)
             IS DISTINCT FROM
             (NEW.id, NEW.at, NEW.actor_user_id, NEW.actor_role, NEW.facility_id, NEW.patient_id, NEW.action,
              NEW.resource_type, NEW.resource_id, NEW.purpose, NEW.channel, NEW.outcome, NEW.request_id))
    EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_never_deleted BEFORE DELETE ON audit_events FOR EACH ROW
    EXECUTE FUNCTION audit_events_append_only();

CREATE INDEX audit_events_facility_set ON audit_events (facility_id, at) WHERE facility_id IS NOT NULL;
DROP INDEX audit_events_facility;
