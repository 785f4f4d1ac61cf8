#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod answer;
mod context;
mod error;
pub mod http;
mod info;
mod input;
mod job;
mod media;
mod openai_images;
mod params;
pub mod providers;
mod registry;
pub mod retry;
mod secrets;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

pub use context::{AuthScheme, NoticeReporter, PollConfig, ProviderContext, ProviderNotice, ProviderStatus};
pub use error::ProviderError;
pub use hf_media_mapping::{MappingStatus, ProviderMapping, Task};
pub use hf_media_prompt::GenerationParams;
pub use info::{DirectApi, ProviderInfo};
pub use input::{ImageOrigin, InputImage};
pub use job::JobTicket;
pub use media::{ByteStream, MediaBody, MediaOutput, StreamError};
pub use params::{provider_parameters, size_as_wxh};
pub use registry::ProviderRegistry;
pub use retry::{RetryNotice, RetryPolicy, RetryStage, Retryable, Transience};
pub use secrets::{REDACTED, Secrets};

/// One generation, as a provider receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// The Hub's mapping entry of the provider that is asked (provider id, task, adapter).
    pub mapping: ProviderMapping,
    /// The prompt, already formatted.
    pub prompt: String,
    /// The provider-neutral parameters.
    pub params: GenerationParams,
    /// The input images (image-to-image, image-to-video), in the user's order; empty for text tasks.
    pub images: Vec<InputImage>,
}

impl GenerationRequest {
    /// `Ok` unless the task needs an input image ([`ImageInput::Required`](hf_media_mapping::ImageInput))
    /// and there is none: then [`ProviderError::InvalidRequest`] naming `provider` and the task, before
    /// anything is sent.
    pub fn check_images(&self, provider: &str) -> Result<(), ProviderError> {
        match self.mapping.task.image_input() {
            hf_media_mapping::ImageInput::Required => self.first_image(provider).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// The first input image, for a protocol that needs one: [`ProviderError::InvalidRequest`] naming
    /// `provider` and the task when there is none (the caller checks that image tasks get images, so this
    /// only guards the wire).
    pub fn first_image(&self, provider: &str) -> Result<&InputImage, ProviderError> {
        self.images.first().ok_or_else(|| {
            ProviderError::invalid_request(
                provider,
                format!("{} needs an input image and none was given", self.mapping.task),
            )
        })
    }
}

/// A Hugging Face inference provider that makes images or videos.
///
/// # Contract
/// - [`MediaProvider::info`] holds the provider's static facts: its Hub name (the key in the Hub's
///   mapping and the first path segment on the router), its tasks, its own API and key variable. The
///   facade only asks it for the tasks it lists (checked once, with [`ProviderInfo::check_task`]).
/// - [`MediaProvider::generate`] does the whole job, including submit → poll → fetch for asynchronous
///   providers, and returns the media as bytes, a byte stream, or a URL for the caller to download. It
///   builds every URL from [`ProviderContext::url`] (so the same code runs against the router, the provider's
///   own API, a proxy or an emulator), reports the provider's job status through
///   [`ProviderContext::report`], and stops when its future is dropped.
/// - Providers never fall back and never resubmit a job: that is the caller's policy. Inside one job they
///   ride out passing failures of status requests with [`ProviderContext::retry`] (a job already paid
///   for is never given up for a hiccup). They return a typed [`ProviderError`] whose meaning is decided
///   where the request was sent: an HTTP 404 on the submit route is "model not supported", on a job's
///   own URL a failed job, on a media URL an invalid answer.
/// - A provider that follows a job reports its [`JobTicket`] the moment the job is accepted
///   ([`ProviderContext::report_accepted`], or [`http::poll_job`] which does it), and implements
///   [`MediaProvider::resume`] with the very code `generate` waits with after its submit: `generate` is
///   submit → ticket → wait, `resume` is check the ticket → wait.
///
/// The trait is object-safe: registries hold `Arc<dyn MediaProvider>`.
#[async_trait]
pub trait MediaProvider: Send + Sync + Debug {
    /// The provider's static facts.
    fn info(&self) -> &ProviderInfo;

    /// The provider's Hub name (`info().name`).
    fn name(&self) -> &str {
        &self.info().name
    }

    /// The tasks this provider serves (`info().tasks`).
    fn tasks(&self) -> &[Task] {
        &self.info().tasks
    }

    /// Makes one media.
    async fn generate(&self, ctx: &ProviderContext, request: GenerationRequest) -> Result<MediaOutput, ProviderError>;

    /// Finishes a job this provider accepted earlier, maybe in another process, from the [`JobTicket`]
    /// it reported then ([`ProviderNotice::Accepted`]): polls the job and fetches its media exactly as
    /// [`MediaProvider::generate`] would after its submit, and never submits anything. `request` is the
    /// generation the job was submitted for (its task decides how the result is read).
    ///
    /// The ticket is checked before anything is sent: one of another provider, with an id that cannot go
    /// into a URL, or with a path that is not relative to the base ([`JobTicket::path_id`],
    /// [`JobTicket::relative_path`]) is a [`ProviderError::InvalidRequest`]. The resumed job is reported
    /// accepted again ([`ProviderNotice::Accepted`], with the same ticket) and its states as `generate`
    /// reports them.
    ///
    /// A job that is gone or failed is a [`ProviderError`] like any other (a 404 on the job's URL is a
    /// failed job, never "model not supported"); the caller then tries another provider, never this one
    /// again for the same generation. The default, for providers that never report a ticket (they answer
    /// with the media at once), says the job cannot be resumed.
    async fn resume(
        &self,
        ctx: &ProviderContext,
        request: GenerationRequest,
        job: JobTicket,
    ) -> Result<MediaOutput, ProviderError> {
        let _ = (ctx, request);
        Err(ProviderError::invalid_request(
            self.name(),
            format!(
                "job {} cannot be resumed: this provider does not follow jobs",
                job.job_id
            ),
        ))
    }
}

/// A shared provider, as registries hold it.
pub type DynMediaProvider = Arc<dyn MediaProvider>;

/// Forwards the trait through a smart pointer, so registries and wrappers can hold either form.
macro_rules! forward_media_provider {
    ($pointer:ident) => {
        #[async_trait]
        impl<T: MediaProvider + ?Sized> MediaProvider for $pointer<T> {
            fn info(&self) -> &ProviderInfo {
                (**self).info()
            }
            async fn generate(
                &self,
                ctx: &ProviderContext,
                request: GenerationRequest,
            ) -> Result<MediaOutput, ProviderError> {
                (**self).generate(ctx, request).await
            }
            async fn resume(
                &self,
                ctx: &ProviderContext,
                request: GenerationRequest,
                job: JobTicket,
            ) -> Result<MediaOutput, ProviderError> {
                (**self).resume(ctx, request, job).await
            }
        }
    };
}

forward_media_provider!(Arc);
forward_media_provider!(Box);

#[cfg(test)]
fn _object_safe(_: &dyn MediaProvider) {}

/// The protocol pieces of the built-in providers (routes, payloads, answer parsers) and the OpenAI images
/// answer reader, for this crate's own integration tests (`--features testing`). Not a stable API: a
/// custom provider uses [`http`], [`ProviderContext`] and [`ProviderError`] instead.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing {
    pub use crate::providers::testing::*;

    pub mod openai_images {
        //! The OpenAI images answer reader (together, nscale, OpenAI-compatible servers).
        pub use crate::openai_images::images_api_answer;
    }
}
