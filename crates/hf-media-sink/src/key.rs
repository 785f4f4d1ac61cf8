//! [`MediaKey`]: a caller-chosen, validated name for a media, so that storing the same item again
//! (a batch resumed after a crash) lands at the same place instead of making a duplicate.

use std::fmt;
use std::str::FromStr;

use crate::SinkError;

/// Longest [`MediaKey`], in characters: 512.
pub const MAX_KEY_LEN: usize = 512;

/// Most `/`-separated segments in a [`MediaKey`]: 8 (up to 7 folders and a name).
pub const MAX_KEY_SEGMENTS: usize = 8;

/// Longest segment of a [`MediaKey`], in characters: 128.
pub const MAX_KEY_SEGMENT_LEN: usize = 128;

/// Where a sink stores a media, chosen by the caller: a relative name **without extension**, such
/// as `shard-0001/item-000042`. Set it as [`MediaRecord::key`](crate::MediaRecord::key).
///
/// A sink stores the media at `{key}.{ext}` (the extension sniffed from the bytes) and its sidecar
/// at `{key}.json`, creating the folders, and *replaces* a media already stored at that key:
/// storing the same item twice leaves one media, the second.
///
/// Always valid (checked by [`MediaKey::new`], and when deserialized):
///
/// - 1 to [`MAX_KEY_SEGMENTS`] (8) segments separated by `/`;
/// - each segment 1 to [`MAX_KEY_SEGMENT_LEN`] (128) characters among ASCII letters, digits,
///   `.`, `_` and `-`, and not starting with `.` (so no `.` or `..`, no hidden file, and never the
///   name of a sink's temporary file);
/// - at most [`MAX_KEY_LEN`] (512) characters in all.
///
/// So a key is a safe relative path on every file system and a safe object name in every store:
/// no absolute path, no `..`, no backslash, no space, no empty segment.
///
/// Serialized as its string; deserializing checks it.
///
/// **Fresh keys.** A key made [`fresh`](MediaKey::fresh) is one the caller knows holds nothing yet (it
/// carries random bits, as a server's media names do): the store then *creates* `{key}.{ext}` and
/// `{key}.json` instead of replacing what is there, and skips looking for the key's media of other
/// formats, which cannot exist (a file sink saves a dozen file-system lookups, an object sink a
/// dozen deletes). If something is there after all, the store fails with
/// [`SinkError::KeyTaken`] and leaves it untouched. Freshness is how one store treats the key, not
/// part of its name: two keys of the same name are equal (and hash alike) fresh or not, and a
/// deserialized key is not fresh.
///
/// ```
/// use hf_media_sink::MediaKey;
///
/// let key = MediaKey::new("batch-7/shard-0001/item-000042")?;
/// assert_eq!(key.as_str(), "batch-7/shard-0001/item-000042");
/// assert_eq!(key.name(), "item-000042");
/// assert_eq!(key.folders().collect::<Vec<_>>(), ["batch-7", "shard-0001"]);
/// assert_eq!(key.to_string(), "batch-7/shard-0001/item-000042");
///
/// for bad in ["", "/abs", "a//b", "../up", ".hidden", "a b", "a\\b", "é"] {
///     assert!(MediaKey::new(bad).is_err(), "{bad:?}");
/// }
/// # Ok::<(), hf_media_sink::SinkError>(())
/// ```
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MediaKey {
    name: String,
    fresh: bool,
}

impl MediaKey {
    /// Checks `key` and wraps it. Fails with [`SinkError::InvalidKey`], saying which rule it
    /// breaks, when it is not a valid key (see [`MediaKey`]).
    pub fn new(key: impl Into<String>) -> Result<Self, SinkError> {
        let key = key.into();
        match check(&key) {
            Ok(()) => Ok(Self {
                name: key,
                fresh: false,
            }),
            Err(reason) => Err(SinkError::InvalidKey { key, reason }),
        }
    }

    /// The same key, [fresh](MediaKey#fresh-keys): the caller knows nothing is stored at it, so the
    /// store creates its media and sidecar, never replacing (a taken name fails the store with
    /// [`SinkError::KeyTaken`]).
    ///
    /// ```
    /// use hf_media_sink::MediaKey;
    ///
    /// let key = MediaKey::new("1764590000_a-fox_5f0c9e2ab4d1e8f7-0")?.fresh();
    /// assert!(key.is_fresh());
    /// assert_eq!(key, MediaKey::new("1764590000_a-fox_5f0c9e2ab4d1e8f7-0")?, "the same name");
    /// # Ok::<(), hf_media_sink::SinkError>(())
    /// ```
    #[must_use]
    pub fn fresh(mut self) -> Self {
        self.fresh = true;
        self
    }

