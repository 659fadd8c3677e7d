//! OAuth clients, keyed by `(project_id, client_id)`. Secrets are stored only as hashes;
//! hashing and comparing them is the auth crate's business.

use vitalis_core::timefmt::now_millis;

use crate::refresh::{in_write_tx, revoke_family_in};
use crate::revocations::{RevocationKind, UPSERT_REVOCATION};
use crate::{Store, StoreError, StoreResult, with_pool};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Holds a secret; authenticates to the token endpoints.
    Confidential,
    /// Holds no secret (mobile and browser apps).
    Public,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Confidential => "confidential",
            ClientKind::Public => "public",
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClientRecord {
    pub project_id: String,
    pub client_id: String,
    pub name: String,
    pub kind: String,
    pub secret_hash: Option<String>,
    /// Space-separated scopes the client may be granted.
    pub allowed_scopes: String,
    /// Space-separated scopes granted when a request names none.
    pub default_scopes: String,
    /// Space-separated grant types the client may use.
    pub allowed_grants: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub revoked_at: Option<i64>,
}

impl ClientRecord {
    pub fn is_confidential(&self) -> bool {
        self.kind == ClientKind::Confidential.as_str()
    }

    pub fn allows_grant(&self, grant: &str) -> bool {
        self.allowed_grants.split(' ').any(|g| g == grant)
    }
}

/// What it takes to insert a client.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub project_id: String,
    pub client_id: String,
    pub name: String,
    pub kind: ClientKind,
    pub secret_hash: Option<String>,
    pub allowed_scopes: String,
    pub default_scopes: String,
    pub allowed_grants: String,
}

impl Store {
    pub async fn insert_client(&self, new: &NewClient) -> StoreResult<ClientRecord> {
        let now = now_millis();
        with_pool!(self, pool => sqlx::query(
            "INSERT INTO oauth_clients (project_id, client_id, name, kind, secret_hash, allowed_scopes, default_scopes, allowed_grants, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)")
            .bind(&new.project_id).bind(&new.client_id).bind(&new.name).bind(new.kind.as_str())
            .bind(&new.secret_hash).bind(&new.allowed_scopes).bind(&new.default_scopes).bind(&new.allowed_grants)
            .bind(now)
            .execute(pool).await.map(|done| done.rows_affected()))
        .map_err(|e| match e.as_database_error() {
            Some(db) if db.is_foreign_key_violation() => StoreError::NotFound("project"),
            _ => StoreError::unique(e, "client"),
        })?;
        self.get_client(&new.project_id, &new.client_id).await?.ok_or(StoreError::NotFound("client"))
    }

    pub async fn get_client(&self, project_id: &str, client_id: &str) -> StoreResult<Option<ClientRecord>> {
        Ok(with_pool!(self, pool => sqlx::query_as::<_, ClientRecord>(
            "SELECT project_id, client_id, name, kind, secret_hash, allowed_scopes, default_scopes, allowed_grants, created_at, updated_at, revoked_at
             FROM oauth_clients WHERE project_id = $1 AND client_id = $2")
            .bind(project_id).bind(client_id).fetch_optional(pool).await)?)
    }

    pub async fn list_clients(&self, project_id: &str) -> StoreResult<Vec<ClientRecord>> {
        Ok(with_pool!(self, pool => sqlx::query_as::<_, ClientRecord>(
            "SELECT project_id, client_id, name, kind, secret_hash, allowed_scopes, default_scopes, allowed_grants, created_at, updated_at, revoked_at
             FROM oauth_clients WHERE project_id = $1 ORDER BY client_id")
            .bind(project_id).fetch_all(pool).await)?)
    }

    /// Projects in which a client with this id exists (client ids are unique per project only).
    pub async fn projects_with_client(&self, client_id: &str) -> StoreResult<Vec<String>> {
        Ok(with_pool!(self, pool => sqlx::query_scalar::<_, String>(
            "SELECT project_id FROM oauth_clients WHERE client_id = $1 ORDER BY project_id LIMIT 2")
            .bind(client_id).fetch_all(pool).await)?)
    }

    /// Replaces the secret hash of a live confidential client.
    pub async fn set_client_secret(&self, project_id: &str, client_id: &str, secret_hash: &str) -> StoreResult<()> {
        let done = with_pool!(self, pool => sqlx::query(
            "UPDATE oauth_clients SET secret_hash = $3, updated_at = $4
             WHERE project_id = $1 AND client_id = $2 AND kind = 'confidential' AND revoked_at IS NULL")
            .bind(project_id).bind(client_id).bind(secret_hash).bind(now_millis())
            .execute(pool).await.map(|done| done.rows_affected()))?;
        if done == 0 { Err(StoreError::NotFound("client")) } else { Ok(()) }
    }

    /// Marks the client revoked (it can no longer obtain tokens), revokes the refresh-token
    /// families issued through it with their access tokens, and records that tokens it
    /// obtained earlier are void until `revoke_until`; all in one transaction.
    pub async fn revoke_client(&self, project_id: &str, client_id: &str, revoke_until: i64) -> StoreResult<()> {
        let now = now_millis();
        let revoked = in_write_tx!(self, conn => {
            let revoked = sqlx::query("UPDATE oauth_clients SET revoked_at = $3, updated_at = $3 WHERE project_id = $1 AND client_id = $2 AND revoked_at IS NULL")
                .bind(project_id).bind(client_id).bind(now).execute(&mut *conn).await?.rows_affected() > 0;
            if revoked {
                let families: Vec<String> = sqlx::query_scalar("SELECT id FROM refresh_families WHERE project_id = $1 AND client_id = $2 AND revoked_at IS NULL")
                    .bind(project_id).bind(client_id).fetch_all(&mut *conn).await?;
                for family in &families {
                    revoke_family_in!(conn, family, project_id, now);
                }
                sqlx::query(UPSERT_REVOCATION).bind(RevocationKind::Client.as_str()).bind(project_id).bind(client_id).bind(now).bind(revoke_until)
                    .execute(&mut *conn).await?;
            }
            revoked
        });
        if revoked { Ok(()) } else { Err(StoreError::NotFound("client")) }
    }

    /// Replaces a client's name, scopes and grants.
    pub async fn update_client(
        &self,
        project_id: &str,
        client_id: &str,
        name: &str,
        allowed_scopes: &str,
        default_scopes: &str,
        allowed_grants: &str,
    ) -> StoreResult<()> {
        let done = with_pool!(self, pool => sqlx::query(
            "UPDATE oauth_clients SET name = $3, allowed_scopes = $4, default_scopes = $5, allowed_grants = $6, updated_at = $7
             WHERE project_id = $1 AND client_id = $2")
            .bind(project_id).bind(client_id).bind(name).bind(allowed_scopes).bind(default_scopes).bind(allowed_grants).bind(now_millis())
            .execute(pool).await.map(|done| done.rows_affected()))?;
        if done == 0 { Err(StoreError::NotFound("client")) } else { Ok(()) }
    }
}
