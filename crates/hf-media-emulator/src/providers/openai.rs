//! An OpenAI-compatible images server under `/openai` (not a Hugging Face provider, so not in
//! [`crate::PROVIDERS`]), for clients that talk to any OpenAI-style image endpoint:
//!
//! - `POST /v1/images/generations`, JSON `{"prompt", "model", "n", "size", "response_format",
//!   "output_format"}` → `{"created", "data": [{"b64_json"} | {"url"}]}`;
//! - `POST /v1/images/edits`, `multipart/form-data` with the image as `image` (or repeated `image[]`
//!   parts, combined side by side), `prompt`, `model`, `n`, `response_format`, `size`, `output_format`
//!   (a `mask` part is accepted and ignored) → the same answer, each image an edit of the inputs.
//!
//! `n` is 1 to 10 (image `i` is rendered with seed `i`), `size` is `WxH` or `auto` (generations default to
//! 1024×1024, edits to the inputs' size), `response_format` is `b64_json` (the default) or `url` (a file on
//! the emulator), `output_format` is `png` (the default, or the behaviour's image format), `jpeg` or
//! `webp`. No API key is needed (any is accepted). Errors are OpenAI's `{"error": {"message", "type",
//! "param", "code"}}` with status 400. Behaviours and stats go under the name
//! [`crate::OPENAI_SERVER`].

use std::sync::Arc;

use axum::Router;
use axum::extract::State as AxumState;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::behaviour::{FaultTarget, ProviderBehaviour};
use crate::inputs;
use crate::media::{self, ImageFormat};
use crate::support::{self, MediaAsk, Shared};

const NAME: &str = crate::OPENAI_SERVER;
/// Most images one request may ask for.
const MAX_N: u64 = 10;

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/images/generations", post(generations))
        .route("/v1/images/edits", post(edits))
}

