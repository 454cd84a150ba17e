-- Every read of patient data writes one audit row per patient (a sync page of 1,000 patients
-- writes 1,000), and each row pays for every index on audit_events. audit_events_patient
-- (patient_id, at) is served by audit_events_patient_id (patient_id, id), which the access log
-- and the export read: ids and times grow together. Dropping it took a 1,000-row audit insert
-- from 18 to 12 ms (EXPLAIN ANALYZE; bench/RESULTS.md has the profile).
DROP INDEX IF EXISTS audit_events_patient;
