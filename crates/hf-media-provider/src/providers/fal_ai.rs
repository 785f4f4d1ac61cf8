//! fal-ai: images and videos through fal's queue.
//!
//! 1. `POST {base}/{providerId}` (`?_subdomain=queue` through the router) with `{"prompt", …}`; for images,
//!    `width` + `height` become `image_size: {width, height}`.
//! 2. The answer names the job: `request_id`, `status`, `response_url`.
//! 3. `GET {base}{path of response_url}/status` until `COMPLETED` (`IN_QUEUE` with `queue_position`, and
//!    `IN_PROGRESS`, are pending; anything else failed).
//! 4. `GET {base}{path of response_url}`: `images[0].url` (images) or `video.url` (videos), which may be a
//!    `data:` URL.

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::http::{self, Poll, Target};
use crate::{
    AuthScheme, DirectApi, GenerationRequest, MediaBody, MediaOutput, MediaProvider, ProviderContext, ProviderError,
    ProviderInfo, ProviderStatus, Task, provider_parameters,
};

/// The provider's Hub name.
pub const FAL_AI: &str = "fal-ai";
/// fal's own queue API, for calls with a `FAL_KEY`.
pub const FAL_QUEUE_URL: &str = "https://queue.fal.run";
const TASKS: &[Task] = &[Task::TextToImage, Task::TextToVideo];
static INFO: ProviderInfo =
    ProviderInfo::routed_with_api(FAL_AI, TASKS, DirectApi::new(FAL_QUEUE_URL, "FAL_KEY", AuthScheme::Key));
/// The query that selects fal's queue behind the router.
const ROUTED_QUEUE_QUERY: &str = "_subdomain=queue";
/// The SD-family LoRA endpoint needs a base model.
const LORA_ENDPOINT: &str = "fal-ai/lora";
const LORA_BASE_MODEL: &str = "stabilityai/stable-diffusion-xl-base-1.0";

/// fal.ai (`fal-ai`).
#[derive(Debug, Clone, Copy, Default)]
pub struct FalAi;

fn queue_query(ctx: &ProviderContext) -> Option<&'static str> {
    ctx.is_routed().then_some(ROUTED_QUEUE_QUERY)
}

/// The submit route.
pub fn route(ctx: &ProviderContext, request: &GenerationRequest) -> String {
    match queue_query(ctx) {
        Some(query) => format!("/{}?{query}", request.mapping.provider_id),
        None => format!("/{}", request.mapping.provider_id),
    }
}

/// The request body.
pub fn payload(ctx: &ProviderContext, request: &GenerationRequest) -> Value {
    let mut body: Map<String, Value> = Map::new();
    body.insert("prompt".into(), Value::from(request.prompt.clone()));
    let mut params = provider_parameters(request);
    if request.mapping.task == Task::TextToImage
        && let (Some(width), Some(height)) = (params.get("width").cloned(), params.get("height").cloned())
    {
        params.remove("width");
        params.remove("height");
        params.insert("image_size".into(), json!({ "width": width, "height": height }));
    }
    body.extend(params);
    if let Some(path) = request.mapping.lora_weights_path() {
        let url = super::lora_weights_url(ctx.hub_url(), &request.mapping.hf_model_id, path);
        body.insert("loras".into(), json!([{ "path": url, "scale": 1 }]));
        if request.mapping.provider_id == LORA_ENDPOINT && request.mapping.task == Task::TextToImage {
            body.insert("model_name".into(), Value::from(LORA_BASE_MODEL));
        }
    }
    Value::Object(body)
}

/// The job named by a submit answer: its id and the path of its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    /// fal's request id.
    pub request_id: String,
    /// The path of `response_url` (status is this plus `/status`).
    pub response_path: String,
}

