//! One line's fields to a [`GenerateRequest`]: the defaults overridden field by field, every check that
//! needs no I/O, and the canonical JSON that ids and the fingerprint hash.

use hf_media::mapping::ImageInput;
use hf_media::prompt::{MessageContent, chat_images, format_prompt};
use hf_media::{
    AspectRatio, ChatMessage, GenerateRequest, GenerationParams, MAX_GENERATIONS, MediaInput, ModelSpec, PromptError,
    Task,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::BatchError;

/// The longest `custom_id` taken, in characters.
pub const MAX_CUSTOM_ID_CHARS: usize = 256;

/// One item of a batch: what to generate, and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchItem {
    /// The line's `custom_id`, or a stable id made from the line number and the item
    /// (`line-000042-<12 hex digits>`).
    pub id: String,
    /// The line number (from 1; for CSV the line where the row starts).
    pub line: usize,
    /// The request, the defaults overridden by the line.
    pub request: GenerateRequest,
    /// What the line gave that is accepted but not used (OpenAI's `response_format`, `quality`, `style`,
    /// `user`, …), one note each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
}

/// The OpenAI endpoint a batch line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Generations,
    Edits,
    Videos,
}

impl Endpoint {
    pub(crate) const ACCEPTED: &'static str = "/v1/images/generations, /v1/images/edits or /v1/videos";

    pub(crate) fn parse(url: &str) -> Option<Endpoint> {
        match url.trim().trim_end_matches('/') {
            "/v1/images/generations" => Some(Endpoint::Generations),
            "/v1/images/edits" => Some(Endpoint::Edits),
            "/v1/videos" => Some(Endpoint::Videos),
            _ => None,
        }
    }

    /// The task the endpoint asks for, given whether the line has input images.
    fn task(self, with_images: bool) -> Task {
        match (self, with_images) {
            (Endpoint::Generations, false) => Task::TextToImage,
            (Endpoint::Generations | Endpoint::Edits, _) => Task::ImageToImage,
            (Endpoint::Videos, false) => Task::TextToVideo,
            (Endpoint::Videos, true) => Task::ImageToVideo,
        }
    }
}

/// A line taken apart, before the defaults apply: flat fields (request fields and parameters side by
/// side, the prompt under `prompt`), plus what the line's form said.
#[derive(Debug, Default)]
pub(crate) struct Raw {
    pub custom_id: Option<String>,
    pub fields: Map<String, Value>,
    pub endpoint: Option<Endpoint>,
    /// OpenAI lines leave OpenAI-only body keys out rather than passing them on.
    pub openai: bool,
    pub ignored: Vec<String>,
}

/// OpenAI body keys that mean nothing here: accepted and left out.
const OPENAI_IGNORED: [&str; 4] = ["response_format", "quality", "style", "user"];

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Whole,
    Seed,
    Number,
    Ratio,
}

/// The typed parameters of [`GenerationParams`] (all but `extra`), by their canonical names.
const PARAMS: [(&str, Kind); 11] = [
    ("negative_prompt", Kind::Text),
    ("width", Kind::Whole),
    ("height", Kind::Whole),
    ("aspect_ratio", Kind::Ratio),
    ("num_inference_steps", Kind::Whole),
    ("guidance_scale", Kind::Number),
    ("strength", Kind::Number),
    ("seed", Kind::Seed),
    ("scheduler", Kind::Text),
    ("num_frames", Kind::Whole),
    ("resolution", Kind::Text),
];

/// Fields whose CSV cells stay text even when they look like numbers.
pub(crate) const TEXT_FIELDS: [&str; 10] = [
    "prompt",
    "custom_id",
    "model",
    "task",
    "size",
    "image",
    "images",
    "negative_prompt",
    "scheduler",
    "resolution",
];

/// Fields whose CSV cells hold JSON.
pub(crate) const JSON_FIELDS: [&str; 3] = ["messages", "params", "extra"];

fn kind_of(key: &str) -> Option<Kind> {
    PARAMS.iter().find(|(name, _)| *name == key).map(|(_, kind)| *kind)
}

