//! Test harness: starts the real server in-process on an ephemeral port, on a fresh
//! SQLite file or a fresh PostgreSQL database, with one project and one confidential client.
//! PostgreSQL tests need `VITALIS_TEST_POSTGRES_URL` (set by `scripts/test.sh`); without it
//! they fail loudly rather than skip.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use vitalis::config::Config;
use vitalis::server;
use vitalis_api::AppState;
use vitalis_auth::MasterKey;
use vitalis_auth::admin::{ClientSpec, create_client};
use vitalis_store::{ClientKind, Store};

pub const ISSUER: &str = "http://vitalis.test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a test body once per backend: `backend_tests!(name, |app| async move { ... });`
#[macro_export]
macro_rules! backend_tests {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = common::TestApp::spawn(common::Backend::Sqlite).await;
                ($body)(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let app = common::TestApp::spawn(common::Backend::Postgres).await;
                ($body)(app).await;
            }
        }
    };
}

/// A fresh database URL for `backend` (the temp dir must outlive the test).
pub async fn fresh_database(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join("vitalis.db").display()),
        Backend::Postgres => {
            use sqlx::Connection;
            let admin_url = std::env::var("VITALIS_TEST_POSTGRES_URL")
                .expect("VITALIS_TEST_POSTGRES_URL is not set: run the suite with scripts/test.sh, which starts a throwaway PostgreSQL");
            let name = format!("vt_{}", ulid::Ulid::generate().to_string().to_lowercase());
            let mut conn = sqlx::PgConnection::connect(&admin_url).await.expect("connect to the test PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.expect("create test database");
            let (base, _) = admin_url.rsplit_once('/').expect("the URL names a database");
            format!("{base}/{name}")
        }
    }
}

pub struct TestApp {
    pub backend: Backend,
    pub base_url: String,
    pub http: reqwest::Client,
    pub state: AppState,
    pub store: Store,
    pub master: MasterKey,
    pub project_id: String,
    pub org_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Like [`TestApp::spawn`], letting the test adjust the configuration first.
    pub async fn spawn_with(backend: Backend, customize: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let master = MasterKey::generate();
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.path().to_path_buf(),
            database_url: Some(fresh_database(backend, dir.path()).await),
            public_url: Some(ISSUER.into()),
            master_key: Some(master.to_base64()),
            db_max_connections: 8,
            idp_jwks_min_refetch_secs: 0,
            ..Config::default()
        };
        customize(&mut config);
        let mut prepared = server::prepare(&config).await.expect("server prepares");
        // Fast background reloads, so tests see other writers' changes quickly.
        prepared.intervals.key_reload = Duration::from_millis(200);
        prepared.intervals.revocation_reload = Duration::from_millis(200);
        let store = prepared.store.clone();
        let state = prepared.state.clone();
        let org = store.create_org("Test org").await.unwrap();
        let project = store.create_project(&org.id, "Test project").await.unwrap();
        let client = create_client(
            &store,
            &project.id,
            ClientSpec {
                client_id: Some("server".into()),
                name: "test server".into(),
                kind: ClientKind::Confidential,
                allowed_scopes: None,
                default_scopes: None,
                allowed_grants: None,
            },
        )
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(server::serve(prepared, listener, async move {
            let _ = rx.await;
        }));
        Self {
            backend,
            base_url,
            http: reqwest::Client::new(),
            state,
            store,
            master,
            project_id: project.id,
            org_id: org.id,
            client_id: client.client.client_id,
            client_secret: client.client_secret.unwrap(),
            config,
            shutdown: Some(tx),
            server: Some(server),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A server token for the test project with `scope` (client defaults when empty).
    pub async fn server_token(&self, scope: &str) -> String {
        let response = self
            .http
            .post(self.url(&format!("/v1/projects/{}/auth/server", self.project_id)))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .json(&serde_json::json!({ "scope": scope }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "token request failed");
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Creates another project with its own confidential client; returns (project_id, secret).
    pub async fn second_project(&self) -> (String, String) {
        let project = self.store.create_project(&self.org_id, "Other project").await.unwrap();
        let client = create_client(
            &self.store,
            &project.id,
            ClientSpec {
                client_id: Some("server".into()),
                name: "other".into(),
                kind: ClientKind::Confidential,
                allowed_scopes: None,
                default_scopes: None,
                allowed_grants: None,
            },
        )
        .await
        .unwrap();
        (project.id, client.client_secret.unwrap())
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

/// Asserts the JSON error shape and code; returns the body.
pub async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    let body: Value = response.json().await.expect("error bodies are JSON");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    body
}

/// Asserts an RFC 6749 error body; returns it.
pub async fn expect_oauth_error(response: reqwest::Response, status: u16, error: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    assert_eq!(response.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    if status == 401 {
        assert!(response.headers().get("www-authenticate").is_some(), "401 needs WWW-Authenticate");
    }
    let body: Value = response.json().await.expect("OAuth error bodies are JSON");
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    body
}
pub mod idp;
pub mod process;
pub mod receiver;
