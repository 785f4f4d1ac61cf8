//! wavespeed: images and videos through WaveSpeed's prediction API (same protocol for every task).
//!
//! 1. `POST {base}/api/v3/{providerId}` with `{"prompt", …}` (parameters unchanged); a LoRA mapping adds
//!    `loras: [{"path": hfModelId, "scale": 1}]` (a repo id, not a URL). Input images (image-to-image,
//!    image-to-video, and the optional-image tasks when given one) go as `image` (the first) and `images`
//!    (all of them), each the caller's `http(s)` URL or a `data:` URL labelled with the image's real type;
//!    the optional-image tasks without images send the prompt and parameters alone.
//! 2. The answer is `{"code": 200, "data": {"id", "urls": {"get"}, "status", …}}`.
//! 3. `GET {base}{path of data.urls.get}` until `data.status` is `completed` (`data.outputs[0]` is the media
//!    URL) or `failed` (`data.error`); `created` and `processing` are pending, anything else is a failure.
//!    A submit answer that is already `completed` with outputs is taken as is.
//!
//! The job's ticket keeps the path of `data.urls.get` (`data.result_path`): a resumed prediction is polled
//! there, step 3, through the same code.

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::http::{self, Poll};
use crate::{
    AuthScheme, DirectApi, GenerationRequest, InputImage, JobTicket, MediaOutput, MediaProvider, ProviderContext,
    ProviderError, ProviderInfo, ProviderStatus, Task, answer, provider_parameters,
};

/// The provider's Hub name.
pub const WAVESPEED: &str = "wavespeed";
/// WaveSpeed's own API, for calls with a `WAVESPEED_API_KEY`.
pub const WAVESPEED_API_URL: &str = "https://api.wavespeed.ai";
const TASKS: &[Task] = &[
    Task::TextToImage,
    Task::TextToVideo,
    Task::ImageToImage,
    Task::ImageToVideo,
    Task::ImageTextToImage,
    Task::ImageTextToVideo,
];
static INFO: ProviderInfo = ProviderInfo::routed_with_api(
    WAVESPEED,
    TASKS,
    DirectApi::new(WAVESPEED_API_URL, "WAVESPEED_API_KEY", AuthScheme::Bearer),
);

/// WaveSpeedAI (`wavespeed`).
#[derive(Debug, Clone, Copy, Default)]
pub struct WaveSpeed;

/// The submit route.
pub fn route(request: &GenerationRequest) -> String {
    format!("/api/v3/{}", request.mapping.provider_id)
}

/// A transparent 1×1 PNG, as a `data:` URL.
const BLANK_PNG_DATA_URL: &str = "data:image/png;base64,\
iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// The fields that carry the input images: `image` (the first) and `images` (all of them); for an
/// image-text task asked without an image, a blank 1×1 PNG; else none.
pub fn image_fields(request: &GenerationRequest) -> Map<String, Value> {
    let mut fields = Map::new();
    let mut urls: Vec<String> = request.images.iter().map(InputImage::url_or_data_url).collect();
    // WaveSpeed's image-text endpoints want an image field even for a prompt alone: a transparent 1×1
    // PNG stands in, as the reference client sends.
    if urls.is_empty() && matches!(request.mapping.task, Task::ImageTextToImage | Task::ImageTextToVideo) {
        urls.push(BLANK_PNG_DATA_URL.to_owned());
    }
    if let Some(first) = urls.first() {
        fields.insert("image".into(), Value::from(first.clone()));
        fields.insert("images".into(), Value::from(urls));
    }
    fields
}

/// The request body: the prompt, the image fields ([`image_fields`]), the parameters, the LoRA.
pub fn payload(request: &GenerationRequest) -> Value {
    let mut body: Map<String, Value> = Map::new();
    body.insert("prompt".into(), Value::from(request.prompt.clone()));
    body.extend(image_fields(request));
    body.extend(provider_parameters(request));
    if request.mapping.lora_weights_path().is_some() {
        body.insert(
            "loras".into(),
            json!([{ "path": request.mapping.hf_model_id, "scale": 1 }]),
        );
    }
    Value::Object(body)
}

/// The job named by a submit answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictionJob {
    /// WaveSpeed's prediction id.
    pub id: String,
    /// `data.urls.get`: the absolute result URL (only its path is used).
    pub result_url: String,
}

