//! together: images (answered in base64) and videos (an asynchronous job), from a prompt or an input image.
//!
//! - Images: `POST {base}/v1/images/generations` with `{"prompt", "model": providerId, "response_format":
//!   "base64", …}`; `num_inference_steps` is renamed `steps`. The answer carries `data[0].b64_json` (or
//!   `data[0].url`). Image-to-image adds the input images: FLUX.1 Kontext (a provider id that, lower-cased,
//!   contains `kontext` and `flux.1`) takes one, as `image_url` (the others are left out with a warning);
//!   every other model takes `reference_images: [all of them]`. The prompt is always a string (`""` at
//!   worst: Kontext refuses `null`).
//! - Videos: `POST {base}/v2/videos` with `{"prompt", "model", …}` → a job `{"id", "status"}`; then
//!   `GET {base}/v2/videos/{id}` while `queued` / `in_progress` (or no status); `completed` →
//!   `outputs.video_url`; `failed` → `error.message`. Image-to-video adds the first image as
//!   `frame_images: [{"input_image", "frame": "first"}]` (the others are left out with a warning); Together
//!   takes at most [`FRAME_IMAGE_LIMIT`] characters there, so a larger `data:` URL is refused before
//!   anything is sent (an `http(s)` URL of the image passes).
//!   A video job is resumed ([`MediaProvider::resume`]) by polling `GET {base}/v2/videos/{id}` the same
//!   way; images have no job to resume.
//!
//! Images are sent as the caller's `http(s)` URL when they came as one, else as a `data:` URL.

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::http::{self, Poll};
use crate::openai_images;
use crate::{
    AuthScheme, DirectApi, GenerationRequest, InputImage, JobTicket, MediaOutput, MediaProvider, ProviderContext,
    ProviderError, ProviderInfo, ProviderStatus, Task, answer, provider_parameters,
};

/// The provider's Hub name.
pub const TOGETHER: &str = "together";
/// Together's own API, for calls with a `TOGETHER_API_KEY`.
pub const TOGETHER_API_URL: &str = "https://api.together.xyz";
const TASKS: &[Task] = &[
    Task::TextToImage,
    Task::TextToVideo,
    Task::ImageToImage,
    Task::ImageToVideo,
];
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

/// The most characters Together takes in `frame_images[].input_image` ("Range of input length should be
/// [1, 61440]").
pub const FRAME_IMAGE_LIMIT: usize = 61_440;

/// Whether `provider_id` names FLUX.1 Kontext (lower-cased, it contains `kontext` and `flux.1`), which
/// takes its input image as `image_url` only; every other model takes `reference_images`.
pub fn is_flux1_kontext(provider_id: &str) -> bool {
    let id = provider_id.to_lowercase();
    id.contains("kontext") && id.contains("flux.1")
}

/// How many input images a request's model takes: one for videos and FLUX.1 Kontext, else all of them.
fn images_taken(request: &GenerationRequest) -> usize {
    if request.mapping.task.makes_video() || is_flux1_kontext(&request.mapping.provider_id) {
        1
    } else {
        request.images.len()
    }
}

/// The request body of any task: for images the image field (`image_url` or `reference_images`), for
/// videos `frame_images` with the first image; then the parameters (which may override them).
pub fn payload(request: &GenerationRequest) -> Value {
    let mut body: Map<String, Value> = Map::new();
    body.insert("prompt".into(), Value::from(request.prompt.clone()));
    body.insert("model".into(), Value::from(request.mapping.provider_id.clone()));
    let mut params = provider_parameters(request);
    if request.mapping.task.makes_video() {
        // The videos API takes an explicit width and height, not aspect-ratio or resolution labels.
        for name in VIDEO_LEFT_OUT {
            params.remove(*name);
        }
        if let Some(first) = request.images.first() {
            let frame = json!({ "input_image": first.url_or_data_url(), "frame": "first" });
            body.insert("frame_images".into(), Value::Array(vec![frame]));
        }
    } else {
        body.insert("response_format".into(), Value::from("base64"));
        if let Some(first) = request.images.first() {
            if is_flux1_kontext(&request.mapping.provider_id) {
                body.insert("image_url".into(), Value::from(first.url_or_data_url()));
            } else {
                let all: Vec<String> = request.images.iter().map(InputImage::url_or_data_url).collect();
                body.insert("reference_images".into(), Value::from(all));
            }
        }
    }
    if let Some(steps) = params.remove("num_inference_steps") {
        params.insert("steps".into(), steps);
    }
    body.extend(params);
    Value::Object(body)
}

