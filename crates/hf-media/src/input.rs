//! The input images of a request: what the caller names ([`MediaInput`]: a path, an `http(s)` URL, a
//! `data:` URL, or bytes) and how it is read: once per request, before anything is sent, sniffed from its
//! bytes and size-checked, so that a missing file, a file that is not an image, an image over the limit or
//! a URL that does not answer is a clear error and no provider is paid for a doomed job.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use hf_media_provider::{ImageOrigin, InputImage, RetryPolicy, RetryStage, Retryable, Transience, http};
use hf_media_sink::{InputRecord, MediaKind, sniff};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use crate::Error;

/// The largest input image read by default: 20 MiB.
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 20 * 1024 * 1024;

/// An input image, as the caller names it. In JSON it is a string: an `http(s)` URL, a `data:` URL, or a
/// path.
#[derive(Clone, PartialEq, Eq)]
pub enum MediaInput {
    /// A local file.
    Path(PathBuf),
    /// An `http(s)` URL: passed as it is to providers that take URLs (it is fetched once, to check it).
    Url(String),
    /// A `data:` URL.
    DataUrl(String),
    /// Bytes in memory.
    Bytes(Bytes),
}

impl fmt::Debug for MediaInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaInput::Path(path) => write!(f, "Path({})", path.display()),
            MediaInput::Url(url) => write!(f, "Url({url})"),
            MediaInput::DataUrl(url) => write!(f, "DataUrl({} characters)", url.len()),
            MediaInput::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
        }
    }
}

impl fmt::Display for MediaInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaInput::Path(path) => write!(f, "{}", path.display()),
            MediaInput::Url(url) => f.write_str(url),
            MediaInput::DataUrl(_) => f.write_str("the data: URL"),
            MediaInput::Bytes(_) => f.write_str("the image bytes"),
        }
    }
}

impl MediaInput {
    /// A local file.
    pub fn path(path: impl Into<PathBuf>) -> Self {
        MediaInput::Path(path.into())
    }

    /// An `http(s)` URL.
    pub fn url(url: impl Into<String>) -> Self {
        MediaInput::Url(url.into())
    }

    /// Bytes in memory.
    pub fn bytes(bytes: impl Into<Bytes>) -> Self {
        MediaInput::Bytes(bytes.into())
    }

    /// What a command line or a JSON field says: `http://…`/`https://…` is a URL, `data:…` a `data:` URL,
    /// anything else a path.
    pub fn parse(text: &str) -> Self {
        let trimmed = text.trim();
        let lower = trimmed.get(..8).unwrap_or(trimmed).to_ascii_lowercase();
        let has_scheme = trimmed
            .split_once("://")
            .is_some_and(|(scheme, _)| !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphabetic()));
        if lower.starts_with("http://") || lower.starts_with("https://") || has_scheme {
            MediaInput::Url(trimmed.to_owned())
        } else if lower.starts_with("data:") {
            MediaInput::DataUrl(trimmed.to_owned())
        } else {
            MediaInput::Path(PathBuf::from(text))
        }
    }

    /// The JSON string form (bytes become a `data:` URL).
    fn to_wire(&self) -> String {
        match self {
            MediaInput::Path(path) => path.display().to_string(),
            MediaInput::Url(url) | MediaInput::DataUrl(url) => url.clone(),
            MediaInput::Bytes(bytes) => {
                let mime = sniff(bytes).map_or("application/octet-stream", |f| f.mime);
                let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
                format!("data:{mime};base64,{encoded}")
            }
        }
    }
}

impl Serialize for MediaInput {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_wire())
    }
}

impl<'de> Deserialize<'de> for MediaInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|text| MediaInput::parse(&text))
    }
}

/// What an input becomes in the record: its origin, hash, size and type, never its bytes.
pub(crate) fn input_record(image: &InputImage) -> InputRecord {
    InputRecord {
        source: image.origin().to_string(),
        sha256: image.sha256().to_owned(),
        bytes: u64::try_from(image.len()).unwrap_or(u64::MAX),
        mime: image.mime().to_owned(),
    }
}

