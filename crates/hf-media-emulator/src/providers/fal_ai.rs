//! fal-ai's queue: `POST /{app}` → `{request_id, status, response_url}`; `GET /{app}/requests/{id}/status`
//! → `IN_QUEUE` (with `queue_position`) → `IN_PROGRESS` → `COMPLETED`; `GET /{app}/requests/{id}` → the
//! result (`images[0].url` or `video.url`).

use axum::Router;
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::behaviour::FaultTarget;
use crate::media::ImageFormat;
use crate::state::JobState;
use crate::support::{self, Shared};

const PROVIDER: &str = "fal-ai";

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/{*path}", get(poll).post(submit))
}

/// fal's `response_url` names the app by its first two path segments (`fal-ai/flux`), on fal's host.
fn response_url(provider_id: &str, request_id: &str) -> String {
    let app: Vec<&str> = provider_id.split('/').take(2).collect();
    format!("https://queue.fal.run/{}/requests/{request_id}", app.join("/"))
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
        return (StatusCode::NOT_FOUND, "404: Not Found").into_response();
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
    let data = json!({"task": task, "seed": ask.seed, "width": ask.width, "height": ask.height, "prompt": ask.prompt,
                      "provider_id": provider_id});
    let request_id = state.create_job(PROVIDER, file_id, data);
    let url = response_url(&provider_id, &request_id);
    axum::Json(json!({
        "request_id": request_id,
        "status": "IN_QUEUE",
        "queue_position": behaviour.pending_polls,
        "response_url": url,
        "status_url": format!("{url}/status"),
        "cancel_url": format!("{url}/cancel"),
    }))
    .into_response()
}

async fn poll(AxumState(state): AxumState<Shared>, Path(path): Path<String>, headers: HeaderMap) -> Response {
    if let Err(response) = support::enter(&state, PROVIDER, FaultTarget::Poll, &headers).await {
        return response;
    }
    let (path, status) = match path.strip_suffix("/status") {
        Some(rest) => (rest, true),
        None => (path.as_str(), false),
    };
    let Some((_, request_id)) = path.rsplit_once("/requests/") else {
        return (StatusCode::NOT_FOUND, "404: Not Found").into_response();
    };
    if status {
        let Some((_, job_state)) = state.poll_job(PROVIDER, request_id) else {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"detail": "Request not found"})),
            )
                .into_response();
        };
        let pending_polls = state.behaviour(PROVIDER).pending_polls;
        return axum::Json(match job_state {
            JobState::Pending { polls } if polls * 2 <= pending_polls => {
                json!({"status": "IN_QUEUE", "queue_position": pending_polls.saturating_sub(polls), "request_id": request_id})
            }
            JobState::Pending { .. } => json!({"status": "IN_PROGRESS", "logs": [], "request_id": request_id}),
            JobState::Done => json!({"status": "COMPLETED", "logs": [], "request_id": request_id}),
        })
        .into_response();
    }
    let Some((job, done)) = state.job_done(PROVIDER, request_id) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"detail": "Request not found"})),
        )
            .into_response();
    };
    if !done {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"detail": "Request is still in progress"})),
        )
            .into_response();
    }
    let url = support::file_url(&support::origin(&headers), &job.file_id);
    let file = state.file(&job.file_id);
    let data = &job.data;
    let seed = data.get("seed").cloned().unwrap_or(Value::Null);
    let answer = if data["task"] == "text-to-video" {
        json!({"video": {"url": url, "content_type": "video/mp4", "file_size": file.map(|f| f.bytes.len())}, "seed": seed})
    } else {
        json!({
            "images": [{"url": url, "width": data["width"], "height": data["height"],
                        "content_type": file.map(|f| f.mime).unwrap_or("image/png")}],
            "timings": {"inference": 0.1}, "seed": seed, "has_nsfw_concepts": [false], "prompt": data["prompt"],
        })
    };
    axum::Json(answer).into_response()
}
