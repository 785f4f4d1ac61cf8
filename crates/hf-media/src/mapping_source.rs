//! The seam between the facade and the Hub: which providers serve a model. The Hub client implements
//! it; tests (and callers with a mapping of their own, such as a fixed catalogue) plug in another.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use hf_media_mapping::{MappingClient, MappingError, ModelMapping};
use hf_media_provider::{Retryable, Transience};

/// Tells which providers serve a model, in the order the Hub lists them.
#[async_trait]
pub trait MappingSource: Send + Sync + Debug {
    /// The provider mapping of `model` (a Hub model id).
    async fn mapping(&self, model: &str) -> Result<Arc<ModelMapping>, MappingError>;
}

#[async_trait]
impl MappingSource for MappingClient {
    async fn mapping(&self, model: &str) -> Result<Arc<ModelMapping>, MappingError> {
        MappingClient::mapping(self, model).await
    }
}

/// A Hub failure, as the retry mechanism sees it: 408, 429, 5xx and broken connections are passing, and
/// the Hub's `Retry-After` is honoured like a provider's.
pub(crate) struct HubFailure(pub MappingError);

impl Retryable for HubFailure {
    fn transience(&self) -> Transience {
        match &self.0 {
            MappingError::Http {
                status: 408 | 429 | 500 | 502 | 503 | 504,
                retry_after,
                ..
            } => Transience::Transient {
                retry_after: *retry_after,
            },
            MappingError::Network { .. } => Transience::Transient { retry_after: None },
            _ => Transience::Final,
        }
    }

    fn retry_status(&self) -> Option<u16> {
        match &self.0 {
            MappingError::Http { status, .. } | MappingError::Unauthorized { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn retry_message(&self) -> String {
        self.0.to_string()
    }
}
