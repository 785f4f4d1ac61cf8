//! What every emulated provider shares: authorization, faults, latency, reading sizes from payloads,
//! rendering media, and error answers.

// Helpers return the provider's ready error answer so handlers can return it as is.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::behaviour::{Fault, FaultTarget, ProviderBehaviour};
use crate::inputs::{self, InputError};
use crate::media::{self, ImageFormat};
use crate::state::State;

/// The shared state, as handlers receive it.
pub(crate) type Shared = Arc<State>;

/// Most frames a video may ask for.
const MAX_FRAMES: u32 = 120;
/// Frames of a video when the request names none.
const DEFAULT_FRAMES: u32 = 16;
/// Frames per second of rendered videos.
pub(crate) const FPS: u32 = 8;

/// A JSON error answer in the common `{"error": …}` shape.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    let mut response = (status, axum::Json(json!({ "error": message }))).into_response();
    if let Ok(value) = HeaderValue::from_str(&message.replace(['\r', '\n'], " ")) {
        response.headers_mut().insert("x-error-message", value);
    }
    response
}

/// `http://{host}` of the request: absolute URLs in answers point back at the emulator.
pub(crate) fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// The start of every provider request: counts it, checks the credentials, plays a scripted fault, and
/// returns the provider's behaviour.
pub(crate) async fn enter(
    state: &State,
    provider: &'static str,
    target: FaultTarget,
    headers: &HeaderMap,
) -> Result<ProviderBehaviour, Response> {
    state.count(format!("{provider} {}", target_name(target)));
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| (v.starts_with("Bearer ") || v.starts_with("Key ")) && v.len() > 7);
    if !authorized {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "Invalid credentials in Authorization header",
        ));
    }
    play(state, provider, target)
}

/// The start of a request that needs no credentials (the OpenAI-compatible server): counts it, plays a
/// scripted fault, and returns the behaviour.
pub(crate) fn enter_open(
    state: &State,
    provider: &'static str,
    target: FaultTarget,
) -> Result<ProviderBehaviour, Response> {
    state.count(format!("{provider} {}", target_name(target)));
    play(state, provider, target)
}

fn play(state: &State, provider: &'static str, target: FaultTarget) -> Result<ProviderBehaviour, Response> {
    if let Some(rule) = state.fault_for(provider, target) {
        return Err(fault_response(&rule.fault, provider));
    }
    Ok(state.behaviour(provider))
}

fn target_name(target: FaultTarget) -> &'static str {
    match target {
        FaultTarget::Submit => "submit",
        FaultTarget::Poll => "poll",
        FaultTarget::Download => "download",
        FaultTarget::Any => "any",
    }
}

/// The answer of a scripted fault.
pub(crate) fn fault_response(fault: &Fault, provider: &str) -> Response {
    match fault {
        Fault::Status { status, body } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            match body {
                Some(body) => (status, axum::Json(body.clone())).into_response(),
                None => error(
                    status,
                    format!(
                        "{} (emulated {provider} fault)",
                        status.canonical_reason().unwrap_or("error")
                    ),
                ),
            }
        }
        Fault::RateLimited { retry_after_secs } => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "Rate limit reached, slow down");
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            response
        }
        Fault::Loading { estimated_time_secs } => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "error": "Model is currently loading",
                "estimated_time": estimated_time_secs,
            })),
        )
            .into_response(),
        Fault::MalformedJson => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"images\": [{\"url\": ",
        )
            .into_response(),
        Fault::TruncatedBody => broken_body(b"{\"images\": [{\"url\": \"http://", None),
        Fault::ConnectionReset => broken_body(b"", None),
        Fault::Stall { secs } => broken_body(b"{\"status\": ", Some(Duration::from_secs_f64(secs.max(0.0)))),
    }
}

