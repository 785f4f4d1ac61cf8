//! hf-inference: Hugging Face's own serverless inference, always through the router.
//!
//! `POST {base}/models/{providerId}` with `{"inputs": prompt, "parameters": {…}}`; the answer is the raw
//! image bytes (some deployments answer JSON with `data[0].b64_json` or `output[0]`).
//!
//! Image-to-image posts to the same route: the input image's raw bytes, with its own `Content-Type`, when
//! there is no prompt and no parameter; else `{"inputs": <the image in bare base64>, "parameters":
//! {"prompt", …}}`, with `width` + `height` as `target_size: {width, height}`. It takes one image (the
//! others are left out with a warning) and no video labels ([`IMAGE_LEFT_OUT`]).
//!
//! A `503` whose body
//! carries `estimated_time` means the model is loading: the call is tried again after that time through
//! the one retry mechanism ([`RetryStage::Loading`], each wait reported as a `loading` status and a
//! retry), as often as it takes until the polling deadline, which ends it with a
//! [`ProviderError::Timeout`]. Any other failure is left to the caller.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::http::{self, Target, body_stream};
use crate::{
    GenerationRequest, InputImage, MediaBody, MediaOutput, MediaProvider, ProviderContext, ProviderError, ProviderInfo,
    ProviderStatus, RetryPolicy, RetryStage, Retryable, Task, Transience, provider_parameters,
};

/// The provider's Hub name.
pub const HF_INFERENCE: &str = "hf-inference";
const TASKS: &[Task] = &[Task::TextToImage, Task::ImageToImage];
static INFO: ProviderInfo = ProviderInfo::routed(HF_INFERENCE, TASKS);

/// The longest wait a loading estimate is taken for.
const MAX_LOADING_WAIT: Duration = Duration::from_secs(60);

/// Hugging Face's serverless inference (`hf-inference`).
#[derive(Debug, Clone, Copy, Default)]
pub struct HfInference;

/// The route of a model.
pub fn route(request: &GenerationRequest) -> String {
    format!("/models/{}", request.mapping.provider_id)
}

/// Parameters image-to-image does not take: left out, with a warning when the caller set them.
pub const IMAGE_LEFT_OUT: &[&str] = &["aspect_ratio", "resolution", "num_frames"];

/// What one call sends.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestBody {
    /// A JSON body (`{"inputs", "parameters"}`).
    Json(Value),
    /// The input image's raw bytes, sent with its own `Content-Type`.
    Image(InputImage),
}

/// The text-to-image body: the prompt as `inputs`, every parameter inside `parameters`.
pub fn payload(request: &GenerationRequest) -> Value {
    let parameters: Map<String, Value> = provider_parameters(request);
    let mut body = json!({ "inputs": request.prompt });
    if !parameters.is_empty() {
        body["parameters"] = Value::Object(parameters);
    }
    body
}

/// The body of a call of any task: [`payload`] from a prompt; for an image task, the raw first image when
/// there is no prompt and no parameter, else JSON with the image in bare base64 as `inputs` and the
/// prompt first among the `parameters` (`width` + `height` as `target_size`).
pub fn request_body(request: &GenerationRequest) -> Result<RequestBody, ProviderError> {
    if !request.mapping.task.takes_images() {
        return Ok(RequestBody::Json(payload(request)));
    }
    let image = request.first_image(HF_INFERENCE)?;
    let mut params = provider_parameters(request);
    for name in IMAGE_LEFT_OUT {
        params.remove(*name);
    }
    if let (Some(width), Some(height)) = (params.get("width").cloned(), params.get("height").cloned()) {
        params.remove("width");
        params.remove("height");
        params.insert("target_size".into(), json!({ "width": width, "height": height }));
    }
    let mut parameters = Map::new();
    if !request.prompt.trim().is_empty() {
        parameters.insert("prompt".into(), Value::from(request.prompt.clone()));
    }
    parameters.extend(params);
    if parameters.is_empty() {
        return Ok(RequestBody::Image(image.clone()));
    }
    Ok(RequestBody::Json(
        json!({ "inputs": image.base64(), "parameters": parameters }),
    ))
}