/// OpenAI's error answer.
fn openai_error(message: impl Into<String>, param: Option<&str>, code: Option<&str>) -> Response {
    let body = json!({"error": {"message": message.into(), "type": "invalid_request_error", "param": param,
                                "code": code}});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// What every image request of this server shares.
struct Options {
    prompt: String,
    n: u64,
    size: Option<(u32, u32)>,
    url: bool,
    format: ImageFormat,
}

/// A parameter as text (multipart fields are text; JSON numbers are accepted too).
fn text(params: &Map<String, Value>, key: &str) -> Option<String> {
    match params.get(key)? {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn options(params: &Map<String, Value>, behaviour: &ProviderBehaviour) -> Result<Options, Response> {
    let prompt = match params.get("prompt") {
        Some(Value::String(p)) if !p.trim().is_empty() => p.clone(),
        _ => {
            return Err(openai_error(
                "Missing required parameter: 'prompt'.",
                Some("prompt"),
                Some("missing_required_parameter"),
            ));
        }
    };
    let n = match params.get("n").filter(|v| !v.is_null()) {
        None => 1,
        Some(_) => match text(params, "n").and_then(|n| n.parse::<u64>().ok()) {
            Some(n) if (1..=MAX_N).contains(&n) => n,
            _ => {
                return Err(openai_error(
                    format!("Invalid 'n': must be an integer between 1 and {MAX_N}."),
                    Some("n"),
                    Some("invalid_value"),
                ));
            }
        },
    };
    let size = match text(params, "size").as_deref() {
        None | Some("" | "auto") => None,
        Some(size) => {
            let parsed = size
                .split_once(['x', 'X'])
                .and_then(|(w, h)| Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?)))
                .filter(|&(w, h)| (1..=media::MAX_SIDE).contains(&w) && (1..=media::MAX_SIDE).contains(&h));
            match parsed {
                Some(size) => Some(size),
                None => {
                    return Err(openai_error(
                        format!(
                            "Invalid value: '{size}'. Supported values are 'auto' and 'WxH', each side between 1 \
                             and {}.",
                            media::MAX_SIDE
                        ),
                        Some("size"),
                        Some("invalid_value"),
                    ));
                }
            }
        }
    };
    let url = match text(params, "response_format").as_deref() {
        None | Some("" | "b64_json") => false,
        Some("url") => true,
        Some(other) => {
            return Err(openai_error(
                format!("Invalid value: '{other}'. Supported values are: 'url' and 'b64_json'."),
                Some("response_format"),
                Some("invalid_value"),
            ));
        }
    };
    let format = match text(params, "output_format").as_deref() {
        None | Some("") => behaviour.image_format.unwrap_or(ImageFormat::Png),
        Some("png") => ImageFormat::Png,
        Some("jpeg" | "jpg") => ImageFormat::Jpeg,
        Some("webp") => ImageFormat::Webp,
        Some(other) => {
            return Err(openai_error(
                format!("Invalid value: '{other}'. Supported values are: 'png', 'jpeg' and 'webp'."),
                Some("output_format"),
                Some("invalid_value"),
            ));
        }
    };
    Ok(Options {
        prompt,
        n,
        size,
        url,
        format,
    })
}

/// Renders the `n` images (image `i` with seed `i`) and answers them.
async fn answer(state: &Shared, headers: &HeaderMap, options: &Options, mut ask: MediaAsk) -> Response {
    let mut data = Vec::new();
    for i in 0..options.n {
        ask.seed = Some(i);
        let (bytes, mime) = match support::render_image(&ask, options.format).await {
            Ok(rendered) => rendered,
            Err(response) => return response,
        };
        if options.url {
            let file_id = state.store_file(NAME, bytes, mime);
            data.push(json!({"url": support::file_url(&support::origin(headers), &file_id)}));
        } else {
            data.push(json!({"b64_json": base64::engine::general_purpose::STANDARD.encode(&bytes)}));
        }
    }
    axum::Json(json!({
        "created": support::unix_now(),
        "data": data,
        "output_format": options.format.extension().replace("jpg", "jpeg"),
        "size": format!("{}x{}", ask.width, ask.height),
    }))
    .into_response()
}

async fn generations(AxumState(state): AxumState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let behaviour = match support::enter_open(&state, NAME, FaultTarget::Submit) {
        Ok(b) => b,
        Err(response) => return response,
    };
    let params = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(params)) => params,
        Ok(_) => return openai_error("The body must be a JSON object.", None, None),
        Err(e) => {
            return openai_error(
                format!("We could not parse the JSON body of your request: {e}"),
                None,
                None,
            );
        }
    };
    let options = match options(&params, &behaviour) {
        Ok(options) => options,
        Err(response) => return response,
    };
    let (width, height) = options.size.unwrap_or((1024, 1024));
    let ask = MediaAsk {
        prompt: options.prompt.clone(),
        seed: None,
        width,
        height,
        frames: 1,
        inputs: Arc::default(),
    };
    support::wait(&behaviour).await;
    answer(&state, &headers, &options, ask).await
}

async fn edits(
    AxumState(state): AxumState<Shared>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let behaviour = match support::enter_open(&state, NAME, FaultTarget::Submit) {
        Ok(b) => b,
        Err(response) => return response,
    };
    let mut multipart = match multipart {
        Ok(multipart) => multipart,
        Err(e) => return openai_error(format!("Expected a multipart/form-data body: {e}"), None, None),
    };
    let mut images: Vec<Bytes> = Vec::new();
    let mut params = Map::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return openai_error(format!("Malformed multipart body: {e}"), None, None),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let is_image = matches!(name.as_str(), "image" | "image[]");
        let bytes = match field.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => return openai_error(format!("Malformed multipart body: {e}"), Some(&name), None),
        };
        if is_image {
            images.push(bytes);
        } else if name != "mask" {
            params.insert(name, json!(String::from_utf8_lossy(&bytes)));
        }
    }
    if images.is_empty() {
        return openai_error(
            "Missing required parameter: 'image'.",
            Some("image"),
            Some("missing_required_parameter"),
        );
    }
    if images.len() > media::MAX_INPUTS {
        return openai_error(
            format!("Too many images: at most {} are accepted.", media::MAX_INPUTS),
            Some("image"),
            Some("invalid_value"),
        );
    }
    let options = match options(&params, &behaviour) {
        Ok(options) => options,
        Err(response) => return response,
    };
    let decoded = match inputs::decode_all(images).await {
        Ok(decoded) => decoded,
        Err((i, e)) => {
            return openai_error(
                format!(
                    "Invalid image file or mode for image {}, please check your image file: {}",
                    i + 1,
                    e.message()
                ),
                Some("image"),
                Some("invalid_image_format"),
            );
        }
    };
    let mut size = Map::new();
    if let Some((w, h)) = options.size {
        size.insert("width".into(), json!(w));
        size.insert("height".into(), json!(h));
    }
    let ask = match support::input_ask(
        "image-to-image",
        options.prompt.clone(),
        &Value::Object(size),
        Arc::new(decoded),
    ) {
        Ok(ask) => ask,
        Err(response) => return response,
    };
    support::wait(&behaviour).await;
    answer(&state, &headers, &options, ask).await
}