    /// The same key, not [fresh](MediaKey#fresh-keys): the store replaces what is there. What a caller
    /// stores again with after a failed store at a fresh key, whose undo may not have removed
    /// everything (a remote sink's undo is best effort).
    #[must_use]
    pub fn replacing(mut self) -> Self {
        self.fresh = false;
        self
    }

    /// Whether the key is [fresh](MediaKey#fresh-keys) (see [`MediaKey::fresh`]).
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// The key as given, e.g. `shard-0001/item-000042`.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// Its `/`-separated segments, folders first, the name last.
    pub fn segments(&self) -> impl DoubleEndedIterator<Item = &str> + Clone {
        self.name.split('/')
    }

    /// The folders the media goes into (every segment but the last); none for a key of one
    /// segment.
    pub fn folders(&self) -> impl Iterator<Item = &str> + Clone {
        let mut segments = self.segments();
        segments.next_back();
        segments
    }

    /// The last segment: the media's file or object name without its extension.
    pub fn name(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or(&self.name)
    }

    /// The key as a `String`.
    pub fn into_string(self) -> String {
        self.name
    }
}

// Equality, hashing and order are the name's: freshness says how one store treats the key.
impl PartialEq for MediaKey {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for MediaKey {}

impl std::hash::Hash for MediaKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl PartialOrd for MediaKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MediaKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name.cmp(&other.name)
    }
}

/// Why `key` is not a valid [`MediaKey`], if it is not.
fn check(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("it is empty".to_owned());
    }
    for (i, segment) in key.split('/').enumerate() {
        if i >= MAX_KEY_SEGMENTS {
            return Err(format!("it has more than {MAX_KEY_SEGMENTS} `/`-separated segments"));
        }
        if segment.is_empty() {
            return Err("it has an empty segment (a leading, trailing or doubled `/`)".to_owned());
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "segment {} has the character {c:?}; only ASCII letters, digits, `.`, `_` and `-` are allowed",
                shown(segment)
            ));
        }
        if segment.starts_with('.') {
            return Err(format!(
                "segment {} starts with `.` (no `.`, `..` or hidden names)",
                shown(segment)
            ));
        }
        if segment.len() > MAX_KEY_SEGMENT_LEN {
            return Err(format!(
                "segment {} is {} characters long, more than {MAX_KEY_SEGMENT_LEN}",
                shown(segment),
                segment.len()
            ));
        }
    }
    // Every character is ASCII by now: bytes are characters.
    if key.len() > MAX_KEY_LEN {
        return Err(format!("it is {} characters long, more than {MAX_KEY_LEN}", key.len()));
    }
    Ok(())
}

/// `text` quoted, cut to 40 characters for messages.
pub(crate) fn shown(text: &str) -> String {
    const SHOWN: usize = 40;
    if text.chars().count() <= SHOWN {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(SHOWN).collect();
        format!("{head:?}…")
    }
}

impl fmt::Display for MediaKey {
    /// The key as given.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl AsRef<str> for MediaKey {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

impl FromStr for MediaKey {
    type Err = SinkError;

    /// As [`MediaKey::new`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for MediaKey {
    type Error = SinkError;

    /// As [`MediaKey::new`].
    fn try_from(key: String) -> Result<Self, Self::Error> {
        Self::new(key)
    }
}

impl TryFrom<&str> for MediaKey {
    type Error = SinkError;

