//! A simulated OpenID Connect provider, following the public discovery and JWKS documents:
//! `/.well-known/openid-configuration` names `jwks_uri`; `/jwks` lists the public keys.
//! It mints RS256 and ES256 ID tokens, rotates keys, and counts JWKS fetches.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use aws_lc_rs::encoding::AsDer;
use axum::Json;
use axum::routing::get;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Jwk,
}

impl SigningKey {
    pub fn rsa(kid: &str) -> Self {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der: aws_lc_rs::encoding::Pkcs8V1Der = pair.as_der().unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der.as_ref())
        );
        Self::from_encoding(kid, Algorithm::RS256, EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap())
    }

    pub fn ec(kid: &str) -> Self {
        let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let der = pair.to_pkcs8v1().unwrap();
        Self::from_encoding(kid, Algorithm::ES256, EncodingKey::from_ec_der(der.as_ref()))
    }

    fn from_encoding(kid: &str, alg: Algorithm, encoding: EncodingKey) -> Self {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        Self { kid: kid.to_owned(), alg, encoding, jwk }
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

pub struct FakeIdp {
    pub issuer: String,
    pub audience: String,
    keys: Arc<RwLock<Vec<Arc<SigningKey>>>>,
    jwks_fetches: Arc<AtomicUsize>,
    _server: tokio::task::JoinHandle<()>,
}

impl FakeIdp {
    /// Starts a provider with one RS256 and one ES256 key.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let keys = Arc::new(RwLock::new(vec![Arc::new(SigningKey::rsa("rsa-1")), Arc::new(SigningKey::ec("ec-1"))]));
        let jwks_fetches = Arc::new(AtomicUsize::new(0));
        let discovery =
            json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks"), "id_token_signing_alg_values_supported": ["RS256", "ES256"]});
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(move || async move { Json(discovery.clone()) }))
            .route("/jwks", {
                let keys = keys.clone();
                let fetches = jwks_fetches.clone();
                get(move || async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let set = JwkSet { keys: keys.read().unwrap().iter().map(|k| k.jwk.clone()).collect() };
                    Json(set)
                })
            });
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { issuer, audience: "app-client".into(), keys, jwks_fetches, _server: server }
    }

    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    pub fn key(&self, kid: &str) -> Arc<SigningKey> {
        self.keys.read().unwrap().iter().find(|k| k.kid == kid).cloned().expect("known kid")
    }

    /// Publishes a new key (a rotation at the provider).
    pub fn rotate_in(&self, key: SigningKey) -> Arc<SigningKey> {
        let key = Arc::new(key);
        self.keys.write().unwrap().push(key.clone());
        key
    }

    pub fn jwks_fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Standard ID token claims for `sub`, valid now for 5 minutes.
    pub fn claims(&self, sub: &str) -> Value {
        let now = vitalis_core::timefmt::now_secs();
        json!({"iss": self.issuer, "aud": self.audience, "sub": sub, "iat": now, "exp": now + 300, "email": format!("{sub}@example.com")})
    }

    pub fn id_token(&self, kid: &str, sub: &str) -> String {
        self.key(kid).sign(&self.claims(sub))
    }
}
