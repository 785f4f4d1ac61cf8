//! The routes and the layers around them. From the outside in: CORS (so that preflights pass before
//! any key check and every answer, errors included, carries the CORS headers), the request counter, the
//! body limit and body timeout; the key check on `/v1` and on the gallery's listing only.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::{App, ServerError, auth, gallery, images, media, metrics, models, videos};

/// Every route.
pub(crate) fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/v1/images/generations", post(images::generations))
        .route("/v1/images/edits", post(images::edits))
        .merge(videos::routes())
        .route("/v1/models", get(models::list))
        .route("/v1/models/{*id}", get(models::retrieve))
        .route("/gallery/media", get(gallery::listing))
        .route_layer(middleware::from_fn_with_state(app.clone(), auth::require_key));
    let open = Router::new()
        .route("/", get(gallery::page))
        .route("/media/{*name}", get(media::serve))
        .route("/healthz", get(health))
        .route("/metrics", get(metrics::render));
    Router::new()
        .merge(api)
        .merge(open)
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(app.config.max_body_bytes))
        .layer(RequestBodyTimeoutLayer::new(app.config.body_timeout))
        .layer(middleware::from_fn_with_state(app.clone(), metrics::track))
        .layer(cors(&app.config.cors_origins))
        .with_state(app)
}

/// The CORS layer for `origins` (`*` for any); none: no CORS headers at all.
fn cors(origins: &[String]) -> CorsLayer {
    if origins.is_empty() {
        return CorsLayer::new();
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS, Method::HEAD])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::RANGE,
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("openai-organization"),
            HeaderName::from_static("openai-project"),
            HeaderName::from_static("x-stainless-retry-count"),
        ])
        .expose_headers([
            HeaderName::from_static("openai-poll-after-ms"),
            HeaderName::from_static("x-should-retry"),
            header::RETRY_AFTER,
            header::CONTENT_RANGE,
            header::ETAG,
        ])
        .max_age(std::time::Duration::from_secs(600))
}

async fn unknown_route() -> Response {
    ServerError::not_found("no such route: the API is under /v1 (images/generations, images/edits, videos, models)")
        .into_response()
}

/// `GET /healthz`.
async fn health(axum::extract::State(app): axum::extract::State<Arc<App>>) -> Response {
    let status = if app.stop.is_cancelled() { "stopping" } else { "ok" };
    axum::Json(json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "generations_in_flight": app.slots.in_flight(),
        "max_concurrent": app.slots.max(),
    }))
    .into_response()
}
