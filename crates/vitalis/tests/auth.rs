//! Token endpoints and bearer verification, over real HTTP, on SQLite and PostgreSQL.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{ISSUER, TestApp, expect_error, expect_oauth_error};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use vitalis_auth::{AccessClaims, PrincipalType};
use vitalis_core::timefmt::now_secs;

async fn post_server(app: &TestApp, project_id: &str, client_id: &str, secret: &str, body: Value) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/v1/projects/{project_id}/auth/server")))
        .basic_auth(client_id, Some(secret))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn post_form(app: &TestApp, basic: Option<(&str, &str)>, form: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.http.post(app.url("/oauth/token")).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    request.send().await.unwrap()
}

fn decode_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn valid_claims(app: &TestApp, scope: &str) -> AccessClaims {
    let now = now_secs();
    AccessClaims {
        iss: ISSUER.into(),
        aud: format!("urn:vitalis:project:{}", app.project_id),
        exp: now + 600,
        iat: now,
        nbf: now,
        jti: ulid::Ulid::generate().to_string(),
        project_id: app.project_id.clone(),
        sub: "server".into(),
        principal_type: PrincipalType::Client,
        scope: scope.into(),
        user_id: None,
    }
}

async fn get_users(app: &TestApp, token: &str) -> reqwest::Response {
    app.http.get(app.url("/users?limit=10")).bearer_auth(token).send().await.unwrap()
}

backend_tests!(server_token_has_exactly_the_documented_shape_and_claims, |app: TestApp| async move {
    let response = post_server(&app, &app.project_id, "server", &app.client_secret, json!({"scope": "users:create users:read"})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 3, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(body.get("refresh_token").is_none());
    let token = body["access_token"].as_str().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert!(header["kid"].is_string());
    let claims = decode_claims(token);
    let mut names: Vec<&str> = claims.as_object().unwrap().keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["aud", "exp", "iat", "iss", "jti", "nbf", "principal_type", "project_id", "scope", "sub"]);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], format!("urn:vitalis:project:{}", app.project_id));
    assert_eq!(claims["project_id"], app.project_id);
    assert_eq!(claims["sub"], "server");
    assert_eq!(claims["principal_type"], "client");
    assert_eq!(claims["scope"], "users:create users:read");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);
});

backend_tests!(no_scope_means_client_defaults, |app: TestApp| async move {
    let response = app
        .http
        .post(app.url(&format!("/v1/projects/{}/auth/server", app.project_id)))
        .basic_auth("server", Some(&app.client_secret))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(decode_claims(body["access_token"].as_str().unwrap())["scope"], vitalis_core::scope::ScopeSet::all_known().to_string());
});

backend_tests!(client_authentication_failures, |app: TestApp| async move {
    let scope = json!({"scope": "users:read"});
    // Wrong secret, unknown client, no credentials.
    expect_oauth_error(post_server(&app, &app.project_id, "server", "vcs_wrong", scope.clone()).await, 401, "invalid_client").await;
    expect_oauth_error(post_server(&app, &app.project_id, "nobody", &app.client_secret, scope.clone()).await, 401, "invalid_client").await;
    let anonymous = app.http.post(app.url(&format!("/v1/projects/{}/auth/server", app.project_id))).json(&scope).send().await.unwrap();
    expect_oauth_error(anonymous, 401, "invalid_client").await;
    // Right credentials, wrong project in the path (existing and not).
    let (other_project, _) = app.second_project().await;
    expect_oauth_error(post_server(&app, &other_project, "server", &app.client_secret, scope.clone()).await, 401, "invalid_client").await;
    expect_oauth_error(post_server(&app, "proj_doesnotexist", "server", &app.client_secret, scope.clone()).await, 401, "invalid_client")
        .await;
    // Revoked client.
    app.store.revoke_client(&app.project_id, "server", vitalis_core::timefmt::now_millis() + 60_000).await.unwrap();
    expect_oauth_error(post_server(&app, &app.project_id, "server", &app.client_secret, scope).await, 401, "invalid_client").await;
});

