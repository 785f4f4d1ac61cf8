//! Scrubbing configured secrets out of every text that comes from the network.
//!
//! A provider may echo the request's `Authorization` header (or its key) in an error body, a status
//! answer or a result. Every such text passes through [`Secrets::scrub`] before it reaches an error, an
//! event, a log line or a sidecar.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::ProviderError;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not scrubbed (they would match ordinary text); no real token or key is
/// this short.
const MIN_SECRET_LEN: usize = 4;

/// A text that was cut (an error body kept to its first 500 characters, a preview) may end in the middle
/// of a secret: any run of at least this many characters of a secret's start is scrubbed too.
const MIN_PREFIX_LEN: usize = 10;

/// The configured secrets (the HF token, every provider key, server API keys). Cheap to clone; `Debug`
/// shows only how many there are.
#[derive(Clone, Default)]
pub struct Secrets {
    secrets: Arc<Vec<SecretString>>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} redacted)", self.secrets.len())
    }
}

impl Secrets {
    /// Nothing to scrub.
    pub fn none() -> Self {
        Secrets::default()
    }

    /// The given secrets (short or empty ones are ignored).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a SecretString>) -> Self {
        let mut kept: Vec<SecretString> = secrets
            .into_iter()
            .filter(|s| s.expose_secret().trim().len() >= MIN_SECRET_LEN)
            .cloned()
            .collect();
        // Longest first, so a secret that contains another is replaced whole.
        kept.sort_by_key(|s| std::cmp::Reverse(s.expose_secret().len()));
        Secrets {
            secrets: Arc::new(kept),
        }
    }

    /// Adds `secret`.
    pub fn with(&self, secret: &SecretString) -> Self {
        Secrets::new(self.secrets.iter().chain(std::iter::once(secret)))
    }

    /// Whether there is nothing to scrub.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every secret replaced by [`REDACTED`], and every run of at least ten characters of a
    /// secret's start (what is left of a secret in a text cut short).
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in self.secrets.iter() {
            let secret = secret.expose_secret().trim();
            if out.contains(secret) {
                out = Cow::Owned(out.replace(secret, REDACTED));
            }
            if let Some(cleaned) = scrub_prefixes(&out, secret) {
                out = Cow::Owned(cleaned);
            }
        }
        out
    }

    /// Scrubs a string in place.
    pub fn scrub_string(&self, text: &mut String) {
        if let Cow::Owned(clean) = self.scrub(text) {
            *text = clean;
        }
    }

    /// Scrubs every string (keys included) of a JSON value.
    pub fn scrub_json(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) => self.scrub_string(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_json(v)),
            Value::Object(map) => {
                let dirty = map.keys().any(|k| matches!(self.scrub(k), Cow::Owned(_)));
                if dirty {
                    *map = std::mem::take(map)
                        .into_iter()
                        .map(|(k, v)| (self.scrub(&k).into_owned(), v))
                        .collect();
                }
                map.values_mut().for_each(|v| self.scrub_json(v));
            }
            _ => {}
        }
    }

    /// The error with every text it carries scrubbed.
    pub fn scrub_error(&self, error: ProviderError) -> ProviderError {
        if self.is_empty() {
            return error;
        }
        error.map_texts(|text| self.scrub_string(text))
    }
}

/// `text` with every run that starts like `secret` (at least [`MIN_PREFIX_LEN`] characters of it)
/// replaced, or `None` when there is none.
fn scrub_prefixes(text: &str, secret: &str) -> Option<String> {
    let head: String = secret.chars().take(MIN_PREFIX_LEN).collect();
    if head.chars().count() < MIN_PREFIX_LEN || !text.contains(&head) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&head) {
        out.push_str(&rest[..at]);
        let candidate = &rest[at..];
        let matched: usize = candidate
            .chars()
            .zip(secret.chars())
            .take_while(|(a, b)| a == b)
            .map(|(a, _)| a.len_utf8())
            .sum();
        out.push_str(REDACTED);
        rest = &candidate[matched..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn secrets() -> Secrets {
        let token = SecretString::from("hf_canary_token_123".to_owned());
        let key = SecretString::from("fal-key-456".to_owned());
        let short = SecretString::from("ab".to_owned());
        Secrets::new([&token, &key, &short])
    }

    #[test]
    fn every_configured_secret_is_replaced_and_short_ones_are_ignored() {
        let s = secrets();
        assert_eq!(
            s.scrub("Invalid credentials: Bearer hf_canary_token_123 / Key fal-key-456 (ab)"),
            "Invalid credentials: Bearer [redacted] / Key [redacted] (ab)"
        );
        assert!(matches!(s.scrub("nothing here"), Cow::Borrowed(_)));
        assert_eq!(format!("{s:?}"), "Secrets(2 redacted)");
    }

    #[test]
    fn a_secret_cut_short_is_scrubbed_too() {
        let s = secrets();
        // An error body kept to its first characters, ending inside the token.
        assert_eq!(s.scrub("echo: Bearer hf_canary_tok"), "echo: Bearer [redacted]");
        assert_eq!(
            s.scrub("starts with \"Bearer hf_canary_to\""),
            "starts with \"Bearer [redacted]\""
        );
        // Nine characters of it are not enough to tell it from ordinary text.
        assert_eq!(s.scrub("hf_canary"), "hf_canary");
    }

    #[test]
    fn json_strings_and_keys_are_scrubbed() {
        let mut value = json!({"headers": {"authorization": "Bearer hf_canary_token_123"},
                               "hf_canary_token_123": [1, "fal-key-456"]});
        secrets().scrub_json(&mut value);
        let text = value.to_string();
        assert!(!text.contains("canary") && !text.contains("fal-key"), "{text}");
        assert_eq!(value["headers"]["authorization"], "Bearer [redacted]");
    }

    #[test]
    fn errors_are_scrubbed_in_every_field() {
        let error = ProviderError::JobFailed {
            provider: "fal-ai".into(),
            job_id: "j".into(),
            message: "echo: Bearer hf_canary_token_123".into(),
        };
        let clean = secrets().scrub_error(error);
        assert!(!clean.to_string().contains("canary"), "{clean}");
    }
}
