//! replicate: images and videos through Replicate's predictions API, and image edits.
//!
//! `POST {base}/v1/models/{owner}/{name}/predictions` (or `/v1/predictions` with `version` for a pinned
//! `owner/name:version` id), header `Prefer: wait`, body `{"input": {"prompt", …}}`. `201 Created` is
//! success; `output` is a URL string or a list of them. When the server's wait window ends before the
//! prediction does, the prediction is polled at `{base}/v1/predictions/{id}` until `succeeded`, `failed`
//! or `canceled`. A resumed prediction ([`MediaProvider::resume`]) is polled there the same way.
//!
//! Image-to-image: Replicate's models name their image input differently, so the input images go under
//! four keys of `input` at once: `image` and `input_image` (the first image), `images` and `input_images`
//! (all of them), each the caller's `http(s)` URL or a `data:` URL; the parameters come after them (a
//! caller's own key wins).

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::http::{self, Poll, Target};
use crate::{
    AuthScheme, DirectApi, GenerationRequest, InputImage, JobTicket, MediaOutput, MediaProvider, ProviderContext,
    ProviderError, ProviderInfo, ProviderStatus, Task, answer, provider_parameters,
};

/// The provider's Hub name.
pub const REPLICATE: &str = "replicate";
/// Replicate's own API, for calls with a `REPLICATE_API_TOKEN`.
pub const REPLICATE_API_URL: &str = "https://api.replicate.com";
const TASKS: &[Task] = &[Task::TextToImage, Task::TextToVideo, Task::ImageToImage];
static INFO: ProviderInfo = ProviderInfo::routed_with_api(
    REPLICATE,
    TASKS,
    DirectApi::new(REPLICATE_API_URL, "REPLICATE_API_TOKEN", AuthScheme::Bearer),
);

/// Replicate (`replicate`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Replicate;

/// The model and the pinned version of a provider id.
fn split_version(provider_id: &str) -> (&str, Option<&str>) {
    match provider_id.split_once(':') {
        Some((model, version)) => (model, Some(version)),
        None => (provider_id, None),
    }
}

/// The create-prediction route.
pub fn route(request: &GenerationRequest) -> String {
    match split_version(&request.mapping.provider_id) {
        (_, Some(_)) => "/v1/predictions".to_owned(),
        (model, None) => format!("/v1/models/{model}/predictions"),
    }
}

/// The keys of `input` that carry the input images: `image` and `input_image` (the first), `images` and
/// `input_images` (all of them); none without images.
pub fn image_inputs(request: &GenerationRequest) -> Map<String, Value> {
    let mut inputs = Map::new();
    let urls: Vec<String> = request.images.iter().map(InputImage::url_or_data_url).collect();
    let Some(first) = urls.first() else {
        return inputs;
    };
    inputs.insert("image".into(), Value::from(first.clone()));
    inputs.insert("images".into(), Value::from(urls.clone()));
    inputs.insert("input_image".into(), Value::from(first.clone()));
    inputs.insert("input_images".into(), Value::from(urls));
    inputs
}

/// The request body: everything inside `input` (the prompt, the image keys, the parameters), plus
/// `version` when pinned.
pub fn payload(ctx: &ProviderContext, request: &GenerationRequest) -> Value {
    let mut input: Map<String, Value> = Map::new();
    input.insert("prompt".into(), Value::from(request.prompt.clone()));
    input.extend(image_inputs(request));
    input.extend(provider_parameters(request));
    if request.mapping.lora_weights_path().is_some() {
        let repo = format!(
            "{}/{}",
            ctx.hub_url().as_str().trim_end_matches('/'),
            request.mapping.hf_model_id
        );
        input.insert("lora_weights".into(), Value::from(repo));
    }
    let mut body = json!({ "input": input });
    if let (_, Some(version)) = split_version(&request.mapping.provider_id) {
        body["version"] = Value::from(version);
    }
    body
}