/// What a JSON value is, for messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Checks a typed parameter and sets it.
fn assign(params: &mut GenerationParams, name: &str, kind: Kind, value: Value) -> Result<(), BatchError> {
    let bad = |expected: &str, value: &Value| {
        BatchError::parameter(name, format!("must be {expected}, got {}", shown(value)))
    };
    match kind {
        Kind::Text => {
            let Value::String(text) = value else {
                return Err(bad("a string", &value));
            };
            match name {
                "negative_prompt" => params.negative_prompt = Some(text),
                "scheduler" => params.scheduler = Some(text),
                _ => params.resolution = Some(text),
            }
        }
        Kind::Whole => {
            let whole = value
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| bad("a whole number from 0 to 4294967295", &value))?;
            let slot = match name {
                "width" => &mut params.width,
                "height" => &mut params.height,
                "num_inference_steps" => &mut params.num_inference_steps,
                _ => &mut params.num_frames,
            };
            *slot = Some(whole);
        }
        Kind::Seed => {
            params.seed = Some(
                value
                    .as_u64()
                    .ok_or_else(|| bad("a whole number of 0 or more", &value))?,
            );
        }
        Kind::Number => {
            let number = value.as_f64().ok_or_else(|| bad("a number", &value))?;
            match name {
                "guidance_scale" => params.guidance_scale = Some(number),
                _ => params.strength = Some(number),
            }
        }
        Kind::Ratio => {
            let text = value.as_str().ok_or_else(|| bad("a string such as \"16:9\"", &value))?;
            let ratio = text
                .parse::<AspectRatio>()
                .map_err(|e| BatchError::parameter(name, e.to_string()))?;
            params.aspect_ratio = Some(ratio);
        }
    }
    Ok(())
}

/// A value as a message quotes it: short strings and numbers as they are, the rest by type.
fn shown(value: &Value) -> String {
    match value {
        Value::String(text) if text.chars().count() <= 40 => format!("{text:?}"),
        Value::Number(number) => number.to_string(),
        Value::Bool(b) => b.to_string(),
        other => json_type(other).to_owned(),
    }
}

/// Checks a `custom_id`: a string (a JSON integer is taken as its digits), not blank, no control
/// characters, at most [`MAX_CUSTOM_ID_CHARS`].
pub(crate) fn custom_id(value: &Value) -> Result<Option<String>, BatchError> {
    let id = match value {
        Value::Null => return Ok(None),
        Value::String(id) => id.clone(),
        Value::Number(number) if number.is_u64() || number.is_i64() => number.to_string(),
        other => {
            return Err(BatchError::field(
                "custom_id",
                format!("must be a string, got {}", json_type(other)),
            ));
        }
    };
    if id.trim().is_empty() {
        return Err(BatchError::field("custom_id", "must not be empty"));
    }
    if id.chars().any(char::is_control) {
        return Err(BatchError::field("custom_id", "must not hold control characters"));
    }
    if id.chars().count() > MAX_CUSTOM_ID_CHARS {
        return Err(BatchError::field(
            "custom_id",
            format!("must be at most {MAX_CUSTOM_ID_CHARS} characters"),
        ));
    }
    Ok(Some(id))
}

fn text(field: &str, value: Value) -> Result<String, BatchError> {
    match value {
        Value::String(text) => Ok(text),
        other => Err(BatchError::field(
            field,
            format!("must be a string, got {}", json_type(&other)),
        )),
    }
}

fn count(field: &str, value: &Value, max: usize) -> Result<usize, BatchError> {
    value
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            BatchError::field(
                field,
                format!("must be a whole number from 1 to {max}, got {}", shown(value)),
            )
        })
}

fn image(field: &str, text: String) -> Result<MediaInput, BatchError> {
    if text.trim().is_empty() {
        return Err(BatchError::field(field, "an image must not be empty"));
    }
    let input = MediaInput::parse(&text);
    if let MediaInput::Url(url) = &input {
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(BatchError::field(
                field,
                format!("`{url}`: only http(s) and data: URLs are taken (or a file path)"),
            ));
        }
    }
    Ok(input)
}

