//! Rotating refresh tokens. A family is one login; each use of its current token marks it
//! used and inserts a successor. Operations arrive in batches and are applied in one
//! transaction (group commit), so durable writes are shared by many grants.

use crate::{Store, StoreResult, with_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshFamilyRecord {
    pub id: String,
    pub project_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// A refresh token row joined with its family.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshTokenState {
    pub token_hash: String,
    pub used_at: Option<i64>,
    pub idle_expires_at: i64,
    pub family_id: String,
    pub project_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub family_expires_at: i64,
    pub family_revoked_at: Option<i64>,
}

/// The access token issued alongside a refresh token (remembered so revoking the family
/// can revoke it too).
#[derive(Debug, Clone)]
pub struct AccessTokenRef {
    pub jti: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub enum RefreshOp {
    /// Start a family with its first token.
    Issue { family: RefreshFamilyRecord, token_hash: String, access: AccessTokenRef, idle_expires_at: i64 },
    /// Use `token_hash` (of a family of `project_id`/`client_id`) and insert its successor.
    Rotate { token_hash: String, project_id: String, client_id: String, new_token_hash: String, access: AccessTokenRef, idle_ttl_ms: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    Issued,
    /// The token was current; its successor is stored. Carries the family.
    Rotated {
        family_id: String,
        user_id: String,
        scope: String,
    },
    /// Unknown, expired, or of another client or project.
    Invalid,
    /// The family was revoked earlier.
    Revoked,
    /// The immediate predecessor of the current token, reused within the grace window:
    /// refused, but the family stays valid (a client's own retry racing its rotation).
    ReusedWithinGrace,
    /// A rotated token was replayed: the family and its live access tokens are now revoked.
    ReuseDetected,
}

const TOKEN_STATE: &str = "SELECT t.token_hash, t.used_at, t.idle_expires_at, t.family_id, f.project_id, f.client_id, f.user_id, f.scope,
        f.expires_at AS family_expires_at, f.revoked_at AS family_revoked_at
     FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id WHERE t.token_hash = $1";

/// Runs `$body` inside one write transaction on `$conn` (`BEGIN IMMEDIATE` on SQLite, so the
/// write lock is taken up front instead of failing on upgrade).
macro_rules! in_write_tx {
    ($store:expr, $conn:ident => $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let result = {
                    let $conn = &mut *tx;
                    $body
                };
                tx.commit().await?;
                result
            }
            $crate::Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let result = {
                    let $conn = &mut *tx;
                    $body
                };
                tx.commit().await?;
                result
            }
        }
    };
}
pub(crate) use in_write_tx;

pub(crate) const REVOKE_FAMILY: &str = "UPDATE refresh_families SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
pub(crate) const REVOKE_FAMILY_ACCESS_TOKENS: &str = "INSERT INTO revocations (kind, project_id, subject, revoked_at, expires_at)
     SELECT 'jti', $2, access_jti, $3, access_expires_at FROM refresh_tokens WHERE family_id = $1 AND access_expires_at > $3
     ON CONFLICT (kind, project_id, subject) DO NOTHING";

/// Marks a family revoked and denylists the live access tokens issued with its tokens,
/// on a connection inside the caller's transaction.
macro_rules! revoke_family_in {
    ($conn:expr, $family_id:expr, $project_id:expr, $now:expr) => {{
        sqlx::query($crate::refresh::REVOKE_FAMILY).bind($family_id).bind($now).execute(&mut *$conn).await?;
        sqlx::query($crate::refresh::REVOKE_FAMILY_ACCESS_TOKENS)
            .bind($family_id)
            .bind($project_id)
            .bind($now)
            .execute(&mut *$conn)
            .await?;
    }};
}
pub(crate) use revoke_family_in;

