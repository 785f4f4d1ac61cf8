//! Property tests (issue 6's "fuzzing") of what the sink reads from untrusted input: media sniffing on
//! arbitrary bytes, file names made from arbitrary prompts (no path traversal, no reserved names), and
//! media keys from arbitrary strings (refused, or a safe relative path).
//!
//! Cases per property: proptest's default (256), or `PROPTEST_CASES`; `cargo xtask fuzz` runs many more.
#![allow(clippy::unwrap_used)]

use std::path::{Component, Path};

use hf_media_sink::{
    MAX_KEY_LEN, MAX_KEY_SEGMENT_LEN, MAX_KEY_SEGMENTS, MAX_SLUG_LEN, MediaKey, MediaKind, SinkError, media_file_stem,
    prompt_slug, sniff,
};
use proptest::prelude::*;

/// Magic numbers, so that arbitrary heads often start like real media.
const MAGICS: &[&[u8]] = &[
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"RIFF\0\0\0\0WEBP",
    b"GIF89a",
    b"\0\0\0\x18ftypmp42",
    b"\0\0\0\x20ftypisom",
    b"\x1a\x45\xdf\xa3",
    b"<!DOCTYPE html>",
    b"{\"error\":",
];

fn head() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..128),
        (prop::sample::select(MAGICS), prop::collection::vec(any::<u8>(), 0..96)).prop_map(|(magic, rest)| {
            let mut head = magic.to_vec();
            head.extend(rest);
            head
        }),
        // A magic number cut short.
        (prop::sample::select(MAGICS), any::<prop::sample::Index>())
            .prop_map(|(magic, cut)| magic[..cut.index(magic.len() + 1)].to_vec()),
    ]
}

fn prompt() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,80}",
        ".{0,80}",
        "[./\\\\ a-zA-Z0-9-]{0,60}",
        prop::sample::select(&["con", "NUL", "Com1", "lpt9.txt", "..", "../../etc/passwd", "-", "", "é"][..])
            .prop_map(str::to_owned),
        "[a-z ]{30,200}",
    ]
}

fn check_slug(slug: &str) -> Result<(), TestCaseError> {
    let body = slug.strip_prefix("media-").unwrap_or(slug);
    prop_assert!(!body.is_empty() && body.len() <= MAX_SLUG_LEN, "{:?}", slug);
    prop_assert!(
        slug.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "{:?}",
        slug
    );
    prop_assert!(!slug.starts_with('-') && !slug.ends_with('-'), "{:?}", slug);
    prop_assert!(!slug.contains("--"), "{:?}", slug);
    prop_assert!(
        !slug.contains("..") && !slug.contains('/') && !slug.contains('\\'),
        "{:?}",
        slug
    );
    Ok(())
}

/// Strings that are often nearly keys: path-like text with traversal, hidden names, odd characters,
/// long segments.
fn key_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        "[a-zA-Z0-9._/\\\\ :-]{0,60}",
        prop::collection::vec(
            prop_oneof!["[a-z0-9_-]{1,20}", "\\.{1,2}", "\\.[a-z]{1,5}", "", "[a-z]{120,140}"],
            1..11
        )
        .prop_map(|segments| segments.join("/")),
        prop::sample::select(&["", "/", "a//b", "../x", "./x", "x/..", "C:\\x", "\\\\server\\x", "a/b/"][..])
            .prop_map(str::to_owned),
    ]
}