/// Reads a prediction: done with a media URL, still running, or failed.
pub fn parse_prediction(answer: &Value) -> Result<Poll<MediaOutput>, ProviderError> {
    let id = answer.get("id").and_then(Value::as_str).unwrap_or("?");
    let status = answer.get("status").and_then(Value::as_str).unwrap_or("");
    let output = match answer.get("output") {
        Some(Value::String(url)) => Some(url.as_str()),
        Some(Value::Array(items)) => items.first().and_then(Value::as_str),
        _ => None,
    };
    match (status, output) {
        ("failed" | "canceled" | "aborted", _) => {
            let message = answer
                .get("error")
                .and_then(|e| {
                    e.as_str()
                        .map(str::to_owned)
                        .or_else(|| (!e.is_null()).then(|| e.to_string()))
                })
                .unwrap_or_else(|| format!("the prediction was {status}"));
            Err(ProviderError::job_failed(REPLICATE, id, message))
        }
        (_, Some(url)) => answer::media_at(REPLICATE, url, answer).map(Poll::Ready),
        ("starting", None) if answer.get("id").is_some() => Ok(Poll::Pending(ProviderStatus::queued(id))),
        ("processing" | "", None) if answer.get("id").is_some() => Ok(Poll::Pending(ProviderStatus::in_progress(id))),
        ("succeeded", None) => Err(ProviderError::invalid_response(
            REPLICATE,
            format!("prediction {id} succeeded without an `output`"),
        )),
        _ => Err(ProviderError::invalid_response(
            REPLICATE,
            format!("unexpected prediction (status {status:?}, no `output`)"),
        )),
    }
}

/// One status request of prediction `id`. Its route is the job's own ([`Target::Job`]), and one that the
/// endpoint may not serve at all: through the router, a prediction that outlives the `Prefer: wait`
/// window can only be polled on Replicate's own API, so a 404 or 405 says that.
async fn poll_prediction(ctx: &ProviderContext, url: url::Url, id: &str) -> Result<Poll<MediaOutput>, ProviderError> {
    let response = http::send_unchecked(ctx, ctx.request(reqwest::Method::GET, url)).await?;
    if matches!(response.status().as_u16(), 404 | 405) {
        return Err(ProviderError::job_failed(
            REPLICATE,
            id,
            format!(
                "the prediction outlived Replicate's wait window and this endpoint cannot poll it \
                 (GET /v1/predictions/{id} is not served); use a REPLICATE_API_TOKEN to poll it directly"
            ),
        ));
    }
    let response = http::check_status(REPLICATE, Target::Job(id), response).await?;
    parse_prediction(&http::read_json(REPLICATE, response).await?)
}

#[async_trait]
impl MediaProvider for Replicate {
    fn info(&self) -> &ProviderInfo {
        &INFO
    }

    async fn generate(&self, ctx: &ProviderContext, request: GenerationRequest) -> Result<MediaOutput, ProviderError> {
        request.check_images(REPLICATE)?;
        let url = ctx.url(&route(&request))?;
        let create = ctx
            .request(reqwest::Method::POST, url)
            .header("prefer", "wait")
            .json(&payload(ctx, &request));
        let answer = http::send_json(ctx, create).await?;
        let status = match parse_prediction(&answer)? {
            Poll::Ready(output) => return Ok(output),
            Poll::Pending(status) => status,
        };
        let id = http::job_id(REPLICATE, status.job_id.as_deref().unwrap_or_default())?.to_owned();
        ctx.report(status);
        wait(ctx, &JobTicket::new(REPLICATE, id)).await
    }

