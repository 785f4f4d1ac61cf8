#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod behaviour;
mod bench;
pub mod catalogue;
mod error;
mod hub;
mod inputs;
pub mod media;
mod providers;
mod state;
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use behaviour::{Fault, FaultRule, FaultTarget, ProviderBehaviour};
pub use catalogue::{CatalogueEntry, CatalogueModel};
pub use error::EmulatorError;
pub use media::ImageFormat;

use crate::state::State;
use crate::support::Shared;

/// The providers the emulator speaks for, by Hub name.
pub const PROVIDERS: [&str; 8] = [
    "fal-ai",
    "hf-inference",
    "novita",
    "nscale",
    "replicate",
    "together",
    "wavespeed",
    "zai-org",
];

/// The name of the OpenAI-compatible images server (`/openai`) for behaviours and stats. It is not a
/// Hugging Face provider, so it is not in [`PROVIDERS`].
pub const OPENAI_SERVER: &str = "openai";

/// The largest request body the emulator reads (image inputs travel inline, up to four times in one
/// Replicate body).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A local stand-in for the Hugging Face Hub and router. Cheap to clone: clones share the state, so
/// behaviours can be changed while it serves.
#[derive(Clone)]
pub struct Emulator {
    state: Arc<State>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("models", &self.state.catalogue.len())
            .finish_non_exhaustive()
    }
}

impl Default for Emulator {
    fn default() -> Self {
        Emulator::new()
    }
}

impl Emulator {
    /// An emulator with the built-in catalogue and every provider answering quickly and correctly.
    pub fn new() -> Self {
        Emulator::with_catalogue(catalogue::builtin())
    }

    /// An emulator with another catalogue.
    pub fn with_catalogue(catalogue: Vec<CatalogueModel>) -> Self {
        Emulator {
            state: Arc::new(State::new(catalogue)),
        }
    }

    /// The models it serves.
    pub fn catalogue(&self) -> &[CatalogueModel] {
        &self.state.catalogue
    }

    /// Sets how `provider` behaves (latency, pending polls, image format, faults); resets its fault count.
    pub fn set_behaviour(&self, provider: &str, behaviour: ProviderBehaviour) {
        self.state.set_behaviour(provider, behaviour);
    }

    /// How `provider` behaves now.
    pub fn behaviour(&self, provider: &str) -> ProviderBehaviour {
        self.state.behaviour(provider)
    }

    /// Back to default behaviours, and request counts to zero.
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Hosts an input image at `/_emulator/inputs/{name}` (replacing one of that name), so that requests
    /// can name it by URL (`{url}/_emulator/inputs/{name}`, on the emulator's own address: the only
    /// http(s) URLs the providers fetch); returns that path. The MIME type is sniffed from the bytes.
    ///
    /// # Errors
    ///
    /// [`EmulatorError::Config`] when `name` is not 1 to 128 characters of `A-Z a-z 0-9 . _ -`.
    pub fn host_input(&self, name: &str, bytes: impl Into<Bytes>) -> Result<String, EmulatorError> {
        if !inputs::valid_input_name(name) {
            return Err(EmulatorError::Config(format!(
                "invalid input name {name:?}: use 1 to 128 characters of A-Z a-z 0-9 . _ -"
            )));
        }
        let bytes = bytes.into();
        let mime = inputs::sniff_mime(&bytes).to_owned();
        self.state.host_input(name, bytes, mime);
        Ok(format!("{}{name}", inputs::INPUTS_ROUTE))
    }

    /// Requests served so far, by kind (`hub model`, `fal-ai submit`, `fal-ai poll`, `download`, …).
    pub fn stats(&self) -> BTreeMap<String, u64> {
        self.state.stats()
    }

