//! What every provider shares: sending with status → error mapping, reading JSON answers, the polling
//! loop, base64 and `data:` URL decoding, and plain media downloads.

use std::future::Future;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::HeaderMap;
use serde_json::Value;
use url::Url;

use crate::{ByteStream, ProviderContext, ProviderError, ProviderStatus};

/// The most bytes of a JSON answer that are read (base64 media included).
pub const MAX_JSON_BYTES: usize = 512 * 1024 * 1024;

const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Describes a reqwest error with its causes, never with the URL (which may carry signed query strings).
pub fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "the request timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else if error.is_body() || error.is_decode() {
        "the body could not be read".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn network(provider: &str, error: &reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        return ProviderError::RequestTimeout {
            provider: provider.to_owned(),
            what: if error.is_body() || error.is_decode() {
                "the answer stopped arriving (stall timeout)".to_owned()
            } else if error.is_connect() {
                "the connection could not be opened (connect timeout)".to_owned()
            } else {
                "no answer within the request timeout".to_owned()
            },
        };
    }
    ProviderError::Network {
        provider: provider.to_owned(),
        message: describe(error),
    }
}

/// A broken body as the byte stream's error.
fn stream_error(provider: &str, error: &reqwest::Error) -> crate::StreamError {
    match network(provider, error) {
        ProviderError::RequestTimeout { what, .. } => crate::StreamError::timeout(what),
        other => crate::StreamError::network(other.message()),
    }
}

/// Sends a request built with [`ProviderContext::request`]; a non-success status becomes
/// [`ProviderError::Http`] with the provider's own message.
pub async fn send(ctx: &ProviderContext, request: reqwest::RequestBuilder) -> Result<reqwest::Response, ProviderError> {
    let response = request.send().await.map_err(|e| network(ctx.provider(), &e))?;
    check_status(ctx.provider(), response).await
}

/// Sends a request without looking at the status (for providers with status codes of their own, such as
/// hf-inference's 503 "model is loading").
pub async fn send_unchecked(
    ctx: &ProviderContext,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, ProviderError> {
    request.send().await.map_err(|e| network(ctx.provider(), &e))
}

/// Reads a failed answer's body (at most 64 KiB) and turns it into [`ProviderError::Http`]; also returns
/// the body, for providers that read more from it.
pub async fn http_error(provider: &str, response: reqwest::Response) -> (ProviderError, Vec<u8>) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = read_limited(provider, response, 64 * 1024, true)
        .await
        .unwrap_or_default();
    let error = ProviderError::Http {
        provider: provider.to_owned(),
        status,
        message: error_message(&headers, &body),
        retry_after: retry_after(&headers),
    };
    (error, body)
}

/// Turns a non-success answer into [`ProviderError::Http`]; passes a success through.
pub async fn check_status(provider: &str, response: reqwest::Response) -> Result<reqwest::Response, ProviderError> {
    if response.status().is_success() {
        return Ok(response);
    }
    Err(http_error(provider, response).await.0)
}

