//! The static facts of a provider, in one place: its name, tasks, own API, key and auth scheme.

use std::borrow::Cow;

use crate::{AuthScheme, ProviderError, Task};

/// What a provider is, apart from how it makes media: everything the facade needs to choose it, call it
/// directly, and describe it. Built once per provider (a `static` for the built-in ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInfo {
    /// The provider's Hub name (`fal-ai`, `replicate`, …): its key in the Hub's mapping and the first path
    /// segment on the router.
    pub name: Cow<'static, str>,
    /// The tasks it serves; the facade asks it for nothing else.
    pub tasks: Cow<'static, [Task]>,
    /// Its own API, for calls with its own key rather than through the router.
    pub direct: Option<DirectApi>,
    /// Whether the Hub must say which models it serves (`true` for every Hugging Face inference provider).
    /// A provider the Hub does not list says `false`: when it is named (`model:provider`), the Hub is not
    /// asked and the model id is sent to it as its provider id.
    pub needs_hub_mapping: bool,
    /// Whether it is only ever called on its own API ([`ProviderInfo::direct`]), never through the router
    /// (a server the user configured, such as an OpenAI-compatible one).
    pub direct_only: bool,
}

/// A provider's own API: where it is, which variable conventionally holds its key, how the key is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectApi {
    /// The API's base URL; routes are appended to it.
    pub base_url: Cow<'static, str>,
    /// The environment variable that conventionally holds the key (`FAL_KEY`, …), if any.
    pub key_env: Option<&'static str>,
    /// How the key is sent in the `Authorization` header.
    pub auth: AuthScheme,
}

impl DirectApi {
    /// An API at `base_url` whose key is conventionally in `key_env`, sent with `auth`.
    pub const fn new(base_url: &'static str, key_env: &'static str, auth: AuthScheme) -> Self {
        DirectApi {
            base_url: Cow::Borrowed(base_url),
            key_env: Some(key_env),
            auth,
        }
    }
}

impl ProviderInfo {
    /// A Hugging Face inference provider reached through the router only.
    pub const fn routed(name: &'static str, tasks: &'static [Task]) -> Self {
        ProviderInfo {
            name: Cow::Borrowed(name),
            tasks: Cow::Borrowed(tasks),
            direct: None,
            needs_hub_mapping: true,
            direct_only: false,
        }
    }

    /// A Hugging Face inference provider reached through the router, or on its own API with its own key.
    pub const fn routed_with_api(name: &'static str, tasks: &'static [Task], api: DirectApi) -> Self {
        ProviderInfo {
            name: Cow::Borrowed(name),
            tasks: Cow::Borrowed(tasks),
            direct: Some(api),
            needs_hub_mapping: true,
            direct_only: false,
        }
    }

    /// Whether it serves `task`.
    pub fn serves(&self, task: &Task) -> bool {
        self.tasks.contains(task)
    }

    /// `Ok` when it serves `task`, else [`ProviderError::UnsupportedTask`]: the one task check, made by
    /// the caller before it asks the provider.
    pub fn check_task(&self, task: &Task) -> Result<(), ProviderError> {
        if self.serves(task) {
            Ok(())
        } else {
            Err(ProviderError::unsupported_task(self.name.as_ref(), task))
        }
    }

    /// The direct API's key variable, if any.
    pub fn key_env(&self) -> Option<&'static str> {
        self.direct.as_ref().and_then(|d| d.key_env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static ROUTED: ProviderInfo = ProviderInfo::routed("p", &[Task::TextToImage]);

    #[test]
    fn the_task_check_names_the_provider_and_the_task() {
        assert!(ROUTED.serves(&Task::TextToImage) && ROUTED.check_task(&Task::TextToImage).is_ok());
        assert_eq!(
            ROUTED.check_task(&Task::TextToVideo),
            Err(ProviderError::UnsupportedTask {
                provider: "p".into(),
                task: "text-to-video".into()
            })
        );
        assert_eq!(ROUTED.key_env(), None);
        let api = ProviderInfo::routed_with_api(
            "q",
            &[Task::TextToVideo],
            DirectApi::new("https://api.q", "Q_KEY", AuthScheme::Bearer),
        );
        assert_eq!(api.key_env(), Some("Q_KEY"));
        assert!(api.needs_hub_mapping && !api.direct_only);
    }
}
