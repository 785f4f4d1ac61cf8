//! The fields of an images or videos request, as the OpenAI SDKs send them (a JSON body, or multipart
//! text parts where every value is a string), read into one [`Ask`]: OpenAI's fields mapped where they
//! mean something here (`size`, `n`, `response_format`, `seconds`), OpenAI-only fields accepted and set
//! aside, generation parameters (`seed`, `negative_prompt`, `steps`, …) read, and every other key (the
//! SDK's `extra_body`) passed to the provider as a parameter.

use hf_media::{AspectRatio, GenerationParams};
use serde_json::{Map, Value};

use crate::{MAX_IMAGES_PER_REQUEST, ServerError};

/// The longest prompt taken, in characters.
pub(crate) const MAX_PROMPT_CHARS: usize = 32_000;
/// The frame rate a video's `seconds` is turned into frames with (that of Wan, the default video model:
/// 81 frames are 5 s).
pub(crate) const VIDEO_FPS: u32 = 16;
/// The longest video asked for, in seconds.
pub(crate) const MAX_VIDEO_SECONDS: f64 = 60.0;

/// OpenAI fields with no meaning for Hugging Face providers: accepted, never sent on.
const OPENAI_ONLY: &[&str] = &[
    "quality",
    "style",
    "background",
    "moderation",
    "user",
    "output_format",
    "output_compression",
    "safety_identifier",
    "input_fidelity",
    "complexity",
    "frame_count",
    "frame_duration_ms",
    "svg",
    "markup",
    "prompt_cache_key",
];

/// How images come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ResponseFormat {
    /// Absolute URLs of the stored media (the default).
    #[default]
    Url,
    /// The bytes, base64.
    B64Json,
}

/// Which endpoint the fields are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Generations,
    Edits,
    Videos,
}

/// A request's fields, checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ask {
    pub prompt: String,
    /// `org/name`, `org/name:provider` or an alias.
    pub model: String,
    pub n: usize,
    pub params: GenerationParams,
    pub response_format: ResponseFormat,
    pub stream: bool,
    /// How many partial events a streaming client asked for (0–3).
    pub partial_images: u8,
    /// The size as asked (`WxH`), echoed in answers.
    pub size: Option<String>,
    /// A video's length as asked, echoed in its Video object.
    pub seconds: Option<String>,
    /// OpenAI-only fields that were set aside.
    pub ignored: Vec<String>,
}

/// A string field: a JSON string (or, leniently, a number).
fn text(key: &str, value: &Value) -> Result<Option<String>, ServerError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(ServerError::BadRequest {
            message: format!("`{key}` must be a string, not {}", json_kind(other)),
            param: Some(key.to_owned()),
        }),
    }
}

/// A field that must be a JSON string (the prompt: a number there is a client's mistake, not a text).
fn string(key: &str, value: &Value) -> Result<Option<String>, ServerError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        other => Err(ServerError::BadRequest {
            message: format!(
                "`{key}` must be a string, not {}: send the text, such as \"{key}\": \"a red fox\"",
                json_kind(other)
            ),
            param: Some(key.to_owned()),
        }),
    }
}

/// What a JSON value is, for messages (`a string`, `an array`, …).
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A number field: a JSON number or a numeric string (multipart sends every value as one).
fn number(key: &str, value: &Value) -> Result<Option<f64>, ServerError> {
    let bad = || ServerError::BadRequest {
        message: format!("`{key}` must be a number, not {}", describe(value)),
        param: Some(key.to_owned()),
    };
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_f64().map(Some).ok_or_else(bad),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(Some)
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("\"{}\"", s.chars().take(40).collect::<String>()),
        other => json_kind(other).to_owned(),
    }
}

/// A whole number in `min..=max`.
fn whole(key: &str, value: &Value, min: u64, max: u64) -> Result<Option<u64>, ServerError> {
    let Some(v) = number(key, value)? else { return Ok(None) };
    if v.fract() != 0.0 || v < min as f64 || v > max as f64 {
        return Err(ServerError::BadRequest {
            message: format!("`{key}` must be a whole number from {min} to {max}, not {v}"),
            param: Some(key.to_owned()),
        });
    }
    Ok(Some(v as u64))
}

/// A boolean field: a JSON boolean or `"true"`/`"false"`.
fn flag(key: &str, value: &Value) -> Result<Option<bool>, ServerError> {
    match value {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::String(s) if s.eq_ignore_ascii_case("true") || s == "1" => Ok(Some(true)),
        Value::String(s) if s.eq_ignore_ascii_case("false") || s == "0" || s.is_empty() => Ok(Some(false)),
        other => Err(ServerError::BadRequest {
            message: format!("`{key}` must be true or false, not {}", describe(other)),
            param: Some(key.to_owned()),
        }),
    }
}

