//! together: images `POST /v1/images/generations` (`model`, `prompt`, `response_format` `base64` or `url`,
//! `width`/`height`, `steps`) → `{"id", "model", "object": "list", "data": [{"index", "b64_json" | "url",
//! "timings"}]}`; videos `POST /v2/videos` (`model`, `prompt`, `width`/`height`) → `{"id", "status":
//! "queued"}`, then `GET /v2/videos/{id}` → `queued` → `in_progress` → `completed` with
//! `outputs.video_url`. Errors are OpenAI-style: `{"error": {"message", "type", "param", "code"}}`.
//!
//! Image-to-image models take the image as `image_url` (FLUX.1 Kontext, whose id has `kontext` and
//! `flux.1`, takes only that) or `reference_images: […]`; the prompt may be missing (`""`) but not `null`.
//! Image-to-video models take `frame_images: [{"input_image", "frame"}]`, each `input_image` 1 to 61,440
//! characters long. A missing, too long or unusable image is a 400.

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
use crate::support::{self, ImageProblem, Shared};

const PROVIDER: &str = "together";
/// The longest `frame_images[].input_image` Together takes, in characters.
const MAX_INPUT_IMAGE_CHARS: usize = 61_440;

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

/// The body's `model` and its task, when the catalogue serves it on together for one of `tasks`.
fn model_for(state: &Shared, body: &Value, tasks: &[&str]) -> Result<(String, &'static str), Response> {
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return Err(together_error(
            StatusCode::BAD_REQUEST,
            "model is required",
            Some("model"),
            None,
        ));
    };
    let Some(task) = support::served_task(state, PROVIDER, model).filter(|t| tasks.contains(t)) else {
        return Err(together_error(
            StatusCode::NOT_FOUND,
            format!(
                "Unable to access model {model}. Please visit https://api.together.ai/models to view the list of \
                 supported models."
            ),
            Some("model"),
            Some("model_not_available"),
        ));
    };
    Ok((model.to_owned(), task))
}

/// Together's 400 for an image it cannot use.
fn image_error(problem: ImageProblem, field: &str) -> Response {
    match problem {
        ImageProblem::Missing => together_error(
            StatusCode::BAD_REQUEST,
            format!("{field} is required for this model"),
            Some(field),
            Some("missing_required_parameter"),
        ),
        ImageProblem::Bad { field, error } => together_error(
            StatusCode::BAD_REQUEST,
            format!("Invalid {field}: {}", error.message()),
            Some(&field),
            Some("invalid_image"),
        ),
    }
}

