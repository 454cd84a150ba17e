-- Notifications, second part: quiet hours per facility, and a wake-up call for the workers.
--
-- Quiet hours are wall-clock times in the facility's own time zone (facilities.timezone): from
-- quiet_start to quiet_end, crossing midnight when start > end; start = end means none. A
-- non-urgent message that falls due inside them is held until they end (notifications/quiet.py).

ALTER TABLE facilities
    ADD COLUMN quiet_start time NOT NULL DEFAULT '21:00',
    ADD COLUMN quiet_end   time NOT NULL DEFAULT '07:00';

-- Every transaction that writes outbox rows wakes the listening workers when it commits
-- (NOTIFY is transactional: nothing is heard of a rollback). One notification per statement,
-- and PostgreSQL folds identical ones of a transaction into one, so a busy commit costs one.
-- Workers that cannot LISTEN (through PgBouncer in transaction mode) still poll.
CREATE FUNCTION outbox_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('spean_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_wake AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_wake();
