#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod error;
mod event;
mod generator;
mod request;
mod retry;
mod selection;
pub mod token;

pub use error::{Error, ProviderAttempt};
pub use event::{GeneratedMedia, GenerationEvent};
pub use generator::{DEFAULT_ROUTER_URL, GenerationStream, MediaGenerator, MediaGeneratorBuilder};
pub use request::{DEFAULT_MODEL, GenerateRequest, MAX_GENERATIONS, MODEL_ALIASES, ModelSpec};
pub use retry::RetryPolicy;

/// The Hub mapping client crate.
pub use hf_media_mapping as mapping;
/// The prompt formatting crate.
pub use hf_media_prompt as prompt;
/// The provider crate: the `MediaProvider` trait and every provider.
pub use hf_media_provider as provider;
/// The media sink crate.
pub use hf_media_sink as sink;

pub use hf_media_mapping::{MappingError, Task};
pub use hf_media_prompt::{AspectRatio, ChatMessage, GenerationParams, PromptError};
pub use hf_media_provider::{MediaProvider, PollConfig, ProviderError, ProviderRegistry, ProviderStatus};
pub use hf_media_sink::{FileSink, MediaKind, MediaLocation, MediaSink, MemorySink, SinkError};
