//! Where a failed answer says what went wrong (`X-Error-Message`, the JSON body's error fields, the body's
//! start) and how long it asks to wait (`Retry-After`).

use reqwest::header::HeaderMap;
use serde_json::Value;

/// The `Retry-After` header (the Hub's and the providers' one parser).
pub use hf_media_mapping::retry_after;

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
}
