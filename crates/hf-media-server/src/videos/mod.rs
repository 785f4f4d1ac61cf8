//! Video jobs, OpenAI's asynchronous videos API: `POST /v1/videos` (JSON or multipart, `input_reference`
//! for image-to-video) answers a queued Video object at once; `GET /v1/videos/{id}` says where it
//! stands (with `openai-poll-after-ms` while pending), `GET /v1/videos` pages them, `DELETE` removes one
//! (its job cancelled, its files removed), `GET /v1/videos/{id}/content` serves the MP4 with ranges.
//!
//! The jobs live in the batch state store ([`BatchState`]): one batch per server output, one item per
//! video. Each process runs a [worker](worker) that claims queued jobs under a lease, runs them with the
//! batch's [`ItemRunner`] (provider job tickets recorded the moment a provider accepts, so a job whose
//! process died is resumed by another replica or the next start, never paid twice), and renews its
//! leases. Several replicas share one PostgreSQL state (`--state postgres://…`); by default the state is
//! an SQLite file in the output folder.

mod object;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hf_media::{MediaGenerator, ModelSpec, Task};
use hf_media_batch::runner::{ItemRunner, MediaLayout};
use hf_media_batch::state::{BatchIdentity, BatchState, ItemKey, NewItem, WorkerId, open_state};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::fields::{Ask, Endpoint};
use crate::form;
use crate::images::json_object;
use crate::metrics::Metrics;
use crate::store::MediaStore;
use crate::{App, ServerConfig, ServerError};

pub(crate) use object::video_object;

/// How long a client is told to wait between polls of a pending video.
pub(crate) const POLL_AFTER_MS: u64 = 500;
/// The most videos a list page holds.
const MAX_PAGE: usize = 100;
/// The most a `input_reference` image may weigh.
const MAX_REFERENCE_BYTES: usize = 20 * 1024 * 1024;

/// The video jobs of this server: the state, this process's worker, the live progress of the jobs it
/// runs.
pub(crate) struct VideoJobs {
    state: Arc<dyn BatchState>,
    runner: Arc<ItemRunner>,
    config: ServerConfig,
    metrics: Metrics,
    /// The progress of the jobs this process runs, by item.
    progress: Arc<Mutex<HashMap<ItemKey, u8>>>,
    /// The cancel tokens of the jobs this process runs, by item.
    running: Arc<Mutex<HashMap<ItemKey, CancellationToken>>>,
    wake: Arc<Notify>,
    /// Fired when a shutdown begins: the worker claims no more jobs; the running ones go on.
    drain: CancellationToken,
    stop: CancellationToken,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl VideoJobs {
    /// Opens the state (its schema brought up to date) and the server's batch in it.
    pub async fn open(
        config: &ServerConfig,
        store: &MediaStore,
        generator: MediaGenerator,
        metrics: Metrics,
        stop: CancellationToken,
    ) -> Result<VideoJobs, ServerError> {
        let location = config.state.clone().unwrap_or_else(|| store.default_state());
        let state = open_state(&location).await?;
        let identity = BatchIdentity {
            key: format!("serve:{}", store.key()),
            fingerprint: "videos".into(),
            input: "hf-media serve".into(),
        };
        state.open_batch(&identity, &json!({ "server": "videos" })).await?;
        let progress: Arc<Mutex<HashMap<ItemKey, u8>>> = Arc::default();
        let observed = progress.clone();
        let runner = ItemRunner::new(generator, state.clone(), WorkerId::current(), MediaLayout::Flat).observer(
            Arc::new(move |key, event| {
                if let Some(value) = object::progress_after(event)
                    && let Ok(mut progress) = observed.lock()
                {
                    let entry = progress.entry(key).or_insert(0);
                    *entry = (*entry).max(value);
                }
            }),
        );
        Ok(VideoJobs {
            state,
            runner: Arc::new(runner),
            config: config.clone(),
            metrics,
            progress,
            running: Arc::default(),
            wake: Arc::new(Notify::new()),
            drain: CancellationToken::new(),
            stop,
            worker: Mutex::new(None),
        })
    }

    /// Starts this process's worker (once).
    pub fn start_workers(&self) {
        let Ok(mut worker) = self.worker.lock() else { return };
        if worker.is_none() {
            *worker = Some(tokio::spawn(worker::run(worker::Worker {
                runner: self.runner.clone(),
                state: self.state.clone(),
                concurrency: self.config.video_concurrency,
                lease: self.config.video_lease,
                progress: self.progress.clone(),
                running: self.running.clone(),
                wake: self.wake.clone(),
                drain: self.drain.clone(),
                stop: self.stop.clone(),
                metrics: self.metrics.clone(),
            })));
        }
    }

    /// A shutdown began: the worker claims no more jobs (the running ones go on until [`stop`]).
    ///
    /// [`stop`]: VideoJobs::stop
    pub fn drain(&self) {
        self.drain.cancel();
    }

    /// Waits until this process runs no job, or until `deadline`.
    pub async fn idle(&self, deadline: tokio::time::Instant) {
        while tokio::time::Instant::now() < deadline && self.running.lock().is_ok_and(|r| !r.is_empty()) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Stops the worker: its running jobs are put back (with their tickets) for the next start or another
    /// replica.
    pub async fn stop(&self) {
        self.stop.cancel();
        let handle = self.worker.lock().ok().and_then(|mut worker| worker.take());
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }

    fn live_progress(&self, key: ItemKey) -> Option<u8> {
        self.progress.lock().ok().and_then(|p| p.get(&key).copied())
    }
}

/// A video id: `video_` then 32 lowercase hex digits.
fn valid_id(id: &str) -> bool {
    id.strip_prefix("video_")
        .is_some_and(|hex| hex.len() == 32 && hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)))
}

