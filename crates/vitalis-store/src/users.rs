//! Users, unique per project. Profiles are stored as JSON text (portable across backends);
//! `version` gives optimistic concurrency to read-modify-write updates such as PATCH.

use vitalis_core::timefmt::now_millis;

use crate::refresh::{in_write_tx, revoke_family_in};
use crate::revocations::{RevocationKind, UPSERT_REVOCATION};
use crate::webhooks::INSERT_OUTBOX_EVENT;
use crate::{Store, StoreError, StoreResult, with_pool};

/// Writes a `users:*` outbox event (data: the user's id) inside the caller's transaction.
macro_rules! emit_user_event {
    ($conn:expr, $project_id:expr, $user_id:expr, $name:expr, $now:expr) => {
        sqlx::query(INSERT_OUTBOX_EVENT)
            .bind(vitalis_core::ids::new_id("evt_"))
            .bind($project_id)
            .bind($name)
            .bind($user_id)
            .bind(serde_json::json!({ "id": $user_id }).to_string())
            .bind($now)
            .execute(&mut *$conn)
            .await?;
    };
}

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
    /// Inserts a user and its `users:created` event in one transaction; `Conflict("user")`
    /// when the id is taken in this project (and then no event exists).
    pub async fn insert_user(&self, project_id: &str, user_id: &str, profile_json: &str) -> StoreResult<UserRecord> {
        let now = now_millis();
        let record = in_write_tx!(self, conn => {
            let record: UserRecord = sqlx::query_as(
                "INSERT INTO users (project_id, id, profile, data_syncs, version, created_at, updated_at)
                 VALUES ($1, $2, $3, '[]', 1, $4, $4)
                 RETURNING project_id, id, profile, data_syncs, version, created_at, updated_at")
                .bind(project_id).bind(user_id).bind(profile_json).bind(now)
                .fetch_one(&mut *conn).await.map_err(|e| StoreError::unique(e, "user"))?;
            emit_user_event!(conn, project_id, user_id, "users:created", now);
            record
        });
        self.signal_outbox();
        Ok(record)
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

    /// Writes a new profile (and a `users:updated` event) if the row is still at
    /// `expected_version`. `Ok(None)` means the user changed (or vanished) since it was
    /// read: the caller re-reads and retries.
    pub async fn update_user_profile(
        &self,
        project_id: &str,
        user_id: &str,
        expected_version: i64,
        profile_json: &str,
    ) -> StoreResult<Option<UserRecord>> {
        let now = now_millis();
        let record = in_write_tx!(self, conn => {
            let record: Option<UserRecord> = sqlx::query_as(
                "UPDATE users SET profile = $4, version = version + 1, updated_at = $5
                 WHERE project_id = $1 AND id = $2 AND version = $3
                 RETURNING project_id, id, profile, data_syncs, version, created_at, updated_at")
                .bind(project_id).bind(user_id).bind(expected_version).bind(profile_json).bind(now)
                .fetch_optional(&mut *conn).await?;
            if record.is_some() {
                emit_user_event!(conn, project_id, user_id, "users:updated", now);
            }
            record
        });
        if record.is_some() {
            self.signal_outbox();
        }
        Ok(record)
    }

    /// Deletes a user (and its assertion keys), revokes its refresh-token families and
    /// their access tokens, and records that its earlier tokens are void until
    /// `revoke_until`; all in one transaction. `false` when there was no such user.
    pub async fn delete_user(&self, project_id: &str, user_id: &str, revoke_until: i64) -> StoreResult<bool> {
        let now = now_millis();
        let deleted = in_write_tx!(self, conn => {
            let deleted = sqlx::query("DELETE FROM users WHERE project_id = $1 AND id = $2")
                .bind(project_id).bind(user_id).execute(&mut *conn).await?.rows_affected() > 0;
            if deleted {
                let families: Vec<String> = sqlx::query_scalar("SELECT id FROM refresh_families WHERE project_id = $1 AND user_id = $2 AND revoked_at IS NULL")
                    .bind(project_id).bind(user_id).fetch_all(&mut *conn).await?;
                for family in &families {
                    revoke_family_in!(conn, family, project_id, now);
                }
                sqlx::query(UPSERT_REVOCATION).bind(RevocationKind::User.as_str()).bind(project_id).bind(user_id).bind(now).bind(revoke_until)
                    .execute(&mut *conn).await?;
                emit_user_event!(conn, project_id, user_id, "users:deleted", now);
            }
            deleted
        });
        if deleted {
            self.signal_outbox();
        }
        Ok(deleted)
    }
}