/// How inputs are read: the limits, the HTTP client and its retries, and what is allowed.
pub(crate) struct InputPolicy<'a> {
    pub http: &'a reqwest::Client,
    /// The largest image read.
    pub limit: u64,
    /// The bound on one download.
    pub request_timeout: Duration,
    /// Retries of a download's passing failures.
    pub retry: RetryPolicy,
    /// Whether local files may be read (a server taking requests from others says no).
    pub allow_local: bool,
    /// Offline (the emulator): URLs are fetched only from this origin.
    pub offline: Option<&'a Url>,
}

/// Reads every input once: checked, sniffed and hashed. `chat` says whether they came from a chat's
/// image parts (recorded as such).
pub(crate) async fn load_all(
    inputs: &[MediaInput],
    chat: bool,
    policy: &InputPolicy<'_>,
) -> Result<Vec<InputImage>, Error> {
    let mut images = Vec::with_capacity(inputs.len());
    for (index, input) in inputs.iter().enumerate() {
        let named = Named {
            input,
            position: (inputs.len() > 1).then_some(index + 1),
            chat,
        };
        images.push(load(&named, policy).await?);
    }
    Ok(images)
}

/// An input as errors name it: `cat.png`, `input image 2 (the data: URL)`, `the chat's image 1 (…)`.
struct Named<'a> {
    input: &'a MediaInput,
    position: Option<usize>,
    chat: bool,
}

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.chat, self.position) {
            (true, Some(n)) => write!(f, "{n} of the chat ({})", self.input),
            (true, None) => write!(f, "of the chat ({})", self.input),
            (false, Some(n)) => write!(f, "{n} ({})", self.input),
            (false, None) => write!(f, "{}", self.input),
        }
    }
}

impl Named<'_> {
    /// The input cannot be used as given: the caller must change it.
    fn bad(&self, reason: impl Into<String>) -> Error {
        Error::Input {
            input: self.to_string(),
            reason: reason.into(),
        }
    }

    /// The input could not be fetched for a passing reason (after retries): not the caller's fault.
    fn unavailable(&self, reason: impl Into<String>) -> Error {
        Error::InputUnavailable {
            input: self.to_string(),
            reason: reason.into(),
        }
    }

    fn too_large(&self, limit: u64) -> Error {
        self.bad(format!(
            "it is larger than the {} limit for an input image (pass a smaller image, or raise max_input_bytes)",
            human_bytes(limit)
        ))
    }
}

fn human_bytes(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes}-byte")
    }
}

