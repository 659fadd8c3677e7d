//! Wiring: open the store, resolve the master key, load signing keys, build the app and
//! serve it until a shutdown signal, letting in-flight requests finish.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use vitalis_api::limits::LimitSettings;
use vitalis_api::{AppState, HttpSettings};
use vitalis_auth::admin::{DemoTenant, bootstrap_demo_tenant};
use vitalis_auth::assertions::AssertionConfig;
use vitalis_auth::{Authority, AuthorityConfig, KeyRing, MasterKey};
use vitalis_store::{Store, StoreOptions};
use vitalis_webhooks::dispatcher::{Dispatcher, DispatcherConfig};

use crate::config::Config;

/// Opens the configured database (creating the data directory for SQLite) and migrates it.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    if config.uses_embedded_database() {
        std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    }
    let options = StoreOptions { max_connections: config.db_max_connections, ..StoreOptions::default() };
    let store = Store::connect(&config.database_url(), &options).await.context("opening the database")?;
    store.migrate().await.context("migrating the database")?;
    Ok(store)
}

/// The master key: `master_key` from the configuration, else `master.key` in the data
/// directory; in dev mode that file is created (0600) when missing.
pub fn resolve_master_key(config: &Config) -> anyhow::Result<MasterKey> {
    if let Some(value) = &config.master_key {
        return MasterKey::from_base64(value).context("master_key");
    }
    let path = config.master_key_file();
    if path.exists() {
        let value = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        return MasterKey::from_base64(&value).with_context(|| format!("master key file {}", path.display()));
    }
    if !config.dev {
        bail!("no master key: set VITALIS_MASTER_KEY (32 random bytes, base64: `openssl rand -base64 32`) or run with --dev");
    }
    std::fs::create_dir_all(&config.data_dir)?;
    let key = MasterKey::generate();
    write_private_file(&path, &key.to_base64())?;
    tracing::warn!(path = %path.display(), "dev mode: generated a master key; set master_key in production");
    Ok(key)
}

fn write_private_file(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// Everything a running server holds.
pub struct Prepared {
    pub state: AppState,
    pub store: Store,
    pub keys: Arc<KeyRing>,
    pub authority: Arc<Authority>,
    /// Set on the first `--dev` start only.
    pub demo: Option<DemoTenant>,
    pub intervals: Intervals,
    /// The webhook dispatcher, unless this node runs the API only.
    pub dispatcher: Option<Arc<Dispatcher>>,
}

/// How often background tasks run.
#[derive(Debug, Clone, Copy)]
pub struct Intervals {
    /// Signing keys (rotations made elsewhere).
    pub key_reload: Duration,
    /// Revocations made by other nodes.
    pub revocation_reload: Duration,
    /// Upstream identity providers' JWKS.
    pub idp_jwks_refresh: Duration,
}

/// Builds the application state from the configuration.
pub async fn prepare(config: &Config) -> anyhow::Result<Prepared> {
    let store = open_store(config).await?;
    let master = resolve_master_key(config)?;
    let demo = if config.dev { bootstrap_demo_tenant(&store).await.context("creating the demo tenant")? } else { None };
    let leeway = Duration::from_secs(config.token_leeway_secs);
    let keys =
        Arc::new(KeyRing::load(store.clone(), master.clone(), config.access_token_ttl() + leeway).await.context("loading signing keys")?);
    let dispatcher = config.webhook_dispatcher.then(|| {
        Arc::new(Dispatcher::new(
            store.clone(),
            master.clone(),
            DispatcherConfig {
                poll_interval: Duration::from_millis(config.webhook_poll_interval_ms),
                batch_window: Duration::from_millis(config.webhook_batch_window_ms),
                retry_schedule: config.webhook_retry_schedule_ms.iter().map(|ms| Duration::from_millis(*ms)).collect(),
                request_timeout: Duration::from_secs(config.webhook_request_timeout_secs),
                lease: Duration::from_secs(config.webhook_lease_secs),
                max_in_flight: config.webhook_max_in_flight,
                disable_after: Duration::from_secs(config.webhook_disable_after_secs),
                policy: config.webhook_targets(),
            },
        ))
    });
    let authority_config = AuthorityConfig {
        issuer: config.issuer(),
        audience_prefix: config.audience_prefix.clone(),
        access_token_ttl: config.access_token_ttl(),
        leeway,
        refresh_idle_ttl: Duration::from_secs(config.refresh_token_idle_ttl_secs),
        refresh_absolute_ttl: Duration::from_secs(config.refresh_token_absolute_ttl_secs),
        refresh_reuse_grace: Duration::from_secs(config.refresh_token_reuse_grace_secs),
        idp_jwks_min_refetch: Duration::from_secs(config.idp_jwks_min_refetch_secs),
        assertions: AssertionConfig {
            issuer: config.assertion_issuer.clone(),
            audience: config.assertion_audience.clone(),
            max_lifetime: Duration::from_secs(config.assertion_max_lifetime_secs),
            leeway,
        },
    };
    let authority = Arc::new(
        Authority::start(store.clone(), keys.clone(), master, authority_config).await.context("starting the authorization server")?,
    );
    let http = HttpSettings {
        cors_allowed_origins: config.cors_allowed_origins.clone(),
        request_timeout: Duration::from_secs(config.request_timeout_secs),
        body_limit: config.body_limit_bytes,
        trust_forwarded_for: config.trust_forwarded_for,
        limits: LimitSettings {
            auth_failures_per_minute: config.auth_failures_per_minute,
            requests_per_second_per_ip: config.token_requests_per_second_per_ip,
            requests_per_second_per_client: config.token_requests_per_second_per_client,
        },
        webhook_targets: config.webhook_targets(),
    };
    let state = AppState::new(store.clone(), authority.clone(), http);
    let intervals = Intervals {
        key_reload: Duration::from_secs(config.key_reload_secs),
        revocation_reload: Duration::from_secs(config.revocation_reload_secs),
        idp_jwks_refresh: Duration::from_secs(config.idp_jwks_refresh_secs),
    };
    Ok(Prepared { state, store, keys, authority, demo, intervals, dispatcher })
}

/// Serves until `shutdown` resolves, then drains in-flight requests and closes the store.
pub async fn serve(prepared: Prepared, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let intervals = prepared.intervals;
    let background = [
        prepared.keys.spawn_refresh(intervals.key_reload),
        prepared.authority.revocations().spawn_reload(intervals.revocation_reload),
        prepared.authority.upstream().spawn_refresh(prepared.store.clone(), intervals.idp_jwks_refresh),
    ];
    let (stop_dispatcher, stopped) = tokio::sync::watch::channel(false);
    let dispatcher = prepared.dispatcher.map(|dispatcher| {
        let mut stopped = stopped.clone();
        tokio::spawn(dispatcher.run(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }))
    });
    let app = vitalis_api::app(prepared.state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await.context("serving HTTP");
    // HTTP has drained; let deliveries in flight finish before the store closes.
    let _ = stop_dispatcher.send(true);
    if let Some(dispatcher) = dispatcher {
        let _ = dispatcher.await;
    }
    for task in background {
        task.abort();
    }
    served?;
    prepared.store.close().await;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