/// Reads at most `limit` bytes of a body; past it, an error (or, with `truncate`, the first `limit` bytes).
async fn read_limited(
    provider: &str,
    mut response: reqwest::Response,
    limit: usize,
    truncate: bool,
) -> Result<Vec<u8>, ProviderError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| network(provider, &e))? {
        if body.len() + chunk.len() > limit {
            if truncate {
                body.extend_from_slice(&chunk[..limit - body.len()]);
                return Ok(body);
            }
            return Err(ProviderError::InvalidResponse {
                provider: provider.to_owned(),
                reason: format!("the JSON answer is larger than {limit} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Answers larger than this are parsed on a blocking thread, off the async workers.
const PARSE_OFF_THREAD_BYTES: usize = 1024 * 1024;

/// Reads a JSON answer (at most [`MAX_JSON_BYTES`]). Large answers (base64 media) are parsed on a blocking
/// thread, so that progress ticks, timers and other generations are not held up.
pub async fn read_json(provider: &str, response: reqwest::Response) -> Result<Value, ProviderError> {
    let body = read_limited(provider, response, MAX_JSON_BYTES, false).await?;
    let invalid = |e: serde_json::Error, body: &[u8]| ProviderError::InvalidResponse {
        provider: provider.to_owned(),
        reason: format!("the answer is not valid JSON ({e}); it starts with {:?}", preview(body)),
    };
    if body.len() <= PARSE_OFF_THREAD_BYTES {
        return serde_json::from_slice(&body).map_err(|e| invalid(e, &body));
    }
    let parsed = tokio::task::spawn_blocking(move || {
        let parsed = serde_json::from_slice::<Value>(&body);
        (parsed, body)
    })
    .await;
    match parsed {
        Ok((Ok(value), _)) => Ok(value),
        Ok((Err(e), body)) => Err(invalid(e, &body)),
        Err(join) => Err(ProviderError::InvalidResponse {
            provider: provider.to_owned(),
            reason: format!("the answer could not be parsed: {join}"),
        }),
    }
}

/// Sends a request and reads its JSON answer.
pub async fn send_json(ctx: &ProviderContext, request: reqwest::RequestBuilder) -> Result<Value, ProviderError> {
    let response = send(ctx, request).await?;
    read_json(ctx.provider(), response).await
}

fn preview(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned()
}

/// The `Retry-After` header: a number of seconds, or an HTTP date (the wait until then; zero if past).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The error text of a failed answer, wherever the provider put it: `X-Error-Message`, `error` (string or
/// `{message}`), `detail` (string or pydantic list), `message`, `errors[].message`; else the body's start.
pub fn error_message(headers: &HeaderMap, body: &[u8]) -> String {
    if let Some(message) = headers
        .get("x-error-message")
        .and_then(|v| v.to_str().ok())
        .filter(|m| !m.trim().is_empty())
    {
        return message.to_owned();
    }
    if let Ok(json) = serde_json::from_slice::<Value>(body)
        && let Some(message) = json_error_text(&json)
    {
        return message;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(no message)".to_owned()
    } else {
        text.chars().take(500).collect()
    }
}

/// The error text inside a JSON body, if any.
pub fn json_error_text(json: &Value) -> Option<String> {
    fn text(s: &str) -> Option<String> {
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_owned())
    }
    let text_of = |v: &Value| match v {
        Value::String(s) => text(s),
        Value::Object(o) => o.get("message").and_then(Value::as_str).and_then(text),
        _ => None,
    };
    if let Some(message) = json.get("error").and_then(text_of) {
        return Some(message);
    }
    match json.get("detail") {
        Some(Value::String(s)) => {
            if let Some(message) = text(s) {
                return Some(message);
            }
        }
        Some(Value::Array(items)) => {
            let parts: Vec<String> = items
                .iter()
                .map(|item| {
                    let msg = item.get("msg").and_then(Value::as_str).and_then(text);
                    let msg = msg.as_deref().unwrap_or("invalid");
                    let loc = item.get("loc").and_then(Value::as_array).map(|l| {
                        l.iter()
                            .map(|p| p.to_string().trim_matches('"').to_owned())
                            .collect::<Vec<_>>()
                            .join(".")
                    });
                    match loc.filter(|l| !l.is_empty()) {
                        Some(loc) => format!("{loc}: {msg}"),
                        None => msg.to_owned(),
                    }
                })
                .collect();
            if !parts.is_empty() {
                return Some(parts.join("; "));
            }
        }
        _ => {}
    }
    if let Some(message) = json.get("message").and_then(Value::as_str).and_then(text) {
        return Some(message);
    }
    let errors: Vec<String> = json
        .get("errors")?
        .as_array()?
        .iter()
        .filter_map(|e| e.get("message").and_then(Value::as_str).and_then(text))
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

/// Decodes standard base64 (padding optional, whitespace ignored).
pub fn decode_base64(provider: &str, encoded: &str) -> Result<Bytes, ProviderError> {
    let cleaned: String;
    let input = if encoded.bytes().any(|b| b.is_ascii_whitespace()) {
        cleaned = encoded.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        cleaned.as_str()
    } else {
        encoded
    };
    BASE64
        .decode(input)
        .map(Bytes::from)
        .map_err(|e| ProviderError::InvalidResponse {
            provider: provider.to_owned(),
            reason: format!("the base64 media could not be decoded: {e}"),
        })
}

/// Reads an OpenAI-style images answer: `data[0].b64_json` (decoded) or `data[0].url`.
pub fn images_api_answer(provider: &str, answer: &Value) -> Result<crate::MediaOutput, ProviderError> {
    let first = answer.pointer("/data/0");
    let body = if let Some(b64) = first.and_then(|d| d.get("b64_json")).and_then(Value::as_str) {
        crate::MediaBody::Bytes(decode_base64(provider, b64)?)
    } else if let Some(url) = first.and_then(|d| d.get("url")).and_then(Value::as_str) {
        crate::MediaBody::Url(media_url(provider, url)?)
    } else {
        return Err(ProviderError::InvalidResponse {
            provider: provider.to_owned(),
            reason: "the answer has no `data[0].b64_json` or `data[0].url`".into(),
        });
    };
    Ok(crate::MediaOutput::new(body).with_provider_response(answer))
}

/// A job id from a provider's answer, checked before it goes into a URL path: letters, digits, `-`, `_`
/// and `.` only (no `/`, no `..`), at most 200 characters.
pub fn job_id<'a>(provider: &str, id: &'a str) -> Result<&'a str, ProviderError> {
    let valid = !id.is_empty()
        && id.len() <= 200
        && !id.contains("..")
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(id)
    } else {
        Err(ProviderError::InvalidResponse {
            provider: provider.to_owned(),
            reason: format!(
                "the job id {:?} is not a plain id (letters, digits, `-`, `_`, `.`)",
                id.chars().take(60).collect::<String>()
            ),
        })
    }
}

/// A media URL from a provider's answer: only `http`, `https` and `data:` URLs are accepted.
pub fn media_url(provider: &str, raw: &str) -> Result<Url, ProviderError> {
    let url = Url::parse(raw).map_err(|e| ProviderError::InvalidResponse {
        provider: provider.to_owned(),
        reason: format!(
            "the media URL {:?} is not a URL: {e}",
            raw.chars().take(100).collect::<String>()
        ),
    })?;
    match url.scheme() {
        "http" | "https" | "data" => Ok(url),
        other => Err(ProviderError::InvalidResponse {
            provider: provider.to_owned(),
            reason: format!("the media URL has the scheme `{other}`; only http, https and data URLs are accepted"),
        }),
    }
}

/// Downloads a media URL with a plain GET: no credentials, whatever the host. `data:` URLs are decoded
/// in place. Returns the byte stream and the claimed MIME type.
pub async fn download(
    http: &reqwest::Client,
    provider: &str,
    url: &Url,
) -> Result<(ByteStream, Option<String>), ProviderError> {
    if url.scheme() == "data" {
        let data = data_url::DataUrl::process(url.as_str()).map_err(|e| ProviderError::InvalidResponse {
            provider: provider.to_owned(),
            reason: format!("the data URL is malformed: {e:?}"),
        })?;
        let mime = data.mime_type().to_string();
        let (bytes, _) = data.decode_to_vec().map_err(|e| ProviderError::InvalidResponse {
            provider: provider.to_owned(),
            reason: format!("the data URL's base64 could not be decoded: {e:?}"),
        })?;
        let stream: ByteStream = futures::stream::once(async move { Ok(Bytes::from(bytes)) }).boxed();
        return Ok((stream, Some(mime)));
    }
    let response = http.get(url.clone()).send().await.map_err(|e| network(provider, &e))?;
    // A missing media is a bad media URL, not a statement about the model: it must never read as the
    // provider's "404 = model not supported". Other statuses keep their meaning (5xx and 429 are retried).
    let response = check_status(provider, response).await.map_err(|e| match e {
        ProviderError::Http {
            status: 404, message, ..
        } => ProviderError::InvalidResponse {
            provider: provider.to_owned(),
            reason: format!("the media URL answered HTTP 404: {message}"),
        },
        other => other,
    })?;
    let mime = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((body_stream(provider, response), mime))
}

/// A response body as a [`ByteStream`].
pub fn body_stream(provider: &str, response: reqwest::Response) -> ByteStream {
    let provider = provider.to_owned();
    response
        .bytes_stream()
        .map(move |chunk| chunk.map_err(|e| stream_error(&provider, &e)))
        .boxed()
}

/// Keys whose string value is always media bytes.
const MEDIA_KEYS: [&str; 3] = ["b64_json", "base64", "image_base64"];

/// Replaces media bytes in a provider's answer by short placeholders (`data:` URLs, `b64_json` and other
/// base64 fields whatever their length, any string over 4 KiB), so the rest can travel with the media and
/// into the sidecar.
pub fn strip_media(value: &Value) -> Value {
    match value {
        Value::String(s) if s.starts_with("data:") => Value::String(format!("data:… ({} characters)", s.len())),
        Value::String(s) if s.len() > 4096 => Value::String(format!("… ({} characters)", s.len())),
        Value::Array(items) => Value::Array(items.iter().map(strip_media).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let stripped = match v {
                        Value::String(s) if MEDIA_KEYS.contains(&k.as_str()) => {
                            Value::String(format!("… ({} characters)", s.len()))
                        }
                        other => strip_media(other),
                    };
                    (k.clone(), stripped)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What one poll found.
#[derive(Debug)]
pub enum Poll<T> {
    /// Still pending, in this state.
    Pending(ProviderStatus),
    /// Done.
    Ready(T),
}

/// Transient failures in a row that a polling loop rides out before giving up.
pub const MAX_POLL_FAILURES: u32 = 5;

/// Polls until `check` is ready: sleeps [`crate::PollConfig::interval`] before each check, reports each
/// new pending state, and ends with [`ProviderError::Timeout`] past [`crate::PollConfig::deadline`].
///
/// A job that is already running is never given up for a passing hiccup: a transient failure of a status
/// request (429, 5xx, a broken connection, an HTTP timeout) counts as one more pending tick, up to
/// [`MAX_POLL_FAILURES`] in a row (retrying the whole job would submit, and pay for, a second one). A 404
/// on the job's own URL means the job is gone: a [`ProviderError::JobFailed`], never the provider's "model
/// not supported". `check` ends the loop early by returning any other error (failed jobs, unknown states).
pub async fn poll_until<T, F, Fut>(ctx: &ProviderContext, what: &str, mut check: F) -> Result<T, ProviderError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<Poll<T>, ProviderError>>,
{
    let config = ctx.poll();
    let started = Instant::now();
    let mut last: Option<ProviderStatus> = None;
    let mut failures = 0;
    for attempt in 1.. {
        let remaining = config.deadline.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            break;
        }
        tokio::time::sleep(config.interval.min(remaining)).await;
        let outcome = tokio::time::timeout(config.deadline.saturating_sub(started.elapsed()), check(attempt)).await;
        match outcome {
            Err(_) => break,
            Ok(Err(e)) if e.is_model_not_supported() => {
                return Err(ProviderError::JobFailed {
                    provider: ctx.provider().to_owned(),
                    job_id: last.as_ref().and_then(|s| s.job_id.clone()).unwrap_or_default(),
                    message: format!("the job is gone while {what} (HTTP 404: {})", e.message()),
                });
            }
            Ok(Err(e)) if e.is_retryable() && failures + 1 < MAX_POLL_FAILURES => {
                failures += 1;
                tracing::info!(provider = ctx.provider(), error = %e, failures, "status request failed; polling on");
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Poll::Ready(value))) => return Ok(value),
            Ok(Ok(Poll::Pending(status))) => {
                failures = 0;
                if last.as_ref() != Some(&status) {
                    ctx.report(status.clone());
                    last = Some(status);
                }
            }
        }
    }
    Err(ProviderError::Timeout {
        provider: ctx.provider().to_owned(),
        what: what.to_owned(),
        after: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[track_caller]
    fn check(body: &str, expected: &str) {
        assert_eq!(error_message(&HeaderMap::new(), body.as_bytes()), expected, "{body}");
    }

    #[test]
    fn error_text_is_found_wherever_providers_put_it() {
        check(r#"{"error":"Model x does not exist"}"#, "Model x does not exist");
        check(
            r#"{"error":{"message":"Invalid request","type":"invalid_request_error"}}"#,
            "Invalid request",
        );
        check(r#"{"detail":"Unsupported data URL"}"#, "Unsupported data URL");
        check(
            r#"{"detail":[{"loc":["body","model_name"],"msg":"field required","type":"value_error.missing"}]}"#,
            "body.model_name: field required",
        );
        check(
            r#"{"message":"No API key found in request","request_id":"r"}"#,
            "No API key found in request",
        );
        check(r#"{"errors":[{"message":"a"},{"message":"b"}]}"#, "a; b");
        check("404: Not Found", "404: Not Found");
        check("", "(no message)");
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-error-message",
            "Invalid credentials in Authorization header".parse().unwrap(),
        );
        assert_eq!(
            error_message(&headers, b"{}"),
            "Invalid credentials in Authorization header"
        );
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
        let in_a_minute = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(60));
        headers.insert("retry-after", in_a_minute.parse().unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(55) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        headers.insert("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(
            retry_after(&headers),
            Some(Duration::ZERO),
            "a date in the past: no wait"
        );
        for absurd in ["1e20", "-3", "NaN", "inf"] {
            headers.insert("retry-after", absurd.parse().unwrap());
            assert!(
                retry_after(&headers).is_none_or(|d| d > Duration::from_secs(1_000_000)),
                "{absurd}"
            );
        }
    }

    #[test]
    fn base64_tolerates_missing_padding_and_newlines_and_reports_garbage() {
        assert_eq!(decode_base64("p", "aGVsbG8=").unwrap(), Bytes::from_static(b"hello"));
        assert_eq!(decode_base64("p", "aGVs\nbG8").unwrap(), Bytes::from_static(b"hello"));
        let err = decode_base64("together", "@@@").unwrap_err();
        assert!(matches!(err, ProviderError::InvalidResponse { ref provider, .. } if provider == "together"));
    }

    #[test]
    fn job_ids_must_be_plain_before_they_go_into_a_path() {
        assert_eq!(job_id("p", "abc-123_x.y").unwrap(), "abc-123_x.y");
        for bad in ["", "../../x", "a/b", "a b", "a?b", "é"] {
            assert!(
                matches!(job_id("together", bad), Err(ProviderError::InvalidResponse { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_http_and_data_urls_are_media_urls() {
        assert!(media_url("p", "https://cdn.example/x.png").is_ok());
        assert!(media_url("p", "data:image/png;base64,AAAA").is_ok());
        assert!(media_url("p", "file:///etc/passwd").is_err());
        assert!(media_url("p", "relative/x.png").is_err());
    }

    #[test]
    fn strip_media_keeps_metadata_and_drops_bytes() {
        let answer = json!({"images": [{"url": "data:image/png;base64,AAAA", "width": 1}], "seed": 5,
                            "data": [{"b64_json": "x".repeat(5000)}]});
        let stripped = strip_media(&answer);
        assert_eq!(stripped["seed"], json!(5));
        assert_eq!(stripped["images"][0]["width"], json!(1));
        assert!(stripped["images"][0]["url"].as_str().unwrap().starts_with("data:… ("));
        assert_eq!(stripped["data"][0]["b64_json"], json!("… (5000 characters)"));
        let small = strip_media(&json!({"data": [{"b64_json": "aGVsbG8="}]}));
        assert_eq!(small["data"][0]["b64_json"], json!("… (8 characters)"));
    }

    #[tokio::test]
    async fn data_urls_are_decoded_without_a_request() {
        use futures::TryStreamExt;
        let url = Url::parse("data:image/png;base64,aGVsbG8=").unwrap();
        let (stream, mime) = download(&reqwest::Client::new(), "fal-ai", &url).await.unwrap();
        let bytes: Vec<Bytes> = stream.try_collect().await.unwrap();
        assert_eq!(bytes.concat(), b"hello");
        assert_eq!(mime.as_deref(), Some("image/png"));
    }
}
