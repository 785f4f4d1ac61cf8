//! together: images `POST /v1/images/generations` (`model`, `prompt`, `response_format` `base64` or `url`,
//! `width`/`height`, `steps`) → `{"id", "model", "object": "list", "data": [{"index", "b64_json" | "url",
//! "timings"}]}`; videos `POST /v2/videos` (`model`, `prompt`, `width`/`height`) → `{"id", "status":
//! "queued"}`, then `GET /v2/videos/{id}` → `queued` → `in_progress` → `completed` with
//! `outputs.video_url`. Errors are OpenAI-style: `{"error": {"message", "type", "param", "code"}}`.

use axum::Router;
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::behaviour::FaultTarget;
use crate::media::ImageFormat;
use crate::state::JobState;
use crate::support::{self, Shared};

const PROVIDER: &str = "together";

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/images/generations", post(generate_image))
        .route("/v2/videos", post(submit_video))
        .route("/v2/videos/{id}", get(poll_video))
}

/// Together's error answer.
fn together_error(status: StatusCode, message: impl Into<String>, param: Option<&str>, code: Option<&str>) -> Response {
    let body = json!({"error": {"message": message.into(), "type": "invalid_request_error", "param": param,
                                "code": code}});
    (status, axum::Json(body)).into_response()
}

/// The body's `model`, when the catalogue serves it on together for `task`.
fn model_for(state: &Shared, body: &Value, task: &str) -> Result<String, Response> {
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return Err(together_error(
            StatusCode::BAD_REQUEST,
            "model is required",
            Some("model"),
            None,
        ));
    };
    if support::served_task(state, PROVIDER, model) != Some(task) {
        return Err(together_error(
            StatusCode::NOT_FOUND,
            format!(
                "Unable to access model {model}. Please visit https://api.together.ai/models to view the list of \
                 supported models."
            ),
            Some("model"),
            Some("model_not_available"),
        ));
    }
    Ok(model.to_owned())
}

async fn generate_image(AxumState(state): AxumState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let behaviour = match support::enter(&state, PROVIDER, FaultTarget::Submit, &headers).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let body = match support::json_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let model = match model_for(&state, &body, "text-to-image") {
        Ok(model) => model,
        Err(response) => return response,
    };
    let base64 = match body.get("response_format").and_then(Value::as_str) {
        Some("base64" | "b64_json") => true,
        None | Some("url") => false,
        Some(other) => {
            return together_error(
                StatusCode::BAD_REQUEST,
                format!("response_format must be one of base64, url (got {other})"),
                Some("response_format"),
                None,
            );
        }
    };
    let ask = match support::image_ask(&body, "prompt", &body) {
        Ok(ask) => ask,
        Err(response) => return response,
    };
    support::wait(&behaviour).await;
    let (bytes, mime) = match support::render_image(&ask, behaviour.image_format.unwrap_or(ImageFormat::Jpeg)).await {
        Ok(rendered) => rendered,
        Err(response) => return response,
    };
    let inference = u64::try_from(behaviour.latency.as_millis()).unwrap_or(u64::MAX).max(1);
    let mut item = json!({"index": 0, "timings": {"inference": inference}});
    if base64 {
        item["b64_json"] = json!(base64::engine::general_purpose::STANDARD.encode(&bytes));
    } else {
        let file_id = state.store_file(PROVIDER, bytes, mime);
        item["url"] = json!(support::file_url(&support::origin(&headers), &file_id));
    }
    axum::Json(json!({
        "id": state.new_id("together-img-"),
        "model": model,
        "object": "list",
        "data": [item],
    }))
    .into_response()
}

async fn submit_video(AxumState(state): AxumState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let behaviour = match support::enter(&state, PROVIDER, FaultTarget::Submit, &headers).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let body = match support::json_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let model = match model_for(&state, &body, "text-to-video") {
        Ok(model) => model,
        Err(response) => return response,
    };
    let ask = match support::video_ask(&body, "prompt", &body) {
        Ok(ask) => ask,
        Err(response) => return response,
    };
    let format = behaviour.image_format.unwrap_or(ImageFormat::Jpeg);
    let file_id = match support::render_and_store(&state, PROVIDER, "text-to-video", &ask, format).await {
        Ok(id) => id,
        Err(response) => return response,
    };
    let created_at = support::unix_now();
    let data = json!({"task": "text-to-video", "model": model, "seed": ask.seed, "width": ask.width,
                      "height": ask.height, "created_at": created_at});
    let id = state.create_job(PROVIDER, file_id, data);
    axum::Json(json!({"id": id, "object": "video", "model": model, "status": "queued", "created_at": created_at}))
        .into_response()
}

