//! together: images, answered in base64.
//!
//! `POST {base}/v1/images/generations` with `{"prompt", "model": providerId, "response_format": "base64",
//! …}`; `num_inference_steps` is renamed `steps`. The answer carries `data[0].b64_json` (or `data[0].url`).

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::http;
use crate::{
    GenerationRequest, MediaBody, MediaOutput, MediaProvider, ProviderContext, ProviderError, Task, provider_parameters,
};

/// The provider's Hub name.
pub const TOGETHER: &str = "together";
/// Together's own API, for calls with a `TOGETHER_API_KEY`.
pub const TOGETHER_API_URL: &str = "https://api.together.xyz";
const TASKS: &[Task] = &[Task::TextToImage];

/// Together AI (`together`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Together;

/// The image route.
pub const IMAGE_ROUTE: &str = "/v1/images/generations";

/// The request body.
pub fn payload(request: &GenerationRequest) -> Value {
    let mut body: Map<String, Value> = Map::new();
    body.insert("prompt".into(), Value::from(request.prompt.clone()));
    body.insert("model".into(), Value::from(request.mapping.provider_id.clone()));
    body.insert("response_format".into(), Value::from("base64"));
    let mut params = provider_parameters(request);
    if let Some(steps) = params.remove("num_inference_steps") {
        params.insert("steps".into(), steps);
    }
    body.extend(params);
    Value::Object(body)
}

/// Reads an image answer.
pub fn parse_image(answer: &Value) -> Result<MediaOutput, ProviderError> {
    let first = answer.pointer("/data/0");
    let body = if let Some(b64) = first.and_then(|d| d.get("b64_json")).and_then(Value::as_str) {
        MediaBody::Bytes(http::decode_base64(TOGETHER, b64)?)
    } else if let Some(url) = first.and_then(|d| d.get("url")).and_then(Value::as_str) {
        MediaBody::Url(http::media_url(TOGETHER, url)?)
    } else {
        return Err(ProviderError::InvalidResponse {
            provider: TOGETHER.into(),
            reason: "the answer has no `data[0].b64_json` or `data[0].url`".into(),
        });
    };
    Ok(MediaOutput::new(body).with_provider_response(answer))
}

#[async_trait]
impl MediaProvider for Together {
    fn name(&self) -> &str {
        TOGETHER
    }

    fn tasks(&self) -> &[Task] {
        TASKS
    }

    fn direct_base_url(&self) -> Option<&str> {
        Some(TOGETHER_API_URL)
    }

    async fn generate(&self, ctx: &ProviderContext, request: GenerationRequest) -> Result<MediaOutput, ProviderError> {
        super::ensure_task(TOGETHER, TASKS, &request)?;
        let url = ctx.url(IMAGE_ROUTE)?;
        let answer = http::send_json(ctx, ctx.request(reqwest::Method::POST, url).json(&payload(&request))).await?;
        let mut output = parse_image(&answer)?;
        output.seed = output.seed.or(request.params.seed);
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn base64_and_url_answers() {
        let out = parse_image(&json!({"data": [{"b64_json": "aGVsbG8=", "index": 0}]})).unwrap();
        assert!(matches!(out.body, MediaBody::Bytes(ref b) if b.as_ref() == b"hello"));
        assert_eq!(out.provider_response.unwrap()["data"][0]["index"], json!(0));
        let out = parse_image(&json!({"data": [{"url": "https://api.together.ai/x.jpg"}]})).unwrap();
        assert!(matches!(out.body, MediaBody::Url(_)));
        assert!(matches!(
            parse_image(&json!({"data": []})),
            Err(ProviderError::InvalidResponse { .. })
        ));
        assert!(matches!(
            parse_image(&json!({"data": [{"b64_json": "%%%"}]})),
            Err(ProviderError::InvalidResponse { .. })
        ));
    }
}
