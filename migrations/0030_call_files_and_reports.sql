-- Files shared in a video consultation (images, PDFs, checked as record attachments are). Their
-- bytes are in the blob store under sha256; they are not part of the record until the specialist
-- files one into it, and then filed_entry_id names the record attachment (once: filing is
-- idempotent, the row is locked while it is filed).
CREATE TABLE call_files (
    id             uuid PRIMARY KEY,
    appointment_id uuid NOT NULL REFERENCES appointments (id),
    uploaded_by    uuid NOT NULL REFERENCES users (id),
    uploader_name  text NOT NULL,
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    content_type   text NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png', 'image/webp', 'application/pdf')),
    size           integer NOT NULL CHECK (size > 0),
    sha256         text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    filed_entry_id uuid,
    filed_by       uuid REFERENCES users (id),
    filed_at       timestamptz,
    CHECK ((filed_entry_id IS NULL) = (filed_at IS NULL))
);
CREATE INDEX call_files_appointment ON call_files (appointment_id, created_at);

-- A consultation's PDF report: one per appointment, a record attachment (entry_id), in the
-- patient's language. The link sent to the patient by SMS is kept as a SHA-256 digest only, and
-- opens the PDF with the patient's results PIN (ussd_pins: its wrong tries are counted and locked
-- there) until it expires.
CREATE TABLE consultation_reports (
    appointment_id  uuid PRIMARY KEY REFERENCES appointments (id),
    patient_id      uuid NOT NULL REFERENCES patients (id),
    entry_id        uuid NOT NULL,
    language        text NOT NULL CHECK (language IN ('km', 'vi', 'fr', 'en')),
    created_by      uuid NOT NULL REFERENCES users (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    link_hash       bytea UNIQUE,
    link_expires_at timestamptz,
    sms_id          uuid REFERENCES sms_messages (id),
    CHECK ((link_hash IS NULL) = (link_expires_at IS NULL))
);