#[cfg(test)]
mod tests {
    use reqwest::multipart::{Form, Part};

    use super::*;
    use crate::behaviour::{Fault, FaultRule};
    use crate::providers::test_support::*;

    async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
        let answer = request.send().await.unwrap();
        (answer.status().as_u16(), answer.json().await.unwrap())
    }

    fn decoded(item: &Value) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(item["b64_json"].as_str().unwrap())
            .unwrap()
    }

    fn image_part(image: &image::RgbImage) -> Part {
        Part::bytes(png(image))
            .file_name("image.png")
            .mime_str("image/png")
            .unwrap()
    }

    #[tokio::test]
    async fn generations_answer_base64_or_urls() {
        let running = serve().await;
        let url = format!("{}/openai/v1/images/generations", running.url());
        let body = json!({"model": "gpt-image-1", "prompt": "a fox", "n": 2, "size": "64x48"});
        let (status, answer) = send(client().post(&url).bearer_auth("sk-test").json(&body)).await;
        assert_eq!(status, 200);
        assert!(answer["created"].is_u64());
        let images: Vec<Vec<u8>> = answer["data"].as_array().unwrap().iter().map(decoded).collect();
        assert_eq!(images.len(), 2);
        assert_ne!(images[0], images[1], "each image has its own seed");
        for bytes in &images {
            assert_eq!(image::load_from_memory(bytes).unwrap().width(), 64);
        }
        // No key needed; URLs point at the emulator's files.
        let body = json!({"prompt": "a fox", "response_format": "url", "size": "32x32", "output_format": "webp"});
        let (status, answer) = send(client().post(&url).json(&body)).await;
        assert_eq!(status, 200);
        let image = client()
            .get(answer["data"][0]["url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(image.headers()["content-type"], "image/webp");
        // The default size.
        let (_, answer) = send(client().post(&url).json(&json!({"prompt": "a fox", "size": "auto"}))).await;
        assert_eq!(answer["size"], "1024x1024");
    }

    #[tokio::test]
    async fn edits_take_one_or_several_images() {
        let running = serve().await;
        let url = format!("{}/openai/v1/images/edits", running.url());
        let form = Form::new()
            .part("image", image_part(&quadrants(64, 48)))
            .text("prompt", "make it gold")
            .text("model", "gpt-image-1");
        let (status, answer) = send(client().post(&url).bearer_auth("sk-test").multipart(form)).await;
        assert_eq!(status, 200, "{answer}");
        assert_edit_of(
            &decoded(&answer["data"][0]),
            &quadrants(64, 48),
            (64, 48),
            "make it gold",
        );

        let form = Form::new()
            .part("image[]", image_part(&flat(32, 48, [230, 20, 20])))
            .part("image[]", image_part(&flat(32, 48, [20, 20, 230])))
            .part("mask", image_part(&flat(8, 8, [0, 0, 0])))
            .text("prompt", "put them together")
            .text("n", "2")
            .text("size", "128x96");
        let (status, answer) = send(client().post(&url).multipart(form)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["data"].as_array().unwrap().len(), 2);
        assert_red_then_blue(&decoded(&answer["data"][1]), (128, 96));

        let form = Form::new()
            .part("image", image_part(&quadrants(64, 48)))
            .text("prompt", "gold")
            .text("response_format", "url");
        let (_, answer) = send(client().post(&url).multipart(form)).await;
        let image = client()
            .get(answer["data"][0]["url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_edit_of(&image.bytes().await.unwrap(), &quadrants(64, 48), (64, 48), "gold");
    }

    #[tokio::test]
    async fn bad_requests_answer_openai_errors() {
        let running = serve().await;
        let edits = format!("{}/openai/v1/images/edits", running.url());
        let generations = format!("{}/openai/v1/images/generations", running.url());
        let cases: Vec<(reqwest::RequestBuilder, &str, &str)> = vec![
            (
                client().post(&edits).multipart(Form::new().text("prompt", "gold")),
                "image",
                "Missing required parameter: 'image'.",
            ),
            (
                client().post(&edits).multipart(
                    Form::new()
                        .part("image", Part::bytes(b"junk".to_vec()).file_name("a.png"))
                        .text("prompt", "gold"),
                ),
                "image",
                "Invalid image file",
            ),
            (
                client()
                    .post(&edits)
                    .multipart(Form::new().part("image", image_part(&quadrants(8, 8)))),
                "prompt",
                "Missing required parameter: 'prompt'.",
            ),
            (client().post(&edits).json(&json!({"prompt": "gold"})), "", "multipart"),
            (
                client()
                    .post(&generations)
                    .json(&json!({"prompt": "x", "size": "huge"})),
                "size",
                "Invalid value",
            ),
            (
                client().post(&generations).json(&json!({"prompt": "x", "n": 11})),
                "n",
                "Invalid 'n'",
            ),
            (
                client()
                    .post(&generations)
                    .json(&json!({"prompt": "x", "response_format": "png"})),
                "response_format",
                "Invalid value",
            ),
            (
                client()
                    .post(&generations)
                    .json(&json!({"prompt": "x", "output_format": "gif"})),
                "output_format",
                "Invalid value",
            ),
            (client().post(&generations).body("{"), "", "parse the JSON"),
            (client().post(&generations).json(&json!([1])), "", "JSON object"),
        ];
        for (request, param, needle) in cases {
            let (status, answer) = send(request).await;
            assert_eq!(status, 400, "{answer}");
            assert_eq!(answer["error"]["type"], "invalid_request_error");
            if !param.is_empty() {
                assert_eq!(answer["error"]["param"], param, "{answer}");
            }
            assert!(
                answer["error"]["message"].as_str().unwrap().contains(needle),
                "{answer} lacks {needle}"
            );
        }
    }

    #[tokio::test]
    async fn behaviours_apply_under_its_name() {
        let (emulator, running) = serve_scripted().await;
        let behaviour = client()
            .put(format!("{}/_emulator/behaviour/{NAME}", running.url()))
            .json(&json!({"fault": {"fault": {"kind": "rate_limited", "retry_after_secs": 3}, "times": 1}}))
            .send()
            .await
            .unwrap();
        assert_eq!(behaviour.status(), 204);
        let url = format!("{}/openai/v1/images/generations", running.url());
        let body = json!({"prompt": "a fox", "size": "16x16"});
        let answer = client().post(&url).json(&body).send().await.unwrap();
        assert_eq!(answer.status(), 429);
        assert_eq!(answer.headers()["retry-after"], "3");
        assert_eq!(send(client().post(&url).json(&body)).await.0, 200);
        emulator.set_behaviour(
            NAME,
            ProviderBehaviour::default().with_fault(FaultRule::always(Fault::Status {
                status: 500,
                body: None,
            })),
        );
        assert_eq!(client().post(&url).json(&body).send().await.unwrap().status(), 500);
        assert_eq!(emulator.stats()["openai submit"], 3);
    }
}