impl Store {
    /// Applies `ops` in order, in one transaction. `grace_ms` bounds how long after its
    /// rotation a token may be replayed without revoking its family.
    pub async fn apply_refresh_ops(&self, ops: &[RefreshOp], now: i64, grace_ms: i64) -> StoreResult<Vec<RefreshOutcome>> {
        Ok(in_write_tx!(self, conn => {
            let mut outcomes = Vec::with_capacity(ops.len());
            for op in ops {
                let outcome = match op {
                    RefreshOp::Issue { family, token_hash, access, idle_expires_at } => {
                        sqlx::query("INSERT INTO refresh_families (id, project_id, client_id, user_id, scope, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                            .bind(&family.id).bind(&family.project_id).bind(&family.client_id).bind(&family.user_id)
                            .bind(&family.scope).bind(family.created_at).bind(family.expires_at)
                            .execute(&mut *conn).await?;
                        sqlx::query("INSERT INTO refresh_tokens (token_hash, family_id, parent_hash, access_jti, access_expires_at, created_at, idle_expires_at)
                                     VALUES ($1, $2, NULL, $3, $4, $5, $6)")
                            .bind(token_hash).bind(&family.id).bind(&access.jti).bind(access.expires_at).bind(now).bind(idle_expires_at)
                            .execute(&mut *conn).await?;
                        RefreshOutcome::Issued
                    }
                    RefreshOp::Rotate { token_hash, project_id, client_id, new_token_hash, access, idle_ttl_ms } => {
                        // Primary-key lookups only: generic plans of prepared statements stay
                        // cheap however many families a client has.
                        let state: Option<RefreshTokenState> = sqlx::query_as(TOKEN_STATE).bind(token_hash).fetch_optional(&mut *conn).await?;
                        match state {
                            None => RefreshOutcome::Invalid,
                            Some(s) if s.project_id != *project_id || s.client_id != *client_id => RefreshOutcome::Invalid,
                            Some(s) if s.family_revoked_at.is_some() => RefreshOutcome::Revoked,
                            Some(s) if s.family_expires_at <= now => RefreshOutcome::Invalid,
                            Some(s) if s.used_at.is_none() && s.idle_expires_at <= now => RefreshOutcome::Invalid,
                            Some(s) if s.used_at.is_none() => {
                                // The conditional update decides the winner if another node
                                // rotates the same token concurrently.
                                let won = sqlx::query("UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL")
                                    .bind(token_hash).bind(now).execute(&mut *conn).await?.rows_affected() == 1;
                                if won {
                                    let idle_expires_at = (now + idle_ttl_ms).min(s.family_expires_at);
                                    sqlx::query("INSERT INTO refresh_tokens (token_hash, family_id, parent_hash, access_jti, access_expires_at, created_at, idle_expires_at)
                                                 VALUES ($1, $2, $3, $4, $5, $6, $7)")
                                        .bind(new_token_hash).bind(&s.family_id).bind(token_hash).bind(&access.jti).bind(access.expires_at).bind(now).bind(idle_expires_at)
                                        .execute(&mut *conn).await?;
                                    RefreshOutcome::Rotated { family_id: s.family_id, user_id: s.user_id, scope: s.scope }
                                } else {
                                    RefreshOutcome::ReusedWithinGrace
                                }
                            }
                            Some(s) => {
                                let used_at = s.used_at.unwrap_or(now);
                                let child_unused: Option<bool> = sqlx::query_scalar("SELECT used_at IS NULL FROM refresh_tokens WHERE parent_hash = $1")
                                    .bind(token_hash).fetch_optional(&mut *conn).await?;
                                if now - used_at <= grace_ms && child_unused == Some(true) {
                                    RefreshOutcome::ReusedWithinGrace
                                } else {
                                    revoke_family_in!(conn, &s.family_id, &s.project_id, now);
                                    RefreshOutcome::ReuseDetected
                                }
                            }
                        }
                    }
                };
                outcomes.push(outcome);
            }
            outcomes
        }))
    }

    /// A refresh token's current state, for introspection and revocation.
    pub async fn refresh_token_state(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenState>> {
        Ok(with_pool!(self, pool => sqlx::query_as::<_, RefreshTokenState>(TOKEN_STATE).bind(token_hash).fetch_optional(pool).await)?)
    }

    /// Revokes a family and its live access tokens.
    pub async fn revoke_refresh_family(&self, family_id: &str, project_id: &str, now: i64) -> StoreResult<()> {
        in_write_tx!(self, conn => revoke_family_in!(conn, family_id, project_id, now));
        Ok(())
    }
}
