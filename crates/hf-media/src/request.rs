use hf_media_mapping::Task;
use hf_media_prompt::{ChatMessage, GenerationParams};

use crate::{Error, MediaInput};

/// The model used when a request names none.
pub const DEFAULT_MODEL: &str = "black-forest-labs/FLUX.1-schnell";
/// The most generations one request may run.
pub const MAX_GENERATIONS: usize = 4096;

/// Short names for popular models.
pub const MODEL_ALIASES: &[(&str, &str)] = &[
    ("flux", "black-forest-labs/FLUX.1-dev"),
    ("flux-dev", "black-forest-labs/FLUX.1-dev"),
    ("flux-schnell", "black-forest-labs/FLUX.1-schnell"),
    ("sdxl-turbo", "stabilityai/sdxl-turbo"),
    ("sd-3.5-large", "stabilityai/stable-diffusion-3.5-large"),
];

/// A parsed `-m` value: a Hub model id (alias resolved) and an optional provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// The Hub model id.
    pub model: String,
    /// The provider named with `model:provider`, if any.
    pub provider: Option<String>,
}

impl ModelSpec {
    /// Parses `org/name`, `org/name:provider`, an alias, or `alias:provider`.
    pub fn parse(spec: &str) -> Result<ModelSpec, Error> {
        let spec = spec.trim();
        let (model, provider) = match spec.split_once(':') {
            Some((model, provider)) => (model.trim(), Some(provider.trim())),
            None => (spec, None),
        };
        if let Some(provider) = provider
            && (provider.is_empty()
                || !provider
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(Error::InvalidRequest(format!(
                "`{spec}`: the provider after `:` must be a provider name such as `fal-ai` or `replicate`"
            )));
        }
        let model = MODEL_ALIASES
            .iter()
            .find(|(alias, _)| alias.eq_ignore_ascii_case(model))
            .map_or(model, |(_, id)| id);
        hf_media_mapping::validate_model_id(model)?;
        Ok(ModelSpec {
            model: model.to_owned(),
            provider: provider.map(str::to_owned),
        })
    }
}

/// What to generate. Its JSON form is the request body of servers and batch lines:
/// `{"model", "prompt", "messages", "params", "n", "concurrency", "images", "task"}`, every field optional
/// but a prompt or messages; `images` are strings (an `http(s)` URL, a `data:` URL, or a path, which a
/// server taking requests from others refuses with
/// [`MediaGeneratorBuilder::allow_local_inputs`](crate::MediaGeneratorBuilder::allow_local_inputs)).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerateRequest {
    /// `org/name`, `org/name:provider` or an alias (default [`DEFAULT_MODEL`]).
    pub model: String,
    /// The prompt; wins over `messages`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// A chat conversation; its trailing user messages become the prompt when `prompt` is unset.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<ChatMessage>,
    /// Provider-neutral parameters.
    pub params: GenerationParams,
    /// How many generations to make (1 to [`MAX_GENERATIONS`]).
    pub n: usize,
    /// How many of them run at once (default: all `n`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Input images to edit or animate (several for multi-image edits), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<MediaInput>,
    /// The task to run: picks between a model's text and image tasks, or image-to-video over
    /// image-to-image (default: decided from the inputs and the model's providers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
}

impl Default for GenerateRequest {
    fn default() -> Self {
        GenerateRequest {
            model: DEFAULT_MODEL.to_owned(),
            prompt: None,
            messages: Vec::new(),
            params: GenerationParams::default(),
            n: 1,
            concurrency: None,
            images: Vec::new(),
            task: None,
        }
    }
}

impl GenerateRequest {
    /// A request for one media of `prompt` with the default model.
    pub fn new(prompt: impl Into<String>) -> Self {
        GenerateRequest {
            prompt: Some(prompt.into()),
            ..GenerateRequest::default()
        }
    }

    /// A request whose prompt comes from a chat conversation.
    pub fn from_messages(messages: Vec<ChatMessage>) -> Self {
        GenerateRequest {
            messages,
            ..GenerateRequest::default()
        }
    }

    /// Sets the model (`org/name`, `org/name:provider` or an alias).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// Sets how many generations run in parallel.
    pub fn n(mut self, n: usize) -> Self {
        self.n = n;
        self
    }

    /// Sets how many generations run at once (the rest wait their turn).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = Some(concurrency);
        self
    }

    /// Sets the parameters.
    pub fn params(mut self, params: GenerationParams) -> Self {
        self.params = params;
        self
    }

    /// Adds an input image (call it again for a multi-image edit).
    pub fn image(mut self, image: MediaInput) -> Self {
        self.images.push(image);
        self
    }

    /// Sets the task to run.
    pub fn task(mut self, task: Task) -> Self {
        self.task = Some(task);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(spec: &str, model: &str, provider: Option<&str>) {
        assert_eq!(
            ModelSpec::parse(spec).unwrap(),
            ModelSpec {
                model: model.into(),
                provider: provider.map(Into::into)
            }
        );
    }

    #[test]
    fn specs_and_aliases() {
        check("black-forest-labs/FLUX.1-dev", "black-forest-labs/FLUX.1-dev", None);
        check(
            "black-forest-labs/FLUX.1-dev:fal-ai",
            "black-forest-labs/FLUX.1-dev",
            Some("fal-ai"),
        );
        check("flux", "black-forest-labs/FLUX.1-dev", None);
        check(
            "FLUX-Schnell:replicate",
            "black-forest-labs/FLUX.1-schnell",
            Some("replicate"),
        );
        check("sdxl-turbo", "stabilityai/sdxl-turbo", None);
        check("sd-3.5-large", "stabilityai/stable-diffusion-3.5-large", None);
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let err = ModelSpec::parse("org/model:").unwrap_err().to_string();
        assert!(err.contains("provider name"), "{err}");
        assert!(ModelSpec::parse("org/model:fal ai").is_err());
        let err = ModelSpec::parse("not a model").unwrap_err();
        assert!(err.is_usage(), "{err}");
    }
}
