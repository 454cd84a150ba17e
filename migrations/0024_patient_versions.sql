-- Past versions of each patient, so that a versioned reference (FHIR Patient/{id}/_history/{vid},
-- which a transaction's `location` and every update's Location header name) can still be read
-- after the patient changed. `patients` keeps the current version; when its `version` moves on,
-- the version it replaces is copied here, with the identifiers it had then (the domain rewrites
-- identifiers after the row, so at this moment they are still the old ones). A trigger rather
-- than the domain, so that every writer of `patients` keeps history, present and future.
CREATE TABLE patient_versions (
    patient_id         uuid NOT NULL REFERENCES patients (id),
    version            integer NOT NULL,
    names              jsonb NOT NULL,
    birth_date         date,
    birth_year         integer,
    sex                text,
    phone              text,
    preferred_language text NOT NULL,
    preferred_channel  text NOT NULL,
    home_facility_id   uuid NOT NULL,
    identifiers        jsonb NOT NULL,  -- [{system, value}], as they were in this version
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,  -- when this version was written (its lastUpdated)
    PRIMARY KEY (patient_id, version)
);

CREATE FUNCTION patients_keep_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.version IS DISTINCT FROM OLD.version THEN
        INSERT INTO patient_versions (patient_id, version, names, birth_date, birth_year, sex, phone,
                                      preferred_language, preferred_channel, home_facility_id, identifiers,
                                      created_at, updated_at)
        SELECT OLD.id, OLD.version, OLD.names, OLD.birth_date, OLD.birth_year, OLD.sex, OLD.phone,
               OLD.preferred_language, OLD.preferred_channel, OLD.home_facility_id,
               coalesce((SELECT jsonb_agg(jsonb_build_object('system', i.system, 'value', i.value)
                                          ORDER BY i.system, i.value)
                         FROM patient_identifiers i WHERE i.patient_id = OLD.id), '[]'),
               OLD.created_at, OLD.updated_at
        ON CONFLICT DO NOTHING;  -- one row per version, whatever a writer does
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER patients_keep_version AFTER UPDATE OF version ON patients
    FOR EACH ROW EXECUTE FUNCTION patients_keep_version();

-- Kept versions are history: never changed, never removed.
CREATE FUNCTION patient_versions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'patient versions are append-only' USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER patient_versions_append_only BEFORE UPDATE OR DELETE ON patient_versions
    FOR EACH ROW EXECUTE FUNCTION patient_versions_append_only();