/// Valid keys: 1 to 8 segments of `[A-Za-z0-9._-]`, not starting with `.`.
fn valid_key() -> impl Strategy<Value = String> {
    prop::collection::vec("[A-Za-z0-9_-][A-Za-z0-9._-]{0,40}", 1..=MAX_KEY_SEGMENTS).prop_map(|s| s.join("/"))
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// Any bytes: a known format with a consistent MIME type and extension, or none; never a panic.
    #[test]
    fn sniff_never_panics(head in head()) {
        if let Some(format) = sniff(&head) {
            prop_assert!(!format.extension.is_empty());
            prop_assert!(format.extension.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
            let prefix = match format.kind {
                MediaKind::Image => "image/",
                MediaKind::Video => "video/",
            };
            prop_assert!(format.mime.starts_with(prefix), "{:?}", format);
            // Sniffing only looks at the head: more bytes after a recognised head never change the answer.
            let mut longer = head.clone();
            longer.extend_from_slice(&[0u8; 16]);
            prop_assert_eq!(sniff(&longer).map(|f| f.extension), Some(format.extension));
        }
    }

    /// Any prompt: a slug of `[a-z0-9-]`, 1 to 40 characters (with a possible `media-` prefix), no `..`,
    /// no `/`, no leading or trailing `-`, never a reserved Windows device name.
    #[test]
    fn slugs_are_safe_file_names(prompt in prompt()) {
        let slug = prompt_slug(&prompt);
        check_slug(&slug)?;
        let reserved = ["con", "prn", "aux", "nul"];
        prop_assert!(!reserved.contains(&slug.as_str()));
        prop_assert!(!(slug.len() == 4 && (slug.starts_with("com") || slug.starts_with("lpt")) && slug.as_bytes()[3].is_ascii_digit()));
        // Stable: the same prompt, the same slug; a slug is its own slug.
        prop_assert_eq!(prompt_slug(&prompt), slug.clone());
        prop_assert_eq!(prompt_slug(&slug), slug);
    }

    /// A stem is `{unix_secs}_{slug}_{8 hex digits}`.
    #[test]
    fn file_stems_have_their_shape(prompt in prompt(), secs in any::<u64>()) {
        let stem = media_file_stem(&prompt, secs);
        let (time, rest) = stem.split_once('_').unwrap();
        let (slug, random) = rest.rsplit_once('_').unwrap();
        prop_assert_eq!(time, secs.to_string());
        prop_assert_eq!(slug, prompt_slug(&prompt));
        prop_assert!(random.len() == 8 && random.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        check_slug(slug)?;
    }

    /// Any string: refused with `InvalidKey` (keeping it), or a key that is a safe relative path of
    /// normal components, within the limits, never a hidden name.
    #[test]
    fn keys_are_refused_or_safe(text in key_text()) {
        match MediaKey::new(text.as_str()) {
            Ok(key) => {
                prop_assert_eq!(key.as_str(), text.as_str());
                prop_assert!(key.as_str().len() <= MAX_KEY_LEN);
                let segments: Vec<&str> = key.segments().collect();
                prop_assert!(!segments.is_empty() && segments.len() <= MAX_KEY_SEGMENTS);
                for segment in &segments {
                    prop_assert!(!segment.is_empty() && segment.len() <= MAX_KEY_SEGMENT_LEN);
                    prop_assert!(!segment.starts_with('.'));
                    prop_assert!(segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
                }
                let path = Path::new(key.as_str());
                prop_assert!(path.is_relative());
                prop_assert!(path.components().all(|c| matches!(c, Component::Normal(_))));
                prop_assert_eq!(path.components().count(), segments.len());
                let json = serde_json::to_string(&key).unwrap();
                prop_assert_eq!(serde_json::from_str::<MediaKey>(&json).unwrap(), key);
            }
            Err(SinkError::InvalidKey { key, reason }) => {
                prop_assert_eq!(key, text.clone());
                prop_assert!(!reason.is_empty());
                let json = serde_json::to_string(&text).unwrap();
                prop_assert!(serde_json::from_str::<MediaKey>(&json).is_err());
            }
            Err(other) => prop_assert!(false, "{:?}: unexpected {:?}", text, other),
        }
    }

    /// Every string made by the rules is accepted, as given.
    #[test]
    fn valid_keys_are_accepted(text in valid_key()) {
        let key = MediaKey::new(text.as_str());
        prop_assert!(key.is_ok(), "{:?}: {:?}", text, key);
        let key = key.unwrap();
        prop_assert_eq!(key.to_string(), text.clone());
        prop_assert_eq!(key.folders().count() + 1, text.split('/').count());
        prop_assert_eq!(key.name(), text.rsplit('/').next().unwrap());
    }
}
