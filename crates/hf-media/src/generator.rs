use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{Stream, StreamExt};
use hf_media_mapping::{MappingClient, ModelMapping, ProviderMapping, Task};
use hf_media_prompt::{GenerationParams, format_prompt};
use hf_media_provider::{
    GenerationRequest, MediaBody, NoticeReporter, PollConfig, ProviderContext, ProviderError, ProviderNotice,
    ProviderRegistry, http,
};
use hf_media_sink::{BoxError, DynMediaSink, FileSink, MediaKind, MediaLocation, MediaRecord, MediaTimings, SinkError};
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use url::Url;

use crate::request::{MAX_GENERATIONS, ModelSpec};
use crate::retry::RetryPolicy;
use crate::selection::{Candidate, select};
use crate::{Error, GenerateRequest, GeneratedMedia, GenerationEvent, ProviderAttempt};

/// The Hugging Face router's default address.
pub const DEFAULT_ROUTER_URL: &str = "https://router.huggingface.co";

/// Makes images and videos: resolves the model's providers, runs `n` generations in parallel with
/// fallback, and stores each media in the sink. Cheap to clone.
#[derive(Clone)]
pub struct MediaGenerator {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    mapping: MappingClient,
    router_url: Url,
    hub_url: Url,
    token: Option<SecretString>,
    registry: ProviderRegistry,
    sink: DynMediaSink,
    provider_order: Vec<String>,
    poll: PollConfig,
    generation_timeout: Option<Duration>,
    progress_interval: Duration,
    bill_to: Option<HeaderValue>,
    /// Providers called on their own API with their own key.
    direct: HashMap<String, DirectAccess>,
    download_media: bool,
    retry: RetryPolicy,
    request_timeout: Duration,
}

/// A provider's own API and key.
struct DirectAccess {
    base_url: Url,
    key: SecretString,
}

