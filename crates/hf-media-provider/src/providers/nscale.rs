//! nscale: images, answered in base64.
//!
//! `POST {base}/v1/images/generations` with `{"prompt", "model": providerId, "response_format": "b64_json",
//! …}`; `width` + `height` (both present) become `size: "WxH"`, and `num_inference_steps` and `cfg_scale`
//! are dropped. The answer carries `data[0].b64_json` (or `data[0].url`).

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::openai_images;
use crate::{
    AuthScheme, DirectApi, GenerationRequest, MediaOutput, MediaProvider, ProviderContext, ProviderError, ProviderInfo,
    Task, provider_parameters, size_as_wxh,
};

/// The provider's Hub name.
pub const NSCALE: &str = "nscale";
/// nscale's own API, for calls with an `NSCALE_API_KEY`.
pub const NSCALE_API_URL: &str = "https://inference.api.nscale.com";
const TASKS: &[Task] = &[Task::TextToImage];
static INFO: ProviderInfo = ProviderInfo::routed_with_api(
    NSCALE,
    TASKS,
    DirectApi::new(NSCALE_API_URL, "NSCALE_API_KEY", AuthScheme::Bearer),
);

/// Parameters nscale does not take: left out, with a warning when the caller set them.
pub const LEFT_OUT: &[&str] = &["num_inference_steps", "cfg_scale"];

/// nscale (`nscale`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Nscale;

/// The request body.
pub fn payload(request: &GenerationRequest) -> Value {
    let mut body: Map<String, Value> = Map::new();
    body.insert("prompt".into(), Value::from(request.prompt.clone()));
    body.insert("model".into(), Value::from(request.mapping.provider_id.clone()));
    body.insert("response_format".into(), Value::from("b64_json"));
    let mut params = provider_parameters(request);
    for name in LEFT_OUT {
        params.remove(*name);
    }
    size_as_wxh(&mut params);
    body.extend(params);
    Value::Object(body)
}

#[async_trait]
impl MediaProvider for Nscale {
    fn info(&self) -> &ProviderInfo {
        &INFO
    }

    async fn generate(&self, ctx: &ProviderContext, request: GenerationRequest) -> Result<MediaOutput, ProviderError> {
        ctx.warn_left_out(&request, LEFT_OUT);
        openai_images::generate(ctx, NSCALE, &payload(&request), &request).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{GenerationParams, ProviderMapping};

    fn request(params: GenerationParams) -> GenerationRequest {
        GenerationRequest {
            mapping: ProviderMapping::new(NSCALE, "stabilityai/sdxl", Task::TextToImage, "org/model"),
            prompt: "a fox".into(),
            params,
            images: Vec::new(),
        }
    }

    #[test]
    fn width_and_height_become_size_and_steps_are_dropped() {
        let params = GenerationParams {
            width: Some(1024),
            height: Some(768),
            num_inference_steps: Some(20),
            seed: Some(3),
            ..Default::default()
        };
        let body = payload(&request(params));
        assert_eq!(
            body,
            json!({"prompt": "a fox", "model": "stabilityai/sdxl", "response_format": "b64_json",
                   "size": "1024x768", "seed": 3})
        );
    }
}