fn no_video(id: &str) -> ServerError {
    ServerError::NotFound {
        message: format!("no video `{}`", id.chars().take(80).collect::<String>()),
        param: Some("video_id".into()),
    }
}

/// The routes.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/videos", get(list).post(create))
        .route("/v1/videos/{id}", get(retrieve).delete(delete))
        .route("/v1/videos/{id}/content", get(content))
}

/// A pending video's answer carries how long to wait before the next poll.
fn with_poll_after(video: Value) -> Response {
    let pending = matches!(video["status"].as_str(), Some("queued" | "in_progress"));
    let mut response = axum::Json(video).into_response();
    if pending {
        response
            .headers_mut()
            .insert("openai-poll-after-ms", HeaderValue::from(POLL_AFTER_MS));
    }
    response
}

/// `POST /v1/videos`: multipart (as the SDK sends it) or JSON.
async fn create(State(app): State<Arc<App>>, request: Request) -> Result<Response, ServerError> {
    if app.stop.is_cancelled() {
        return Err(ServerError::ShuttingDown);
    }
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/"));
    let (fields, images) = if multipart {
        let multipart = Multipart::from_request(request, &app)
            .await
            .map_err(|rejection| ServerError::bad_request(rejection.body_text(), None))?;
        let form = form::read(multipart, app.config.max_body_bytes).await?;
        (form.fields, form.images)
    } else {
        let body: Result<Bytes, BytesRejection> = Bytes::from_request(request, &app).await;
        (json_object(body, app.config.max_body_bytes)?, Vec::new())
    };
    if images.len() > 1 {
        return Err(ServerError::bad_request(
            "a video takes one `input_reference` image",
            "input_reference",
        ));
    }
    if images
        .iter()
        .any(|image| matches!(image, hf_media::MediaInput::Bytes(bytes) if bytes.len() > MAX_REFERENCE_BYTES))
    {
        return Err(ServerError::bad_request(
            format!("`input_reference` is larger than {MAX_REFERENCE_BYTES} bytes"),
            "input_reference",
        ));
    }
    let ask = Ask::read(fields, Endpoint::Videos, &app.config.default_video_model)?;
    check_model(&app, &ask.model).await?;
    let task = if images.is_empty() {
        Task::TextToVideo
    } else {
        Task::ImageToVideo
    };
    let request = crate::images::request(&ask, images, task);
    let spec = serde_json::to_value(&request)
        .map_err(|e| ServerError::Internal(format!("the video request could not be stored: {e}")))?;
    let id = format!("video_{}", crate::links::random_hex(16)?);
    let item = NewItem {
        position: 0,
        id: id.clone(),
        // A server's jobs come from no input file: the line holds when the job was created (unix ms).
        line: object::unix_ms(),
        n: 1,
        spec,
        invalid: None,
    };
    app.videos.state.append_item(item).await?;
    let mut row = app
        .videos
        .state
        .item(&id)
        .await?
        .ok_or_else(|| ServerError::Internal("a stored video job could not be read back".into()))?;
    app.videos.wake.notify_one();
    // The answer is the job as created (queued), even when a worker (this one looks every half second,
    // or another replica) claimed it before it was read back.
    row.state = hf_media_batch::state::ItemState::Pending;
    row.attempts = 0;
    row.jobs.clear();
    row.media.clear();
    row.error = None;
    row.provider = None;
    row.finished_at = None;
    Ok(with_poll_after(video_object(&row, None, ask.seconds.as_deref())))
}

