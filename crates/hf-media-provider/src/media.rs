use std::fmt;

use bytes::Bytes;
pub use hf_media_sink::{ByteStream, StreamError};
use serde_json::Value;
use url::Url;

/// The media a provider made.
pub enum MediaBody {
    /// The bytes, already in memory (decoded base64, small answers).
    Bytes(Bytes),
    /// The bytes, still arriving (raw bodies such as hf-inference's).
    Stream(ByteStream),
    /// Where to download the bytes: an `http(s)` URL on the provider's CDN (fetched without credentials)
    /// or a `data:` URL.
    Url(Url),
}

impl fmt::Debug for MediaBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaBody::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            MediaBody::Stream(_) => f.write_str("Stream(..)"),
            MediaBody::Url(url) if url.scheme() == "data" => f.write_str("Url(data:…)"),
            MediaBody::Url(url) => write!(f, "Url({url})"),
        }
    }
}

/// A provider's answer: the media, and what the provider said about it.
#[derive(Debug)]
pub struct MediaOutput {
    /// The media itself.
    pub body: MediaBody,
    /// The MIME type the provider claimed, if any (not trusted for file names: sinks sniff the bytes).
    pub mime: Option<String>,
    /// The provider's own answer minus media bytes (seed, timings, NSFW flags, request id, …).
    pub provider_response: Option<Value>,
    /// The seed the provider used, when it says.
    pub seed: Option<u64>,
}

impl MediaOutput {
    /// An output with only a body.
    pub fn new(body: MediaBody) -> Self {
        MediaOutput {
            body,
            mime: None,
            provider_response: None,
            seed: None,
        }
    }

    /// Sets the provider's answer (media bytes are replaced by placeholders) and reads `seed` from it.
    pub fn with_provider_response(mut self, response: &Value) -> Self {
        self.seed = find_seed(response);
        self.provider_response = Some(crate::http::strip_media(response));
        self
    }
}

fn find_seed(response: &Value) -> Option<u64> {
    let direct = |v: &Value| v.get("seed").and_then(Value::as_u64);
    direct(response)
        .or_else(|| response.get("data").and_then(direct))
        .or_else(|| response.get("input").and_then(direct))
}
