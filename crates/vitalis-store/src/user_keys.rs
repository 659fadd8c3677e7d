//! Per-user secret keys for signed assertions (`x-jwt`). The secret is needed in clear to
//! verify HS256, so it is stored encrypted with the master key (by the auth crate).

use vitalis_core::timefmt::now_millis;

use crate::{Store, StoreError, StoreResult, with_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserKeyRecord {
    pub project_id: String,
    pub key_id: String,
    pub user_id: String,
    pub secret_enc: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl Store {
    /// `NotFound("user")` when the user does not exist in the project.
    pub async fn insert_user_key(&self, project_id: &str, user_id: &str, key_id: &str, secret_enc: &str) -> StoreResult<UserKeyRecord> {
        with_pool!(self, pool => sqlx::query_as::<_, UserKeyRecord>(
            "INSERT INTO user_keys (project_id, key_id, user_id, secret_enc, created_at) VALUES ($1, $2, $3, $4, $5)
             RETURNING project_id, key_id, user_id, secret_enc, created_at, revoked_at")
            .bind(project_id).bind(key_id).bind(user_id).bind(secret_enc).bind(now_millis())
            .fetch_one(pool).await)
        .map_err(|e| match e.as_database_error() {
            Some(db) if db.is_foreign_key_violation() => StoreError::NotFound("user"),
            _ => StoreError::unique(e, "user key"),
        })
    }

    /// All keys of a user, newest first (revoked ones included, for listing).
    pub async fn list_user_keys(&self, project_id: &str, user_id: &str) -> StoreResult<Vec<UserKeyRecord>> {
        Ok(with_pool!(self, pool => sqlx::query_as::<_, UserKeyRecord>(
            "SELECT project_id, key_id, user_id, secret_enc, created_at, revoked_at FROM user_keys
             WHERE project_id = $1 AND user_id = $2 ORDER BY created_at DESC, key_id DESC")
            .bind(project_id).bind(user_id).fetch_all(pool).await)?)
    }

    pub async fn revoke_user_key(&self, project_id: &str, user_id: &str, key_id: &str) -> StoreResult<bool> {
        let done = with_pool!(self, pool => sqlx::query(
            "UPDATE user_keys SET revoked_at = $4 WHERE project_id = $1 AND user_id = $2 AND key_id = $3 AND revoked_at IS NULL")
            .bind(project_id).bind(user_id).bind(key_id).bind(now_millis())
            .execute(pool).await.map(|done| done.rows_affected()))?;
        Ok(done > 0)
    }
}
