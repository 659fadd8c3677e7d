//! Users, unique per project. Profiles are stored as JSON text (portable across backends);
//! `version` gives optimistic concurrency to read-modify-write updates such as PATCH.

use vitalis_core::timefmt::now_millis;

use crate::{Store, StoreError, StoreResult, with_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRecord {
    pub project_id: String,
    pub id: String,
    pub profile: String,
    pub data_syncs: String,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Store {
    /// Inserts a user; `Conflict("user")` when the id is taken in this project.
    pub async fn insert_user(&self, project_id: &str, user_id: &str, profile_json: &str) -> StoreResult<UserRecord> {
        let now = now_millis();
        with_pool!(self, pool => sqlx::query_as::<_, UserRecord>(
            "INSERT INTO users (project_id, id, profile, data_syncs, version, created_at, updated_at)
             VALUES ($1, $2, $3, '[]', 1, $4, $4)
             RETURNING project_id, id, profile, data_syncs, version, created_at, updated_at")
            .bind(project_id).bind(user_id).bind(profile_json).bind(now)
            .fetch_one(pool).await)
        .map_err(|e| StoreError::unique(e, "user"))
    }

    pub async fn get_user(&self, project_id: &str, user_id: &str) -> StoreResult<Option<UserRecord>> {
        Ok(with_pool!(self, pool => sqlx::query_as::<_, UserRecord>(
            "SELECT project_id, id, profile, data_syncs, version, created_at, updated_at
             FROM users WHERE project_id = $1 AND id = $2")
            .bind(project_id).bind(user_id).fetch_optional(pool).await)?)
    }

    /// Up to `limit` users ordered by id, starting after `after` (keyset pagination).
    pub async fn list_users(&self, project_id: &str, after: Option<&str>, limit: u32) -> StoreResult<Vec<UserRecord>> {
        let limit = i64::from(limit);
        Ok(match after {
            Some(after) => with_pool!(self, pool => sqlx::query_as::<_, UserRecord>(
                "SELECT project_id, id, profile, data_syncs, version, created_at, updated_at
                 FROM users WHERE project_id = $1 AND id > $2 ORDER BY id LIMIT $3")
                .bind(project_id).bind(after).bind(limit).fetch_all(pool).await)?,
            None => with_pool!(self, pool => sqlx::query_as::<_, UserRecord>(
                "SELECT project_id, id, profile, data_syncs, version, created_at, updated_at
                 FROM users WHERE project_id = $1 ORDER BY id LIMIT $2")
                .bind(project_id).bind(limit).fetch_all(pool).await)?,
        })
    }

    /// Writes a new profile if the row is still at `expected_version`. `Ok(None)` means the
    /// user changed (or vanished) since it was read: the caller re-reads and retries.
    pub async fn update_user_profile(
        &self,
        project_id: &str,
        user_id: &str,
        expected_version: i64,
        profile_json: &str,
    ) -> StoreResult<Option<UserRecord>> {
        Ok(with_pool!(self, pool => sqlx::query_as::<_, UserRecord>(
            "UPDATE users SET profile = $4, version = version + 1, updated_at = $5
             WHERE project_id = $1 AND id = $2 AND version = $3
             RETURNING project_id, id, profile, data_syncs, version, created_at, updated_at")
            .bind(project_id).bind(user_id).bind(expected_version).bind(profile_json).bind(now_millis())
            .fetch_optional(pool).await)?)
    }

    /// Deletes a user; `false` when there was none.
    pub async fn delete_user(&self, project_id: &str, user_id: &str) -> StoreResult<bool> {
        let done = with_pool!(self, pool => sqlx::query("DELETE FROM users WHERE project_id = $1 AND id = $2")
            .bind(project_id).bind(user_id).execute(pool).await.map(|done| done.rows_affected()))?;
        Ok(done > 0)
    }
}
