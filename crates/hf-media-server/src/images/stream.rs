//! The streaming answer of an images request (`stream: true`): real server-sent events as the OpenAI SDK
//! reads them (`event:` then `data:` with the event's `type`; no `id:` lines), `:` keep-alive comments
//! while nothing happens, `*.partial_image` events carrying the provider's progress when the client asked
//! for partial images (at most `partial_images` per image; providers send no previews, so each carries a
//! small placeholder picture of the image's shape with a progress bar drawn on it, which decodes like any
//! partial image), one `*.completed` event per image (`b64_json`, plus its `index` and `url`), an
//! `error` event per failed generation, and `data: [DONE]` at the end. The generations run while the
//! client reads: a client that goes away cancels them.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::response::sse::{Event, KeepAlive, Sse};
use base64::Engine;
use futures::{Stream, StreamExt};
use hf_media::{GenerationEvent, GenerationStream};
use serde_json::{Value, json};

use super::Operation;
use super::answer::{image_entry, output_format};
use crate::fields::{Ask, ResponseFormat};
use crate::limits::Held;
use crate::links::unix_now;
use crate::progress::progress_of;
use crate::{App, ServerError};

struct Streaming {
    app: Arc<App>,
    ask: Ask,
    base: String,
    events: Option<GenerationStream>,
    operation: Operation,
    _slots: Held,
    started: Instant,
    queue: VecDeque<Event>,
    /// Partial events sent so far, by image.
    partials: HashMap<usize, u8>,
    done: bool,
}

fn sse(kind: &str, data: &Value) -> Event {
    Event::default().event(kind).data(data.to_string())
}

/// The answer.
pub(crate) fn respond(
    app: Arc<App>,
    ask: Ask,
    base: String,
    events: GenerationStream,
    operation: Operation,
    slots: Held,
    started: Instant,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let keep_alive = KeepAlive::new().interval(app.config.keep_alive).text("keep-alive");
    let state = Streaming {
        app,
        ask,
        base,
        events: Some(events),
        operation,
        _slots: slots,
        started,
        queue: VecDeque::new(),
        partials: HashMap::new(),
        done: false,
    };
    let stream = futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.queue.pop_front() {
                return Some((Ok(event), state));
            }
            if state.done {
                return None;
            }
            let next = match state.events.as_mut() {
                Some(events) => {
                    tokio::select! {
                        event = events.next() => event,
                        () = state.app.stop.cancelled() => {
                            state.events = None;
                            let error = ServerError::ShuttingDown;
                            state.queue.push_back(sse("error", &json!({"type": "error", "error": error.body()["error"]})));
                            state.queue.push_back(Event::default().data("[DONE]"));
                            state.done = true;
                            continue;
                        }
                    }
                }
                None => None,
            };
            match next {
                Some(event) => state.on(event).await,
                None => {
                    state.events = None;
                    state.queue.push_back(Event::default().data("[DONE]"));
                    state.done = true;
                }
            }
        }
    });
    Sse::new(stream).keep_alive(keep_alive)
}

