use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::{ProviderError, RetryNotice, RetryPolicy, Secrets};

/// How a key is sent in the `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthScheme {
    /// `Authorization: Bearer <key>` (the router, and most providers).
    Bearer,
    /// `Authorization: Key <key>` (fal-ai's own API).
    Key,
}

/// Polling settings of asynchronous providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollConfig {
    /// Pause between two status requests.
    pub interval: Duration,
    /// The longest a job may stay pending before it is a [`ProviderError::Timeout`].
    pub deadline: Duration,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            interval: Duration::from_millis(500),
            deadline: Duration::from_secs(15 * 60),
        }
    }
}

/// A provider's own report on a pending job (queued, position, in progress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderStatus {
    /// The provider's job or request id.
    pub job_id: Option<String>,
    /// `queued`, `in_progress`, or the provider's own word for other states.
    pub state: String,
    /// Place in the provider's queue, when it says.
    pub queue_position: Option<u64>,
}

impl ProviderStatus {
    /// The state of a job that is waiting in the provider's queue.
    pub const QUEUED: &'static str = "queued";
    /// The state of a job that is running.
    pub const IN_PROGRESS: &'static str = "in_progress";

    /// A status with only a state.
    pub fn new(state: impl Into<String>) -> Self {
        ProviderStatus {
            job_id: None,
            state: state.into(),
            queue_position: None,
        }
    }

    /// Job `job_id` waits in the provider's queue ([`ProviderStatus::QUEUED`]).
    pub fn queued(job_id: impl Into<String>) -> Self {
        ProviderStatus::new(Self::QUEUED).with_job_id(job_id)
    }

    /// Job `job_id` is running ([`ProviderStatus::IN_PROGRESS`]).
    pub fn in_progress(job_id: impl Into<String>) -> Self {
        ProviderStatus::new(Self::IN_PROGRESS).with_job_id(job_id)
    }

    /// The same status, about job `job_id`.
    pub fn with_job_id(mut self, job_id: impl Into<String>) -> Self {
        self.job_id = Some(job_id.into());
        self
    }

    /// The same status with the place in the queue, when the provider says it.
    pub fn with_queue_position(mut self, queue_position: Option<u64>) -> Self {
        self.queue_position = queue_position;
        self
    }
}

/// What a provider tells its caller while it works.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderNotice {
    /// The provider's own report on a pending job.
    Status(ProviderStatus),
    /// Something the user should know, such as a parameter the provider does not take and that was left out.
    Warning(String),
    /// A passing failure inside the provider's job (a status request, a model still loading) is tried again.
    Retry(RetryNotice),
    /// The provider accepted a job and named it: the job exists (and is paid for), so the caller never
    /// submits it again, whatever happens next.
    Accepted {
        /// The job, with what it takes to reach it again ([`MediaProvider::resume`](crate::MediaProvider::resume)).
        job: crate::JobTicket,
    },
    /// The provider sends only the first `count` input images (the rest were left out, with a warning):
    /// the record names those it used.
    ImagesUsed {
        /// How many of the input images, from the first, were sent.
        count: usize,
    },
}

/// Receives [`ProviderNotice`]s while a provider works.
pub type NoticeReporter = Arc<dyn Fn(ProviderNotice) + Send + Sync>;

/// Everything a provider needs to make one call: where, with which key, how to poll, whom to tell.
///
/// Cheap to clone. `Debug` never shows the key.
#[derive(Clone)]
pub struct ProviderContext {
    provider: String,
    http: reqwest::Client,
    base_url: Url,
    routed: bool,
    key: Option<SecretString>,
    auth: AuthScheme,
    hub_url: Url,
    poll: PollConfig,
    reporter: Option<NoticeReporter>,
    headers: Vec<(HeaderName, HeaderValue)>,
    request_timeout: Option<Duration>,
    retry: RetryPolicy,
    secrets: Secrets,
}

impl fmt::Debug for ProviderContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderContext")
            .field("provider", &self.provider)
            .field("base_url", &self.base_url.as_str())
            .field("routed", &self.routed)
            .field("key", &self.key.as_ref().map(|_| "[redacted]"))
            .field("auth", &self.auth)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

fn default_hub() -> Url {
    Url::parse(hf_media_mapping::DEFAULT_HUB_URL).unwrap_or_else(|_| unreachable!("constant URL parses"))
}

