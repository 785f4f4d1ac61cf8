use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A Hub pipeline task, as named in mapping entries.
///
/// `#[non_exhaustive]`: a task added later is not a breaking change, and every `match` outside this crate
/// has a `_` arm, so the compiler (not grep) points at each place that must handle a new one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
#[non_exhaustive]
pub enum Task {
    /// `text-to-image`.
    TextToImage,
    /// `text-to-video`.
    TextToVideo,
    /// `image-to-image`: an edit of one or more input images.
    ImageToImage,
    /// `image-to-video`: an input image animated.
    ImageToVideo,
    /// `image-text-to-image`: an image from a prompt and an optional input image.
    ImageTextToImage,
    /// `image-text-to-video`: a video from a prompt and an optional input image.
    ImageTextToVideo,
    /// Any other task (`conversational`, `image-to-text`, …), kept by name.
    Other(String),
}

/// Whether a task takes input images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageInput {
    /// It takes none.
    None,
    /// It needs at least one.
    Required,
    /// It takes one if given.
    Optional,
}

/// What a media task makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Output {
    /// An image.
    Image,
    /// A video.
    Video,
}

impl Task {
    /// The six media tasks hf-media knows.
    pub const MEDIA: [Task; 6] = [
        Task::TextToImage,
        Task::TextToVideo,
        Task::ImageToImage,
        Task::ImageToVideo,
        Task::ImageTextToImage,
        Task::ImageTextToVideo,
    ];

    /// The Hub's name for the task.
    pub fn as_str(&self) -> &str {
        match self {
            Task::TextToImage => "text-to-image",
            Task::TextToVideo => "text-to-video",
            Task::ImageToImage => "image-to-image",
            Task::ImageToVideo => "image-to-video",
            Task::ImageTextToImage => "image-text-to-image",
            Task::ImageTextToVideo => "image-text-to-video",
            Task::Other(name) => name,
        }
    }

    /// Whether the task makes media from text alone (image or video).
    pub fn is_text_to_media(&self) -> bool {
        matches!(self, Task::TextToImage | Task::TextToVideo)
    }

    /// What the task makes, or `None` for a task that makes no media.
    pub fn output(&self) -> Option<Output> {
        match self {
            Task::TextToImage | Task::ImageToImage | Task::ImageTextToImage => Some(Output::Image),
            Task::TextToVideo | Task::ImageToVideo | Task::ImageTextToVideo => Some(Output::Video),
            Task::Other(_) => None,
        }
    }

    /// Whether the task makes a video.
    pub fn makes_video(&self) -> bool {
        self.output() == Some(Output::Video)
    }

    /// Whether the task takes input images.
    pub fn image_input(&self) -> ImageInput {
        match self {
            Task::ImageToImage | Task::ImageToVideo => ImageInput::Required,
            Task::ImageTextToImage | Task::ImageTextToVideo => ImageInput::Optional,
            _ => ImageInput::None,
        }
    }

    /// Whether the task can be run with input images.
    pub fn takes_images(&self) -> bool {
        self.image_input() != ImageInput::None
    }

    /// Whether the task can be run from a prompt alone.
    pub fn runs_without_images(&self) -> bool {
        self.output().is_some() && self.image_input() != ImageInput::Required
    }
}

impl From<String> for Task {
    fn from(name: String) -> Self {
        match name.as_str() {
            "text-to-image" => Task::TextToImage,
            "text-to-video" => Task::TextToVideo,
            "image-to-image" => Task::ImageToImage,
            "image-to-video" => Task::ImageToVideo,
            "image-text-to-image" => Task::ImageTextToImage,
            "image-text-to-video" => Task::ImageTextToVideo,
            _ => Task::Other(name),
        }
    }
}

impl std::str::FromStr for Task {
    type Err = std::convert::Infallible;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(Task::from(name.to_owned()))
    }
}

