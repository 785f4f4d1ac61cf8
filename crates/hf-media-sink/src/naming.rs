//! File names for stored media.

/// Longest slug [`prompt_slug`] returns (before a possible `media-` prefix).
pub const MAX_SLUG_LEN: usize = 40;

/// Device names Windows refuses as file names, whatever the extension.
const RESERVED: &[&str] = &[
    "con", "prn", "aux", "nul", "com0", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8", "com9", "lpt0",
    "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// Turns a prompt into a short, file-system-safe slug.
///
/// Lowercase ASCII letters and digits are kept; every other run of characters
/// (spaces, punctuation, non-ASCII letters, ...) becomes a single `-`. The
/// result is trimmed of `-`, cut to at most [`MAX_SLUG_LEN`] characters, and is
/// never empty (`"media"`) nor a reserved Windows device name (`"media-con"`).
///
/// ```
/// use hf_media_sink::prompt_slug;
/// assert_eq!(prompt_slug("A cat, in SPACE!"), "a-cat-in-space");
/// assert_eq!(prompt_slug("  "), "media");
/// assert_eq!(prompt_slug("NUL"), "media-nul");
/// ```
pub fn prompt_slug(prompt: &str) -> String {
    let mut slug = String::with_capacity(prompt.len().min(MAX_SLUG_LEN * 2));
    for c in prompt.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() > MAX_SLUG_LEN {
            break;
        }
    }
    // Only ASCII was pushed, so every byte index is a char boundary.
    slug.truncate(MAX_SLUG_LEN);
    let slug = slug.trim_matches('-');
    if slug.is_empty() {
        "media".to_owned()
    } else if RESERVED.contains(&slug) {
        format!("media-{slug}")
    } else {
        slug.to_owned()
    }
}

/// The stem (name without extension) of a stored media:
/// `{unix_secs}_{slug}_{8 random hex digits}`, e.g.
/// `1732623000_a-cat-in-space_0f3a9c21`.
///
/// The random suffix keeps names apart for identical prompts stored in the
/// same second; [`FileSink`](crate::FileSink) also never overwrites a file.
pub fn media_file_stem(prompt: &str, unix_secs: u64) -> String {
    format!("{unix_secs}_{}_{:08x}", prompt_slug(prompt), fastrand::u32(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple() {
        assert_eq!(prompt_slug("A photo of a cat"), "a-photo-of-a-cat");
        assert_eq!(prompt_slug("cat"), "cat");
        assert_eq!(prompt_slug("Cat 42"), "cat-42");
    }

    #[test]
    fn punctuation_runs_collapse_and_trim() {
        assert_eq!(prompt_slug("  --Hello,   World!!! --  "), "hello-world");
        assert_eq!(prompt_slug("a/b\\c:d*e?f\"g<h>i|j"), "a-b-c-d-e-f-g-h-i-j");
        assert_eq!(prompt_slug("../../etc/passwd"), "etc-passwd");
        assert_eq!(prompt_slug("a\n\tb\0c"), "a-b-c");
    }

    #[test]
    fn unicode() {
        assert_eq!(prompt_slug("Crème brûlée à Paris"), "cr-me-br-l-e-paris");
        assert_eq!(prompt_slug("日本の猫"), "media");
        assert_eq!(prompt_slug("猫 cat 🐱 ok"), "cat-ok");
        assert_eq!(prompt_slug("ÉCOLE"), "cole");
    }

    #[test]
    fn empty() {
        assert_eq!(prompt_slug(""), "media");
        assert_eq!(prompt_slug("!!!"), "media");
        assert_eq!(prompt_slug("   "), "media");
    }

    #[test]
    fn long_is_cut_to_40_without_trailing_dash() {
        let slug = prompt_slug(&"abcdefghi ".repeat(20));
        assert!(slug.len() <= MAX_SLUG_LEN, "{slug}");
        assert!(!slug.ends_with('-'), "{slug}");
        // Cut exactly where a dash would have been at position 40.
        assert_eq!(slug, "abcdefghi-abcdefghi-abcdefghi-abcdefghi");
        let slug = prompt_slug(&"x".repeat(500));
        assert_eq!(slug, "x".repeat(40));
        // Long unicode-only prefix does not panic.
        let slug = prompt_slug(&format!("{}tail", "é".repeat(100)));
        assert_eq!(slug, "tail");
    }

    #[test]
    fn reserved_windows_names_are_prefixed() {
        for name in ["con", "CON", "Nul", "aux", "prn", "com1", "LPT9", " con "] {
            let slug = prompt_slug(name);
            assert!(slug.starts_with("media-"), "{name} -> {slug}");
        }
        assert_eq!(prompt_slug("con"), "media-con");
        assert_eq!(prompt_slug("console"), "console");
        assert_eq!(prompt_slug("com10"), "com10");
    }

    #[test]
    fn only_safe_characters() {
        for prompt in ["Héllo wörld", "a.b.c", "<script>", "x".repeat(99).as_str()] {
            let slug = prompt_slug(prompt);
            assert!(
                slug.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{slug}"
            );
            assert!(!slug.starts_with('-') && !slug.ends_with('-'), "{slug}");
            assert!(!slug.contains("--"), "{slug}");
        }
    }

    #[test]
    fn stem_format() {
        let stem = media_file_stem("A red fox", 1_732_623_000);
        let parts: Vec<&str> = stem.split('_').collect();
        assert_eq!(parts.len(), 3, "{stem}");
        assert_eq!(parts[0], "1732623000");
        assert_eq!(parts[1], "a-red-fox");
        assert_eq!(parts[2].len(), 8, "{stem}");
        assert!(
            parts[2]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{stem}"
        );
    }

    #[test]
    fn stems_differ_for_identical_prompts() {
        let stems: std::collections::HashSet<String> = (0..50).map(|_| media_file_stem("same", 1)).collect();
        assert!(stems.len() >= 49, "random suffixes collide too often");
    }
}
