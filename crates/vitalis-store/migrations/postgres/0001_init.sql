-- Vitalis schema v1 (PostgreSQL). Timestamps are integer milliseconds since the Unix epoch,
-- ids use the C collation so keyset pagination orders the same way as on SQLite.
CREATE TABLE orgs (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE projects (
    id          TEXT COLLATE "C" PRIMARY KEY,
    org_id      TEXT COLLATE "C" NOT NULL REFERENCES orgs(id),
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE oauth_clients (
    project_id      TEXT COLLATE "C" NOT NULL REFERENCES projects(id),
    client_id       TEXT COLLATE "C" NOT NULL,
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('confidential', 'public')),
    secret_hash     TEXT,
    allowed_scopes  TEXT NOT NULL,
    default_scopes  TEXT NOT NULL,
    allowed_grants  TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    revoked_at      BIGINT,
    PRIMARY KEY (project_id, client_id)
);
CREATE INDEX oauth_clients_by_client_id ON oauth_clients (client_id);

CREATE TABLE signing_keys (
    kid              TEXT COLLATE "C" PRIMARY KEY,
    alg              TEXT NOT NULL,
    private_key_enc  TEXT NOT NULL,
    public_jwk       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    retired_at       BIGINT
);

CREATE TABLE users (
    project_id  TEXT COLLATE "C" NOT NULL REFERENCES projects(id),
    id          TEXT COLLATE "C" NOT NULL,
    profile     TEXT NOT NULL,
    data_syncs  TEXT NOT NULL DEFAULT '[]',
    version     BIGINT NOT NULL DEFAULT 1,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (project_id, id)
);