    /// The routes, to serve in-process or to mount in another application.
    pub fn router(&self) -> Router {
        let mut router = Router::new()
            .route("/api/models", get(hub::list_models))
            .route("/api/models/{*id}", get(hub::model_info))
            .route("/_emulator/health", get(|| async { "ok" }))
            .route("/_emulator/files/{id}", get(file))
            .route("/_emulator/inputs/{name}", get(get_input).put(put_input))
            .route("/_emulator/stats", get(stats))
            .route("/_emulator/behaviour/{provider}", get(get_behaviour).put(put_behaviour))
            .nest("/_emulator/bench", bench::routes());
        for (prefix, routes) in providers::routes() {
            router = router.nest(prefix, routes);
        }
        router
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self.state.clone())
    }

    /// Serves on `addr` (port 0 picks a free port) until the returned handle is shut down or dropped.
    pub async fn start(&self, addr: SocketAddr) -> Result<RunningEmulator, EmulatorError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| EmulatorError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind { addr, source })?;
        let (tx, rx) = oneshot::channel::<()>();
        let app = self.router();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "the emulator stopped");
            }
        });
        Ok(RunningEmulator {
            addr: local,
            shutdown: Some(tx),
            task,
        })
    }
}

/// A running emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct RunningEmulator {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningEmulator {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}`: the Hub URL and the router URL at once.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves until the process ends (for `hf-media emulator`).
    pub async fn wait(mut self) {
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = task.await;
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

async fn file(AxumState(state): AxumState<Shared>, Path(id): Path<String>) -> Response {
    state.count("download");
    let file = match state.find_file(&id) {
        Some(state::Found::File(file)) => file,
        // Its bytes were dropped to bound memory: rendered again, the same bytes.
        Some(state::Found::Recipe(provider, recipe)) => match support::render(&recipe).await {
            Ok((bytes, mime)) => {
                state.recache(&id, bytes.clone());
                state::StoredFile { provider, bytes, mime }
            }
            Err(response) => return response,
        },
        None => return support::error(StatusCode::NOT_FOUND, format!("no file {id}")),
    };
    if let Some(rule) = state.fault_for(file.provider, FaultTarget::Download) {
        return support::fault_response(&rule.fault, file.provider);
    }
    ([(header::CONTENT_TYPE, file.mime)], file.bytes).into_response()
}

async fn get_input(AxumState(state): AxumState<Shared>, Path(name): Path<String>) -> Response {
    state.count("input download");
    match state.input(&name) {
        Some((bytes, mime)) => ([(header::CONTENT_TYPE, mime)], bytes).into_response(),
        None => support::error(StatusCode::NOT_FOUND, format!("no input {name}")),
    }
}

/// `PUT /_emulator/inputs/{name}`: hosts the body (its Content-Type, else sniffed) and answers `201
/// {"url", "bytes"}`.
async fn put_input(
    AxumState(state): AxumState<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !inputs::valid_input_name(&name) {
        return support::error(
            StatusCode::BAD_REQUEST,
            format!("invalid input name {name}: use 1 to 128 characters of A-Z a-z 0-9 . _ -"),
        );
    }
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map_or_else(|| inputs::sniff_mime(&body).to_owned(), str::to_owned);
    let len = body.len();
    state.host_input(&name, body, mime);
    let url = format!("{}{}{name}", support::origin(&headers), inputs::INPUTS_ROUTE);
    (
        StatusCode::CREATED,
        axum::Json(serde_json::json!({"url": url, "bytes": len})),
    )
        .into_response()
}

async fn stats(AxumState(state): AxumState<Shared>) -> Response {
    axum::Json(state.stats()).into_response()
}

async fn get_behaviour(AxumState(state): AxumState<Shared>, Path(provider): Path<String>) -> Response {
    axum::Json(state.behaviour(&provider)).into_response()
}

async fn put_behaviour(
    AxumState(state): AxumState<Shared>,
    Path(provider): Path<String>,
    axum::Json(behaviour): axum::Json<ProviderBehaviour>,
) -> Response {
    if !PROVIDERS.contains(&provider.as_str()) && provider != OPENAI_SERVER {
        return support::error(
            StatusCode::NOT_FOUND,
            format!(
                "unknown provider {provider}: one of {}, or {OPENAI_SERVER}",
                PROVIDERS.join(", ")
            ),
        );
    }
    state.set_behaviour(&provider, behaviour);
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::providers::test_support::{client, png, quadrants, quadrants_url, serve_scripted};

    #[tokio::test]
    async fn a_file_whose_bytes_were_dropped_is_rendered_again_identically() {
        let state = state::State::new(Vec::new());
        let ask = support::MediaAsk {
            prompt: "a lighthouse".into(),
            seed: Some(7),
            width: 24,
            height: 16,
            frames: 1,
            inputs: std::sync::Arc::new(Vec::new()),
        };
        let first = support::render_and_store(&state, "fal-ai", "text-to-image", &ask, media::ImageFormat::Png)
            .await
            .unwrap();
        let original = state.file(&first).unwrap().bytes;
        // A long batch: many more files than the cache keeps.
        for i in 0..1100u64 {
            let recipe = state::Recipe {
                task: "text-to-image".into(),
                ask: support::MediaAsk {
                    seed: Some(i),
                    ..ask.clone()
                },
                format: media::ImageFormat::Png,
            };
            state.store_rendered("fal-ai", bytes::Bytes::from_static(b"x"), "image/png", recipe);
        }
        assert!(state.file(&first).is_none(), "its bytes were dropped");
        let Some(state::Found::Recipe(provider, recipe)) = state.find_file(&first) else {
            panic!("the file is still known")
        };
        assert_eq!(provider, "fal-ai");
        let (again, mime) = support::render(&recipe).await.unwrap();
        assert_eq!((again, mime), (original.clone(), "image/png"));
        state.recache(&first, original.clone());
        assert_eq!(state.file(&first).unwrap().bytes, original);
    }

    #[tokio::test]
    async fn input_images_are_hosted_for_tests() {
        let (emulator, running) = serve_scripted().await;
        let url = running.url();
        let bytes = png(&quadrants(8, 8));
        let answer = client()
            .put(format!("{url}/_emulator/inputs/cat.png"))
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201);
        let hosted: Value = answer.json().await.unwrap();
        assert_eq!(
            hosted,
            json!({"url": format!("{url}/_emulator/inputs/cat.png"), "bytes": bytes.len()})
        );
        let answer = client().get(hosted["url"].as_str().unwrap()).send().await.unwrap();
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "image/png");
        assert_eq!(answer.bytes().await.unwrap(), bytes);

        let answer = client()
            .put(format!("{url}/_emulator/inputs/notes.txt"))
            .header(header::CONTENT_TYPE, "text/plain")
            .body("hi")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201);
        let answer = client()
            .get(format!("{url}/_emulator/inputs/notes.txt"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "text/plain");
        let answer = client()
            .put(format!("{url}/_emulator/inputs/a%20b"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400);
        let answer = client()
            .get(format!("{url}/_emulator/inputs/missing.png"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);

        assert_eq!(
            emulator.host_input("dog.png", bytes).unwrap(),
            "/_emulator/inputs/dog.png"
        );
        assert!(matches!(
            emulator.host_input("../dog", vec![1]),
            Err(EmulatorError::Config(_))
        ));
        assert_eq!(emulator.stats()["input download"], 3);
    }

    #[tokio::test]
    async fn large_bodies_are_read() {
        let (_emulator, running) = serve_scripted().await;
        // Above axum's default 2 MB limit.
        let answer = client()
            .put(format!("{}/_emulator/inputs/big.bin", running.url()))
            .body(vec![0u8; 3 * 1024 * 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201);
        // Replicate's four copies of one image in one body.
        let image = quadrants_url();
        let padding = "x".repeat(3 * 1024 * 1024);
        let answer = client()
            .post(format!(
                "{}/replicate/v1/models/black-forest-labs/flux-kontext-dev/predictions",
                running.url()
            ))
            .bearer_auth("hf_test")
            .json(&json!({"input": {"prompt": "gold", "image": image, "input_image": image, "note": padding}}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201);
    }

    #[tokio::test]
    async fn behaviours_of_unknown_servers_are_refused() {
        let (_emulator, running) = serve_scripted().await;
        let answer = client()
            .put(format!("{}/_emulator/behaviour/nobody", running.url()))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);
        assert!(!PROVIDERS.contains(&OPENAI_SERVER));
    }
}
