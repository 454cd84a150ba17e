-- The sync feed's horizon depends on Spean's own writers only (replaces the xid horizon of 0009).
-- 0009 served rows of transactions older than pg_snapshot_xmin, the oldest transaction running
-- anywhere on the server: a long transaction in another database, or on an unrelated table, held
-- every phone's sync back. Now each transaction that writes a feed row registers itself first:
--   1. it takes a shared advisory lock keyed by R, the last value sync_feed_ticket handed out
--      (visible to every session of this database in pg_locks, released when it commits or rolls
--      back);
--   2. only then it draws its ticket T > R, which orders its rows in the feed as (tx, seq).
-- A reader (sync_feed_horizon) draws a bound S, then reads the registered R: no ticket below
-- min(S, every R) can still appear, so serving rows below it never skips a late commit.
CREATE SEQUENCE sync_feed_ticket AS bigint;
SELECT setval('sync_feed_ticket', greatest(
    (SELECT max(tx::text::bigint) FROM record_entries),
    (SELECT max(tx::text::bigint) FROM patients),
    pg_snapshot_xmax(pg_current_snapshot())::text::bigint));  -- so every issued cursor stays valid

-- Ticket T of the calling transaction, registering it on first use. The advisory key is the
-- ticket plus a tag in the top 16 bits (0x5EA4), keeping it apart from Spean's other locks.
CREATE FUNCTION sync_feed_ticket() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    ticket bigint := nullif(current_setting('spean.sync_feed_ticket', true), '')::bigint;
BEGIN
    IF ticket IS NULL THEN
        -- Taken inside a savepoint that rolls back, the lock and the setting go back together.
        PERFORM pg_advisory_xact_lock_shared(
            (x'5EA4' :: bigint << 48) + coalesce(pg_sequence_last_value('sync_feed_ticket'), 0));
        ticket := nextval('sync_feed_ticket');
        PERFORM set_config('spean.sync_feed_ticket', ticket::text, true);
    END IF;
    RETURN ticket;
END $$;

-- Rows of tickets below this are all committed (or gone) and visible to any statement that
-- starts afterwards. Call it in its own statement, before the feed query, under READ COMMITTED.
CREATE FUNCTION sync_feed_horizon() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    bound bigint := nextval('sync_feed_ticket');  -- drawn before pg_locks is read
    oldest bigint;
BEGIN
    SELECT min(((l.classid::text::bigint << 32) | l.objid::text::bigint) - (x'5EA4' :: bigint << 48))
      INTO oldest
      FROM pg_locks l
     WHERE l.locktype = 'advisory' AND l.objsubid = 1
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND l.classid::text::bigint >> 16 = x'5EA4' :: bigint;
    RETURN least(bound, oldest);
END $$;

ALTER TABLE record_entries ALTER COLUMN tx DROP DEFAULT;
ALTER TABLE record_entries ALTER COLUMN tx TYPE bigint USING tx::text::bigint;
ALTER TABLE patients ALTER COLUMN tx TYPE bigint USING tx::text::bigint;

CREATE FUNCTION record_entries_feed_position() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.tx := sync_feed_ticket();
    RETURN NEW;
END $$;

CREATE TRIGGER record_entries_feed_position BEFORE INSERT ON record_entries
    FOR EACH ROW EXECUTE FUNCTION record_entries_feed_position();

CREATE OR REPLACE FUNCTION patients_feed_position() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.tx := sync_feed_ticket();
    NEW.change_seq := nextval(pg_get_serial_sequence('record_entries', 'seq'));
    RETURN NEW;
END $$;
