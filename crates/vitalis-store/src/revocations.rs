//! Revocations that outlive a request: revoked access-token ids, and revoked clients and
//! deleted users whose earlier tokens must stop working. Rows expire when every token they
//! could affect has expired.

use crate::{Store, StoreResult, with_pool};

/// What a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevocationKind {
    /// One access token, by `jti`.
    Jti,
    /// Every token a client obtained before `revoked_at`.
    Client,
    /// Every token of a user issued before `revoked_at` (the user was deleted).
    User,
}

impl RevocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationKind::Jti => "jti",
            RevocationKind::Client => "client",
            RevocationKind::User => "user",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "jti" => Some(RevocationKind::Jti),
            "client" => Some(RevocationKind::Client),
            "user" => Some(RevocationKind::User),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RevocationRecord {
    pub kind: String,
    pub project_id: String,
    pub subject: String,
    pub revoked_at: i64,
    pub expires_at: i64,
}

pub(crate) const UPSERT_REVOCATION: &str =
    "INSERT INTO revocations (kind, project_id, subject, revoked_at, expires_at) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (kind, project_id, subject) DO UPDATE SET revoked_at = excluded.revoked_at, expires_at = excluded.expires_at";

impl Store {
    pub async fn insert_revocation(
        &self,
        kind: RevocationKind,
        project_id: &str,
        subject: &str,
        revoked_at: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        with_pool!(self, pool => sqlx::query(UPSERT_REVOCATION)
            .bind(kind.as_str()).bind(project_id).bind(subject).bind(revoked_at).bind(expires_at)
            .execute(pool).await.map(|done| done.rows_affected()))?;
        Ok(())
    }

    /// Live revocations recorded at or after `since` (milliseconds), oldest first.
    pub async fn list_revocations_since(&self, since: i64, now: i64) -> StoreResult<Vec<RevocationRecord>> {
        Ok(with_pool!(self, pool => sqlx::query_as::<_, RevocationRecord>(
            "SELECT kind, project_id, subject, revoked_at, expires_at FROM revocations
             WHERE revoked_at >= $1 AND expires_at > $2 ORDER BY revoked_at")
            .bind(since).bind(now).fetch_all(pool).await)?)
    }
}
