//! The `Retry-After` header, read in one place for the Hub and every provider.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// The `Retry-After` header: a number of seconds, or an HTTP date (the wait until then; zero if past).
/// `None` when absent or unreadable. Whether the wait is honoured is the retry policy's decision.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}
