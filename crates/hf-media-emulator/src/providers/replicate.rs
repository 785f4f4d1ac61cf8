//! replicate's predictions: `POST /v1/models/{owner}/{name}/predictions`, or `POST /v1/predictions` with
//! `version` for a pinned `owner/name:version` id, body `{"input": {"prompt", …}}` → `201` with a
//! prediction. Under `Prefer: wait`, a prediction that finishes within the wait window comes back
//! `succeeded` with its `output` (a list of URLs for images, one URL for videos); otherwise it comes back
//! `starting` and `GET /v1/predictions/{id}` answers `starting` → `processing` → `succeeded`. Errors are
//! `application/problem+json` (`{"detail", "status", "title"}`).
//!
//! Image-to-image models read the image from `input.image`, `input.images`, `input.input_image` or
//! `input.input_images` (clients send all four; distinct images are combined). A missing or unusable
//! image is a 422 "Input validation failed" naming the field.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::behaviour::{FaultTarget, ProviderBehaviour};
use crate::media::ImageFormat;
use crate::state::JobState;
use crate::support::{self, ImageProblem, Shared};

const PROVIDER: &str = "replicate";
/// Where these routes are mounted: `urls` in predictions point back at the emulator.
const MOUNT: &str = "/replicate";
/// The longest `Prefer: wait` hold Replicate grants.
const MAX_WAIT_SECS: u64 = 60;
/// Top-level body fields of the model route; the pinned route also takes `version`.
const BODY_FIELDS: &[&str] = &["input", "webhook", "webhook_events_filter", "stream"];

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/models/{owner}/{name}/predictions", post(create_for_model))
        .route("/v1/predictions", post(create_pinned))
        .route("/v1/predictions/{id}", get(poll))
}

/// Replicate's error answer.
fn problem(status: StatusCode, title: &str, detail: impl Into<String>) -> Response {
    let body = json!({"detail": detail.into(), "status": status.as_u16(), "title": title});
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// The 422 of a body that does not match the schema, one `- field: reason` line per problem.
fn invalid(problems: &[(String, String, &str)]) -> Response {
    let detail: String = problems
        .iter()
        .map(|(field, description, _)| format!("- {field}: {description}\n"))
        .collect();
    let fields: Vec<Value> = problems
        .iter()
        .map(|(field, description, kind)| json!({"type": kind, "field": field, "description": description}))
        .collect();
    let body = json!({"detail": detail, "status": 422, "title": "Input validation failed", "invalid_fields": fields});
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// The body's `input`, or the 422 Replicate answers for extra top-level fields or a missing `input`.
fn check_body(body: &Value, allowed: &[&str]) -> Result<Map<String, Value>, Response> {
    let Some(object) = body.as_object() else {
        return Err(invalid(&[(
            "(root)".into(),
            "Invalid type. Expected: object".into(),
            "invalid_type",
        )]));
    };
    let mut problems: Vec<(String, String, &str)> = object
        .keys()
        .filter(|key| !allowed.contains(&key.as_str()))
        .map(|key| {
            (
                "(root)".into(),
                format!("Additional property {key} is not allowed"),
                "additional_property_not_allowed",
            )
        })
        .collect();
    let input = match object.get("input") {
        Some(Value::Object(input)) => Some(input.clone()),
        Some(_) => {
            problems.push(("input".into(), "Invalid type. Expected: object".into(), "invalid_type"));
            None
        }
        None => {
            problems.push(("(root)".into(), "input is required".into(), "required"));
            None
        }
    };
    if let Some(input) = &input
        && input
            .get("prompt")
            .and_then(Value::as_str)
            .is_none_or(|p| p.trim().is_empty())
    {
        problems.push(("input".into(), "prompt is required".into(), "required"));
    }
    match input {
        Some(input) if problems.is_empty() => Ok(input),
        _ => Err(invalid(&problems)),
    }
}

/// The wait window asked for with `Prefer: wait` or `Prefer: wait=N`.
fn wait_window(headers: &HeaderMap) -> Option<u64> {
    let prefer = headers.get("prefer")?.to_str().ok()?;
    prefer.split(',').map(str::trim).find_map(|p| {
        if p == "wait" {
            Some(MAX_WAIT_SECS)
        } else {
            p.strip_prefix("wait=")?
                .trim()
                .parse::<u64>()
                .ok()
                .map(|s| s.clamp(1, MAX_WAIT_SECS))
        }
    })
}

/// A stable, made-up version id for official models (Replicate answers `dp-…` for those).
fn deployment_version(model: &str) -> String {
    let hash = model.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("dp-{hash:016x}")
}

async fn create_for_model(
    AxumState(state): AxumState<Shared>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let behaviour = match support::enter(&state, PROVIDER, FaultTarget::Submit, &headers).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let model = format!("{owner}/{name}");
    let Some(task) = support::served_task(&state, PROVIDER, &model) else {
        return problem(
            StatusCode::NOT_FOUND,
            "Not found",
            format!("The requested model {model} does not exist, or you do not have permission to use it."),
        );
    };
    let body = match support::json_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let input = match check_body(&body, BODY_FIELDS) {
        Ok(input) => input,
        Err(response) => return response,
    };
    let version = deployment_version(&model);
    create(&state, &behaviour, &headers, task, &model, &version, input).await
}

async fn create_pinned(AxumState(state): AxumState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let behaviour = match support::enter(&state, PROVIDER, FaultTarget::Submit, &headers).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let body = match support::json_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Some(version) = body.get("version").and_then(Value::as_str).map(str::to_owned) else {
        return invalid(&[("(root)".into(), "version is required".into(), "required")]);
    };
    let allowed: Vec<&str> = BODY_FIELDS.iter().copied().chain(["version"]).collect();
    let input = match check_body(&body, &allowed) {
        Ok(input) => input,
        Err(response) => return response,
    };
    // Replicate names a pinned model by its version alone: find the catalogue's `owner/name:version`.
    let pinned = state
        .catalogue
        .iter()
        .flat_map(|m| &m.entries)
        .filter(|e| e.provider == PROVIDER)
        .find_map(|e| {
            let (model, v) = e.provider_id.split_once(':')?;
            (v == version).then_some((model, e.task))
        });
    let Some((model, task)) = pinned else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid version or not permitted",
            "The specified version does not exist (or perhaps you don't have permission to use it?)",
        );
    };
    create(&state, &behaviour, &headers, task, model, &version, input).await
}

