//! Building a [`MediaGenerator`]: a [`GeneratorConfig`] (data) plus the parts that are objects (a sink,
//! a registry, an HTTP client, a mapping source), checked once.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hf_media_mapping::MappingClient;
use hf_media_provider::providers::OpenAiCompatible;
use hf_media_provider::{PollConfig, ProviderRegistry, RetryPolicy, Secrets};
use hf_media_sink::{DynMediaSink, FileSink};
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

use crate::access::{Access, direct_accesses, parse_base_url};
use crate::config::{EMULATOR_TOKEN, GeneratorConfig, OpenAiProviderConfig, Secret, millis_ceil};
use crate::generator::{Inner, MediaGenerator};
use crate::{Error, MappingSource, ProviderGate};

/// The Hugging Face router's default address.
pub const DEFAULT_ROUTER_URL: &str = "https://router.huggingface.co";

/// Builds a [`MediaGenerator`]. Only a token (or a provider key) is required.
#[derive(Default)]
pub struct MediaGeneratorBuilder {
    config: GeneratorConfig,
    sink: Option<DynMediaSink>,
    registry: Option<ProviderRegistry>,
    http: Option<reqwest::Client>,
    mapping_source: Option<Arc<dyn MappingSource>>,
    gate: Option<Arc<dyn ProviderGate>>,
}

