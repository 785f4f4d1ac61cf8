//! A multipart form as the OpenAI SDKs send it (`images.edit`, `videos.create`): files under `image`,
//! repeated `image[]`, `mask`, `input_reference`; every other part a text value (numbers and booleans as
//! strings, nested objects as `key[sub]`), coerced like a JSON body's fields.

use axum::extract::Multipart;
use axum::extract::multipart::MultipartError;
use bytes::Bytes;
use hf_media::MediaInput;
use serde_json::{Map, Value};

use crate::ServerError;
use crate::fields::form_value;

/// The most image files one form may carry.
pub(crate) const MAX_FORM_IMAGES: usize = 16;

/// What a form held.
#[derive(Debug, Default)]
pub(crate) struct Form {
    /// Its text parts, as fields.
    pub fields: Map<String, Value>,
    /// Its image files, in order (`image`, `image[]`, `input_reference`).
    pub images: Vec<MediaInput>,
    /// Whether a `mask` file came.
    pub mask: bool,
}

fn part_error(error: MultipartError, limit: usize) -> ServerError {
    if error.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ServerError::TooLarge { limit }
    } else {
        ServerError::bad_request(
            format!("the multipart body could not be read: {}", error.body_text()),
            None,
        )
    }
}

/// Whether `bytes` start like an image.
fn is_image(bytes: &Bytes) -> bool {
    hf_media::sink::sniff(&bytes[..bytes.len().min(64)]).is_some_and(|f| f.kind == hf_media::MediaKind::Image)
}

/// Reads every part of `multipart`.
pub(crate) async fn read(mut multipart: Multipart, limit: usize) -> Result<Form, ServerError> {
    let mut form = Form::default();
    while let Some(field) = multipart.next_field().await.map_err(|e| part_error(e, limit))? {
        let name = field.name().unwrap_or_default().to_owned();
        let is_file = field.file_name().is_some();
        match name.as_str() {
            "image" | "image[]" | "input_reference" | "mask" | "mask[]" => {
                let file_name = field.file_name().unwrap_or("the file").to_owned();
                let bytes = field.bytes().await.map_err(|e| part_error(e, limit))?;
                if bytes.is_empty() {
                    return Err(ServerError::bad_request(
                        format!("`{name}` ({file_name}) is empty"),
                        "image",
                    ));
                }
                if !is_image(&bytes) {
                    return Err(ServerError::bad_request(
                        format!("`{name}` ({file_name}) is not an image: send a PNG, JPEG, WebP or GIF file"),
                        "image",
                    ));
                }
                if name.starts_with("mask") {
                    form.mask = true;
                    continue;
                }
                if form.images.len() == MAX_FORM_IMAGES {
                    return Err(ServerError::bad_request(
                        format!("at most {MAX_FORM_IMAGES} images a request"),
                        "image",
                    ));
                }
                form.images.push(MediaInput::bytes(bytes));
            }
            _ if is_file => {
                // Files the API has no use for here (`markup`, …) are read past and left out.
                let _ = field.bytes().await.map_err(|e| part_error(e, limit))?;
                tracing::debug!(part = %name, "a file part with no use was left out");
            }
            "" => {
                return Err(ServerError::bad_request("a multipart part has no name", None));
            }
            _ => {
                let text = field.text().await.map_err(|e| part_error(e, limit))?;
                let value = if name == "prompt" || name == "model" || name == "negative_prompt" {
                    Value::String(text)
                } else {
                    form_value(&text)
                };
                form.fields.insert(name, value);
            }
        }
    }
    Ok(form)
}
