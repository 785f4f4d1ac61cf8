//! A job a provider accepted, as it is kept to reach the job again.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ProviderError;

/// A job a provider accepted, with what it takes to reach it again: after a crash or in another process,
/// [`MediaProvider::resume`](crate::MediaProvider::resume) polls the job by this ticket and fetches its
/// media instead of submitting (and paying for) another.
///
/// It never holds a secret: only the provider's name, the job's id, and where needed paths relative to
/// the provider's base URL (fal's response path), so that a ticket stored in a batch state works through
/// the router, a provider's own API or an emulator alike.
///
/// A ticket read back from storage is not trusted: a provider checks it with [`JobTicket::path_id`] (or
/// [`JobTicket::id_for`]) and [`JobTicket::relative_path`] before it sends anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTicket {
    /// The provider's Hub name.
    pub provider: String,
    /// The provider's job, request, prediction or task id.
    pub job_id: String,
    /// What the provider needs besides the id (relative paths, never a secret); `null` when the id is enough.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

impl JobTicket {
    /// A ticket of `provider`'s job `job_id` that needs nothing more.
    pub fn new(provider: impl Into<String>, job_id: impl Into<String>) -> Self {
        JobTicket {
            provider: provider.into(),
            job_id: job_id.into(),
            data: Value::Null,
        }
    }

    /// The same ticket with provider-specific `data`.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }

    /// The job id of a ticket that must be `provider`'s, for an id that goes into a query, percent-encoded:
    /// [`ProviderError::InvalidRequest`] when the ticket names another provider or has no id.
    pub fn id_for(&self, provider: &str) -> Result<&str, ProviderError> {
        if self.provider != provider {
            return Err(ProviderError::invalid_request(
                provider,
                format!(
                    "job {} was accepted by {}, not by {provider}: it cannot be resumed here",
                    shown(&self.job_id),
                    shown(&self.provider)
                ),
            ));
        }
        if self.job_id.trim().is_empty() {
            return Err(ProviderError::invalid_request(
                provider,
                "the job ticket has no job id: it cannot be resumed",
            ));
        }
        Ok(&self.job_id)
    }

    /// The job id of a ticket that must be `provider`'s, for an id that goes into a URL path: as
    /// [`JobTicket::id_for`], and the id must be plain as [`http::job_id`](crate::http::job_id) has it
    /// (letters, digits, `-`, `_`, `.`, no `..`, at most 200 characters), else
    /// [`ProviderError::InvalidRequest`].
    pub fn path_id(&self, provider: &str) -> Result<&str, ProviderError> {
        let id = self.id_for(provider)?;
        if crate::http::is_plain_id(id) {
            Ok(id)
        } else {
            Err(ProviderError::invalid_request(
                provider,
                format!(
                    "the job ticket's id {} is not a plain id (letters, digits, `-`, `_`, `.`): it cannot be resumed",
                    shown(id)
                ),
            ))
        }
    }

    /// The path kept under `data.{key}`, checked to be relative to the provider's base URL: `None` when the
    /// ticket has none, [`ProviderError::InvalidRequest`] (naming `provider`) when it is not a string, or
    /// not a plain absolute path (it must start with one `/`, and have no `..`, no scheme or host, no query
    /// or fragment, no backslash, no percent-encoded dot, no whitespace or control character).
    pub fn relative_path(&self, provider: &str, key: &str) -> Result<Option<&str>, ProviderError> {
        let path = match self.data.get(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(path)) => path.as_str(),
            Some(other) => {
                return Err(ProviderError::invalid_request(
                    provider,
                    format!("the job ticket's `data.{key}` is not a string but {other}: it cannot be resumed"),
                ));
            }
        };
        match path_problem(path) {
            None => Ok(Some(path)),
            Some(problem) => Err(ProviderError::invalid_request(
                provider,
                format!(
                    "the job ticket's `data.{key}` {} {problem}: it cannot be resumed",
                    shown(path)
                ),
            )),
        }
    }
}

/// What is wrong with a path that must be relative to a base URL, if anything.
fn path_problem(path: &str) -> Option<&'static str> {
    let lower = path.to_ascii_lowercase();
    if !path.starts_with('/') {
        Some("does not start with `/`")
    } else if path.starts_with("//") || lower.contains("://") {
        Some("names a scheme or a host")
    } else if path.split('/').any(|segment| segment == "..") || path.contains("..") || lower.contains("%2e") {
        Some("has `..` in it")
    } else if path.contains(['?', '#']) {
        Some("has a query or a fragment")
    } else if path.chars().any(|c| c == '\\' || c.is_whitespace() || c.is_control()) {
        Some("has a backslash, a space or a control character")
    } else if path.len() > 2048 {
        Some("is longer than 2048 characters")
    } else {
        None
    }
}

/// A value from a ticket, quoted and cut, for an error message.
fn shown(value: &str) -> String {
    format!("{:?}", value.chars().take(80).collect::<String>())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_ticket_is_checked_for_its_provider_and_its_id() {
        let ticket = JobTicket::new("fal-ai", "r-1.a_b");
        assert_eq!(ticket.path_id("fal-ai").unwrap(), "r-1.a_b");
        let err = ticket.path_id("replicate").unwrap_err();
        assert!(matches!(err, ProviderError::InvalidRequest { ref provider, .. } if provider == "replicate"));
        assert!(err.to_string().contains("accepted by \"fal-ai\""), "{err}");
        for bad in ["", "../x", "a/b", "a?b", "a b"] {
            let err = JobTicket::new("p", bad).path_id("p").unwrap_err();
            assert!(matches!(err, ProviderError::InvalidRequest { .. }), "{bad:?}: {err:?}");
        }
        assert_eq!(JobTicket::new("p", "a&b/c").id_for("p").unwrap(), "a&b/c");
        assert!(JobTicket::new("p", " ").id_for("p").is_err());
    }

    #[test]
    fn relative_paths_must_stay_under_the_base() {
        let with = |path: Value| JobTicket::new("fal-ai", "r1").with_data(json!({ "response_path": path }));
        assert_eq!(
            with(json!("/fal-ai/flux/requests/r1"))
                .relative_path("fal-ai", "response_path")
                .unwrap(),
            Some("/fal-ai/flux/requests/r1")
        );
        assert_eq!(
            JobTicket::new("fal-ai", "r1")
                .relative_path("fal-ai", "response_path")
                .unwrap(),
            None
        );
        for bad in [
            json!("fal-ai/flux/requests/r1"),
            json!("https://evil.example/x"),
            json!("//evil.example/x"),
            json!("/a/../../admin"),
            json!("/a/%2E%2E/admin"),
            json!("/a/..%2fadmin"),
            json!("/x?token=1"),
            json!("/x#y"),
            json!("/a\\b"),
            json!("/a b"),
            json!("/http://evil.example"),
            json!(3),
        ] {
            let err = with(bad.clone()).relative_path("fal-ai", "response_path").unwrap_err();
            assert!(
                matches!(err, ProviderError::InvalidRequest { ref reason, .. } if reason.contains("data.response_path")),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn a_ticket_round_trips_through_json_without_null_data() {
        let plain = JobTicket::new("novita", "t1");
        assert_eq!(
            serde_json::to_value(&plain).unwrap(),
            json!({"provider": "novita", "job_id": "t1"})
        );
        let fal = JobTicket::new("fal-ai", "r1").with_data(json!({"response_path": "/a/requests/r1"}));
        let back: JobTicket = serde_json::from_str(&serde_json::to_string(&fal).unwrap()).unwrap();
        assert_eq!(back, fal);
    }
}
