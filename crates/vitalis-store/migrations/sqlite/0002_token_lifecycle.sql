-- Token lifecycle (SQLite): upstream identity providers, rotating refresh tokens,
-- revocations, and per-user assertion keys.
CREATE TABLE identity_providers (
    project_id      TEXT NOT NULL REFERENCES projects(id),
    id              TEXT NOT NULL,
    issuer          TEXT NOT NULL,
    jwks_url        TEXT,
    discovery_url   TEXT,
    audiences       TEXT NOT NULL,
    user_id_claim   TEXT NOT NULL,
    user_id_prefix  TEXT NOT NULL,
    create_users    BOOLEAN NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (project_id, id),
    UNIQUE (project_id, issuer)
);

CREATE TABLE refresh_families (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    scope       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX refresh_families_by_user ON refresh_families (project_id, user_id);
CREATE INDEX refresh_families_by_client ON refresh_families (project_id, client_id);

CREATE TABLE refresh_tokens (
    token_hash         TEXT PRIMARY KEY,
    family_id          TEXT NOT NULL REFERENCES refresh_families(id),
    parent_hash        TEXT,
    access_jti         TEXT NOT NULL,
    access_expires_at  INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    idle_expires_at    INTEGER NOT NULL,
    used_at            INTEGER
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_parent ON refresh_tokens (parent_hash);

CREATE TABLE revocations (
    kind        TEXT NOT NULL CHECK (kind IN ('jti', 'client', 'user')),
    project_id  TEXT NOT NULL,
    subject     TEXT NOT NULL,
    revoked_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (kind, project_id, subject)
);
CREATE INDEX revocations_by_time ON revocations (revoked_at);

CREATE TABLE user_keys (
    project_id  TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    secret_enc  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    PRIMARY KEY (project_id, key_id),
    FOREIGN KEY (project_id, user_id) REFERENCES users (project_id, id) ON DELETE CASCADE
);
CREATE INDEX user_keys_by_user ON user_keys (project_id, user_id);
