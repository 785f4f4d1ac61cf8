#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod client;
mod error;
mod link;
mod retry_after;
mod types;

pub use client::{DEFAULT_CACHE_TTL, DEFAULT_HUB_URL, MappingClient, MappingClientBuilder, validate_model_id};
pub use error::MappingError;
pub use retry_after::retry_after;
pub use types::{
    DEFAULT_LIST_LIMIT, DEFAULT_PAGE_SIZE, ImageInput, MAX_PAGE_SIZE, MappingStatus, ModelMapping, ModelQuery, Output,
    ProviderMapping, Task,
};

/// Re-exported so callers can build tokens without naming the `secrecy` crate.
pub use secrecy::SecretString;
