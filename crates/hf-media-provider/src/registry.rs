use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::providers::{FalAi, HfInference, Novita, Nscale, Replicate, Together, WaveSpeed, ZaiOrg};
use crate::{DynMediaProvider, MediaProvider};

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

    /// Every provider this crate implements, under its Hub name.
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
    fn register_returns_the_replaced_provider() {
        let mut registry = ProviderRegistry::with_defaults();
        let replaced = registry.register(Arc::new(FalAi));
        assert_eq!(replaced.map(|p| p.name().to_owned()), Some("fal-ai".into()));
        assert!(registry.remove("fal-ai").is_some());
        assert!(registry.get("fal-ai").is_none());
        assert_eq!(registry.len(), 7);
    }
}
