-- Tamper-evident audit trail. Writers keep appending rows as before (no lock, no hash): on the
-- booking path an audit row must cost one INSERT. A sealer (spean admin seal-audit, verify-audit,
-- and each server worker periodically) links committed unsealed rows into a hash chain:
--   seal_seq  1, 2, 3, ... with no gaps (the row's position in the chain)
--   prev_id   id of the row sealed just before (identity gaps from rolled-back inserts are
--             therefore not deletions: the chain names its members explicitly)
--   hash      sha256(previous hash || canonical encoding of the row, seal_seq and prev_id)
-- The head (last seq, last hash) is kept in audit_chain_head, so removing the newest sealed rows
-- is caught too.
ALTER TABLE audit_events
    ADD COLUMN seal_seq bigint,
    ADD COLUMN prev_id  bigint,
    ADD COLUMN hash     bytea;
-- Partial: an unsealed insert (the hot path) pays no entry in this index.
CREATE UNIQUE INDEX audit_events_seal_seq ON audit_events (seal_seq) WHERE seal_seq IS NOT NULL;
CREATE INDEX audit_events_unsealed ON audit_events (id) WHERE seal_seq IS NULL;

CREATE TABLE audit_chain_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_seq  bigint NOT NULL,
    last_id   bigint,
    last_hash bytea NOT NULL,
    sealed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO audit_chain_head (last_seq, last_id, last_hash) VALUES (0, NULL, '\x0000000000000000000000000000000000000000000000000000000000000000');

-- Append-only in the database too: no deletes, and the only update is sealing an unsealed row.
-- (A superuser can bypass triggers; the hash chain is what catches that.)
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit events are never deleted' USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.seal_seq IS NOT NULL
       OR (to_jsonb(NEW) - 'seal_seq' - 'prev_id' - 'hash') <> (to_jsonb(OLD) - 'seal_seq' - 'prev_id' - 'hash') THEN
        RAISE EXCEPTION 'audit events are append-only' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
