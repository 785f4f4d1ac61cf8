#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod auth;
mod config;
mod error;
mod fields;
mod form;
mod gallery;
mod images;
mod limits;
mod links;
mod listen;
mod media;
mod metrics;
mod models;
mod progress;
mod routes;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod videos;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use hf_media::{MediaGenerator, MediaGeneratorBuilder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{
    DEFAULT_ADDR, DEFAULT_IMAGE_MODEL, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONCURRENT, DEFAULT_VIDEO_MODEL,
    MAX_IMAGES_PER_REQUEST, ServerConfig,
};
pub use error::ServerError;

/// What every handler shares.
pub(crate) struct App {
    pub generator: MediaGenerator,
    pub config: ServerConfig,
    pub keys: auth::ApiKeys,
    pub slots: limits::Slots,
    pub links: links::MediaLinks,
    pub metrics: metrics::Metrics,
    pub models: models::ModelCatalogue,
    pub store: store::MediaStore,
    pub videos: videos::VideoJobs,
    /// Fired when the grace period after a shutdown signal is over: in-flight work stops.
    pub stop: CancellationToken,
}

/// An `hf-media serve` server: the OpenAI-compatible images and videos API, the media it made, and the
/// gallery page, over one [`MediaGenerator`].
///
/// ```no_run
/// # async fn run() -> Result<(), hf_media_server::ServerError> {
/// use hf_media::MediaGeneratorBuilder;
/// use hf_media_server::{Server, ServerConfig};
///
/// let server = Server::new(MediaGeneratorBuilder::from_env(), ServerConfig::new("generated_media")).await?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8787").await.map_err(|source| {
///     hf_media_server::ServerError::Io { context: "bind".into(), source }
/// })?;
/// server.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await
/// # }
/// ```
pub struct Server {
    app: Arc<App>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.app.config)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Builds the server: the generator from `builder` with the server's own settings (media stored in
    /// [`ServerConfig::output`], a folder or an object-store prefix, with their sidecars; local file
    /// inputs refused, the API keys scrubbed like every other secret),
    /// and the video job store opened (its schema brought up to date).
    pub async fn new(builder: MediaGeneratorBuilder, config: ServerConfig) -> Result<Server, ServerError> {
        config.check()?;
        let store = store::MediaStore::open(&config.output)?;
        store.prepare().await?;
        let sink = store.sink(&builder.config().sink);
        let mut builder = builder.sink(sink).allow_local_inputs(false);
        for key in &config.api_keys {
            builder = builder.redact(key.expose());
        }
        let generator = builder.build()?;
        let stop = CancellationToken::new();
        let metrics = metrics::Metrics::new();
        let videos = videos::VideoJobs::open(&config, &store, generator.clone(), metrics.clone(), stop.clone()).await?;
        let app = App {
            keys: auth::ApiKeys::new(&config),
            slots: limits::Slots::new(config.max_concurrent),
            links: links::MediaLinks::new(&config),
            models: models::ModelCatalogue::new(config.models_ttl),
            metrics,
            videos,
            store,
            generator,
            config,
            stop,
        };
        Ok(Server { app: Arc::new(app) })
    }

    /// The routes, as an [`axum::Router`] (to mount inside another app, or to drive in tests with
    /// `tower::ServiceExt::oneshot`).
    pub fn router(&self) -> Router {
        routes::router(self.app.clone())
    }

    /// The configuration it serves with.
    pub fn config(&self) -> &ServerConfig {
        &self.app.config
    }

    /// Serves connections from `listener` until `shutdown` resolves; then stops accepting, lets in-flight
    /// requests and video jobs go on for [`ServerConfig::grace`], and cancels what is left (nothing
    /// half-written stays: cancelled generations leave no file, running video jobs are put back with their
    /// provider job tickets, to be resumed by the next start or another replica).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        self.app.videos.start_workers();
        // When the shutdown came: the video jobs get the same grace as the requests, even when no
        // connection is left to wait for (a video's client polls; it holds no connection open).
        let signalled = Arc::new(std::sync::OnceLock::new());
        let shutdown = {
            let signalled = signalled.clone();
            let app = self.app.clone();
            async move {
                shutdown.await;
                let _ = signalled.set(tokio::time::Instant::now());
                app.videos.drain();
            }
        };
        let result = listen::serve(
            self.router(),
            listener,
            shutdown,
            self.app.config.clone(),
            self.app.stop.clone(),
        )
        .await;
        if !self.app.stop.is_cancelled() {
            let since = signalled.get().copied().unwrap_or_else(tokio::time::Instant::now);
            self.app.videos.idle(since + self.app.config.grace).await;
        }
        self.app.stop.cancel();
        self.app.videos.stop().await;
        result
    }
}
