//! wavespeed's predictions (one protocol for images and videos): `POST /api/v3/{providerId}` with
//! `{"prompt", …}` → `{"code": 200, "message": "success", "data": {"id", "status": "created", "urls":
//! {"get"}, …}}`, where `urls.get` is on WaveSpeed's own host (clients rebuild its path on their base);
//! `GET /api/v3/predictions/{id}/result` → `created` → `processing` → `completed` with `outputs: [url]`.
//! Errors are `{"code", "message", "data": null}`.

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

const PROVIDER: &str = "wavespeed";
/// WaveSpeed's host, as `urls.get` names it.
const API_HOST: &str = "https://api.wavespeed.ai";

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/api/v3/{*path}", get(poll).post(submit))
}

/// WaveSpeed's error answer.
fn wavespeed_error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({"code": status.as_u16(), "message": message.into(), "data": null});
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
        return wavespeed_error(StatusCode::NOT_FOUND, format!("model {provider_id} not found"));
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
    let data = json!({"task": task, "model": provider_id, "seed": ask.seed, "width": ask.width,
                      "height": ask.height, "created_at": support::timestamp_now()});
    let id = state.create_job(PROVIDER, file_id, data.clone());
    axum::Json(json!({"code": 200, "message": "success", "data": prediction(&id, &data, "created", None)}))
        .into_response()
}

/// A prediction's `data`; `output` fills `outputs` once it completed.
fn prediction(id: &str, data: &Value, status: &str, output: Option<String>) -> Value {
    let outputs: Vec<String> = output.into_iter().collect();
    let nsfw: Vec<bool> = outputs.iter().map(|_| false).collect();
    json!({
        "id": id,
        "model": data["model"],
        "outputs": outputs,
        "urls": {"get": format!("{API_HOST}/api/v3/predictions/{id}/result")},
        "has_nsfw_contents": nsfw,
        "status": status,
        "created_at": data["created_at"],
        "error": "",
        "executionTime": if status == "completed" { 100 } else { 0 },
        "timings": {"inference": if status == "completed" { 100 } else { 0 }},
    })
}

async fn poll(AxumState(state): AxumState<Shared>, Path(path): Path<String>, headers: HeaderMap) -> Response {
    if let Err(response) = support::enter(&state, PROVIDER, FaultTarget::Poll, &headers).await {
        return response;
    }
    let id = path
        .strip_prefix("predictions/")
        .map(|rest| rest.strip_suffix("/result").unwrap_or(rest));
    let Some(id) = id.filter(|id| !id.is_empty() && !id.contains('/')) else {
        return wavespeed_error(StatusCode::NOT_FOUND, format!("no route GET /api/v3/{path}"));
    };
    let Some((job, job_state)) = state.poll_job(PROVIDER, id) else {
        return wavespeed_error(StatusCode::NOT_FOUND, format!("prediction {id} not found"));
    };
    let pending_polls = state.behaviour(PROVIDER).pending_polls;
    let data = match job_state {
        JobState::Pending { polls } if polls * 2 <= pending_polls => prediction(id, &job.data, "created", None),
        JobState::Pending { .. } => prediction(id, &job.data, "processing", None),
        JobState::Done => {
            let url = support::file_url(&support::origin(&headers), &job.file_id);
            prediction(id, &job.data, "completed", Some(url))
        }
    };
    axum::Json(json!({"code": 200, "message": "success", "data": data})).into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::header;

    use super::*;
    use crate::providers::test_support::{client, poll_until, serve};

    #[tokio::test]
    async fn missing_auth_unknown_model_and_unknown_prediction_are_refused() {
        let running = serve().await;
        let url = format!("{}/wavespeed/api/v3/wavespeed-ai/flux-schnell", running.url());
        let answer = client()
            .post(&url)
            .json(&json!({"prompt": "a fox"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401);

        let answer = client()
            .post(format!("{}/wavespeed/api/v3/nobody/nothing", running.url()))
            .bearer_auth("hf_test")
            .json(&json!({"prompt": "a fox"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);
        assert_eq!(answer.json::<Value>().await.unwrap()["code"], 404);

        for path in [
            "predictions/nope/result",
            "predictions/nope",
            "wavespeed-ai/flux-schnell",
        ] {
            let answer = client()
                .get(format!("{}/wavespeed/api/v3/{path}", running.url()))
                .bearer_auth("hf_test")
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 404, "{path}");
        }
    }

    #[tokio::test]
    async fn a_prediction_is_polled_until_completed() {
        let running = serve().await;
        let answer = client()
            .post(format!(
                "{}/wavespeed/api/v3/wavespeed-ai/qwen-image/text-to-image",
                running.url()
            ))
            .bearer_auth("hf_test")
            .json(&json!({"prompt": "a fox", "size": "64*48", "seed": 3}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["code"], 200);
        assert_eq!(body["data"]["status"], "created");
        assert_eq!(body["data"]["outputs"], json!([]));
        assert_eq!(body["data"]["model"], "wavespeed-ai/qwen-image/text-to-image");
        let get = body["data"]["urls"]["get"].as_str().unwrap();
        let path = get.strip_prefix(API_HOST).unwrap();
        let poll_url = format!("{}/wavespeed{path}", running.url());
        let (statuses, done) = poll_until(
            || client().get(&poll_url).bearer_auth("hf_test"),
            "/data/status",
            "completed",
        )
        .await;
        assert_eq!(statuses, ["processing", "completed"]);
        let image = client()
            .get(done["data"]["outputs"][0].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(image.headers()[header::CONTENT_TYPE], "image/png");
    }
}
