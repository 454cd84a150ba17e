-- Wake the outbox workers only when one of them sleeps.
--
-- 0015 has every transaction that writes outbox rows NOTIFY at its commit. PostgreSQL makes
-- committing transactions that NOTIFY take one lock in turn, cluster-wide, held through the
-- commit's WAL flush: they cannot share a flush (group commit), so they commit one after
-- another. On the 2-core machine pgbench's 32 clients committing one insert each did
-- 1,717 transactions/s without a NOTIFY and 500/s with one (bench/RESULTS.md): every booking,
-- cancellation and referral writes an outbox row, so that lock bounded all of them together.
--
-- Under load the workers are busy anyway (they loop while events keep coming) and a NOTIFY
-- wakes nobody. So a listening worker says when it goes to sleep, until when, and takes it back
-- when it wakes (notifications.deliver); a commit notifies only while one sleeps. A worker that
-- died leaves a row whose `until` passes within one poll interval. Delivery never depended on
-- NOTIFY (workers poll, notifications.wake): a commit that raced a worker falling asleep is
-- found by the worker's own look at the outbox after saying so, or at its next poll.
--
-- UNLOGGED: the flags are worth nothing after a crash (empty: commits do not notify until a
-- worker sleeps again, and polls meanwhile), and writing them costs no WAL flush.
CREATE UNLOGGED TABLE outbox_sleepers (
    worker uuid PRIMARY KEY,
    until  timestamptz NOT NULL
);

CREATE OR REPLACE FUNCTION outbox_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM outbox_sleepers WHERE until > now()) THEN
        PERFORM pg_notify('spean_outbox', '');
    END IF;
    RETURN NULL;
END
$$;
