//! The generator's configuration as data: everything the CLI, a server or a batch runner wires into a
//! [`MediaGenerator`](crate::MediaGenerator), readable from JSON (or any serde format) and from the
//! environment, so that they all build generators the same way.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use hf_media_provider::RetryPolicy;
use hf_media_provider::providers::ResponseFormat;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};

/// A secret read from configuration (a token or a key): never serialized back, never shown by `Debug`.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    /// The secret, for sending it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// As a [`SecretString`].
    pub fn secret_string(&self) -> SecretString {
        self.0.clone()
    }
}

impl From<SecretString> for Secret {
    fn from(secret: SecretString) -> Self {
        Secret(secret)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|s| Secret::new(s.trim()))
    }
}

/// An OpenAI-images-compatible server registered as a provider under `name`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiProviderConfig {
    /// Its provider name (`model:name` picks it).
    pub name: String,
    /// Its base URL (`{url}/v1/images/generations`).
    pub url: String,
    /// `b64_json` (default) or `url`.
    #[serde(default, with = "response_format")]
    pub response_format: ResponseFormat,
    /// Its key, sent as `Authorization: Bearer …` to this server only.
    #[serde(default, skip_serializing)]
    pub key: Option<Secret>,
}

mod response_format {
    use hf_media_provider::providers::ResponseFormat;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(format: &ResponseFormat, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(format.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ResponseFormat, D::Error> {
        match String::deserialize(d)?.as_str() {
            "b64_json" => Ok(ResponseFormat::B64Json),
            "url" => Ok(ResponseFormat::Url),
            other => Err(serde::de::Error::custom(format!(
                "response_format `{other}` is not `b64_json` or `url`"
            ))),
        }
    }
}

/// Where media go when no sink is given: a [`FileSink`](hf_media_sink::FileSink).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    /// The folder (default `./generated_media`).
    pub dir: PathBuf,
    /// The largest media accepted, in bytes (default 2 GiB).
    pub max_media_bytes: u64,
    /// Whether a JSON record is written next to each media (default `true`).
    pub sidecar: bool,
    /// Whether the default sink syncs each store to the disk before it counts as done (default
    /// `true`); `false` keeps stores atomic but lets a power loss take the last seconds' media
    /// ([`FileSink::with_sync`](hf_media_sink::FileSink::with_sync)). A sink given to the builder, or
    /// a batch's own, is not affected.
    pub sync: bool,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            dir: PathBuf::from(hf_media_sink::DEFAULT_DIR),
            max_media_bytes: hf_media_sink::DEFAULT_MAX_BYTES,
            sidecar: true,
            sync: true,
        }
    }
}

/// Every deadline, in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutConfig {
    /// How long a connection may take to open (default 10 s).
    pub connect_ms: u64,
    /// How long a response may go without sending a byte (default 120 s).
    pub read_ms: u64,
    /// The longest one API call may take, answer included (default 300 s).
    pub request_ms: u64,
    /// The longest one generation may take, the Hub call and every provider included (default 30 min;
    /// `null`: no limit).
    pub generation_ms: Option<u64>,
    /// Pause between two status requests of a pending job (default 500 ms).
    pub poll_interval_ms: u64,
    /// The longest a job may stay pending (default 15 min).
    pub poll_deadline_ms: u64,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        TimeoutConfig {
            connect_ms: 10_000,
            read_ms: 120_000,
            request_ms: 300_000,
            generation_ms: Some(30 * 60 * 1000),
            poll_interval_ms: 500,
            poll_deadline_ms: 15 * 60 * 1000,
        }
    }
}