/// A 200 answer that sends `prefix`, then (after `stall`, if any) breaks the connection.
fn broken_body(prefix: &'static [u8], stall: Option<Duration>) -> Response {
    let stream = futures::stream::unfold(0u8, move |step| async move {
        match step {
            0 => Some((Ok::<Bytes, std::io::Error>(Bytes::from_static(prefix)), 1)),
            1 => {
                if let Some(stall) = stall {
                    tokio::time::sleep(stall).await;
                }
                Some((Err(std::io::Error::other("emulated broken connection")), 2))
            }
            _ => None,
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, 4096)
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Waits the provider's latency (synchronous providers).
pub(crate) async fn wait(behaviour: &ProviderBehaviour) {
    if !behaviour.latency.is_zero() {
        tokio::time::sleep(behaviour.latency).await;
    }
}

/// What to render, read from a provider's payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MediaAsk {
    pub prompt: String,
    pub seed: Option<u64>,
    pub width: u32,
    pub height: u32,
    pub frames: u32,
    /// The input images of an edit or an animation (empty: rendered from the prompt alone).
    pub inputs: Arc<Vec<image::RgbImage>>,
}

fn dimension(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Width and height from the shapes providers use: `width`/`height`, `image_size: {width, height}`,
/// `target_size: {width, height}`, `size: "WxH"` or `"W*H"`.
fn explicit_size(params: &Value) -> Option<(u32, u32)> {
    if let (Some(w), Some(h)) = (
        params.get("width").and_then(dimension),
        params.get("height").and_then(dimension),
    ) {
        return Some((w, h));
    }
    for key in ["image_size", "target_size"] {
        if let Some(size) = params.get(key)
            && let (Some(w), Some(h)) = (
                size.get("width").and_then(dimension),
                size.get("height").and_then(dimension),
            )
        {
            return Some((w, h));
        }
    }
    let size = params.get("size")?.as_str()?;
    let (w, h) = size.split_once(['x', '*', 'X'])?;
    Some((w.trim().parse().ok()?, h.trim().parse().ok()?))
}

fn aspect_size(label: &str) -> Option<(u32, u32)> {
    Some(match label {
        "1:1" => (1024, 1024),
        "16:9" => (1024, 576),
        "9:16" => (576, 1024),
        "4:3" => (1024, 768),
        "3:4" => (768, 1024),
        "3:2" => (1024, 682),
        "2:3" => (682, 1024),
        "21:9" => (1024, 440),
        "9:21" => (440, 1024),
        "4:5" => (832, 1040),
        "5:4" => (1040, 832),
        "2:1" => (1024, 512),
        "1:2" => (512, 1024),
        _ => return None,
    })
}

/// An image request: the prompt under `prompt_key` of `body`, sizes from `params` (default 1024×1024).
pub(crate) fn image_ask(body: &Value, prompt_key: &str, params: &Value) -> Result<MediaAsk, Response> {
    let prompt = prompt_of(body, prompt_key)?;
    let seed = seed_of(&prompt, params);
    let (width, height) = explicit_size(params)
        .or_else(|| params.get("aspect_ratio").and_then(Value::as_str).and_then(aspect_size))
        .unwrap_or((1024, 1024));
    check_size(width, height)?;
    Ok(MediaAsk {
        prompt,
        seed: Some(seed),
        width,
        height,
        frames: 1,
        inputs: Arc::default(),
    })
}

/// A video request: explicit sizes win, else `resolution` and `aspect_ratio`; `num_frames` frames.
pub(crate) fn video_ask(body: &Value, prompt_key: &str, params: &Value) -> Result<MediaAsk, Response> {
    let prompt = prompt_of(body, prompt_key)?;
    let seed = seed_of(&prompt, params);
    let (width, height) = explicit_size(params).unwrap_or_else(|| {
        media::video_size(
            params.get("resolution").and_then(Value::as_str),
            params.get("aspect_ratio").and_then(Value::as_str),
        )
    });
    check_size(width, height)?;
    Ok(MediaAsk {
        prompt,
        seed: Some(seed),
        width,
        height,
        frames: frames_of(params),
        inputs: Arc::default(),
    })
}

fn frames_of(params: &Value) -> u32 {
    params
        .get("num_frames")
        .and_then(dimension)
        .unwrap_or(DEFAULT_FRAMES)
        .clamp(1, MAX_FRAMES)
}

/// What a request for `task` asks for from its prompt alone: a video for a video task ([`video_ask`]),
/// else an image ([`image_ask`]).
pub(crate) fn media_ask(task: &str, body: &Value, prompt_key: &str, params: &Value) -> Result<MediaAsk, Response> {
    if is_video(task) {
        video_ask(body, prompt_key, params)
    } else {
        image_ask(body, prompt_key, params)
    }
}

/// An edit (image tasks) or an animation (video tasks) of `inputs`: explicit sizes win, then (videos)
/// `resolution`/`aspect_ratio`, else the inputs' size ([`media::input_size`]; videos fit in
/// [`media::DEFAULT_VIDEO_SIDE`]).
pub(crate) fn input_ask(
    task: &str,
    prompt: String,
    params: &Value,
    inputs: Arc<Vec<image::RgbImage>>,
) -> Result<MediaAsk, Response> {
    let seed = seed_of(&prompt, params);
    let video = is_video(task);
    let named = explicit_size(params).or_else(|| {
        let resolution = params.get("resolution").and_then(Value::as_str);
        let aspect = params.get("aspect_ratio").and_then(Value::as_str);
        (video && (resolution.is_some() || aspect.is_some())).then(|| media::video_size(resolution, aspect))
    });
    let (width, height) = match named {
        Some(size) => size,
        None => {
            let max_side = if video {
                media::DEFAULT_VIDEO_SIDE
            } else {
                media::MAX_SIDE
            };
            media::input_size(&inputs, max_side).map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?
        }
    };
    check_size(width, height)?;
    Ok(MediaAsk {
        prompt,
        seed: Some(seed),
        width,
        height,
        frames: if video { frames_of(params) } else { 1 },
        inputs,
    })
}

/// Whether a task makes a video.
pub(crate) fn is_video(task: &str) -> bool {
    matches!(task, "text-to-video" | "image-to-video" | "image-text-to-video")
}

/// Whether a task takes input images (required or optional).
pub(crate) fn takes_images(task: &str) -> bool {
    matches!(
        task,
        "image-to-image" | "image-to-video" | "image-text-to-image" | "image-text-to-video"
    )
}

/// Whether a task requires an input image (`image-text-to-*` tasks may go without).
pub(crate) fn needs_images(task: &str) -> bool {
    matches!(task, "image-to-image" | "image-to-video")
}

/// The request's seed, or, like real providers that pick one, a seed derived from the prompt (so the
/// answer always names the seed that reproduces it).
fn seed_of(prompt: &str, params: &Value) -> u64 {
    params
        .get("seed")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| media::picture_seed(prompt, None) & 0xFFFF_FFFF)
}

/// The non-empty string prompt under `key`, or the 422 of a missing one.
pub(crate) fn prompt_of(body: &Value, key: &str) -> Result<String, Response> {
    match body.get(key).and_then(Value::as_str) {
        Some(prompt) if !prompt.trim().is_empty() => Ok(prompt.to_owned()),
        _ => Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("field required: `{key}` (a non-empty string)"),
        )),
    }
}

