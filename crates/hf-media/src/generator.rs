//! The generator handle and the drive of one request: the plan, then `n` generations in parallel (at most
//! `concurrency` at a time), progress ticks, and the closing `done` event.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use hf_media_mapping::MappingClient;
use hf_media_provider::{ProviderRegistry, RetryPolicy, Secrets};
use hf_media_sink::DynMediaSink;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::access::Access;
use crate::emitter::Emitter;
use crate::request::MAX_GENERATIONS;
use crate::{
    Error, GenerateRequest, GeneratedMedia, GenerationEvent, MappingSource, MediaGeneratorBuilder, ProviderGate,
    RunOptions, plan, run,
};

/// Makes images and videos: resolves the model's providers, runs `n` generations in parallel with
/// fallback, and stores each media in the sink. Cheap to clone.
#[derive(Clone)]
pub struct MediaGenerator {
    inner: Arc<Inner>,
}

/// What a generator is made of, checked by the builder.
pub(crate) struct Inner {
    pub access: Access,
    pub hub: MappingClient,
    pub mapping: Arc<dyn MappingSource>,
    pub registry: ProviderRegistry,
    pub sink: DynMediaSink,
    pub provider_order: Vec<String>,
    pub generation_timeout: Option<Duration>,
    pub progress_interval: Duration,
    pub download_media: bool,
    pub max_input_bytes: u64,
    pub allow_local_inputs: bool,
    /// The emulator everything goes to, when offline.
    pub emulator: Option<url::Url>,
    pub retry: RetryPolicy,
    pub secrets: Secrets,
    /// The gate every provider call passes, when the caller set one.
    pub gate: Option<Arc<dyn ProviderGate>>,
}

impl fmt::Debug for MediaGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("MediaGenerator")
            .field("hub_url", &inner.access.hub_url.as_str())
            .field("router_url", &inner.access.router_url.as_str())
            .field("token", &inner.access.token.as_ref().map(|_| "[redacted]"))
            .field("registry", &inner.registry)
            .field("sink", &inner.sink)
            .field("provider_order", &inner.provider_order)
            .field("direct", &inner.access.direct.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The events of one [`MediaGenerator::generate`] call. Dropping it cancels every request in flight.
pub struct GenerationStream {
    events: mpsc::UnboundedReceiver<GenerationEvent>,
    driver: JoinHandle<()>,
}

impl fmt::Debug for GenerationStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerationStream").finish_non_exhaustive()
    }
}

impl Stream for GenerationStream {
    type Item = GenerationEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<GenerationEvent>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for GenerationStream {
    fn drop(&mut self) {
        // Aborting the driver drops its JoinSet, which aborts every generation task; their temporary
        // files are removed as their futures are dropped.
        self.driver.abort();
    }
}

impl MediaGenerator {
    /// A builder with every default.
    pub fn builder() -> MediaGeneratorBuilder {
        MediaGeneratorBuilder::default()
    }

    pub(crate) fn from_inner(inner: Inner) -> Self {
        MediaGenerator { inner: Arc::new(inner) }
    }

    /// The providers this generator knows.
    pub fn registry(&self) -> &ProviderRegistry {
        &self.inner.registry
    }

    /// The Hub client (shares the generator's cache), for listings. Generations ask the
    /// [`MappingSource`] given to the builder, when one was given, instead.
    pub fn mapping_client(&self) -> &MappingClient {
        &self.inner.hub
    }

    /// The secrets this generator scrubs from everything it reports: its token, its provider keys, and
    /// what [`MediaGeneratorBuilder::redact`] added (a server's own API keys).
    pub fn secrets(&self) -> &Secrets {
        &self.inner.secrets
    }

    /// Starts a request and returns its events as a stream. Must be called within a Tokio runtime.
    ///
    /// Each of the `n` generations runs in its own task and yields its media as soon as it is stored.
    /// The stream always ends with [`GenerationEvent::Done`]. Dropping it cancels the work in flight.
    pub fn generate(&self, request: GenerateRequest) -> GenerationStream {
        self.generate_with(request, RunOptions::default())
    }