/// Renders the prediction's media, queues it, and answers `201` (finished within the wait window, or
/// `starting`).
async fn create(
    state: &Shared,
    behaviour: &ProviderBehaviour,
    headers: &HeaderMap,
    task: &'static str,
    model: &str,
    version: &str,
    input: Map<String, Value>,
) -> Response {
    let input = Value::Object(input);
    let fields = ["input_images", "images", "input_image", "image"];
    let ask = match support::images_of(state, headers, task, &input, &fields, "input.").await {
        Ok(Some(images)) => {
            support::prompt_of(&input, "prompt").and_then(|prompt| support::input_ask(task, prompt, &input, images))
        }
        Ok(None) => support::media_ask(task, &input, "prompt", &input),
        Err(ImageProblem::Missing) => {
            return invalid(&[("input".into(), "image is required".into(), "required")]);
        }
        Err(ImageProblem::Bad { field, error }) => {
            return invalid(&[(field, error.message(), "invalid_file")]);
        }
    };
    let ask = match ask {
        Ok(ask) => ask,
        Err(response) => return response,
    };
    let format = behaviour.image_format.unwrap_or(ImageFormat::Webp);
    let file_id = match support::render_and_store(state, PROVIDER, task, &ask, format).await {
        Ok(id) => id,
        Err(response) => return response,
    };
    let data = json!({"task": task, "model": model, "version": version, "input": input, "seed": ask.seed,
                      "width": ask.width, "height": ask.height, "created_at": support::timestamp_now()});
    let id = state.create_job(PROVIDER, file_id.clone(), data.clone());
    let window = wait_window(headers);
    let finishes_in_window =
        window.is_some_and(|secs| behaviour.pending_polls == 0 && behaviour.latency <= Duration::from_secs(secs));
    let answer = if finishes_in_window {
        support::wait(behaviour).await;
        prediction(&support::origin(headers), &id, &data, "succeeded", Some(&file_id))
    } else {
        prediction(&support::origin(headers), &id, &data, "starting", None)
    };
    let mut response = (StatusCode::CREATED, axum::Json(answer)).into_response();
    if let Some(secs) = window
        && let Ok(value) = HeaderValue::from_str(&format!("wait={secs}"))
    {
        response.headers_mut().insert("preference-applied", value);
    }
    response
}

/// A prediction object; `file_id` fills `output` once it succeeded.
fn prediction(origin: &str, id: &str, data: &Value, status: &str, file_id: Option<&str>) -> Value {
    let output = match file_id {
        None => Value::Null,
        Some(file_id) => {
            let url = support::file_url(origin, file_id);
            if support::is_video(data["task"].as_str().unwrap_or_default()) {
                json!(url)
            } else {
                json!([url])
            }
        }
    };
    let get = format!("{origin}{MOUNT}/v1/predictions/{id}");
    let mut answer = json!({
        "id": id,
        "model": data["model"],
        "version": data["version"],
        "input": data["input"],
        "logs": "",
        "output": output,
        "data_removed": false,
        "error": null,
        "status": status,
        "created_at": data["created_at"],
        "urls": {"cancel": format!("{get}/cancel"), "get": get},
    });
    if status == "succeeded" {
        answer["completed_at"] = json!(support::timestamp_now());
        answer["metrics"] = json!({"predict_time": 0.1});
    }
    answer
}