fn check_size(width: u32, height: u32) -> Result<(), Response> {
    if width == 0 || height == 0 || width > media::MAX_SIDE || height > media::MAX_SIDE {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "invalid size {width}x{height}: each side must be between 1 and {}",
                media::MAX_SIDE
            ),
        ));
    }
    Ok(())
}

/// Renders an image off the async threads: an edit of the inputs when there are some.
pub(crate) async fn render_image(ask: &MediaAsk, format: ImageFormat) -> Result<(Bytes, &'static str), Response> {
    let ask = ask.clone();
    tokio::task::spawn_blocking(move || {
        if ask.inputs.is_empty() {
            media::render_image(&ask.prompt, ask.seed, ask.width, ask.height, format)
        } else {
            media::edit_image(&ask.inputs, &ask.prompt, ask.seed, ask.width, ask.height, format)
        }
    })
    .await
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, format!("renderer crashed: {e}")))?
    .map(|bytes| (Bytes::from(bytes), format.mime()))
    .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))
}

/// Renders an MP4 video off the async threads: an animation of the inputs when there are some.
pub(crate) async fn render_video(ask: &MediaAsk) -> Result<(Bytes, &'static str), Response> {
    let ask = ask.clone();
    tokio::task::spawn_blocking(move || {
        if ask.inputs.is_empty() {
            media::render_video(&ask.prompt, ask.seed, ask.width, ask.height, ask.frames, FPS)
        } else {
            media::animate_image(
                &ask.inputs,
                &ask.prompt,
                ask.seed,
                ask.width,
                ask.height,
                ask.frames,
                FPS,
            )
        }
    })
    .await
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, format!("renderer crashed: {e}")))?
    .map(|bytes| (Bytes::from(bytes), "video/mp4"))
    .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))
}