impl fmt::Debug for MediaGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaGenerator")
            .field("hub_url", &self.inner.hub_url.as_str())
            .field("router_url", &self.inner.router_url.as_str())
            .field("token", &self.inner.token.as_ref().map(|_| "[redacted]"))
            .field("registry", &self.inner.registry)
            .field("sink", &self.inner.sink)
            .field("provider_order", &self.inner.provider_order)
            .field("direct", &self.inner.direct.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Builds a [`MediaGenerator`]. Only the token is required.
pub struct MediaGeneratorBuilder {
    token: Option<SecretString>,
    hub_url: Option<String>,
    router_url: Option<String>,
    sink: Option<DynMediaSink>,
    registry: Option<ProviderRegistry>,
    provider_order: Vec<String>,
    poll: PollConfig,
    connect_timeout: Duration,
    read_timeout: Duration,
    generation_timeout: Option<Duration>,
    mapping_cache_ttl: Duration,
    progress_interval: Duration,
    http: Option<reqwest::Client>,
    bill_to: Option<String>,
    provider_keys: HashMap<String, SecretString>,
    provider_urls: HashMap<String, String>,
    provider_keys_from_env: bool,
    download_media: bool,
    retry: RetryPolicy,
    request_timeout: Duration,
}

impl fmt::Debug for MediaGeneratorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaGeneratorBuilder")
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("hub_url", &self.hub_url)
            .field("router_url", &self.router_url)
            .field("provider_keys", &self.provider_keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Default for MediaGeneratorBuilder {
    fn default() -> Self {
        MediaGeneratorBuilder {
            token: None,
            hub_url: None,
            router_url: None,
            sink: None,
            registry: None,
            provider_order: Vec::new(),
            poll: PollConfig::default(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(120),
            generation_timeout: Some(Duration::from_secs(30 * 60)),
            mapping_cache_ttl: hf_media_mapping::DEFAULT_CACHE_TTL,
            progress_interval: Duration::from_millis(500),
            http: None,
            bill_to: None,
            provider_keys: HashMap::new(),
            provider_urls: HashMap::new(),
            provider_keys_from_env: false,
            download_media: true,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(300),
        }
    }
}

impl MediaGeneratorBuilder {
    /// Reads the environment: the token (`HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`, `$HF_HOME/token`), `HF_ENDPOINT`
    /// for the Hub, `HF_ROUTER_URL` for the router, and each provider's own key variable (`FAL_KEY`, …; see
    /// [`MediaGeneratorBuilder::provider_keys_from_env`]). Setters called afterwards win.
    pub fn from_env() -> Self {
        MediaGeneratorBuilder {
            token: crate::token::find_token().map(|(token, _)| token),
            hub_url: std::env::var("HF_ENDPOINT").ok().filter(|s| !s.trim().is_empty()),
            router_url: std::env::var("HF_ROUTER_URL").ok().filter(|s| !s.trim().is_empty()),
            provider_keys_from_env: true,
            ..MediaGeneratorBuilder::default()
        }
    }

    /// The Hugging Face token, sent to the Hub and the router only.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(SecretString::from(token.into()));
        self
    }

    /// The token, already a secret.
    pub fn secret_token(mut self, token: SecretString) -> Self {
        self.token = Some(token);
        self
    }

    /// The Hub's base URL (default `https://huggingface.co`).
    pub fn hub_url(mut self, url: impl Into<String>) -> Self {
        self.hub_url = Some(url.into());
        self
    }

    /// The router's base URL (default [`DEFAULT_ROUTER_URL`]).
    pub fn router_url(mut self, url: impl Into<String>) -> Self {
        self.router_url = Some(url.into());
        self
    }

    /// Where media goes (default: a [`FileSink`] on `./generated_media`).
    pub fn sink(mut self, sink: DynMediaSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// The providers (default [`ProviderRegistry::with_defaults`]).
    pub fn registry(mut self, registry: ProviderRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Providers to try first, in this order, before the rest in the Hub's order.
    pub fn provider_order<I, S>(mut self, order: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.provider_order = order.into_iter().map(Into::into).collect();
        self
    }

    /// Polling of asynchronous providers (default: every 500 ms, for at most 15 minutes).
    pub fn poll(mut self, poll: PollConfig) -> Self {
        self.poll = poll;
        self
    }

    /// How long a connection may take to open (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Retries of transient failures on the same provider (default: 3 tries, backoff from 500 ms to 10 s
    /// with jitter, `Retry-After` honoured up to 60 s).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The longest one API call may take, answer included (default 300 s). Media downloads are bounded
    /// by the stall timeout ([`MediaGeneratorBuilder::read_timeout`]) and the generation deadline instead.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long a response may go without sending a byte: the stall timeout (default 120 s: replicate
    /// holds answers up to 60 s).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// The longest one generation may take, all providers included (default 30 minutes; `None`: no limit).
    pub fn generation_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.generation_timeout = timeout;
        self
    }

    /// How long the Hub's answers are cached (default 10 minutes).
    pub fn mapping_cache_ttl(mut self, ttl: Duration) -> Self {
        self.mapping_cache_ttl = ttl;
        self
    }

    /// How often a [`GenerationEvent::Progress`] tick is sent while waiting (default 500 ms).
    pub fn progress_interval(mut self, interval: Duration) -> Self {
        self.progress_interval = interval;
        self
    }

    /// Bills router calls to this organization (`X-HF-Bill-To`).
    pub fn bill_to(mut self, org: impl Into<String>) -> Self {
        self.bill_to = Some(org.into());
        self
    }

    /// Calls `provider` on its own API with its own key (sent only to that provider), instead of through
    /// the router with the HF token. The provider must have a direct API
    /// ([`MediaProvider::direct_base_url`](hf_media_provider::MediaProvider::direct_base_url)).
    pub fn provider_key(mut self, provider: impl Into<String>, key: impl Into<String>) -> Self {
        self.provider_keys
            .insert(provider.into(), SecretString::from(key.into()));
        self
    }

    /// Uses `url` instead of the provider's own API address for direct calls (a proxy, a test server).
    pub fn provider_url(mut self, provider: impl Into<String>, url: impl Into<String>) -> Self {
        self.provider_urls.insert(provider.into(), url.into());
        self
    }

    /// At build time, reads each registered provider's key variable
    /// ([`MediaProvider::direct_key_env`](hf_media_provider::MediaProvider::direct_key_env): `FAL_KEY`,
    /// `REPLICATE_API_TOKEN`, `TOGETHER_API_KEY`, …) for the providers given no key explicitly.
    pub fn provider_keys_from_env(mut self, read: bool) -> Self {
        self.provider_keys_from_env = read;
        self
    }

    /// Whether media are downloaded into the sink (default `true`). With `false`, media that a provider
    /// answers with as an `http(s)` URL are reported with [`MediaLocation::Url`](hf_media_sink::MediaLocation::Url)
    /// and not fetched; media answered as bytes are still stored, with a warning.
    pub fn download_media(mut self, download: bool) -> Self {
        self.download_media = download;
        self
    }

    /// The HTTP client (default: a pooled rustls client with the timeouts above).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Builds the generator.
    pub fn build(mut self) -> Result<MediaGenerator, Error> {
        let registry = self.registry.take().unwrap_or_else(ProviderRegistry::with_defaults);
        if self.provider_keys_from_env {
            for provider in registry.iter() {
                let Some(var) = provider.direct_key_env() else { continue };
                if self.provider_keys.contains_key(provider.name()) {
                    continue;
                }
                if let Ok(key) = std::env::var(var)
                    && !key.trim().is_empty()
                {
                    self.provider_keys
                        .insert(provider.name().to_owned(), SecretString::from(key.trim().to_owned()));
                }
            }
        }
        let mut direct = HashMap::new();
        for (name, key) in self.provider_keys {
            let provider = registry.get(&name).ok_or_else(|| Error::UnknownProvider {
                provider: name.clone(),
                known: registry.names().map(str::to_owned).collect(),
            })?;
            let raw = match self.provider_urls.get(&name) {
                Some(url) => url.clone(),
                None => provider.direct_base_url().map(str::to_owned).ok_or_else(|| {
                    Error::Config(format!(
                        "{name} has no API of its own to call with a provider key: it is always called through \
                         the router with the Hugging Face token"
                    ))
                })?,
            };
            let base_url = parse_base_url(&format!("{name} API"), &raw)?;
            direct.insert(name, DirectAccess { base_url, key });
        }
        if self.token.is_none() && direct.is_empty() {
            return Err(Error::MissingToken);
        }
        // A token that cannot travel in a header would silently be left off every request (and every
        // provider would answer 401): say so now, without showing it.
        let sendable =
            |secret: &SecretString| HeaderValue::from_str(&format!("Bearer {}", secret.expose_secret())).is_ok();
        if let Some(token) = &self.token
            && !sendable(token)
        {
            return Err(Error::Config(
                "the Hugging Face token contains characters that cannot be sent in an HTTP header \
                 (a stray newline, space or non-ASCII character?)"
                    .into(),
            ));
        }
        if let Some((name, _)) = direct.iter().find(|(_, access)| !sendable(&access.key)) {
            return Err(Error::Config(format!(
                "the key of {name} contains characters that cannot be sent in an HTTP header \
                 (a stray newline, space or non-ASCII character?)"
            )));
        }
        let token = self.token;
        let router_raw = self.router_url.unwrap_or_else(|| DEFAULT_ROUTER_URL.to_owned());
        let router_url = parse_base_url("router", &router_raw)?;
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .user_agent(concat!("hf-media/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(self.connect_timeout)
                .read_timeout(self.read_timeout)
                .pool_max_idle_per_host(64)
                .build()
                .map_err(|e| Error::Config(format!("could not set up HTTP: {e}")))?,
        };
        let mut mapping = MappingClient::builder()
            .http_client(http.clone())
            .secret_token(token.clone())
            .cache_ttl(self.mapping_cache_ttl);
        if let Some(hub) = &self.hub_url {
            mapping = mapping.hub_url(hub.clone());
        }
        let mapping = mapping.build()?;
        let hub_url = mapping.hub_url().clone();
        let bill_to = match self.bill_to {
            Some(org) => Some(HeaderValue::from_str(org.trim()).map_err(|_| {
                Error::Config(format!(
                    "`{org}` cannot be sent as X-HF-Bill-To: use the organization's name"
                ))
            })?),
            None => None,
        };
        if self.progress_interval.is_zero() {
            return Err(Error::Config("the progress interval must be greater than zero".into()));
        }
        Ok(MediaGenerator {
            inner: Arc::new(Inner {
                http,
                mapping,
                router_url,
                hub_url,
                token,
                registry,
                sink: self.sink.unwrap_or_else(|| Arc::new(FileSink::default())),
                provider_order: self.provider_order,
                poll: self.poll,
                generation_timeout: self.generation_timeout,
                progress_interval: self.progress_interval,
                bill_to,
                direct,
                download_media: self.download_media,
                retry: self.retry,
                request_timeout: self.request_timeout,
            }),
        })
    }
}

fn parse_base_url(what: &str, raw: &str) -> Result<Url, Error> {
    let url = Url::parse(raw.trim().trim_end_matches('/'))
        .map_err(|e| Error::Config(format!("the {what} URL `{raw}` is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Config(format!(
            "the {what} URL `{raw}` must start with http:// or https://"
        )));
    }
    Ok(url)
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

/// Everything the `n` tasks of one request share.
struct Job {
    model: String,
    prompt: String,
    params: GenerationParams,
    candidates: Vec<Candidate>,
}

type Events = mpsc::UnboundedSender<GenerationEvent>;

enum AttemptError {
    /// This provider failed; the next may work.
    Provider(ProviderError),
    /// This provider failed again after retries inside the attempt (its media download): the next
    /// provider is tried without another retry of this one.
    Exhausted(ProviderError),
    /// Nothing else should be tried.
    Fatal(Error),
}

impl MediaGenerator {
    /// A builder with every default.
    pub fn builder() -> MediaGeneratorBuilder {
        MediaGeneratorBuilder::default()
    }

    /// The providers this generator knows.
    pub fn registry(&self) -> &ProviderRegistry {
        &self.inner.registry
    }

    /// The Hub mapping client (shares the generator's cache).
    pub fn mapping_client(&self) -> &MappingClient {
        &self.inner.mapping
    }

    /// Starts a request and returns its events as a stream. Must be called within a Tokio runtime.
    ///
    /// Each of the `n` generations runs in its own task and yields its media as soon as it is stored.
    /// The stream always ends with [`GenerationEvent::Done`]. Dropping it cancels the work in flight.
    pub fn generate(&self, request: GenerateRequest) -> GenerationStream {
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = tokio::spawn(drive(self.inner.clone(), request, tx));
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

async fn drive(inner: Arc<Inner>, request: GenerateRequest, tx: Events) {
    let started = Instant::now();
    let total = request.n.clamp(1, MAX_GENERATIONS);
    let concurrency = request.concurrency.unwrap_or(total);
    let job = match prepare(&inner, request, &tx).await {
        Ok(job) => Arc::new(job),
        Err(error) => {
            let _ = tx.send(GenerationEvent::Error { task: None, error });
            let _ = tx.send(GenerationEvent::Done {
                succeeded: 0,
                failed: total,
                elapsed: started.elapsed(),
            });
            return;
        }
    };
    let mut tasks = JoinSet::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.clamp(1, total)));
    for task in 0..total {
        let (inner, job, tx, permits) = (inner.clone(), job.clone(), tx.clone(), permits.clone());
        tasks.spawn(async move {
            // The generation's own deadline starts once it may run.
            let _permit = permits.acquire_owned().await;
            run_task(inner, job, task, tx).await
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
            _ = ticker.tick() => {
                let _ = tx.send(GenerationEvent::Progress { elapsed: started.elapsed(), done: succeeded + failed, total });
            }
        }
    }
    let _ = tx.send(GenerationEvent::Done {
        succeeded,
        failed,
        elapsed: started.elapsed(),
    });
}

/// Everything done once per request: checks, prompt, one Hub call, provider choice.
async fn prepare(inner: &Inner, request: GenerateRequest, tx: &Events) -> Result<Job, Error> {
    if request.n == 0 || request.n > MAX_GENERATIONS {
        return Err(Error::InvalidRequest(format!(
            "n must be between 1 and {MAX_GENERATIONS} (got {})",
            request.n
        )));
    }
    if request.concurrency == Some(0) {
        return Err(Error::InvalidRequest(
            "concurrency must be at least 1 (or unset to run all n at once)".into(),
        ));
    }
    let prompt = format_prompt(request.prompt.as_deref(), &request.messages)?;
    request.params.validate()?;
    let spec = ModelSpec::parse(&request.model)?;
    let named = match &spec.provider {
        Some(name) => Some(inner.registry.get(name).ok_or_else(|| Error::UnknownProvider {
            provider: name.clone(),
            known: inner.registry.names().map(str::to_owned).collect(),
        })?),
        None => None,
    };
    let mapping = match named {
        // A provider the Hub does not list serves the model id as it is: no Hub call.
        Some(provider) if !provider.needs_hub_mapping() => {
            let task = provider.tasks().first().cloned().unwrap_or(Task::TextToImage);
            Arc::new(ModelMapping {
                model_id: spec.model.clone(),
                entries: vec![ProviderMapping::new(provider.name(), &spec.model, task, &spec.model)],
            })
        }
        _ => inner.mapping.mapping(&spec.model).await?,
    };
    let selection = select(
        &mapping,
        spec.provider.as_deref(),
        &inner.registry,
        &inner.provider_order,
    )?;
    for message in selection.warnings {
        let _ = tx.send(GenerationEvent::Warning { task: None, message });
    }
    Ok(Job {
        model: spec.model,
        prompt,
        params: request.params,
        candidates: selection.candidates,
    })
}

async fn run_task(inner: Arc<Inner>, job: Arc<Job>, task: usize, tx: Events) -> bool {
    let started = Instant::now();
    // The tries are kept outside the attempt future so that an expired deadline can still list them.
    let tries = Tries::default();
    let outcome = match inner.generation_timeout {
        Some(limit) => tokio::time::timeout(limit, try_providers(&inner, &job, task, &tx, started, &tries))
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    after: limit,
                    attempts: tries.snapshot(),
                })
            }),
        None => try_providers(&inner, &job, task, &tx, started, &tries).await,
    };
    match outcome {
        Ok(media) => {
            let _ = tx.send(GenerationEvent::Media(Box::new(media)));
            true
        }
        Err(error) => {
            let _ = tx.send(GenerationEvent::Error {
                task: Some(task),
                error,
            });
            false
        }
    }
}

/// Tries each candidate in turn: a 404 stops, any other provider failure falls through to the next.
/// The failed tries of one generation, shared with its deadline.
#[derive(Default)]
struct Tries(std::sync::Mutex<Vec<ProviderAttempt>>);

impl Tries {
    fn push(&self, attempt: ProviderAttempt) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(attempt);
    }

    fn snapshot(&self) -> Vec<ProviderAttempt> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn try_providers(
    inner: &Inner,
    job: &Job,
    task: usize,
    tx: &Events,
    started: Instant,
    attempts: &Tries,
) -> Result<GeneratedMedia, Error> {
    for candidate in &job.candidates {
        let provider = candidate.mapping.provider.clone();
        let _ = tx.send(GenerationEvent::Attempt {
            task,
            provider: provider.clone(),
            provider_id: candidate.mapping.provider_id.clone(),
        });
        let mut tries = 0;
        let error = loop {
            tries += 1;
            let error = match attempt(inner, job, candidate, task, tx, started, attempts).await {
                Ok(media) => return Ok(media),
                Err(AttemptError::Fatal(error)) => return Err(error),
                Err(AttemptError::Exhausted(error)) => {
                    attempts.push(ProviderAttempt::from_error(&error));
                    break error;
                }
                Err(AttemptError::Provider(error)) => error,
            };
            if error.is_model_not_supported() {
                return Err(Error::ModelNotSupported {
                    model: job.model.clone(),
                    provider,
                    status: error.status(),
                    message: error.message(),
                });
            }
            attempts.push(ProviderAttempt::from_error(&error));
            let Some(delay) = inner.retry.delay(tries, &error) else {
                break error;
            };
            tracing::info!(task, provider = %provider, %error, ?delay, "transient failure, trying again");
            let _ = tx.send(GenerationEvent::Retry {
                task,
                provider: provider.clone(),
                attempt: tries,
                delay,
                status: error.status(),
                message: error.message(),
            });
            tokio::time::sleep(delay).await;
        };
        tracing::warn!(task, provider = %provider, %error, "provider failed, trying the next one");
        let _ = tx.send(GenerationEvent::Fallback {
            task,
            provider,
            status: error.status(),
            message: error.message(),
        });
    }
    Err(Error::AllProvidersFailed {
        model: job.model.clone(),
        attempts: attempts.snapshot(),
    })
}

/// One provider, from request to stored media.
async fn attempt(
    inner: &Inner,
    job: &Job,
    candidate: &Candidate,
    task: usize,
    tx: &Events,
    started: Instant,
    attempts: &Tries,
) -> Result<GeneratedMedia, AttemptError> {
    let name = candidate.mapping.provider.clone();
    let reporter: NoticeReporter = {
        let tx = tx.clone();
        let provider = name.clone();
        Arc::new(move |notice| {
            let event = match notice {
                ProviderNotice::Status(status) => GenerationEvent::ProviderStatus {
                    task,
                    provider: provider.clone(),
                    status,
                },
                ProviderNotice::Warning(message) => GenerationEvent::Warning {
                    task: Some(task),
                    message,
                },
                _ => return,
            };
            let _ = tx.send(event);
        })
    };
    let ctx = match inner.direct.get(&name) {
        Some(access) => ProviderContext::direct(
            inner.http.clone(),
            access.base_url.clone(),
            &name,
            Some(access.key.clone()),
            candidate.provider.direct_auth(),
        ),
        None => {
            let ctx = ProviderContext::routed(inner.http.clone(), &inner.router_url, &name, inner.token.clone());
            match &inner.bill_to {
                Some(org) => ctx.with_header(HeaderName::from_static("x-hf-bill-to"), org.clone()),
                None => ctx,
            }
        }
    }
    .with_hub_url(inner.hub_url.clone())
    .with_poll(inner.poll)
    .with_request_timeout(inner.request_timeout)
    .with_reporter(reporter);
    let request = GenerationRequest {
        mapping: candidate.mapping.clone(),
        prompt: job.prompt.clone(),
        params: job.params.clone(),
    };
    let attempt_started = Instant::now();
    let output = candidate
        .provider
        .generate(&ctx, request)
        .await
        .map_err(AttemptError::Provider)?;
    let generation_ms = millis(attempt_started.elapsed());
    if !inner.download_media {
        match &output.body {
            MediaBody::Url(url) if url.scheme() != "data" => {
                return Ok(GeneratedMedia {
                    task,
                    provider: name,
                    provider_id: candidate.mapping.provider_id.clone(),
                    model: job.model.clone(),
                    kind: if candidate.mapping.task == Task::TextToVideo {
                        MediaKind::Video
                    } else {
                        MediaKind::Image
                    },
                    mime: output
                        .mime
                        .clone()
                        .unwrap_or_else(|| "application/octet-stream".to_owned()),
                    location: MediaLocation::Url(url.to_string()),
                    bytes: 0,
                    sidecar: None,
                    seed: output.seed,
                    source_url: Some(url.to_string()),
                    provider_response: output.provider_response,
                    elapsed: started.elapsed(),
                });
            }
            _ => {
                let _ = tx.send(GenerationEvent::Warning {
                    task: Some(task),
                    message: format!("{name} answered with the media itself, not a URL: saving it to the sink"),
                });
            }
        }
    }
    let stored = Stored {
        inner,
        job,
        candidate,
        task,
        started,
        generation_ms,
        seed: output.seed,
        provider_response: output.provider_response,
    };
    let stream = match output.body {
        MediaBody::Bytes(bytes) => futures::stream::once(async move { Ok(bytes) }).boxed(),
        MediaBody::Stream(stream) => stream,
        MediaBody::Url(url) if url.scheme() == "data" => {
            let (stream, _) = http::download(&inner.http, &name, &url)
                .await
                .map_err(AttemptError::Provider)?;
            stream
        }
        // The job is done and paid for: a failed download is tried again from its URL, not by
        // submitting a new job.
        MediaBody::Url(url) => {
            let mut tries = 0;
            loop {
                tries += 1;
                let result = match http::download(&inner.http, &name, &url).await {
                    Ok((stream, _claimed_mime)) => stored.store(stream, Some(url.to_string())).await,
                    Err(error) => Err(AttemptError::Provider(error)),
                };
                let error = match result {
                    Err(AttemptError::Provider(error)) => error,
                    other => return other,
                };
                let Some(delay) = inner.retry.delay(tries, &error) else {
                    return Err(if tries == 1 {
                        AttemptError::Provider(error)
                    } else {
                        AttemptError::Exhausted(error)
                    });
                };
                attempts.push(ProviderAttempt::from_error(&error));
                let _ = tx.send(GenerationEvent::Retry {
                    task,
                    provider: name.clone(),
                    attempt: tries,
                    delay,
                    status: error.status(),
                    message: error.message(),
                });
                tokio::time::sleep(delay).await;
            }
        }
    };
    stored.store(stream, None).await
}

/// What is known of a made media before it is stored.
struct Stored<'a> {
    inner: &'a Inner,
    job: &'a Job,
    candidate: &'a Candidate,
    task: usize,
    started: Instant,
    generation_ms: u64,
    seed: Option<u64>,
    provider_response: Option<serde_json::Value>,
}

