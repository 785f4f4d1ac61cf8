//! A job a provider accepted, as it is kept to reach the job again.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A job a provider accepted, with what it takes to reach it again: after a crash or in another process,
/// [`MediaProvider::resume`](crate::MediaProvider::resume) polls the job by this ticket and fetches its
/// media instead of submitting (and paying for) another.
///
/// It never holds a secret: only the provider's name, the job's id, and where needed paths relative to
/// the provider's base URL (fal's response path), so that a ticket stored in a batch state works through
/// the router, a provider's own API or an emulator alike.
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
}