impl ProviderContext {
    /// A context for calls through the Hugging Face router: the base is `{router}/{provider}` and the HF
    /// token is sent as `Authorization: Bearer …`.
    pub fn routed(http: reqwest::Client, router_url: &Url, provider: &str, token: Option<SecretString>) -> Self {
        let base = format!("{}/{provider}", router_url.as_str().trim_end_matches('/'));
        let base_url = Url::parse(&base).unwrap_or_else(|_| router_url.clone());
        ProviderContext::new(http, base_url, provider, true, token, AuthScheme::Bearer)
    }

    /// A context for calls to the provider's own API with the provider's own key.
    pub fn direct(
        http: reqwest::Client,
        base_url: Url,
        provider: &str,
        key: Option<SecretString>,
        auth: AuthScheme,
    ) -> Self {
        ProviderContext::new(http, base_url, provider, false, key, auth)
    }

    fn new(
        http: reqwest::Client,
        base_url: Url,
        provider: &str,
        routed: bool,
        key: Option<SecretString>,
        auth: AuthScheme,
    ) -> Self {
        ProviderContext {
            provider: provider.to_owned(),
            http,
            base_url,
            routed,
            key,
            auth,
            hub_url: default_hub(),
            poll: PollConfig::default(),
            reporter: None,
            headers: Vec::new(),
            request_timeout: None,
            retry: RetryPolicy::default(),
            secrets: Secrets::none(),
        }
    }

    /// Sets the Hub URL used to build adapter (LoRA) weight URLs.
    pub fn with_hub_url(mut self, hub_url: Url) -> Self {
        self.hub_url = hub_url;
        self
    }

    /// Sets the polling settings.
    pub fn with_poll(mut self, poll: PollConfig) -> Self {
        self.poll = poll;
        self
    }

    /// Sets who receives job status reports and warnings.
    pub fn with_reporter(mut self, reporter: NoticeReporter) -> Self {
        self.reporter = Some(reporter);
        self
    }