impl Stored<'_> {
    /// Streams the media into the sink, with its record.
    async fn store(
        &self,
        stream: hf_media_provider::ByteStream,
        source_url: Option<String>,
    ) -> Result<GeneratedMedia, AttemptError> {
        let name = &self.candidate.mapping.provider;
        let record = MediaRecord {
            prompt: self.job.prompt.clone(),
            model: self.job.model.clone(),
            provider: name.clone(),
            provider_id: self.candidate.mapping.provider_id.clone(),
            task: self.candidate.mapping.task.to_string(),
            task_index: self.task,
            parameters: serde_json::to_value(&self.job.params).unwrap_or_default(),
            seed: self.seed,
            source_url: source_url.clone(),
            provider_response: self.provider_response.clone(),
            created_at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(millis)
                .unwrap_or_default(),
            timings: MediaTimings {
                generation_ms: self.generation_ms,
                store_ms: 0,
            },
        };
        let bytes = stream.map(|chunk| chunk.map_err(|e| Box::new(e) as BoxError)).boxed();
        let stored = self
            .inner
            .sink
            .store(bytes, record)
            .await
            .map_err(|e| sink_failure(name, e))?;
        Ok(GeneratedMedia {
            task: self.task,
            provider: name.clone(),
            provider_id: self.candidate.mapping.provider_id.clone(),
            model: self.job.model.clone(),
            kind: stored.format.kind,
            mime: stored.format.mime.to_owned(),
            location: stored.location,
            bytes: stored.bytes,
            sidecar: stored.sidecar,
            seed: self.seed,
            source_url,
            provider_response: self.provider_response.clone(),
            elapsed: self.started.elapsed(),
        })
    }
}

/// A broken byte stream or bytes that are not media are the provider's failure (the next provider may
/// do better); anything else (disk full, no permission) stops the generation.
fn sink_failure(provider: &str, error: SinkError) -> AttemptError {
    match error {
        SinkError::Source(source) => match source.downcast::<ProviderError>() {
            Ok(provider_error) => AttemptError::Provider(*provider_error),
            Err(other) => AttemptError::Provider(ProviderError::Network {
                provider: provider.to_owned(),
                message: other.to_string(),
            }),
        },
        error @ (SinkError::Empty | SinkError::UnrecognizedMedia { .. }) => {
            AttemptError::Provider(ProviderError::InvalidResponse {
                provider: provider.to_owned(),
                reason: error.to_string(),
            })
        }
        other => AttemptError::Fatal(Error::Sink(other)),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
