//! together: images (answered in base64) and videos (an asynchronous job).
//!
//! - Images: `POST {base}/v1/images/generations` with `{"prompt", "model": providerId, "response_format":
//!   "base64", …}`; `num_inference_steps` is renamed `steps`. The answer carries `data[0].b64_json` (or
//!   `data[0].url`).
//! - Videos: `POST {base}/v2/videos` with `{"prompt", "model", …}` → a job `{"id", "status"}`; then
//!   `GET {base}/v2/videos/{id}` while `queued` / `in_progress` (or no status); `completed` →
//!   `outputs.video_url`; `failed` → `error.message`.

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::http::{self, Poll};
use crate::openai_images;
use crate::{
    AuthScheme, DirectApi, GenerationRequest, MediaOutput, MediaProvider, ProviderContext, ProviderError, ProviderInfo,
    ProviderStatus, Task, answer, provider_parameters,
};

/// The provider's Hub name.
pub const TOGETHER: &str = "together";
/// Together's own API, for calls with a `TOGETHER_API_KEY`.
pub const TOGETHER_API_URL: &str = "https://api.together.xyz";
const TASKS: &[Task] = &[Task::TextToImage, Task::TextToVideo];
static INFO: ProviderInfo = ProviderInfo::routed_with_api(
    TOGETHER,
    TASKS,
    DirectApi::new(TOGETHER_API_URL, "TOGETHER_API_KEY", AuthScheme::Bearer),
);

/// Together AI (`together`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Together;

/// The video route (jobs are polled at `{VIDEO_ROUTE}/{id}`).
pub const VIDEO_ROUTE: &str = "/v2/videos";

/// Parameters the videos API does not take: left out, with a warning when the caller set them.
pub const VIDEO_LEFT_OUT: &[&str] = &["aspect_ratio", "resolution"];

/// The request body of either task.
pub fn payload(request: &GenerationRequest) -> Value {
    let mut body: Map<String, Value> = Map::new();
    body.insert("prompt".into(), Value::from(request.prompt.clone()));
    body.insert("model".into(), Value::from(request.mapping.provider_id.clone()));
    let mut params = provider_parameters(request);
    if request.mapping.task == Task::TextToVideo {
        // The videos API takes an explicit width and height, not aspect-ratio or resolution labels.
        for name in VIDEO_LEFT_OUT {
            params.remove(*name);
        }
    } else {
        body.insert("response_format".into(), Value::from("base64"));
    }
    if let Some(steps) = params.remove("num_inference_steps") {
        params.insert("steps".into(), steps);
    }
    body.extend(params);
    Value::Object(body)
}

/// Reads a video job: pending, completed with its URL, or failed.
pub fn parse_video_job(answer: &Value) -> Result<Poll<MediaOutput>, ProviderError> {
    let id = answer.get("id").and_then(Value::as_str).unwrap_or("?");
    match answer.get("status").and_then(Value::as_str) {
        None | Some("queued") | Some("in_progress") if answer.get("id").is_none() => {
            Err(ProviderError::invalid_response(TOGETHER, "the video job has no `id`"))
        }
        Some("in_progress") => Ok(Poll::Pending(ProviderStatus::in_progress(id))),
        None | Some("queued") => Ok(Poll::Pending(ProviderStatus::queued(id))),
        Some("completed") => {
            let url = answer
                .pointer("/outputs/video_url")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ProviderError::invalid_response(
                        TOGETHER,
                        format!("video job {id} completed without `outputs.video_url`"),
                    )
                })?;
            answer::media_at(TOGETHER, url, answer).map(Poll::Ready)
        }
        Some(other) => Err(ProviderError::job_failed(
            TOGETHER,
            id,
            http::json_error_text(answer).unwrap_or_else(|| format!("the video job ended with status `{other}`")),
        )),
    }
}

#[async_trait]
impl MediaProvider for Together {
    fn info(&self) -> &ProviderInfo {
        &INFO
    }

    async fn generate(&self, ctx: &ProviderContext, request: GenerationRequest) -> Result<MediaOutput, ProviderError> {
        if request.mapping.task == Task::TextToVideo {
            return generate_video(ctx, &request).await;
        }
        openai_images::generate(ctx, TOGETHER, &payload(&request), &request).await
    }
}

async fn generate_video(ctx: &ProviderContext, request: &GenerationRequest) -> Result<MediaOutput, ProviderError> {
    ctx.warn_left_out(request, VIDEO_LEFT_OUT);
    let job = http::post_json(ctx, VIDEO_ROUTE, &payload(request)).await?;
    let status = match parse_video_job(&job)? {
        Poll::Ready(output) => return Ok(output),
        Poll::Pending(status) => status,
    };
    let id = http::job_id(TOGETHER, status.job_id.as_deref().unwrap_or_default())?.to_owned();
    ctx.report(status);
    let job_url = ctx.url(&format!("{VIDEO_ROUTE}/{id}"))?;
    http::poll_job(
        ctx,
        &id,
        &format!("waiting for together video job {id}"),
        || ctx.request(reqwest::Method::GET, job_url.clone()),
        parse_video_job,
    )
    .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::MediaBody;

    #[test]
    fn video_jobs_are_pending_completed_or_failed() {
        assert!(matches!(parse_video_job(&json!({"id": "v1"})), Ok(Poll::Pending(_))));
        assert!(matches!(
            parse_video_job(&json!({"id": "v1", "status": "in_progress"})),
            Ok(Poll::Pending(ProviderStatus { ref state, .. })) if state == "in_progress"
        ));
        let done = parse_video_job(
            &json!({"id": "v1", "status": "completed", "outputs": {"video_url": "https://t.ai/v.mp4"}}),
        );
        assert!(matches!(
            done,
            Ok(Poll::Ready(MediaOutput {
                body: MediaBody::Url(_),
                ..
            }))
        ));
        let err =
            parse_video_job(&json!({"id": "v1", "status": "failed", "error": {"message": "GPU lost"}})).unwrap_err();
        assert_eq!(err.to_string(), "together reported that job v1 failed: GPU lost");
        assert!(matches!(
            parse_video_job(&json!({"id": "v1", "status": "completed"})),
            Err(ProviderError::InvalidResponse { .. })
        ));
        assert!(matches!(
            parse_video_job(&json!({"status": "queued"})),
            Err(ProviderError::InvalidResponse { .. })
        ));
    }

    #[test]
    fn video_payload_renames_steps_and_has_no_response_format() {
        let request = GenerationRequest {
            mapping: crate::ProviderMapping::new(
                TOGETHER,
                "Wan-AI/Wan2.2-T2V",
                Task::TextToVideo,
                "Wan-AI/Wan2.2-T2V-A14B",
            ),
            prompt: "a fox running".into(),
            params: crate::GenerationParams {
                num_inference_steps: Some(20),
                seed: Some(3),
                ..Default::default()
            },
            images: Vec::new(),
        };
        assert_eq!(
            payload(&request),
            json!({"prompt": "a fox running", "model": "Wan-AI/Wan2.2-T2V", "seed": 3, "steps": 20})
        );
    }
}
