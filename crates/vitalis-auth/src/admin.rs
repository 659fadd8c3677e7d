//! Administration of tenants and clients, shared by the CLI (and later the admin API):
//! projects, OAuth clients with secrets shown once, and the `--dev` demo bootstrap.

use vitalis_core::ids::{CLIENT_PREFIX, is_valid_external_id, new_id};
use vitalis_core::scope::{ScopeError, ScopeSet};
use vitalis_store::{ClientKind, ClientRecord, NewClient, OrgRecord, ProjectRecord, Store, StoreError};

use vitalis_store::IdentityProviderRecord;

use crate::authority::{GRANT_CLIENT_CREDENTIALS, GRANT_REFRESH_TOKEN, GRANT_TOKEN_EXCHANGE};
use crate::secrets::{generate_client_secret, hash_secret};

/// Grants a client may be configured with. Confidential-only grants are refused for public clients.
pub const SUPPORTED_GRANTS: &[&str] = &[GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE, GRANT_REFRESH_TOKEN];

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ScopeError> for AdminError {
    fn from(err: ScopeError) -> Self {
        AdminError::Invalid(err.to_string())
    }
}

/// What to create; `None` fields take sensible defaults.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// Customer-chosen id (e.g. `server`), or a generated `cli_...` id.
    pub client_id: Option<String>,
    pub name: String,
    pub kind: ClientKind,
    /// Defaults to every scope the server knows.
    pub allowed_scopes: Option<String>,
    /// Defaults to the allowed scopes.
    pub default_scopes: Option<String>,
    /// Defaults to `client_credentials` for confidential clients.
    pub allowed_grants: Option<String>,
}

/// A new client and, for confidential ones, its secret: the only time it is ever shown.
#[derive(Debug, Clone)]
pub struct CreatedClient {
    pub client: ClientRecord,
    pub client_secret: Option<String>,
}

pub async fn create_client(store: &Store, project_id: &str, spec: ClientSpec) -> Result<CreatedClient, AdminError> {
    let client_id = spec.client_id.unwrap_or_else(|| new_id(CLIENT_PREFIX));
    if !is_valid_external_id(&client_id) {
        return Err(AdminError::Invalid("client id must be 1-128 characters of letters, digits and _ - . : @ |".into()));
    }
    let allowed = match &spec.allowed_scopes {
        Some(s) => ScopeSet::parse_known(s)?,
        None => ScopeSet::all_known(),
    };
    let defaults = match &spec.default_scopes {
        Some(s) => ScopeSet::parse_known(s)?,
        None => allowed.clone(),
    };
    if let Some(extra) = defaults.missing_from(&allowed).next() {
        return Err(AdminError::Invalid(format!("default scope `{extra}` is not among the allowed scopes")));
    }
    let grants = validate_grants(spec.kind, spec.allowed_grants.as_deref())?;
    let client_secret = (spec.kind == ClientKind::Confidential).then(generate_client_secret);
    let record = store
        .insert_client(&NewClient {
            project_id: project_id.to_owned(),
            client_id,
            name: spec.name,
            kind: spec.kind,
            secret_hash: client_secret.as_deref().map(hash_secret),
            allowed_scopes: allowed.to_string(),
            default_scopes: defaults.to_string(),
            allowed_grants: grants,
        })
        .await?;
    Ok(CreatedClient { client: record, client_secret })
}

fn validate_grants(kind: ClientKind, grants: Option<&str>) -> Result<String, AdminError> {
    let grants: Vec<&str> = match grants {
        Some(g) => g.split([' ', ',']).filter(|s| !s.is_empty()).collect(),
        None if kind == ClientKind::Confidential => vec![GRANT_CLIENT_CREDENTIALS],
        None => vec![GRANT_TOKEN_EXCHANGE, GRANT_REFRESH_TOKEN],
    };
    for grant in &grants {
        if !SUPPORTED_GRANTS.contains(grant) {
            return Err(AdminError::Invalid(format!("grant `{grant}` is not supported (supported: {})", SUPPORTED_GRANTS.join(", "))));
        }
        if *grant == GRANT_CLIENT_CREDENTIALS && kind == ClientKind::Public {
            return Err(AdminError::Invalid("public clients cannot use client_credentials: they hold no secret".into()));
        }
    }
    Ok(grants.join(" "))
}

/// Changes to a client; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct ClientUpdate {
    pub name: Option<String>,
    pub allowed_scopes: Option<String>,
    pub default_scopes: Option<String>,
    pub allowed_grants: Option<String>,
}

/// Applies `update` with the same rules as creation; returns the updated client.
pub async fn update_client(store: &Store, project_id: &str, client_id: &str, update: ClientUpdate) -> Result<ClientRecord, AdminError> {
    let current = store.get_client(project_id, client_id).await?.ok_or(StoreError::NotFound("client"))?;
    let kind = if current.is_confidential() { ClientKind::Confidential } else { ClientKind::Public };
    let allowed = ScopeSet::parse_known(update.allowed_scopes.as_deref().unwrap_or(&current.allowed_scopes))?;
    let defaults = match (&update.default_scopes, &update.allowed_scopes) {
        (Some(defaults), _) => ScopeSet::parse_known(defaults)?,
        // Narrowing the allowed scopes narrows the defaults with them.
        (None, Some(_)) => ScopeSet::parse(&current.default_scopes)?.intersection(&allowed),
        (None, None) => ScopeSet::parse(&current.default_scopes)?,
    };
    if let Some(extra) = defaults.missing_from(&allowed).next() {
        return Err(AdminError::Invalid(format!("default scope `{extra}` is not among the allowed scopes")));
    }
    let grants = validate_grants(kind, Some(update.allowed_grants.as_deref().unwrap_or(&current.allowed_grants)))?;
    let name = update.name.unwrap_or(current.name);
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(AdminError::Invalid("name must be 1-200 characters".into()));
    }
    store.update_client(project_id, client_id, &name, &allowed.to_string(), &defaults.to_string(), &grants).await?;
    Ok(store.get_client(project_id, client_id).await?.ok_or(StoreError::NotFound("client"))?)
}

