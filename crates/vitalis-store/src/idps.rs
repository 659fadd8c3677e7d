//! Trusted upstream identity providers per project (OIDC issuers whose ID tokens a project
//! exchanges for user tokens).

use vitalis_core::timefmt::now_millis;

use crate::{Store, StoreError, StoreResult, with_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IdentityProviderRecord {
    pub project_id: String,
    pub id: String,
    pub issuer: String,
    pub jwks_url: Option<String>,
    pub discovery_url: Option<String>,
    /// Space-separated accepted `aud` values.
    pub audiences: String,
    pub user_id_claim: String,
    pub user_id_prefix: String,
    pub create_users: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Store {
    pub async fn insert_identity_provider(&self, idp: &IdentityProviderRecord) -> StoreResult<()> {
        let now = now_millis();
        with_pool!(self, pool => sqlx::query(
            "INSERT INTO identity_providers (project_id, id, issuer, jwks_url, discovery_url, audiences, user_id_claim, user_id_prefix, create_users, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)")
            .bind(&idp.project_id).bind(&idp.id).bind(&idp.issuer).bind(&idp.jwks_url).bind(&idp.discovery_url)
            .bind(&idp.audiences).bind(&idp.user_id_claim).bind(&idp.user_id_prefix).bind(idp.create_users).bind(now)
            .execute(pool).await.map(|done| done.rows_affected()))
        .map_err(|e| match e.as_database_error() {
            Some(db) if db.is_foreign_key_violation() => StoreError::NotFound("project"),
            _ => StoreError::unique(e, "identity provider (id or issuer)"),
        })?;
        Ok(())
    }

    /// Replaces the mutable fields of a provider.
    pub async fn update_identity_provider(&self, idp: &IdentityProviderRecord) -> StoreResult<()> {
        let done = with_pool!(self, pool => sqlx::query(
            "UPDATE identity_providers SET issuer = $3, jwks_url = $4, discovery_url = $5, audiences = $6, user_id_claim = $7,
                user_id_prefix = $8, create_users = $9, updated_at = $10
             WHERE project_id = $1 AND id = $2")
            .bind(&idp.project_id).bind(&idp.id).bind(&idp.issuer).bind(&idp.jwks_url).bind(&idp.discovery_url)
            .bind(&idp.audiences).bind(&idp.user_id_claim).bind(&idp.user_id_prefix).bind(idp.create_users).bind(now_millis())
            .execute(pool).await.map(|done| done.rows_affected()))
        .map_err(|e| StoreError::unique(e, "identity provider issuer"))?;
        if done == 0 { Err(StoreError::NotFound("identity provider")) } else { Ok(()) }
    }

    pub async fn get_identity_provider(&self, project_id: &str, id: &str) -> StoreResult<Option<IdentityProviderRecord>> {
        const SQL: &str = "SELECT project_id, id, issuer, jwks_url, discovery_url, audiences, user_id_claim, user_id_prefix, create_users, created_at, updated_at
             FROM identity_providers WHERE project_id = $1 AND id = $2";
        Ok(with_pool!(self, pool => sqlx::query_as::<_, IdentityProviderRecord>(SQL).bind(project_id).bind(id).fetch_optional(pool).await)?)
    }

    /// The provider of `project_id` whose issuer is `issuer` (exact match).
    pub async fn find_identity_provider_by_issuer(&self, project_id: &str, issuer: &str) -> StoreResult<Option<IdentityProviderRecord>> {
        Ok(with_pool!(self, pool => sqlx::query_as::<_, IdentityProviderRecord>(
            "SELECT project_id, id, issuer, jwks_url, discovery_url, audiences, user_id_claim, user_id_prefix, create_users, created_at, updated_at
             FROM identity_providers WHERE project_id = $1 AND issuer = $2")
            .bind(project_id).bind(issuer).fetch_optional(pool).await)?)
    }

    pub async fn list_identity_providers(&self, project_id: &str) -> StoreResult<Vec<IdentityProviderRecord>> {
        Ok(with_pool!(self, pool => sqlx::query_as::<_, IdentityProviderRecord>(
            "SELECT project_id, id, issuer, jwks_url, discovery_url, audiences, user_id_claim, user_id_prefix, create_users, created_at, updated_at
             FROM identity_providers WHERE project_id = $1 ORDER BY id")
            .bind(project_id).fetch_all(pool).await)?)
    }

    /// Every provider of every project (for background JWKS refresh).
    pub async fn list_all_identity_providers(&self) -> StoreResult<Vec<IdentityProviderRecord>> {
        Ok(with_pool!(self, pool => sqlx::query_as::<_, IdentityProviderRecord>(
            "SELECT project_id, id, issuer, jwks_url, discovery_url, audiences, user_id_claim, user_id_prefix, create_users, created_at, updated_at
             FROM identity_providers ORDER BY project_id, id")
            .fetch_all(pool).await)?)
    }

    pub async fn delete_identity_provider(&self, project_id: &str, id: &str) -> StoreResult<bool> {
        let done = with_pool!(self, pool => sqlx::query("DELETE FROM identity_providers WHERE project_id = $1 AND id = $2")
            .bind(project_id).bind(id).execute(pool).await.map(|done| done.rows_affected()))?;
        Ok(done > 0)
    }
}
