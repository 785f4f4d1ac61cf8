use serde_json::{Map, Value};

use crate::{GenerationRequest, Task};

/// The request's parameters under their canonical names, shaped for its task, before any provider renames.
///
/// - Images: width and height (from the explicit size or the aspect ratio); no `aspect_ratio` key.
/// - Videos: `aspect_ratio` (default `16:9`) and `resolution` (default `480p`); width and height only when
///   the caller gave both explicitly.
///
/// Free-form extras are merged last and win.
pub fn provider_parameters(request: &GenerationRequest) -> Map<String, Value> {
    let params = &request.params;
    let mut map = params.to_canonical_map();
    match request.mapping.task {
        Task::TextToVideo => {
            if params.width.is_none() || params.height.is_none() {
                map.remove("width");
                map.remove("height");
            }
            map.entry("aspect_ratio")
                .or_insert_with(|| Value::from(hf_media_prompt::AspectRatio::WIDESCREEN.as_str()));
            map.entry("resolution").or_insert_with(|| Value::from("480p"));
        }
        _ => {
            if !params.extra.contains_key("aspect_ratio") {
                map.remove("aspect_ratio");
            }
        }
    }
    map
}

/// Replaces `width` and `height`, when both are set, by one `size: "WxH"` (the convention of the OpenAI
/// images API, which nscale, zai-org and OpenAI-compatible servers follow). A lone side is left as it is.
pub fn size_as_wxh(params: &mut Map<String, Value>) {
    fn dimension(value: &Value) -> Option<String> {
        match value {
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        }
    }
    if let (Some(width), Some(height)) = (
        params.get("width").and_then(dimension),
        params.get("height").and_then(dimension),
    ) {
        params.remove("width");
        params.remove("height");
        params.insert("size".into(), Value::from(format!("{width}x{height}")));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{GenerationParams, ProviderMapping};

    fn request(task: Task, params: GenerationParams) -> GenerationRequest {
        GenerationRequest {
            mapping: ProviderMapping::new("fal-ai", "x/y", task, "org/model"),
            prompt: "p".into(),
            params,
            images: Vec::new(),
        }
    }

    #[test]
    fn images_get_a_size_from_the_aspect_ratio() {
        let params = GenerationParams {
            aspect_ratio: Some("16:9".parse().unwrap()),
            seed: Some(1),
            ..Default::default()
        };
        let map = provider_parameters(&request(Task::TextToImage, params));
        assert_eq!(Value::Object(map), json!({"width": 1024, "height": 576, "seed": 1}));
    }

    #[test]
    fn videos_get_aspect_ratio_and_resolution_defaults() {
        let map = provider_parameters(&request(Task::TextToVideo, GenerationParams::default()));
        assert_eq!(
            Value::Object(map),
            json!({"aspect_ratio": "16:9", "resolution": "480p"})
        );
        let params = GenerationParams {
            aspect_ratio: Some("9:16".parse().unwrap()),
            resolution: Some("720p".into()),
            ..Default::default()
        };
        let map = provider_parameters(&request(Task::TextToVideo, params));
        assert_eq!(
            Value::Object(map),
            json!({"aspect_ratio": "9:16", "resolution": "720p"})
        );
        let params = GenerationParams {
            width: Some(832),
            height: Some(480),
            ..Default::default()
        };
        let map = provider_parameters(&request(Task::TextToVideo, params));
        assert_eq!(map.get("width"), Some(&json!(832)));
    }
}
