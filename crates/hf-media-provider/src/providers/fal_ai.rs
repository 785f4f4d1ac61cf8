//! fal-ai: images and videos through fal's queue, from a prompt or from input images.
//!
//! 1. `POST {base}/{providerId}` (`?_subdomain=queue` through the router) with `{"prompt", …}`; for images,
//!    `width` + `height` become `image_size: {width, height}`. Input images go as `image_url` (the first)
//!    and, for images (image-to-image, image-text-to-image), `image_urls` (all of them), each the caller's
//!    `http(s)` URL or a `data:` URL; a video takes one image, so the others are left out with a warning.
//!    The optional-image tasks without images send the prompt and parameters alone, to the same path
//!    (never trimmed: the router finds the model by it).
//! 2. The answer names the job: `request_id`, `status`, `response_url`.
//! 3. `GET {base}{path of response_url}/status` until `COMPLETED` (`IN_QUEUE` with `queue_position`, and
//!    `IN_PROGRESS`, are pending; anything else failed).
//! 4. `GET {base}{path of response_url}`: `images[0].url` (images) or `video.url` (videos), which may be a
//!    `data:` URL. The job is done by then: passing failures of this request are ridden out like a status
//!    request's ([`http::fetch_job_result`]).
//!
//! The job's ticket keeps the response path (`data.response_path`, relative to the base): a resumed job
//! polls and fetches there, steps 3 and 4, through the same code.

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::http::{self, Poll};
use crate::{
    AuthScheme, DirectApi, GenerationRequest, InputImage, JobTicket, MediaBody, MediaOutput, MediaProvider,
    ProviderContext, ProviderError, ProviderInfo, ProviderStatus, Task, provider_parameters,
};
use hf_media_mapping::Output;

/// The provider's Hub name.
pub const FAL_AI: &str = "fal-ai";
/// fal's own queue API, for calls with a `FAL_KEY`.
pub const FAL_QUEUE_URL: &str = "https://queue.fal.run";
const TASKS: &[Task] = &[
    Task::TextToImage,
    Task::TextToVideo,
    Task::ImageToImage,
    Task::ImageToVideo,
    Task::ImageTextToImage,
    Task::ImageTextToVideo,
];
static INFO: ProviderInfo =
    ProviderInfo::routed_with_api(FAL_AI, TASKS, DirectApi::new(FAL_QUEUE_URL, "FAL_KEY", AuthScheme::Key));
/// The key of a ticket's `data` that holds the job's response path.
const RESPONSE_PATH: &str = "response_path";
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
        // Through the router the path names the mapping: it is kept as it is.
        Some(query) => format!("/{}?{query}", request.mapping.provider_id),
        None => format!("/{}", direct_endpoint(request)),
    }
}

/// The endpoint of a direct call: an image-text task asked without an image goes to the endpoint's
/// prompt-only parent (`fal-ai/flux-2/edit` → `fal-ai/flux-2`), as fal's own clients do.
fn direct_endpoint(request: &GenerationRequest) -> &str {
    let id = request.mapping.provider_id.as_str();
    let prompt_only =
        request.images.is_empty() && matches!(request.mapping.task, Task::ImageTextToImage | Task::ImageTextToVideo);
    match id.rsplit_once('/') {
        Some((parent, _)) if prompt_only && parent.contains('/') => parent,
        _ => id,
    }
}

/// The fields that carry the input images: `image_url` (the first image) and, when the task makes an
/// image, `image_urls` (all of them); none without images.
pub fn image_fields(request: &GenerationRequest) -> Map<String, Value> {
    let mut fields = Map::new();
    let urls: Vec<String> = request.images.iter().map(InputImage::url_or_data_url).collect();
    let Some(first) = urls.first() else {
        return fields;
    };
    fields.insert("image_url".into(), Value::from(first.clone()));
    if !request.mapping.task.makes_video() {
        fields.insert("image_urls".into(), Value::from(urls));
    }
    fields
}

