//! hf-inference: `POST /models/{model_id}` with `{"inputs", "parameters"}` → raw image bytes.

use axum::Router;
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::Value;

use crate::behaviour::FaultTarget;
use crate::media::ImageFormat;
use crate::support::{self, Shared};

const PROVIDER: &str = "hf-inference";

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/models/{*model}", post(generate))
}

async fn generate(
    AxumState(state): AxumState<Shared>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let behaviour = match support::enter(&state, PROVIDER, FaultTarget::Submit, &headers).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    if support::served_task(&state, PROVIDER, &model) != Some("text-to-image") {
        return support::error(StatusCode::NOT_FOUND, format!("Model {model} does not exist"));
    }
    let body = match support::json_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let params = body.get("parameters").cloned().unwrap_or(Value::Null);
    let ask = match support::image_ask(&body, "inputs", &params) {
        Ok(ask) => ask,
        Err(response) => return response,
    };
    support::wait(&behaviour).await;
    match support::render_image(&ask, behaviour.image_format.unwrap_or(ImageFormat::Jpeg)).await {
        Ok((bytes, mime)) => ([(header::CONTENT_TYPE, mime)], bytes).into_response(),
        Err(response) => response,
    }
}