/// Reads the job id and result URL of a submit answer.
pub fn parse_submit(answer: &Value) -> Result<PredictionJob, ProviderError> {
    let id = answer
        .pointer("/data/id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let result_url = answer
        .pointer("/data/urls/get")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    match (id, result_url) {
        (Some(id), Some(result_url)) => Ok(PredictionJob {
            id: id.to_owned(),
            result_url: result_url.to_owned(),
        }),
        _ => Err(answer::missing(WAVESPEED, answer, "`data.id` or `data.urls.get`")),
    }
}

/// Reads a prediction (submit or result answer): done with a media URL, still running, or failed.
pub fn parse_result(answer: &Value) -> Result<Poll<MediaOutput>, ProviderError> {
    let data = answer.get("data");
    let id = data.and_then(|d| d.get("id")).and_then(Value::as_str).unwrap_or("?");
    let Some(status) = data.and_then(|d| d.get("status")).and_then(Value::as_str) else {
        return Err(ProviderError::invalid_response(
            WAVESPEED,
            "the answer has no `data.status`",
        ));
    };
    match status {
        "completed" => {
            let Some(url) = data.and_then(|d| d.pointer("/outputs/0")).and_then(Value::as_str) else {
                return Err(ProviderError::invalid_response(
                    WAVESPEED,
                    format!("prediction {id} completed without `data.outputs[0]`"),
                ));
            };
            answer::media_at(WAVESPEED, url, answer).map(Poll::Ready)
        }
        "failed" => {
            let message = answer::failure_message(data.and_then(|d| d.get("error")), answer, "the prediction failed");
            Err(ProviderError::job_failed(WAVESPEED, id, message))
        }
        "created" => Ok(Poll::Pending(ProviderStatus::queued(id))),
        "processing" => Ok(Poll::Pending(ProviderStatus::in_progress(id))),
        other => Err(ProviderError::job_failed(
            WAVESPEED,
            id,
            format!("unexpected status {other:?}"),
        )),
    }
}

#[async_trait]
impl MediaProvider for WaveSpeed {
    fn info(&self) -> &ProviderInfo {
        &INFO
    }

    async fn generate(&self, ctx: &ProviderContext, request: GenerationRequest) -> Result<MediaOutput, ProviderError> {
        request.check_images(WAVESPEED)?;
        let answer = http::post_json(ctx, &route(&request), &payload(&request)).await?;
        // A submit answer need not carry a status; the job id and result URL are what matter.
        match answer::submitted(parse_result(&answer))? {
            Some(Poll::Ready(output)) => return Ok(output),
            Some(Poll::Pending(status)) => ctx.report(status),
            None => {}
        }
        let job = parse_submit(&answer)?;
        wait(ctx, &ticket(&job)?).await
    }

    /// Polls the prediction at the ticket's `data.result_path` (or, without one,
    /// `/api/v3/predictions/{id}/result`), as [`MediaProvider::generate`] does after its submit.
    async fn resume(
        &self,
        ctx: &ProviderContext,
        _request: GenerationRequest,
        job: JobTicket,
    ) -> Result<MediaOutput, ProviderError> {
        job.path_id(self.name())?;
        wait(ctx, &job).await
    }
}

/// The key of a ticket's `data` that holds the path of the prediction's result URL.
const RESULT_PATH: &str = "result_path";

/// The ticket of a submitted prediction: its id, and the path of its `data.urls.get` under
/// `data.result_path` (the host is the provider's, never kept: polling goes through the context's base).
fn ticket(job: &PredictionJob) -> Result<JobTicket, ProviderError> {
    let url = url::Url::parse(&job.result_url)
        .map_err(|e| ProviderError::invalid_response(WAVESPEED, format!("`{}` is not a URL: {e}", job.result_url)))?;
    Ok(JobTicket::new(WAVESPEED, &job.id).with_data(json!({ RESULT_PATH: url.path() })))
}

/// Follows an accepted prediction to its media: `GET {result path}` until `completed` (or `failed`).
async fn wait(ctx: &ProviderContext, ticket: &JobTicket) -> Result<MediaOutput, ProviderError> {
    let id = ticket.job_id.as_str();
    let poll_url = match ticket.relative_path(WAVESPEED, RESULT_PATH)? {
        Some(path) => ctx.url(path)?,
        None => ctx.url(&format!("/api/v3/predictions/{id}/result"))?,
    };
    http::poll_job(
        ctx,
        ticket,
        &format!("waiting for wavespeed prediction {id}"),
        || ctx.request(reqwest::Method::GET, poll_url.clone()),
        parse_result,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GenerationParams, MediaBody, ProviderMapping};

    fn request(task: Task) -> GenerationRequest {
        GenerationRequest {
            mapping: ProviderMapping::new(WAVESPEED, "wavespeed-ai/flux-schnell", task, "org/model"),
            prompt: "a fox".into(),
            params: GenerationParams {
                width: Some(1024),
                height: Some(768),
                num_inference_steps: Some(4),
                ..Default::default()
            },
            images: Vec::new(),
        }
    }

    #[test]
    fn parameters_pass_unchanged_and_lora_is_the_repo_id() {
        let mut req = request(Task::TextToImage);
        assert_eq!(route(&req), "/api/v3/wavespeed-ai/flux-schnell");
        let body = payload(&req);
        assert_eq!(
            body,
            json!({"prompt": "a fox", "width": 1024, "height": 768, "num_inference_steps": 4})
        );
        req.mapping.adapter = Some("lora".into());
        req.mapping.adapter_weights_path = Some("lora.safetensors".into());
        assert_eq!(payload(&req)["loras"], json!([{"path": "org/model", "scale": 1}]));
    }

    #[test]
    fn submit_answers_name_the_job() {
        let answer = json!({"code": 200, "data": {"id": "abc", "status": "created",
            "urls": {"get": "https://api.wavespeed.ai/api/v3/predictions/abc/result"}}});
        let job = parse_submit(&answer).unwrap();
        assert_eq!(job.id, "abc");
        assert!(job.result_url.ends_with("/predictions/abc/result"));
        assert!(matches!(
            parse_submit(&json!({"code": 200, "data": {"id": "abc"}})),
            Err(ProviderError::InvalidResponse { .. })
        ));
    }

    #[test]
    fn completed_pending_failed_and_malformed_results() {
        let done = parse_result(&json!({"data": {"id": "abc", "status": "completed",
            "outputs": ["https://d.wavespeed.ai/x.png"]}}));
        assert!(matches!(
            done,
            Ok(Poll::Ready(MediaOutput {
                body: MediaBody::Url(ref url),
                ..
            })) if url.as_str() == "https://d.wavespeed.ai/x.png"
        ));
        assert!(matches!(
            parse_result(&json!({"data": {"id": "abc", "status": "created"}})),
            Ok(Poll::Pending(ProviderStatus { ref state, .. })) if state == "queued"
        ));
        assert!(matches!(
            parse_result(&json!({"data": {"id": "abc", "status": "processing"}})),
            Ok(Poll::Pending(ProviderStatus { ref state, .. })) if state == "in_progress"
        ));
        let err = parse_result(&json!({"data": {"id": "abc", "status": "failed", "error": "NSFW"}})).unwrap_err();
        assert_eq!(err.to_string(), "wavespeed reported that job abc failed: NSFW");
        assert!(matches!(
            parse_result(&json!({"data": {"id": "abc", "status": "weird"}})),
            Err(ProviderError::JobFailed { ref message, .. }) if message.contains("unexpected status")
        ));
        assert!(matches!(
            parse_result(&json!({"data": {"id": "abc", "status": "completed", "outputs": []}})),
            Err(ProviderError::InvalidResponse { .. })
        ));
        assert!(matches!(
            parse_result(&json!({"message": "x"})),
            Err(ProviderError::InvalidResponse { .. })
        ));
    }

    #[test]
    fn input_images_go_as_image_and_images_with_their_real_type() {
        use super::super::test_support::{png, remote, request as with_images};
        let jpeg = remote("https://example.com/b.jpg");
        let webp = InputImage::new(
            bytes::Bytes::from_static(b"RIFF\0\0\0\0WEBP"),
            "image/webp",
            crate::ImageOrigin::Bytes,
        );
        let req = with_images(
            WAVESPEED,
            "wavespeed-ai/qwen-image/edit-plus",
            Task::ImageToImage,
            vec![webp.clone(), jpeg],
            GenerationParams::default(),
        );
        assert!(webp.data_url().starts_with("data:image/webp;base64,"));
        assert_eq!(
            payload(&req),
            json!({"prompt": "make it snow", "image": webp.data_url(),
                   "images": [webp.data_url(), "https://example.com/b.jpg"]})
        );
        let video = with_images(
            WAVESPEED,
            "wavespeed-ai/wan-2.1/i2v-480p",
            Task::ImageToVideo,
            vec![png(1)],
            GenerationParams {
                seed: Some(3),
                ..Default::default()
            },
        );
        assert_eq!(
            payload(&video),
            json!({"prompt": "make it snow", "image": png(1).data_url(), "images": [png(1).data_url()], "seed": 3})
        );
        let prompt_only = with_images(
            WAVESPEED,
            "wavespeed-ai/flux-2",
            Task::ImageTextToImage,
            Vec::new(),
            GenerationParams::default(),
        );
        assert_eq!(
            payload(&prompt_only),
            json!({"prompt": "make it snow", "image": BLANK_PNG_DATA_URL, "images": [BLANK_PNG_DATA_URL]}),
            "an image-text endpoint wants an image field: a blank 1×1 PNG stands in"
        );
        let blank = BLANK_PNG_DATA_URL.trim_start_matches("data:image/png;base64,");
        let decoded = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, blank).unwrap();
        assert!(decoded.starts_with(b"\x89PNG\r\n\x1a\n"), "a real PNG");
        for task in Task::MEDIA {
            assert!(INFO.check_task(&task).is_ok(), "{task}");
        }
    }
}