/// The request body: the prompt, the image fields ([`image_fields`]), the parameters (which may override
/// them: a caller's own `image_urls` wins), the LoRA.
pub fn payload(ctx: &ProviderContext, request: &GenerationRequest) -> Value {
    let mut body: Map<String, Value> = Map::new();
    body.insert("prompt".into(), Value::from(request.prompt.clone()));
    body.extend(image_fields(request));
    let mut params = provider_parameters(request);
    if request.mapping.task.output() == Some(Output::Image)
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
    let video = task.makes_video();
    let url = if video {
        answer.pointer("/video/url")
    } else {
        answer.pointer("/images/0/url").or_else(|| answer.pointer("/image/url"))
    }
    .and_then(Value::as_str)
    .ok_or_else(|| {
        let reason = match http::json_error_text(answer) {
            Some(message) => format!("the result has no media: {message}"),
            None if video => "the result has no `video.url`".to_owned(),
            None => "the result has no `images[0].url`".to_owned(),
        };
        ProviderError::invalid_response(FAL_AI, reason)
    })?;
    let url = http::media_url(FAL_AI, url)?;
    let mime = if video {
        answer.pointer("/video/content_type")
    } else {
        answer.pointer("/images/0/content_type")
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
        request.check_images(FAL_AI)?;
        if request.mapping.task.makes_video() {
            ctx.warn_images_left_out(&request, 1);
        }
        let answer = http::post_json(ctx, &route(ctx, &request), &payload(ctx, &request)).await?;
        // A synchronous deployment answers with the result directly.
        if answer.get("images").is_some() || answer.get("video").is_some() {
            return parse_result(&request.mapping.task, &answer);
        }
        let job = parse_submit(&request, &answer)?;
        ctx.report(queued(&job.request_id, &answer));
        wait(ctx, &request, &ticket(&job)).await
    }

    /// Polls the job's status and fetches its result at the ticket's `data.response_path`, as
    /// [`MediaProvider::generate`] does after its submit (through the router with `?_subdomain=queue`).
    async fn resume(
        &self,
        ctx: &ProviderContext,
        request: GenerationRequest,
        job: JobTicket,
    ) -> Result<MediaOutput, ProviderError> {
        job.path_id(self.name())?;
        wait(ctx, &request, &job).await
    }
}

/// The ticket of a queued job: its request id, and its response path under `data.response_path`.
fn ticket(job: &QueuedJob) -> JobTicket {
    JobTicket::new(FAL_AI, &job.request_id).with_data(json!({ RESPONSE_PATH: job.response_path }))
}

/// The queued job a ticket names: its `data.response_path` must be there, and relative
/// ([`JobTicket::relative_path`]).
fn queued_job(job: &JobTicket) -> Result<QueuedJob, ProviderError> {
    let response_path = job.relative_path(FAL_AI, RESPONSE_PATH)?.ok_or_else(|| {
        ProviderError::invalid_request(
            FAL_AI,
            format!(
                "the job ticket of fal job {} has no `data.{RESPONSE_PATH}`: it cannot be resumed",
                job.job_id
            ),
        )
    })?;
    Ok(QueuedJob {
        request_id: job.job_id.clone(),
        response_path: response_path.to_owned(),
    })
}

