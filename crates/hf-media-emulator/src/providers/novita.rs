//! novita's asynchronous tasks: `POST /v3/async/{providerId}` with `{"prompt", "steps", width/height or
//! resolution, …}` → `{"task_id"}`; `GET /v3/async/task-result?task_id=…` → `{"task": {"task_id", "status",
//! "progress_percent", …}, "videos": […]}`, the status going `TASK_STATUS_QUEUED` → `TASK_STATUS_PROCESSING`
//! → `TASK_STATUS_SUCCEED` (then `videos[0].video_url`, or `images[0].image_url` for an image task). Errors
//! are `{"code", "reason", "message", "metadata"}`.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::json;

use crate::behaviour::FaultTarget;
use crate::media::ImageFormat;
use crate::state::JobState;
use crate::support::{self, Shared};

const PROVIDER: &str = "novita";
/// How long Novita says its media URLs stay valid, in seconds.
const URL_TTL: &str = "3600";

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/v3/async/{*path}", get(poll).post(submit))
}

/// Novita's error answer.
fn novita_error(status: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    let body = json!({"code": status.as_u16(), "reason": reason, "message": message.into(), "metadata": {}});
    (status, axum::Json(body)).into_response()
}

async fn submit(
    AxumState(state): AxumState<Shared>,
    Path(provider_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let behaviour = match support::enter(&state, PROVIDER, FaultTarget::Submit, &headers).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let Some(task) = support::served_task(&state, PROVIDER, &provider_id) else {
        return novita_error(
            StatusCode::NOT_FOUND,
            "MODEL_NOT_FOUND",
            format!("model {provider_id} not found"),
        );
    };
    let body = match support::json_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let ask = match support::media_ask(task, &body, "prompt", &body) {
        Ok(ask) => ask,
        Err(response) => return response,
    };
    let format = behaviour.image_format.unwrap_or(ImageFormat::Png);
    let file_id = match support::render_and_store(&state, PROVIDER, task, &ask, format).await {
        Ok(id) => id,
        Err(response) => return response,
    };
    let image_type = match format {
        ImageFormat::Png => "png",
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::Webp => "webp",
    };
    let data = json!({"task": task, "model": provider_id, "seed": ask.seed, "width": ask.width,
                      "height": ask.height, "image_type": image_type});
    let task_id = state.create_job(PROVIDER, file_id, data);
    axum::Json(json!({"task_id": task_id})).into_response()
}

async fn poll(
    AxumState(state): AxumState<Shared>,
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = support::enter(&state, PROVIDER, FaultTarget::Poll, &headers).await {
        return response;
    }
    if path != "task-result" {
        return novita_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no route GET /v3/async/{path}"),
        );
    }
    let Some(task_id) = query.get("task_id").filter(|id| !id.is_empty()) else {
        return novita_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST_BODY", "task_id is required");
    };
    let Some((job, job_state)) = state.poll_job(PROVIDER, task_id) else {
        return novita_error(StatusCode::NOT_FOUND, "TASK_NOT_FOUND", "task not found");
    };
    let data = &job.data;
    let pending_polls = state.behaviour(PROVIDER).pending_polls;
    let (status, progress) = match job_state {
        JobState::Pending { polls } if polls * 2 <= pending_polls => ("TASK_STATUS_QUEUED", 0),
        JobState::Pending { polls } => ("TASK_STATUS_PROCESSING", (polls * 100 / (pending_polls + 1)).min(99)),
        JobState::Done => ("TASK_STATUS_SUCCEED", 100),
    };
    let mut answer = json!({
        "task": {"task_id": task_id, "task_type": data["model"], "status": status, "reason": "", "eta": 0,
                 "progress_percent": progress},
        "extra": {"seed": data["seed"].as_u64().map(|s| s.to_string()).unwrap_or_default()},
        "images": [],
        "videos": [],
        "audios": [],
    });
    if let JobState::Done = job_state {
        let url = support::file_url(&support::origin(&headers), &job.file_id);
        if data["task"] == "text-to-video" {
            answer["videos"] = json!([{"video_url": url, "video_url_ttl": URL_TTL, "video_type": "mp4"}]);
        } else {
            answer["images"] = json!([{"image_url": url, "image_url_ttl": URL_TTL, "image_type": data["image_type"]}]);
        }
    }
    axum::Json(answer).into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::header;
    use serde_json::Value;

    use super::*;
    use crate::providers::test_support::{client, serve};

    #[tokio::test]
    async fn missing_auth_unknown_model_and_unknown_task_are_refused() {
        let running = serve().await;
        let url = format!("{}/novita/v3/async/wan-t2v", running.url());
        let answer = client()
            .post(&url)
            .json(&json!({"prompt": "a fox"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401);

        let answer = client()
            .post(format!("{}/novita/v3/async/nothing", running.url()))
            .bearer_auth("hf_test")
            .json(&json!({"prompt": "a fox"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);

        let answer = client()
            .get(format!("{}/novita/v3/async/task-result?task_id=nope", running.url()))
            .bearer_auth("hf_test")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);
        assert_eq!(answer.json::<Value>().await.unwrap()["message"], "task not found");

        let answer = client()
            .get(format!("{}/novita/v3/async/task-result", running.url()))
            .bearer_auth("hf_test")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400);
    }

    #[tokio::test]
    async fn a_task_is_polled_until_it_succeeds() {
        let running = serve().await;
        let answer = client()
            .post(format!("{}/novita/v3/async/wan-2.2-t2v", running.url()))
            .bearer_auth("hf_test")
            .json(&json!({"prompt": "a fox running", "steps": 20, "width": 64, "height": 48, "seed": 7}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let task_id = answer.json::<Value>().await.unwrap()["task_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut statuses = Vec::new();
        let done = loop {
            let body: Value = client()
                .get(format!("{}/novita/v3/async/task-result", running.url()))
                .query(&[("task_id", &task_id)])
                .bearer_auth("hf_test")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(body["task"]["task_id"], task_id.as_str());
            statuses.push(body["task"]["status"].as_str().unwrap().to_owned());
            if body["task"]["status"] == "TASK_STATUS_SUCCEED" {
                break body;
            }
            assert_eq!(body["videos"], json!([]));
            assert!(statuses.len() < 5, "{statuses:?}");
        };
        assert_eq!(statuses, ["TASK_STATUS_PROCESSING", "TASK_STATUS_SUCCEED"]);
        assert_eq!(done["task"]["progress_percent"], 100);
        let video = &done["videos"][0];
        assert_eq!(video["video_url_ttl"], "3600");
        assert_eq!(video["video_type"], "mp4");
        let bytes = client().get(video["video_url"].as_str().unwrap()).send().await.unwrap();
        assert_eq!(bytes.headers()[header::CONTENT_TYPE], "video/mp4");
    }
}
