//! `POST /v1/images/generations` (JSON) and `POST /v1/images/edits` (multipart): one [`Ask`] each, run
//! through the generator with its `n` generations in parallel, answered as OpenAI's `ImagesResponse`
//! (URLs or base64) or, with `stream: true`, as server-sent events.

mod answer;

mod stream;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Multipart, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use hf_media::{GenerateRequest, GenerationEvent, MediaInput, RunOptions, Task};
use serde_json::{Map, Value};

use crate::fields::{Ask, Endpoint, json_kind};
use crate::{App, ServerError};

pub(crate) use answer::media_name;

/// What an images request is, for its answer's event names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Generation,
    Edit,
}

impl Operation {
    /// The prefix of its streaming event types.
    fn event_prefix(self) -> &'static str {
        match self {
            Operation::Generation => "image_generation",
            Operation::Edit => "image_edit",
        }
    }
}

/// A JSON body read as an object, or the error that says what is wrong with it.
pub(crate) fn json_object(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Map<String, Value>, ServerError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ServerError::TooLarge { limit }
        } else {
            ServerError::bad_request(
                format!("the request body could not be read: {}", rejection.body_text()),
                None,
            )
        }
    })?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ServerError::bad_request(
            format!("the body must be a JSON object, not {}", json_kind(&other)),
            None,
        )),
        Err(e) => Err(ServerError::bad_request(
            format!(
                "the body is not valid JSON ({e}); send Content-Type: application/json and an object such as {{\"prompt\": \"a red fox\"}}"
            ),
            None,
        )),
    }
}

/// The sink key prefix of a request's media: `{unix}_{prompt slug}_{128 random bits}`; generation `i`
/// is stored at `{prefix}-{i}.{ext}`. The random part makes media URLs unguessable.
pub(crate) fn media_prefix(prompt: &str) -> Result<String, ServerError> {
    Ok(format!(
        "{}_{}_{}",
        crate::links::unix_now(),
        hf_media::sink::prompt_slug(prompt),
        crate::links::random_hex(16)?
    ))
}

/// `POST /v1/images/generations`.
pub(crate) async fn generations(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ServerError> {
    let fields = json_object(body, app.config.max_body_bytes)?;
    let ask = Ask::read(fields, Endpoint::Generations, &app.config.default_image_model)?;
    let request = request(&ask, Vec::new(), Task::TextToImage);
    run(app, &headers, ask, request, Operation::Generation, Vec::new()).await
}

/// `POST /v1/images/edits`.
pub(crate) async fn edits(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ServerError> {
    let multipart = multipart.map_err(|rejection| {
        ServerError::bad_request(
            format!(
                "an edit is sent as multipart/form-data with `image` (or `image[]`) files and a `prompt`: {}",
                rejection.body_text()
            ),
            "image",
        )
    })?;
    let form = crate::form::read(multipart, app.config.max_body_bytes).await?;
    if form.images.is_empty() {
        return Err(ServerError::bad_request(
            "an edit needs at least one `image` (or `image[]`) file",
            "image",
        ));
    }
    let ask = Ask::read(form.fields, Endpoint::Edits, &app.config.default_image_model)?;
    let mut notes = Vec::new();
    if form.mask {
        notes.push(
            "`mask` was read but not used: no provider hf-media reaches takes a mask; the prompt alone says what to change"
                .to_owned(),
        );
    }
    let request = request(&ask, form.images, Task::ImageToImage);
    run(app, &headers, ask, request, Operation::Edit, notes).await
}

/// The library request of an ask.
pub(crate) fn request(ask: &Ask, images: Vec<MediaInput>, task: Task) -> GenerateRequest {
    GenerateRequest {
        model: ask.model.clone(),
        prompt: Some(ask.prompt.clone()),
        params: ask.params.clone(),
        n: ask.n,
        images,
        task: Some(task),
        ..GenerateRequest::default()
    }
}

/// Runs `request` and answers: JSON once every generation has ended, or a stream of events.
async fn run(
    app: Arc<App>,
    headers: &HeaderMap,
    ask: Ask,
    request: GenerateRequest,
    operation: Operation,
    mut notes: Vec<String>,
) -> Result<Response, ServerError> {
    if app.stop.is_cancelled() {
        return Err(ServerError::ShuttingDown);
    }
    if !ask.ignored.is_empty() {
        tracing::debug!(ignored = ?ask.ignored, "OpenAI-only fields set aside");
    }
    let slots = app.slots.take(ask.n)?;
    let base = app.links.base(headers);
    // 128 random bits in each name: a new key, which the sink creates without looking for others.
    let options = RunOptions::default().fresh_media_key(media_prefix(&ask.prompt)?);
    let events = app.generator.generate_with(request, options);
    let started = Instant::now();
    if ask.stream {
        return Ok(stream::respond(app, ask, base, events, operation, slots, started).into_response());
    }
    let mut made = Vec::new();
    let mut failed = Vec::new();
    let mut events = events;
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            () = app.stop.cancelled() => return Err(ServerError::ShuttingDown),
        };
        match event {
            Some(GenerationEvent::Media(media)) => {
                app.metrics
                    .generation(&media.provider, "succeeded", media.elapsed.as_secs_f64());
                made.push(*media);
            }
            Some(GenerationEvent::Error { task: None, error }) => {
                app.metrics
                    .generation("none", error.kind(), started.elapsed().as_secs_f64());
                return Err(ServerError::Generation(error));
            }
            Some(GenerationEvent::Error { task: Some(_), error }) => {
                app.metrics
                    .generation(failed_provider(&error), error.kind(), started.elapsed().as_secs_f64());
                failed.push(error);
            }
            Some(GenerationEvent::Warning { task, message }) => {
                let note = match task {
                    Some(task) => format!("image {task}: {message}"),
                    None => message,
                };
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
            Some(GenerationEvent::Done { .. }) | None => break,
            Some(_) => {}
        }
    }
    drop(slots);
    if made.is_empty() {
        return Err(match failed.into_iter().next() {
            Some(error) => ServerError::Generation(error),
            None => ServerError::Internal("the generation ended without a media or an error".into()),
        });
    }
    made.sort_by_key(|media| media.task);
    let failed: Vec<Value> = failed
        .into_iter()
        .map(|error| ServerError::Generation(error).body()["error"].clone())
        .collect();
    let answer = answer::images_response(&app, &ask, &base, &made, &failed, &notes).await?;
    Ok(axum::Json(answer).into_response())
}

/// The provider a failed generation ended on, for the metrics.
fn failed_provider(error: &hf_media::Error) -> &str {
    match error {
        hf_media::Error::AllProvidersFailed { attempts, .. } | hf_media::Error::Timeout { attempts, .. } => {
            attempts.last().map_or("none", |a| a.provider.as_str())
        }
        hf_media::Error::ModelNotSupported { provider, .. } => provider,
        _ => "none",
    }
}