impl From<Task> for String {
    fn from(task: Task) -> Self {
        task.as_str().to_owned()
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The health of a provider's mapping entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum MappingStatus {
    /// Served and healthy: used automatically.
    Live,
    /// Meant for test purposes only: used only when the provider is named explicitly.
    Staging,
    /// The latest automated health check failed: used only when named explicitly.
    Error,
    /// Any other status, kept by name.
    Other(String),
}

impl MappingStatus {
    /// The Hub's name for the status.
    pub fn as_str(&self) -> &str {
        match self {
            MappingStatus::Live => "live",
            MappingStatus::Staging => "staging",
            MappingStatus::Error => "error",
            MappingStatus::Other(s) => s,
        }
    }
}

impl From<String> for MappingStatus {
    fn from(s: String) -> Self {
        match s.as_str() {
            "live" => MappingStatus::Live,
            "staging" => MappingStatus::Staging,
            "error" => MappingStatus::Error,
            _ => MappingStatus::Other(s),
        }
    }
}

impl From<MappingStatus> for String {
    fn from(s: MappingStatus) -> Self {
        s.as_str().to_owned()
    }
}

impl fmt::Display for MappingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One provider serving a model, as the Hub describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderMapping {
    /// The provider's Hub name (`fal-ai`, `hf-inference`, `replicate`, …).
    pub provider: String,
    /// The model's id on the provider side (replicate may carry `owner/name:version`).
    pub provider_id: String,
    /// Whether the entry is live.
    pub status: MappingStatus,
    /// The task this provider serves the model for.
    pub task: Task,
    /// Adapter kind, such as `lora`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// Path of the adapter weights inside the Hub repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_weights_path: Option<String>,
    /// The Hub model id this entry belongs to.
    pub hf_model_id: String,
    /// Every other field the Hub sent (`type`, `isModelAuthor`, …), kept as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ProviderMapping {
    /// A live entry: handy for tests and custom providers.
    pub fn new(
        provider: impl Into<String>,
        provider_id: impl Into<String>,
        task: Task,
        hf_model_id: impl Into<String>,
    ) -> Self {
        ProviderMapping {
            provider: provider.into(),
            provider_id: provider_id.into(),
            status: MappingStatus::Live,
            task,
            adapter: None,
            adapter_weights_path: None,
            hf_model_id: hf_model_id.into(),
            extra: Map::new(),
        }
    }

    /// Whether this entry names a LoRA adapter with its weights file.
    pub fn lora_weights_path(&self) -> Option<&str> {
        match (self.adapter.as_deref(), self.adapter_weights_path.as_deref()) {
            (Some("lora"), Some(path)) if !path.is_empty() => Some(path),
            _ => None,
        }
    }
}

/// Every provider entry of one model, in the Hub's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMapping {
    /// The Hub model id.
    pub model_id: String,
    /// The entries, in the Hub's order (which follows the user's provider preferences).
    pub entries: Vec<ProviderMapping>,
}

impl ModelMapping {
    /// Parses the `inferenceProviderMapping` field of a Hub answer, in either form: an object keyed by
    /// provider name, or a list of entries with a `provider` field. A missing or `null` field is an empty
    /// mapping.
    pub fn from_hub_field(model_id: &str, field: Option<&Value>) -> Result<ModelMapping, String> {
        let mut entries = Vec::new();
        match field {
            None | Some(Value::Null) => {}
            Some(Value::Object(by_provider)) => {
                for (provider, entry) in by_provider {
                    let mut entry = entry
                        .as_object()
                        .cloned()
                        .ok_or_else(|| format!("entry for provider `{provider}` is not an object"))?;
                    entry.insert("provider".into(), Value::String(provider.clone()));
                    entries.push(parse_entry(model_id, entry)?);
                }
            }
            Some(Value::Array(list)) => {
                for (i, entry) in list.iter().enumerate() {
                    let entry = entry
                        .as_object()
                        .cloned()
                        .ok_or_else(|| format!("entry #{i} is not an object"))?;
                    entries.push(parse_entry(model_id, entry)?);
                }
            }
            Some(other) => {
                return Err(format!(
                    "`inferenceProviderMapping` is neither an object nor a list (found {})",
                    json_kind(other)
                ));
            }
        }
        Ok(ModelMapping {
            model_id: model_id.to_owned(),
            entries,
        })
    }

