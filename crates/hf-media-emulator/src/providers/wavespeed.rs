//! wavespeed's predictions (one protocol for images and videos): `POST /api/v3/{providerId}` with
//! `{"prompt", …}` → `{"code": 200, "message": "success", "data": {"id", "status": "created", "urls":
//! {"get"}, …}}`, where `urls.get` is on WaveSpeed's own host (clients rebuild its path on their base);
//! `GET /api/v3/predictions/{id}/result` → `created` → `processing` → `completed` with `outputs: [url]`.
//! Errors are `{"code", "message", "data": null}`.
//!
//! Image models read the image from `image` and `images: […]` (a URL, a data URL or bare base64; distinct
//! images are combined); a missing or unusable image is a 400.

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
use crate::support::{self, ImageProblem, Shared};

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
    let ask = match support::images_of(&state, &headers, task, &body, &["images", "image"], "").await {
        Ok(Some(images)) => {
            support::prompt_of(&body, "prompt").and_then(|prompt| support::input_ask(task, prompt, &body, images))
        }
        Ok(None) => support::media_ask(task, &body, "prompt", &body),
        Err(ImageProblem::Missing) => return wavespeed_error(StatusCode::BAD_REQUEST, "image is required"),
        Err(ImageProblem::Bad { field, error }) => {
            return wavespeed_error(StatusCode::BAD_REQUEST, format!("invalid {field}: {}", error.message()));
        }
    };
    let ask = match ask {
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
    use crate::providers::test_support::*;

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

    async fn submit(url: &str, model: &str, body: &Value) -> (u16, Value) {
        let answer = client()
            .post(format!("{url}/wavespeed/api/v3/{model}"))
            .bearer_auth("hf_test")
            .json(body)
            .send()
            .await
            .unwrap();
        (answer.status().as_u16(), answer.json().await.unwrap())
    }

    /// Submits, polls until completed, and downloads the output.
    async fn run(url: &str, model: &str, body: &Value) -> Vec<u8> {
        let (status, answer) = submit(url, model, body).await;
        assert_eq!(status, 200, "{answer}");
        let path = answer["data"]["urls"]["get"]
            .as_str()
            .unwrap()
            .strip_prefix(API_HOST)
            .unwrap()
            .to_owned();
        let poll_url = format!("{url}/wavespeed{path}");
        let (_, done) = poll_until(
            || client().get(&poll_url).bearer_auth("hf_test"),
            "/data/status",
            "completed",
        )
        .await;
        let output = done["data"]["outputs"][0].as_str().unwrap();
        client()
            .get(output)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    }

    #[tokio::test]
    async fn edits_take_bare_base64_data_urls_and_several_images() {
        let running = serve().await;
        let url = running.url();
        let model = "wavespeed-ai/qwen-image/edit-plus";
        let bare = b64(&png(&quadrants(64, 48)));
        // js: bare base64 in `image` and `images`.
        let bytes = run(
            &url,
            model,
            &json!({"image": bare, "images": [bare], "prompt": "gold", "seed": -1}),
        )
        .await;
        assert_edit_of(&bytes, &quadrants(64, 48), (64, 48), "gold");
        // py: a data URL always labelled image/jpeg, whatever the format.
        let mislabelled = data_url(&png(&quadrants(64, 48)), "image/jpeg");
        let bytes = run(
            &url,
            model,
            &json!({"image": mislabelled, "prompt": "gold", "size": "32*24"}),
        )
        .await;
        assert_edit_of(&bytes, &quadrants(64, 48), (32, 24), "gold");
        let (red, blue) = red_and_blue_urls();
        let bytes = run(
            &url,
            model,
            &json!({"image": red, "images": [red, blue], "prompt": "both"}),
        )
        .await;
        assert_red_then_blue(&bytes, (64, 48));
    }

    #[tokio::test]
    async fn image_to_video_and_optional_images() {
        let running = serve().await;
        let url = running.url();
        let body = json!({"image": quadrants_url(), "prompt": "pan", "seed": 2, "num_frames": 3});
        let bytes = run(&url, "wavespeed-ai/wan-2.2/i2v-480p", &body).await;
        assert_animation_of_quadrants(&bytes, (64, 48), 3, "pan", 2);
        // image-text-to-image: a prompt alone is a text-to-image.
        let bytes = run(
            &url,
            "wavespeed-ai/flux-2-dev/edit",
            &json!({"prompt": "a fox", "size": "40*30"}),
        )
        .await;
        assert_eq!(image::load_from_memory(&bytes).unwrap().width(), 40);
        let body = json!({"prompt": "gold", "images": [quadrants_url()]});
        let bytes = run(&url, "wavespeed-ai/flux-2-dev/edit", &body).await;
        assert_edit_of(&bytes, &quadrants(64, 48), (64, 48), "gold");
    }

    #[tokio::test]
    async fn unusable_images_are_a_400() {
        let running = serve().await;
        let url = running.url();
        let model = "wavespeed-ai/qwen-image/edit-plus";
        let (status, body) = submit(&url, model, &json!({"prompt": "gold"})).await;
        assert_eq!(
            (status, body),
            (400, json!({"code": 400, "message": "image is required", "data": null}))
        );
        let (status, body) = submit(&url, "wavespeed-ai/wan-2.2/i2v-480p", &json!({"prompt": "go"})).await;
        assert_eq!((status, body["code"].as_u64()), (400, Some(400)));
        let (status, body) = submit(&url, model, &json!({"prompt": "gold", "image": "bm90IGFuIGltYWdl"})).await;
        assert_eq!(status, 400);
        assert!(body["message"].as_str().unwrap().contains("cannot identify"), "{body}");
        let (status, body) = submit(
            &url,
            model,
            &json!({"prompt": "gold", "image": "https://cdn.wavespeed.ai/x.png"}),
        )
        .await;
        assert_eq!(status, 400);
        assert!(body["message"].as_str().unwrap().contains("cdn.wavespeed.ai"), "{body}");
        let (status, _) = submit(&url, model, &json!({"prompt": "gold", "image": "%%%"})).await;
        assert_eq!(status, 400);
    }
}
