-- Vitalis schema v1 (SQLite). Timestamps are integer milliseconds since the Unix epoch.
CREATE TABLE orgs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs(id),
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE oauth_clients (
    project_id      TEXT NOT NULL REFERENCES projects(id),
    client_id       TEXT NOT NULL,
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('confidential', 'public')),
    secret_hash     TEXT,
    allowed_scopes  TEXT NOT NULL,
    default_scopes  TEXT NOT NULL,
    allowed_grants  TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    revoked_at      INTEGER,
    PRIMARY KEY (project_id, client_id)
);
CREATE INDEX oauth_clients_by_client_id ON oauth_clients (client_id);

CREATE TABLE signing_keys (
    kid              TEXT PRIMARY KEY,
    alg              TEXT NOT NULL,
    private_key_enc  TEXT NOT NULL,
    public_jwk       TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    retired_at       INTEGER
);

CREATE TABLE users (
    project_id  TEXT NOT NULL REFERENCES projects(id),
    id          TEXT NOT NULL,
    profile     TEXT NOT NULL,
    data_syncs  TEXT NOT NULL DEFAULT '[]',
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (project_id, id)
);