/// Refuses, before anything is sent, a body whose `frame_images[].input_image` is longer than Together
/// takes ([`FRAME_IMAGE_LIMIT`]): a [`ProviderError::InvalidRequest`] that says how long the image is and
/// to pass it as an `http(s)` URL instead.
pub fn check_frame_images(body: &Value) -> Result<(), ProviderError> {
    let frames = body
        .get("frame_images")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for image in frames
        .iter()
        .filter_map(|f| f.get("input_image"))
        .filter_map(Value::as_str)
    {
        let length = image.chars().count();
        if length <= FRAME_IMAGE_LIMIT {
            continue;
        }
        let what = if image.starts_with("data:") {
            "the inline image"
        } else {
            "the image URL"
        };
        return Err(ProviderError::invalid_request(
            TOGETHER,
            format!(
                "{what} is {} characters, over Together's {} for a video's first frame: pass the image as an \
                 http(s) URL instead",
                grouped(length),
                grouped(FRAME_IMAGE_LIMIT)
            ),
        ));
    }
    Ok(())
}

/// `61440` as `61,440`.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
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
        request.check_images(TOGETHER)?;
        if request.mapping.task.makes_video() {
            return generate_video(ctx, &request).await;
        }
        ctx.warn_images_left_out(&request, images_taken(&request));
        openai_images::generate(ctx, TOGETHER, &payload(&request), &request).await
    }

    /// Polls a video job at `/v2/videos/{id}`, as [`MediaProvider::generate`] does after its submit. Images
    /// are answered at once, so there is no image job to resume: a ticket for an image task is refused.
    async fn resume(
        &self,
        ctx: &ProviderContext,
        request: GenerationRequest,
        job: JobTicket,
    ) -> Result<MediaOutput, ProviderError> {
        job.path_id(self.name())?;
        if !request.mapping.task.makes_video() {
            return Err(ProviderError::invalid_request(
                TOGETHER,
                format!(
                    "job {} cannot be resumed: together answers {} at once, only video jobs are followed",
                    job.job_id, request.mapping.task
                ),
            ));
        }
        wait_video(ctx, &job).await
    }
}

async fn generate_video(ctx: &ProviderContext, request: &GenerationRequest) -> Result<MediaOutput, ProviderError> {
    let body = payload(request);
    check_frame_images(&body)?;
    ctx.warn_left_out(request, VIDEO_LEFT_OUT);
    ctx.warn_images_left_out(request, images_taken(request));
    let job = http::post_json(ctx, VIDEO_ROUTE, &body).await?;
    let status = match parse_video_job(&job)? {
        Poll::Ready(output) => return Ok(output),
        Poll::Pending(status) => status,
    };
    let id = http::job_id(TOGETHER, status.job_id.as_deref().unwrap_or_default())?.to_owned();
    ctx.report(status);
    wait_video(ctx, &JobTicket::new(TOGETHER, id)).await
}

