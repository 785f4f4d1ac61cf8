//! Where an item's media go: sub-folders of at most 10,000 files (the Hub's limit per folder), each
//! media named from its item's id and its index within `n`.

use sha2::{Digest, Sha256};

/// The most files in one folder of the output (the Hub's limit per folder).
pub const MAX_FILES_PER_FOLDER: u64 = 10_000;
/// The longest readable part of a media's name (the rest of a long `custom_id` is in its hash).
const MAX_NAME_CHARS: usize = 80;

/// How many items share one folder when items make up to `max_n` media each.
pub fn items_per_folder(max_n: u64) -> u64 {
    (MAX_FILES_PER_FOLDER / max_n.max(1)).max(1)
}

/// The folder of the item at `position`: `00000`, `00001`, …
pub fn folder(position: u64, items_per_folder: u64) -> String {
    format!("{:05}", position / items_per_folder.max(1))
}

/// The sink key prefix of an item (generation `i` is stored at `{prefix}-{i}`): its folder, then its id
/// made safe for every file system and object store. An id that had to be changed (characters outside
/// `[A-Za-z0-9._-]`, a leading dot, too long) gets 8 hex digits of its SHA-256 so two ids never meet; so
/// does an id with capital letters, so that `Fox` and `fox` stay two files on a file system that ignores
/// case (macOS, Windows).
pub fn media_key(item_id: &str, position: u64, items_per_folder: u64) -> String {
    format!("{}/{}", folder(position, items_per_folder), safe_name(item_id))
}

/// An item's id made safe for every file system and object store, as [`media_key`] names it.
pub(crate) fn safe_name(item_id: &str) -> String {
    let safe: String = item_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME_CHARS)
        .collect();
    let changed =
        safe != item_id || safe.starts_with('.') || safe.is_empty() || item_id.chars().any(|c| c.is_ascii_uppercase());
    let name = if changed {
        let digest = Sha256::digest(item_id.as_bytes());
        let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        format!("{}_{hash}", safe.trim_start_matches('.'))
    } else {
        safe
    };
    name.trim_start_matches('_').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_hold_at_most_ten_thousand_files() {
        assert_eq!(items_per_folder(1), 10_000);
        assert_eq!(items_per_folder(4), 2_500);
        assert_eq!(items_per_folder(20_000), 1);
        assert_eq!(folder(9_999, 10_000), "00000");
        assert_eq!(folder(10_000, 10_000), "00001");
    }

    #[test]
    fn keys_are_safe_and_distinct() {
        assert_eq!(media_key("line-000001-abc", 0, 10), "00000/line-000001-abc");
        let a = media_key("a/b", 0, 10);
        let b = media_key("a?b", 0, 10);
        assert_ne!(a, b);
        assert!(a.starts_with("00000/a_b_"), "{a}");
        let hidden = media_key(".secret", 0, 10);
        assert!(!hidden.split('/').nth(1).unwrap().starts_with('.'), "{hidden}");
        let long = media_key(&"x".repeat(300), 25, 10);
        assert!(long.len() < 100, "{long}");
        assert!(long.starts_with("00002/"));
        let unicode = media_key("猫", 0, 10);
        assert!(unicode.len() > "00000/".len(), "{unicode}");
        // Ids that differ only in case stay apart where the file system ignores case.
        let (upper, lower) = (media_key("Fox", 0, 10), media_key("fox", 0, 10));
        assert_eq!(lower, "00000/fox");
        assert!(upper.starts_with("00000/Fox_"), "{upper}");
        assert_ne!(upper.to_lowercase(), lower.to_lowercase());
    }

    #[test]
    fn flat_names_are_the_folder_names() {
        assert_eq!(safe_name("video_0123abcdef"), "video_0123abcdef");
        for id in ["a/b", "Fox", ".secret", "猫", "../up"] {
            assert_eq!(format!("00000/{}", safe_name(id)), media_key(id, 0, 10), "{id}");
            assert!(!safe_name(id).contains('/') && !safe_name(id).starts_with('.'), "{id}");
        }
    }
}