/// A multipart text part's value: JSON when it reads as a number, a boolean or an object/array (so
/// `extra_body={"steps": 4}` reaches the provider as the number 4), else the string.
pub(crate) fn form_value(text: &str) -> Value {
    let trimmed = text.trim();
    let looks_json = trimmed.starts_with('{')
        || trimmed.starts_with('[')
        || trimmed == "true"
        || trimmed == "false"
        || trimmed.parse::<f64>().is_ok();
    if looks_json && let Ok(value) = serde_json::from_str::<Value>(trimmed) {
        return value;
    }
    Value::String(text.to_owned())
}

/// Reads `size`: `auto`, `WxH`, or an aspect ratio (`16:9`).
fn size(value: &str, params: &mut GenerationParams) -> Result<Option<String>, ServerError> {
    let value = value.trim();
    if value.is_empty() || value.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    if let Some((w, h)) = value.split_once(['x', 'X', '×'])
        && let (Ok(width), Ok(height)) = (w.trim().parse::<u32>(), h.trim().parse::<u32>())
    {
        if !(64..=8192).contains(&width) || !(64..=8192).contains(&height) {
            return Err(ServerError::bad_request(
                format!("`size` {value}: width and height must each be 64 to 8192 pixels"),
                "size",
            ));
        }
        params.width = Some(width);
        params.height = Some(height);
        return Ok(Some(format!("{width}x{height}")));
    }
    if value.contains(':') {
        let ratio: AspectRatio = value
            .parse()
            .map_err(|e| ServerError::bad_request(format!("`size` {value}: {e}"), "size"))?;
        params.aspect_ratio = Some(ratio);
        return Ok(None);
    }
    Err(ServerError::bad_request(
        format!("`size` `{value}` is not a size: give WxH (1024x768), auto, or an aspect ratio (16:9)"),
        "size",
    ))
}