    /// The live entries, in the Hub's order.
    pub fn live(&self) -> impl Iterator<Item = &ProviderMapping> {
        self.entries.iter().filter(|e| e.status == MappingStatus::Live)
    }

    /// The entry of one provider, whatever its status.
    pub fn get(&self, provider: &str) -> Option<&ProviderMapping> {
        self.entries.iter().find(|e| e.provider == provider)
    }
}

/// How many models [`MappingClient::list_models`](crate::MappingClient::list_models) returns by default.
pub const DEFAULT_LIST_LIMIT: usize = 100;
/// How many models are asked for per page by default.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest page the Hub serves (larger page sizes are lowered to this).
pub const MAX_PAGE_SIZE: usize = 500;

/// Which models [`MappingClient::list_models`](crate::MappingClient::list_models) asks the Hub for.
///
/// Build it with [`ModelQuery::new`] (or `Default`) and the setters:
///
/// ```
/// use hf_media_mapping::{ModelQuery, Task};
///
/// let query = ModelQuery::new().task(Task::TextToVideo).provider("fal-ai").limit(20);
/// assert_eq!(query.limit, 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModelQuery {
    /// Only models with this pipeline tag (`pipeline_tag=`); `None` asks for every task.
    pub task: Option<Task>,
    /// Only models served by this provider (`inference_provider=`); `None` means any provider (`all`).
    pub provider: Option<String>,
    /// Only models whose id contains this text (`search=`).
    pub search: Option<String>,
    /// The most models returned in total, over every page (default [`DEFAULT_LIST_LIMIT`]).
    pub limit: usize,
    /// How many models are asked for per page (default [`DEFAULT_PAGE_SIZE`], at most [`MAX_PAGE_SIZE`]).
    pub page_size: usize,
}