/// The scopes in `wanted` that `caller` does not hold: an administrator can only hand out
/// what its own token carries, so a client can never grant itself more than it has.
pub fn scopes_beyond_caller(caller: &ScopeSet, wanted: &str) -> Result<Vec<String>, AdminError> {
    let wanted = ScopeSet::parse_known(wanted)?;
    Ok(wanted.missing_from(caller).map(str::to_owned).collect())
}

/// What an identity provider is made of, as an administrator describes it.
#[derive(Debug, Clone)]
pub struct IdentityProviderSpec {
    pub id: String,
    pub issuer: String,
    pub jwks_url: Option<String>,
    pub discovery_url: Option<String>,
    pub audiences: Vec<String>,
    pub user_id_claim: Option<String>,
    pub user_id_prefix: Option<String>,
    pub create_users: bool,
}

fn is_http_url(value: &str) -> bool {
    (value.starts_with("https://") || value.starts_with("http://")) && value.len() <= 2048 && !value.contains(char::is_whitespace)
}

/// Checks a provider description and turns it into a record for `project_id`.
pub fn identity_provider_record(project_id: &str, spec: IdentityProviderSpec) -> Result<IdentityProviderRecord, AdminError> {
    if !is_valid_external_id(&spec.id) || spec.id.len() > 64 {
        return Err(AdminError::Invalid("id must be 1-64 characters of letters, digits and _ - . : @ |".into()));
    }
    if spec.issuer.is_empty() || spec.issuer.len() > 512 || spec.issuer.contains(char::is_whitespace) {
        return Err(AdminError::Invalid("issuer must be the provider's `iss` value (1-512 characters, no spaces)".into()));
    }
    match (&spec.jwks_url, &spec.discovery_url) {
        (Some(url), None) | (None, Some(url)) if is_http_url(url) => {}
        (Some(_), Some(_)) => return Err(AdminError::Invalid("give jwks_url or discovery_url, not both".into())),
        (None, None) => return Err(AdminError::Invalid("jwks_url or discovery_url is required".into())),
        _ => return Err(AdminError::Invalid("jwks_url and discovery_url must be http(s) URLs".into())),
    }
    let audiences: Vec<&str> = spec.audiences.iter().map(|a| a.trim()).filter(|a| !a.is_empty()).collect();
    if audiences.is_empty() || audiences.iter().any(|a| a.contains(' ') || a.len() > 512) {
        return Err(AdminError::Invalid("audiences must list at least one accepted `aud` value (no spaces)".into()));
    }
    let claim = spec.user_id_claim.unwrap_or_else(|| "sub".into());
    if claim.is_empty() || claim.len() > 128 {
        return Err(AdminError::Invalid("user_id_claim must name a claim".into()));
    }
    let prefix = spec.user_id_prefix.unwrap_or_default();
    if !prefix.is_empty() && !is_valid_external_id(&prefix) {
        return Err(AdminError::Invalid("user_id_prefix must be letters, digits and _ - . : @ |".into()));
    }
    Ok(IdentityProviderRecord {
        project_id: project_id.to_owned(),
        id: spec.id,
        issuer: spec.issuer,
        jwks_url: spec.jwks_url,
        discovery_url: spec.discovery_url,
        audiences: audiences.join(" "),
        user_id_claim: claim,
        user_id_prefix: prefix,
        create_users: spec.create_users,
        created_at: 0,
        updated_at: 0,
    })
}

/// Replaces a confidential client's secret; the old one stops working at once.
pub async fn rotate_client_secret(store: &Store, project_id: &str, client_id: &str) -> Result<String, AdminError> {
    let secret = generate_client_secret();
    store.set_client_secret(project_id, client_id, &hash_secret(&secret)).await?;
    Ok(secret)
}

/// Credentials of the demo tenant made by `serve --dev` on first start.
#[derive(Debug, Clone)]
pub struct DemoTenant {
    pub org: OrgRecord,
    pub project: ProjectRecord,
    pub client_id: String,
    pub client_secret: String,
}

/// Creates a demo org, project and confidential client `server` if the store has no
/// project yet; `None` otherwise (restarts keep the data and print nothing).
pub async fn bootstrap_demo_tenant(store: &Store) -> Result<Option<DemoTenant>, AdminError> {
    if store.count_projects().await? > 0 {
        return Ok(None);
    }
    let org = store.create_org("Demo organisation").await?;
    let project = store.create_project(&org.id, "Demo project").await?;
    let created = create_client(
        store,
        &project.id,
        ClientSpec {
            client_id: Some("server".into()),
            name: "Demo server client".into(),
            kind: ClientKind::Confidential,
            allowed_scopes: None,
            default_scopes: None,
            allowed_grants: None,
        },
    )
    .await?;
    Ok(Some(DemoTenant {
        org,
        project,
        client_id: created.client.client_id,
        client_secret: created.client_secret.expect("confidential clients get a secret"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_rules() {
        assert_eq!(validate_grants(ClientKind::Confidential, None).unwrap(), "client_credentials");
        assert_eq!(validate_grants(ClientKind::Public, None).unwrap(), "urn:ietf:params:oauth:grant-type:token-exchange refresh_token");
        assert!(validate_grants(ClientKind::Public, Some("client_credentials")).is_err());
        assert!(validate_grants(ClientKind::Confidential, Some("password")).is_err());
    }
}
