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
//! Image-to-image goes to `POST {base}/v1/images/edits` as a multipart form: the input images as file
//! parts named `image` (one) or `image[]` (several, each a part), then text parts `prompt`, `model`, `n`
//! (`1`), `response_format`, `size` (`WxH`, from width + height) and every other parameter, each value a
//! string (a nested object as `key[field]`, a list as repeated `key[]`). The answer is read as above.
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
use reqwest::multipart::{Form, Part};
use serde_json::{Map, Value};
use url::Url;

use crate::openai_images;
use crate::{
    AuthScheme, DirectApi, GenerationRequest, MediaOutput, MediaProvider, ProviderContext, ProviderError, ProviderInfo,
    Task, provider_parameters, size_as_wxh,
};

const TASKS: &[Task] = &[Task::TextToImage, Task::ImageToImage];

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

/// The multipart name of the input images: `image` for one file, `image[]` for each of several.
pub fn edit_image_field(count: usize) -> &'static str {
    if count > 1 { "image[]" } else { "image" }
}

/// The text parts of an edit, in order: `prompt`, `model`, `n`, `response_format`, then the parameters
/// (`width` + `height` as `size: "WxH"`), every value a string: a nested object as `key[field]`, a list as
/// repeated `key[]`, `null` left out.
pub fn edit_fields(request: &GenerationRequest, response_format: ResponseFormat) -> Vec<(String, String)> {
    let mut fields = vec![
        ("prompt".to_owned(), request.prompt.clone()),
        ("model".to_owned(), request.mapping.provider_id.clone()),
        ("n".to_owned(), "1".to_owned()),
        ("response_format".to_owned(), response_format.as_str().to_owned()),
    ];
    let params = provider_parameters(request);
    let mut sized = params.clone();
    size_as_wxh(&mut sized);
    let size = sized.get("size").filter(|_| !params.contains_key("size"));
    for (key, value) in &params {
        match (key.as_str(), size) {
            // `size` takes the place of `width`, in the caller's order.
            ("width", Some(size)) => push_field(&mut fields, "size".to_owned(), size),
            ("height", Some(_)) => {}
            _ => push_field(&mut fields, key.clone(), value),
        }
    }
    fields
}

fn push_field(fields: &mut Vec<(String, String)>, key: String, value: &Value) {
    match value {
        Value::Null => {}
        Value::String(text) => fields.push((key, text.clone())),
        Value::Bool(flag) => fields.push((key, flag.to_string())),
        Value::Number(number) => fields.push((key, number.to_string())),
        Value::Array(items) => {
            for item in items {
                push_field(fields, format!("{key}[]"), item);
            }
        }
        Value::Object(map) => {
            for (name, item) in map {
                push_field(fields, format!("{key}[{name}]"), item);
            }
        }
    }
}

/// The multipart form of an edit for `provider`: the text parts ([`edit_fields`]), then one file part per
/// input image ([`edit_image_field`], the image's file name and type).
pub fn edit_form(
    provider: &str,
    request: &GenerationRequest,
    response_format: ResponseFormat,
) -> Result<Form, ProviderError> {
    request.first_image(provider)?;
    let mut form = Form::new();
    for (key, value) in edit_fields(request, response_format) {
        form = form.text(key, value);
    }
    let field = edit_image_field(request.images.len());
    for image in &request.images {
        let part = Part::bytes(image.bytes().to_vec())
            .file_name(image.file_name())
            .mime_str(image.mime())
            .map_err(|e| {
                ProviderError::invalid_request(
                    provider,
                    format!("the image type {:?} is not a MIME type: {e}", image.mime()),
                )
            })?;
        form = form.part(field, part);
    }
    Ok(form)
}

#[async_trait]
impl MediaProvider for OpenAiCompatible {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn generate(&self, ctx: &ProviderContext, request: GenerationRequest) -> Result<MediaOutput, ProviderError> {
        if request.mapping.task.takes_images() {
            let form = edit_form(self.name(), &request, self.response_format)?;
            return openai_images::edit(ctx, self.name(), form, &request).await;
        }
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
        assert_eq!(provider.tasks(), [Task::TextToImage, Task::ImageToImage]);
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

    #[test]
    fn edits_name_one_image_image_and_several_image_brackets() {
        assert_eq!(edit_image_field(1), "image");
        assert_eq!(edit_image_field(2), "image[]");
        assert_eq!(edit_image_field(16), "image[]");
    }

    #[test]
    fn edit_fields_are_strings_with_size_and_nested_keys() {
        use crate::providers::test_support::{png, request as with_images};
        let mut params = GenerationParams {
            width: Some(1024),
            height: Some(1536),
            seed: Some(3),
            guidance_scale: Some(2.5),
            ..Default::default()
        };
        params.extra.insert("quality".into(), json!("high"));
        params.extra.insert("stream".into(), json!(false));
        params
            .extra
            .insert("svg".into(), json!({"model": "x", "tags": ["a", "b"], "none": null}));
        let req = with_images("my-images", "gpt-image-1", Task::ImageToImage, vec![png(1)], params);
        let fields = edit_fields(&req, ResponseFormat::B64Json);
        let shown: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            shown,
            [
                ("prompt", "make it snow"),
                ("model", "gpt-image-1"),
                ("n", "1"),
                ("response_format", "b64_json"),
                ("size", "1024x1536"),
                ("guidance_scale", "2.5"),
                ("seed", "3"),
                ("quality", "high"),
                ("stream", "false"),
                ("svg[model]", "x"),
                ("svg[tags][]", "a"),
                ("svg[tags][]", "b"),
            ]
        );
        assert!(edit_form("my-images", &req, ResponseFormat::Url).is_ok());
        let none = with_images(
            "my-images",
            "gpt-image-1",
            Task::ImageToImage,
            Vec::new(),
            GenerationParams::default(),
        );
        assert!(matches!(
            edit_form("my-images", &none, ResponseFormat::Url),
            Err(ProviderError::InvalidRequest { .. })
        ));
    }
}