fn images(field: &str, value: Value) -> Result<Vec<MediaInput>, BatchError> {
    match value {
        Value::String(one) => Ok(vec![image(field, one)?]),
        Value::Array(list) => list
            .into_iter()
            .map(|value| match value {
                Value::String(one) => image(field, one),
                other => Err(BatchError::field(
                    field,
                    format!("must list strings (paths or URLs), got {}", json_type(&other)),
                )),
            })
            .collect(),
        other => Err(BatchError::field(
            field,
            format!("must be a path or URL, or a list of them, got {}", json_type(&other)),
        )),
    }
}

/// `WxH` (OpenAI style; `x`, `X` or `×`) to width and height; `auto` to none.
fn size(value: Value) -> Result<Option<(u32, u32)>, BatchError> {
    let text =
        text("size", value).map_err(|_| BatchError::parameter("size", "must be a string such as \"1024x768\""))?;
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    let bad = || {
        BatchError::parameter(
            "size",
            format!("expected WIDTHxHEIGHT such as \"1024x768\" (or \"auto\"), got {text:?}"),
        )
    };
    let (w, h) = trimmed.split_once(['x', 'X', '×']).ok_or_else(bad)?;
    let side = |s: &str| s.trim().parse::<u32>().ok().filter(|v| *v > 0);
    match (side(w), side(h)) {
        (Some(w), Some(h)) => Ok(Some((w, h))),
        _ => Err(bad()),
    }
}

/// The line's parameters, gathered before they are laid over the defaults'.
#[derive(Default)]
struct LineParams {
    typed: Vec<(String, Kind, Value)>,
    extra: Map<String, Value>,
    size: Option<(u32, u32)>,
}

impl LineParams {
    /// One parameter: a typed one is checked later, anything else is a provider's extra parameter.
    fn put(&mut self, key: String, value: Value) {
        if value.is_null() {
            return;
        }
        match kind_of(&key) {
            Some(kind) => self.typed.push((key, kind, value)),
            None => {
                self.extra.insert(key, value);
            }
        }
    }

    fn put_extra(&mut self, field: &str, value: Value) -> Result<(), BatchError> {
        match value {
            Value::Null => Ok(()),
            Value::Object(map) => {
                self.extra.extend(map.into_iter().filter(|(_, v)| !v.is_null()));
                Ok(())
            }
            other => Err(BatchError::field(
                field,
                format!("must be an object, got {}", json_type(&other)),
            )),
        }
    }

    /// The defaults' parameters, overridden key by key (`extra` too; `size` first, so that an explicit
    /// `width` or `height` wins).
    fn over(self, defaults: &GenerationParams) -> Result<GenerationParams, BatchError> {
        let mut params = defaults.clone();
        if let Some((w, h)) = self.size {
            params.width = Some(w);
            params.height = Some(h);
        }
        for (key, kind, value) in self.typed {
            assign(&mut params, &key, kind, value)?;
        }
        params.extra.extend(self.extra);
        if let Some(seed) = params.extra.get("seed")
            && seed.as_u64().is_none()
        {
            return Err(BatchError::parameter(
                "seed",
                format!("must be a whole number of 0 or more, got {}", shown(seed)),
            ));
        }
        params.validate().map_err(|e| match e {
            PromptError::InvalidParameter { name, reason } => BatchError::parameter(name, reason),
            other => BatchError::parameter("params", other.to_string()),
        })?;
        Ok(params)
    }
}

