//! How an emulated provider behaves: latency, pending polls, image format, and scripted faults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::media::ImageFormat;

/// Which requests of a provider a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultTarget {
    /// The request that starts a generation (the POST).
    #[default]
    Submit,
    /// Status and result requests of a queued job.
    Poll,
    /// Media downloads from the emulator's file route.
    Download,
    /// Every request of the provider.
    Any,
}

/// A scripted failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Fault {
    /// Any HTTP status, with the provider's error body (or `body` as given).
    Status {
        /// The status code.
        status: u16,
        /// The JSON body; default `{"error": "…"}`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<serde_json::Value>,
    },
    /// 429 with `Retry-After`.
    RateLimited {
        /// Seconds, sent as `Retry-After`.
        retry_after_secs: u64,
    },
    /// 503 "model is loading" with `estimated_time` (hf-inference style).
    Loading {
        /// Seconds, sent as `estimated_time`.
        estimated_time_secs: f64,
    },
    /// 200 with a body that is not valid JSON.
    MalformedJson,
    /// 200 whose body stops half-way (the connection is closed early).
    TruncatedBody,
    /// The connection is broken right after the status line.
    ConnectionReset,
    /// The answer starts, then no byte comes for `secs` seconds.
    Stall {
        /// How long the stall lasts.
        secs: f64,
    },
}

/// A fault, which requests it hits, and how many times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// The failure.
    pub fault: Fault,
    /// Which requests.
    #[serde(default)]
    pub target: FaultTarget,
    /// Hit only the first `times` matching requests, then behave (`None`: every one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    /// Hit each matching request with this probability (0 to 1) instead of every one: a few percent of
    /// faults for soak tests. `None`: every matching request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
}

impl FaultRule {
    /// A fault on every submit.
    pub fn always(fault: Fault) -> Self {
        FaultRule {
            fault,
            target: FaultTarget::Submit,
            times: None,
            probability: None,
        }
    }

    /// A fault on the first `times` submits only.
    pub fn times(fault: Fault, times: u32) -> Self {
        FaultRule {
            fault,
            target: FaultTarget::Submit,
            times: Some(times),
            probability: None,
        }
    }

    /// A fault on each submit with probability `p` (0 to 1).
    pub fn sometimes(fault: Fault, p: f64) -> Self {
        FaultRule {
            fault,
            target: FaultTarget::Submit,
            times: None,
            probability: Some(p.clamp(0.0, 1.0)),
        }
    }

    /// The same rule on other requests.
    pub fn on(mut self, target: FaultTarget) -> Self {
        self.target = target;
        self
    }
}

/// How one provider behaves. Every field has a default that answers quickly and correctly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProviderBehaviour {
    /// How long a generation takes: synchronous answers wait this long; queued jobs stay pending at
    /// least this long.
    #[serde(with = "millis")]
    pub latency: Duration,
    /// How many status polls a queued job answers "pending" before it completes.
    pub pending_polls: u32,
    /// The image encoding this provider answers with (default: the provider's usual one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_format: Option<ImageFormat>,
    /// A scripted failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultRule>,
}

impl Default for ProviderBehaviour {
    fn default() -> Self {
        ProviderBehaviour {
            latency: Duration::ZERO,
            pending_polls: 1,
            image_format: None,
            fault: None,
        }
    }
}

impl ProviderBehaviour {
    /// Sets the latency.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Sets the pending polls.
    pub fn with_pending_polls(mut self, polls: u32) -> Self {
        self.pending_polls = polls;
        self
    }

    /// Sets the image format.
    pub fn with_image_format(mut self, format: ImageFormat) -> Self {
        self.image_format = Some(format);
        self
    }

    /// Sets a fault.
    pub fn with_fault(mut self, rule: FaultRule) -> Self {
        self.fault = Some(rule);
        self
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviours_read_from_json_with_defaults() {
        let b: ProviderBehaviour = serde_json::from_str(
            r#"{"latency": 250, "fault": {"fault": {"kind": "status", "status": 402}, "times": 1}}"#,
        )
        .unwrap();
        assert_eq!(b.latency, Duration::from_millis(250));
        assert_eq!(b.pending_polls, 1);
        let rule = b.fault.unwrap();
        assert_eq!(rule.target, FaultTarget::Submit);
        assert_eq!(rule.times, Some(1));
        assert!(matches!(
            rule.fault,
            Fault::Status {
                status: 402,
                body: None
            }
        ));
        let stall: Fault = serde_json::from_str(r#"{"kind": "stall", "secs": 2.5}"#).unwrap();
        assert_eq!(stall, Fault::Stall { secs: 2.5 });
    }
}
