//! fal-ai's queue: `POST /{app}` → `{request_id, status, response_url}`; `GET /{app}/requests/{id}/status`
//! → `IN_QUEUE` (with `queue_position`) → `IN_PROGRESS` → `COMPLETED`; `GET /{app}/requests/{id}` → the
//! result (`images[0].url` or `video.url`).
//!
//! Image tasks take the image as `image_url` and/or `image_urls: […]` (several images are combined). A
//! missing image is fal's `422 {"detail": [{"loc": ["body", "image_url"], "msg": "field required", …}]}`;
//! an unusable one a 422 with the same shape and the reason, or `{"detail": "Unsupported data URL"}`.
//! `image-text-to-*` endpoints also take a prompt alone, on their own path or (direct calls) on the path
//! without its last segment (`fal-ai/flux-2/edit` → `fal-ai/flux-2`).

use axum::Router;
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::behaviour::FaultTarget;
use crate::inputs::InputError;
use crate::media::ImageFormat;
use crate::state::JobState;
use crate::support::{self, ImageProblem, Shared};

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
    let Some(task) = task_of(&state, &provider_id) else {
        return (StatusCode::NOT_FOUND, "404: Not Found").into_response();
    };
    let body = match support::json_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let images = match support::images_of(&state, &headers, task, &body, &["image_urls", "image_url"], "").await {
        Ok(images) => images,
        Err(problem) => return image_error(problem),
    };
    let ask = match images {
        Some(images) => {
            support::prompt_of(&body, "prompt").and_then(|prompt| support::input_ask(task, prompt, &body, images))
        }
        None => support::media_ask(task, &body, "prompt", &body),
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

/// The task of an app path: the catalogue's, or for a direct prompt-only call to an `image-text-to-*`
/// endpoint, the path without its last segment.
fn task_of(state: &Shared, provider_id: &str) -> Option<&'static str> {
    support::served_task(state, PROVIDER, provider_id).or_else(|| {
        state
            .catalogue
            .iter()
            .flat_map(|m| &m.entries)
            .filter(|e| e.provider == PROVIDER && e.task.starts_with("image-text-to-"))
            .find(|e| {
                e.provider_id
                    .rsplit_once('/')
                    .is_some_and(|(trimmed, _)| trimmed == provider_id)
            })
            .map(|e| e.task)
    })
}

