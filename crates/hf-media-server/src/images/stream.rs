//! The streaming answer of an images request (`stream: true`): real server-sent events as the OpenAI SDK
//! reads them (`event:` then `data:` with the event's `type`; no `id:` lines), `:` keep-alive comments
//! while nothing happens, `*.partial_image` events carrying the provider's progress when the client asked
//! for partial images, one `*.completed` event per image (`b64_json`, plus its `index` and `url`), an
//! `error` event per failed generation, and `data: [DONE]` at the end. The generations run while the
//! client reads: a client that goes away cancels them.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use hf_media::{GenerationEvent, GenerationStream};
use serde_json::{Value, json};

use super::Operation;
use super::answer::{image_entry, output_format, unix_now};
use crate::fields::{Ask, ResponseFormat};
use crate::limits::Held;
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
    partials: usize,
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
        partials: 0,
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
            GenerationEvent::ProviderStatus { task, provider, status } if self.ask.partial_images > 0 => {
                let kind = self.kind("partial_image");
                let data = json!({
                    "type": kind,
                    "partial_image_index": self.partials,
                    "index": task,
                    "provider": provider,
                    "status": status.state,
                    "queue_position": status.queue_position,
                    "progress": progress_of(&status.state),
                    "created_at": unix_now(),
                    "output_format": "png",
                    "size": self.ask.size.clone().unwrap_or_else(|| "auto".into()),
                    "quality": "auto",
                    "background": "auto",
                });
                self.partials += 1;
                self.queue.push_back(sse(&kind, &data));
            }
            GenerationEvent::Media(media) => {
                self.app
                    .metrics
                    .generation(&media.provider, "succeeded", media.elapsed.as_secs_f64());
                let entry = image_entry(&self.app, &self.ask, &self.base, &media, ResponseFormat::B64Json).await;
                let url = super::media_name(&self.app.config.output, &media)
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
