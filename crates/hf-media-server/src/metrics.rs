//! `/metrics`: Prometheus text. Requests by route, method and status, with a latency histogram;
//! generations by provider and outcome, with a latency histogram; generations in flight; refused
//! requests (bad key, rate limit) by code; media served by status; video jobs by state.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::App;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// The server's metrics (cheap to clone: every clone counts into the same registry).
#[derive(Clone)]
pub(crate) struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<Labels, Counter>,
    request_seconds: Family<Labels, Histogram>,
    generations: Family<Labels, Counter>,
    generation_seconds: Family<Labels, Histogram>,
    in_flight: Gauge,
    refused: Family<Labels, Counter>,
    media: Family<Labels, Counter>,
    video_jobs: Family<Labels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hf_media");
        let requests = Family::<Labels, Counter>::default();
        let request_seconds =
            Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.5, 14)));
        let generations = Family::<Labels, Counter>::default();
        let generation_seconds =
            Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.05, 2.0, 14)));
        let in_flight = Gauge::default();
        let refused = Family::<Labels, Counter>::default();
        let media = Family::<Labels, Counter>::default();
        let video_jobs = Family::<Labels, Gauge>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (to its first byte for streams)",
            request_seconds.clone(),
        );
        registry.register(
            "generations",
            "Generations ended, by provider and outcome",
            generations.clone(),
        );
        registry.register(
            "generation_duration_seconds",
            "Time from a generation's start to its stored media (or its failure)",
            generation_seconds.clone(),
        );
        registry.register("generations_in_flight", "Generations running now", in_flight.clone());
        registry.register(
            "refused_requests",
            "Requests refused before any work (key, rate limit)",
            refused.clone(),
        );
        registry.register("media_served", "Media file answers, by status", media.clone());
        registry.register("video_jobs", "Video jobs by state", video_jobs.clone());
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                request_seconds,
                generations,
                generation_seconds,
                in_flight,
                refused,
                media,
                video_jobs,
            }),
        }
    }

    /// A generation ended on `provider` with `outcome` (`succeeded`, or the error kind).
    pub fn generation(&self, provider: &str, outcome: &str, seconds: f64) {
        self.inner
            .generations
            .get_or_create(&labels(&[("provider", provider), ("outcome", outcome)]))
            .inc();
        self.inner
            .generation_seconds
            .get_or_create(&labels(&[("provider", provider)]))
            .observe(seconds);
    }

    /// A request was refused with `code`.
    pub fn refused(&self, code: &str) {
        self.inner.refused.get_or_create(&labels(&[("code", code)])).inc();
    }

    /// A media answer with `status`.
    pub fn media_served(&self, status: u16) {
        self.inner
            .media
            .get_or_create(&labels(&[("status", &status.to_string())]))
            .inc();
    }

    /// How many video jobs are in `state` now.
    pub fn video_jobs(&self, state: &str, count: u64) {
        self.inner
            .video_jobs
            .get_or_create(&labels(&[("state", state)]))
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The Prometheus text, with the in-flight gauge read now.
    pub fn render(&self, in_flight: usize) -> String {
        self.inner.in_flight.set(i64::try_from(in_flight).unwrap_or(i64::MAX));
        let mut text = String::new();
        if encode(&mut text, &self.inner.registry).is_err() {
            text.clear();
        }
        text
    }
}

/// The middleware counting every request.
pub(crate) async fn track(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let metrics = &app.metrics.inner;
    metrics
        .requests
        .get_or_create(&labels(&[("route", &route), ("method", &method), ("status", &status)]))
        .inc();
    metrics
        .request_seconds
        .get_or_create(&labels(&[("route", &route)]))
        .observe(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`.
pub(crate) async fn render(State(app): State<Arc<App>>) -> Response {
    let mut response = app.metrics.render(app.slots.in_flight()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