/// fal's 422 for an image it cannot use.
fn image_error(problem: ImageProblem) -> Response {
    let (field, message, kind) = match problem {
        ImageProblem::Missing => (
            "image_url".to_owned(),
            "field required".to_owned(),
            "value_error.missing",
        ),
        ImageProblem::Bad {
            error: InputError::UnsupportedDataUrl(_),
            ..
        } => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(json!({"detail": "Unsupported data URL"})),
            )
                .into_response();
        }
        ImageProblem::Bad { field, error } => {
            let kind = if error.is_download() {
                "file_download_error"
            } else {
                "image_load_error"
            };
            (field, error.message(), kind)
        }
    };
    let loc: Vec<Value> = std::iter::once(json!("body"))
        .chain(
            field
                .split(['[', ']'])
                .filter(|s| !s.is_empty())
                .map(|s| match s.parse::<u64>() {
                    Ok(i) => json!(i),
                    Err(_) => json!(s),
                }),
        )
        .collect();
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({"detail": [{"loc": loc, "msg": message, "type": kind}]})),
    )
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
    let answer = if support::is_video(data["task"].as_str().unwrap_or_default()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::behaviour::{Fault, FaultRule, ProviderBehaviour};
    use crate::providers::test_support::*;

    /// Submits `body` to `app`, polls until COMPLETED and returns the result and the media's bytes.
    async fn run(url: &str, app: &str, body: &Value) -> (Value, Vec<u8>) {
        let answer = client()
            .post(format!("{url}/fal-ai/{app}"))
            .header("authorization", "Key fal_test")
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{app}");
        let job: Value = answer.json().await.unwrap();
        let path = job["response_url"]
            .as_str()
            .unwrap()
            .strip_prefix("https://queue.fal.run")
            .unwrap();
        let result_url = format!("{url}/fal-ai{path}");
        let status_url = format!("{result_url}/status");
        let (statuses, _) = poll_until(
            || client().get(&status_url).bearer_auth("hf_test"),
            "/status",
            "COMPLETED",
        )
        .await;
        assert_eq!(statuses, ["IN_PROGRESS", "COMPLETED"]);
        let result: Value = client()
            .get(&result_url)
            .bearer_auth("hf_test")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let media = result
            .pointer("/images/0/url")
            .or_else(|| result.pointer("/video/url"))
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned();
        let bytes = client()
            .get(media)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        (result, bytes)
    }

    async fn submit(url: &str, app: &str, body: &Value) -> (u16, Value) {
        let answer = client()
            .post(format!("{url}/fal-ai/{app}"))
            .bearer_auth("hf_test")
            .json(body)
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn kontext_edits_the_image_at_its_size_or_the_asked_one() {
        let running = serve().await;
        let image = quadrants_url();
        let prompt = "make it look like gold";
        let body = json!({"image_url": image, "image_urls": [image], "prompt": prompt, "seed": 5});
        let (result, bytes) = run(&running.url(), "fal-ai/flux-kontext/dev", &body).await;
        assert_eq!(
            (result["images"][0]["width"].as_u64(), result["seed"].as_u64()),
            (Some(64), Some(5))
        );
        assert_eq!(result["images"][0]["content_type"], "image/png");
        assert_edit_of(&bytes, &quadrants(64, 48), (64, 48), prompt);

        let body = json!({"image_url": image, "prompt": prompt, "image_size": {"width": 96, "height": 64}});
        let (_, bytes) = run(&running.url(), "fal-ai/flux-kontext/dev", &body).await;
        assert_edit_of(&bytes, &quadrants(64, 48), (96, 64), prompt);
        // js sends `target_size` unchanged.
        let body = json!({"image_url": image, "prompt": prompt, "target_size": {"width": 32, "height": 24}});
        let (_, bytes) = run(&running.url(), "fal-ai/qwen-image-edit-plus", &body).await;
        assert_edit_of(&bytes, &quadrants(64, 48), (32, 24), prompt);
    }

    #[tokio::test]
    async fn several_images_are_combined() {
        let running = serve().await;
        let (red, blue) = red_and_blue_urls();
        // py lets a caller's `image_urls` win over the generated pair.
        let body = json!({"image_url": red, "image_urls": [red, blue], "prompt": "merge them"});
        let (_, bytes) = run(&running.url(), "fal-ai/flux-2/edit", &body).await;
        assert_red_then_blue(&bytes, (64, 48));
    }

    #[tokio::test]
    async fn image_to_video_moves_over_a_hosted_image() {
        let (emulator, running) = serve_scripted().await;
        let path = emulator.host_input("quadrants.png", png(&quadrants(64, 48))).unwrap();
        let body = json!({"image_url": format!("{}{path}", running.url()), "prompt": "pan over it", "seed": 7,
                          "num_frames": 5});
        let (result, bytes) = run(&running.url(), "fal-ai/wan/v2.2-a14b/image-to-video", &body).await;
        assert_eq!(result["video"]["content_type"], "video/mp4");
        assert_animation_of_quadrants(&bytes, (64, 48), 5, "pan over it", 7);
        assert_eq!(emulator.stats()["input fetch"], 1);
    }

    #[tokio::test]
    async fn image_text_endpoints_also_take_a_prompt_alone() {
        let running = serve().await;
        let url = running.url();
        let body = json!({"prompt": "a fox running", "width": 32, "height": 24, "num_frames": 3});
        for app in ["fal-ai/ltx-video/image-to-video", "fal-ai/ltx-video"] {
            let (_, bytes) = run(&url, app, &body).await;
            let reader = mp4::Mp4Reader::read_header(std::io::Cursor::new(&bytes), bytes.len() as u64).unwrap();
            assert_eq!(reader.tracks().values().next().unwrap().sample_count(), 3, "{app}");
        }
        let body = json!({"prompt": "a fox", "image_size": {"width": 40, "height": 30}});
        for app in ["fal-ai/flux-2/edit", "fal-ai/flux-2"] {
            let (_, bytes) = run(&url, app, &body).await;
            assert_eq!(image::load_from_memory(&bytes).unwrap().width(), 40, "{app}");
        }
        let body = json!({"prompt": "pan", "image_url": quadrants_url(), "num_frames": 2, "seed": 1});
        let (_, bytes) = run(&url, "fal-ai/ltx-video/image-to-video", &body).await;
        assert_animation_of_quadrants(&bytes, (64, 48), 2, "pan", 1);
        // Only image-text endpoints are trimmed.
        assert_eq!(submit(&url, "fal-ai/flux-kontext", &body).await.0, 404);
    }

    #[tokio::test]
    async fn unusable_images_are_refused_as_fal_does() {
        let running = serve().await;
        let url = running.url();
        let (status, body) = submit(&url, "fal-ai/flux-kontext/dev", &json!({"prompt": "gold"})).await;
        assert_eq!(status, 422);
        assert_eq!(
            body,
            json!({"detail": [{"loc": ["body", "image_url"], "msg": "field required", "type": "value_error.missing"}]})
        );
        let (status, body) = submit(&url, "fal-ai/wan/v2.2-a14b/image-to-video", &json!({"prompt": "go"})).await;
        assert_eq!((status, &body["detail"][0]["loc"][1]), (422, &json!("image_url")));

        let not_an_image = data_url(b"hello", "image/png");
        let (status, body) = submit(
            &url,
            "fal-ai/flux-kontext/dev",
            &json!({"prompt": "gold", "image_url": not_an_image}),
        )
        .await;
        assert_eq!(status, 422);
        assert_eq!(body["detail"][0]["loc"], json!(["body", "image_url"]));
        assert_eq!(body["detail"][0]["type"], "image_load_error");
        assert!(body["detail"][0]["msg"].as_str().unwrap().contains("cannot identify"));

        let body = json!({"prompt": "gold", "image_urls": [quadrants_url(), "data:text/plain;base64,aGVsbG8="]});
        let (status, body) = submit(&url, "fal-ai/flux-2/edit", &body).await;
        assert_eq!((status, body), (422, json!({"detail": "Unsupported data URL"})));

        let body = json!({"prompt": "gold", "image_urls": [quadrants_url(), "https://example.com/cat.png"]});
        let (status, body) = submit(&url, "fal-ai/flux-2/edit", &body).await;
        assert_eq!(status, 422);
        assert_eq!(body["detail"][0]["loc"], json!(["body", "image_urls", 1]));
        assert_eq!(body["detail"][0]["type"], "file_download_error");
        assert!(body["detail"][0]["msg"].as_str().unwrap().contains("example.com"));

        let many: Vec<String> = (0..=crate::media::MAX_INPUTS as u8)
            .map(|i| data_url(&png(&flat(2, 2, [i, 0, 0])), "image/png"))
            .collect();
        let (status, body) = submit(
            &url,
            "fal-ai/flux-2/edit",
            &json!({"prompt": "gold", "image_urls": many}),
        )
        .await;
        assert_eq!(status, 422);
        assert!(
            body["detail"][0]["msg"].as_str().unwrap().contains("at most 16"),
            "{body}"
        );

        // The prompt is still required.
        let (status, _) = submit(&url, "fal-ai/flux-kontext/dev", &json!({"image_url": quadrants_url()})).await;
        assert_eq!(status, 422);
    }

    #[tokio::test]
    async fn faults_and_pending_polls_apply_to_image_tasks() {
        let (emulator, running) = serve_scripted().await;
        emulator.set_behaviour(
            PROVIDER,
            ProviderBehaviour::default().with_fault(FaultRule::times(
                Fault::Status {
                    status: 503,
                    body: None,
                },
                1,
            )),
        );
        let body = json!({"prompt": "gold", "image_url": quadrants_url()});
        assert_eq!(submit(&running.url(), "fal-ai/flux-kontext/dev", &body).await.0, 503);
        emulator.set_behaviour(PROVIDER, ProviderBehaviour::default().with_pending_polls(4));
        let (status, job) = submit(&running.url(), "fal-ai/flux-kontext/dev", &body).await;
        assert_eq!((status, job["queue_position"].as_u64()), (200, Some(4)));
        let id = job["request_id"].as_str().unwrap();
        let status_url = format!("{}/fal-ai/fal-ai/flux-kontext/requests/{id}/status", running.url());
        let (statuses, _) = poll_until(
            || client().get(&status_url).bearer_auth("hf_test"),
            "/status",
            "COMPLETED",
        )
        .await;
        assert_eq!(
            statuses,
            ["IN_QUEUE", "IN_QUEUE", "IN_PROGRESS", "IN_PROGRESS", "COMPLETED"]
        );
    }
}
