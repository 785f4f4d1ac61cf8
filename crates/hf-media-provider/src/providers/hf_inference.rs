//! hf-inference: Hugging Face's own serverless inference, always through the router.
//!
//! `POST {base}/models/{providerId}` with `{"inputs": prompt, "parameters": {…}}`; the answer is the raw
//! image bytes (some deployments answer JSON with `data[0].b64_json` or `output[0]`). A `503` whose body
//! carries `estimated_time` means the model is loading: the call is repeated after that time (reported as
//! a `loading` status), until the polling deadline.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::http::{self, body_stream};
use crate::{ProviderInfo, 
    GenerationRequest, MediaBody, MediaOutput, MediaProvider, ProviderContext, ProviderError, ProviderStatus, Task,
    provider_parameters,
};

/// The provider's Hub name.
pub const HF_INFERENCE: &str = "hf-inference";
const TASKS: &[Task] = &[Task::TextToImage];
static INFO: ProviderInfo = ProviderInfo::routed(HF_INFERENCE, TASKS);

/// Hugging Face's serverless inference (`hf-inference`).
#[derive(Debug, Clone, Copy, Default)]
pub struct HfInference;

/// The route of a model.
pub fn route(request: &GenerationRequest) -> String {
    format!("/models/{}", request.mapping.provider_id)
}

/// The request body: the prompt as `inputs`, every parameter inside `parameters`.
pub fn payload(request: &GenerationRequest) -> Value {
    let parameters: Map<String, Value> = provider_parameters(request);
    let mut body = json!({ "inputs": request.prompt });
    if !parameters.is_empty() {
        body["parameters"] = Value::Object(parameters);
    }
    body
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
        None => Err(ProviderError::InvalidResponse {
            provider: HF_INFERENCE.into(),
            reason: "the JSON answer has no image (`data[0].b64_json`, `data[0].url` or `output[0]`)".into(),
        }),
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
        .then(|| Duration::from_secs_f64(seconds.clamp(0.1, 60.0)))
}

#[async_trait]
impl MediaProvider for HfInference {
    fn info(&self) -> &ProviderInfo {
        &INFO
    }

    async fn generate(&self, ctx: &ProviderContext, request: GenerationRequest) -> Result<MediaOutput, ProviderError> {
        let url = ctx.url(&route(&request))?;
        let body = payload(&request);
        let started = Instant::now();
        let response = loop {
            let response =
                http::send_unchecked(ctx, ctx.request(reqwest::Method::POST, url.clone()).json(&body)).await?;
            if response.status().is_success() {
                break response;
            }
            let is_loading = response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE;
            let (error, error_body) = http::http_error(HF_INFERENCE, response).await;
            let Some(estimated) = is_loading.then(|| loading_estimate(&error_body)).flatten() else {
                return Err(error);
            };
            let remaining = ctx.poll().deadline.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                return Err(ProviderError::Timeout {
                    provider: HF_INFERENCE.into(),
                    what: "waiting for the model to load".into(),
                    after: started.elapsed(),
                });
            }
            ctx.report(ProviderStatus::new("loading"));
            tokio::time::sleep(estimated.min(remaining)).await;
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
