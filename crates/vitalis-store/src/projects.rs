//! Organisations own projects; a project is the tenant boundary.

use vitalis_core::ids::{ORG_PREFIX, PROJECT_PREFIX, new_id};
use vitalis_core::timefmt::now_millis;

use crate::{Store, StoreError, StoreResult, with_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrgRecord {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProjectRecord {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub created_at: i64,
}

impl Store {
    pub async fn create_org(&self, name: &str) -> StoreResult<OrgRecord> {
        let org = OrgRecord { id: new_id(ORG_PREFIX), name: name.to_owned(), created_at: now_millis() };
        with_pool!(self, pool => sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&org.id).bind(&org.name).bind(org.created_at)
            .execute(pool).await.map(|done| done.rows_affected()))
        .map_err(|e| StoreError::unique(e, "org"))?;
        Ok(org)
    }

    pub async fn get_org(&self, org_id: &str) -> StoreResult<Option<OrgRecord>> {
        Ok(with_pool!(self, pool => sqlx::query_as::<_, OrgRecord>("SELECT id, name, created_at FROM orgs WHERE id = $1")
            .bind(org_id).fetch_optional(pool).await)?)
    }

    /// Creates a project in `org_id` (which must exist).
    pub async fn create_project(&self, org_id: &str, name: &str) -> StoreResult<ProjectRecord> {
        if self.get_org(org_id).await?.is_none() {
            return Err(StoreError::NotFound("org"));
        }
        let project =
            ProjectRecord { id: new_id(PROJECT_PREFIX), org_id: org_id.to_owned(), name: name.to_owned(), created_at: now_millis() };
        with_pool!(self, pool => sqlx::query("INSERT INTO projects (id, org_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&project.id).bind(&project.org_id).bind(&project.name).bind(project.created_at)
            .execute(pool).await.map(|done| done.rows_affected()))
        .map_err(|e| StoreError::unique(e, "project"))?;
        Ok(project)
    }

    pub async fn get_project(&self, project_id: &str) -> StoreResult<Option<ProjectRecord>> {
        Ok(with_pool!(self, pool => sqlx::query_as::<_, ProjectRecord>(
            "SELECT id, org_id, name, created_at FROM projects WHERE id = $1")
            .bind(project_id).fetch_optional(pool).await)?)
    }

    pub async fn list_projects(&self) -> StoreResult<Vec<ProjectRecord>> {
        Ok(with_pool!(self, pool => sqlx::query_as::<_, ProjectRecord>(
            "SELECT id, org_id, name, created_at FROM projects ORDER BY id")
            .fetch_all(pool).await)?)
    }

    pub async fn count_projects(&self) -> StoreResult<i64> {
        Ok(with_pool!(self, pool => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM projects").fetch_one(pool).await)?)
    }
}
