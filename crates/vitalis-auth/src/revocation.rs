//! The in-memory view of revocations that bearer verification checks on every request:
//! revoked access-token ids, revoked clients, deleted users. This node's own revocations
//! apply at once; other nodes' arrive with the periodic reload from the store.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use vitalis_core::timefmt::now_millis;
use vitalis_store::{RevocationKind, Store, StoreError};

use crate::tokens::{AccessClaims, PrincipalType};

/// Rows committed slightly out of order are still seen: each reload re-reads this far back.
const RELOAD_OVERLAP_MS: i64 = 10_000;

#[derive(Default)]
struct State {
    /// (kind, project, subject) -> (revoked_at ms, expires_at ms)
    entries: HashMap<(RevocationKind, String, String), (i64, i64)>,
    watermark: i64,
}

pub struct RevocationList {
    store: Store,
    state: RwLock<State>,
}

impl RevocationList {
    pub async fn load(store: Store) -> Result<Self, StoreError> {
        let list = Self { store, state: RwLock::new(State::default()) };
        list.reload().await?;
        Ok(list)
    }

    /// Reads revocations recorded since the last reload and forgets expired ones.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let now = now_millis();
        let since = self.state.read().expect("revocation lock").watermark - RELOAD_OVERLAP_MS;
        let rows = self.store.list_revocations_since(since.max(0), now).await?;
        let mut state = self.state.write().expect("revocation lock");
        for row in rows {
            if let Some(kind) = RevocationKind::parse(&row.kind) {
                state.watermark = state.watermark.max(row.revoked_at);
                state.entries.insert((kind, row.project_id, row.subject), (row.revoked_at, row.expires_at));
            }
        }
        state.entries.retain(|_, (_, expires_at)| *expires_at > now);
        Ok(())
    }

    /// Records a revocation this node just committed, so it applies before the next reload.
    pub fn record(&self, kind: RevocationKind, project_id: &str, subject: &str, revoked_at: i64, expires_at: i64) {
        self.state
            .write()
            .expect("revocation lock")
            .entries
            .insert((kind, project_id.to_owned(), subject.to_owned()), (revoked_at, expires_at));
    }

    /// Whether a token with these (already verified) claims has been revoked.
    pub fn is_revoked(&self, claims: &AccessClaims) -> bool {
        let state = self.state.read().expect("revocation lock");
        if state.entries.is_empty() {
            return false;
        }
        let key = |kind: RevocationKind, subject: &str| (kind, claims.project_id.clone(), subject.to_owned());
        if state.entries.contains_key(&key(RevocationKind::Jti, &claims.jti)) {
            return true;
        }
        let issued_ms = claims.iat * 1000;
        let before = |kind, subject: &str| state.entries.get(&key(kind, subject)).is_some_and(|(revoked_at, _)| issued_ms <= *revoked_at);
        match claims.principal_type {
            PrincipalType::Client => before(RevocationKind::Client, &claims.sub),
            PrincipalType::User => claims.user_id.as_deref().is_some_and(|user| before(RevocationKind::User, user)),
        }
    }

    pub fn spawn_reload(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let list = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(list) = list.upgrade() else { break };
                if let Err(err) = list.reload().await {
                    tracing::warn!(error = %err, "reloading revocations failed");
                }
            }
        })
    }
}
