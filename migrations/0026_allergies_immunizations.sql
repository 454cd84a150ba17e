-- Allergies (FHIR AllergyIntolerance) and immunizations (FHIR Immunization) join the shared record:
-- two more kinds of entry, versioned, audited and synced as every other (their content is the
-- entry's body; `code` holds the SNOMED CT code of an allergy, the vaccine code of an immunization).
ALTER TABLE record_entries DROP CONSTRAINT record_entries_kind_check;
ALTER TABLE record_entries ADD CONSTRAINT record_entries_kind_check
    CHECK (kind IN ('encounter', 'observation', 'condition', 'prescription', 'note', 'attachment',
                    'allergy', 'immunization'));
