//! The input images of a request: what the caller names ([`MediaInput`]: a path, an `http(s)` URL, a
//! `data:` URL, or bytes) and how it is read: once per request, before anything is sent, sniffed from its
//! bytes and size-checked, so that a missing file, a file that is not an image, an image over the limit or
//! a URL that does not answer is a clear error and no provider is paid for a doomed job.

use std::fmt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use hf_media_provider::{ImageOrigin, InputImage, http};
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
        if lower.starts_with("http://") || lower.starts_with("https://") {
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

/// Reads every input once: checked, sniffed and hashed. `chat` says whether they came from a chat's
/// image parts (recorded as such).
pub(crate) async fn load_all(
    inputs: &[MediaInput],
    chat: bool,
    http_client: &reqwest::Client,
    limit: u64,
) -> Result<Vec<InputImage>, Error> {
    let mut images = Vec::with_capacity(inputs.len());
    for input in inputs {
        images.push(load(input, chat, http_client, limit).await?);
    }
    Ok(images)
}

fn bad(input: &MediaInput, reason: impl Into<String>) -> Error {
    Error::Input {
        input: input.to_string(),
        reason: reason.into(),
    }
}

async fn load(input: &MediaInput, chat: bool, http_client: &reqwest::Client, limit: u64) -> Result<InputImage, Error> {
    let (bytes, origin) = match input {
        MediaInput::Path(path) => (read_file(input, path, limit).await?, ImageOrigin::File(path.clone())),
        MediaInput::Bytes(bytes) => (bytes.clone(), ImageOrigin::Bytes),
        MediaInput::DataUrl(url) => {
            let data = data_url::DataUrl::process(url)
                .map_err(|e| bad(input, format!("it is not a valid data: URL ({e:?})")))?;
            let (bytes, _) = data
                .decode_to_vec()
                .map_err(|e| bad(input, format!("its base64 does not decode ({e:?})")))?;
            let origin = if chat {
                ImageOrigin::Chat(None)
            } else {
                ImageOrigin::DataUrl
            };
            (Bytes::from(bytes), origin)
        }
        MediaInput::Url(raw) => {
            let url = Url::parse(raw).map_err(|e| bad(input, format!("it is not a URL ({e})")))?;
            let bytes = download(input, &url, http_client, limit).await?;
            let origin = if chat {
                ImageOrigin::Chat(Some(url))
            } else {
                ImageOrigin::Url(url)
            };
            (bytes, origin)
        }
    };
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit {
        return Err(too_large(input, limit));
    }
    if bytes.is_empty() {
        return Err(bad(input, "it is empty"));
    }
    let format = sniff(&bytes)
        .filter(|format| format.kind == MediaKind::Image)
        .ok_or_else(|| {
            bad(
                input,
                "it is not a PNG, JPEG, WebP or GIF image (its first bytes say otherwise)",
            )
        })?;
    Ok(InputImage::new(bytes, format.mime, origin))
}

fn too_large(input: &MediaInput, limit: u64) -> Error {
    bad(
        input,
        format!(
            "it is larger than the {} MiB limit for input images (raise it with max_input_bytes, or pass a smaller image)",
            limit / (1024 * 1024)
        ),
    )
}

async fn read_file(input: &MediaInput, path: &Path, limit: u64) -> Result<Bytes, Error> {
    let metadata = tokio::fs::metadata(path).await.map_err(|e| {
        bad(
            input,
            match e.kind() {
                std::io::ErrorKind::NotFound => "the file does not exist".to_owned(),
                _ => format!("the file cannot be read ({e})"),
            },
        )
    })?;
    if !metadata.is_file() {
        return Err(bad(input, "it is not a file"));
    }
    if metadata.len() > limit {
        return Err(too_large(input, limit));
    }
    tokio::fs::read(path)
        .await
        .map(Bytes::from)
        .map_err(|e| bad(input, format!("the file cannot be read ({e})")))
}

async fn download(input: &MediaInput, url: &Url, http_client: &reqwest::Client, limit: u64) -> Result<Bytes, Error> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(input, "only http(s) URLs are fetched"));
    }
    // A plain GET without credentials, like media downloads.
    let response = http_client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| bad(input, format!("it could not be downloaded: {}", http::describe(&e))))?;
    let status = response.status();
    if !status.is_success() {
        return Err(bad(input, format!("it answered HTTP {status} instead of an image")));
    }
    let mut stream = response.bytes_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| bad(input, format!("the download broke: {}", http::describe(&e))))?;
        if u64::try_from(body.len() + chunk.len()).unwrap_or(u64::MAX) > limit {
            return Err(too_large(input, limit));
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

        let image = load(&MediaInput::bytes(png.clone()), false, &http, DEFAULT_MAX_INPUT_BYTES)
            .await
            .unwrap();
        assert_eq!((image.mime(), image.len()), ("image/png", png.len()));
        let record = input_record(&image);
        assert_eq!((record.source.as_str(), record.sha256.len()), ("bytes", 64));
    }
}
