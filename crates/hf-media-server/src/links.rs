//! Where clients reach the media: absolute URLs built on `--public-url`, else the request's
//! `X-Forwarded-Proto`/`X-Forwarded-Host`, else its `Host`; unguessable media names; and, with
//! `--signed-media`, links that carry an expiring HMAC-SHA256 signature.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use url::Url;

use crate::{ServerConfig, ServerError};

/// How media links are made and checked.
pub(crate) struct MediaLinks {
    public: Option<String>,
    signing: Option<(Vec<u8>, Duration)>,
}

impl std::fmt::Debug for MediaLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaLinks")
            .field("public", &self.public)
            .field("signed", &self.signing.as_ref().map(|(_, lifetime)| lifetime))
            .finish()
    }
}

/// `bytes` random bytes from the operating system, in hex.
pub(crate) fn random_hex(bytes: usize) -> Result<String, ServerError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer)
        .map_err(|e| ServerError::Internal(format!("the operating system's random source failed: {e}")))?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

/// Unix seconds now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A host (and port) as it may appear in a URL: letters, digits, `.`, `-`, `:`, `[`, `]`.
fn plausible_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'))
}

impl MediaLinks {
    pub fn new(config: &ServerConfig) -> Self {
        let public = config
            .public_url
            .as_ref()
            .map(|url: &Url| url.as_str().trim_end_matches('/').to_owned());
        let signing = config.signed_media.map(|lifetime| {
            let key = match &config.signing_key {
                Some(key) => key.expose().as_bytes().to_vec(),
                None => {
                    let mut key = vec![0u8; 32];
                    if getrandom::fill(&mut key).is_err() {
                        // No random source: a key from the clock and the process is still unknown to clients.
                        key = format!("{:?}{}", SystemTime::now(), std::process::id()).into_bytes();
                    }
                    key
                }
            };
            (key, lifetime)
        });
        MediaLinks { public, signing }
    }

    /// The base URL of the server as the client of `headers` reaches it (no trailing `/`).
    pub fn base(&self, headers: &HeaderMap) -> String {
        if let Some(public) = &self.public {
            return public.clone();
        }
        let first = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let proto = first("x-forwarded-proto")
            .filter(|p| p.eq_ignore_ascii_case("https") || p.eq_ignore_ascii_case("http"))
            .map_or("http".to_owned(), str::to_ascii_lowercase);
        let host = first("x-forwarded-host")
            .or_else(|| first(header::HOST.as_str()))
            .filter(|h| plausible_host(h))
            .unwrap_or("localhost");
        format!("{proto}://{host}")
    }

    /// The absolute URL of media `name` (a file name in the output folder).
    pub fn url(&self, base: &str, name: &str) -> String {
        let mut url = format!("{base}/media/{name}");
        if let Some((key, lifetime)) = &self.signing {
            let expires = unix_now() + lifetime.as_secs();
            url.push_str(&format!("?expires={expires}&sig={}", signature(key, name, expires)));
        }
        url
    }

    /// Whether a request for media `name` with these query values may be served.
    pub fn allows(&self, name: &str, expires: Option<&str>, sig: Option<&str>) -> bool {
        let Some((key, _)) = &self.signing else {
            return true;
        };
        let (Some(expires), Some(sig)) = (expires.and_then(|e| e.parse::<u64>().ok()), sig) else {
            return false;
        };
        if expires < unix_now() {
            return false;
        }
        let Ok(given) = hex_bytes(sig) else { return false };
        // `verify_slice` compares in constant time.
        mac(key, name, expires).verify_slice(&given).is_ok()
    }
}

fn mac(key: &[u8], name: &str, expires: u64) -> Hmac<Sha256> {
    // HMAC takes a key of any length (a long one is hashed first), so this never fails; the empty key it
    // would fall back to is never used for a configured one.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .or_else(|_| <Hmac<Sha256> as KeyInit>::new_from_slice(&[0u8; 32]))
        .unwrap_or_else(|_| unreachable!("HMAC-SHA256 takes keys of any length"));
    mac.update(name.as_bytes());
    mac.update(b"\n");
    mac.update(expires.to_string().as_bytes());
    mac
}

fn signature(key: &[u8], name: &str, expires: u64) -> String {
    mac(key, name, expires)
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hex_bytes(text: &str) -> Result<Vec<u8>, ()> {
    if text.len() % 2 != 0 || text.len() > 128 {
        return Err(());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2).ok_or(())?, 16).map_err(|_| ()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn the_base_follows_public_url_then_forwarded_then_host() {
        let mut config = ServerConfig::new("out");
        let links = MediaLinks::new(&config);
        assert_eq!(
            links.base(&headers(&[("host", "127.0.0.1:8787")])),
            "http://127.0.0.1:8787"
        );
        assert_eq!(
            links.base(&headers(&[
                ("host", "10.0.0.5:8787"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "media.example.com, proxy.internal")
            ])),
            "https://media.example.com"
        );
        assert_eq!(
            links.base(&headers(&[
                ("host", "evil.example/path?x"),
                ("x-forwarded-proto", "javascript")
            ])),
            "http://localhost",
            "a host that cannot be one is not echoed"
        );
        config.public_url = Some(Url::parse("https://media.example.com/hf/").unwrap());
        let links = MediaLinks::new(&config);
        assert_eq!(links.base(&headers(&[("host", "x")])), "https://media.example.com/hf");
        assert_eq!(links.url("https://m", "a.png"), "https://m/media/a.png");
    }

    #[test]
    fn signed_links_expire_and_cannot_be_moved_to_another_name() {
        let mut config = ServerConfig::new("out");
        config.signed_media = Some(Duration::from_secs(60));
        let links = MediaLinks::new(&config);
        let url = Url::parse(&links.url("http://h", "a.png")).unwrap();
        let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        let (expires, sig) = (
            query.get("expires").map(String::as_str),
            query.get("sig").map(String::as_str),
        );
        assert!(links.allows("a.png", expires, sig));
        assert!(!links.allows("b.png", expires, sig), "a signature is for one name");
        assert!(!links.allows("a.png", Some("1"), sig), "an old or changed expiry fails");
        assert!(!links.allows("a.png", expires, Some("00")));
        assert!(!links.allows("a.png", None, None));
        let other = MediaLinks::new(&config);
        assert!(
            !other.allows("a.png", expires, sig),
            "another random key signs differently"
        );
        assert!(MediaLinks::new(&ServerConfig::new("out")).allows("a.png", None, None));
    }

    #[test]
    fn random_names_are_long_and_distinct() {
        let a = random_hex(16).unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_hex(16).unwrap());
    }
}