/// Follows an accepted video job to its media: `GET /v2/videos/{id}` until `completed` (or failed).
async fn wait_video(ctx: &ProviderContext, ticket: &JobTicket) -> Result<MediaOutput, ProviderError> {
    let id = ticket.job_id.as_str();
    let job_url = ctx.url(&format!("{VIDEO_ROUTE}/{id}"))?;
    http::poll_job(
        ctx,
        ticket,
        &format!("waiting for together video job {id}"),
        || ctx.request(reqwest::Method::GET, job_url.clone()),
        parse_video_job,
    )
    .await
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn flux1_kontext_takes_image_url_and_every_other_model_reference_images() {
        use super::super::test_support::{png, remote, request};
        for id in [
            "black-forest-labs/FLUX.1-kontext-dev",
            "black-forest-labs/flux.1-Kontext-pro",
        ] {
            assert!(is_flux1_kontext(id), "{id}");
        }
        for id in [
            "black-forest-labs/FLUX.2-dev",
            "google/flash-image-2.5",
            "black-forest-labs/FLUX.1-dev",
        ] {
            assert!(!is_flux1_kontext(id), "{id}");
        }
        let (a, b) = (png(1), remote("https://example.com/b.jpg"));
        let params = crate::GenerationParams {
            num_inference_steps: Some(28),
            ..Default::default()
        };
        let kontext = request(
            TOGETHER,
            "black-forest-labs/FLUX.1-kontext-dev",
            Task::ImageToImage,
            vec![a.clone(), b.clone()],
            params.clone(),
        );
        assert_eq!(
            payload(&kontext),
            json!({"prompt": "make it snow", "model": "black-forest-labs/FLUX.1-kontext-dev",
                   "response_format": "base64", "image_url": a.data_url(), "steps": 28})
        );
        assert_eq!(images_taken(&kontext), 1);
        let mut flux2 = request(
            TOGETHER,
            "black-forest-labs/FLUX.2-dev",
            Task::ImageToImage,
            vec![a.clone(), b],
            params,
        );
        flux2.prompt = String::new();
        assert_eq!(
            payload(&flux2),
            json!({"prompt": "", "model": "black-forest-labs/FLUX.2-dev", "response_format": "base64",
                   "reference_images": [a.data_url(), "https://example.com/b.jpg"], "steps": 28})
        );
        assert_eq!(images_taken(&flux2), 2);
    }

    #[test]
    fn image_to_video_sends_the_first_frame_with_an_explicit_size_only() {
        use super::super::test_support::{png, remote, request};
        let params = crate::GenerationParams {
            width: Some(1920),
            height: Some(1080),
            num_inference_steps: Some(30),
            seed: Some(42),
            resolution: Some("720p".into()),
            ..Default::default()
        };
        let req = request(
            TOGETHER,
            "Wan-AI/Wan2.2-I2V-A14B",
            Task::ImageToVideo,
            vec![remote("https://example.com/cat.jpg"), png(2)],
            params,
        );
        let body = payload(&req);
        assert_eq!(
            body,
            json!({"prompt": "make it snow", "model": "Wan-AI/Wan2.2-I2V-A14B",
                   "frame_images": [{"input_image": "https://example.com/cat.jpg", "frame": "first"}],
                   "width": 1920, "height": 1080, "seed": 42, "steps": 30})
        );
        assert!(check_frame_images(&body).is_ok());
        let no_size = request(
            TOGETHER,
            "Wan-AI/Wan2.2-I2V-A14B",
            Task::ImageToVideo,
            vec![png(1)],
            Default::default(),
        );
        let body = payload(&no_size);
        assert!(
            body.get("aspect_ratio").is_none() && body.get("resolution").is_none(),
            "{body}"
        );
    }

    #[test]
    fn a_first_frame_over_61440_characters_is_refused_with_what_to_do() {
        let at_limit = format!("data:image/png;base64,{}", "A".repeat(FRAME_IMAGE_LIMIT - 22));
        assert_eq!(at_limit.len(), FRAME_IMAGE_LIMIT);
        assert!(check_frame_images(&json!({"frame_images": [{"input_image": at_limit}]})).is_ok());
        let over = format!("data:image/png;base64,{}", "A".repeat(80_000));
        let err = check_frame_images(&json!({"frame_images": [{"input_image": over}]})).unwrap_err();
        assert_eq!(
            err,
            ProviderError::invalid_request(
                TOGETHER,
                "the inline image is 80,022 characters, over Together's 61,440 for a video's first frame: pass \
                 the image as an http(s) URL instead"
            )
        );
        let long_url = format!("https://example.com/{}", "a".repeat(FRAME_IMAGE_LIMIT));
        let err = check_frame_images(&json!({"frame_images": [{"input_image": long_url}]})).unwrap_err();
        assert!(err.to_string().contains("the image URL is 61,460 characters"), "{err}");
        assert!(check_frame_images(&json!({"prompt": "p"})).is_ok());
        assert_eq!(
            (grouped(7), grouped(1000), grouped(1_234_567)),
            ("7".into(), "1,000".into(), "1,234,567".into())
        );
    }
}