    /// Bounds each API call (sending, waiting for the answer and reading it) of this context; media
    /// downloads are not bounded by it (a large video may take long), only by the client's stall timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// Sets the retry policy for passing failures inside a job (status requests, loading waits).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the secrets scrubbed from every text this context's provider logs.
    pub fn with_secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = secrets;
        self
    }

    /// Adds a header sent on every call of this context (for example `X-HF-Bill-To`).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The provider's Hub name.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The shared HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The base every route is appended to.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// Whether calls go through the Hugging Face router (rather than the provider's own API).
    pub fn is_routed(&self) -> bool {
        self.routed
    }

    /// The Hub's base URL.
    pub fn hub_url(&self) -> &Url {
        &self.hub_url
    }

    /// The bound on each API call, if any.
    pub fn request_timeout(&self) -> Option<Duration> {
        self.request_timeout
    }

    /// The polling settings.
    pub fn poll(&self) -> PollConfig {
        self.poll
    }

    /// The retry policy for passing failures inside a job.
    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }

    /// The secrets to scrub from anything logged.
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Tells the caller that the provider accepted `job` ([`http::poll_job`](crate::http::poll_job)
    /// does it for every job it polls; a provider that follows a job some other way calls it once the
    /// job's id is known). The caller may store the ticket to [resume](crate::MediaProvider::resume) the
    /// job later instead of submitting another.
    pub fn report_accepted(&self, job: &crate::JobTicket) {
        if let Some(reporter) = &self.reporter {
            reporter(ProviderNotice::Accepted { job: job.clone() });
        }
    }

    /// Tells the caller that a passing failure inside the job is tried again; the failure's message is
    /// scrubbed of this context's [`Secrets`].
    pub fn report_retry(&self, notice: &RetryNotice) {
        if let Some(reporter) = &self.reporter {
            let mut notice = notice.clone();
            self.secrets.scrub_string(&mut notice.message);
            reporter(ProviderNotice::Retry(notice));
        }
    }

    /// Tells the caller about a pending job.
    pub fn report(&self, status: ProviderStatus) {
        if let Some(reporter) = &self.reporter {
            reporter(ProviderNotice::Status(status));
        }
    }

    /// Warns the caller (shown to the user; the generation goes on).
    pub fn warn(&self, message: impl Into<String>) {
        if let Some(reporter) = &self.reporter {
            reporter(ProviderNotice::Warning(message.into()));
        }
    }

    /// Warns about each parameter in `names` that the caller set (explicitly or in the extras) but that
    /// this provider does not take and leaves out of its request: silently ignored sizes cost users hours.
    pub fn warn_left_out(&self, request: &crate::GenerationRequest, names: &[&str]) {
        let given = request.params.to_canonical_map();
        let left_out: Vec<&str> = names.iter().copied().filter(|name| given.contains_key(*name)).collect();
        if !left_out.is_empty() {
            self.warn(format!(
                "{} does not take {} for {}: left out of the request",
                self.provider,
                left_out.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
                request.mapping.task
            ));
        }
    }

    /// Warns, when `request` has more input images than the `taken` this provider sends (the first ones),
    /// how many were left out of the request.
    pub fn warn_images_left_out(&self, request: &crate::GenerationRequest, taken: usize) {
        let left_out = request.images.len().saturating_sub(taken);
        if left_out == 0 {
            return;
        }
        if let Some(reporter) = &self.reporter {
            reporter(ProviderNotice::ImagesUsed { count: taken });
        }
        let task = &request.mapping.task;
        let sent = match taken {
            1 => format!("takes one input image for {task}: the first is sent"),
            n => format!("takes {n} input images for {task}: the first {n} are sent"),
        };
        let plural = if left_out == 1 { "" } else { "s" };
        self.warn(format!(
            "{} {sent}, {left_out} more image{plural} left out of the request",
            self.provider
        ));
    }

    /// `{base}{path_and_query}`: every route of a provider is built here, so the same code runs against
    /// the router, the provider's API, a proxy or an emulator. `path_and_query` starts with `/`.
    pub fn url(&self, path_and_query: &str) -> Result<Url, ProviderError> {
        let joined = format!("{}{path_and_query}", self.base_url.as_str().trim_end_matches('/'));
        Url::parse(&joined)
            .map_err(|e| ProviderError::invalid_request(&self.provider, format!("`{joined}` is not a valid URL: {e}")))
    }

    /// Rebuilds a URL that the provider returned (a status or result URL on its own host) on this
    /// context's base: `{base}{path of absolute}{query}`. This is how polling works through the router
    /// without knowing the router's host name.
    pub fn url_for_path_of(&self, absolute: &str, query: Option<&str>) -> Result<Url, ProviderError> {
        let parsed = Url::parse(absolute)
            .map_err(|e| ProviderError::invalid_response(&self.provider, format!("`{absolute}` is not a URL: {e}")))?;
        let mut path = parsed.path().to_owned();
        if let Some(query) = query {
            path.push('?');
            path.push_str(query);
        }
        self.url(&path)
    }

    /// A request with this context's authorization and headers.
    pub fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        let mut builder = self.http.request(method, url);
        if let Some(key) = &self.key {
            let value = match self.auth {
                AuthScheme::Bearer => format!("Bearer {}", key.expose_secret()),
                AuthScheme::Key => format!("Key {}", key.expose_secret()),
            };
            if let Ok(mut value) = HeaderValue::from_str(&value) {
                value.set_sensitive(true);
                builder = builder.header(reqwest::header::AUTHORIZATION, value);
            }
        }
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        if let Some(timeout) = self.request_timeout {
            builder = builder.timeout(timeout);
        }
        builder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_appended_to_the_configured_base() {
        let router = Url::parse("http://127.0.0.1:8080/proxy/").unwrap();
        let ctx = ProviderContext::routed(reqwest::Client::new(), &router, "fal-ai", None);
        assert_eq!(
            ctx.url("/fal-ai/flux/dev?_subdomain=queue").unwrap().as_str(),
            "http://127.0.0.1:8080/proxy/fal-ai/fal-ai/flux/dev?_subdomain=queue"
        );
        let rebased = ctx
            .url_for_path_of(
                "https://queue.fal.run/fal-ai/flux/requests/abc",
                Some("_subdomain=queue"),
            )
            .unwrap();
        assert_eq!(
            rebased.as_str(),
            "http://127.0.0.1:8080/proxy/fal-ai/fal-ai/flux/requests/abc?_subdomain=queue"
        );
        assert!(ctx.url_for_path_of("not a url", None).is_err());
    }

    #[test]
    fn direct_contexts_call_the_given_base_with_the_given_auth() {
        let base = Url::parse("https://queue.fal.run/").unwrap();
        let ctx = ProviderContext::direct(
            reqwest::Client::new(),
            base,
            "fal-ai",
            Some("fal-key-1".to_owned().into()),
            AuthScheme::Key,
        );
        assert!(!ctx.is_routed());
        assert_eq!(
            ctx.url("/fal-ai/flux/dev").unwrap().as_str(),
            "https://queue.fal.run/fal-ai/flux/dev"
        );
        let request = ctx
            .request(reqwest::Method::POST, ctx.url("/x").unwrap())
            .build()
            .unwrap();
        assert_eq!(request.headers()["authorization"], "Key fal-key-1");
        let routed = ProviderContext::routed(
            reqwest::Client::new(),
            &Url::parse("https://router.huggingface.co").unwrap(),
            "fal-ai",
            None,
        );
        assert!(routed.is_routed() && routed.key.is_none());
        assert_eq!(routed.base_url().as_str(), "https://router.huggingface.co/fal-ai");
    }

    #[test]
    fn retry_notices_are_reported_without_secrets() {
        let notices = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&notices);
        let ctx = ProviderContext::routed(
            reqwest::Client::new(),
            &Url::parse("https://router.huggingface.co").unwrap(),
            "fal-ai",
            None,
        )
        .with_secrets(Secrets::new([&"hf_canary_token".to_owned().into()]))
        .with_reporter(Arc::new(move |notice| seen.lock().unwrap().push(notice)));
        ctx.report_retry(&RetryNotice {
            stage: crate::RetryStage::Poll,
            attempt: 1,
            delay: Duration::from_millis(5),
            status: Some(500),
            message: "echo: Bearer hf_canary_token".into(),
        });
        let notices = notices.lock().unwrap();
        assert!(
            matches!(&notices[..], [ProviderNotice::Retry(n)] if n.message == "echo: Bearer [redacted]"),
            "{notices:?}"
        );
    }

    #[test]
    fn statuses_name_their_job_and_queue_place() {
        let queued = ProviderStatus::queued("j1").with_queue_position(Some(3));
        assert_eq!(
            queued,
            ProviderStatus {
                job_id: Some("j1".into()),
                state: "queued".into(),
                queue_position: Some(3),
            }
        );
        let running = ProviderStatus::in_progress("j1");
        assert_eq!(
            (
                running.state.as_str(),
                running.job_id.as_deref(),
                running.queue_position
            ),
            ("in_progress", Some("j1"), None)
        );
        assert_eq!(ProviderStatus::new("loading").job_id, None);
    }

    #[test]
    fn images_past_what_a_provider_takes_are_warned_about() {
        let notices = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&notices);
        let ctx = ProviderContext::routed(
            reqwest::Client::new(),
            &Url::parse("https://router.huggingface.co").unwrap(),
            "together",
            None,
        )
        .with_reporter(Arc::new(move |notice| seen.lock().unwrap().push(notice)));
        let image = crate::InputImage::new(bytes::Bytes::from_static(b"x"), "image/png", crate::ImageOrigin::Bytes);
        let mut request = crate::GenerationRequest {
            mapping: hf_media_mapping::ProviderMapping::new("together", "m", crate::Task::ImageToVideo, "o/m"),
            prompt: "p".into(),
            params: crate::GenerationParams::default(),
            images: vec![image.clone()],
        };
        ctx.warn_images_left_out(&request, 1);
        request.images = vec![image.clone(), image.clone(), image];
        ctx.warn_images_left_out(&request, 1);
        ctx.warn_images_left_out(&request, 2);
        let notices = notices.lock().unwrap();
        let warnings: Vec<&str> = notices
            .iter()
            .filter_map(|n| match n {
                ProviderNotice::Warning(w) => Some(w.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            warnings,
            [
                "together takes one input image for image-to-video: the first is sent, 2 more images left out of the request",
                "together takes 2 input images for image-to-video: the first 2 are sent, 1 more image left out of the request",
            ]
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let router = Url::parse("https://router.huggingface.co").unwrap();
        let ctx = ProviderContext::routed(
            reqwest::Client::new(),
            &router,
            "replicate",
            Some("hf_canary".to_owned().into()),
        );
        let shown = format!("{ctx:?}");
        assert!(!shown.contains("hf_canary") && shown.contains("[redacted]"), "{shown}");
    }
}
