//! nscale: `POST /v1/images/generations` with `{"model", "prompt", "response_format": "b64_json", "size":
//! "WxH"}` → `{"created", "data": [{"b64_json"}]}` (PNG). Only `b64_json` answers are served. Errors are
//! OpenAI-style: `{"error": {"message", "type", "param", "code"}}`.

use axum::Router;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::behaviour::FaultTarget;
use crate::media::ImageFormat;
use crate::support::{self, Shared};

const PROVIDER: &str = "nscale";

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/v1/images/generations", post(generate))
}

/// nscale's error answer.
fn nscale_error(status: StatusCode, message: impl Into<String>, param: &str, code: &str) -> Response {
    let body = json!({"error": {"message": message.into(), "type": "invalid_request_error", "param": param,
                                "code": code}});
    (status, axum::Json(body)).into_response()
}

async fn generate(AxumState(state): AxumState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let behaviour = match support::enter(&state, PROVIDER, FaultTarget::Submit, &headers).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let body = match support::json_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let model = body.get("model").and_then(Value::as_str).unwrap_or_default();
    if support::served_task(&state, PROVIDER, model) != Some("text-to-image") {
        return support::unknown_model(PROVIDER, model);
    }
    match body.get("response_format").and_then(Value::as_str) {
        None | Some("b64_json") => {}
        Some(other) => {
            return nscale_error(
                StatusCode::BAD_REQUEST,
                format!("Unsupported response_format `{other}`: only `b64_json` is supported"),
                "response_format",
                "invalid_value",
            );
        }
    }
    let ask = match support::image_ask(&body, "prompt", &body) {
        Ok(ask) => ask,
        Err(response) => return response,
    };
    support::wait(&behaviour).await;
    match support::render_image(&ask, behaviour.image_format.unwrap_or(ImageFormat::Png)).await {
        Ok((bytes, _)) => axum::Json(json!({
            "created": support::unix_now(),
            "data": [{"b64_json": base64::engine::general_purpose::STANDARD.encode(&bytes)}],
        }))
        .into_response(),
        Err(response) => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::test_support::{client, serve};

    #[tokio::test]
    async fn missing_auth_unknown_model_and_url_answers_are_refused() {
        let running = serve().await;
        let url = format!("{}/nscale/v1/images/generations", running.url());
        let body =
            json!({"model": "black-forest-labs/FLUX.1-schnell", "prompt": "a fox", "response_format": "b64_json"});
        assert_eq!(client().post(&url).json(&body).send().await.unwrap().status(), 401);

        let answer = client()
            .post(&url)
            .bearer_auth("hf_test")
            .json(&json!({"model": "nobody/nothing", "prompt": "a fox", "response_format": "b64_json"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);
        assert!(
            answer.json::<Value>().await.unwrap()["error"]
                .as_str()
                .unwrap()
                .contains("nobody/nothing")
        );

        let answer = client()
            .post(&url)
            .bearer_auth("hf_test")
            .json(&json!({"model": "black-forest-labs/FLUX.1-schnell", "prompt": "a fox", "response_format": "url"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400);
    }

    #[tokio::test]
    async fn images_come_in_base64() {
        let running = serve().await;
        let answer = client()
            .post(format!("{}/nscale/v1/images/generations", running.url()))
            .bearer_auth("hf_test")
            .json(
                &json!({"model": "stabilityai/stable-diffusion-xl-base-1.0", "prompt": "a fox",
                          "response_format": "b64_json", "size": "64x48"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let body: Value = answer.json().await.unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body["data"][0]["b64_json"].as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
        assert!(body["created"].is_u64());
    }
}
