use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use crate::link::next_link;
use crate::{MappingError, ModelMapping, ModelQuery};

/// The Hub's default address.
pub const DEFAULT_HUB_URL: &str = "https://huggingface.co";
/// How long a model's mapping is kept before the Hub is asked again.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(600);
/// The most bytes of a Hub answer that are read (a mapping is a few KiB).
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// Client of the Hub's inference-provider mapping API. Cheap to clone: clones share the cache.
#[derive(Clone)]
pub struct MappingClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    hub_url: Url,
    token: Option<SecretString>,
    cache: Option<Cache<String, Arc<ModelMapping>>>,
}

impl fmt::Debug for MappingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappingClient")
            .field("hub_url", &self.inner.hub_url.as_str())
            .field("token", &self.inner.token.as_ref().map(|_| "[redacted]"))
            .field("cache", &self.inner.cache.is_some())
            .finish()
    }
}

/// Builds a [`MappingClient`]. Every setting has a default.
#[derive(Default)]
pub struct MappingClientBuilder {
    http: Option<reqwest::Client>,
    hub_url: Option<String>,
    token: Option<SecretString>,
    cache_ttl: Option<Duration>,
}

impl fmt::Debug for MappingClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappingClientBuilder")
            .field("hub_url", &self.hub_url)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("cache_ttl", &self.cache_ttl)
            .finish()
    }
}

impl MappingClientBuilder {
    /// The HTTP client to use (share one with the rest of the application to reuse connections).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// The Hub's base URL (default [`DEFAULT_HUB_URL`]; `HF_ENDPOINT` in the CLI).
    pub fn hub_url(mut self, url: impl Into<String>) -> Self {
        self.hub_url = Some(url.into());
        self
    }

    /// The token sent as `Authorization: Bearer …` (the same token as the inference calls).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(SecretString::from(token.into()));
        self
    }

    /// The token, already wrapped as a secret; `None` sends no `Authorization` header.
    pub fn secret_token(mut self, token: Option<SecretString>) -> Self {
        self.token = token;
        self
    }

    /// How long answers are cached (default [`DEFAULT_CACHE_TTL`]); zero disables the cache.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = Some(ttl);
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<MappingClient, MappingError> {
        let raw = self.hub_url.unwrap_or_else(|| DEFAULT_HUB_URL.to_owned());
        let hub_url = Url::parse(raw.trim_end_matches('/'))
            .map_err(|e| MappingError::Config(format!("Hub URL `{raw}` is not a valid URL: {e}")))?;
        if !matches!(hub_url.scheme(), "http" | "https") {
            return Err(MappingError::Config(format!(
                "Hub URL `{raw}` must start with http:// or https://"
            )));
        }
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .build()
                .map_err(|e| MappingError::Config(format!("could not set up HTTP: {e}")))?,
        };
        let ttl = self.cache_ttl.unwrap_or(DEFAULT_CACHE_TTL);
        let cache = (!ttl.is_zero()).then(|| Cache::builder().max_capacity(10_000).time_to_live(ttl).build());
        Ok(MappingClient {
            inner: Arc::new(Inner {
                http,
                hub_url,
                token: self.token,
                cache,
            }),
        })
    }
}

/// Checks that `model` can be a Hub model id (`name` or `org/name`, no spaces, no `..`).
pub fn validate_model_id(model: &str) -> Result<(), MappingError> {
    let invalid = |reason| MappingError::InvalidModelId {
        model: model.to_owned(),
        reason,
    };
    if model.is_empty() {
        return Err(invalid("it is empty"));
    }
    if model.len() > 200 {
        return Err(invalid("it is longer than 200 characters"));
    }
    let segments: Vec<&str> = model.split('/').collect();
    if segments.len() > 2 {
        return Err(invalid("it has more than one `/`"));
    }
    for segment in segments {
        if segment.is_empty() {
            return Err(invalid("a part around `/` is empty"));
        }
        if segment == "." || segment == ".." || segment.contains("..") {
            return Err(invalid("it contains `..`"));
        }
        if !segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid("only letters, digits, `-`, `_` and `.` are allowed"));
        }
    }
    Ok(())
}

impl MappingClient {
    /// A builder with every default.
    pub fn builder() -> MappingClientBuilder {
        MappingClientBuilder::default()
    }