async fn poll_video(AxumState(state): AxumState<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(response) = support::enter(&state, PROVIDER, FaultTarget::Poll, &headers).await {
        return response;
    }
    let Some((job, job_state)) = state.poll_job(PROVIDER, &id) else {
        return together_error(
            StatusCode::NOT_FOUND,
            format!("Video job {id} not found"),
            Some("id"),
            Some("not_found"),
        );
    };
    let data = &job.data;
    let mut answer = json!({"id": id, "object": "video", "model": data["model"], "created_at": data["created_at"],
                            "size": format!("{}x{}", data["width"], data["height"]), "seed": data["seed"]});
    let pending_polls = state.behaviour(PROVIDER).pending_polls;
    match job_state {
        JobState::Pending { polls } if polls * 2 <= pending_polls => answer["status"] = json!("queued"),
        JobState::Pending { .. } => answer["status"] = json!("in_progress"),
        JobState::Done => {
            answer["status"] = json!("completed");
            answer["completed_at"] = json!(support::unix_now());
            answer["outputs"] = json!({
                "video_url": support::file_url(&support::origin(&headers), &job.file_id),
                "cost": 0,
            });
        }
    }
    axum::Json(answer).into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::header;

    use super::*;
    use crate::providers::test_support::{client, poll_until, serve};

    #[tokio::test]
    async fn missing_auth_unknown_model_and_unknown_job_are_refused() {
        let running = serve().await;
        let images = format!("{}/together/v1/images/generations", running.url());
        let body = json!({"model": "black-forest-labs/FLUX.1-schnell", "prompt": "a fox"});
        let answer = client().post(&images).json(&body).send().await.unwrap();
        assert_eq!(answer.status(), 401);

        let answer = client()
            .post(&images)
            .bearer_auth("hf_test")
            .json(&json!({"model": "nobody/nothing", "prompt": "a fox"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);
        let error: Value = answer.json().await.unwrap();
        assert_eq!(error["error"]["code"], "model_not_available");

        // A video model is not an image model.
        let answer = client()
            .post(&images)
            .bearer_auth("hf_test")
            .json(&json!({"model": "Wan-AI/Wan2.1-T2V-14B", "prompt": "a fox"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);

        let answer = client()
            .get(format!("{}/together/v2/videos/nope", running.url()))
            .bearer_auth("hf_test")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);
        assert!(answer.json::<Value>().await.unwrap()["error"]["message"].is_string());
    }

    #[tokio::test]
    async fn images_come_in_base64_or_as_urls() {
        let running = serve().await;
        let images = format!("{}/together/v1/images/generations", running.url());
        let answer = client()
            .post(&images)
            .bearer_auth("hf_test")
            .json(
                &json!({"model": "black-forest-labs/FLUX.1-schnell", "prompt": "a fox", "response_format": "base64",
                          "width": 64, "height": 48, "steps": 4}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["object"], "list");
        assert_eq!(body["model"], "black-forest-labs/FLUX.1-schnell");
        assert_eq!(body["data"][0]["index"], 0);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body["data"][0]["b64_json"].as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(&[0xff, 0xd8]), "a JPEG");

        let body: Value = client()
            .post(&images)
            .bearer_auth("hf_test")
            .json(
                &json!({"model": "black-forest-labs/FLUX.1-schnell", "prompt": "a fox", "response_format": "url",
                          "width": 64, "height": 48}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let image = client()
            .get(body["data"][0]["url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(image.headers()[header::CONTENT_TYPE], "image/jpeg");
    }

    #[tokio::test]
    async fn a_video_job_is_polled_until_completed() {
        let running = serve().await;
        let answer = client()
            .post(format!("{}/together/v2/videos", running.url()))
            .bearer_auth("hf_test")
            .json(
                &json!({"model": "Wan-AI/Wan2.2-T2V-A14B", "prompt": "a fox running", "width": 64, "height": 48,
                          "steps": 20}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let job: Value = answer.json().await.unwrap();
        assert_eq!(job["status"], "queued");
        let id = job["id"].as_str().unwrap();
        let poll_url = format!("{}/together/v2/videos/{id}", running.url());
        let (statuses, done) = poll_until(
            || client().get(&poll_url).bearer_auth("hf_test"),
            "/status",
            "completed",
        )
        .await;
        assert_eq!(statuses, ["in_progress", "completed"]);
        let video = client()
            .get(done["outputs"]["video_url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(video.headers()[header::CONTENT_TYPE], "video/mp4");
    }
}
