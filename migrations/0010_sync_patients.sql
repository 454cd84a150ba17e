-- Patients in the sync feed: each insert or update gives the row a feed position from the same
-- sequence as record entries, plus its transaction id (see 0009), so one cursor covers both.
ALTER TABLE patients ADD COLUMN tx xid8, ADD COLUMN change_seq bigint;

CREATE FUNCTION patients_feed_position() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.tx := pg_current_xact_id();
    NEW.change_seq := nextval(pg_get_serial_sequence('record_entries', 'seq'));
    RETURN NEW;
END $$;

CREATE TRIGGER patients_feed_position BEFORE INSERT OR UPDATE ON patients
    FOR EACH ROW EXECUTE FUNCTION patients_feed_position();

UPDATE patients SET change_seq = NULL;  -- the trigger gives existing patients a position
CREATE INDEX patients_feed ON patients (home_facility_id, tx, change_seq);