/// The defaults overridden by the line's fields, checked. Returns the request and the ignored notes.
/// `known_model` is the last model that passed [`ModelSpec::parse`] (most lines share one): it is not
/// parsed again.
pub(crate) fn build(
    raw: Raw,
    defaults: &GenerateRequest,
    known_model: &mut Option<String>,
) -> Result<(GenerateRequest, Vec<String>), BatchError> {
    let Raw {
        fields,
        endpoint,
        openai,
        mut ignored,
        ..
    } = raw;
    let mut request = defaults.clone();
    let mut params = LineParams::default();
    let mut prompt: Option<String> = None;
    let mut messages: Option<Vec<ChatMessage>> = None;
    let mut line_images: Option<(&'static str, Vec<MediaInput>)> = None;
    let mut task: Option<Task> = None;
    for (key, value) in fields {
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "prompt" => prompt = Some(text("prompt", value)?),
            "messages" => {
                messages = Some(serde_json::from_value(value).map_err(|e| {
                    BatchError::field(
                        "messages",
                        format!("must be a list of chat messages ({{\"role\", \"content\"}}): {e}"),
                    )
                })?);
            }
            "model" => request.model = text("model", value)?,
            "n" => request.n = count("n", &value, MAX_GENERATIONS)?,
            "concurrency" => request.concurrency = Some(count("concurrency", &value, MAX_GENERATIONS)?),
            "image" | "images" => {
                let field = if key == "image" { "image" } else { "images" };
                if let Some((other, _)) = line_images {
                    return Err(BatchError::field(
                        field,
                        format!("give `image` or `images`, not both (`{other}` is there too)"),
                    ));
                }
                line_images = Some((field, images(field, value)?));
            }
            "task" => {
                let name = text("task", value)?;
                let parsed = Task::from(name.trim().to_owned());
                if parsed.output().is_none() {
                    return Err(BatchError::field("task", not_a_media_task(&name)));
                }
                task = Some(parsed);
            }
            "params" => match value {
                Value::Object(map) => {
                    for (key, value) in map {
                        match key.as_str() {
                            "extra" => params.put_extra("params.extra", value)?,
                            "size" => params.size = size(value)?,
                            _ => params.put(key, value),
                        }
                    }
                }
                other => {
                    return Err(BatchError::field(
                        "params",
                        format!("must be an object, got {}", json_type(&other)),
                    ));
                }
            },
            "extra" => params.put_extra("extra", value)?,
            "size" => match size(value)? {
                Some(wh) => params.size = Some(wh),
                None => ignored.push("size (auto)".into()),
            },
            "custom_id" if openai => {
                return Err(BatchError::field(
                    "custom_id",
                    "belongs at the top of the line, next to `body`, not inside it",
                ));
            }
            key if openai && OPENAI_IGNORED.contains(&key) => ignored.push(key.to_owned()),
            _ => params.put(key, value),
        }
    }
    if prompt.is_some() || messages.is_some() {
        request.prompt = prompt;
        request.messages = messages.unwrap_or_default();
    }
    if let Some((_, images)) = line_images {
        request.images = images;
    }
    request.params = params.over(&defaults.params)?;
    if let Some(task) = task {
        request.task = Some(task);
    } else if let Some(endpoint) = endpoint {
        request.task = Some(endpoint.task(!request.images.is_empty()));
    }
    check(&request, known_model)?;
    normalize(&mut request);
    Ok((request, ignored))
}

fn not_a_media_task(name: &str) -> String {
    format!(
        "`{name}` is not a task that makes media: use text-to-image, text-to-video, image-to-image, \
         image-to-video, image-text-to-image or image-text-to-video"
    )
}

/// The request's checks that need no I/O and are not the fields' own (those came first): a prompt, a
/// model the defaults may have set, and the task against the images.
fn check(request: &GenerateRequest, known_model: &mut Option<String>) -> Result<(), BatchError> {
    format_prompt(request.prompt.as_deref(), &request.messages).map_err(|_| BatchError::NoPrompt)?;
    if known_model.as_deref() != Some(request.model.as_str()) {
        ModelSpec::parse(&request.model).map_err(|e| BatchError::Model {
            model: request.model.clone(),
            reason: e.to_string(),
        })?;
        *known_model = Some(request.model.clone());
    }
    if request.n == 0 || request.n > MAX_GENERATIONS {
        return Err(BatchError::field(
            "n",
            format!("must be a whole number from 1 to {MAX_GENERATIONS}, got {}", request.n),
        ));
    }
    if request.concurrency == Some(0) {
        return Err(BatchError::field("concurrency", "must be at least 1"));
    }
    let Some(task) = &request.task else {
        return Ok(());
    };
    if task.output().is_none() {
        return Err(BatchError::field("task", not_a_media_task(task.as_str())));
    }
    let explicit_prompt = request.prompt.as_deref().is_some_and(|p| !p.trim().is_empty());
    let from_chat = request.images.is_empty() && !explicit_prompt;
    let inputs = if from_chat {
        chat_images(&request.messages).len()
    } else {
        request.images.len()
    };
    if inputs > 0 && !task.takes_images() && !from_chat {
        return Err(BatchError::field(
            "image",
            format!("{task} takes no input image: drop the image, or ask for image-to-image or image-to-video"),
        ));
    }
    let usable = if task.takes_images() { inputs } else { 0 };
    if usable == 0 && task.image_input() == ImageInput::Required {
        return Err(BatchError::field(
            "image",
            format!("{task} needs an input image: give one (an image file, an http(s) URL or a data: URL)"),
        ));
    }
    Ok(())
}

