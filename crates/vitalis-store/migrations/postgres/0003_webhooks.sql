-- Outbound webhooks (PostgreSQL): endpoints, the transactional outbox, deliveries and attempts.
CREATE TABLE webhook_endpoints (
    project_id       TEXT COLLATE "C" NOT NULL REFERENCES projects(id),
    id               TEXT COLLATE "C" NOT NULL,
    url              TEXT NOT NULL,
    events           TEXT NOT NULL,
    enabled          BOOLEAN NOT NULL,
    secret_enc       TEXT NOT NULL,
    disabled_reason  TEXT,
    failing_since    BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (project_id, id)
);

-- Written in the same transaction as the change it describes.
CREATE TABLE outbox_events (
    id          TEXT COLLATE "C" PRIMARY KEY,
    project_id  TEXT COLLATE "C" NOT NULL,
    name        TEXT NOT NULL,
    user_id     TEXT COLLATE "C",
    data        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    fanned_out  BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX outbox_events_pending ON outbox_events (fanned_out, created_at, id);

CREATE TABLE webhook_deliveries (
    id               TEXT COLLATE "C" PRIMARY KEY,
    project_id       TEXT COLLATE "C" NOT NULL,
    endpoint_id      TEXT COLLATE "C" NOT NULL,
    body             TEXT NOT NULL,
    event_count      BIGINT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'dead')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    locked_until     BIGINT,
    last_status      BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (project_id, endpoint_id, created_at);

CREATE TABLE webhook_attempts (
    delivery_id  TEXT COLLATE "C" NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt      BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    status_code  BIGINT,
    latency_ms   BIGINT NOT NULL,
    error        TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