/// Follows an accepted job to its media: `GET {response path}/status` until `COMPLETED`, then
/// `GET {response path}` (both with the queue query through the router), read for `request`'s task.
async fn wait(
    ctx: &ProviderContext,
    request: &GenerationRequest,
    ticket: &JobTicket,
) -> Result<MediaOutput, ProviderError> {
    let job = queued_job(ticket)?;
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
        ticket,
        &format!("waiting for fal job {}", job.request_id),
        || ctx.request(reqwest::Method::GET, status_url.clone()),
        |status| parse_status(&job, status),
    )
    .await?;
    // The job is done (and paid for): a passing failure of the result request is ridden out too.
    let result = http::fetch_job_result(
        ctx,
        &job.request_id,
        &format!("fetching the result of fal job {}", job.request_id),
        || ctx.request(reqwest::Method::GET, result_url.clone()),
    )
    .await?;
    parse_result(&request.mapping.task, &result)
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

    fn routed() -> ProviderContext {
        let router = url::Url::parse("http://127.0.0.1:9").unwrap();
        ProviderContext::routed(reqwest::Client::new(), &router, FAL_AI, None)
    }

    #[test]
    fn a_direct_prompt_only_image_text_call_goes_to_the_parent_endpoint() {
        let direct = ProviderContext::direct(
            reqwest::Client::new(),
            url::Url::parse("https://queue.fal.run").unwrap(),
            FAL_AI,
            None,
            AuthScheme::Key,
        );
        let mut request = lora_request("fal-ai/flux-2/edit");
        request.mapping.task = Task::ImageTextToImage;
        assert_eq!(route(&direct, &request), "/fal-ai/flux-2");
        assert_eq!(
            route(&routed(), &request),
            "/fal-ai/flux-2/edit?_subdomain=queue",
            "the router keeps it"
        );
        request.images.push(super::super::test_support::png(1));
        assert_eq!(
            route(&direct, &request),
            "/fal-ai/flux-2/edit",
            "with an image, the edit endpoint"
        );
        let mut single = lora_request("fal-ai/flux-2");
        single.mapping.task = Task::ImageTextToImage;
        assert_eq!(
            route(&direct, &single),
            "/fal-ai/flux-2",
            "never shortened to one segment"
        );
    }

    #[test]
    fn image_edits_send_the_first_image_and_all_of_them() {
        use super::super::test_support::{png, remote, request};
        let sized = GenerationParams {
            width: Some(1024),
            height: Some(768),
            strength: Some(0.7),
            ..Default::default()
        };
        let (a, b) = (png(1), remote("https://example.com/b.jpg"));
        let req = request(
            FAL_AI,
            "fal-ai/flux-2/edit",
            Task::ImageToImage,
            vec![a.clone(), b],
            sized,
        );
        assert_eq!(
            payload(&routed(), &req),
            json!({"prompt": "make it snow", "image_url": a.data_url(),
                   "image_urls": [a.data_url(), "https://example.com/b.jpg"],
                   "strength": 0.7, "image_size": {"width": 1024, "height": 768}})
        );
        assert_eq!(route(&routed(), &req), "/fal-ai/flux-2/edit?_subdomain=queue");
        let optional = request(
            FAL_AI,
            "fal-ai/flux-2/edit",
            Task::ImageTextToImage,
            vec![a.clone()],
            GenerationParams::default(),
        );
        assert_eq!(
            payload(&routed(), &optional),
            json!({"prompt": "make it snow", "image_url": a.data_url(), "image_urls": [a.data_url()]})
        );
    }

    #[test]
    fn videos_take_one_image_and_no_text_to_video_defaults() {
        use super::super::test_support::{png, request};
        let params = GenerationParams {
            width: Some(832),
            height: Some(480),
            num_frames: Some(81),
            seed: Some(4),
            ..Default::default()
        };
        let req = request(
            FAL_AI,
            "fal-ai/wan-i2v",
            Task::ImageToVideo,
            vec![png(1), png(2)],
            params,
        );
        assert_eq!(
            payload(&routed(), &req),
            json!({"prompt": "make it snow", "image_url": png(1).data_url(),
                   "width": 832, "height": 480, "seed": 4, "num_frames": 81})
        );
        // Without an image, the optional-image task is a prompt-only call to the same path.
        let prompt_only = request(
            FAL_AI,
            "minimax/h3/image-to-video",
            Task::ImageTextToVideo,
            Vec::new(),
            GenerationParams::default(),
        );
        assert_eq!(
            payload(&routed(), &prompt_only),
            json!({"prompt": "make it snow", "aspect_ratio": "16:9", "resolution": "480p"})
        );
        assert_eq!(
            route(&routed(), &prompt_only),
            "/minimax/h3/image-to-video?_subdomain=queue"
        );
        assert!(image_fields(&prompt_only).is_empty());
    }

    #[test]
    fn image_results_and_video_results_by_task() {
        let image = json!({"images": [{"url": "https://fal.media/e.png", "content_type": "image/png"}]});
        for task in [Task::ImageToImage, Task::ImageTextToImage] {
            let out = parse_result(&task, &image).unwrap();
            assert!(
                matches!(out.body, MediaBody::Url(ref u) if u.as_str() == "https://fal.media/e.png"),
                "{task}"
            );
            assert_eq!(out.mime.as_deref(), Some("image/png"));
        }
        let video = json!({"video": {"url": "https://fal.media/v.mp4", "content_type": "video/mp4"}});
        for task in [Task::ImageToVideo, Task::ImageTextToVideo] {
            let out = parse_result(&task, &video).unwrap();
            assert!(
                matches!(out.body, MediaBody::Url(ref u) if u.as_str() == "https://fal.media/v.mp4"),
                "{task}"
            );
            let err = parse_result(&task, &image).unwrap_err();
            assert!(err.to_string().contains("video.url"), "{err}");
        }
    }

    #[test]
    fn it_lists_every_media_task() {
        for task in Task::MEDIA {
            assert!(INFO.check_task(&task).is_ok(), "{task}");
        }
    }
}
