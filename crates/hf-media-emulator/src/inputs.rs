//! Input images of image-to-image and image-to-video requests: where they come from and how they decode.
//!
//! A request names an image as a `data:` URL (`data:image/png;base64,…`; the label is not trusted, the
//! format is sniffed from the bytes), as bare base64, or as an `http(s)://` URL. The emulator never goes
//! to the internet: it only "fetches" its own URLs (`/_emulator/files/{id}`, a media it rendered, and
//! `/_emulator/inputs/{name}`, an image a test hosted), on the host the request came to; any other host
//! is the provider's error. hf-inference also takes the raw image as the whole body.

use std::sync::Arc;

use axum::http::HeaderMap;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;

use crate::media;
use crate::state::State;

/// Where the emulator hosts input images for tests.
pub(crate) const INPUTS_ROUTE: &str = "/_emulator/inputs/";
/// Where the emulator serves the media it rendered.
const FILES_ROUTE: &str = "/_emulator/files/";

/// One image named by a request: the field it came in (`image_urls[1]`, `input.image`) and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageRef {
    pub field: String,
    pub value: String,
}

/// Why an input image could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InputError {
    /// A `data:` URL that is not base64, or whose label is not an image type.
    UnsupportedDataUrl(String),
    /// A value that is not a string (or a list of strings).
    NotAString(String),
    /// Neither a URL, a `data:` URL nor base64.
    NotAReference(String),
    /// An http(s) URL on a host other than the emulator's.
    ForeignUrl(String),
    /// One of the emulator's URLs that names nothing.
    NotFound(String),
    /// Bytes that are not an image the emulator decodes.
    Undecodable(String),
}

impl InputError {
    /// The message, for the provider's error answer.
    pub fn message(&self) -> String {
        match self {
            InputError::UnsupportedDataUrl(why) => format!("Unsupported data URL: {why}"),
            InputError::NotAString(field) => format!("{field} must be a string (an image URL, a data URL or base64)"),
            InputError::NotAReference(why) => format!("not an image URL, data URL or base64: {why}"),
            InputError::ForeignUrl(url) => format!(
                "Failed to download the image from {url}: the emulator is offline and fetches only its own URLs \
                 (/_emulator/files/… and /_emulator/inputs/…); send a data URL or host the image on the emulator"
            ),
            InputError::NotFound(url) => format!("Failed to download the image from {url}: 404 Not Found"),
            InputError::Undecodable(why) => format!("cannot identify the image: {why}"),
        }
    }

    /// Whether the image's bytes are at fault (rather than how it was referenced).
    pub fn is_download(&self) -> bool {
        matches!(self, InputError::ForeignUrl(_) | InputError::NotFound(_))
    }
}

/// The image references under `fields` of `body`, in that order: strings, or lists of strings (`{field}[i]`).
/// Repeated values (clients send the same image under several keys) are kept once; `null` and missing
/// fields are skipped.
pub(crate) fn image_refs(body: &Value, fields: &[&str], prefix: &str) -> Result<Vec<ImageRef>, InputError> {
    let mut refs: Vec<ImageRef> = Vec::new();
    let mut push = |field: String, value: &Value| match value {
        Value::String(s) => {
            if !refs.iter().any(|r| &r.value == s) {
                refs.push(ImageRef {
                    field,
                    value: s.clone(),
                });
            }
            Ok(())
        }
        _ => Err(InputError::NotAString(field)),
    };
    for field in fields {
        match body.get(*field) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    push(format!("{prefix}{field}[{i}]"), item)?;
                }
            }
            Some(value) => push(format!("{prefix}{field}"), value)?,
        }
    }
    Ok(refs)
}

/// Base64 as clients write it: standard or URL-safe alphabet, padded or not, possibly wrapped.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return None;
    }
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(&compact).ok())
}

/// The bytes of a `data:` URL (after `data:`).
fn data_url(rest: &str) -> Result<Vec<u8>, InputError> {
    let Some((meta, payload)) = rest.split_once(',') else {
        return Err(InputError::UnsupportedDataUrl("no comma".into()));
    };
    let mut parts = meta.split(';');
    let label = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let base64 = parts.any(|p| p.trim().eq_ignore_ascii_case("base64"));
    if !label.is_empty() && !label.starts_with("image/") && label != "application/octet-stream" {
        return Err(InputError::UnsupportedDataUrl(format!("{label} is not an image type")));
    }
    if !base64 {
        return Err(InputError::UnsupportedDataUrl(
            "only base64 data URLs are accepted".into(),
        ));
    }
    decode_base64(payload).ok_or_else(|| InputError::UnsupportedDataUrl("the payload is not valid base64".into()))
}