/// Fails at once for a model the Hub does not know, or one it lists with no provider that makes videos
/// (an image model), rather than queueing a job that can only fail.
async fn check_model(app: &App, model: &str) -> Result<(), ServerError> {
    let spec = ModelSpec::parse(model)?;
    match app.generator.mapping_client().mapping(&spec.model).await {
        Err(error @ hf_media::MappingError::ModelNotFound { .. }) => Err(ServerError::Generation(
            hf_media::Error::Mapping(error).scrubbed(app.generator.secrets()),
        )),
        Ok(mapping) => {
            // The entries the job could run on: the named provider's (whatever their status), else the
            // live ones. A named provider the Hub does not list is the job's to try.
            let entries: Vec<_> = match &spec.provider {
                Some(provider) => mapping.entries.iter().filter(|e| &e.provider == provider).collect(),
                None => mapping.live().collect(),
            };
            if (spec.provider.is_none() || !entries.is_empty()) && !entries.iter().any(|e| e.task.makes_video()) {
                let tasks: Vec<String> = entries.iter().map(|e| format!("{} ({})", e.provider, e.task)).collect();
                let listed = if tasks.is_empty() {
                    "the Hub lists no live provider for it".to_owned()
                } else {
                    format!("the Hub lists {}", tasks.join(", "))
                };
                return Err(ServerError::Generation(hf_media::Error::NoProvider {
                    model: spec.model,
                    reason: format!(
                        "no provider makes videos with it ({listed}); name a video model (GET /v1/models lists them)"
                    ),
                }));
            }
            Ok(())
        }
        // Other Hub failures are the job's to meet (and retry).
        Err(_) => Ok(()),
    }
}

/// `GET /v1/videos/{id}`.
async fn retrieve(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response, ServerError> {
    if !valid_id(&id) {
        return Err(no_video(&id));
    }
    let row = app.videos.state.item(&id).await?.ok_or_else(|| no_video(&id))?;
    let progress = app.videos.live_progress(row.key);
    Ok(with_poll_after(video_object(&row, progress, None)))
}

/// The list's query.
#[derive(Debug, Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
    order: Option<String>,
}

/// `GET /v1/videos`.
async fn list(State(app): State<Arc<App>>, Query(query): Query<ListQuery>) -> Result<Response, ServerError> {
    let limit = query.limit.unwrap_or(20).clamp(1, MAX_PAGE);
    let descending = match query.order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(ServerError::bad_request(
                format!("`order` must be `asc` or `desc`, not `{other}`"),
                "order",
            ));
        }
    };
    let after = query.after.filter(|a| !a.is_empty());
    if let Some(after) = &after
        && !valid_id(after)
    {
        return Err(ServerError::bad_request(
            format!("`after`: no video `{after}`"),
            "after",
        ));
    }
    let mut rows = app
        .videos
        .state
        .items_page(after.as_deref(), limit + 1, descending)
        .await
        .map_err(|error| match error {
            hf_media_batch::BatchError::UnknownItem { id } => {
                ServerError::bad_request(format!("`after`: no video `{id}`"), "after")
            }
            other => ServerError::State(other),
        })?;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let data: Vec<Value> = rows
        .iter()
        .map(|row| video_object(row, app.videos.live_progress(row.key), None))
        .collect();
    let first = rows.first().map(|r| r.id.clone());
    let last = rows.last().map(|r| r.id.clone());
    Ok(axum::Json(json!({
        "object": "list",
        "data": data,
        "has_more": has_more,
        "first_id": first,
        "last_id": last,
    }))
    .into_response())
}

/// `DELETE /v1/videos/{id}`: the job is cancelled (wherever it runs: this process at once, another
/// replica at its next lease renewal), its record and its files removed.
async fn delete(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response, ServerError> {
    if !valid_id(&id) {
        return Err(no_video(&id));
    }
    let row = app.videos.state.delete_item(&id).await?.ok_or_else(|| no_video(&id))?;
    let token = app
        .videos
        .running
        .lock()
        .ok()
        .and_then(|running| running.get(&row.key).cloned());
    if let Some(token) = token {
        token.cancel();
        // The run ends at its next step; its media, if it stored one meanwhile, is removed below.
        for _ in 0..100 {
            let still = app
                .videos
                .running
                .lock()
                .is_ok_and(|running| running.contains_key(&row.key));
            if !still {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    object::remove_files(&app.store, &id).await;
    Ok(axum::Json(json!({ "id": id, "object": "video.deleted", "deleted": true })).into_response())
}

/// The content's query.
#[derive(Debug, Deserialize)]
struct ContentQuery {
    variant: Option<String>,
}

/// `GET /v1/videos/{id}/content`.
async fn content(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(query): Query<ContentQuery>,
    request: Request,
) -> Result<Response, ServerError> {
    if !valid_id(&id) {
        return Err(no_video(&id));
    }
    match query.variant.as_deref() {
        None | Some("video") => {}
        Some(other) => {
            return Err(ServerError::NotFound {
                message: format!("video `{id}` has no `{other}` variant: only `video` is made"),
                param: Some("variant".into()),
            });
        }
    }
    let row = app.videos.state.item(&id).await?.ok_or_else(|| no_video(&id))?;
    let Some(name) = object::media_file(&app.store, &id).await? else {
        return Err(ServerError::NotFound {
            message: format!(
                "video `{id}` has no content yet (status {}): poll GET /v1/videos/{id} until it is completed",
                object::status(&row)
            ),
            param: None,
        });
    };
    let mut response = crate::media::serve_stored(&app, request, &name).await?;
    if let Ok(value) = HeaderValue::from_str(&format!("inline; filename=\"{id}.mp4\"")) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
