//! The HTTP layer of Vitalis: axum routers per resource family, extractors that verify
//! bearer tokens and map every malformed request to the JSON error shape, the OpenAPI
//! document generated from the handlers, and the middleware stack.

pub mod error;
pub mod extract;
pub mod limits;
pub mod routes;
pub mod state;
pub mod telemetry;

use std::iter::once;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

pub use error::{ApiError, ApiResult};
pub use state::{AppState, HttpSettings};

#[derive(OpenApi)]
#[openapi(
    info(title = "Vitalis Health API", description = "Self-hostable health-data platform: project-scoped OAuth 2.0 and health-data resources."),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Project-scoped OAuth 2.0 token endpoints"),
        (name = "users", description = "Users, with customer-supplied ids"),
        (name = "user-keys", description = "Per-user secret keys and x-jwt assertions"),
        (name = "admin", description = "OAuth clients and trusted identity providers of a project"),
        (name = "webhooks", description = "Signed outbound webhooks: endpoints and their delivery log"),
        (name = "discovery", description = "JWKS and authorization server metadata"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        components.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
    }
}

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::oauth::router())
        .merge(routes::discovery::router())
        .merge(routes::users::router())
        .merge(routes::user_keys::router())
        .merge(routes::admin::router())
        .merge(routes::webhooks::router())
        .merge(routes::health::router())
}

/// The OpenAPI 3.1 document, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().into_openapi()
}

/// The whole application: routes, `/openapi.json`, `/docs` and the middleware stack.
pub fn app(state: AppState) -> Router {
    // Install the metrics recorder before the first request records anything.
    telemetry::prometheus();
    let (routes, openapi) = api_routes().split_for_parts();
    let http = state.http().clone();
    let request_id = HeaderName::from_static("x-request-id");
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(http.cors_allowed_origins.iter().filter_map(|o| o.parse().ok())))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, request_id.clone()])
        .expose_headers([request_id.clone(), header::LOCATION])
        .max_age(std::time::Duration::from_secs(600));
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request| {
            let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            // The path only: query strings and headers may carry credentials.
            tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path())
        })
        .on_request(())
        .on_response(DefaultOnResponse::new().level(Level::INFO));

    routes
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(telemetry::track_request))
        .layer(DefaultBodyLimit::max(http.body_limit))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new(
                    once(header::AUTHORIZATION).chain([header::COOKIE, header::PROXY_AUTHORIZATION]),
                ))
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(trace)
                .layer(CatchPanicLayer::custom(|_| ApiError::Internal("a handler panicked".into()).into_response()))
                .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, http.request_timeout))
                .layer(cors),
        )
}

async fn not_found() -> Response {
    ApiError::NotFound("route").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.into_response()
}
