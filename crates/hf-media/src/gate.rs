//! The seam a caller paces providers with: a [`ProviderGate`] is asked before every call of a provider
//! (each try, each fallback) and told how the call went. A batch uses it for per-provider rate limits,
//! adaptive concurrency and pauses shared by every worker; a plain generator has none.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use hf_media_provider::{ProviderError, Retryable, Transience};

/// How one call of a provider ended, as a [`ProviderGate`] hears it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallOutcome {
    /// The provider made the media.
    Succeeded,
    /// The provider answered 429 (too many requests), maybe saying how long to wait.
    RateLimited {
        /// The provider's `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
    },
    /// The provider answered 402: the account is out of credits (or pay-as-you-go is off).
    OutOfCredits,
    /// Any other failure, with its HTTP status when there was one.
    Failed {
        /// The HTTP status, when the provider answered one.
        status: Option<u16>,
    },
    /// The call was dropped before it ended (the generation was cancelled or its deadline passed).
    Cancelled,
}

impl CallOutcome {
    /// The outcome a provider's error means.
    pub fn of_error(error: &ProviderError) -> CallOutcome {
        match error.status() {
            Some(429) => CallOutcome::RateLimited {
                retry_after: match error.transience() {
                    Transience::Transient { retry_after } => retry_after,
                    Transience::Final => None,
                },
            },
            Some(402) => CallOutcome::OutOfCredits,
            status => CallOutcome::Failed { status },
        }
    }
}

/// Why a gate holds a provider back for a call: the generation then tries its next provider, and the
/// provider is listed among its attempts with kind `held`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The HTTP status that caused the hold, when there was one (402 for credits, 429 for a rate limit).
    pub status: Option<u16>,
    /// What the user should know (`fal-ai is paused for this batch: out of credits`).
    pub reason: String,
}

/// The right to call a provider once; the gate hears the call's outcome when it is
/// [finished](GatePass::finish), or [`CallOutcome::Cancelled`] when it is dropped unfinished.
pub struct GatePass {
    done: Option<Box<dyn FnOnce(CallOutcome) + Send>>,
}

impl GatePass {
    /// A pass that runs `done` with the call's outcome (exactly once).
    pub fn new(done: impl FnOnce(CallOutcome) + Send + 'static) -> Self {
        GatePass {
            done: Some(Box::new(done)),
        }
    }

    /// A pass that hears nothing.
    pub fn free() -> Self {
        GatePass { done: None }
    }

    /// Ends the call with `outcome`.
    pub fn finish(mut self, outcome: CallOutcome) {
        if let Some(done) = self.done.take() {
            done(outcome);
        }
    }
}

impl Drop for GatePass {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(CallOutcome::Cancelled);
        }
    }
}

impl fmt::Debug for GatePass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatePass")
            .field("pending", &self.done.is_some())
            .finish()
    }
}

/// Decides when a generation may call a provider (see the module docs).
///
/// [`ProviderGate::admit`] may wait (a token bucket, a concurrency limit, a pause after a 429); the wait
/// counts in the generation's deadline, and a dropped generation stops waiting. It returns a
/// [`GatePass`] that is finished with the call's outcome, or [`Held`] to skip the provider for this call.
#[async_trait]
pub trait ProviderGate: Send + Sync + fmt::Debug {
    /// Waits until `provider` may be called, or says why it is held back.
    async fn admit(&self, provider: &str) -> Result<GatePass, Held>;
}