backend_tests!(scope_rules, |app: TestApp| async move {
    let created = vitalis_auth::admin::create_client(
        &app.store,
        &app.project_id,
        vitalis_auth::admin::ClientSpec {
            client_id: Some("reader".into()),
            name: "reader".into(),
            kind: vitalis_store::ClientKind::Confidential,
            allowed_scopes: Some("users:read".into()),
            default_scopes: None,
            allowed_grants: None,
        },
    )
    .await
    .unwrap();
    let secret = created.client_secret.unwrap();
    let body = expect_oauth_error(
        post_server(&app, &app.project_id, "reader", &secret, json!({"scope": "users:read users:delete"})).await,
        400,
        "invalid_scope",
    )
    .await;
    assert!(body["error_description"].as_str().unwrap().contains("users:delete"));
    expect_oauth_error(post_server(&app, &app.project_id, "reader", &secret, json!({"scope": "not a scope"})).await, 400, "invalid_scope")
        .await;
    let ok = post_server(&app, &app.project_id, "reader", &secret, json!({"scope": "users:read"})).await;
    assert_eq!(ok.status(), 200);
    // A malformed body is invalid_request.
    let bad = app
        .http
        .post(app.url(&format!("/v1/projects/{}/auth/server", app.project_id)))
        .basic_auth("reader", Some(&secret))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    expect_oauth_error(bad, 400, "invalid_request").await;
    // Missing scope on a resource route is 403 insufficient_scope with a challenge.
    let token: Value = ok.json().await.unwrap();
    let response = app
        .http
        .post(app.url("/users"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .json(&json!({"id": "u1"}))
        .send()
        .await
        .unwrap();
    let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("insufficient_scope") && challenge.contains("users:create"), "{challenge}");
    expect_error(response, 403, "insufficient_scope").await;
});

backend_tests!(oauth_token_endpoint, |app: TestApp| async move {
    let resource = format!("urn:vitalis:project:{}", app.project_id);
    // HTTP Basic + resource.
    let response = post_form(
        &app,
        Some(("server", &app.client_secret)),
        &[("grant_type", "client_credentials"), ("resource", &resource), ("scope", "users:read")],
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "users:read");
    assert_eq!(get_users(&app, body["access_token"].as_str().unwrap()).await.status(), 200);
    // client_secret_post + audience, and project_id.
    let response = post_form(
        &app,
        None,
        &[("grant_type", "client_credentials"), ("audience", &resource), ("client_id", "server"), ("client_secret", &app.client_secret)],
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = post_form(
        &app,
        None,
        &[
            ("grant_type", "client_credentials"),
            ("project_id", &app.project_id),
            ("client_id", "server"),
            ("client_secret", &app.client_secret),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    // No project named: the client id exists in one project only.
    let response = post_form(&app, Some(("server", &app.client_secret)), &[("grant_type", "client_credentials")]).await;
    assert_eq!(response.status(), 200);
    // Once it exists in two projects, the caller must name one.
    app.second_project().await;
    expect_oauth_error(
        post_form(&app, Some(("server", &app.client_secret)), &[("grant_type", "client_credentials")]).await,
        400,
        "invalid_request",
    )
    .await;
    // Errors.
    expect_oauth_error(
        post_form(&app, Some(("server", "wrong")), &[("grant_type", "client_credentials"), ("resource", &resource)]).await,
        401,
        "invalid_client",
    )
    .await;
    expect_oauth_error(
        post_form(&app, Some(("server", &app.client_secret)), &[("grant_type", "password"), ("resource", &resource)]).await,
        400,
        "unsupported_grant_type",
    )
    .await;
    expect_oauth_error(post_form(&app, Some(("server", &app.client_secret)), &[("resource", &resource)]).await, 400, "invalid_request")
        .await;
    expect_oauth_error(
        post_form(&app, Some(("server", &app.client_secret)), &[("grant_type", "client_credentials"), ("resource", "https://elsewhere")])
            .await,
        400,
        "invalid_target",
    )
    .await;
    expect_oauth_error(
        post_form(
            &app,
            Some(("server", &app.client_secret)),
            &[("grant_type", "client_credentials"), ("resource", &resource), ("scope", "users:fly")],
        )
        .await,
        400,
        "invalid_scope",
    )
    .await;
    let both = post_form(
        &app,
        Some(("server", &app.client_secret)),
        &[("grant_type", "client_credentials"), ("resource", &resource), ("client_id", "server"), ("client_secret", &app.client_secret)],
    )
    .await;
    expect_oauth_error(both, 400, "invalid_request").await;
    let json_body = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth("server", Some(&app.client_secret))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    expect_oauth_error(json_body, 400, "invalid_request").await;
    let repeated = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth("server", Some(&app.client_secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    expect_oauth_error(repeated, 400, "invalid_request").await;
});

backend_tests!(bearer_token_negatives, |app: TestApp| async move {
    let authority = app.state.authority();
    // Sanity: a token we sign with valid claims works.
    let good = authority.sign(&valid_claims(&app, "users:read")).unwrap();
    assert_eq!(get_users(&app, &good).await.status(), 200);

    let refused = |token: String| {
        let app = &app;
        async move {
            let response = get_users(app, &token).await;
            let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
            assert!(challenge.starts_with("Bearer") && challenge.contains("invalid_token"), "{challenge}");
            expect_error(response, 401, "unauthorized").await
        }
    };
    // Missing and malformed headers.
    expect_error(app.http.get(app.url("/users")).send().await.unwrap(), 401, "unauthorized").await;
    expect_error(app.http.get(app.url("/users")).header("authorization", "Basic abc").send().await.unwrap(), 401, "unauthorized").await;
    refused("not-a-jwt".into()).await;

    // Expired, not yet valid.
    let mut claims = valid_claims(&app, "users:read");
    claims.exp = now_secs() - 3600;
    claims.iat = now_secs() - 4500;
    claims.nbf = claims.iat;
    let body = refused(authority.sign(&claims).unwrap()).await;
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");
    let mut claims = valid_claims(&app, "users:read");
    claims.nbf = now_secs() + 3600;
    let body = refused(authority.sign(&claims).unwrap()).await;
    assert!(body["error"]["message"].as_str().unwrap().contains("not valid yet"), "{body}");

    // Wrong issuer; audience of another project.
    let mut claims = valid_claims(&app, "users:read");
    claims.iss = "https://evil.example".into();
    refused(authority.sign(&claims).unwrap()).await;
    let mut claims = valid_claims(&app, "users:read");
    claims.aud = "urn:vitalis:project:proj_other".into();
    refused(authority.sign(&claims).unwrap()).await;

    // Tampered payload: widen the scope, keep the signature.
    let parts: Vec<&str> = good.split('.').collect();
    let mut payload = decode_claims(&good);
    payload["scope"] = json!("users:read users:delete");
    let tampered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(payload.to_string()), parts[2]);
    refused(tampered).await;

    // alg: none with our kid.
    let kid = jsonwebtoken::decode_header(&good).unwrap().kid.unwrap();
    let none_header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string());
    refused(format!("{none_header}.{}.", parts[1])).await;

    // HS256 signed with our public key as the HMAC secret (key confusion).
    let jwks: Value = app.http.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let public_x = jwks["keys"][0]["x"].as_str().unwrap().to_owned();
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    for secret in [public_x.as_bytes().to_vec(), URL_SAFE_NO_PAD.decode(&public_x).unwrap()] {
        let forged = jsonwebtoken::encode(&hs_header, &valid_claims(&app, "users:read"), &EncodingKey::from_secret(&secret)).unwrap();
        refused(forged).await;
    }

    // A valid Ed25519 signature by a key we never published (unknown kid).
    let rogue = vitalis_auth::keyring::generate_signing_key(&app.master).unwrap();
    let seed = app.master.decrypt(&rogue.private_key_enc, &rogue.kid).unwrap();
    let mut der = vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    der.extend_from_slice(&seed);
    let mut rogue_header = Header::new(Algorithm::EdDSA);
    rogue_header.kid = Some(rogue.kid.clone());
    let forged = jsonwebtoken::encode(&rogue_header, &valid_claims(&app, "users:read"), &EncodingKey::from_ed_der(&der)).unwrap();
    let body = refused(forged).await;
    assert!(body["error"]["message"].as_str().unwrap().contains("unknown key"), "{body}");
    // The same rogue key under our kid: bad signature.
    rogue_header.kid = Some(kid);
    let forged = jsonwebtoken::encode(&rogue_header, &valid_claims(&app, "users:read"), &EncodingKey::from_ed_der(&der)).unwrap();
    refused(forged).await;
});

backend_tests!(project_isolation, |app: TestApp| async move {
    let (other_project, other_secret) = app.second_project().await;
    let other_token = {
        let response = post_server(&app, &other_project, "server", &other_secret, json!({})).await;
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    };
    let token = app.server_token("").await;
    // The same user id in both projects is two different users.
    for (t, name) in [(&token, "Alpha"), (&other_token, "Beta")] {
        let response =
            app.http.post(app.url("/users")).bearer_auth(t).json(&json!({"id": "shared", "firstname": name})).send().await.unwrap();
        assert_eq!(response.status(), 201);
    }
    let response = app.http.post(app.url("/users")).bearer_auth(&other_token).json(&json!({"id": "only_b"})).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let mine: Value = app.http.get(app.url("/users/shared")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(mine["firstname"], "Alpha");
    expect_error(app.http.get(app.url("/users/only_b")).bearer_auth(&token).send().await.unwrap(), 404, "not_found").await;
    expect_error(app.http.delete(app.url("/users/only_b")).bearer_auth(&token).send().await.unwrap(), 404, "not_found").await;
    expect_error(
        app.http.patch(app.url("/users/only_b")).bearer_auth(&token).json(&json!({"firstname": "x"})).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    let list: Value = get_users(&app, &token).await.json().await.unwrap();
    let ids: Vec<&str> = list["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["shared"]);
    let theirs: Value = app.http.get(app.url("/users/only_b")).bearer_auth(&other_token).send().await.unwrap().json().await.unwrap();
    assert_eq!(theirs["id"], "only_b");
});

backend_tests!(key_rotation_keeps_old_tokens_valid, |app: TestApp| async move {
    let before = app.server_token("users:read").await;
    let old_kid = jsonwebtoken::decode_header(&before).unwrap().kid.unwrap();
    // Rotate the way `vitalis keys rotate` does, from outside the server.
    let new_key = vitalis_auth::keyring::rotate_signing_key(&app.store, &app.master).await.unwrap();
    assert_ne!(new_key.kid, old_kid);
    // The old token verifies straight away (its key is still known).
    assert_eq!(get_users(&app, &before).await.status(), 200);
    // The server picks up the new key on its next reload (200 ms in tests).
    let mut jwks = Value::Null;
    for _ in 0..50 {
        jwks = app.http.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
        if jwks["keys"].as_array().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids.len(), 2, "{jwks}");
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_key.kid.as_str()));
    let after = app.server_token("users:read").await;
    assert_eq!(jsonwebtoken::decode_header(&after).unwrap().kid.unwrap(), new_key.kid);
    assert_eq!(get_users(&app, &after).await.status(), 200);
    assert_eq!(get_users(&app, &before).await.status(), 200);
});

backend_tests!(discovery_documents, |app: TestApp| async move {
    for path in ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"] {
        let body: Value = app.http.get(app.url(path)).send().await.unwrap().json().await.unwrap();
        assert_eq!(body["issuer"], ISSUER);
        assert_eq!(body["token_endpoint"], format!("{ISSUER}/oauth/token"));
        assert_eq!(body["jwks_uri"], format!("{ISSUER}/.well-known/jwks.json"));
        assert!(body["grant_types_supported"].as_array().unwrap().contains(&json!("client_credentials")));
    }
    let jwks: Value = app.http.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["use"], "sig");
    assert!(key.get("d").is_none(), "the private key must never be published");
});