/// Host and port of an authority, lower-cased, the port defaulting to 80.
fn host_port(authority: &str) -> (String, String) {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let authority = authority.to_ascii_lowercase();
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        let port = after.strip_prefix(':').unwrap_or("80");
        return (host.to_owned(), port.to_owned());
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.to_owned()),
        None => (authority, "80".to_owned()),
    }
}

/// Whether `authority` (of an image URL) is the emulator itself, as reached by this request (`host`): the
/// same authority, or two loopback names with the same port.
fn is_own(authority: &str, host: &str) -> bool {
    let ((a_host, a_port), (h_host, h_port)) = (host_port(authority), host_port(host));
    let loopback = |h: &str| matches!(h, "localhost" | "127.0.0.1" | "::1");
    a_port == h_port && (a_host == h_host || (loopback(&a_host) && loopback(&h_host)))
}

/// The bytes at one of the emulator's own URLs.
fn own_url(state: &State, headers: &HeaderMap, url: &str, rest: &str) -> Result<Bytes, InputError> {
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !is_own(authority, host) {
        return Err(InputError::ForeignUrl(url.to_owned()));
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    state.count("input fetch");
    let found = if let Some(id) = path.strip_prefix(FILES_ROUTE) {
        state.file(id).map(|file| file.bytes)
    } else if let Some(name) = path.strip_prefix(INPUTS_ROUTE) {
        state.input(name).map(|(bytes, _)| bytes)
    } else {
        None
    };
    found.ok_or_else(|| InputError::NotFound(url.to_owned()))
}

/// The bytes an image reference names.
pub(crate) fn resolve(state: &State, headers: &HeaderMap, value: &str) -> Result<Bytes, InputError> {
    let trimmed = value.trim();
    let lower: String = trimmed.chars().take(8).collect::<String>().to_ascii_lowercase();
    if lower.starts_with("data:") {
        return data_url(&trimmed[5..]).map(Bytes::from);
    }
    for scheme in ["http://", "https://"] {
        if lower.starts_with(scheme) {
            return own_url(state, headers, trimmed, &trimmed[scheme.len()..]);
        }
    }
    if trimmed.is_empty() {
        return Err(InputError::NotAReference("an empty string".into()));
    }
    decode_base64(trimmed)
        .map(Bytes::from)
        .ok_or_else(|| InputError::NotAReference("it is not valid base64".into()))
}

/// Decodes images off the async threads.
pub(crate) async fn decode_all(images: Vec<Bytes>) -> Result<Vec<image::RgbImage>, (usize, InputError)> {
    tokio::task::spawn_blocking(move || {
        images
            .iter()
            .enumerate()
            .map(|(i, bytes)| media::decode_input(bytes).map_err(|e| (i, InputError::Undecodable(media_message(e)))))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .unwrap_or_else(|e| Err((0, InputError::Undecodable(format!("the decoder crashed: {e}")))))
}

fn media_message(e: crate::EmulatorError) -> String {
    match e {
        crate::EmulatorError::Media(message) => message,
        other => other.to_string(),
    }
}

/// Resolves and decodes every reference; on failure, the field at fault and why.
pub(crate) async fn load(
    state: &State,
    headers: &HeaderMap,
    refs: &[ImageRef],
) -> Result<Arc<Vec<image::RgbImage>>, (String, InputError)> {
    if refs.len() > media::MAX_INPUTS {
        let field = refs.get(media::MAX_INPUTS).map(|r| r.field.clone()).unwrap_or_default();
        return Err((
            field,
            InputError::Undecodable(format!("at most {} input images", media::MAX_INPUTS)),
        ));
    }
    let mut bytes = Vec::with_capacity(refs.len());
    for r in refs {
        bytes.push(resolve(state, headers, &r.value).map_err(|e| (r.field.clone(), e))?);
    }
    decode_all(bytes).await.map(Arc::new).map_err(|(i, e)| {
        let field = refs.get(i).map(|r| r.field.clone()).unwrap_or_default();
        (field, e)
    })
}

/// Whether `name` may name a hosted input: 1 to 128 characters of `A-Z a-z 0-9 . _ -`, not only dots.
pub(crate) fn valid_input_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name.bytes().any(|b| b != b'.')
}

/// The MIME type of image bytes, sniffed; `application/octet-stream` when not an image.
pub(crate) fn sniff_mime(bytes: &[u8]) -> &'static str {
    match image::guess_format(bytes) {
        Ok(image::ImageFormat::Png) => "image/png",
        Ok(image::ImageFormat::Jpeg) => "image/jpeg",
        Ok(image::ImageFormat::WebP) => "image/webp",
        Ok(image::ImageFormat::Gif) => "image/gif",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;

    #[test]
    fn references_are_collected_in_order_without_repeats() {
        let body = json!({"image_urls": ["a", "b"], "image_url": "a", "other": 1});
        let refs = image_refs(&body, &["image_urls", "image_url"], "").unwrap();
        let values: Vec<(&str, &str)> = refs.iter().map(|r| (r.field.as_str(), r.value.as_str())).collect();
        assert_eq!(values, [("image_urls[0]", "a"), ("image_urls[1]", "b")]);
        let refs = image_refs(&json!({"image": "x", "images": null}), &["images", "image"], "input.").unwrap();
        assert_eq!(refs[0].field, "input.image");
        assert_eq!(
            image_refs(&json!({"image": 3}), &["image"], "").unwrap_err(),
            InputError::NotAString("image".into())
        );
        assert!(image_refs(&json!({}), &["image"], "").unwrap().is_empty());
    }

    #[test]
    fn data_urls_base64_and_urls_resolve() {
        let state = State::default();
        let mut headers = HeaderMap::new();
        headers.insert(axum::http::header::HOST, HeaderValue::from_static("127.0.0.1:4000"));
        assert_eq!(
            &resolve(&state, &headers, "data:image/png;base64,AAEC").unwrap()[..],
            [0, 1, 2]
        );
        assert_eq!(&resolve(&state, &headers, "data:;base64,AAEC").unwrap()[..], [0, 1, 2]);
        assert_eq!(&resolve(&state, &headers, "AAEC").unwrap()[..], [0, 1, 2]);
        assert_eq!(&resolve(&state, &headers, "AAE").unwrap()[..], [0, 1]);
        assert!(matches!(
            resolve(&state, &headers, "data:text/plain;base64,AAEC"),
            Err(InputError::UnsupportedDataUrl(_))
        ));
        assert!(matches!(
            resolve(&state, &headers, "data:image/png,abc"),
            Err(InputError::UnsupportedDataUrl(_))
        ));
        assert!(matches!(
            resolve(&state, &headers, "not base64!"),
            Err(InputError::NotAReference(_))
        ));
        assert!(matches!(
            resolve(&state, &headers, ""),
            Err(InputError::NotAReference(_))
        ));
        assert!(matches!(
            resolve(&state, &headers, "https://example.com/cat.png"),
            Err(InputError::ForeignUrl(_))
        ));
        // Another port of the same machine is another host.
        assert!(matches!(
            resolve(&state, &headers, "http://127.0.0.1:4001/_emulator/inputs/cat.png"),
            Err(InputError::ForeignUrl(_))
        ));
        assert!(matches!(
            resolve(&state, &headers, "http://localhost:4000/_emulator/inputs/cat.png"),
            Err(InputError::NotFound(_))
        ));
        state.host_input("cat.png", Bytes::from_static(b"cat"), "image/png".into());
        for url in [
            "http://localhost:4000/_emulator/inputs/cat.png",
            "HTTP://127.0.0.1:4000/_emulator/inputs/cat.png?x=1",
            "http://[::1]:4000/_emulator/inputs/cat.png",
        ] {
            assert_eq!(&resolve(&state, &headers, url).unwrap()[..], b"cat", "{url}");
        }
        assert!(matches!(
            resolve(&state, &headers, "http://127.0.0.1:4000/api/models"),
            Err(InputError::NotFound(_))
        ));
        let id = state.store_file("fal-ai", Bytes::from_static(b"out"), "image/png");
        let url = format!("http://127.0.0.1:4000/_emulator/files/{id}");
        assert_eq!(&resolve(&state, &headers, &url).unwrap()[..], b"out");
    }

    #[test]
    fn hosts_and_names() {
        assert_eq!(host_port("LocalHost"), ("localhost".into(), "80".into()));
        assert_eq!(host_port("user@[::1]:8080"), ("::1".into(), "8080".into()));
        assert!(is_own("localhost:80", "127.0.0.1"));
        assert!(!is_own("example.com:80", "127.0.0.1:80"));
        assert!(valid_input_name("cat-1.png"));
        for bad in ["", "..", "a/b", "a b", &"x".repeat(129)] {
            assert!(!valid_input_name(bad), "{bad}");
        }
        assert_eq!(sniff_mime(b"\x89PNG\r\n\x1a\n...."), "image/png");
        assert_eq!(sniff_mime(b"hello"), "application/octet-stream");
        assert!(InputError::ForeignUrl("u".into()).is_download());
        assert!(!InputError::Undecodable("u".into()).is_download());
    }
}