impl Default for ModelQuery {
    fn default() -> Self {
        ModelQuery {
            task: None,
            provider: None,
            search: None,
            limit: DEFAULT_LIST_LIMIT,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

impl ModelQuery {
    /// Every model served by any provider, up to [`DEFAULT_LIST_LIMIT`] of them.
    pub fn new() -> Self {
        ModelQuery::default()
    }

    /// Only models with this pipeline tag.
    pub fn task(mut self, task: Task) -> Self {
        self.task = Some(task);
        self
    }

    /// Only models served by this provider (its Hub name, such as `fal-ai`).
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// Only models whose id contains this text.
    pub fn search(mut self, text: impl Into<String>) -> Self {
        self.search = Some(text.into());
        self
    }

    /// The most models returned in total; zero returns none without asking the Hub.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// How many models are asked for per page (kept between 1 and [`MAX_PAGE_SIZE`]).
    pub fn page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size;
        self
    }

    /// The page size actually asked for: [`ModelQuery::page_size`] kept between 1 and [`MAX_PAGE_SIZE`], and
    /// no larger than [`ModelQuery::limit`] (the Hub repeats it in its next-page links).
    pub(crate) fn effective_page_size(&self) -> usize {
        self.page_size.clamp(1, MAX_PAGE_SIZE).min(self.limit.max(1))
    }
}

fn parse_entry(model_id: &str, mut entry: Map<String, Value>) -> Result<ProviderMapping, String> {
    entry.insert("hfModelId".into(), Value::String(model_id.to_owned()));
    let provider = entry.get("provider").and_then(Value::as_str).unwrap_or("?").to_owned();
    serde_json::from_value(Value::Object(entry)).map_err(|e| format!("entry for provider `{provider}`: {e}"))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn object_form_keeps_hub_order_and_extra_fields() {
        let field = json!({
            "replicate": {"status": "live", "providerId": "black-forest-labs/flux-dev", "task": "text-to-image"},
            "fal-ai": {"status": "live", "providerId": "fal-ai/flux/dev", "task": "text-to-image", "isModelAuthor": false},
            "together": {"status": "staging", "providerId": "black-forest-labs/FLUX.1-dev", "task": "text-to-image"}
        });
        let m = ModelMapping::from_hub_field("black-forest-labs/FLUX.1-dev", Some(&field)).unwrap();
        let providers: Vec<_> = m.entries.iter().map(|e| e.provider.as_str()).collect();
        assert_eq!(providers, ["replicate", "fal-ai", "together"]);
        assert_eq!(m.entries[1].extra.get("isModelAuthor"), Some(&json!(false)));
        assert_eq!(m.entries[2].status, MappingStatus::Staging);
        assert!(
            m.entries
                .iter()
                .all(|e| e.hf_model_id == "black-forest-labs/FLUX.1-dev")
        );
        let live: Vec<_> = m.live().map(|e| e.provider.as_str()).collect();
        assert_eq!(live, ["replicate", "fal-ai"]);
    }

    #[test]
    fn list_form_with_lora_adapter() {
        let field = json!([{
            "provider": "fal-ai", "providerId": "fal-ai/flux-lora", "status": "live", "task": "text-to-image",
            "adapter": "lora", "adapterWeightsPath": "my_lora.safetensors", "type": "single-model"
        }, {
            "provider": "novita", "providerId": "wan-t2v", "status": "error", "task": "text-to-video"
        }]);
        let m = ModelMapping::from_hub_field("some/lora", Some(&field)).unwrap();
        assert_eq!(m.entries.len(), 2);
        let fal = m.get("fal-ai").unwrap();
        assert_eq!(fal.lora_weights_path(), Some("my_lora.safetensors"));
        assert_eq!(fal.extra.get("type"), Some(&json!("single-model")));
        let novita = m.get("novita").unwrap();
        assert_eq!(novita.task, Task::TextToVideo);
        assert_eq!(novita.status, MappingStatus::Error);
        assert_eq!(novita.lora_weights_path(), None);
    }

    #[test]
    fn missing_field_is_an_empty_mapping() {
        assert!(ModelMapping::from_hub_field("a/b", None).unwrap().entries.is_empty());
        assert!(
            ModelMapping::from_hub_field("a/b", Some(&Value::Null))
                .unwrap()
                .entries
                .is_empty()
        );
    }

    #[test]
    fn malformed_fields_say_what_is_wrong() {
        let err = ModelMapping::from_hub_field("a/b", Some(&json!("x"))).unwrap_err();
        assert!(err.contains("a string"), "{err}");
        let err = ModelMapping::from_hub_field("a/b", Some(&json!({"fal-ai": 3}))).unwrap_err();
        assert!(err.contains("fal-ai"), "{err}");
        let err = ModelMapping::from_hub_field("a/b", Some(&json!([{"provider": "x", "status": "live"}]))).unwrap_err();
        assert!(err.contains("providerId") || err.contains("missing"), "{err}");
    }

    #[test]
    fn unknown_tasks_and_statuses_are_kept_by_name() {
        assert_eq!(
            Task::from("conversational".to_owned()),
            Task::Other("conversational".into())
        );
        assert!(!Task::from("image-to-image".to_owned()).is_text_to_media());
        assert!(Task::TextToVideo.is_text_to_media());
        for task in Task::MEDIA {
            assert_eq!(Task::from(task.as_str().to_owned()), task, "round trip of {task}");
            assert!(task.output().is_some());
        }
        assert_eq!(Task::ImageToVideo.image_input(), ImageInput::Required);
        assert_eq!(Task::ImageTextToImage.image_input(), ImageInput::Optional);
        assert!(Task::ImageTextToVideo.runs_without_images() && !Task::ImageToImage.runs_without_images());
        assert!(Task::ImageToVideo.makes_video() && !Task::ImageToImage.makes_video());
        assert_eq!(Task::Other("image-to-text".into()).output(), None);
        assert_eq!(MappingStatus::from("paused".to_owned()).as_str(), "paused");
        assert_eq!(serde_json::to_value(Task::TextToImage).unwrap(), json!("text-to-image"));
    }
}