async fn load(named: &Named<'_>, policy: &InputPolicy<'_>) -> Result<InputImage, Error> {
    let limit = policy.limit;
    let (bytes, origin) = match named.input {
        MediaInput::Path(path) => {
            if !policy.allow_local {
                return Err(named.bad("local files are not accepted here: pass an http(s) URL or a data: URL"));
            }
            (read_file(named, path, limit).await?, ImageOrigin::File(path.clone()))
        }
        MediaInput::Bytes(bytes) => (bytes.clone(), ImageOrigin::Bytes),
        MediaInput::DataUrl(url) => {
            // Refused before it is decoded into a second buffer.
            if u64::try_from(url.len() / 4 * 3).unwrap_or(u64::MAX) > limit {
                return Err(named.too_large(limit));
            }
            let data = data_url::DataUrl::process(url)
                .map_err(|_| named.bad("it is not a valid data: URL (expected data:image/png;base64,…)"))?;
            let (bytes, _) = data
                .decode_to_vec()
                .map_err(|_| named.bad("its base64 does not decode"))?;
            let origin = if named.chat {
                ImageOrigin::Chat(None)
            } else {
                ImageOrigin::DataUrl
            };
            (Bytes::from(bytes), origin)
        }
        MediaInput::Url(raw) => {
            let url = Url::parse(raw).map_err(|e| named.bad(format!("it is not a URL ({e})")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(named.bad(format!(
                    "only http(s) and data: URLs are taken, not {}: URLs",
                    url.scheme()
                )));
            }
            if let Some(origin) = policy.offline
                && url.origin() != origin.origin()
            {
                return Err(named.bad(
                    "offline (the emulator) no other host is reached: pass a file or a data: URL, or host the \
                     image on the emulator",
                ));
            }
            let bytes = policy
                .retry
                .run(
                    RetryStage::Download,
                    |_| download(&url, policy),
                    |notice, _| tracing::info!(input = %named, attempt = notice.attempt, "input download failed; trying again"),
                )
                .await
                .map_err(|failure| failure.into_error(named, limit))?;
            let origin = if named.chat {
                ImageOrigin::Chat(Some(url))
            } else {
                ImageOrigin::Url(url)
            };
            (bytes, origin)
        }
    };
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit {
        return Err(named.too_large(limit));
    }
    if bytes.is_empty() {
        return Err(named.bad("it is empty"));
    }
    let format = sniff(&bytes)
        .filter(|format| format.kind == MediaKind::Image)
        .ok_or_else(|| named.bad("it is not a PNG, JPEG, WebP or GIF image (its first bytes say otherwise)"))?;
    Ok(InputImage::new(bytes, format.mime, origin))
}

async fn read_file(named: &Named<'_>, path: &Path, limit: u64) -> Result<Bytes, Error> {
    let metadata = tokio::fs::metadata(path).await.map_err(|e| {
        named.bad(match e.kind() {
            std::io::ErrorKind::NotFound => "the file does not exist".to_owned(),
            _ => format!("the file cannot be read ({e})"),
        })
    })?;
    if !metadata.is_file() {
        return Err(named.bad("it is not a file"));
    }
    if metadata.len() > limit {
        return Err(named.too_large(limit));
    }
    tokio::fs::read(path)
        .await
        .map(Bytes::from)
        .map_err(|e| named.bad(format!("the file cannot be read ({e})")))
}

/// Why one download of an input failed.
enum DownloadFailure {
    /// The answer says the image is not there (a 404, a 403): the caller must fix the URL.
    Refused(String),
    /// Too large.
    TooLarge,
    /// A passing failure (a 5xx, a 429, a broken connection, a timeout).
    Passing { status: Option<u16>, reason: String },
}

impl DownloadFailure {
    fn into_error(self, named: &Named<'_>, limit: u64) -> Error {
        match self {
            DownloadFailure::Refused(reason) => named.bad(reason),
            DownloadFailure::TooLarge => named.too_large(limit),
            DownloadFailure::Passing { reason, .. } => named.unavailable(reason),
        }
    }
}

impl Retryable for DownloadFailure {
    fn transience(&self) -> Transience {
        match self {
            DownloadFailure::Passing { .. } => Transience::Transient { retry_after: None },
            _ => Transience::Final,
        }
    }

    fn retry_status(&self) -> Option<u16> {
        match self {
            DownloadFailure::Passing { status, .. } => *status,
            _ => None,
        }
    }

    fn retry_message(&self) -> String {
        match self {
            DownloadFailure::Refused(reason) | DownloadFailure::Passing { reason, .. } => reason.clone(),
            DownloadFailure::TooLarge => "too large".into(),
        }
    }
}

/// One plain GET without credentials, like media downloads, bounded by the request timeout and the size
/// limit as the bytes arrive.
async fn download(url: &Url, policy: &InputPolicy<'_>) -> Result<Bytes, DownloadFailure> {
    let passing = |e: reqwest::Error| DownloadFailure::Passing {
        status: None,
        reason: format!("it could not be downloaded: {}", http::describe(&e)),
    };
    let response = policy
        .http
        .get(url.clone())
        .timeout(policy.request_timeout)
        .send()
        .await
        .map_err(passing)?;
    let status = response.status();
    if !status.is_success() {
        let code = status.as_u16();
        let reason = format!("it answered HTTP {status} instead of an image");
        return Err(if matches!(code, 408 | 429) || status.is_server_error() {
            DownloadFailure::Passing {
                status: Some(code),
                reason,
            }
        } else {
            DownloadFailure::Refused(reason)
        });
    }
    let mut stream = response.bytes_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(passing)?;
        if u64::try_from(body.len() + chunk.len()).unwrap_or(u64::MAX) > policy.limit {
            return Err(DownloadFailure::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_told_apart_by_their_form() {
        assert_eq!(
            MediaInput::parse("https://x/cat.png"),
            MediaInput::url("https://x/cat.png")
        );
        assert_eq!(
            MediaInput::parse("HTTP://x/cat.png"),
            MediaInput::url("HTTP://x/cat.png")
        );
        assert!(matches!(
            MediaInput::parse("data:image/png;base64,AA"),
            MediaInput::DataUrl(_)
        ));
        assert_eq!(MediaInput::parse("cat.png"), MediaInput::path("cat.png"));
        let json = serde_json::to_string(&MediaInput::path("a/b.png")).unwrap();
        assert_eq!(json, r#""a/b.png""#);
        let back: MediaInput = serde_json::from_str(r#""https://x/y.jpg""#).unwrap();
        assert_eq!(back, MediaInput::url("https://x/y.jpg"));
        assert_eq!(format!("{:?}", MediaInput::bytes(vec![1u8, 2, 3])), "Bytes(3 bytes)");
    }

    fn policy(http: &reqwest::Client, limit: u64) -> InputPolicy<'_> {
        InputPolicy {
            http,
            limit,
            request_timeout: Duration::from_secs(5),
            retry: RetryPolicy::none(),
            allow_local: true,
            offline: None,
        }
    }

    async fn load(input: &MediaInput, _chat: bool, http: &reqwest::Client, limit: u64) -> Result<InputImage, Error> {
        load_all(std::slice::from_ref(input), false, &policy(http, limit))
            .await
            .map(|mut images| images.remove(0))
    }

    #[tokio::test]
    async fn bad_inputs_say_what_is_wrong() {
        let http = reqwest::Client::new();
        let dir = tempfile::tempdir().unwrap();
        let missing = MediaInput::path(dir.path().join("nope.png"));
        let err = load(&missing, false, &http, DEFAULT_MAX_INPUT_BYTES)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.png") && err.contains("does not exist"), "{err}");

        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not an image at all, just some text").unwrap();
        let err = load(&MediaInput::path(&text), false, &http, DEFAULT_MAX_INPUT_BYTES)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("notes.txt") && err.contains("not a PNG"), "{err}");

        let png = hf_media_sink::conformance::tiny_png();
        let err = load(&MediaInput::bytes(png.clone()), false, &http, 10)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("larger than"), "{err}");

        let err = load(
            &MediaInput::parse("ftp://example.invalid/x.png"),
            false,
            &http,
            DEFAULT_MAX_INPUT_BYTES,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("only http(s) and data: URLs"), "{err}");
        let err = load(
            &MediaInput::parse("data:image/png;base64,@@@"),
            false,
            &http,
            DEFAULT_MAX_INPUT_BYTES,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("base64 does not decode") && !err.contains("InvalidBase64"),
            "{err}"
        );
        let mut local_off = policy(&http, DEFAULT_MAX_INPUT_BYTES);
        local_off.allow_local = false;
        let err = load_all(&[MediaInput::path("/etc/passwd")], false, &local_off)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("local files are not accepted"), "{err}");
        let two = [
            MediaInput::bytes(png.clone()),
            MediaInput::path(dir.path().join("nope.png")),
        ];
        let err = load_all(&two, false, &policy(&http, DEFAULT_MAX_INPUT_BYTES))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("input image 2 ("), "{err}");
        let image = load(&MediaInput::bytes(png.clone()), false, &http, DEFAULT_MAX_INPUT_BYTES)
            .await
            .unwrap();
        assert_eq!((image.mime(), image.len()), ("image/png", png.len()));
        let record = input_record(&image);
        assert_eq!((record.source.as_str(), record.sha256.len()), ("bytes", 64));
    }
}
