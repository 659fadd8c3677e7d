-- Token lifecycle (PostgreSQL): upstream identity providers, rotating refresh tokens,
-- revocations, and per-user assertion keys.
CREATE TABLE identity_providers (
    project_id      TEXT COLLATE "C" NOT NULL REFERENCES projects(id),
    id              TEXT COLLATE "C" NOT NULL,
    issuer          TEXT NOT NULL,
    jwks_url        TEXT,
    discovery_url   TEXT,
    audiences       TEXT NOT NULL,
    user_id_claim   TEXT NOT NULL,
    user_id_prefix  TEXT NOT NULL,
    create_users    BOOLEAN NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (project_id, id),
    UNIQUE (project_id, issuer)
);

CREATE TABLE refresh_families (
    id          TEXT COLLATE "C" PRIMARY KEY,
    project_id  TEXT COLLATE "C" NOT NULL,
    client_id   TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    scope       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX refresh_families_by_user ON refresh_families (project_id, user_id);
CREATE INDEX refresh_families_by_client ON refresh_families (project_id, client_id);

CREATE TABLE refresh_tokens (
    token_hash         TEXT PRIMARY KEY,
    family_id          TEXT COLLATE "C" NOT NULL REFERENCES refresh_families(id),
    parent_hash        TEXT,
    access_jti         TEXT NOT NULL,
    access_expires_at  BIGINT NOT NULL,
    created_at         BIGINT NOT NULL,
    idle_expires_at    BIGINT NOT NULL,
    used_at            BIGINT
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_parent ON refresh_tokens (parent_hash);

CREATE TABLE revocations (
    kind        TEXT NOT NULL CHECK (kind IN ('jti', 'client', 'user')),
    project_id  TEXT COLLATE "C" NOT NULL,
    subject     TEXT NOT NULL,
    revoked_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (kind, project_id, subject)
);
CREATE INDEX revocations_by_time ON revocations (revoked_at);

CREATE TABLE user_keys (
    project_id  TEXT COLLATE "C" NOT NULL,
    key_id      TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    secret_enc  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    PRIMARY KEY (project_id, key_id),
    FOREIGN KEY (project_id, user_id) REFERENCES users (project_id, id) ON DELETE CASCADE
);
CREATE INDEX user_keys_by_user ON user_keys (project_id, user_id);
