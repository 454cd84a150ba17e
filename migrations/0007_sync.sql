-- Offline sync: each change a phone recorded offline carries a client id; applying it records
-- (user, client id) here in the same transaction, so a resent batch applies nothing twice.
CREATE TABLE sync_applied (
    user_id    uuid NOT NULL REFERENCES users (id),
    client_id  text NOT NULL CHECK (length(client_id) BETWEEN 1 AND 100),
    entry_id   uuid NOT NULL,
    version    integer NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, client_id)
);