    /// [`MediaGenerator::generate`] with [`RunOptions`]: only some of the `n` generations, jobs resumed
    /// instead of submitted, media stored at chosen keys. Bad options end the stream with an error before
    /// anything is sent.
    pub fn generate_with(&self, request: GenerateRequest, options: RunOptions) -> GenerationStream {
        let (tx, rx) = mpsc::unbounded_channel();
        let emitter = Emitter::new(tx, self.inner.secrets.clone());
        let driver = tokio::spawn(drive(self.inner.clone(), request, options, emitter));
        GenerationStream { events: rx, driver }
    }

    /// Runs a request to its end and returns each generation's outcome, in task order.
    pub async fn generate_all(&self, request: GenerateRequest) -> Vec<Result<GeneratedMedia, Error>> {
        let n = request.n.max(1);
        let mut outcomes: Vec<Option<Result<GeneratedMedia, Error>>> = (0..n).map(|_| None).collect();
        let mut request_error = None;
        let mut events = self.generate(request);
        while let Some(event) = events.next().await {
            match event {
                GenerationEvent::Media(media) => {
                    let task = media.task;
                    if let Some(slot) = outcomes.get_mut(task) {
                        *slot = Some(Ok(*media));
                    }
                }
                GenerationEvent::Error {
                    task: Some(task),
                    error,
                } => {
                    if let Some(slot) = outcomes.get_mut(task) {
                        *slot = Some(Err(error));
                    }
                }
                GenerationEvent::Error { task: None, error } => request_error = Some(error),
                _ => {}
            }
        }
        if let Some(error) = request_error {
            return vec![Err(error)];
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(Error::Config("the generation ended without an outcome".into()))))
            .collect()
    }
}

async fn drive(inner: Arc<Inner>, request: GenerateRequest, options: RunOptions, emitter: Emitter) {
    let started = Instant::now();
    let total = request.n.clamp(1, MAX_GENERATIONS);
    if let Err(error) = options.check(total) {
        emitter.error(error);
        emitter.done(0, total, started.elapsed());
        return;
    }
    let options = Arc::new(options);
    // The generations left out (`only`) neither succeed nor fail.
    let count = (0..total).filter(|task| options.runs(*task)).count();
    // The Hub call is part of every generation's deadline.
    let planned = match inner.generation_timeout {
        Some(limit) => tokio::time::timeout(limit, plan::make(&inner, request, &emitter))
            .await
            .unwrap_or_else(|_| Err(Error::MappingTimeout { after: limit })),
        None => plan::make(&inner, request, &emitter).await,
    };
    let plan = match planned {
        Ok(plan) => Arc::new(plan),
        Err(error) => {
            emitter.error(error);
            emitter.done(0, count, started.elapsed());
            return;
        }
    };
    let mut tasks = JoinSet::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(plan.concurrency));
    let running: Vec<usize> = (0..plan.total).filter(|task| options.runs(*task)).collect();
    for task in running {
        let (inner, plan, permits, options) = (inner.clone(), plan.clone(), permits.clone(), options.clone());
        let emitter = emitter.for_task(task);
        tasks.spawn(async move {
            // The generation's own deadline starts once it may run.
            let _permit = permits.acquire_owned().await;
            match run::generation(&inner, &plan, &options, task, &emitter).await {
                Ok(media) => {
                    emitter.media(media);
                    true
                }
                Err(error) => {
                    emitter.error(error);
                    false
                }
            }
        });
    }
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + inner.progress_interval,
        inner.progress_interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut succeeded, mut failed) = (0, 0);
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(true)) => succeeded += 1,
                Some(Ok(false)) => failed += 1,
                Some(Err(join_error)) => {
                    failed += 1;
                    tracing::error!(%join_error, "a generation task ended abnormally");
                }
            },
            _ = ticker.tick() => emitter.progress(started.elapsed(), succeeded + failed, count),
        }
    }
    emitter.done(succeeded, failed, started.elapsed());
}
