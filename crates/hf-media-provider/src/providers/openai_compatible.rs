//! openai-compatible: any server that speaks the OpenAI images protocol, under a name of your choosing.
//!
//! This is how a provider the Hub does not list (nebius- or hyperbolic-style, a self-hosted server) is
//! added: it is never registered by default.
//!
//! `POST {base}/v1/images/generations` with `{"prompt", "model": providerId, "response_format": "b64_json" |
//! "url", "n": 1, …}` and `Authorization: Bearer <its own key>`; `width` + `height` (both present) become
//! `size: "WxH"`, every other parameter (`negative_prompt`, `num_inference_steps`, `seed`, …) passes
//! unchanged. The answer carries `data[0].b64_json` (decoded) or `data[0].url`.
//!
//! The server is always called directly, at its own base URL and with its own key
//! ([`ProviderInfo::direct_only`]): the facade hands it a direct [`ProviderContext`] like any provider
//! called with its own key, never the router's base, the HF token or the router's extra headers
//! (`X-HF-Bill-To`, …).
//!
//! The requests still need a mapping entry whose provider is this name (the Hub has none for it): the
//! entry's `providerId` is sent as `model`.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use hf_media_provider::ProviderRegistry;
//! use hf_media_provider::providers::OpenAiCompatible;
//! use url::Url;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut registry = ProviderRegistry::with_defaults();
//! registry.register(Arc::new(
//!     OpenAiCompatible::new("my-images", Url::parse("https://images.example.com")?),
//! ));
//! assert!(registry.get("my-images").is_some());
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;
use std::fmt;

use async_trait::async_trait;
use serde_json::{Map, Value};
use url::Url;

use crate::openai_images;
use crate::{
    AuthScheme, DirectApi, GenerationRequest, MediaOutput, MediaProvider, ProviderContext, ProviderError, ProviderInfo,
    Task, provider_parameters, size_as_wxh,
};

const TASKS: &[Task] = &[Task::TextToImage];

/// How the server is asked to send the image (`response_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ResponseFormat {
    /// `b64_json`: the image comes back in the answer, base64-encoded.
    #[default]
    B64Json,
    /// `url`: the answer carries a URL to download the image from.
    Url,
}

impl ResponseFormat {
    /// The wire value: `b64_json` or `url`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseFormat::B64Json => "b64_json",
            ResponseFormat::Url => "url",
        }
    }
}

impl fmt::Display for ResponseFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A server speaking the OpenAI images protocol, registered under `name`.
///
/// It holds no key: like every provider's own key, the server's key is given to the generator
/// (`MediaGeneratorBuilder::provider_key(name, key)`), which builds its context.
#[derive(Debug, Clone)]
pub struct OpenAiCompatible {
    info: ProviderInfo,
    base_url: Url,
    response_format: ResponseFormat,
}

impl OpenAiCompatible {
    /// A provider called `name` (its registry key and mapping provider name) at `base_url` (routes are
    /// appended to it: `{base_url}/v1/images/generations`), asking for `b64_json`.
    pub fn new(name: impl Into<String>, base_url: Url) -> Self {
        let info = ProviderInfo {
            name: Cow::Owned(name.into()),
            tasks: Cow::Borrowed(TASKS),
            direct: Some(DirectApi {
                base_url: Cow::Owned(base_url.as_str().trim_end_matches('/').to_owned()),
                key_env: None,
                auth: AuthScheme::Bearer,
            }),
            needs_hub_mapping: false,
            direct_only: true,
        };
        OpenAiCompatible {
            info,
            base_url,
            response_format: ResponseFormat::default(),
        }
    }

    /// Sets the `response_format` asked for.
    pub fn with_response_format(mut self, response_format: ResponseFormat) -> Self {
        self.response_format = response_format;
        self
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// The `response_format` asked for.
    pub fn response_format(&self) -> ResponseFormat {
        self.response_format
    }

    /// The request body.
    pub(crate) fn payload(&self, request: &GenerationRequest) -> Value {
        payload(request, self.response_format)
    }
}

/// The request body for a `response_format`.
pub fn payload(request: &GenerationRequest, response_format: ResponseFormat) -> Value {
    let mut body: Map<String, Value> = Map::new();
    body.insert("prompt".into(), Value::from(request.prompt.clone()));
    body.insert("model".into(), Value::from(request.mapping.provider_id.clone()));
    body.insert("response_format".into(), Value::from(response_format.as_str()));
    body.insert("n".into(), Value::from(1));
    let mut params = provider_parameters(request);
    size_as_wxh(&mut params);
    body.extend(params);
    Value::Object(body)
}

#[async_trait]
impl MediaProvider for OpenAiCompatible {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn generate(&self, ctx: &ProviderContext, request: GenerationRequest) -> Result<MediaOutput, ProviderError> {
        openai_images::generate(ctx, self.name(), &self.payload(&request), &request).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{GenerationParams, MediaBody, ProviderMapping};

    fn request(params: GenerationParams) -> GenerationRequest {
        GenerationRequest {
            mapping: ProviderMapping::new("my-images", "flux-dev", Task::TextToImage, "org/model"),
            prompt: "a fox".into(),
            params,
            images: Vec::new(),
        }
    }

    #[test]
    fn width_and_height_become_size_and_the_rest_is_kept() {
        let params = GenerationParams {
            width: Some(1024),
            height: Some(768),
            num_inference_steps: Some(20),
            negative_prompt: Some("blurry".into()),
            seed: Some(3),
            ..Default::default()
        };
        assert_eq!(
            payload(&request(params.clone()), ResponseFormat::B64Json),
            json!({"prompt": "a fox", "model": "flux-dev", "response_format": "b64_json", "n": 1,
                   "negative_prompt": "blurry", "num_inference_steps": 20, "seed": 3, "size": "1024x768"})
        );
        let provider = OpenAiCompatible::new("my-images", Url::parse("https://images.example.com").unwrap())
            .with_response_format(ResponseFormat::Url);
        assert_eq!(provider.payload(&request(params))["response_format"], json!("url"));
        let body = payload(&request(GenerationParams::default()), ResponseFormat::B64Json);
        assert!(body.get("size").is_none(), "{body}");
    }

    #[test]
    fn its_facts_say_it_is_called_directly_at_its_own_base() {
        let provider = OpenAiCompatible::new("my-images", Url::parse("https://images.example.com/api/").unwrap());
        assert_eq!(provider.name(), "my-images");
        assert_eq!(provider.tasks(), [Task::TextToImage]);
        let info = provider.info();
        assert!(info.direct_only && !info.needs_hub_mapping);
        let direct = info.direct.as_ref().unwrap();
        assert_eq!(direct.base_url, "https://images.example.com/api");
        assert_eq!((direct.key_env, direct.auth), (None, AuthScheme::Bearer));
    }

    #[test]
    fn base64_and_url_answers() {
        let out = openai_images::images_api_answer("my-images", &json!({"data": [{"b64_json": "aGVsbG8="}]})).unwrap();
        assert!(matches!(out.body, MediaBody::Bytes(ref b) if b.as_ref() == b"hello"));
        let out =
            openai_images::images_api_answer("my-images", &json!({"data": [{"url": "https://cdn.example/x.png"}]}))
                .unwrap();
        assert!(matches!(out.body, MediaBody::Url(_)));
        assert!(matches!(
            openai_images::images_api_answer("my-images", &json!({"data": []})),
            Err(ProviderError::InvalidResponse { ref provider, .. }) if provider == "my-images"
        ));
    }
}