impl Ask {
    /// Reads and checks `fields` for `endpoint`; `default_model` when none is named.
    pub fn read(fields: Map<String, Value>, endpoint: Endpoint, default_model: &str) -> Result<Ask, ServerError> {
        let mut prompt = None;
        let mut model = None;
        let mut provider = None;
        let mut n = None;
        let mut size_value = None;
        let mut seconds = None;
        let mut response_format = ResponseFormat::default();
        let mut stream = false;
        let mut partial_images = 0;
        let mut params = GenerationParams::default();
        let mut ignored = Vec::new();
        let mut steps_key = None;
        for (key, value) in fields {
            let k = key.as_str();
            match k {
                "prompt" => prompt = string(k, &value)?,
                "model" => model = text(k, &value)?.filter(|m| !m.trim().is_empty()),
                "provider" => provider = text(k, &value)?.filter(|p| !p.trim().is_empty()),
                "n" => n = whole(k, &value, 1, MAX_IMAGES_PER_REQUEST as u64)?,
                "size" => size_value = text(k, &value)?,
                "seconds" | "duration" => {
                    if let Some(s) = number(k, &value)? {
                        if !(s > 0.0 && s <= MAX_VIDEO_SECONDS) {
                            return Err(ServerError::bad_request(
                                format!("`seconds` must be more than 0 and at most {MAX_VIDEO_SECONDS}, not {s}"),
                                "seconds",
                            ));
                        }
                        seconds = Some(s);
                    }
                }
                "response_format" => {
                    response_format = match text(k, &value)?.as_deref().map(str::trim) {
                        None | Some("") | Some("url") => ResponseFormat::Url,
                        Some("b64_json") => ResponseFormat::B64Json,
                        Some(other) => {
                            return Err(ServerError::bad_request(
                                format!("`response_format` must be `url` or `b64_json`, not `{other}`"),
                                "response_format",
                            ));
                        }
                    }
                }
                "stream" => stream = flag(k, &value)?.unwrap_or(false),
                "partial_images" => partial_images = whole(k, &value, 0, 3)?.unwrap_or(0) as u8,
                "seed" => params.seed = whole(k, &value, 0, u64::from(u32::MAX))?,
                "negative_prompt" => params.negative_prompt = text(k, &value)?,
                "steps" | "num_inference_steps" => {
                    if steps_key.is_some_and(|s| s != k) {
                        return Err(ServerError::bad_request(
                            "give `steps` or `num_inference_steps`, not both",
                            "num_inference_steps",
                        ));
                    }
                    steps_key = Some(if k == "steps" { "steps" } else { "num_inference_steps" });
                    params.num_inference_steps = whole(k, &value, 1, 1000)?.map(|v| v as u32);
                }
                "guidance_scale" => params.guidance_scale = number(k, &value)?,
                "strength" => params.strength = number(k, &value)?,
                "width" => params.width = whole(k, &value, 64, 8192)?.map(|v| v as u32),
                "height" => params.height = whole(k, &value, 64, 8192)?.map(|v| v as u32),
                "aspect_ratio" => {
                    if let Some(ratio) = text(k, &value)? {
                        params.aspect_ratio = Some(ratio.parse().map_err(|e| {
                            ServerError::bad_request(format!("`aspect_ratio` {ratio}: {e}"), "aspect_ratio")
                        })?);
                    }
                }
                "scheduler" => params.scheduler = text(k, &value)?,
                "num_frames" => params.num_frames = whole(k, &value, 1, 100_000)?.map(|v| v as u32),
                "resolution" => params.resolution = text(k, &value)?,
                _ if OPENAI_ONLY.contains(&k) || OPENAI_ONLY.iter().any(|o| k.starts_with(&format!("{o}["))) => {
                    ignored.push(key);
                }
                "image" | "image[]" | "mask" | "input_reference" | "images" => {
                    // File fields arrive as files (multipart); a string here is not an image.
                    return Err(ServerError::bad_request(
                        format!("`{k}` must be sent as a file (multipart/form-data), not as a text value"),
                        "image",
                    ));
                }
                _ => {
                    params.extra.insert(key, value);
                }
            }
        }
        let prompt = prompt.map(|p| p.trim().to_owned()).unwrap_or_default();
        if prompt.is_empty() {
            return Err(ServerError::bad_request(
                "`prompt` is required: describe the media to make",
                "prompt",
            ));
        }
        if prompt.chars().count() > MAX_PROMPT_CHARS {
            return Err(ServerError::bad_request(
                format!("`prompt` is longer than {MAX_PROMPT_CHARS} characters"),
                "prompt",
            ));
        }
        let size = match &size_value {
            Some(value) => size(value, &mut params)?,
            None => None,
        };
        if endpoint == Endpoint::Videos {
            if n.is_some_and(|n| n != 1) {
                return Err(ServerError::bad_request(
                    "a video job makes one video: leave `n` out",
                    "n",
                ));
            }
            if let Some(s) = seconds
                && params.num_frames.is_none()
            {
                params.num_frames = Some((s * f64::from(VIDEO_FPS)).round() as u32 + 1);
            }
        } else if seconds.is_some() {
            return Err(ServerError::bad_request(
                "`seconds` is for videos (POST /v1/videos)",
                "seconds",
            ));
        }
        if stream && endpoint == Endpoint::Videos {
            return Err(ServerError::bad_request(
                "video jobs do not stream: poll GET /v1/videos/{id}",
                "stream",
            ));
        }
        params
            .validate()
            .map_err(|e| ServerError::bad_request(e.to_string(), None))?;
        let mut model = model.unwrap_or_else(|| default_model.to_owned());
        if let Some(provider) = provider {
            if model.contains(':') {
                return Err(ServerError::bad_request(
                    "name the provider once: in `model` (id:provider) or in `provider`",
                    "provider",
                ));
            }
            model = format!("{model}:{provider}");
        }
        hf_media::ModelSpec::parse(&model).map_err(|e| ServerError::BadRequest {
            message: e.to_string(),
            param: Some("model".into()),
        })?;
        Ok(Ask {
            prompt,
            model,
            n: n.map_or(1, |n| n as usize),
            params,
            response_format,
            stream,
            partial_images,
            size,
            seconds: seconds.map(|s| {
                if s.fract() == 0.0 {
                    format!("{s:.0}")
                } else {
                    s.to_string()
                }
            }),
            ignored,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(value: Value, endpoint: Endpoint) -> Result<Ask, ServerError> {
        let Value::Object(map) = value else { panic!("an object") };
        Ask::read(map, endpoint, "black-forest-labs/FLUX.1-schnell")
    }

    #[test]
    fn the_smallest_request_gets_every_default() {
        let ask = read(json!({"prompt": "a fox"}), Endpoint::Generations).unwrap();
        assert_eq!(ask.prompt, "a fox");
        assert_eq!(ask.model, "black-forest-labs/FLUX.1-schnell");
        assert_eq!(ask.n, 1);
        assert_eq!(ask.response_format, ResponseFormat::Url);
        assert!(!ask.stream);
        assert_eq!(ask.params, GenerationParams::default());
    }

    #[test]
    fn openai_and_generation_fields_map() {
        let ask = read(
            json!({"prompt": " a fox ", "model": "flux-schnell", "provider": "fal-ai", "n": 2, "size": "1024x768",
                   "response_format": "b64_json", "quality": "hd", "style": "vivid", "user": "u1",
                   "seed": 7, "negative_prompt": "blur", "steps": 4, "guidance_scale": 3.5, "lora_scale": 0.8}),
            Endpoint::Generations,
        )
        .unwrap();
        assert_eq!(ask.prompt, "a fox");
        assert_eq!(ask.model, "flux-schnell:fal-ai");
        assert_eq!(ask.n, 2);
        assert_eq!((ask.params.width, ask.params.height), (Some(1024), Some(768)));
        assert_eq!(ask.size.as_deref(), Some("1024x768"));
        assert_eq!(ask.response_format, ResponseFormat::B64Json);
        assert_eq!(ask.params.seed, Some(7));
        assert_eq!(ask.params.num_inference_steps, Some(4));
        assert_eq!(ask.params.guidance_scale, Some(3.5));
        assert_eq!(ask.params.negative_prompt.as_deref(), Some("blur"));
        assert_eq!(
            ask.params.extra.get("lora_scale"),
            Some(&json!(0.8)),
            "extra_body keys reach the provider"
        );
        assert_eq!(ask.ignored, vec!["quality", "style", "user"]);
    }

    #[test]
    fn multipart_strings_are_coerced() {
        let mut map = Map::new();
        for (k, v) in [
            ("prompt", "x"),
            ("n", "3"),
            ("stream", "false"),
            ("seed", "12"),
            ("guidance_scale", "2.5"),
            ("svg[model]", "m"),
        ] {
            map.insert(k.into(), form_value(v));
        }
        map.insert("prompt".into(), Value::String("x".into()));
        let ask = Ask::read(map, Endpoint::Edits, "m/x").unwrap();
        assert_eq!(ask.n, 3);
        assert!(!ask.stream);
        assert_eq!(ask.params.seed, Some(12));
        assert_eq!(ask.params.guidance_scale, Some(2.5));
        assert_eq!(ask.ignored, vec!["svg[model]"]);
        assert_eq!(form_value("{\"a\": 1}"), json!({"a": 1}));
        assert_eq!(form_value("hello"), json!("hello"));
    }

    #[test]
    fn sizes_take_every_form() {
        let ask = read(json!({"prompt": "x", "size": "auto"}), Endpoint::Generations).unwrap();
        assert_eq!((ask.params.width, ask.size), (None, None));
        let ask = read(json!({"prompt": "x", "size": "16:9"}), Endpoint::Generations).unwrap();
        assert!(ask.params.aspect_ratio.is_some());
        for bad in ["big", "10x10", "1024x", "0:0"] {
            let error = read(json!({"prompt": "x", "size": bad}), Endpoint::Generations).unwrap_err();
            assert!(
                matches!(&error, ServerError::BadRequest { param: Some(p), .. } if p == "size"),
                "{bad}: {error:?}"
            );
        }
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (json!({}), "prompt"),
            (json!({"prompt": "   "}), "prompt"),
            (json!({"prompt": 5}), "prompt"),
            (json!({"prompt": "x", "n": 0}), "n"),
            (json!({"prompt": "x", "n": 11}), "n"),
            (json!({"prompt": "x", "n": 1.5}), "n"),
            (json!({"prompt": "x", "n": "two"}), "n"),
            (json!({"prompt": "x", "response_format": "png"}), "response_format"),
            (json!({"prompt": "x", "stream": "maybe"}), "stream"),
            (json!({"prompt": "x", "partial_images": 4}), "partial_images"),
            (json!({"prompt": "x", "seed": -1}), "seed"),
            (json!({"prompt": "x", "model": "not a model"}), "model"),
            (json!({"prompt": "x", "image": "cat.png"}), "image"),
            (json!({"prompt": "x", "seconds": "4"}), "seconds"),
        ];
        for (body, param) in cases {
            let error = read(body.clone(), Endpoint::Generations).unwrap_err();
            match &error {
                ServerError::BadRequest {
                    param: Some(p),
                    message,
                } => {
                    assert_eq!(p, param, "{body}: {message}");
                    assert!(!message.is_empty());
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn videos_turn_seconds_into_frames() {
        let ask = read(
            json!({"prompt": "x", "seconds": "4", "size": "1280x720"}),
            Endpoint::Videos,
        )
        .unwrap();
        assert_eq!(ask.params.num_frames, Some(65));
        assert_eq!(ask.seconds.as_deref(), Some("4"));
        assert!(read(json!({"prompt": "x", "seconds": "0"}), Endpoint::Videos).is_err());
        assert!(read(json!({"prompt": "x", "n": 2}), Endpoint::Videos).is_err());
        assert!(read(json!({"prompt": "x", "stream": true}), Endpoint::Videos).is_err());
    }
}
