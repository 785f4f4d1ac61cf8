//! Property tests (issue 6's "fuzzing") of what the sink reads from untrusted input: media sniffing on
//! arbitrary bytes, and file names made from arbitrary prompts (no path traversal, no reserved names).
//!
//! Cases per property: proptest's default (256), or `PROPTEST_CASES`; `cargo xtask fuzz` runs many more.
#![allow(clippy::unwrap_used)]

use hf_media_sink::{MAX_SLUG_LEN, MediaKind, media_file_stem, prompt_slug, sniff};
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
}
