//! Pieces shared by the providers' answer parsers.

use serde_json::Value;

use crate::http::{json_error_text, media_url};
use crate::{MediaBody, MediaOutput, ProviderError};

/// An answer of `provider` without `what` (a field, in backticks): an invalid response, which says the
/// answer's own error text when it carries one (`{"message": "no credits"}`).
pub(crate) fn missing(provider: &str, answer: &Value, what: &str) -> ProviderError {
    let reason = match json_error_text(answer) {
        Some(message) => format!("the answer has no {what} ({message})"),
        None => format!("the answer has no {what}"),
    };
    ProviderError::invalid_response(provider, reason)
}

/// The media of a finished job at `raw` (checked by [`media_url`]), with `answer` as the provider's
/// response.
pub(crate) fn media_at(provider: &str, raw: &str, answer: &Value) -> Result<MediaOutput, ProviderError> {
    let url = media_url(provider, raw)?;
    Ok(MediaOutput::new(MediaBody::Url(url)).with_provider_response(answer))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_missing_field_says_the_answers_own_error() {
        assert_eq!(
            missing("novita", &json!({"message": "no credits"}), "`task_id`"),
            ProviderError::invalid_response("novita", "the answer has no `task_id` (no credits)")
        );
        assert_eq!(
            missing("novita", &json!({}), "`task_id`"),
            ProviderError::invalid_response("novita", "the answer has no `task_id`")
        );
    }

    #[test]
    fn media_urls_are_checked_and_the_answer_kept() {
        let out = media_at("zai-org", "https://cdn.z.ai/x.png", &json!({"id": "t", "seed": 2})).unwrap();
        assert!(matches!(out.body, MediaBody::Url(ref u) if u.as_str() == "https://cdn.z.ai/x.png"));
        assert_eq!(
            (out.seed, out.provider_response.unwrap()["id"].as_str()),
            (Some(2), Some("t"))
        );
        assert!(matches!(
            media_at("zai-org", "file:///etc/passwd", &json!({})),
            Err(ProviderError::InvalidResponse { ref provider, .. }) if provider == "zai-org"
        ));
    }
}
