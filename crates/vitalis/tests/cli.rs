//! The `vitalis` binary as a newcomer runs it: `serve --dev` prints demo credentials once,
//! the quickstart works, admin commands drive a running server's store, SIGTERM shuts
//! down cleanly, a restart keeps the data, and no secret or token reaches the logs.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::Backend;
use common::process::ServerProcess;
use serde_json::{Value, json};

fn start_server(data_dir: &Path, database_url: &str, log: &Path) -> ServerProcess {
    let env = [
        ("VITALIS_DATABASE_URL", database_url.to_owned()),
        ("VITALIS_KEY_RELOAD_SECS", "1".to_owned()),
        ("VITALIS_LOG_FORMAT", "json".to_owned()),
        ("RUST_LOG", "debug".to_owned()),
    ];
    ServerProcess::start(data_dir, &["--dev"], &env, log)
}

fn vitalis(data_dir: &Path, database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vitalis"));
    command.arg("--data-dir").arg(data_dir).env("VITALIS_DATABASE_URL", database_url).env_remove("VITALIS_MASTER_KEY");
    command
}

fn field<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

fn admin(data_dir: &Path, database_url: &str, args: &[&str]) -> Value {
    let output = vitalis(data_dir, database_url).args(args).arg("--json").output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{args:?} printed no JSON: {}", String::from_utf8_lossy(&output.stdout)))
}

fn terminate(mut server: ServerProcess) {
    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit}");
}

async fn server_token(http: &reqwest::Client, base: &str, project: &str, id: &str, secret: &str, scope: &str) -> reqwest::Response {
    http.post(format!("{base}/v1/projects/{project}/auth/server"))
        .basic_auth(id, Some(secret))
        .json(&json!({"scope": scope}))
        .send()
        .await
        .unwrap()
}

async fn newcomer_flow(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let database_url = match backend {
        Backend::Sqlite => format!("sqlite://{}", data_dir.join("vitalis.db").display()),
        Backend::Postgres => common::fresh_database(backend, dir.path()).await,
    };
    let log = dir.path().join("server.log");
    let http = reqwest::Client::new();

    // First start prints the demo tenant once.
    let server = start_server(&data_dir, &database_url, &log);
    let project = field(&server.stdout_lines, "project_id").expect("project_id line").to_owned();
    let client_id = field(&server.stdout_lines, "client_id").expect("client_id line").to_owned();
    let secret = field(&server.stdout_lines, "client_secret").expect("client_secret line").to_owned();
    let base = server.base_url.clone();

    // The quickstart.
    let response = server_token(&http, &base, &project, &client_id, &secret, "users:create users:read").await;
    assert_eq!(response.status(), 200);
    let token: Value = response.json().await.unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let user = json!({"id": "user_123", "firstname": "Avery", "lastname": "Smith", "language": "en", "measurement_unit": "metric", "tz_offset": 3600});
    let response = http.post(format!("{base}/users")).bearer_auth(&token).json(&user).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let list: Value = http.get(format!("{base}/users?limit=10")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["users"][0]["id"], "user_123");

    // Admin commands against the live store.
    let projects = admin(&data_dir, &database_url, &["project", "list"]);
    assert!(projects.as_array().unwrap().iter().any(|p| p["project_id"] == project));
    let created = admin(&data_dir, &database_url, &["client", "create", "--project", &project, "--id", "reader", "--scopes", "users:read"]);
    let reader_secret = created["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(server_token(&http, &base, &project, "reader", &reader_secret, "users:read").await.status(), 200);
    assert_eq!(server_token(&http, &base, &project, "reader", &reader_secret, "users:create").await.status(), 400);
    let rotated = admin(&data_dir, &database_url, &["client", "rotate-secret", "--project", &project, "--id", "reader"]);
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(server_token(&http, &base, &project, "reader", &reader_secret, "users:read").await.status(), 401);
    assert_eq!(server_token(&http, &base, &project, "reader", &new_secret, "users:read").await.status(), 200);
    admin(&data_dir, &database_url, &["client", "revoke", "--project", &project, "--id", "reader"]);
    assert_eq!(server_token(&http, &base, &project, "reader", &new_secret, "users:read").await.status(), 401);
    let clients = admin(&data_dir, &database_url, &["client", "list", "--project", &project]);
    assert_eq!(clients.as_array().unwrap().len(), 2);
    assert!(clients.to_string().find("secret").is_none(), "listing never shows secrets or hashes");
    let key = admin(&data_dir, &database_url, &["keys", "rotate"]);
    let kid = key["kid"].as_str().unwrap().to_owned();
    let mut published = false;
    for _ in 0..40 {
        let jwks: Value = http.get(format!("{base}/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
        if jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == kid.as_str()) {
            assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
            published = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(published, "the running server picks up a key rotated by the CLI");
    assert_eq!(
        http.get(format!("{base}/users?limit=10")).bearer_auth(&token).send().await.unwrap().status(),
        200,
        "pre-rotation token still valid"
    );

    terminate(server);

    // Restart: nothing printed again, data and credentials kept.
    let server = start_server(&data_dir, &database_url, &log);
    assert!(field(&server.stdout_lines, "client_secret").is_none(), "credentials are shown once: {:?}", server.stdout_lines);
    let base = server.base_url.clone();
    let response = server_token(&http, &base, &project, &client_id, &secret, "users:read").await;
    assert_eq!(response.status(), 200);
    let token2: Value = response.json().await.unwrap();
    let token2 = token2["access_token"].as_str().unwrap().to_owned();
    let fetched: Value = http.get(format!("{base}/users/user_123")).bearer_auth(&token2).send().await.unwrap().json().await.unwrap();
    assert_eq!(fetched["firstname"], "Avery");
    terminate(server);

    // No secret or token in any log line (debug level, JSON format).
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.lines().count() > 10, "the server logged requests");
    assert!(logs.contains("request_id"), "log lines carry the request id");
    for needle in [secret.as_str(), reader_secret.as_str(), new_secret.as_str(), token.as_str(), token2.as_str()] {
        assert!(!logs.contains(needle), "a secret or token leaked into the logs");
    }
    let master = std::fs::read_to_string(data_dir.join("master.key")).unwrap();
    assert!(!logs.contains(master.trim()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newcomer_flow_sqlite() {
    newcomer_flow(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newcomer_flow_postgres() {
    newcomer_flow(Backend::Postgres).await;
}

#[test]
fn serve_without_master_key_outside_dev_mode_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = vitalis(dir.path(), &format!("sqlite://{}/v.db", dir.path().display()))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("VITALIS_MASTER_KEY"));
}
