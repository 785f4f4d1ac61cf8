//! OpenAI's `ImagesResponse` for made media: `{created, data: [{url | b64_json, revised_prompt}]}`, plus
//! `model`, `provider`, `size`, `output_format`, and the seeds, so that a caller can make a media again.

use std::sync::Arc;

use base64::Engine;
use hf_media::GeneratedMedia;
use serde_json::{Value, json};

use crate::fields::{Ask, ResponseFormat};
use crate::links::unix_now;
use crate::{App, ServerError};

/// The name media is served under (`/media/{name}`): its name in the output.
pub(crate) fn media_name(app: &App, media: &GeneratedMedia) -> Result<String, ServerError> {
    app.store.name_of(&media.location)
}

/// The media's bytes in base64.
pub(crate) async fn base64_of(app: &App, media: &GeneratedMedia) -> Result<String, ServerError> {
    let bytes = app.store.read(&media_name(app, media)?).await?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// `png`, `jpeg`, `webp`, … from the media's MIME type.
pub(crate) fn output_format(media: &GeneratedMedia) -> &str {
    media.mime.split_once('/').map_or("png", |(_, subtype)| subtype)
}

/// The pixel size a media was asked at, `WxH`, when known.
fn asked_size(ask: &Ask) -> Option<String> {
    ask.size
        .clone()
        .or_else(|| ask.params.size().map(|(w, h)| format!("{w}x{h}")))
}

/// One `data` entry.
pub(crate) async fn image_entry(
    app: &Arc<App>,
    ask: &Ask,
    base: &str,
    media: &GeneratedMedia,
    format: ResponseFormat,
) -> Result<Value, ServerError> {
    let name = media_name(app, media)?;
    let url = app.links.url(base, &name);
    let mut entry = json!({ "revised_prompt": ask.prompt });
    match format {
        ResponseFormat::Url => entry["url"] = json!(url),
        ResponseFormat::B64Json => entry["b64_json"] = json!(base64_of(app, media).await?),
    }
    entry["index"] = json!(media.task);
    entry["seed"] = json!(media.seed);
    entry["provider"] = json!(media.provider);
    Ok(entry)
}

/// The whole answer.
pub(crate) async fn images_response(
    app: &Arc<App>,
    ask: &Ask,
    base: &str,
    made: &[GeneratedMedia],
    failed: &[Value],
    notes: &[String],
) -> Result<Value, ServerError> {
    let mut data = Vec::with_capacity(made.len());
    for media in made {
        data.push(image_entry(app, ask, base, media, ask.response_format).await?);
    }
    let first = &made[0];
    let mut answer = json!({
        "created": unix_now(),
        "data": data,
        "model": first.model,
        "provider": first.provider,
        "output_format": output_format(first),
    });
    if let Some(size) = asked_size(ask) {
        answer["size"] = json!(size);
    }
    if !failed.is_empty() {
        // Some of the n failed: the made ones are answered, and the others say why.
        answer["errors"] = Value::Array(failed.to_vec());
    }
    if !notes.is_empty() {
        answer["warnings"] = json!(notes);
    }
    Ok(answer)
}
