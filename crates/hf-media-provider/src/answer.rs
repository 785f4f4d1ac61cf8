//! Pieces shared by the providers' answer parsers.

use serde_json::Value;

use crate::http::{Poll, json_error_text, media_url};
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

/// What a failed job's answer says: `text` (the provider's own field for it) when it says something, else
/// the answer's error text, else `default`.
pub(crate) fn failure_message(text: Option<&Value>, answer: &Value, default: &str) -> String {
    text.and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
        .or_else(|| json_error_text(answer))
        .unwrap_or_else(|| default.to_owned())
}

/// A submit answer read as the job's state (`parsed`), for providers whose submit answer may already say
/// it: done or pending as it says, a failed job as an error, and `None` when it says no state (any other
/// error of the parser: the job is polled if the answer names it).
pub(crate) fn submitted(
    parsed: Result<Poll<MediaOutput>, ProviderError>,
) -> Result<Option<Poll<MediaOutput>>, ProviderError> {
    match parsed {
        Ok(state) => Ok(Some(state)),
        Err(failed @ ProviderError::JobFailed { .. }) => Err(failed),
        Err(_) => Ok(None),
    }
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
    fn a_failure_says_the_providers_field_else_the_answers_error_else_the_default() {
        let answer = json!({"task": {"reason": "NSFW"}, "error": {"message": "m"}});
        assert_eq!(failure_message(answer.pointer("/task/reason"), &answer, "d"), "NSFW");
        let blank = json!({"task": {"reason": "  "}, "error": {"message": "m"}});
        assert_eq!(failure_message(blank.pointer("/task/reason"), &blank, "d"), "m");
        assert_eq!(
            failure_message(None, &json!({"reason": 3}), "the task failed"),
            "the task failed"
        );
    }

    #[test]
    fn a_submit_answer_may_already_say_the_jobs_state() {
        let done = submitted(Ok(Poll::Ready(MediaOutput::new(MediaBody::Bytes(bytes::Bytes::new())))));
        assert!(matches!(done, Ok(Some(Poll::Ready(_)))));
        let pending = submitted(Ok(Poll::Pending(crate::ProviderStatus::queued("j"))));
        assert!(matches!(pending, Ok(Some(Poll::Pending(_)))));
        let failed = submitted(Err(ProviderError::job_failed("p", "j", "boom")));
        assert!(matches!(failed, Err(ProviderError::JobFailed { .. })));
        assert!(matches!(
            submitted(Err(ProviderError::invalid_response("p", "no status"))),
            Ok(None)
        ));
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