/// Reads a JSON answer: `data[0].b64_json`, `data[0].url` or `output[0]`.
pub fn parse_json_answer(answer: &Value) -> Result<MediaBody, ProviderError> {
    let first_data = answer.get("data").and_then(|d| d.get(0));
    if let Some(b64) = first_data.and_then(|d| d.get("b64_json")).and_then(Value::as_str) {
        return http::decode_base64(HF_INFERENCE, b64).map(MediaBody::Bytes);
    }
    let url = first_data
        .and_then(|d| d.get("url"))
        .or_else(|| answer.get("output").and_then(|o| o.get(0)))
        .and_then(Value::as_str);
    match url {
        Some(url) => http::media_url(HF_INFERENCE, url).map(MediaBody::Url),
        None => Err(ProviderError::invalid_response(
            HF_INFERENCE,
            "the JSON answer has no image (`data[0].b64_json`, `data[0].url` or `output[0]`)",
        )),
    }
}

/// The wait a "model is loading" answer asks for (`estimated_time`, seconds), kept between 0.1 s and 60 s.
pub fn loading_estimate(body: &[u8]) -> Option<Duration> {
    let seconds = serde_json::from_slice::<Value>(body)
        .ok()?
        .get("estimated_time")?
        .as_f64()?;
    seconds
        .is_finite()
        .then(|| Duration::from_secs_f64(seconds.clamp(0.1, MAX_LOADING_WAIT.as_secs_f64())))
}

/// One call's failure, as the loading wait sees it: a model still loading is worth another try after its
/// estimate; anything else is final here (and left to the caller).
#[derive(Debug)]
enum Call {
    /// `503` with `estimated_time`.
    Loading {
        /// The estimate.
        estimated: Duration,
        /// The answer as an error.
        error: ProviderError,
    },
    /// Any other failure.
    Failed(ProviderError),
}

impl Call {
    fn error(&self) -> &ProviderError {
        match self {
            Call::Loading { error, .. } | Call::Failed(error) => error,
        }
    }
}

impl Retryable for Call {
    fn transience(&self) -> Transience {
        match self {
            Call::Loading { estimated, .. } => Transience::Transient {
                retry_after: Some(*estimated),
            },
            Call::Failed(_) => Transience::Final,
        }
    }

    fn retry_status(&self) -> Option<u16> {
        self.error().status()
    }

    fn retry_message(&self) -> String {
        self.error().message()
    }
}

/// The loading wait's policy: the context's backoff, tries without a bound (the deadline bounds them), and
/// every estimate taken.
fn loading_policy(ctx: &ProviderContext) -> RetryPolicy {
    let policy = ctx.retry();
    RetryPolicy {
        max_attempts: u32::MAX,
        max_retry_after: policy.max_retry_after.max(MAX_LOADING_WAIT),
        ..policy
    }
}

/// Sends the call once: the answer, a loading model (reported as a `loading` status), or a failure.
async fn call(ctx: &ProviderContext, url: &url::Url, body: &RequestBody) -> Result<reqwest::Response, Call> {
    let post = ctx.request(reqwest::Method::POST, url.clone());
    let post = match body {
        RequestBody::Json(json) => post.json(json),
        RequestBody::Image(image) => post
            .header(reqwest::header::CONTENT_TYPE, image.mime())
            .body(image.bytes().clone()),
    };
    let response = http::send_unchecked(ctx, post).await.map_err(Call::Failed)?;
    if response.status().is_success() {
        return Ok(response);
    }
    let is_loading = response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE;
    let (error, error_body) = http::http_error(HF_INFERENCE, Target::Model, response).await;
    match is_loading.then(|| loading_estimate(&error_body)).flatten() {
        Some(estimated) => {
            ctx.report(ProviderStatus::new("loading"));
            Err(Call::Loading { estimated, error })
        }
        None => Err(Call::Failed(error)),
    }
}

#[async_trait]
impl MediaProvider for HfInference {
    fn info(&self) -> &ProviderInfo {
        &INFO
    }

