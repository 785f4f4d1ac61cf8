//! hf-inference: `POST /models/{model_id}` → raw image bytes.
//!
//! Text-to-image models take `{"inputs": prompt, "parameters"}`. Image-to-image models take either the raw
//! image as the whole body (an `image/*` or `application/octet-stream` Content-Type, or none), or
//! `{"inputs": <bare base64 of the image>, "parameters": {"prompt", "target_size", …}}`. Errors are
//! `{"error": "…"}`: 404 for a model it does not serve, 400 for a missing or unusable image.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::Value;

use crate::behaviour::FaultTarget;
use crate::inputs;
use crate::media::ImageFormat;
use crate::support::{self, MediaAsk, Shared};

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
    let ask = match support::served_task(&state, PROVIDER, &model) {
        Some("text-to-image") => text_ask(&body),
        Some("image-to-image") => edit_ask(&state, &headers, body).await,
        _ => return support::error(StatusCode::NOT_FOUND, format!("Model {model} does not exist")),
    };
    let ask = match ask {
        Ok(ask) => ask,
        Err(response) => return response,
    };
    support::wait(&behaviour).await;
    match support::render_image(&ask, behaviour.image_format.unwrap_or(ImageFormat::Jpeg)).await {
        Ok((bytes, mime)) => ([(header::CONTENT_TYPE, mime)], bytes).into_response(),
        Err(response) => response,
    }
}

fn text_ask(body: &Bytes) -> Result<MediaAsk, Response> {
    let body = support::json_body(body)?;
    let params = body.get("parameters").cloned().unwrap_or(Value::Null);
    support::image_ask(&body, "inputs", &params)
}

/// Whether the body is JSON rather than a raw image: by its Content-Type, else by its first byte.
fn is_json(headers: &HeaderMap, body: &[u8]) -> bool {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    match content_type.as_deref() {
        Some(t) if t.starts_with("application/json") || t.ends_with("+json") => true,
        Some(t) if t.starts_with("image/") || t.starts_with("application/octet-stream") => false,
        _ => body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'),
    }
}

fn bad_image(message: impl Into<String>) -> Response {
    support::error(StatusCode::BAD_REQUEST, message)
}

async fn edit_ask(state: &Shared, headers: &HeaderMap, body: Bytes) -> Result<MediaAsk, Response> {
    let (image, params) = if is_json(headers, &body) {
        let json = support::json_body(&body)?;
        let params = json.get("parameters").cloned().unwrap_or(Value::Null);
        let image = match json.get("inputs") {
            Some(Value::String(inputs)) => {
                inputs::resolve(state, headers, inputs).map_err(|e| bad_image(format!("inputs: {}", e.message())))?
            }
            None | Some(Value::Null) => {
                return Err(bad_image(
                    "Input should be a valid image: `inputs` (the image as base64) is required",
                ));
            }
            Some(_) => {
                return Err(bad_image(
                    "Input should be a valid string: `inputs` is the image as base64",
                ));
            }
        };
        (image, params)
    } else if body.is_empty() {
        return Err(bad_image("the body is empty: send the image, or JSON with `inputs`"));
    } else {
        (body, Value::Null)
    };
    let images = inputs::decode_all(vec![image])
        .await
        .map_err(|(_, e)| bad_image(format!("inputs: {}", e.message())))?;
    let prompt = params
        .get("prompt")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    support::input_ask("image-to-image", prompt, &params, Arc::new(images))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::providers::test_support::*;

    const PIX2PIX: &str = "timbrooks/instruct-pix2pix";

    async fn send(request: reqwest::RequestBuilder) -> (u16, Option<String>, Bytes) {
        let answer = request.bearer_auth("hf_test").send().await.unwrap();
        let status = answer.status().as_u16();
        let mime = answer
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        (status, mime, answer.bytes().await.unwrap())
    }

    fn route(url: &str, model: &str) -> String {
        format!("{url}/hf-inference/models/{model}")
    }

    #[tokio::test]
    async fn raw_images_and_base64_json_are_edited() {
        let running = serve().await;
        let url = route(&running.url(), PIX2PIX);
        let input = png(&quadrants(64, 48));
        // Raw bytes, with an image Content-Type or none at all (py's bare bytes).
        for mime in [Some("image/png"), None] {
            let mut request = client().post(&url).body(input.clone());
            if let Some(mime) = mime {
                request = request.header(header::CONTENT_TYPE, mime);
            }
            let (status, content_type, bytes) = send(request).await;
            assert_eq!((status, content_type.as_deref()), (200, Some("image/jpeg")), "{mime:?}");
            assert_edit_of(&bytes, &quadrants(64, 48), (64, 48), "");
        }
        // JSON: bare base64 and parameters.
        let body = json!({"inputs": b64(&input), "parameters": {"prompt": "gold", "target_size": {"width": 32,
                          "height": 32}, "guidance_scale": 7.5}});
        let (status, _, bytes) = send(client().post(&url).json(&body)).await;
        assert_eq!(status, 200);
        assert_edit_of(&bytes, &quadrants(64, 48), (32, 32), "gold");
        // Text-to-image models still take a prompt.
        let text = route(&running.url(), "stabilityai/sdxl-turbo");
        let body = json!({"inputs": "a fox", "parameters": {"width": 40, "height": 24}});
        let (status, _, bytes) = send(client().post(&text).json(&body)).await;
        assert_eq!(status, 200);
        assert_eq!(image::load_from_memory(&bytes).unwrap().width(), 40);
    }

    #[tokio::test]
    async fn unusable_images_are_a_400() {
        let running = serve().await;
        let url = route(&running.url(), PIX2PIX);
        let cases: Vec<(reqwest::RequestBuilder, &str)> = vec![
            (
                client().post(&url).json(&json!({"parameters": {"prompt": "gold"}})),
                "is required",
            ),
            (client().post(&url).json(&json!({"inputs": 3})), "valid string"),
            (
                client().post(&url).json(&json!({"inputs": "bm90IGFuIGltYWdl"})),
                "cannot identify",
            ),
            (
                client()
                    .post(&url)
                    .json(&json!({"inputs": "https://example.com/cat.png"})),
                "example.com",
            ),
            (
                client()
                    .post(&url)
                    .header(header::CONTENT_TYPE, "image/png")
                    .body("not a png"),
                "cannot identify",
            ),
            (client().post(&url).header(header::CONTENT_TYPE, "image/png"), "empty"),
        ];
        for (request, needle) in cases {
            let (status, _, bytes) = send(request).await;
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(status, 400, "{body}");
            assert!(
                body["error"].as_str().unwrap().contains(needle),
                "{body} lacks {needle}"
            );
        }
        let (status, _, _) = send(client().post(route(&running.url(), "nobody/nothing")).body("x")).await;
        assert_eq!(status, 404);
    }

    #[test]
    fn json_or_raw_bodies() {
        let mut headers = HeaderMap::new();
        assert!(is_json(&headers, b" {\"inputs\": \"x\"}"));
        assert!(!is_json(&headers, b"\x89PNG"));
        headers.insert(header::CONTENT_TYPE, "image/png".parse().unwrap());
        assert!(!is_json(&headers, b"{"));
        headers.insert(header::CONTENT_TYPE, "application/json; charset=utf-8".parse().unwrap());
        assert!(is_json(&headers, b"\x89PNG"));
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!is_json(&headers, b"\x89PNG"));
    }
}
