-- Attachments (images, PDFs) are record entries too: versioned, with provenance. Their bytes live
-- in the blob store under their sha256 (body.sha256); the row holds type, size and title.
ALTER TABLE record_entries DROP CONSTRAINT record_entries_kind_check;
ALTER TABLE record_entries ADD CONSTRAINT record_entries_kind_check
    CHECK (kind IN ('encounter', 'observation', 'condition', 'prescription', 'note', 'attachment'));
