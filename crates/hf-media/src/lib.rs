#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod access;
mod builder;
mod config;
mod emitter;
mod error;
mod event;
mod fetch;
mod gate;
mod generator;
mod input;
mod mapping_source;
mod options;
mod plan;
mod record;
mod replay;
mod request;
mod run;
mod selection;
pub mod token;

pub use builder::{DEFAULT_ROUTER_URL, MediaGeneratorBuilder};
pub use config::{EMULATOR_TOKEN, GeneratorConfig, OpenAiProviderConfig, Secret, SinkConfig, TimeoutConfig};
pub use error::{Error, ProviderAttempt};
pub use event::{ErrorInfo, GeneratedMedia, GenerationEvent};
pub use gate::{CallOutcome, GatePass, Held, ProviderGate};
pub use generator::{GenerationStream, MediaGenerator};
pub use input::{DEFAULT_MAX_INPUT_BYTES, MediaInput};
pub use mapping_source::MappingSource;
pub use options::RunOptions;
pub use request::{DEFAULT_MODEL, GenerateRequest, MAX_GENERATIONS, MODEL_ALIASES, ModelSpec};

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
pub use hf_media_provider::{
    JobTicket, MediaProvider, PollConfig, ProviderError, ProviderRegistry, ProviderStatus, RetryPolicy, RetryStage,
    Secrets,
};
pub use hf_media_sink::{FileSink, MediaKind, MediaLocation, MediaSink, MemorySink, SinkError};