impl Streaming {
    fn kind(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.operation.event_prefix())
    }

    fn error(&mut self, index: Option<usize>, error: hf_media::Error) {
        let mut body = ServerError::Generation(error).body();
        if let Some(index) = index {
            body["error"]["index"] = json!(index);
        }
        self.queue
            .push_back(sse("error", &json!({"type": "error", "error": body["error"]})));
    }

    async fn on(&mut self, event: GenerationEvent) {
        match event {
            GenerationEvent::ProviderStatus { task, provider, status } => {
                let sent = self.partials.entry(task).or_insert(0);
                if *sent >= self.ask.partial_images {
                    return;
                }
                let index = *sent;
                *sent += 1;
                let progress = progress_of(&status.state);
                let kind = self.kind("partial_image");
                let data = json!({
                    "type": kind,
                    "b64_json": placeholder(&self.ask, progress),
                    "partial_image_index": index,
                    "index": task,
                    "provider": provider,
                    "status": status.state,
                    "queue_position": status.queue_position,
                    "progress": progress,
                    "created_at": unix_now(),
                    "output_format": "png",
                    "size": self.ask.size.clone().unwrap_or_else(|| "auto".into()),
                    "quality": "auto",
                    "background": "auto",
                });
                self.queue.push_back(sse(&kind, &data));
            }
            GenerationEvent::Media(media) => {
                self.app
                    .metrics
                    .generation(&media.provider, "succeeded", media.elapsed.as_secs_f64());
                let entry = image_entry(&self.app, &self.ask, &self.base, &media, ResponseFormat::B64Json).await;
                let url = super::media_name(&self.app, &media)
                    .map(|name| self.app.links.url(&self.base, &name))
                    .ok();
                match entry {
                    Ok(entry) => {
                        let kind = self.kind("completed");
                        let data = json!({
                            "type": kind,
                            "b64_json": entry["b64_json"],
                            "index": media.task,
                            "url": url,
                            "revised_prompt": self.ask.prompt,
                            "model": media.model,
                            "provider": media.provider,
                            "seed": media.seed,
                            "created_at": unix_now(),
                            "output_format": output_format(&media),
                            "size": self.ask.size.clone().unwrap_or_else(|| "auto".into()),
                            "quality": "auto",
                            "background": "auto",
                            "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
                                      "input_tokens_details": {"image_tokens": 0, "text_tokens": 0}},
                        });
                        self.queue.push_back(sse(&kind, &data));
                    }
                    Err(error) => {
                        let body = error.body();
                        self.queue
                            .push_back(sse("error", &json!({"type": "error", "error": body["error"]})));
                    }
                }
            }
            GenerationEvent::Error { task, error } => {
                self.app
                    .metrics
                    .generation("none", error.kind(), self.started.elapsed().as_secs_f64());
                self.error(task, error);
            }
            _ => {}
        }
    }
}

/// The longest side of a placeholder picture.
const PLACEHOLDER_SIDE: u32 = 128;

/// A placeholder picture of the asked image's shape (its long side [`PLACEHOLDER_SIDE`]) with a
/// progress bar at `progress` percent, as base64 PNG.
fn placeholder(ask: &Ask, progress: u8) -> String {
    let (width, height) = ask.params.size().unwrap_or((1, 1));
    let scale = f64::from(PLACEHOLDER_SIDE) / f64::from(width.max(height).max(1));
    let (w, h) = (
        ((f64::from(width) * scale).round() as u32).clamp(8, PLACEHOLDER_SIDE),
        ((f64::from(height) * scale).round() as u32).clamp(8, PLACEHOLDER_SIDE),
    );
    let filled = w * u32::from(progress.min(100)) / 100;
    let (top, bottom) = (h / 2 - h / 16 - 1, h / 2 + h / 16 + 1);
    let picture = image::RgbImage::from_fn(w, h, |x, y| {
        if (top..bottom).contains(&y) && x < filled {
            image::Rgb([74, 144, 226])
        } else if (top..bottom).contains(&y) {
            image::Rgb([70, 70, 70])
        } else {
            image::Rgb([34, 34, 34])
        }
    });
    let mut png = std::io::Cursor::new(Vec::new());
    if picture.write_to(&mut png, image::ImageFormat::Png).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(png.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use serde_json::Map;

    #[test]
    fn placeholders_are_pictures_of_the_asked_shape() {
        let mut fields = Map::new();
        fields.insert("prompt".into(), json!("x"));
        fields.insert("size".into(), json!("1024x512"));
        let ask = Ask::read(fields, crate::fields::Endpoint::Generations, "m/x").unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(placeholder(&ask, 50))
            .unwrap();
        let picture = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!((picture.width(), picture.height()), (128, 64));
        assert_eq!(picture.get_pixel(10, 32).0, [74, 144, 226], "half the bar is filled");
        assert_eq!(picture.get_pixel(100, 32).0, [70, 70, 70]);
    }
}