    /// Polls the prediction at `/v1/predictions/{id}` as [`MediaProvider::generate`] does once the
    /// `Prefer: wait` window is over.
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

/// Follows an accepted prediction to its media: reports it accepted, then polls
/// `/v1/predictions/{id}` until it succeeded (or failed).
async fn wait(ctx: &ProviderContext, ticket: &JobTicket) -> Result<MediaOutput, ProviderError> {
    let id = ticket.job_id.as_str();
    ctx.report_accepted(ticket);
    let poll_url = ctx.url(&format!("/v1/predictions/{id}"))?;
    http::poll_until(ctx, &format!("waiting for replicate prediction {id}"), |_| {
        poll_prediction(ctx, poll_url.clone(), id)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MediaBody;

    #[test]
    fn output_may_be_a_string_or_a_list() {
        let one =
            parse_prediction(&json!({"id": "p", "status": "succeeded", "output": "https://replicate.delivery/a.webp"}));
        assert!(matches!(
            one,
            Ok(Poll::Ready(MediaOutput {
                body: MediaBody::Url(_),
                ..
            }))
        ));
        let list = parse_prediction(
            &json!({"id": "p", "status": "processing", "output": ["https://replicate.delivery/a.webp"]}),
        );
        assert!(
            matches!(list, Ok(Poll::Ready(_))),
            "a filled output wins over a `processing` status"
        );
    }

    #[test]
    fn pending_failed_and_malformed_predictions() {
        assert!(matches!(
            parse_prediction(&json!({"id": "p", "status": "starting", "output": null})),
            Ok(Poll::Pending(ProviderStatus { ref state, .. })) if state == "queued"
        ));
        let err =
            parse_prediction(&json!({"id": "p", "status": "failed", "error": "NSFW content detected"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "replicate reported that job p failed: NSFW content detected"
        );
        assert!(matches!(
            parse_prediction(&json!({"id": "p", "status": "succeeded"})),
            Err(ProviderError::InvalidResponse { .. })
        ));
        assert!(matches!(
            parse_prediction(&json!({"detail": "x"})),
            Err(ProviderError::InvalidResponse { .. })
        ));
    }

    #[test]
    fn payload_puts_everything_in_input_with_lora_and_version() {
        let mut mapping = crate::ProviderMapping::new(
            REPLICATE,
            "owner/flux-lora:abc123",
            Task::TextToImage,
            "someone/pixel-lora",
        );
        mapping.adapter = Some("lora".into());
        mapping.adapter_weights_path = Some("pixel.safetensors".into());
        let request = GenerationRequest {
            mapping,
            prompt: "a castle".into(),
            params: crate::GenerationParams {
                seed: Some(1),
                ..Default::default()
            },
            images: Vec::new(),
        };
        let router = url::Url::parse("http://127.0.0.1:9").unwrap();
        let ctx = ProviderContext::routed(reqwest::Client::new(), &router, REPLICATE, None)
            .with_hub_url(url::Url::parse("https://hub.example").unwrap());
        assert_eq!(route(&request), "/v1/predictions");
        assert_eq!(
            payload(&ctx, &request),
            json!({"input": {"prompt": "a castle", "seed": 1, "lora_weights": "https://hub.example/someone/pixel-lora"},
                   "version": "abc123"})
        );
    }

    #[test]
    fn pinned_versions_use_the_predictions_route() {
        assert_eq!(split_version("owner/name:abc123"), ("owner/name", Some("abc123")));
        assert_eq!(split_version("owner/name"), ("owner/name", None));
    }

    #[test]
    fn image_edits_put_the_images_under_the_four_keys() {
        use super::super::test_support::{png, remote, request};
        let router = url::Url::parse("http://127.0.0.1:9").unwrap();
        let ctx = ProviderContext::routed(reqwest::Client::new(), &router, REPLICATE, None);
        let params = crate::GenerationParams {
            strength: Some(0.5),
            ..Default::default()
        };
        let one = request(
            REPLICATE,
            "black-forest-labs/flux-kontext-dev",
            Task::ImageToImage,
            vec![png(1)],
            params,
        );
        let url = png(1).data_url();
        assert_eq!(route(&one), "/v1/models/black-forest-labs/flux-kontext-dev/predictions");
        assert_eq!(
            payload(&ctx, &one),
            json!({"input": {"prompt": "make it snow", "image": url, "images": [url],
                             "input_image": url, "input_images": [url], "strength": 0.5}})
        );
        let several = request(
            REPLICATE,
            "owner/edit:v1",
            Task::ImageToImage,
            vec![png(1), remote("https://example.com/b.jpg")],
            crate::GenerationParams::default(),
        );
        let body = payload(&ctx, &several);
        assert_eq!(body["version"], "v1");
        assert_eq!(body["input"]["image"], json!(url));
        assert_eq!(body["input"]["input_images"], json!([url, "https://example.com/b.jpg"]));
        assert_eq!(body["input"]["images"], body["input"]["input_images"]);
        assert!(
            image_inputs(&request(
                REPLICATE,
                "o/m",
                Task::TextToImage,
                Vec::new(),
                Default::default()
            ))
            .is_empty()
        );
        assert!(INFO.check_task(&Task::ImageToImage).is_ok() && INFO.check_task(&Task::ImageToVideo).is_err());
    }
}
