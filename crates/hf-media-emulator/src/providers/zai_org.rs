//! zai-org's asynchronous images: `POST /api/paas/v4/async/images/generations` (header
//! `x-source-channel`, body `{"model", "prompt", "size": "WxH"}`) → `{"model", "id", "request_id",
//! "task_status": "PROCESSING"}`; `GET /api/paas/v4/async-result/{id}` → `PROCESSING` … → `SUCCESS` with
//! `image_result: [{"url"}]`. Errors are `{"error": {"code", "message"}}`.

use axum::Router;
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::behaviour::FaultTarget;
use crate::media::ImageFormat;
use crate::state::JobState;
use crate::support::{self, Shared};

const PROVIDER: &str = "zai-org";

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/paas/v4/async/images/generations", post(submit))
        .route("/api/paas/v4/async-result/{id}", get(poll))
}

/// Z.ai's error answer.
fn zai_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

async fn submit(AxumState(state): AxumState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let behaviour = match support::enter(&state, PROVIDER, FaultTarget::Submit, &headers).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    if headers
        .get("x-source-channel")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim().is_empty())
    {
        return zai_error(
            StatusCode::BAD_REQUEST,
            "1214",
            "the x-source-channel header is missing: calls through the Hugging Face router send \
             `x-source-channel: hugging_face`",
        );
    }
    let body = match support::json_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let model = body.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
    if support::served_task(&state, PROVIDER, &model) != Some("text-to-image") {
        return zai_error(
            StatusCode::NOT_FOUND,
            "1211",
            format!("Unknown Model `{model}`, please check the model code."),
        );
    }
    let ask = match support::image_ask(&body, "prompt", &body) {
        Ok(ask) => ask,
        Err(response) => return response,
    };
    let format = behaviour.image_format.unwrap_or(ImageFormat::Png);
    let file_id = match support::render_and_store(&state, PROVIDER, "text-to-image", &ask, format).await {
        Ok(id) => id,
        Err(response) => return response,
    };
    // Z.ai echoes the caller's `request_id`, or makes one.
    let request_id = body
        .get("request_id")
        .and_then(Value::as_str)
        .map_or_else(|| state.new_id("req-"), str::to_owned);
    let data = json!({"task": "text-to-image", "model": model, "request_id": request_id, "seed": ask.seed,
                      "width": ask.width, "height": ask.height, "created": support::unix_now()});
    let id = state.create_job(PROVIDER, file_id, data);
    axum::Json(json!({"model": model, "id": id, "request_id": request_id, "task_status": "PROCESSING"})).into_response()
}

async fn poll(AxumState(state): AxumState<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(response) = support::enter(&state, PROVIDER, FaultTarget::Poll, &headers).await {
        return response;
    }
    let Some((job, job_state)) = state.poll_job(PROVIDER, &id) else {
        return zai_error(StatusCode::NOT_FOUND, "1230", format!("task {id} not found"));
    };
    let data = &job.data;
    let mut answer = json!({"model": data["model"], "id": id, "request_id": data["request_id"],
                            "task_status": "PROCESSING"});
    if let JobState::Done = job_state {
        answer["task_status"] = json!("SUCCESS");
        answer["created"] = data["created"].clone();
        answer["image_result"] = json!([{"url": support::file_url(&support::origin(&headers), &job.file_id)}]);
    }
    axum::Json(answer).into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::header;

    use super::*;
    use crate::providers::test_support::{client, poll_until, serve};

    const SUBMIT: &str = "/zai-org/api/paas/v4/async/images/generations";

    #[tokio::test]
    async fn missing_auth_missing_channel_unknown_model_and_unknown_task_are_refused() {
        let running = serve().await;
        let url = format!("{}{SUBMIT}", running.url());
        let body = json!({"model": "cogview-4-250304", "prompt": "a fox"});
        let answer = client()
            .post(&url)
            .header("x-source-channel", "hugging_face")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401);

        let answer = client()
            .post(&url)
            .bearer_auth("hf_test")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400);
        let error: Value = answer.json().await.unwrap();
        assert!(error["error"]["message"].as_str().unwrap().contains("x-source-channel"));

        let answer = client()
            .post(&url)
            .bearer_auth("hf_test")
            .header("x-source-channel", "hugging_face")
            .json(&json!({"model": "glm-nothing", "prompt": "a fox"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);
        assert_eq!(answer.json::<Value>().await.unwrap()["error"]["code"], "1211");

        let answer = client()
            .get(format!("{}/zai-org/api/paas/v4/async-result/nope", running.url()))
            .bearer_auth("hf_test")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);
    }

    #[tokio::test]
    async fn a_task_is_polled_until_success() {
        let running = serve().await;
        let answer = client()
            .post(format!("{}{SUBMIT}", running.url()))
            .bearer_auth("hf_test")
            .header("x-source-channel", "hugging_face")
            .header("accept-language", "en-US,en")
            .json(&json!({"model": "cogview-4-250304", "prompt": "a fox", "size": "64x48"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let task: Value = answer.json().await.unwrap();
        assert_eq!(task["task_status"], "PROCESSING");
        assert_eq!(task["model"], "cogview-4-250304");
        assert!(task["request_id"].is_string());
        let id = task["id"].as_str().unwrap();
        let poll_url = format!("{}/zai-org/api/paas/v4/async-result/{id}", running.url());
        let (statuses, done) = poll_until(
            || {
                client()
                    .get(&poll_url)
                    .bearer_auth("hf_test")
                    .header("x-source-channel", "hugging_face")
            },
            "/task_status",
            "SUCCESS",
        )
        .await;
        assert_eq!(statuses, ["PROCESSING", "SUCCESS"]);
        assert_eq!(done["request_id"], task["request_id"]);
        let image = client()
            .get(done["image_result"][0]["url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(image.headers()[header::CONTENT_TYPE], "image/png");
    }
}