    /// As [`MediaKey::new`].
    fn try_from(key: &str) -> Result<Self, Self::Error> {
        Self::new(key)
    }
}

impl From<MediaKey> for String {
    fn from(key: MediaKey) -> Self {
        key.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(key: &str) -> String {
        match MediaKey::new(key) {
            Err(SinkError::InvalidKey { key: given, reason }) => {
                assert_eq!(given, key, "the error keeps the key");
                reason
            }
            other => panic!("{key:?} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn valid_keys_are_kept_as_given() {
        for key in [
            "a",
            "item-000042",
            "shard-0001/item-000042",
            "A.b_c-D/0/x.y",
            "a/b/c/d/e/f/g/h",
            "trailing.",
            "-dash",
            "_under",
            "a..b",
        ] {
            let parsed = MediaKey::new(key).unwrap_or_else(|e| panic!("{key:?}: {e}"));
            assert_eq!(parsed.as_str(), key);
            assert_eq!(parsed.to_string(), key);
            assert_eq!(parsed.as_ref(), key);
            assert_eq!(key.parse::<MediaKey>().expect("parses"), parsed);
            assert_eq!(MediaKey::try_from(key).expect("converts"), parsed);
            assert_eq!(String::from(parsed.clone()), key);
            assert_eq!(parsed.into_string(), key);
        }
    }

    #[test]
    fn invalid_keys_are_refused() {
        assert!(reason("").contains("empty"));
        for key in ["/", "/a", "a/", "a//b", "//"] {
            assert!(reason(key).contains("empty segment"), "{key:?}");
        }
        for key in [".", "..", "a/..", "../a", "a/./b", ".hidden", "a/.hf-media-x.part"] {
            assert!(reason(key).contains("starts with `.`"), "{key:?}");
        }
        for key in [
            "a b",
            "a\\b",
            "é",
            "a:b",
            "a*b",
            "a\0b",
            "tab\t",
            "new\nline",
            "C:/x",
            "~",
        ] {
            assert!(reason(key).contains("only ASCII letters"), "{key:?}");
        }
        assert!(reason("a/b/c/d/e/f/g/h/i").contains("more than 8"));
        let long_segment = "x".repeat(MAX_KEY_SEGMENT_LEN + 1);
        assert!(reason(&long_segment).contains("129 characters long"));
        let long_key = vec!["y".repeat(100); 6].join("/");
        assert!(reason(&long_key).contains("more than 512"));
    }

    #[test]
    fn limits_are_inclusive() {
        let segment = "s".repeat(MAX_KEY_SEGMENT_LEN);
        MediaKey::new(segment.as_str()).expect("a 128-character segment");
        let key = ["a"; MAX_KEY_SEGMENTS].join("/");
        MediaKey::new(key).expect("8 segments");
        // 3 × 127 + 128 + 3 `/` = 512 characters.
        let key = vec!["k".repeat(127); 3].join("/") + "/" + &"m".repeat(128);
        assert_eq!(key.len(), MAX_KEY_LEN);
        MediaKey::new(key.as_str()).expect("512 characters");
        let over = key + "/x";
        assert!(reason(&over).contains("more than 512"), "{over}");
    }

    #[test]
    fn folders_and_name() {
        let key = MediaKey::new("a/b/c").expect("valid");
        assert_eq!(key.name(), "c");
        assert_eq!(key.folders().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(key.segments().collect::<Vec<_>>(), ["a", "b", "c"]);
        let flat = MediaKey::new("only").expect("valid");
        assert_eq!(flat.name(), "only");
        assert_eq!(flat.folders().count(), 0);
    }

    #[test]
    fn the_message_says_what_is_wrong_and_what_is_allowed() {
        let err = MediaKey::new("shard 1/item").expect_err("a space");
        let message = err.to_string();
        assert!(message.contains("\"shard 1/item\""), "{message}");
        assert!(message.contains("' '"), "{message}");
        assert!(message.contains("1 to 8"), "{message}");
        assert!(!err.is_retryable());
        // A huge key is shortened in the message, kept whole in the error.
        let huge = "z".repeat(10_000);
        let err = MediaKey::new(huge.as_str()).expect_err("too long");
        assert!(err.to_string().len() < 600, "{err}");
        assert!(matches!(err, SinkError::InvalidKey { ref key, .. } if *key == huge));
    }

    #[test]
    fn serde_is_a_checked_string() {
        let key = MediaKey::new("shard-0001/item-000042").expect("valid");
        let json = serde_json::to_string(&key).expect("serializes");
        assert_eq!(json, "\"shard-0001/item-000042\"");
        let back: MediaKey = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, key);
        for bad in ["\"../etc/passwd\"", "\"\"", "\"a//b\"", "\".x\""] {
            let err = serde_json::from_str::<MediaKey>(bad).expect_err(bad);
            assert!(err.to_string().contains("invalid media key"), "{bad}: {err}");
        }
        assert!(serde_json::from_str::<MediaKey>("42").is_err());
    }

    #[test]
    fn freshness_is_not_part_of_the_name() {
        let key = MediaKey::new("a/b").expect("valid");
        assert!(!key.is_fresh());
        let fresh = key.clone().fresh();
        assert!(fresh.is_fresh());
        assert!(!fresh.clone().replacing().is_fresh());
        assert_eq!(fresh, key);
        assert_eq!(fresh.cmp(&key), std::cmp::Ordering::Equal);
        let mut held = std::collections::HashSet::new();
        held.insert(fresh.clone());
        assert!(held.contains(&key), "found by its name");
        let json = serde_json::to_string(&fresh).expect("serializes");
        assert_eq!(json, "\"a/b\"");
        let back: MediaKey = serde_json::from_str(&json).expect("deserializes");
        assert!(!back.is_fresh(), "a promise of one store is not saved");
    }
}