/// Sorts the request's free-form maps (`params.extra`, the chat parts' other fields), at every level, so
/// that the same item written with its keys in another order is the same item.
fn normalize(request: &mut GenerateRequest) {
    sort_map(&mut request.params.extra);
    for message in &mut request.messages {
        if let MessageContent::Parts(parts) = &mut message.content {
            for part in parts {
                sort_map(&mut part.rest);
            }
        }
    }
}

fn sort_map(map: &mut Map<String, Value>) {
    map.sort_keys();
    map.values_mut().for_each(sort_value);
}

fn sort_value(value: &mut Value) {
    match value {
        Value::Object(map) => sort_map(map),
        Value::Array(list) => list.iter_mut().for_each(sort_value),
        _ => {}
    }
}

/// The item's canonical JSON: its fields in their declared order, its maps sorted (see [`normalize`]), no
/// spaces.
pub(crate) fn canonical_json(request: &GenerateRequest) -> String {
    serde_json::to_string(request).unwrap_or_else(|_| format!("{request:?}"))
}

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

/// The sha256 of an item's canonical JSON.
pub(crate) fn digest(canonical: &str) -> [u8; 32] {
    Sha256::digest(canonical.as_bytes()).into()
}

/// The stable id of an item without a `custom_id`: `line-<line, 6 digits or more>-<first 12 hex digits of
/// the sha256 of its canonical JSON>`.
pub(crate) fn stable_id(line: usize, digest: &[u8; 32]) -> String {
    format!("line-{line:06}-{}", hex(&digest[..6]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size("1024x768".into()).unwrap(), Some((1024, 768)));
        assert_eq!(size(" 512 X 512 ".into()).unwrap(), Some((512, 512)));
        assert_eq!(size("640×480".into()).unwrap(), Some((640, 480)));
        assert_eq!(size("auto".into()).unwrap(), None);
        for bad in ["1024", "0x10", "ax1", "10x", ""] {
            let err = size(bad.into()).unwrap_err().to_string();
            assert!(err.contains("`size`") && err.contains("WIDTHxHEIGHT"), "{err}");
        }
        assert!(size(Value::from(5)).is_err());
    }

    #[test]
    fn hex_and_ids() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        let id = stable_id(42, &digest("{}"));
        assert_eq!(id, "line-000042-44136fa355b3");
        assert_eq!(stable_id(1_234_567, &digest("{}")).split('-').nth(1), Some("1234567"));
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let mut request = GenerateRequest::new("a");
        request.params.extra.insert("zeta".into(), 1.into());
        request.params.extra.insert("alpha".into(), 2.into());
        normalize(&mut request);
        let json = canonical_json(&request);
        assert!(json.find("\"alpha\"") < json.find("\"zeta\""), "{json}");
        assert!(json.find("\"model\"") < json.find("\"prompt\""), "{json}");
    }

    #[test]
    fn custom_ids() {
        assert_eq!(custom_id(&Value::from("a")).unwrap().as_deref(), Some("a"));
        assert_eq!(custom_id(&Value::from(7)).unwrap().as_deref(), Some("7"));
        assert_eq!(custom_id(&Value::Null).unwrap(), None);
        for bad in [
            Value::from(""),
            Value::from(" "),
            Value::from("a\nb"),
            Value::from(1.5),
            Value::Bool(true),
        ] {
            assert!(custom_id(&bad).is_err(), "{bad}");
        }
        assert!(custom_id(&Value::from("x".repeat(257))).is_err());
    }
}