/// What a [`MediaGenerator`](crate::MediaGenerator) is built from, as data. Secrets (the token, provider
/// keys) are read but never serialized back, and never shown by `Debug`.
///
/// ```
/// let config: hf_media::GeneratorConfig = serde_json::from_str(r#"{
///     "hub_url": "http://127.0.0.1:8700",
///     "provider_keys": {"fal-ai": "fal-key"},
///     "provider_order": ["fal-ai"],
///     "sink": {"dir": "out"},
///     "timeouts": {"generation_ms": 60000},
///     "retry": {"max_attempts": 5}
/// }"#).unwrap();
/// assert_eq!(config.retry.max_attempts, 5);
/// assert!(!format!("{config:?}").contains("fal-key"));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorConfig {
    /// The Hugging Face token, sent to the Hub and the router only.
    #[serde(skip_serializing)]
    pub token: Option<Secret>,
    /// The Hub's base URL (default `https://huggingface.co`).
    pub hub_url: Option<String>,
    /// The router's base URL (default `https://router.huggingface.co`).
    pub router_url: Option<String>,
    /// An emulator of the Hub and every provider (`hf-media emulator`): the Hub, the router and every
    /// provider's own API are taken from it, its stand-in token replaces any token given (a real token is
    /// never sent to it), and no provider key is read from the environment, so that nothing reaches a
    /// real service.
    pub emulator_url: Option<String>,
    /// OpenAI-images-compatible servers to register as providers.
    pub openai_providers: Vec<OpenAiProviderConfig>,
    /// Providers called on their own API with their own key (sent to that provider only).
    #[serde(skip_serializing)]
    pub provider_keys: BTreeMap<String, Secret>,
    /// Other addresses for providers' own APIs (a proxy, a test server).
    pub provider_urls: BTreeMap<String, String>,
    /// Other secrets to scrub from everything reported (a server's own API keys), besides the token and
    /// the provider keys.
    #[serde(skip_serializing)]
    pub extra_secrets: Vec<Secret>,
    /// Whether each provider's key variable (`FAL_KEY`, …) is read for the providers given no key.
    pub provider_keys_from_env: bool,
    /// Providers to try first, in this order, before the rest in the Hub's order.
    pub provider_order: Vec<String>,
    /// Bills router calls to this organization (`X-HF-Bill-To`).
    pub bill_to: Option<String>,
    /// Where media go when no sink is given.
    pub sink: SinkConfig,
    /// Whether media are downloaded into the sink (default `true`); with `false`, media answered as a URL
    /// are reported by URL.
    pub download_media: bool,
    /// The largest input image read, in bytes (default 20 MiB).
    pub max_input_bytes: u64,
    /// Whether input images may be local files (default `true`; a server that takes requests from others
    /// says `false`, so that a request cannot make it read and upload its files).
    pub allow_local_inputs: bool,
    /// Every deadline.
    pub timeouts: TimeoutConfig,
    /// Retries of passing failures (the Hub call, provider calls, status requests, downloads, the sink).
    pub retry: RetryPolicy,
    /// How long the Hub's answers are cached, in milliseconds (default 10 minutes).
    pub mapping_cache_ttl_ms: u64,
    /// How often a progress event is sent while waiting, in milliseconds (default 500).
    pub progress_interval_ms: u64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            token: None,
            hub_url: None,
            router_url: None,
            emulator_url: None,
            openai_providers: Vec::new(),
            provider_keys: BTreeMap::new(),
            provider_urls: BTreeMap::new(),
            extra_secrets: Vec::new(),
            provider_keys_from_env: false,
            provider_order: Vec::new(),
            bill_to: None,
            sink: SinkConfig::default(),
            download_media: true,
            max_input_bytes: crate::DEFAULT_MAX_INPUT_BYTES,
            allow_local_inputs: true,
            timeouts: TimeoutConfig::default(),
            retry: RetryPolicy::default(),
            mapping_cache_ttl_ms: millis(hf_media_mapping::DEFAULT_CACHE_TTL),
            progress_interval_ms: 500,
        }
    }
}

/// The token emulators accept (they check that one is present, like the router).
pub const EMULATOR_TOKEN: &str = "hf_emulator";

impl GeneratorConfig {
    /// The defaults, with what the environment says: the token (`HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`,
    /// `$HF_TOKEN_PATH`, `$HF_HOME/token`), `HF_ENDPOINT` for the Hub, `HF_ROUTER_URL` for the router, and
    /// each provider's own key variable at build time.
    pub fn from_env() -> Self {
        GeneratorConfig::from_env_with(|name| std::env::var(name).ok())
    }

    /// [`GeneratorConfig::from_env`] with the environment given as a function (for tests). The token file
    /// is still read from disk.
    pub fn from_env_with(env: impl Fn(&str) -> Option<String>) -> Self {
        let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let token = crate::token::find_token_with(&env, |path| std::fs::read_to_string(path).ok())
            .map(|(token, _)| Secret::from(token));
        GeneratorConfig {
            token,
            hub_url: set("HF_ENDPOINT"),
            router_url: set("HF_ROUTER_URL"),
            provider_keys_from_env: true,
            ..GeneratorConfig::default()
        }
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whole milliseconds, rounded up: a setting of 100 µs is 1 ms, never 0 (which would be refused, or poll
/// in a tight loop).
pub(crate) fn millis_ceil(d: Duration) -> u64 {
    let ms = millis(d);
    if Duration::from_millis(ms) < d {
        ms.saturating_add(1)
    } else {
        ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_read_but_never_written_back_or_shown() {
        let config: GeneratorConfig = serde_json::from_str(
            r#"{"token": "hf_canary_1234", "provider_keys": {"fal-ai": "fal_canary_5678"},
                "openai_providers": [{"name": "mine", "url": "http://127.0.0.1:1", "key": "sk_canary_9"}]}"#,
        )
        .unwrap();
        assert_eq!(config.token.as_ref().map(Secret::expose), Some("hf_canary_1234"));
        let written = serde_json::to_string(&config).unwrap();
        let shown = format!("{config:?}");
        for text in [&written, &shown] {
            assert!(!text.contains("canary"), "{text}");
        }
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let err = serde_json::from_str::<GeneratorConfig>(r#"{"tokne": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("tokne"), "{err}");
        let err = serde_json::from_str::<GeneratorConfig>(
            r#"{"openai_providers": [{"name": "a", "url": "http://x", "response_format": "png"}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("png"), "{err}");
    }

    #[test]
    fn the_environment_gives_token_and_endpoints() {
        let env = |name: &str| match name {
            "HF_TOKEN" => Some("hf_env_token".to_owned()),
            "HF_ENDPOINT" => Some("http://hub.local".to_owned()),
            "HF_ROUTER_URL" => Some("  ".to_owned()),
            _ => None,
        };
        let config = GeneratorConfig::from_env_with(env);
        assert_eq!(config.token.as_ref().map(Secret::expose), Some("hf_env_token"));
        assert_eq!(config.hub_url.as_deref(), Some("http://hub.local"));
        assert_eq!(config.router_url, None, "a blank variable is unset");
        assert!(config.provider_keys_from_env);
    }
}