impl fmt::Debug for MediaGeneratorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaGeneratorBuilder")
            .field("config", &self.config)
            .field("sink", &self.sink)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl MediaGeneratorBuilder {
    /// A builder starting from `config`.
    pub fn from_config(config: GeneratorConfig) -> Self {
        MediaGeneratorBuilder {
            config,
            ..MediaGeneratorBuilder::default()
        }
    }

    /// Reads the environment ([`GeneratorConfig::from_env`]): the token (`HF_TOKEN`,
    /// `HUGGING_FACE_HUB_TOKEN`, `$HF_HOME/token`), `HF_ENDPOINT` for the Hub, `HF_ROUTER_URL` for the
    /// router, and each provider's own key variable (`FAL_KEY`, …). Setters called afterwards win.
    pub fn from_env() -> Self {
        MediaGeneratorBuilder::from_config(GeneratorConfig::from_env())
    }

    /// The configuration so far.
    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// The Hugging Face token, sent to the Hub and the router only.
    pub fn token(self, token: impl Into<String>) -> Self {
        self.secret_token(SecretString::from(token.into()))
    }

    /// The token, already a secret.
    pub fn secret_token(mut self, token: SecretString) -> Self {
        self.config.token = Some(Secret::from(token));
        self
    }

    /// The Hub's base URL (default `https://huggingface.co`).
    pub fn hub_url(mut self, url: impl Into<String>) -> Self {
        self.config.hub_url = Some(url.into());
        self
    }

    /// The router's base URL (default [`DEFAULT_ROUTER_URL`]).
    pub fn router_url(mut self, url: impl Into<String>) -> Self {
        self.config.router_url = Some(url.into());
        self
    }

    /// Takes the Hub, the router and every provider's own API from an emulator at `url` (see
    /// [`GeneratorConfig::emulator_url`]).
    pub fn emulator_url(mut self, url: impl Into<String>) -> Self {
        self.config.emulator_url = Some(url.into());
        self
    }

    /// Where media goes (default: a [`FileSink`] as [`GeneratorConfig::sink`] says).
    pub fn sink(mut self, sink: DynMediaSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// The providers (default [`ProviderRegistry::with_defaults`]).
    pub fn registry(mut self, registry: ProviderRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Registers an OpenAI-images-compatible server as a provider.
    pub fn openai_provider(mut self, provider: OpenAiProviderConfig) -> Self {
        self.config.openai_providers.push(provider);
        self
    }

    /// Where the providers' mappings come from (default: the Hub client).
    pub fn mapping_source(mut self, source: Arc<dyn MappingSource>) -> Self {
        self.mapping_source = Some(source);
        self
    }

    /// Providers to try first, in this order, before the rest in the Hub's order.
    pub fn provider_order<I, S>(mut self, order: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.provider_order = order.into_iter().map(Into::into).collect();
        self
    }

    /// Polling of asynchronous providers (default: every 500 ms, for at most 15 minutes).
    pub fn poll(mut self, poll: PollConfig) -> Self {
        self.config.timeouts.poll_interval_ms = millis_ceil(poll.interval);
        self.config.timeouts.poll_deadline_ms = millis_ceil(poll.deadline);
        self
    }

    /// How long a connection may take to open (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeouts.connect_ms = millis_ceil(timeout);
        self
    }

    /// Retries of passing failures (default: 3 tries, backoff from 500 ms to 10 s with jitter,
    /// `Retry-After` honoured up to 60 s).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.config.retry = policy;
        self
    }

    /// The longest one API call may take, answer included (default 300 s). Media downloads are bounded
    /// by the stall timeout ([`MediaGeneratorBuilder::read_timeout`]) and the generation deadline instead.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeouts.request_ms = millis_ceil(timeout);
        self
    }

    /// How long a response may go without sending a byte: the stall timeout (default 120 s: replicate
    /// holds answers up to 60 s).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeouts.read_ms = millis_ceil(timeout);
        self
    }

    /// The longest one generation may take, the Hub call and all providers included (default 30
    /// minutes; `None`: no limit).
    pub fn generation_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.timeouts.generation_ms = timeout.map(millis_ceil);
        self
    }

    /// How long the Hub's answers are cached (default 10 minutes).
    pub fn mapping_cache_ttl(mut self, ttl: Duration) -> Self {
        self.config.mapping_cache_ttl_ms = millis_ceil(ttl);
        self
    }

    /// How often a [`GenerationEvent::Progress`](crate::GenerationEvent::Progress) tick is sent while
    /// waiting (default 500 ms).
    pub fn progress_interval(mut self, interval: Duration) -> Self {
        self.config.progress_interval_ms = millis_ceil(interval);
        self
    }

    /// Bills router calls to this organization (`X-HF-Bill-To`).
    pub fn bill_to(mut self, org: impl Into<String>) -> Self {
        self.config.bill_to = Some(org.into());
        self
    }

    /// Calls `provider` on its own API with its own key (sent only to that provider), instead of through
    /// the router with the HF token. The provider must have a direct API
    /// ([`ProviderInfo::direct`](hf_media_provider::ProviderInfo::direct)).
    pub fn provider_key(mut self, provider: impl Into<String>, key: impl Into<String>) -> Self {
        self.config.provider_keys.insert(provider.into(), Secret::new(key));
        self
    }

    /// Scrubs `secret` too from everything the generator reports (a server's own API key), besides the
    /// token and the provider keys.
    pub fn redact(mut self, secret: impl Into<String>) -> Self {
        self.config.extra_secrets.push(Secret::new(secret));
        self
    }

    /// Uses `url` instead of the provider's own API address for direct calls (a proxy, a test server).
    pub fn provider_url(mut self, provider: impl Into<String>, url: impl Into<String>) -> Self {
        self.config.provider_urls.insert(provider.into(), url.into());
        self
    }

    /// At build time, reads each registered provider's key variable
    /// ([`ProviderInfo::key_env`](hf_media_provider::ProviderInfo::key_env): `FAL_KEY`,
    /// `REPLICATE_API_TOKEN`, `TOGETHER_API_KEY`, …) for the providers given no key explicitly.
    pub fn provider_keys_from_env(mut self, read: bool) -> Self {
        self.config.provider_keys_from_env = read;
        self
    }

    /// Whether media are downloaded into the sink (default `true`). With `false`, media that a provider
    /// answers with as an `http(s)` URL are reported with [`MediaLocation::Url`](hf_media_sink::MediaLocation::Url)
    /// and not fetched; media answered as bytes are still stored, with a warning.
    pub fn download_media(mut self, download: bool) -> Self {
        self.config.download_media = download;
        self
    }

    /// The largest input image read, in bytes (default [`DEFAULT_MAX_INPUT_BYTES`](crate::DEFAULT_MAX_INPUT_BYTES)).
    pub fn max_input_bytes(mut self, bytes: u64) -> Self {
        self.config.max_input_bytes = bytes;
        self
    }

    /// Whether input images may be local files (default `true`; see
    /// [`GeneratorConfig::allow_local_inputs`]).
    pub fn allow_local_inputs(mut self, allow: bool) -> Self {
        self.config.allow_local_inputs = allow;
        self
    }

    /// The gate every provider call passes (default: none): it may make a call wait (rate limits,
    /// concurrency, pauses) or hold a provider back, and hears each call's outcome. See [`ProviderGate`].
    pub fn gate(mut self, gate: Arc<dyn ProviderGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The HTTP client (default: a pooled rustls client with the timeouts above).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Builds the generator, checking the whole configuration once.
    pub fn build(self) -> Result<MediaGenerator, Error> {
        let MediaGeneratorBuilder {
            mut config,
            sink,
            registry,
            http,
            mapping_source,
            gate,
        } = self;
        let mut registry = registry.unwrap_or_else(ProviderRegistry::with_defaults);
        for server in &config.openai_providers {
            let url = parse_base_url(&format!("{} (OpenAI-compatible)", server.name), &server.url)?;
            registry.register(Arc::new(
                OpenAiCompatible::new(server.name.clone(), url).with_response_format(server.response_format),
            ));
            if let Some(key) = &server.key {
                config.provider_keys.insert(server.name.clone(), key.clone());
            }
        }
        if let Some(emulator) = config.emulator_url.clone() {
            point_at_emulator(&mut config, &registry, &emulator);
        }
        let mut keys: HashMap<String, SecretString> = config
            .provider_keys
            .iter()
            .map(|(name, key)| (name.clone(), key.secret_string()))
            .collect();
        if config.provider_keys_from_env {
            for provider in registry.iter() {
                let Some(var) = provider.info().key_env() else { continue };
                if keys.contains_key(provider.name()) {
                    continue;
                }
                if let Ok(key) = std::env::var(var)
                    && !key.trim().is_empty()
                {
                    keys.insert(provider.name().to_owned(), SecretString::from(key.trim().to_owned()));
                }
            }
        }
        if let Some(name) = config.provider_urls.keys().find(|name| registry.get(name).is_none()) {
            return Err(Error::UnknownProvider {
                provider: name.clone(),
                known: registry.names().map(str::to_owned).collect(),
            });
        }
        check_settings(&config)?;
        let urls: HashMap<String, String> = config.provider_urls.clone().into_iter().collect();
        let keyed = !keys.is_empty();
        let direct = direct_accesses(&registry, keys, &urls)?;
        let token = config.token.as_ref().map(Secret::secret_string);
        if token.is_none() && !keyed {
            return Err(Error::MissingToken);
        }
        // A token that cannot travel in a header would silently be left off every request (and every
        // provider would answer 401): say so now, without showing it.
        let sendable =
            |secret: &SecretString| HeaderValue::from_str(&format!("Bearer {}", secret.expose_secret())).is_ok();
        if let Some(token) = &token
            && !sendable(token)
        {
            return Err(Error::Config(
                "the Hugging Face token contains characters that cannot be sent in an HTTP header \
                 (a stray newline, space or non-ASCII character?)"
                    .into(),
            ));
        }
        if let Some((name, _)) = direct
            .iter()
            .find(|(_, access)| access.key.as_ref().is_some_and(|key| !sendable(key)))
        {
            return Err(Error::Config(format!(
                "the key of {name} contains characters that cannot be sent in an HTTP header \
                 (a stray newline, space or non-ASCII character?)"
            )));
        }
        let extra: Vec<SecretString> = config.extra_secrets.iter().map(Secret::secret_string).collect();
        let secrets = Secrets::new(
            token
                .iter()
                .chain(direct.values().filter_map(|a| a.key.as_ref()))
                .chain(extra.iter()),
        );
        let router_raw = config
            .router_url
            .clone()
            .unwrap_or_else(|| DEFAULT_ROUTER_URL.to_owned());
        let router_url = parse_base_url("router", &router_raw)?;
        let timeouts = &config.timeouts;
        let http = match http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .user_agent(concat!("hf-media/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_millis(timeouts.connect_ms))
                .read_timeout(Duration::from_millis(timeouts.read_ms))
                .pool_max_idle_per_host(64)
                .build()
                .map_err(|e| Error::Config(format!("could not set up HTTP: {e}")))?,
        };
        let mut hub = MappingClient::builder()
            .http_client(http.clone())
            .secret_token(token.clone())
            .cache_ttl(Duration::from_millis(config.mapping_cache_ttl_ms));
        if let Some(url) = &config.hub_url {
            hub = hub.hub_url(url.clone());
        }
        let hub = hub.build()?;
        let bill_to = match &config.bill_to {
            Some(org) => Some(HeaderValue::from_str(org.trim()).map_err(|_| {
                Error::Config(format!(
                    "`{org}` cannot be sent as X-HF-Bill-To: use the organization's name"
                ))
            })?),
            None => None,
        };
        let sink = sink.unwrap_or_else(|| {
            Arc::new(
                FileSink::new(config.sink.dir.clone())
                    .with_max_bytes(config.sink.max_media_bytes)
                    .with_sidecar(config.sink.sidecar)
                    .with_sync(config.sink.sync),
            )
        });
        let access = Access {
            http,
            router_url,
            hub_url: hub.hub_url().clone(),
            token,
            bill_to,
            direct,
            poll: PollConfig {
                interval: Duration::from_millis(timeouts.poll_interval_ms),
                deadline: Duration::from_millis(timeouts.poll_deadline_ms),
            },
            request_timeout: Duration::from_millis(timeouts.request_ms),
            retry: config.retry,
            secrets: secrets.clone(),
        };
        let mapping: Arc<dyn MappingSource> = match mapping_source {
            Some(source) => source,
            None => Arc::new(hub.clone()),
        };
        Ok(MediaGenerator::from_inner(Inner {
            access,
            hub,
            mapping,
            registry,
            sink,
            provider_order: config.provider_order.clone(),
            generation_timeout: config.timeouts.generation_ms.map(Duration::from_millis),
            progress_interval: Duration::from_millis(config.progress_interval_ms),
            download_media: config.download_media,
            max_input_bytes: config.max_input_bytes,
            allow_local_inputs: config.allow_local_inputs,
            emulator: match &config.emulator_url {
                Some(url) => Some(parse_base_url("emulator", url)?),
                None => None,
            },
            retry: config.retry,
            secrets,
            gate,
        }))
    }
}

/// Refuses settings that cannot work: a zero timeout, interval or deadline (a zero poll interval would
/// poll in a tight loop), or no try at all.
fn check_settings(config: &GeneratorConfig) -> Result<(), Error> {
    let t = &config.timeouts;
    for (name, value) in [
        ("timeouts.connect_ms", Some(t.connect_ms)),
        ("timeouts.read_ms", Some(t.read_ms)),
        ("timeouts.request_ms", Some(t.request_ms)),
        ("timeouts.generation_ms", t.generation_ms),
        ("timeouts.poll_interval_ms", Some(t.poll_interval_ms)),
        ("timeouts.poll_deadline_ms", Some(t.poll_deadline_ms)),
        ("progress_interval_ms", Some(config.progress_interval_ms)),
        ("max_input_bytes", Some(config.max_input_bytes)),
        ("retry.max_attempts", Some(u64::from(config.retry.max_attempts))),
    ] {
        if value == Some(0) {
            return Err(Error::Config(format!("{name} must be greater than zero")));
        }
    }
    Ok(())
}

/// Takes every address from the emulator at `url`, the emulator's stand-in token, and no key from the
/// environment: offline means offline. A provider given a key is called on the emulator's copy of its
/// API (whatever URL was given for it), and the user's real token is never sent to the emulator.
fn point_at_emulator(config: &mut GeneratorConfig, registry: &ProviderRegistry, url: &str) {
    let url = url.trim().trim_end_matches('/').to_owned();
    config.hub_url = Some(url.clone());
    config.router_url = Some(url.clone());
    config.provider_keys_from_env = false;
    config.token = Some(Secret::new(EMULATOR_TOKEN));
    for provider in registry.iter() {
        let info = provider.info();
        if info.direct.is_some() && !info.direct_only {
            config
                .provider_urls
                .insert(provider.name().to_owned(), format!("{url}/{}", provider.name()));
        }
    }
}
