-- The sync feed must never skip a change. A sequence number alone can: a transaction that took
-- seq 100 may commit after one that took seq 101 was already served. So each version also
-- records its transaction id, the feed is ordered by (tx, seq), and it only serves rows of
-- transactions older than every transaction still running (pg_snapshot_xmin): nothing can later
-- appear before the cursor.
ALTER TABLE record_entries ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX record_entries_feed ON record_entries (tx, seq);
