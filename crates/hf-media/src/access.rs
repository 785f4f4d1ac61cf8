//! How each provider is reached: through the router with the HF token, or on its own API with its own
//! key. The facade builds every provider's [`ProviderContext`] here, the same way for all of them.

use std::collections::HashMap;
use std::time::Duration;

use hf_media_provider::{
    AuthScheme, MediaProvider, PollConfig, ProviderContext, ProviderRegistry, RetryPolicy, Secrets,
};
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::SecretString;
use url::Url;

use crate::Error;

/// A provider's own API and key.
pub(crate) struct DirectAccess {
    pub base_url: Url,
    pub key: Option<SecretString>,
    pub auth: AuthScheme,
}

/// Everything needed to build the context of any provider.
pub(crate) struct Access {
    pub http: reqwest::Client,
    pub router_url: Url,
    pub hub_url: Url,
    pub token: Option<SecretString>,
    pub bill_to: Option<HeaderValue>,
    pub direct: HashMap<String, DirectAccess>,
    pub poll: PollConfig,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    pub secrets: Secrets,
}

impl Access {
    /// The context `provider` is called with: its own API when it was given a key (or is only ever
    /// called directly), else the router. Only a routed context carries the HF token and `X-HF-Bill-To`.
    pub(crate) fn context_for(&self, provider: &dyn MediaProvider) -> ProviderContext {
        let name = provider.name();
        let ctx = match self.direct.get(name) {
            Some(access) => ProviderContext::direct(
                self.http.clone(),
                access.base_url.clone(),
                name,
                access.key.clone(),
                access.auth,
            ),
            None => {
                let ctx = ProviderContext::routed(self.http.clone(), &self.router_url, name, self.token.clone());
                match &self.bill_to {
                    Some(org) => ctx.with_header(HeaderName::from_static("x-hf-bill-to"), org.clone()),
                    None => ctx,
                }
            }
        };
        ctx.with_hub_url(self.hub_url.clone())
            .with_poll(self.poll)
            .with_request_timeout(self.request_timeout)
            .with_retry(self.retry)
            .with_secrets(self.secrets.clone())
    }
}

/// The direct accesses: every provider given a key (on its own API, or the URL given for it), and every
/// provider that is only ever called directly (with its key, if any).
pub(crate) fn direct_accesses(
    registry: &ProviderRegistry,
    keys: HashMap<String, SecretString>,
    urls: &HashMap<String, String>,
) -> Result<HashMap<String, DirectAccess>, Error> {
    let mut direct = HashMap::new();
    for (name, key) in keys {
        let provider = registry.get(&name).ok_or_else(|| Error::UnknownProvider {
            provider: name.clone(),
            known: registry.names().map(str::to_owned).collect(),
        })?;
        let access = direct_access(provider.as_ref(), Some(key), urls)?;
        direct.insert(name, access);
    }
    for provider in registry.iter() {
        if provider.info().direct_only && !direct.contains_key(provider.name()) {
            let access = direct_access(provider.as_ref(), None, urls)?;
            direct.insert(provider.name().to_owned(), access);
        }
    }
    Ok(direct)
}

fn direct_access(
    provider: &dyn MediaProvider,
    key: Option<SecretString>,
    urls: &HashMap<String, String>,
) -> Result<DirectAccess, Error> {
    let name = provider.name();
    let api = provider.info().direct.as_ref();
    let raw = match (urls.get(name), api) {
        (Some(url), _) => url.clone(),
        (None, Some(api)) => api.base_url.to_string(),
        (None, None) => {
            return Err(Error::Config(format!(
                "{name} has no API of its own to call with a provider key: it is always called through \
                 the router with the Hugging Face token"
            )));
        }
    };
    Ok(DirectAccess {
        base_url: parse_base_url(&format!("{name} API"), &raw)?,
        key,
        auth: api.map_or(AuthScheme::Bearer, |api| api.auth),
    })
}

/// Parses a base URL given in the configuration: `http(s)` only, without a trailing `/`.
pub(crate) fn parse_base_url(what: &str, raw: &str) -> Result<Url, Error> {
    let url = Url::parse(raw.trim().trim_end_matches('/'))
        .map_err(|e| Error::Config(format!("the {what} URL `{raw}` is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Config(format!(
            "the {what} URL `{raw}` must start with http:// or https://"
        )));
    }
    Ok(url)
}