    /// The Hub's base URL.
    pub fn hub_url(&self) -> &Url {
        &self.inner.hub_url
    }

    /// The providers serving `model_id`, in the Hub's order. Cached; concurrent first calls for the same
    /// model share one Hub request. Errors are not cached.
    pub async fn mapping(&self, model_id: &str) -> Result<Arc<ModelMapping>, MappingError> {
        validate_model_id(model_id)?;
        match &self.inner.cache {
            None => self.fetch(model_id).await.map(Arc::new),
            Some(cache) => cache
                .try_get_with(model_id.to_owned(), async { self.fetch(model_id).await.map(Arc::new) })
                .await
                .map_err(|shared| (*shared).clone()),
        }
    }

    /// Forgets every cached answer.
    pub fn clear_cache(&self) {
        if let Some(cache) = &self.inner.cache {
            cache.invalidate_all();
        }
    }

    fn model_url(&self, model_id: &str) -> Url {
        let mut url = self.inner.hub_url.clone();
        {
            let base_path = url.path().trim_end_matches('/').to_owned();
            let mut path = base_path;
            path.push_str("/api/models/");
            path.push_str(model_id);
            url.set_path(&path);
        }
        url.set_query(Some("expand[]=inferenceProviderMapping"));
        url
    }

    async fn fetch(&self, model_id: &str) -> Result<ModelMapping, MappingError> {
        let url = self.model_url(model_id);
        tracing::debug!(model = model_id, url = %url, "asking the Hub for the provider mapping");
        let subject = Subject::Model(model_id);
        let answer = self.get_json(url, subject).await?.body;
        let field = answer
            .as_object()
            .ok_or_else(|| subject.invalid("the answer is not a JSON object".into()))?
            .get("inferenceProviderMapping");
        ModelMapping::from_hub_field(model_id, field).map_err(|reason| subject.invalid(reason))
    }

    /// The Hub's models matching `query`, each with its provider mapping (every status and task, in the
    /// Hub's order), in the Hub's order: `GET {hub}/api/models?inference_provider=…&pipeline_tag=…&
    /// expand[]=inferenceProviderMapping&limit=…` (and `search=…`).
    ///
    /// Pages are followed through the `Link: <…>; rel="next"` header until [`ModelQuery::limit`] models are
    /// collected, there is no next page, or 50 pages were read. A next link to another origin than the
    /// Hub's is ignored, so the token is never sent elsewhere. Answers are not cached.
    pub async fn list_models(&self, query: &ModelQuery) -> Result<Vec<ModelMapping>, MappingError> {
        let mut models = Vec::new();
        if query.limit == 0 {
            return Ok(models);
        }
        let first = self.list_url(query);
        let label = list_label(&first);
        let subject = Subject::List(&label);
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next.take() {
            if pages == MAX_LIST_PAGES {
                tracing::debug!(pages, "stopped following the Hub's model list after the page bound");
                break;
            }
            pages += 1;
            tracing::debug!(url = %url, page = pages, "asking the Hub for a page of models");
            let answer = self.get_json(url.clone(), subject).await?;
            let list = answer
                .body
                .as_array()
                .ok_or_else(|| subject.invalid("the answer is not a JSON list of models".into()))?;
            for (i, model) in list.iter().enumerate() {
                if models.len() == query.limit {
                    break;
                }
                models.push(parse_listed_model(subject, i, model)?);
            }
            if models.len() == query.limit {
                break;
            }
            next = answer.next_link.and_then(|link| self.same_origin_link(&url, &link));
        }
        Ok(models)
    }

    fn list_url(&self, query: &ModelQuery) -> Url {
        let mut url = self.inner.hub_url.clone();
        let path = format!("{}/api/models", url.path().trim_end_matches('/'));
        url.set_path(&path);
        let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let mut q = format!(
            "inference_provider={}",
            encode(query.provider.as_deref().unwrap_or("all"))
        );
        if let Some(task) = &query.task {
            q.push_str("&pipeline_tag=");
            q.push_str(&encode(task.as_str()));
        }
        q.push_str("&expand[]=inferenceProviderMapping&limit=");
        q.push_str(&query.effective_page_size().to_string());
        if let Some(search) = &query.search {
            q.push_str("&search=");
            q.push_str(&encode(search));
        }
        url.set_query(Some(&q));
        url
    }

