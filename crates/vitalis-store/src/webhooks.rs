//! Outbound webhooks: endpoints, the transactional outbox, deliveries and their attempts.
//! Events are written by resource changes inside their own transaction (see `users.rs`);
//! the dispatcher fans them out into deliveries (at most one batch per endpoint per pass)
//! and claims due deliveries with a lease, so a crash at any point leaves work to redo,
//! never work lost.

use vitalis_core::timefmt::now_millis;

use crate::refresh::in_write_tx;
use crate::{Backend, Store, StoreError, StoreResult, with_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebhookEndpointRecord {
    pub project_id: String,
    pub id: String,
    pub url: String,
    /// Space-separated event names and `family:*` patterns.
    pub events: String,
    pub enabled: bool,
    /// The HMAC secret, encrypted with the master key.
    pub secret_enc: String,
    pub disabled_reason: Option<String>,
    /// When the current run of failed deliveries began (cleared by a success).
    pub failing_since: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxEventRecord {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub user_id: Option<String>,
    pub data: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRecord {
    pub id: String,
    pub project_id: String,
    pub endpoint_id: String,
    pub body: String,
    pub event_count: i64,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRecord {
    pub delivery_id: String,
    pub attempt: i64,
    pub started_at: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// A delivery to create during fan-out.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub project_id: String,
    pub endpoint_id: String,
    pub body: String,
    pub event_count: i64,
}

/// What an attempt concluded.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub started_at: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// `pending` (retry at `next_attempt_at`), `succeeded` or `dead`.
    pub status: &'static str,
    pub next_attempt_at: i64,
}

pub(crate) const INSERT_OUTBOX_EVENT: &str =
    "INSERT INTO outbox_events (id, project_id, name, user_id, data, created_at) VALUES ($1, $2, $3, $4, $5, $6)";

impl Store {
    pub async fn insert_webhook_endpoint(&self, endpoint: &WebhookEndpointRecord) -> StoreResult<()> {
        with_pool!(self, pool => sqlx::query(
            "INSERT INTO webhook_endpoints (project_id, id, url, events, enabled, secret_enc, disabled_reason, failing_since, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, $7, $7)")
            .bind(&endpoint.project_id).bind(&endpoint.id).bind(&endpoint.url).bind(&endpoint.events).bind(endpoint.enabled)
            .bind(&endpoint.secret_enc).bind(now_millis())
            .execute(pool).await.map(|d| d.rows_affected()))
        .map_err(|e| StoreError::unique(e, "webhook endpoint"))?;
        Ok(())
    }

    pub async fn get_webhook_endpoint(&self, project_id: &str, id: &str) -> StoreResult<Option<WebhookEndpointRecord>> {
        const SQL: &str = "SELECT project_id, id, url, events, enabled, secret_enc, disabled_reason, failing_since, created_at, updated_at FROM webhook_endpoints WHERE project_id = $1 AND id = $2";
        Ok(with_pool!(self, pool => sqlx::query_as::<_, WebhookEndpointRecord>(SQL).bind(project_id).bind(id).fetch_optional(pool).await)?)
    }

    pub async fn list_webhook_endpoints(&self, project_id: &str) -> StoreResult<Vec<WebhookEndpointRecord>> {
        const SQL: &str = "SELECT project_id, id, url, events, enabled, secret_enc, disabled_reason, failing_since, created_at, updated_at FROM webhook_endpoints WHERE project_id = $1 ORDER BY id";
        Ok(with_pool!(self, pool => sqlx::query_as::<_, WebhookEndpointRecord>(SQL).bind(project_id).fetch_all(pool).await)?)
    }

    /// Saves url, events, enabled state, disabled reason and failure tracking.
    pub async fn update_webhook_endpoint(&self, endpoint: &WebhookEndpointRecord) -> StoreResult<()> {
        let done = with_pool!(self, pool => sqlx::query(
            "UPDATE webhook_endpoints SET url = $3, events = $4, enabled = $5, disabled_reason = $6, failing_since = $7, updated_at = $8
             WHERE project_id = $1 AND id = $2")
            .bind(&endpoint.project_id).bind(&endpoint.id).bind(&endpoint.url).bind(&endpoint.events).bind(endpoint.enabled)
            .bind(&endpoint.disabled_reason).bind(endpoint.failing_since).bind(now_millis())
            .execute(pool).await.map(|d| d.rows_affected()))?;
        if done == 0 { Err(StoreError::NotFound("webhook endpoint")) } else { Ok(()) }
    }

    pub async fn set_webhook_secret(&self, project_id: &str, id: &str, secret_enc: &str) -> StoreResult<()> {
        let done = with_pool!(self, pool => sqlx::query("UPDATE webhook_endpoints SET secret_enc = $3, updated_at = $4 WHERE project_id = $1 AND id = $2")
            .bind(project_id).bind(id).bind(secret_enc).bind(now_millis()).execute(pool).await.map(|d| d.rows_affected()))?;
        if done == 0 { Err(StoreError::NotFound("webhook endpoint")) } else { Ok(()) }
    }

    /// Deletes an endpoint; its undelivered deliveries die with it.
    pub async fn delete_webhook_endpoint(&self, project_id: &str, id: &str) -> StoreResult<bool> {
        let now = now_millis();
        Ok(in_write_tx!(self, conn => {
            let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE project_id = $1 AND id = $2").bind(project_id).bind(id)
                .execute(&mut *conn).await?.rows_affected() > 0;
            sqlx::query("UPDATE webhook_deliveries SET status = 'dead', last_error = 'endpoint deleted', updated_at = $3
                         WHERE project_id = $1 AND endpoint_id = $2 AND status = 'pending'")
                .bind(project_id).bind(id).bind(now).execute(&mut *conn).await?;
            deleted
        }))
    }

    /// Records a direct event for one endpoint (the "send a test event" action), outside the outbox.
    pub async fn insert_delivery(&self, delivery: &NewDelivery) -> StoreResult<()> {
        let now = now_millis();
        with_pool!(self, pool => sqlx::query(
            "INSERT INTO webhook_deliveries (id, project_id, endpoint_id, body, event_count, status, attempts, next_attempt_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $6)")
            .bind(&delivery.id).bind(&delivery.project_id).bind(&delivery.endpoint_id).bind(&delivery.body).bind(delivery.event_count).bind(now)
            .execute(pool).await.map(|d| d.rows_affected()))?;
        Ok(())
    }

    /// One fan-out pass in one transaction: takes up to `limit` outbox events (skipping rows
    /// another node holds, on PostgreSQL), lets `plan` turn them and the projects' enabled
    /// endpoints into deliveries, inserts those and marks the events done. Returns the
    /// number of events taken.
    pub async fn fan_out_outbox<F>(&self, limit: i64, plan: F) -> StoreResult<usize>
    where
        F: FnOnce(&[OutboxEventRecord], &[WebhookEndpointRecord], &std::collections::HashMap<String, String>) -> Vec<NewDelivery>,
    {
        let now = now_millis();
        let select = match self.backend {
            Backend::Sqlite(_) => {
                "SELECT id, project_id, name, user_id, data, created_at FROM outbox_events WHERE fanned_out = FALSE ORDER BY created_at, id LIMIT $1"
            }
            Backend::Postgres(_) => {
                "SELECT id, project_id, name, user_id, data, created_at FROM outbox_events WHERE fanned_out = FALSE ORDER BY created_at, id LIMIT $1 FOR UPDATE SKIP LOCKED"
            }
        };
        Ok(in_write_tx!(self, conn => {
            let events: Vec<OutboxEventRecord> = sqlx::query_as(sqlx::AssertSqlSafe(select)).bind(limit).fetch_all(&mut *conn).await?;
            if events.is_empty() {
                0
            } else {
                let mut projects: Vec<&str> = events.iter().map(|e| e.project_id.as_str()).collect();
                projects.sort_unstable();
                projects.dedup();
                let mut endpoints = Vec::new();
                let mut orgs = std::collections::HashMap::new();
                for project in projects {
                    let org: Option<String> = sqlx::query_scalar("SELECT org_id FROM projects WHERE id = $1").bind(project).fetch_optional(&mut *conn).await?;
                    orgs.insert(project.to_owned(), org.unwrap_or_default());
                    let found: Vec<WebhookEndpointRecord> = sqlx::query_as(
                        "SELECT project_id, id, url, events, enabled, secret_enc, disabled_reason, failing_since, created_at, updated_at
                         FROM webhook_endpoints WHERE project_id = $1 AND enabled = TRUE ORDER BY id")
                        .bind(project).fetch_all(&mut *conn).await?;
                    endpoints.extend(found);
                }
                // One millisecond apart, so ordering by creation keeps the plan's order.
                for (i, delivery) in plan(&events, &endpoints, &orgs).into_iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO webhook_deliveries (id, project_id, endpoint_id, body, event_count, status, attempts, next_attempt_at, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $6)")
                        .bind(&delivery.id).bind(&delivery.project_id).bind(&delivery.endpoint_id).bind(&delivery.body).bind(delivery.event_count).bind(now + i as i64)
                        .execute(&mut *conn).await?;
                }
                for event in &events {
                    sqlx::query("UPDATE outbox_events SET fanned_out = TRUE WHERE id = $1").bind(&event.id).execute(&mut *conn).await?;
                }
                events.len()
            }
        }))
    }

    /// Claims up to `limit` due deliveries for `lease_ms` (a crashed worker's lease expires
    /// and the delivery is claimed again, with the same id).
    pub async fn claim_due_deliveries(&self, now: i64, lease_ms: i64, limit: i64) -> StoreResult<Vec<DeliveryRecord>> {
        let sql = match self.backend {
            Backend::Sqlite(_) => {
                "UPDATE webhook_deliveries SET locked_until = $2 + $3
                 WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $2
                              AND (locked_until IS NULL OR locked_until < $2) ORDER BY next_attempt_at, created_at LIMIT $1)
                 RETURNING id, project_id, endpoint_id, body, event_count, status, attempts, next_attempt_at, last_status, last_error, created_at, updated_at"
            }
            Backend::Postgres(_) => {
                "UPDATE webhook_deliveries SET locked_until = $2 + $3
                 WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $2
                              AND (locked_until IS NULL OR locked_until < $2) ORDER BY next_attempt_at, created_at LIMIT $1 FOR UPDATE SKIP LOCKED)
                 RETURNING id, project_id, endpoint_id, body, event_count, status, attempts, next_attempt_at, last_status, last_error, created_at, updated_at"
            }
        };
        let mut claimed = with_pool!(self, pool => sqlx::query_as::<_, DeliveryRecord>(sqlx::AssertSqlSafe(sql)).bind(limit).bind(now).bind(lease_ms).fetch_all(pool).await)?;
        claimed.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(claimed)
    }

    /// Stores attempts and their deliveries' new states, releasing the leases, in one
    /// transaction (the dispatcher group-commits its results).
    pub async fn record_attempts(&self, results: &[(String, AttemptOutcome)]) -> StoreResult<()> {
        let now = now_millis();
        in_write_tx!(self, conn => {
            for (delivery_id, outcome) in results {
                let attempt: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(attempt), 0) + 1 FROM webhook_attempts WHERE delivery_id = $1")
                    .bind(delivery_id).fetch_one(&mut *conn).await?;
                sqlx::query("INSERT INTO webhook_attempts (delivery_id, attempt, started_at, status_code, latency_ms, error) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(delivery_id).bind(attempt).bind(outcome.started_at).bind(outcome.status_code).bind(outcome.latency_ms).bind(&outcome.error)
                    .execute(&mut *conn).await?;
                sqlx::query("UPDATE webhook_deliveries SET status = $2, attempts = attempts + 1, next_attempt_at = $3, locked_until = NULL,
                                last_status = $4, last_error = $5, updated_at = $6 WHERE id = $1")
                    .bind(delivery_id).bind(outcome.status).bind(outcome.next_attempt_at).bind(outcome.status_code).bind(&outcome.error).bind(now)
                    .execute(&mut *conn).await?;
            }
        });
        Ok(())
    }

    /// Dead-letters an endpoint's pending deliveries (used when it is disabled by a 410).
    pub async fn dead_letter_pending(&self, project_id: &str, endpoint_id: &str, reason: &str) -> StoreResult<u64> {
        Ok(with_pool!(self, pool => sqlx::query(
            "UPDATE webhook_deliveries SET status = 'dead', last_error = $3, locked_until = NULL, updated_at = $4
             WHERE project_id = $1 AND endpoint_id = $2 AND status = 'pending'")
            .bind(project_id).bind(endpoint_id).bind(reason).bind(now_millis()).execute(pool).await.map(|d| d.rows_affected()))?)
    }

    /// An endpoint's deliveries, newest first, after the cursor `(created_at, id)`.
    pub async fn list_deliveries(
        &self,
        project_id: &str,
        endpoint_id: &str,
        status: Option<&str>,
        before: Option<(i64, String)>,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        let (before_at, before_id) = before.unwrap_or((i64::MAX, String::new()));
        const SQL: &str = "SELECT id, project_id, endpoint_id, body, event_count, status, attempts, next_attempt_at, last_status, last_error, created_at, updated_at
             FROM webhook_deliveries WHERE project_id = $1 AND endpoint_id = $2 AND ($3 = '' OR status = $3)
               AND (created_at < $4 OR (created_at = $4 AND ($5 = '' OR id < $5)))
             ORDER BY created_at DESC, id DESC LIMIT $6";
        Ok(with_pool!(self, pool => sqlx::query_as::<_, DeliveryRecord>(SQL)
            .bind(project_id).bind(endpoint_id).bind(status.unwrap_or("")).bind(before_at).bind(before_id).bind(limit).fetch_all(pool).await)?)
    }

    pub async fn get_delivery(&self, project_id: &str, delivery_id: &str) -> StoreResult<Option<DeliveryRecord>> {
        const SQL: &str = "SELECT id, project_id, endpoint_id, body, event_count, status, attempts, next_attempt_at, last_status, last_error, created_at, updated_at
             FROM webhook_deliveries WHERE project_id = $1 AND id = $2";
        Ok(
            with_pool!(self, pool => sqlx::query_as::<_, DeliveryRecord>(SQL).bind(project_id).bind(delivery_id).fetch_optional(pool).await)?,
        )
    }

    pub async fn list_attempts(&self, delivery_id: &str) -> StoreResult<Vec<AttemptRecord>> {
        Ok(with_pool!(self, pool => sqlx::query_as::<_, AttemptRecord>(
            "SELECT delivery_id, attempt, started_at, status_code, latency_ms, error FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt")
            .bind(delivery_id).fetch_all(pool).await)?)
    }

    /// Queues finished deliveries of an endpoint again (same ids), one or all created in
    /// `[from, to]`; returns how many. The retry budget starts over.
    pub async fn redeliver(&self, project_id: &str, endpoint_id: &str, delivery_id: Option<&str>, from: i64, to: i64) -> StoreResult<u64> {
        let now = now_millis();
        const SQL: &str = "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $6, locked_until = NULL, updated_at = $6
             WHERE project_id = $1 AND endpoint_id = $2 AND status <> 'pending' AND ($3 = '' OR id = $3) AND created_at >= $4 AND created_at <= $5";
        Ok(with_pool!(self, pool => sqlx::query(SQL)
            .bind(project_id).bind(endpoint_id).bind(delivery_id.unwrap_or("")).bind(from).bind(to).bind(now)
            .execute(pool).await.map(|d| d.rows_affected()))?)
    }
}
