//! The answer of the OpenAI images API (`POST /v1/images/generations`), which together, nscale and every
//! OpenAI-compatible server send: `{"data": [{"b64_json": …} | {"url": …}], …}`.

use serde_json::Value;

use crate::http::{decode_base64, media_url};
use crate::{MediaBody, MediaOutput, ProviderError};

/// Reads an OpenAI-style images answer of `provider`: `data[0].b64_json` (decoded) or `data[0].url`, the
/// rest of the answer kept as the provider's response (without the media bytes).
pub fn images_api_answer(provider: &str, answer: &Value) -> Result<MediaOutput, ProviderError> {
    let first = answer.pointer("/data/0");
    let body = if let Some(b64) = first.and_then(|d| d.get("b64_json")).and_then(Value::as_str) {
        MediaBody::Bytes(decode_base64(provider, b64)?)
    } else if let Some(url) = first.and_then(|d| d.get("url")).and_then(Value::as_str) {
        MediaBody::Url(media_url(provider, url)?)
    } else {
        return Err(ProviderError::invalid_response(
            provider,
            "the answer has no `data[0].b64_json` or `data[0].url`",
        ));
    };
    Ok(MediaOutput::new(body).with_provider_response(answer))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn base64_and_url_answers_carry_the_providers_name() {
        let out = images_api_answer(
            "my-images",
            &json!({"data": [{"b64_json": "aGVsbG8=", "index": 0}], "seed": 4}),
        )
        .unwrap();
        assert!(matches!(out.body, MediaBody::Bytes(ref b) if b.as_ref() == b"hello"));
        let kept = out.provider_response.unwrap();
        assert_eq!(kept["data"][0]["index"], json!(0));
        assert_eq!(kept["data"][0]["b64_json"], json!("… (8 characters)"));
        assert_eq!(out.seed, Some(4));
        let out = images_api_answer("my-images", &json!({"data": [{"url": "https://cdn.example/x.png"}]})).unwrap();
        assert!(matches!(out.body, MediaBody::Url(ref u) if u.as_str() == "https://cdn.example/x.png"));
        for bad in [
            json!({"data": []}),
            json!({"data": [{"b64_json": "%%%"}]}),
            json!({"data": [{"url": "file:///x"}]}),
        ] {
            assert!(
                matches!(images_api_answer("my-images", &bad), Err(ProviderError::InvalidResponse { ref provider, .. }) if provider == "my-images"),
                "{bad}"
            );
        }
    }
}