    /// The next page's URL, if `link` (resolved against the current page) stays on the Hub's origin.
    fn same_origin_link(&self, page: &Url, link: &str) -> Option<Url> {
        let next = match page.join(link) {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(error = %e, "ignored the Hub's next-page link: not a URL");
                return None;
            }
        };
        if next.origin() != self.inner.hub_url.origin() {
            tracing::warn!(
                host = next.host_str().unwrap_or(""),
                "ignored the Hub's next-page link: it points to another origin than the Hub"
            );
            return None;
        }
        Some(next)
    }

    /// One GET to the Hub, with the token: the JSON answer and its next-page link, or the typed error.
    async fn get_json(&self, url: Url, subject: Subject<'_>) -> Result<HubAnswer, MappingError> {
        let mut request = self.inner.http.get(url).header("accept", "application/json");
        if let Some(token) = &self.inner.token {
            request = request.bearer_auth(token.expose_secret());
        }
        let network = |e: reqwest::Error| MappingError::Network {
            model: subject.name().to_owned(),
            message: e.without_url().to_string(),
        };
        let mut response = request.send().await.map_err(network)?;
        let status = response.status();
        let header_message = response
            .headers()
            .get("x-error-message")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let next_link = response
            .headers()
            .get_all(reqwest::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(next_link)
            .map(str::to_owned);
        let retry_after = crate::retry_after(response.headers());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(network)? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(subject.invalid(format!("the answer is larger than {MAX_ANSWER_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let message = header_message.unwrap_or_else(|| error_text(&body));
            return Err(status_error(subject, status.as_u16(), message, retry_after));
        }
        let body = serde_json::from_slice(&body).map_err(|e| subject.invalid(format!("not JSON: {e}")))?;
        Ok(HubAnswer { body, next_link })
    }
}

/// The most pages [`MappingClient::list_models`] reads, whatever the Hub's links say.
const MAX_LIST_PAGES: usize = 50;

/// What a Hub request asked for: names it in errors, and says what a 404 means.
#[derive(Clone, Copy)]
enum Subject<'a> {
    /// One model's mapping: a 404 is [`MappingError::ModelNotFound`].
    Model(&'a str),
    /// A model list, named by its first page's path and query.
    List(&'a str),
}

impl Subject<'_> {
    fn name(&self) -> &str {
        match self {
            Subject::Model(name) | Subject::List(name) => name,
        }
    }

    fn invalid(&self, reason: String) -> MappingError {
        MappingError::InvalidResponse {
            model: self.name().to_owned(),
            reason,
        }
    }
}

/// A successful Hub answer.
struct HubAnswer {
    body: Value,
    /// The `rel="next"` target of the `Link` header, as written (possibly relative).
    next_link: Option<String>,
}

/// The error of a non-success Hub status.
fn status_error(
    subject: Subject<'_>,
    status: u16,
    message: String,
    retry_after: Option<std::time::Duration>,
) -> MappingError {
    let model = subject.name().to_owned();
    match (status, subject) {
        (404, Subject::Model(_)) => MappingError::ModelNotFound { model },
        (401 | 403, _) => MappingError::Unauthorized { model, status, message },
        _ => MappingError::Http {
            model,
            status,
            message,
            retry_after,
        },
    }
}

/// How a model list is named in errors: its first page's path and query (no host, never a token).
fn list_label(url: &Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

/// One model of a list answer: `{"id": …, "inferenceProviderMapping": …}`.
fn parse_listed_model(subject: Subject<'_>, index: usize, model: &Value) -> Result<ModelMapping, MappingError> {
    let object = model
        .as_object()
        .ok_or_else(|| subject.invalid(format!("model #{index} is not a JSON object")))?;
    let id = object
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| subject.invalid(format!("model #{index} has no `id` string")))?;
    ModelMapping::from_hub_field(id, object.get("inferenceProviderMapping")).map_err(|reason| {
        MappingError::InvalidResponse {
            model: id.to_owned(),
            reason,
        }
    })
}

/// The Hub's error text: the `error` field of a JSON body, else the start of the body.
fn error_text(body: &[u8]) -> String {
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body)
        && let Some(Value::String(message)) = map.get("error")
    {
        return message.clone();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        text.chars().take(300).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_are_checked() {
        for ok in [
            "black-forest-labs/FLUX.1-schnell",
            "gpt2",
            "stabilityai/sdxl-turbo",
            "a_b/c.d-e",
        ] {
            assert_eq!(validate_model_id(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a/b/c", "a//b", "/b", "a/..", "a b/c", "a/b?x=1", "../etc", "a/b:c"] {
            assert!(validate_model_id(bad).is_err(), "{bad} should be refused");
        }
        let err = validate_model_id("a b").unwrap_err().to_string();
        assert!(err.contains("org/name"), "{err}");
    }

    #[test]
    fn the_url_keeps_a_base_path_and_the_expand_query() {
        let client = MappingClient::builder()
            .hub_url("http://127.0.0.1:9/hub/")
            .build()
            .unwrap();
        assert_eq!(
            client.model_url("org/model").as_str(),
            "http://127.0.0.1:9/hub/api/models/org/model?expand[]=inferenceProviderMapping"
        );
    }

    #[test]
    fn the_list_url_carries_the_query_and_keeps_a_base_path() {
        let client = MappingClient::builder()
            .hub_url("http://127.0.0.1:9/hub/")
            .build()
            .unwrap();
        assert_eq!(
            client.list_url(&ModelQuery::new()).as_str(),
            "http://127.0.0.1:9/hub/api/models?inference_provider=all&expand[]=inferenceProviderMapping&limit=100"
        );
        let query = ModelQuery::new()
            .task(crate::Task::TextToVideo)
            .provider("fal-ai")
            .search("wan 2&x")
            .limit(30)
            .page_size(1000);
        assert_eq!(
            client.list_url(&query).as_str(),
            "http://127.0.0.1:9/hub/api/models?inference_provider=fal-ai&pipeline_tag=text-to-video\
             &expand[]=inferenceProviderMapping&limit=30&search=wan+2%26x"
        );
        assert_eq!(
            ModelQuery::new().page_size(1000).limit(10_000).effective_page_size(),
            500
        );
        assert_eq!(ModelQuery::new().page_size(0).effective_page_size(), 1);
    }

    #[test]
    fn only_same_origin_next_links_are_followed() {
        let client = MappingClient::builder()
            .hub_url("https://huggingface.co/base")
            .build()
            .unwrap();
        let page = Url::parse("https://huggingface.co/base/api/models?limit=2").unwrap();
        for ok in [
            "https://huggingface.co/base/api/models?cursor=x",
            "https://huggingface.co:443/api/models?cursor=x",
            "/base/api/models?cursor=x",
            "?cursor=x",
        ] {
            assert!(client.same_origin_link(&page, ok).is_some(), "{ok}");
        }
        for foreign in [
            "http://huggingface.co/base/api/models?cursor=x",
            "https://huggingface.co:8443/base/api/models",
            "https://evil.example/base/api/models",
            "//evil.example/api/models",
            "https://huggingface.co.evil.example/api/models",
        ] {
            assert!(client.same_origin_link(&page, foreign).is_none(), "{foreign}");
        }
    }

    #[test]
    fn statuses_map_to_the_same_errors_for_models_and_lists() {
        let model = Subject::Model("a/b");
        let list = Subject::List("/api/models?limit=1");
        assert_eq!(
            status_error(model, 404, "x".into(), None),
            MappingError::ModelNotFound { model: "a/b".into() }
        );
        assert!(matches!(
            status_error(list, 404, "x".into(), None),
            MappingError::Http { status: 404, .. }
        ));
        for subject in [model, list] {
            assert!(matches!(
                status_error(subject, 403, "gated".into(), None),
                MappingError::Unauthorized { status: 403, message, .. } if message == "gated"
            ));
            assert!(matches!(
                status_error(subject, 503, "busy".into(), None),
                MappingError::Http { status: 503, .. }
            ));
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let builder = MappingClient::builder().token("hf_canary_secret");
        assert!(!format!("{builder:?}").contains("hf_canary_secret"));
        let client = builder.build().unwrap();
        let shown = format!("{client:?}");
        assert!(
            !shown.contains("hf_canary_secret") && shown.contains("[redacted]"),
            "{shown}"
        );
    }

    #[test]
    fn bad_hub_urls_are_refused() {
        assert!(matches!(
            MappingClient::builder().hub_url("not a url").build(),
            Err(MappingError::Config(_))
        ));
        assert!(matches!(
            MappingClient::builder().hub_url("ftp://x").build(),
            Err(MappingError::Config(_))
        ));
    }
}
