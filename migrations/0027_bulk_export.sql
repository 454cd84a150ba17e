-- SMART Backend Services clients and FHIR Bulk Data exports (api/smart, api/fhir/bulk, domain/export).
-- A client authenticates with a JWT it signs with its private key; we keep only its public keys
-- (a JWKS document) or the URL it publishes them at, and the scopes it was granted.
CREATE TABLE smart_clients (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    scopes      text[] NOT NULL CHECK (cardinality(scopes) > 0),
    jwks        jsonb,
    jwks_url    text CHECK (jwks_url ~ '^https?://'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    -- Keys come from exactly one place.
    CHECK ((jwks IS NULL) <> (jwks_url IS NULL))
);

-- One asynchronous $export: kicked off by a client (or a system admin), claimed by a worker with
-- a lease (a worker that dies leaves a job another one picks up when the lease runs out), its
-- NDJSON files in the blob store (infra.storage) until expires_at.
CREATE TABLE bulk_exports (
    id               uuid PRIMARY KEY,
    client_id        uuid REFERENCES smart_clients (id),
    user_id          uuid REFERENCES users (id),
    level            text NOT NULL CHECK (level IN ('system', 'patient', 'group')),
    group_id         uuid REFERENCES facilities (id),
    types            text[] NOT NULL,
    since            timestamptz,
    request_url      text NOT NULL,
    status           text NOT NULL DEFAULT 'queued'
                       CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    progress         text,
    transaction_time timestamptz NOT NULL DEFAULT now(),
    lease_until      timestamptz,
    attempts         integer NOT NULL DEFAULT 0,
    output           jsonb NOT NULL DEFAULT '[]',
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    expires_at       timestamptz,
    CHECK ((client_id IS NULL) <> (user_id IS NULL)),
    CHECK ((level = 'group') = (group_id IS NOT NULL))
);
CREATE INDEX bulk_exports_pending ON bulk_exports (created_at) WHERE status IN ('queued', 'running');
CREATE INDEX bulk_exports_client ON bulk_exports (client_id) WHERE status IN ('queued', 'running');
CREATE INDEX bulk_exports_expiring ON bulk_exports (expires_at) WHERE expires_at IS NOT NULL;
-- An export of one record kind changed since an instant reads this, not the whole table.
CREATE INDEX record_entries_kind_recorded ON record_entries (kind, recorded_at) WHERE status <> 'superseded';