/// Reads a submit answer.
pub fn parse_submit(request: &GenerationRequest, answer: &Value) -> Result<QueuedJob, ProviderError> {
    let request_id = answer
        .get("request_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::invalid_response(FAL_AI, "the queue answer has no `request_id`"))?
        .to_owned();
    let response_path = match answer.get("response_url").and_then(Value::as_str) {
        Some(url) => url::Url::parse(url)
            .map_err(|e| ProviderError::invalid_response(FAL_AI, format!("`response_url` is not a URL: {e}")))?
            .path()
            .to_owned(),
        None => format!("/{}/requests/{request_id}", request.mapping.provider_id),
    };
    Ok(QueuedJob {
        request_id,
        response_path,
    })
}

/// Reads a status answer: pending, completed, or failed.
pub fn parse_status(job: &QueuedJob, answer: &Value) -> Result<Poll<()>, ProviderError> {
    let status = answer.get("status").and_then(Value::as_str).unwrap_or("");
    match status {
        "COMPLETED" => match http::json_error_text(answer) {
            Some(message) => Err(ProviderError::job_failed(FAL_AI, &job.request_id, message)),
            None => Ok(Poll::Ready(())),
        },
        "IN_QUEUE" => Ok(Poll::Pending(queued(&job.request_id, answer))),
        "IN_PROGRESS" => Ok(Poll::Pending(ProviderStatus::in_progress(&job.request_id))),
        "" => Err(ProviderError::invalid_response(
            FAL_AI,
            "the status answer has no `status`",
        )),
        other => Err(ProviderError::job_failed(
            FAL_AI,
            &job.request_id,
            http::json_error_text(answer).unwrap_or_else(|| format!("the job ended with status {other}")),
        )),
    }
}

/// Reads the result: the media URL and the rest of the answer.
pub fn parse_result(task: &Task, answer: &Value) -> Result<MediaOutput, ProviderError> {
    let url = match task {
        Task::TextToVideo => answer.pointer("/video/url"),
        _ => answer.pointer("/images/0/url").or_else(|| answer.pointer("/image/url")),
    }
    .and_then(Value::as_str)
    .ok_or_else(|| {
        let reason = match http::json_error_text(answer) {
            Some(message) => format!("the result has no media: {message}"),
            None if *task == Task::TextToVideo => "the result has no `video.url`".to_owned(),
            None => "the result has no `images[0].url`".to_owned(),
        };
        ProviderError::invalid_response(FAL_AI, reason)
    })?;
    let url = http::media_url(FAL_AI, url)?;
    let mime = match task {
        Task::TextToVideo => answer.pointer("/video/content_type"),
        _ => answer.pointer("/images/0/content_type"),
    }
    .and_then(Value::as_str)
    .map(str::to_owned);
    let mut output = MediaOutput::new(MediaBody::Url(url)).with_provider_response(answer);
    output.mime = mime;
    Ok(output)
}

/// A queued job, at the place in the queue the answer gives (`queue_position`).
fn queued(request_id: &str, answer: &Value) -> ProviderStatus {
    ProviderStatus::queued(request_id).with_queue_position(answer.get("queue_position").and_then(Value::as_u64))
}

#[async_trait]
impl MediaProvider for FalAi {
    fn info(&self) -> &ProviderInfo {
        &INFO
    }

    async fn generate(&self, ctx: &ProviderContext, request: GenerationRequest) -> Result<MediaOutput, ProviderError> {
        let answer = http::post_json(ctx, &route(ctx, &request), &payload(ctx, &request)).await?;
        // A synchronous deployment answers with the result directly.
        if answer.get("images").is_some() || answer.get("video").is_some() {
            return parse_result(&request.mapping.task, &answer);
        }
        let job = parse_submit(&request, &answer)?;
        ctx.report(queued(&job.request_id, &answer));
        let query = queue_query(ctx);
        let with_query = |path: String| match query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let status_url = ctx.url(&with_query(format!("{}/status", job.response_path)))?;
        let result_url = ctx.url(&with_query(job.response_path.clone()))?;
        // The status and result URLs are the job's own: a 404 there means the job is gone.
        http::poll_job(
            ctx,
            &job.request_id,
            &format!("waiting for fal job {}", job.request_id),
            || ctx.request(reqwest::Method::GET, status_url.clone()),
            |status| parse_status(&job, status),
        )
        .await?;
        let target = Target::Job(&job.request_id);
        let result = http::send_json_to(ctx, target, ctx.request(reqwest::Method::GET, result_url)).await?;
        parse_result(&request.mapping.task, &result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GenerationParams;

    fn job() -> QueuedJob {
        QueuedJob {
            request_id: "r1".into(),
            response_path: "/fal-ai/flux/requests/r1".into(),
        }
    }

    #[test]
    fn statuses_are_pending_completed_or_failed() {
        assert!(matches!(
            parse_status(&job(), &json!({"status": "IN_QUEUE", "queue_position": 3})),
            Ok(Poll::Pending(ProviderStatus {
                queue_position: Some(3),
                ..
            }))
        ));
        assert!(matches!(
            parse_status(&job(), &json!({"status": "IN_PROGRESS"})),
            Ok(Poll::Pending(_))
        ));
        assert!(matches!(
            parse_status(&job(), &json!({"status": "COMPLETED"})),
            Ok(Poll::Ready(()))
        ));
        let err = parse_status(&job(), &json!({"status": "FAILED", "error": "out of memory"})).unwrap_err();
        assert_eq!(err.to_string(), "fal-ai reported that job r1 failed: out of memory");
        assert!(matches!(
            parse_status(&job(), &json!({"status": "COMPLETED", "error": "nsfw"})),
            Err(ProviderError::JobFailed { .. })
        ));
        assert!(matches!(
            parse_status(&job(), &json!({})),
            Err(ProviderError::InvalidResponse { .. })
        ));
    }

    #[test]
    fn results_name_their_media() {
        let image = parse_result(
            &Task::TextToImage,
            &json!({"images": [{"url": "https://fal.media/a.png"}], "seed": 9}),
        )
        .unwrap();
        assert!(matches!(image.body, MediaBody::Url(ref u) if u.as_str() == "https://fal.media/a.png"));
        assert_eq!(image.seed, Some(9));
        let video = parse_result(
            &Task::TextToVideo,
            &json!({"video": {"url": "https://fal.media/a.mp4"}}),
        )
        .unwrap();
        assert!(matches!(video.body, MediaBody::Url(_)));
        let err = parse_result(&Task::TextToVideo, &json!({"images": []})).unwrap_err();
        assert!(err.to_string().contains("video.url"), "{err}");
        assert!(parse_result(&Task::TextToImage, &json!({"images": [{"url": "ftp://x"}]})).is_err());
    }

    fn lora_request(provider_id: &str) -> GenerationRequest {
        let mut mapping = crate::ProviderMapping::new(FAL_AI, provider_id, Task::TextToImage, "someone/pixel-lora");
        mapping.adapter = Some("lora".into());
        mapping.adapter_weights_path = Some("pixel.safetensors".into());
        GenerationRequest {
            mapping,
            prompt: "a castle".into(),
            params: GenerationParams {
                width: Some(512),
                height: Some(768),
                ..Default::default()
            },
            images: Vec::new(),
        }
    }

    #[test]
    fn lora_weights_come_from_the_configured_hub_and_sizes_become_image_size() {
        let router = url::Url::parse("http://127.0.0.1:9/router").unwrap();
        let ctx = ProviderContext::routed(reqwest::Client::new(), &router, FAL_AI, None)
            .with_hub_url(url::Url::parse("http://127.0.0.1:9/hub").unwrap());
        assert_eq!(
            payload(&ctx, &lora_request("fal-ai/flux-lora")),
            json!({"prompt": "a castle", "image_size": {"width": 512, "height": 768},
                   "loras": [{"path": "http://127.0.0.1:9/hub/someone/pixel-lora/resolve/main/pixel.safetensors", "scale": 1}]})
        );
        let sd = payload(&ctx, &lora_request("fal-ai/lora"));
        assert_eq!(sd["model_name"], "stabilityai/stable-diffusion-xl-base-1.0");
        assert_eq!(
            route(&ctx, &lora_request("fal-ai/lora")),
            "/fal-ai/lora?_subdomain=queue"
        );
        let mut plain = lora_request("fal-ai/flux/dev");
        plain.mapping.adapter = None;
        assert!(payload(&ctx, &plain).get("loras").is_none(), "no adapter, no LoRA");
    }

    #[test]
    fn submit_answers_give_the_response_path() {
        let request = GenerationRequest {
            mapping: crate::ProviderMapping::new(FAL_AI, "fal-ai/flux/dev", Task::TextToImage, "m/x"),
            prompt: "p".into(),
            params: GenerationParams::default(),
            images: Vec::new(),
        };
        let job = parse_submit(
            &request,
            &json!({"request_id": "abc", "response_url": "https://queue.fal.run/fal-ai/flux/requests/abc"}),
        )
        .unwrap();
        assert_eq!(job.response_path, "/fal-ai/flux/requests/abc");
        let job = parse_submit(&request, &json!({"request_id": "abc"})).unwrap();
        assert_eq!(job.response_path, "/fal-ai/flux/dev/requests/abc");
        assert!(parse_submit(&request, &json!({"status": "IN_QUEUE"})).is_err());
    }
}