    async fn generate(&self, ctx: &ProviderContext, request: GenerationRequest) -> Result<MediaOutput, ProviderError> {
        let url = ctx.url(&route(&request))?;
        let body = request_body(&request)?;
        if request.mapping.task.takes_images() {
            ctx.warn_left_out(&request, IMAGE_LEFT_OUT);
            ctx.warn_images_left_out(&request, 1);
        }
        let started = Instant::now();
        let loaded = loading_policy(ctx)
            .run_until(
                RetryStage::Loading,
                started + ctx.poll().deadline,
                |_| call(ctx, &url, &body),
                |notice, _| ctx.report_retry(notice),
            )
            .await;
        let response = match loaded {
            Ok(response) => response,
            Err(Call::Failed(error)) => return Err(error),
            // A loading answer is only given back when the deadline is reached.
            Err(Call::Loading { .. }) => {
                return Err(ProviderError::timeout(
                    HF_INFERENCE,
                    "waiting for the model to load",
                    started.elapsed(),
                ));
            }
        };
        let mime = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if mime.as_deref().is_some_and(|m| m.starts_with("application/json")) {
            let answer = http::read_json(HF_INFERENCE, response).await?;
            return Ok(MediaOutput::new(parse_json_answer(&answer)?).with_provider_response(&answer));
        }
        let mut output = MediaOutput::new(MediaBody::Stream(body_stream(HF_INFERENCE, response)));
        output.mime = mime;
        output.seed = request.params.seed;
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GenerationParams;
    use crate::providers::test_support::{png, request};

    const CONTROLNET: &str = "lllyasviel/sd-controlnet-canny";

    #[test]
    fn an_image_alone_is_sent_raw_and_anything_more_as_json_with_bare_base64() {
        let mut alone = request(
            HF_INFERENCE,
            CONTROLNET,
            Task::ImageToImage,
            vec![png(1), png(2)],
            GenerationParams::default(),
        );
        alone.prompt = "  ".into();
        assert_eq!(request_body(&alone).unwrap(), RequestBody::Image(png(1)));
        // Video labels are left out, so they do not turn the body into JSON.
        alone.params.num_frames = Some(9);
        assert_eq!(request_body(&alone).unwrap(), RequestBody::Image(png(1)));

        let prompted = request(
            HF_INFERENCE,
            CONTROLNET,
            Task::ImageToImage,
            vec![png(1)],
            GenerationParams::default(),
        );
        assert_eq!(
            request_body(&prompted).unwrap(),
            RequestBody::Json(json!({"inputs": png(1).base64(), "parameters": {"prompt": "make it snow"}}))
        );
        let mut sized = request(
            HF_INFERENCE,
            CONTROLNET,
            Task::ImageToImage,
            vec![png(1)],
            GenerationParams {
                width: Some(512),
                height: Some(512),
                guidance_scale: Some(7.5),
                ..Default::default()
            },
        );
        sized.prompt = String::new();
        let RequestBody::Json(body) = request_body(&sized).unwrap() else {
            panic!("parameters make a JSON body");
        };
        assert_eq!(
            body,
            json!({"inputs": png(1).base64(), "parameters": {"guidance_scale": 7.5, "target_size": {"width": 512, "height": 512}}})
        );
        assert!(!body["inputs"].as_str().unwrap().starts_with("data:"), "bare base64");
    }

    #[test]
    fn text_to_image_keeps_its_body_and_an_image_task_needs_an_image() {
        let text = request(
            HF_INFERENCE,
            "m/x",
            Task::TextToImage,
            Vec::new(),
            GenerationParams::default(),
        );
        assert_eq!(
            request_body(&text).unwrap(),
            RequestBody::Json(json!({"inputs": "make it snow"}))
        );
        let none = request(
            HF_INFERENCE,
            "m/x",
            Task::ImageToImage,
            Vec::new(),
            GenerationParams::default(),
        );
        assert!(matches!(request_body(&none), Err(ProviderError::InvalidRequest { .. })));
        assert!(INFO.check_task(&Task::ImageToImage).is_ok() && INFO.check_task(&Task::ImageToVideo).is_err());
    }
}