async fn poll(AxumState(state): AxumState<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(response) = support::enter(&state, PROVIDER, FaultTarget::Poll, &headers).await {
        return response;
    }
    let Some((job, job_state)) = state.poll_job(PROVIDER, &id) else {
        return problem(
            StatusCode::NOT_FOUND,
            "Not found",
            "The requested resource could not be found.",
        );
    };
    let origin = support::origin(&headers);
    let pending_polls = state.behaviour(PROVIDER).pending_polls;
    let answer = match job_state {
        JobState::Pending { polls } if polls * 2 <= pending_polls => {
            prediction(&origin, &id, &job.data, "starting", None)
        }
        JobState::Pending { .. } => prediction(&origin, &id, &job.data, "processing", None),
        JobState::Done => prediction(&origin, &id, &job.data, "succeeded", Some(&job.file_id)),
    };
    axum::Json(answer).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::test_support::*;

    #[test]
    fn prefer_wait_windows() {
        let mut headers = HeaderMap::new();
        assert_eq!(wait_window(&headers), None);
        headers.insert("prefer", HeaderValue::from_static("wait"));
        assert_eq!(wait_window(&headers), Some(60));
        headers.insert("prefer", HeaderValue::from_static("wait=5"));
        assert_eq!(wait_window(&headers), Some(5));
        headers.insert("prefer", HeaderValue::from_static("respond-async, wait=600"));
        assert_eq!(wait_window(&headers), Some(60));
    }

    #[tokio::test]
    async fn missing_auth_unknown_model_and_extra_fields_are_refused() {
        let running = serve().await;
        let url = format!(
            "{}/replicate/v1/models/black-forest-labs/flux-schnell/predictions",
            running.url()
        );
        let answer = client()
            .post(&url)
            .json(&json!({"input": {"prompt": "a fox"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401);

        let answer = client()
            .post(format!(
                "{}/replicate/v1/models/nobody/nothing/predictions",
                running.url()
            ))
            .bearer_auth("hf_test")
            .json(&json!({"input": {"prompt": "a fox"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);
        assert_eq!(answer.json::<Value>().await.unwrap()["status"], 404);

        let answer = client()
            .post(&url)
            .bearer_auth("hf_test")
            .json(&json!({"input": {"prompt": "a fox"}, "provider": "replicate"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 422);
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "application/problem+json");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(
            body["detail"],
            "- (root): Additional property provider is not allowed\n"
        );
        assert_eq!(body["title"], "Input validation failed");
        assert_eq!(body["status"], 422);

        let answer = client()
            .post(format!("{}/replicate/v1/predictions", running.url()))
            .bearer_auth("hf_test")
            .json(&json!({"input": {"prompt": "a fox"}, "version": "0000"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 422);
        assert_eq!(
            answer.json::<Value>().await.unwrap()["title"],
            "Invalid version or not permitted"
        );

        let answer = client()
            .get(format!("{}/replicate/v1/predictions/nope", running.url()))
            .bearer_auth("hf_test")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);
    }

    #[tokio::test]
    async fn prefer_wait_answers_a_finished_prediction() {
        let (emulator, running) = serve_scripted().await;
        emulator.set_behaviour(PROVIDER, ProviderBehaviour::default().with_pending_polls(0));
        let answer = client()
            .post(format!("{}/replicate/v1/predictions", running.url()))
            .bearer_auth("hf_test")
            .header("prefer", "wait")
            .json(&json!({"input": {"prompt": "a fox", "width": 64, "height": 48},
                          "version": "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201);
        assert_eq!(answer.headers()["preference-applied"], "wait=60");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["status"], "succeeded");
        assert_eq!(body["model"], "stability-ai/sdxl");
        let url = body["output"][0].as_str().unwrap();
        let image = client().get(url).send().await.unwrap();
        assert_eq!(image.headers()[header::CONTENT_TYPE], "image/webp");
    }

    #[tokio::test]
    async fn a_slow_prediction_is_polled_until_it_succeeds() {
        let running = serve().await;
        let answer = client()
            .post(format!(
                "{}/replicate/v1/models/lightricks/ltx-video/predictions",
                running.url()
            ))
            .bearer_auth("hf_test")
            .json(&json!({"input": {"prompt": "a fox running", "num_frames": 4}}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["status"], "starting");
        assert_eq!(body["output"], Value::Null);
        for key in ["id", "model", "version", "input", "logs", "error", "created_at", "urls"] {
            assert!(body.get(key).is_some(), "{key}");
        }
        let get = body["urls"]["get"].as_str().unwrap().to_owned();
        assert!(get.starts_with(&running.url()));
        let (statuses, done) = poll_until(|| client().get(&get).bearer_auth("hf_test"), "/status", "succeeded").await;
        assert_eq!(statuses, ["processing", "succeeded"]);
        let video = client().get(done["output"].as_str().unwrap()).send().await.unwrap();
        assert_eq!(video.headers()[header::CONTENT_TYPE], "video/mp4");
    }

    async fn predict(url: &str, model: &str, input: Value) -> (u16, Value) {
        let answer = client()
            .post(format!("{url}/replicate/v1/models/{model}/predictions"))
            .bearer_auth("hf_test")
            .header("prefer", "wait")
            .json(&json!({ "input": input }))
            .send()
            .await
            .unwrap();
        (answer.status().as_u16(), answer.json().await.unwrap())
    }

    #[tokio::test]
    async fn image_to_image_reads_the_four_image_keys() {
        let (emulator, running) = serve_scripted().await;
        emulator.set_behaviour(PROVIDER, ProviderBehaviour::default().with_pending_polls(0));
        let image = quadrants_url();
        let input = json!({"prompt": "gold", "image": image, "images": [image], "input_image": image,
                           "input_images": [image], "seed": 3});
        let (status, body) = predict(&running.url(), "black-forest-labs/flux-kontext-dev", input).await;
        assert_eq!((status, body["status"].as_str()), (201, Some("succeeded")));
        let url = body["output"][0].as_str().unwrap();
        let answer = client().get(url).send().await.unwrap();
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "image/webp");
        assert_edit_of(&answer.bytes().await.unwrap(), &quadrants(64, 48), (64, 48), "gold");

        // Any one key is enough; several distinct images are combined.
        for key in ["image", "input_image"] {
            let (status, body) = predict(
                &running.url(),
                "qwen/qwen-image-edit-plus",
                json!({"prompt": "gold", key: image, "width": 32, "height": 32}),
            )
            .await;
            assert_eq!(status, 201, "{key}");
            let bytes = client()
                .get(body["output"][0].as_str().unwrap())
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_edit_of(&bytes, &quadrants(64, 48), (32, 32), "gold");
        }
        let (red, blue) = red_and_blue_urls();
        let input = json!({"prompt": "both", "image": red, "input_image": red, "input_images": [red, blue]});
        let (_, body) = predict(&running.url(), "qwen/qwen-image-edit-plus", input).await;
        let bytes = client()
            .get(body["output"][0].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_red_then_blue(&bytes, (64, 48));
    }

    #[tokio::test]
    async fn a_slow_edit_is_polled_like_any_prediction() {
        let running = serve().await;
        let (status, body) = predict(
            &running.url(),
            "black-forest-labs/flux-kontext-dev",
            json!({"prompt": "gold", "input_image": quadrants_url()}),
        )
        .await;
        assert_eq!((status, body["status"].as_str()), (201, Some("starting")));
        let get = body["urls"]["get"].as_str().unwrap().to_owned();
        let (statuses, done) = poll_until(|| client().get(&get).bearer_auth("hf_test"), "/status", "succeeded").await;
        assert_eq!(statuses, ["processing", "succeeded"]);
        let bytes = client()
            .get(done["output"][0].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_edit_of(&bytes, &quadrants(64, 48), (64, 48), "gold");
    }

    #[tokio::test]
    async fn unusable_images_are_a_validation_error() {
        let running = serve().await;
        let url = running.url();
        let model = "black-forest-labs/flux-kontext-dev";
        let (status, body) = predict(&url, model, json!({"prompt": "gold"})).await;
        assert_eq!(status, 422);
        assert_eq!(body["title"], "Input validation failed");
        assert_eq!(body["detail"], "- input: image is required\n");

        let (status, body) = predict(
            &url,
            model,
            json!({"prompt": "gold", "image": data_url(b"nope", "image/png")}),
        )
        .await;
        assert_eq!(status, 422);
        assert_eq!(body["invalid_fields"][0]["field"], "input.image");
        assert!(body["detail"].as_str().unwrap().contains("cannot identify the image"));

        let input = json!({"prompt": "gold", "input_images": ["https://replicate.delivery/cat.png"]});
        let (status, body) = predict(&url, model, input).await;
        assert_eq!(status, 422);
        assert_eq!(body["invalid_fields"][0]["field"], "input.input_images[0]");
        assert!(body["detail"].as_str().unwrap().contains("replicate.delivery"));

        let (status, body) = predict(&url, model, json!({"prompt": "gold", "image": 12})).await;
        assert_eq!(
            (status, &body["invalid_fields"][0]["field"]),
            (422, &json!("input.image"))
        );
    }
}
