//! Command line: `serve`, `migrate`, and admin commands that print readable text, or JSON
//! with `--json` so scripts can drive them.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use vitalis_auth::admin::{ClientSpec, CreatedClient, create_client, rotate_client_secret};
use vitalis_auth::keyring::rotate_signing_key;
use vitalis_core::timefmt::rfc3339_from_millis;
use vitalis_store::{ClientKind, ClientRecord, Store};

use crate::config::Config;
use crate::server;

#[derive(Debug, Parser)]
#[command(name = "vitalis", version, about = "Vitalis: self-hostable Health API server")]
pub struct Cli {
    /// TOML configuration file (default: ./vitalis.toml if present).
    #[arg(long, global = true, env = "VITALIS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (embedded database, dev master key); overrides `data_dir`.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage projects.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage token signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage trusted upstream identity providers (for token exchange).
    #[command(subcommand)]
    Idp(IdpCommand),
}

#[derive(Debug, Subcommand)]
pub enum IdpCommand {
    /// Trust an OIDC provider's ID tokens for a project.
    Add {
        #[arg(long)]
        project: String,
        /// Your name for the provider, e.g. `google`.
        #[arg(long = "id")]
        idp_id: String,
        /// The `iss` its ID tokens carry.
        #[arg(long)]
        issuer: String,
        #[arg(long, conflicts_with = "discovery_url")]
        jwks_url: Option<String>,
        #[arg(long)]
        discovery_url: Option<String>,
        /// Accepted `aud` value (repeatable).
        #[arg(long = "audience", required = true)]
        audiences: Vec<String>,
        /// The claim that identifies the user (default `sub`).
        #[arg(long)]
        user_id_claim: Option<String>,
        /// Prepended to the claim value to form the user id.
        #[arg(long)]
        user_id_prefix: Option<String>,
        /// Create unknown users on their first exchange.
        #[arg(long)]
        create_users: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List a project's identity providers.
    List {
        #[arg(long)]
        project: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Stop trusting a provider.
    Remove {
        #[arg(long)]
        project: String,
        #[arg(long = "id")]
        idp_id: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; overrides `listen`.
    #[arg(long)]
    pub listen: Option<String>,
    /// Development mode: create a master key and a demo project and client on first start.
    #[arg(long)]
    pub dev: bool,
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project (and an organisation for it unless --org is given).
    Create {
        #[arg(long)]
        name: String,
        /// Existing organisation id (`org_...`).
        #[arg(long)]
        org: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List projects.
    List {
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create an OAuth client; a confidential client's secret is printed once.
    Create {
        #[arg(long)]
        project: String,
        /// Client id (default: a generated `cli_...` id).
        #[arg(long = "id")]
        client_id: Option<String>,
        #[arg(long, default_value = "OAuth client")]
        name: String,
        /// A public client (no secret).
        #[arg(long)]
        public: bool,
        /// Allowed scopes, space-separated (default: all).
        #[arg(long)]
        scopes: Option<String>,
        /// Scopes granted when a request names none (default: the allowed scopes).
        #[arg(long)]
        default_scopes: Option<String>,
        /// Allowed grant types, space-separated (default: client_credentials for confidential clients).
        #[arg(long)]
        grants: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List a project's clients.
    List {
        #[arg(long)]
        project: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Replace a client's secret; the new one is printed once and the old one stops working.
    RotateSecret {
        #[arg(long)]
        project: String,
        #[arg(long = "id")]
        client_id: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Revoke a client: it can no longer obtain tokens.
    Revoke {
        #[arg(long)]
        project: String,
        #[arg(long = "id")]
        client_id: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a new signing key; older keys keep verifying until their tokens expire.
    Rotate {
        #[command(flatten)]
        out: JsonFlag,
    },
}

/// Loads the configuration with the global flags applied.
pub fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    if let Command::Serve(args) = &cli.command {
        if let Some(listen) = &args.listen {
            config.listen = listen.clone();
        }
        config.dev |= args.dev;
    }
    config.validate()?;
    Ok(config)
}

/// Runs one command to completion.
pub async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(_) => serve(config).await,
        Command::Migrate => {
            let store = server::open_store(&config).await?;
            println!("database at {} is up to date ({})", redact_url(&config.database_url()), store.backend_name());
            store.close().await;
            Ok(())
        }
        Command::Project(command) => with_store(&config, |store| project_command(store, command)).await,
        Command::Client(command) => {
            let horizon_ms = (config.access_token_ttl_secs + config.token_leeway_secs) as i64 * 1000;
            with_store(&config, |store| client_command(store, command, horizon_ms)).await
        }
        Command::Idp(command) => with_store(&config, |store| idp_command(store, command)).await,
        Command::Keys(KeysCommand::Rotate { out }) => {
            let store = server::open_store(&config).await?;
            let master = server::resolve_master_key(&config)?;
            let key = rotate_signing_key(&store, &master).await?;
            store.close().await;
            emit(&out, json!({"kid": key.kid, "alg": key.alg, "created_at": rfc3339_from_millis(key.created_at)}), || {
                format!(
                    "new signing key: {} ({})\nrunning servers pick it up within key_reload_secs; older keys verify until their tokens expire",
                    key.kid, key.alg
                )
            });
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let prepared = server::prepare(&config).await?;
    if let Some(demo) = &prepared.demo {
        // Shown once: the secret is stored only as a hash.
        println!("Demo tenant created (shown once; the secret is stored only as a hash):");
        println!("org_id: {}", demo.org.id);
        println!("project_id: {}", demo.project.id);
        println!("client_id: {}", demo.client_id);
        println!("client_secret: {}", demo.client_secret);
    }
    let listener = tokio::net::TcpListener::bind(&config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr()?;
    println!("listening on http://{address} (database: {}, docs: http://{address}/docs)", prepared.store.backend_name());
    tracing::info!(%address, database = prepared.store.backend_name(), "vitalis serving");
    server::serve(prepared, listener, server::shutdown_signal()).await
}

async fn with_store<F, Fut>(config: &Config, f: F) -> anyhow::Result<()>
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let store = server::open_store(config).await?;
    let result = f(store.clone()).await;
    store.close().await;
    result
}

async fn project_command(store: Store, command: ProjectCommand) -> anyhow::Result<()> {
    match command {
        ProjectCommand::Create { name, org, out } => {
            let org_id = match org {
                Some(id) => id,
                None => store.create_org(&name).await?.id,
            };
            let project = store.create_project(&org_id, &name).await.map_err(|e| anyhow::anyhow!("{e} (org {org_id})"))?;
            emit(&out, json!({"project_id": project.id, "org_id": project.org_id, "name": project.name}), || {
                format!("project_id: {}\norg_id: {}\nname: {}", project.id, project.org_id, project.name)
            });
        }
        ProjectCommand::List { out } => {
            let projects = store.list_projects().await?;
            let rows: Vec<_> = projects
                .iter()
                .map(|p| json!({"project_id": p.id, "org_id": p.org_id, "name": p.name, "created_at": rfc3339_from_millis(p.created_at)}))
                .collect();
            emit(&out, json!(rows), || {
                let mut text = format!("{:<32} {:<32} NAME", "PROJECT", "ORG");
                for p in &projects {
                    text.push_str(&format!("\n{:<32} {:<32} {}", p.id, p.org_id, p.name));
                }
                text
            });
        }
    }
    Ok(())
}

fn client_json(client: &ClientRecord) -> serde_json::Value {
    json!({
        "project_id": client.project_id, "client_id": client.client_id, "name": client.name, "kind": client.kind,
        "allowed_scopes": client.allowed_scopes, "default_scopes": client.default_scopes, "allowed_grants": client.allowed_grants,
        "created_at": rfc3339_from_millis(client.created_at),
        "revoked_at": client.revoked_at.map(rfc3339_from_millis),
    })
}

async fn client_command(store: Store, command: ClientCommand, horizon_ms: i64) -> anyhow::Result<()> {
    match command {
        ClientCommand::Create { project, client_id, name, public, scopes, default_scopes, grants, out } => {
            let kind = if public { ClientKind::Public } else { ClientKind::Confidential };
            let spec = ClientSpec { client_id, name, kind, allowed_scopes: scopes, default_scopes, allowed_grants: grants };
            let CreatedClient { client, client_secret } = create_client(&store, &project, spec).await?;
            let mut value = client_json(&client);
            value["client_secret"] = json!(client_secret);
            emit(&out, value, || {
                let mut text = format!("client_id: {}\nkind: {}\nallowed_scopes: {}", client.client_id, client.kind, client.allowed_scopes);
                if let Some(secret) = &client_secret {
                    text.push_str(&format!("\nclient_secret: {secret}\n(shown once; only its hash is stored)"));
                }
                text
            });
        }
        ClientCommand::List { project, out } => {
            let clients = store.list_clients(&project).await?;
            emit(&out, json!(clients.iter().map(client_json).collect::<Vec<_>>()), || {
                let mut text = format!("{:<24} {:<13} {:<8} SCOPES", "CLIENT", "KIND", "STATUS");
                for c in &clients {
                    let status = if c.revoked_at.is_some() { "revoked" } else { "active" };
                    text.push_str(&format!("\n{:<24} {:<13} {:<8} {}", c.client_id, c.kind, status, c.allowed_scopes));
                }
                text
            });
        }
        ClientCommand::RotateSecret { project, client_id, out } => {
            let secret = rotate_client_secret(&store, &project, &client_id).await?;
            emit(&out, json!({"client_id": client_id, "client_secret": secret}), || {
                format!("client_id: {client_id}\nclient_secret: {secret}\n(shown once; the previous secret no longer works)")
            });
        }
        ClientCommand::Revoke { project, client_id, out } => {
            // Tokens it already holds stop working on every node within revocation_reload_secs.
            store.revoke_client(&project, &client_id, vitalis_core::timefmt::now_millis() + horizon_ms).await?;
            emit(&out, json!({"client_id": client_id, "revoked": true}), || format!("client {client_id} revoked"));
        }
    }
    Ok(())
}

fn idp_json(idp: &vitalis_store::IdentityProviderRecord) -> serde_json::Value {
    json!({
        "id": idp.id, "issuer": idp.issuer, "jwks_url": idp.jwks_url, "discovery_url": idp.discovery_url,
        "audiences": idp.audiences.split(' ').collect::<Vec<_>>(), "user_id_claim": idp.user_id_claim,
        "user_id_prefix": idp.user_id_prefix, "create_users": idp.create_users,
    })
}

async fn idp_command(store: Store, command: IdpCommand) -> anyhow::Result<()> {
    match command {
        IdpCommand::Add {
            project,
            idp_id,
            issuer,
            jwks_url,
            discovery_url,
            audiences,
            user_id_claim,
            user_id_prefix,
            create_users,
            out,
        } => {
            let spec = vitalis_auth::admin::IdentityProviderSpec {
                id: idp_id,
                issuer,
                jwks_url,
                discovery_url,
                audiences,
                user_id_claim,
                user_id_prefix,
                create_users,
            };
            let record = vitalis_auth::admin::identity_provider_record(&project, spec)?;
            store.insert_identity_provider(&record).await?;
            emit(&out, idp_json(&record), || format!("identity provider {} added (issuer {})", record.id, record.issuer));
        }
        IdpCommand::List { project, out } => {
            let list = store.list_identity_providers(&project).await?;
            emit(&out, json!(list.iter().map(idp_json).collect::<Vec<_>>()), || {
                let mut text = format!("{:<20} {:<40} AUDIENCES", "ID", "ISSUER");
                for idp in &list {
                    text.push_str(&format!("\n{:<20} {:<40} {}", idp.id, idp.issuer, idp.audiences));
                }
                text
            });
        }
        IdpCommand::Remove { project, idp_id, out } => {
            if !store.delete_identity_provider(&project, &idp_id).await? {
                anyhow::bail!("no identity provider {idp_id} in project {project}");
            }
            emit(&out, json!({"id": idp_id, "removed": true}), || format!("identity provider {idp_id} removed"));
        }
    }
    Ok(())
}

fn emit(out: &JsonFlag, value: serde_json::Value, text: impl FnOnce() -> String) {
    if out.json {
        println!("{}", serde_json::to_string_pretty(&value).expect("JSON serializes"));
    } else {
        println!("{}", text());
    }
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(redact_url("postgres://app:secret@db:5432/vitalis"), "postgres://***@db:5432/vitalis");
        assert_eq!(redact_url("sqlite://data/vitalis.db"), "sqlite://data/vitalis.db");
    }
}
