#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod client;
mod error;
mod types;

pub use client::{DEFAULT_CACHE_TTL, DEFAULT_HUB_URL, MappingClient, MappingClientBuilder, validate_model_id};
pub use error::MappingError;
pub use types::{MappingStatus, ModelMapping, ProviderMapping, Task};

/// Re-exported so callers can build tokens without naming the `secrecy` crate.
pub use secrecy::SecretString;
