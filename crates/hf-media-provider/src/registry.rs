use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::providers::{FalAi, HfInference, Novita, Nscale, Replicate, Together, WaveSpeed, ZaiOrg};
use crate::{DynMediaProvider, MediaProvider, ProviderInfo};

/// Provider names mapped to implementations. Cheap to clone.
#[derive(Clone, Default)]
pub struct ProviderRegistry {
    providers: BTreeMap<String, DynMediaProvider>,
}

impl fmt::Debug for ProviderRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.providers.keys()).finish()
    }
}

impl ProviderRegistry {
    /// An empty registry.
    pub fn empty() -> Self {
        ProviderRegistry::default()
    }

    /// Every provider this crate implements, under its Hub name: THE list of built-in providers (the
    /// OpenAI-compatible one, which needs a name and a server, is never among them).
    pub fn with_defaults() -> Self {
        let mut registry = ProviderRegistry::empty();
        registry.register(Arc::new(FalAi));
        registry.register(Arc::new(HfInference));
        registry.register(Arc::new(Replicate));
        registry.register(Arc::new(Together));
        registry.register(Arc::new(Nscale));
        registry.register(Arc::new(WaveSpeed));
        registry.register(Arc::new(ZaiOrg));
        registry.register(Arc::new(Novita));
        registry
    }

    /// Adds a provider under its [`MediaProvider::name`], returning the one it replaces.
    pub fn register(&mut self, provider: DynMediaProvider) -> Option<DynMediaProvider> {
        self.providers.insert(provider.name().to_owned(), provider)
    }

    /// Removes a provider.
    pub fn remove(&mut self, name: &str) -> Option<DynMediaProvider> {
        self.providers.remove(name)
    }

    /// The provider registered under `name`.
    pub fn get(&self, name: &str) -> Option<&DynMediaProvider> {
        self.providers.get(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }

    /// The registered providers, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &DynMediaProvider> {
        self.providers.values()
    }

    /// The registered providers' facts, sorted by name.
    pub fn infos(&self) -> impl Iterator<Item = &ProviderInfo> {
        self.providers.values().map(|provider| provider.info())
    }

    /// How many providers are registered.
    pub fn len(&self) -> usize {
        self.providers.len()
    }

    /// Whether no provider is registered.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_registered_by_hub_name() {
        let registry = ProviderRegistry::with_defaults();
        let names: Vec<_> = registry.names().collect();
        assert_eq!(
            names,
            [
                "fal-ai",
                "hf-inference",
                "novita",
                "nscale",
                "replicate",
                "together",
                "wavespeed",
                "zai-org"
            ]
        );
        for provider in registry.iter() {
            assert!(!provider.tasks().is_empty(), "{} serves no task", provider.name());
        }
    }

    #[test]
    fn infos_are_the_providers_facts_in_name_order() {
        let registry = ProviderRegistry::with_defaults();
        let names: Vec<&str> = registry.infos().map(|info| info.name.as_ref()).collect();
        assert_eq!(names, registry.names().collect::<Vec<_>>());
        for info in registry.infos() {
            assert!(info.needs_hub_mapping && !info.direct_only, "{}", info.name);
            let direct = info.direct.as_ref();
            assert_eq!(
                direct.is_none(),
                info.name == "hf-inference",
                "{}: {direct:?}",
                info.name
            );
            if let Some(direct) = direct {
                assert!(direct.base_url.starts_with("https://"), "{}", info.name);
                assert!(
                    direct
                        .key_env
                        .is_some_and(|v| v.ends_with("_KEY") || v.ends_with("_TOKEN"))
                );
            }
        }
        let fal = registry.get("fal-ai").unwrap().info();
        assert_eq!(
            (fal.key_env(), fal.direct.as_ref().map(|d| d.auth)),
            (Some("FAL_KEY"), Some(crate::AuthScheme::Key))
        );
    }

    #[test]
    fn register_returns_the_replaced_provider() {
        let mut registry = ProviderRegistry::with_defaults();
        let replaced = registry.register(Arc::new(FalAi));
        assert_eq!(replaced.map(|p| p.name().to_owned()), Some("fal-ai".into()));
        assert!(registry.remove("fal-ai").is_some());
        assert!(registry.get("fal-ai").is_none());
        assert_eq!(registry.len(), 7);
    }
}
