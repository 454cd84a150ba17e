-- Aggregate reports pushed to a DHIS2 server (`spean report dhis2`): one row per attempt, the
-- refused and unreachable ones included, so an operator can see what the national HMIS was sent
-- for a period, by whom, and what it answered. No patient data: only counts per facility.
CREATE TABLE dhis2_pushes (
    id            uuid PRIMARY KEY,
    period        text NOT NULL CHECK (length(period) BETWEEN 6 AND 16),
    facility_ids  uuid[] NOT NULL,
    operator      text NOT NULL,                 -- the OS account that ran the command
    server        text NOT NULL,                 -- DHIS2_BASE_URL at the time
    server_dry_run boolean NOT NULL,             -- DHIS2's dryRun=true: checked, nothing stored
    values_sent   integer NOT NULL CHECK (values_sent >= 0),
    -- DHIS2's import summary status (SUCCESS, WARNING, ERROR), or what stopped the push before
    -- there was one (unauthorized, unreachable, bad_response).
    status        text NOT NULL,
    http_status   integer,
    imported      integer NOT NULL DEFAULT 0,
    updated       integer NOT NULL DEFAULT 0,
    ignored       integer NOT NULL DEFAULT 0,
    deleted       integer NOT NULL DEFAULT 0,
    conflicts     jsonb NOT NULL DEFAULT '[]',
    message       text,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dhis2_pushes_period ON dhis2_pushes (period, finished_at);
