//! What a server is told: where media live, who may call it, its limits and its timeouts.

use std::path::PathBuf;
use std::time::Duration;

use hf_media::Secret;
use hf_media_batch::state::StateLocation;
use url::Url;

use crate::ServerError;

/// The default address: loopback, port 8787.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8787";
/// The default largest request body (images of an edit included): 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// The default number of generations in flight across every client.
pub const DEFAULT_MAX_CONCURRENT: usize = 64;
/// The most generations one images request may ask for (`n`).
pub const MAX_IMAGES_PER_REQUEST: usize = 10;
/// The model of an images request that names none.
pub const DEFAULT_IMAGE_MODEL: &str = hf_media::DEFAULT_MODEL;
/// The model of a video request that names none.
pub const DEFAULT_VIDEO_MODEL: &str = "Wan-AI/Wan2.2-T2V-A14B";

/// Everything a [`Server`](crate::Server) is configured with. [`ServerConfig::new`] gives the defaults of
/// `hf-media serve`; [`ServerConfig::check`] says what is wrong with a configuration before it serves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Where media are stored and served from (with their JSON sidecars): a folder, or an object-store
    /// URL (`s3://bucket/prefix`, `gs://…`, `az://…`, `file:///…`; credentials and endpoint from the
    /// usual `AWS_*`, `GOOGLE_*`, `AZURE_*` variables).
    pub output: PathBuf,
    /// The URL clients reach the server at (`https://media.example.com`, a path prefix allowed): media
    /// URLs in answers are built on it. Without it: `X-Forwarded-Proto`/`X-Forwarded-Host`, else `Host`.
    pub public_url: Option<Url>,
    /// The keys clients must send as `Authorization: Bearer KEY` on every `/v1` route; none: open.
    pub api_keys: Vec<Secret>,
    /// The origins allowed to call from a browser (`*` for any); none: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Media URLs carry a signature that expires after this long (`/media/NAME?expires=…&sig=…`);
    /// `None`: plain, unguessable names.
    pub signed_media: Option<Duration>,
    /// The key media links are signed with; replicas behind one address must share it. `None`: a random
    /// key per process (links then die with it).
    pub signing_key: Option<Secret>,
    /// The largest request body, in bytes (an edit's images included).
    pub max_body_bytes: usize,
    /// The most generations in flight across every client; a request that would go beyond gets a 429
    /// with `Retry-After`.
    pub max_concurrent: usize,
    /// Requests per minute one API key (or, on an open server, one client address) may make; `None`: no
    /// limit.
    pub rate_per_minute: Option<u32>,
    /// How long a client may take to send a request's headers (a slow client is cut off).
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body.
    pub body_timeout: Duration,
    /// How long in-flight work may go on after a shutdown signal before it is cancelled.
    pub grace: Duration,
    /// How often a streaming answer sends a `:` keep-alive comment while it waits.
    pub keep_alive: Duration,
    /// The model of an images request that names none.
    pub default_image_model: String,
    /// The model of a video request that names none.
    pub default_video_model: String,
    /// How long the served models list (`GET /v1/models`) is kept.
    pub models_ttl: Duration,
    /// Where video jobs are kept (`sqlite:PATH` or `postgres://…`, shared by replicas); `None`:
    /// `{output}/.hf-media/serve-state.sqlite`.
    pub state: Option<StateLocation>,
    /// How many video jobs this process runs at once.
    pub video_concurrency: usize,
    /// The lease a replica holds a running video job with (renewed while it runs; another replica takes
    /// the job over when it lapses).
    pub video_lease: Duration,
}

impl ServerConfig {
    /// The defaults, storing media in `output`.
    pub fn new(output: impl Into<PathBuf>) -> Self {
        ServerConfig {
            output: output.into(),
            public_url: None,
            api_keys: Vec::new(),
            cors_origins: Vec::new(),
            signed_media: None,
            signing_key: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            rate_per_minute: None,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            grace: Duration::from_secs(30),
            keep_alive: Duration::from_secs(10),
            default_image_model: DEFAULT_IMAGE_MODEL.to_owned(),
            default_video_model: DEFAULT_VIDEO_MODEL.to_owned(),
            models_ttl: Duration::from_secs(300),
            state: None,
            video_concurrency: 8,
            video_lease: Duration::from_secs(30),
        }
    }

    /// Where video jobs are kept: [`ServerConfig::state`], else the SQLite file
    /// `{output}/.hf-media/serve-state.sqlite` (for object storage: one in the user's cache folder, named
    /// after the prefix, as for batches).
    pub fn state_location(&self) -> StateLocation {
        self.state
            .clone()
            .unwrap_or_else(|| match crate::store::MediaStore::open(&self.output) {
                Ok(store) => store.default_state(),
                Err(_) => StateLocation::Sqlite(self.output.join(".hf-media").join("serve-state.sqlite")),
            })
    }

    /// Says what is wrong with the configuration, if anything.
    pub fn check(&self) -> Result<(), ServerError> {
        let bad = |reason: String| Err(ServerError::Config(reason));
        if self.api_keys.iter().any(|key| key.expose().trim().is_empty()) {
            return bad("an API key is empty: give --api-key KEY with a non-empty key".into());
        }
        if self.max_concurrent == 0 {
            return bad("--max-concurrent must be at least 1".into());
        }
        if self.max_body_bytes < 1024 {
            return bad("--max-body-bytes must be at least 1024".into());
        }
        if self.video_concurrency == 0 {
            return bad("the video concurrency must be at least 1".into());
        }
        if self.rate_per_minute == Some(0) {
            return bad("--rate-per-minute must be at least 1 (leave it out for no limit)".into());
        }
        if let Some(url) = &self.public_url
            && !matches!(url.scheme(), "http" | "https")
        {
            return bad(format!(
                "--public-url {url}: give an http(s) URL such as https://media.example.com"
            ));
        }
        if let Some(lifetime) = self.signed_media
            && lifetime < Duration::from_secs(1)
        {
            return bad("--signed-media must be at least one second".into());
        }
        for origin in &self.cors_origins {
            if origin != "*" && Url::parse(origin).map_or(true, |url| !matches!(url.scheme(), "http" | "https")) {
                return bad(format!(
                    "--cors-origin `{origin}` is not an origin: give `*` or one such as https://app.example.com"
                ));
            }
        }
        if self.default_image_model.trim().is_empty() || self.default_video_model.trim().is_empty() {
            return bad("the default models must not be empty".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_bad_values_say_what_to_do() {
        assert!(ServerConfig::new("out").check().is_ok());
        let mut config = ServerConfig::new("out");
        config.max_concurrent = 0;
        assert!(config.check().unwrap_err().to_string().contains("--max-concurrent"));
        let mut config = ServerConfig::new("out");
        config.cors_origins = vec!["example.com".into()];
        assert!(
            config
                .check()
                .unwrap_err()
                .to_string()
                .contains("https://app.example.com")
        );
        let mut config = ServerConfig::new("out");
        config.api_keys = vec![Secret::new(" ")];
        assert!(config.check().unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn the_state_defaults_to_a_file_in_the_output() {
        let config = ServerConfig::new("/srv/media");
        assert_eq!(
            config.state_location(),
            StateLocation::Sqlite(PathBuf::from("/srv/media/.hf-media/serve-state.sqlite"))
        );
    }
}
