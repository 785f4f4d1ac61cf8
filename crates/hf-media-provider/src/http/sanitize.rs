//! Checking and cleaning what comes from a provider's answer before it is used: base64 media, job ids that
//! go into URL paths, media URLs, and the answer itself without its media bytes.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use serde_json::Value;
use url::Url;

use crate::ProviderError;

const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

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
        .map_err(|e| ProviderError::invalid_response(provider, format!("the base64 media could not be decoded: {e}")))
}

/// A job id from a provider's answer, checked before it goes into a URL path: letters, digits, `-`, `_`
/// and `.` only (no `/`, no `..`), at most 200 characters.
pub fn job_id<'a>(provider: &str, id: &'a str) -> Result<&'a str, ProviderError> {
    if is_plain_id(id) {
        Ok(id)
    } else {
        Err(ProviderError::invalid_response(
            provider,
            format!(
                "the job id {:?} is not a plain id (letters, digits, `-`, `_`, `.`)",
                id.chars().take(60).collect::<String>()
            ),
        ))
    }
}

/// The rule of [`job_id`]: letters, digits, `-`, `_` and `.` only, no `..`, 1 to 200 characters.
pub(crate) fn is_plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && !id.contains("..")
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A media URL from a provider's answer: only `http`, `https` and `data:` URLs are accepted.
pub fn media_url(provider: &str, raw: &str) -> Result<Url, ProviderError> {
    let url = Url::parse(raw).map_err(|e| {
        ProviderError::invalid_response(
            provider,
            format!(
                "the media URL {:?} is not a URL: {e}",
                raw.chars().take(100).collect::<String>()
            ),
        )
    })?;
    match url.scheme() {
        "http" | "https" | "data" => Ok(url),
        other => Err(ProviderError::invalid_response(
            provider,
            format!("the media URL has the scheme `{other}`; only http, https and data URLs are accepted"),
        )),
    }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
}
