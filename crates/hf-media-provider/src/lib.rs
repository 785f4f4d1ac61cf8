#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod context;
mod error;
pub mod http;
mod media;
mod params;
pub mod providers;
mod registry;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

pub use context::{AuthScheme, NoticeReporter, PollConfig, ProviderContext, ProviderNotice, ProviderStatus};
pub use error::ProviderError;
pub use hf_media_mapping::{MappingStatus, ProviderMapping, Task};
pub use hf_media_prompt::GenerationParams;
pub use media::{ByteStream, MediaBody, MediaOutput};
pub use params::{provider_parameters, size_as_wxh};
pub use registry::ProviderRegistry;

/// One generation, as a provider receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// The Hub's mapping entry of the provider that is asked (provider id, task, adapter).
    pub mapping: ProviderMapping,
    /// The prompt, already formatted.
    pub prompt: String,
    /// The provider-neutral parameters.
    pub params: GenerationParams,
}

/// A Hugging Face inference provider that makes images or videos.
///
/// # Contract
/// - [`MediaProvider::name`] is the provider's Hub name (`fal-ai`, `replicate`, …): it is the key in the
///   Hub's mapping and the first path segment on the router.
/// - [`MediaProvider::tasks`] lists the tasks it can serve; it is only asked for those.
/// - [`MediaProvider::generate`] does the whole job, including submit → poll → fetch for asynchronous
///   providers, and returns the media as bytes, a byte stream, or a URL for the caller to download. It
///   builds every URL from [`ProviderContext::url`] (so the same code runs against the router, the provider's
///   own API, a proxy or an emulator), reports the provider's job status through
///   [`ProviderContext::report`], and stops when its future is dropped.
/// - Providers never retry and never fall back: that is the caller's policy. They return a typed
///   [`ProviderError`] whose [`ProviderError::status`] tells the caller what happened.
///
/// The trait is object-safe: registries hold `Arc<dyn MediaProvider>`.
#[async_trait]
pub trait MediaProvider: Send + Sync + Debug {
    /// The provider's Hub name.
    fn name(&self) -> &str;

    /// The tasks this provider serves.
    fn tasks(&self) -> &[Task];

    /// The provider's own API base URL, for calls with the provider's own key (not through the router).
    fn direct_base_url(&self) -> Option<&str> {
        None
    }

    /// How the provider's own key is sent when called directly (`Authorization: Bearer …` by default).
    fn direct_auth(&self) -> AuthScheme {
        AuthScheme::Bearer
    }

    /// The environment variable that conventionally holds the provider's own key (`FAL_KEY`, …).
    fn direct_key_env(&self) -> Option<&str> {
        None
    }

    /// Whether the Hub must say which models this provider serves (`true` for every Hugging Face inference
    /// provider). A provider the Hub does not list returns `false`: when it is named (`model:provider`), the
    /// Hub is not asked, and the model id is sent to it as its provider id.
    fn needs_hub_mapping(&self) -> bool {
        true
    }

    /// Makes one media.
    async fn generate(&self, ctx: &ProviderContext, request: GenerationRequest) -> Result<MediaOutput, ProviderError>;
}

/// A shared provider, as registries hold it.
pub type DynMediaProvider = Arc<dyn MediaProvider>;

/// Forwards the trait through a smart pointer, so registries and wrappers can hold either form.
macro_rules! forward_media_provider {
    ($pointer:ident) => {
        #[async_trait]
        impl<T: MediaProvider + ?Sized> MediaProvider for $pointer<T> {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn tasks(&self) -> &[Task] {
                (**self).tasks()
            }
            fn direct_base_url(&self) -> Option<&str> {
                (**self).direct_base_url()
            }
            fn direct_auth(&self) -> AuthScheme {
                (**self).direct_auth()
            }
            fn direct_key_env(&self) -> Option<&str> {
                (**self).direct_key_env()
            }
            fn needs_hub_mapping(&self) -> bool {
                (**self).needs_hub_mapping()
            }
            async fn generate(
                &self,
                ctx: &ProviderContext,
                request: GenerationRequest,
            ) -> Result<MediaOutput, ProviderError> {
                (**self).generate(ctx, request).await
            }
        }
    };
}

forward_media_provider!(Arc);
forward_media_provider!(Box);

#[cfg(test)]
fn _object_safe(_: &dyn MediaProvider) {}
