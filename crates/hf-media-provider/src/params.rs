use serde_json::{Map, Value};

use crate::{GenerationRequest, Task};

/// The request's parameters under their canonical names, shaped for its task, before any provider renames.
///
/// - Images from text (`text-to-image`, and `image-text-to-image` without input images): width and height
///   (from the explicit size or the aspect ratio); no `aspect_ratio` key.
/// - Videos from text (`text-to-video`, and `image-text-to-video` without input images): `aspect_ratio`
///   (default `16:9`) and `resolution` (default `480p`); width and height only when the caller gave both
///   explicitly.
/// - Media from input images (`image-to-image`, `image-to-video`, and the `image-text-to-*` tasks given
///   images): the input image decides the shape, so there are no defaults; width and height only when the
///   caller gave both explicitly, `aspect_ratio` and `resolution` only when the caller gave them.
///
/// Free-form extras are merged last and win.
pub fn provider_parameters(request: &GenerationRequest) -> Map<String, Value> {
    let params = &request.params;
    let mut map = params.to_canonical_map();
    let explicit_size = params.width.is_some() && params.height.is_some();
    let shape = Shape::of(request);
    // How far an edit may move from its input means nothing without one.
    if !matches!(shape, Shape::FromImages) && !params.extra.contains_key("strength") {
        map.remove("strength");
    }
    match shape {
        Shape::TextToVideo => {
            if !explicit_size {
                map.remove("width");
                map.remove("height");
            }
            map.entry("aspect_ratio")
                .or_insert_with(|| Value::from(hf_media_prompt::AspectRatio::WIDESCREEN.as_str()));
            map.entry("resolution").or_insert_with(|| Value::from("480p"));
        }
        Shape::FromImages => {
            if !explicit_size {
                for side in ["width", "height"] {
                    if !params.extra.contains_key(side) {
                        map.remove(side);
                    }
                }
            }
        }
        Shape::TextToImage => {
            if !params.extra.contains_key("aspect_ratio") {
                map.remove("aspect_ratio");
            }
        }
    }
    map
}

/// How a request's parameters are shaped.
enum Shape {
    /// An image from a prompt: a pixel size.
    TextToImage,
    /// A video from a prompt: aspect ratio and resolution labels, with defaults.
    TextToVideo,
    /// A media from input images: only what the caller gave.
    FromImages,
}

impl Shape {
    fn of(request: &GenerationRequest) -> Shape {
        let with_images = !request.images.is_empty();
        match request.mapping.task {
            Task::ImageToImage | Task::ImageToVideo => Shape::FromImages,
            Task::ImageTextToImage | Task::ImageTextToVideo if with_images => Shape::FromImages,
            Task::TextToVideo | Task::ImageTextToVideo => Shape::TextToVideo,
            _ => Shape::TextToImage,
        }
    }
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

    fn with_image(task: Task, params: GenerationParams) -> GenerationRequest {
        let image = crate::InputImage::new(
            bytes::Bytes::from_static(b"\x89PNG\r\n\x1a\n"),
            "image/png",
            crate::ImageOrigin::Bytes,
        );
        GenerationRequest {
            images: vec![image],
            ..request(task, params)
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

    #[test]
    fn input_images_decide_the_shape_without_defaults() {
        let params = GenerationParams {
            aspect_ratio: Some("9:16".parse().unwrap()),
            strength: Some(0.6),
            seed: Some(2),
            ..Default::default()
        };
        for task in [
            Task::ImageToImage,
            Task::ImageToVideo,
            Task::ImageTextToImage,
            Task::ImageTextToVideo,
        ] {
            let map = provider_parameters(&with_image(task.clone(), params.clone()));
            assert_eq!(
                Value::Object(map),
                json!({"strength": 0.6, "seed": 2, "aspect_ratio": "9:16"}),
                "{task}: no size from the aspect ratio, no video defaults"
            );
            let map = provider_parameters(&with_image(task.clone(), GenerationParams::default()));
            assert!(map.is_empty(), "{task}: {map:?}");
        }
        let sized = GenerationParams {
            width: Some(832),
            height: Some(480),
            ..Default::default()
        };
        let map = provider_parameters(&with_image(Task::ImageToVideo, sized));
        assert_eq!(Value::Object(map), json!({"width": 832, "height": 480}));
    }

    #[test]
    fn optional_image_tasks_without_images_are_shaped_as_text_tasks() {
        let params = GenerationParams {
            aspect_ratio: Some("16:9".parse().unwrap()),
            ..Default::default()
        };
        let map = provider_parameters(&request(Task::ImageTextToImage, params));
        assert_eq!(Value::Object(map), json!({"width": 1024, "height": 576}));
        let map = provider_parameters(&request(Task::ImageTextToVideo, GenerationParams::default()));
        assert_eq!(
            Value::Object(map),
            json!({"aspect_ratio": "16:9", "resolution": "480p"})
        );
    }
}