/// Renders the media a task asks for and keeps it for download; returns the file id.
pub(crate) async fn render_and_store(
    state: &State,
    provider: &'static str,
    task: &str,
    ask: &MediaAsk,
    format: ImageFormat,
) -> Result<String, Response> {
    let recipe = crate::state::Recipe {
        task: task.to_owned(),
        ask: ask.clone(),
        format,
    };
    let (bytes, mime) = render(&recipe).await?;
    Ok(state.store_rendered(provider, bytes, mime, recipe))
}

/// Renders what a recipe says (again: rendering is deterministic).
pub(crate) async fn render(recipe: &crate::state::Recipe) -> Result<(Bytes, &'static str), Response> {
    if is_video(&recipe.task) {
        render_video(&recipe.ask).await
    } else {
        render_image(&recipe.ask, recipe.format).await
    }
}

/// The absolute URL of a stored file.
pub(crate) fn file_url(origin: &str, file_id: &str) -> String {
    format!("{origin}/_emulator/files/{file_id}")
}

/// Whether a model id (provider side) is one the catalogue serves for `provider`, and for which task.
pub(crate) fn served_task(state: &State, provider: &str, provider_id: &str) -> Option<&'static str> {
    state
        .catalogue
        .iter()
        .flat_map(|m| &m.entries)
        .find(|e| e.provider == provider && e.provider_id == provider_id)
        .map(|e| e.task)
}

/// The provider's 404 for a model it does not serve.
pub(crate) fn unknown_model(provider: &str, provider_id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("Model {provider_id} does not exist on {provider}"),
    )
}

/// A JSON body, or the provider's 400 when it is not JSON.
pub(crate) fn json_body(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

/// Seconds since the Unix epoch (`created` fields).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Now in UTC as providers write timestamps: `2025-01-23T15:47:32.383Z`.
pub(crate) fn timestamp_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        now.subsec_millis()
    )
}

/// Why the input images of a request cannot be used, for the provider to answer in its own shape.
#[derive(Debug)]
pub(crate) enum ImageProblem {
    /// The task needs an image and the request has none.
    Missing,
    /// The image in `field` cannot be used.
    Bad { field: String, error: InputError },
}

/// The input images of a request for `task`, read from `fields` of `body` (names in errors get `prefix`,
/// e.g. `input.`): `None` when the task takes none, or takes them optionally and got none.
pub(crate) async fn images_of(
    state: &State,
    headers: &HeaderMap,
    task: &str,
    body: &Value,
    fields: &[&str],
    prefix: &str,
) -> Result<Option<Arc<Vec<image::RgbImage>>>, ImageProblem> {
    if !takes_images(task) {
        return Ok(None);
    }
    let refs = inputs::image_refs(body, fields, prefix).map_err(|error| ImageProblem::Bad {
        field: match &error {
            InputError::NotAString(field) => field.clone(),
            _ => String::new(),
        },
        error,
    })?;
    if refs.is_empty() {
        return if needs_images(task) {
            Err(ImageProblem::Missing)
        } else {
            Ok(None)
        };
    }
    inputs::load(state, headers, &refs)
        .await
        .map(Some)
        .map_err(|(field, error)| ImageProblem::Bad { field, error })
}
