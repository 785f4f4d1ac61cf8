#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod behaviour;
mod bench;
pub mod catalogue;
mod error;
mod hub;
pub mod media;
mod providers;
mod state;
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
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
            .route("/_emulator/stats", get(stats))
            .route("/_emulator/behaviour/{provider}", get(get_behaviour).put(put_behaviour))
            .nest("/_emulator/bench", bench::routes());
        for (prefix, routes) in providers::routes() {
            router = router.nest(prefix, routes);
        }
        router.with_state(self.state.clone())
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
    let Some(file) = state.file(&id) else {
        return support::error(StatusCode::NOT_FOUND, format!("no file {id}"));
    };
    if let Some(rule) = state.fault_for(file.provider, FaultTarget::Download) {
        return support::fault_response(&rule.fault, file.provider);
    }
    ([(header::CONTENT_TYPE, file.mime)], file.bytes).into_response()
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
    if !PROVIDERS.contains(&provider.as_str()) {
        return support::error(
            StatusCode::NOT_FOUND,
            format!("unknown provider {provider}: one of {}", PROVIDERS.join(", ")),
        );
    }
    state.set_behaviour(&provider, behaviour);
    StatusCode::NO_CONTENT.into_response()
}