/// The prompt of an image task: may be missing (an empty prompt), not `null` or another type.
fn optional_prompt(body: &Value) -> Result<String, Response> {
    match body.get("prompt") {
        None => Ok(String::new()),
        Some(Value::String(prompt)) => Ok(prompt.clone()),
        Some(_) => Err(together_error(
            StatusCode::BAD_REQUEST,
            "prompt must be a string",
            Some("prompt"),
            None,
        )),
    }
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
    let (model, task) = match model_for(
        &state,
        &body,
        &["text-to-image", "image-to-image", "image-text-to-image"],
    ) {
        Ok(found) => found,
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
    // FLUX.1 Kontext reads only `image_url`; the others `reference_images` (or `image_url`).
    let lower = model.to_lowercase();
    let fields: &[&str] = if lower.contains("kontext") && lower.contains("flux.1") {
        &["image_url"]
    } else {
        &["reference_images", "image_url"]
    };
    let ask = match support::images_of(&state, &headers, task, &body, fields, "").await {
        Ok(Some(images)) => optional_prompt(&body).and_then(|prompt| support::input_ask(task, prompt, &body, images)),
        Ok(None) => support::image_ask(&body, "prompt", &body),
        Err(problem) => return image_error(problem, fields[0]),
    };
    let ask = match ask {
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
    let (model, task) = match model_for(
        &state,
        &body,
        &["text-to-video", "image-to-video", "image-text-to-video"],
    ) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let frames = match frame_images(&body, task) {
        Ok(frames) => frames,
        Err(response) => return response,
    };
    let ask = match support::images_of(&state, &headers, task, &frames, &["frame_images"], "").await {
        Ok(Some(images)) => optional_prompt(&body).and_then(|prompt| support::input_ask(task, prompt, &body, images)),
        Ok(None) => support::video_ask(&body, "prompt", &body),
        Err(ImageProblem::Missing) => return image_error(ImageProblem::Missing, "frame_images"),
        Err(ImageProblem::Bad { field, error }) => {
            let field = field.replace(']', "].input_image");
            return image_error(ImageProblem::Bad { field, error }, "frame_images");
        }
    };
    let ask = match ask {
        Ok(ask) => ask,
        Err(response) => return response,
    };
    let format = behaviour.image_format.unwrap_or(ImageFormat::Jpeg);
    let file_id = match support::render_and_store(&state, PROVIDER, task, &ask, format).await {
        Ok(id) => id,
        Err(response) => return response,
    };
    let created_at = support::unix_now();
    let data = json!({"task": task, "model": model, "seed": ask.seed, "width": ask.width,
                      "height": ask.height, "created_at": created_at});
    let id = state.create_job(PROVIDER, file_id, data);
    axum::Json(json!({"id": id, "object": "video", "model": model, "status": "queued", "created_at": created_at}))
        .into_response()
}

/// The `input_image`s of `frame_images`, as `{"frame_images": [string, …]}`, checked as Together does
/// (objects with an `input_image` of 1 to 61,440 characters). Text-to-video models ignore them.
fn frame_images(body: &Value, task: &str) -> Result<Value, Response> {
    if !support::takes_images(task) {
        return Ok(json!({}));
    }
    let Some(frames) = body.get("frame_images").filter(|f| !f.is_null()) else {
        return Ok(json!({}));
    };
    let Some(frames) = frames.as_array() else {
        return Err(together_error(
            StatusCode::BAD_REQUEST,
            "frame_images must be a list of {input_image, frame} objects",
            Some("frame_images"),
            None,
        ));
    };
    let mut images = Vec::with_capacity(frames.len());
    for (i, frame) in frames.iter().enumerate() {
        let param = format!("frame_images[{i}].input_image");
        let Some(image) = frame.get("input_image").and_then(Value::as_str) else {
            return Err(together_error(
                StatusCode::BAD_REQUEST,
                format!("{param} is required (a string: an image URL or a data URL)"),
                Some(&param),
                Some("missing_required_parameter"),
            ));
        };
        let length = image.chars().count();
        if length == 0 || length > MAX_INPUT_IMAGE_CHARS {
            return Err(together_error(
                StatusCode::BAD_REQUEST,
                format!("Range of input length should be [1, {MAX_INPUT_IMAGE_CHARS}]"),
                Some(&param),
                None,
            ));
        }
        images.push(json!(image));
    }
    Ok(json!({ "frame_images": images }))
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
    use crate::providers::test_support::*;

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

    async fn post(url: &str, path: &str, body: &Value) -> (u16, Value) {
        let answer = client()
            .post(format!("{url}/together{path}"))
            .bearer_auth("hf_test")
            .json(body)
            .send()
            .await
            .unwrap();
        (answer.status().as_u16(), answer.json().await.unwrap())
    }

    const KONTEXT: &str = "black-forest-labs/FLUX.1-kontext-dev";
    const I2V: &str = "Wan-AI/Wan2.2-I2V-A14B";

    #[tokio::test]
    async fn kontext_edits_the_image_url() {
        let running = serve().await;
        let url = running.url();
        let body = json!({"model": KONTEXT, "prompt": "gold", "image_url": quadrants_url(), "response_format": "base64",
                          "steps": 28});
        let (status, answer) = post(&url, "/v1/images/generations", &body).await;
        assert_eq!(status, 200);
        assert_eq!(answer["model"], KONTEXT);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(answer["data"][0]["b64_json"].as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(&[0xff, 0xd8]), "a JPEG");
        assert_edit_of(&bytes, &quadrants(64, 48), (64, 48), "gold");

        // A missing prompt is an empty one; the asked size wins.
        let body = json!({"model": KONTEXT, "image_url": quadrants_url(), "width": 48, "height": 48});
        let (status, answer) = post(&url, "/v1/images/generations", &body).await;
        assert_eq!(status, 200);
        let image = client()
            .get(answer["data"][0]["url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_edit_of(&image.bytes().await.unwrap(), &quadrants(64, 48), (48, 48), "");
    }

    #[tokio::test]
    async fn image_edits_are_checked() {
        let running = serve().await;
        let url = running.url();
        // FLUX.1 Kontext reads only `image_url`.
        let body = json!({"model": KONTEXT, "prompt": "gold", "reference_images": [quadrants_url()]});
        let (status, answer) = post(&url, "/v1/images/generations", &body).await;
        assert_eq!((status, &answer["error"]["param"]), (400, &json!("image_url")));
        assert_eq!(answer["error"]["message"], "image_url is required for this model");

        let body = json!({"model": KONTEXT, "prompt": null, "image_url": quadrants_url()});
        let (status, answer) = post(&url, "/v1/images/generations", &body).await;
        assert_eq!((status, &answer["error"]["param"]), (400, &json!("prompt")));

        let body = json!({"model": KONTEXT, "prompt": "gold", "image_url": data_url(b"junk", "image/jpeg")});
        let (status, answer) = post(&url, "/v1/images/generations", &body).await;
        assert_eq!((status, &answer["error"]["code"]), (400, &json!("invalid_image")));
        assert!(answer["error"]["message"].as_str().unwrap().contains("cannot identify"));

        let body = json!({"model": KONTEXT, "prompt": "gold", "image_url": "http://example.com/a.png"});
        let (status, answer) = post(&url, "/v1/images/generations", &body).await;
        assert_eq!(status, 400);
        assert!(answer["error"]["message"].as_str().unwrap().contains("example.com"));

        // An image-to-video model is not an image model.
        let body = json!({"model": I2V, "prompt": "gold", "image_url": quadrants_url()});
        assert_eq!(post(&url, "/v1/images/generations", &body).await.0, 404);
    }

    #[tokio::test]
    async fn image_to_video_animates_the_first_frame() {
        let running = serve().await;
        let url = running.url();
        // The input comes from the emulator's own files: the output of an edit.
        let body = json!({"model": KONTEXT, "prompt": "", "image_url": quadrants_url(), "response_format": "url"});
        let (_, answer) = post(&url, "/v1/images/generations", &body).await;
        let edited = answer["data"][0]["url"].as_str().unwrap().to_owned();
        for input in [quadrants_url(), edited] {
            let body = json!({"model": I2V, "prompt": "pan", "seed": 9, "frame_images": [{"input_image": input,
                              "frame": "first"}], "width": 64, "height": 48, "num_frames": 4});
            let (status, job) = post(&url, "/v2/videos", &body).await;
            assert_eq!((status, job["status"].as_str()), (200, Some("queued")));
            let poll_url = format!("{url}/together/v2/videos/{}", job["id"].as_str().unwrap());
            let (_, done) = poll_until(
                || client().get(&poll_url).bearer_auth("hf_test"),
                "/status",
                "completed",
            )
            .await;
            let video = client()
                .get(done["outputs"]["video_url"].as_str().unwrap())
                .send()
                .await
                .unwrap();
            let bytes = video.bytes().await.unwrap();
            let reader = mp4::Mp4Reader::read_header(std::io::Cursor::new(&bytes), bytes.len() as u64).unwrap();
            assert_eq!(reader.tracks().values().next().unwrap().sample_count(), 4);
        }
        let body = json!({"model": I2V, "prompt": "pan", "seed": 9, "frame_images": [{"input_image": quadrants_url()}],
                          "num_frames": 3});
        let (_, job) = post(&url, "/v2/videos", &body).await;
        let poll_url = format!("{url}/together/v2/videos/{}", job["id"].as_str().unwrap());
        let (_, done) = poll_until(
            || client().get(&poll_url).bearer_auth("hf_test"),
            "/status",
            "completed",
        )
        .await;
        assert_eq!(done["size"], "64x48");
        let video = client()
            .get(done["outputs"]["video_url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_animation_of_quadrants(&video.bytes().await.unwrap(), (64, 48), 3, "pan", 9);
    }

    #[tokio::test]
    async fn image_to_video_inputs_are_checked() {
        let running = serve().await;
        let url = running.url();
        let (status, answer) = post(&url, "/v2/videos", &json!({"model": I2V, "prompt": "pan"})).await;
        assert_eq!((status, &answer["error"]["param"]), (400, &json!("frame_images")));
        let body = json!({"model": I2V, "prompt": "pan", "frame_images": []});
        assert_eq!(post(&url, "/v2/videos", &body).await.0, 400);

        let long = format!("data:image/png;base64,{}", "A".repeat(61_440));
        let body = json!({"model": I2V, "prompt": "pan", "frame_images": [{"input_image": long, "frame": "first"}]});
        let (status, answer) = post(&url, "/v2/videos", &body).await;
        assert_eq!(status, 400);
        assert_eq!(answer["error"]["message"], "Range of input length should be [1, 61440]");
        assert_eq!(answer["error"]["param"], "frame_images[0].input_image");
        let body = json!({"model": I2V, "prompt": "pan", "frame_images": [{"input_image": ""}]});
        assert_eq!(post(&url, "/v2/videos", &body).await.0, 400);

        let body = json!({"model": I2V, "prompt": "pan", "frame_images": [{"frame": "first"}]});
        let (status, answer) = post(&url, "/v2/videos", &body).await;
        assert_eq!(
            (status, &answer["error"]["param"]),
            (400, &json!("frame_images[0].input_image"))
        );
        let body = json!({"model": I2V, "prompt": "pan", "frame_images": "nope"});
        assert_eq!(post(&url, "/v2/videos", &body).await.0, 400);

        let body =
            json!({"model": I2V, "prompt": "pan", "frame_images": [{"input_image": data_url(b"x", "image/png")}]});
        let (status, answer) = post(&url, "/v2/videos", &body).await;
        assert_eq!(
            (status, &answer["error"]["param"]),
            (400, &json!("frame_images[0].input_image"))
        );

        // Text-to-video models ignore frame images.
        let body = json!({"model": "Wan-AI/Wan2.2-T2V-A14B", "prompt": "pan", "frame_images": "nope",
                          "width": 32, "height": 32, "num_frames": 1});
        assert_eq!(post(&url, "/v2/videos", &body).await.0, 200);
    }
}
