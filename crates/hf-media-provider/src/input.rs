//! The input images of an image-to-image or image-to-video generation: read, checked and hashed once
//! per request by the caller, then shared (cheaply cloned) by every generation and every fallback, never
//! read or sent from disk again.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use url::Url;

/// Where an input image came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageOrigin {
    /// A local file.
    File(PathBuf),
    /// An `http(s)` URL: passed as it is to providers that take URLs.
    Url(Url),
    /// A `data:` URL.
    DataUrl,
    /// Bytes handed over in memory.
    Bytes,
    /// An `image_url` part of a chat message (its URL when it was an `http(s)` one).
    Chat(Option<Url>),
}

impl fmt::Display for ImageOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageOrigin::File(path) => write!(f, "{}", path.display()),
            ImageOrigin::Url(url) | ImageOrigin::Chat(Some(url)) => f.write_str(url.as_str()),
            ImageOrigin::DataUrl => f.write_str("data: URL"),
            ImageOrigin::Bytes => f.write_str("bytes"),
            ImageOrigin::Chat(None) => f.write_str("chat image (data: URL)"),
        }
    }
}

/// One input image: its bytes (sniffed and size-checked by whoever made it), MIME type, SHA-256 and
/// origin. Cheap to clone; `Debug` never shows the bytes.
#[derive(Clone)]
pub struct InputImage {
    inner: Arc<Inner>,
}

struct Inner {
    bytes: Bytes,
    mime: String,
    sha256: String,
    origin: ImageOrigin,
    /// The base64 and `data:` URL, made once and shared by every generation and fallback (a 20 MiB image
    /// is 27 MB of base64: not to be made again for each request body).
    base64: OnceLock<Arc<str>>,
    data_url: OnceLock<Arc<str>>,
}

impl fmt::Debug for InputImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputImage")
            .field("origin", &self.inner.origin)
            .field("mime", &self.inner.mime)
            .field("bytes", &self.inner.bytes.len())
            .field("sha256", &self.inner.sha256)
            .finish()
    }
}

impl PartialEq for InputImage {
    fn eq(&self, other: &Self) -> bool {
        self.inner.sha256 == other.inner.sha256 && self.inner.origin == other.inner.origin
    }
}

impl InputImage {
    /// An input image of `bytes` whose type is `mime` (the caller sniffed it), from `origin`.
    pub fn new(bytes: Bytes, mime: impl Into<String>, origin: ImageOrigin) -> Self {
        let sha256 = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        InputImage {
            inner: Arc::new(Inner {
                bytes,
                mime: mime.into(),
                sha256,
                origin,
                base64: OnceLock::new(),
                data_url: OnceLock::new(),
            }),
        }
    }

    /// The image's bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.inner.bytes
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.inner.bytes.len()
    }

    /// Whether it has no bytes (never true for an image the caller checked).
    pub fn is_empty(&self) -> bool {
        self.inner.bytes.is_empty()
    }

    /// Its MIME type (`image/png`, `image/jpeg`, `image/webp`, `image/gif`).
    pub fn mime(&self) -> &str {
        &self.inner.mime
    }

    /// The SHA-256 of its bytes, in hexadecimal.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// Where it came from.
    pub fn origin(&self) -> &ImageOrigin {
        &self.inner.origin
    }

    /// The caller's `http(s)` URL of it, if it came as one.
    pub fn url(&self) -> Option<&Url> {
        match &self.inner.origin {
            ImageOrigin::Url(url) | ImageOrigin::Chat(Some(url)) => Some(url),
            _ => None,
        }
    }

    /// Its bytes in standard base64, without a `data:` prefix (encoded once, then shared).
    pub fn base64(&self) -> String {
        self.base64_shared().to_string()
    }

    fn base64_shared(&self) -> &Arc<str> {
        self.inner.base64.get_or_init(|| {
            base64::engine::general_purpose::STANDARD
                .encode(&self.inner.bytes)
                .into()
        })
    }

    /// A `data:` URL of it, labelled with its real type (made once, then shared).
    pub fn data_url(&self) -> String {
        self.inner
            .data_url
            .get_or_init(|| format!("data:{};base64,{}", self.inner.mime, self.base64_shared()).into())
            .to_string()
    }

    /// What providers that take URLs are sent: the caller's `http(s)` URL as it is, else a `data:` URL.
    pub fn url_or_data_url(&self) -> String {
        match self.url() {
            Some(url) => url.to_string(),
            None => self.data_url(),
        }
    }

    /// A short file name for multipart uploads (`image.png`, …).
    pub fn file_name(&self) -> String {
        let extension = match self.inner.mime.as_str() {
            "image/jpeg" => "jpg",
            "image/webp" => "webp",
            "image/gif" => "gif",
            _ => "png",
        };
        format!("image.{extension}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pass_through_and_bytes_become_data_urls() {
        let bytes = Bytes::from_static(b"\x89PNG\r\n\x1a\nrest");
        let local = InputImage::new(bytes.clone(), "image/png", ImageOrigin::File("cat.png".into()));
        assert_eq!(
            local.url_or_data_url(),
            format!("data:image/png;base64,{}", local.base64())
        );
        assert_eq!(local.origin().to_string(), "cat.png");
        assert_eq!(local.sha256().len(), 64);
        assert_eq!(local.file_name(), "image.png");
        let url = Url::parse("https://example.com/cat.png").unwrap();
        let remote = InputImage::new(bytes, "image/png", ImageOrigin::Url(url.clone()));
        assert_eq!(remote.url_or_data_url(), url.as_str());
        assert!(remote.data_url().starts_with("data:image/png;base64,"));
        assert_eq!(remote.sha256(), local.sha256(), "same bytes, same hash");
        let shown = format!("{local:?}");
        assert!(!shown.contains("rest") && shown.contains("bytes: 12"), "{shown}");
    }
}
