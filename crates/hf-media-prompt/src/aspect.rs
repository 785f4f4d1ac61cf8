use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::PromptError;

/// A supported aspect ratio, each with a 1024-based pixel size.
///
/// ```
/// use hf_media_prompt::AspectRatio;
/// let r: AspectRatio = "9:16".parse().unwrap();
/// assert_eq!(r.size(), (576, 1024));
/// assert_eq!(r.to_string(), "9:16");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AspectRatio {
    label: &'static str,
    width: u32,
    height: u32,
}

/// The table: label, width, height (the longer side is about 1024 pixels).
const TABLE: [(&str, u32, u32); 13] = [
    ("1:1", 1024, 1024),
    ("16:9", 1024, 576),
    ("9:16", 576, 1024),
    ("4:3", 1024, 768),
    ("3:4", 768, 1024),
    ("3:2", 1024, 682),
    ("2:3", 682, 1024),
    ("21:9", 1024, 440),
    ("9:21", 440, 1024),
    ("4:5", 832, 1040),
    ("5:4", 1040, 832),
    ("2:1", 1024, 512),
    ("1:2", 512, 1024),
];

impl AspectRatio {
    /// The labels of every supported ratio, in table order.
    pub const SUPPORTED: [&'static str; 13] = {
        let mut labels = [""; 13];
        let mut i = 0;
        while i < TABLE.len() {
            labels[i] = TABLE[i].0;
            i += 1;
        }
        labels
    };

    /// Square, the default for images.
    pub const SQUARE: AspectRatio = AspectRatio::from_row(0);
    /// 16:9, the default for videos.
    pub const WIDESCREEN: AspectRatio = AspectRatio::from_row(1);

    const fn from_row(i: usize) -> AspectRatio {
        AspectRatio {
            label: TABLE[i].0,
            width: TABLE[i].1,
            height: TABLE[i].2,
        }
    }

    /// Every supported ratio.
    pub fn all() -> impl Iterator<Item = AspectRatio> {
        (0..TABLE.len()).map(AspectRatio::from_row)
    }

    /// Width and height in pixels.
    pub fn size(self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The label, such as `16:9`.
    pub fn as_str(self) -> &'static str {
        self.label
    }
}

impl FromStr for AspectRatio {
    type Err = PromptError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        AspectRatio::all()
            .find(|r| r.label == wanted)
            .ok_or_else(|| PromptError::UnknownAspectRatio { given: s.to_owned() })
    }
}

impl fmt::Display for AspectRatio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label)
    }
}

impl Serialize for AspectRatio {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.label)
    }
}

impl<'de> Deserialize<'de> for AspectRatio {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(label: &str, expected: (u32, u32)) {
        let ratio: AspectRatio = label.parse().expect("supported ratio");
        assert_eq!(ratio.size(), expected, "{label}");
        assert_eq!(ratio.to_string(), label);
    }

    #[test]
    fn table_matches_the_seed() {
        check("1:1", (1024, 1024));
        check("16:9", (1024, 576));
        check("9:16", (576, 1024));
        check("4:3", (1024, 768));
        check("3:4", (768, 1024));
        check("3:2", (1024, 682));
        check("2:3", (682, 1024));
        check("21:9", (1024, 440));
        check("9:21", (440, 1024));
        check("4:5", (832, 1040));
        check("5:4", (1040, 832));
        check("2:1", (1024, 512));
        check("1:2", (512, 1024));
        assert_eq!(AspectRatio::all().count(), 13);
    }

    #[test]
    fn whitespace_is_ignored_and_unknown_ratios_are_refused() {
        assert_eq!(" 16:9 ".parse::<AspectRatio>(), Ok(AspectRatio::WIDESCREEN));
        let err = "7:5".parse::<AspectRatio>().unwrap_err();
        assert_eq!(err, PromptError::UnknownAspectRatio { given: "7:5".into() });
        let msg = err.to_string();
        assert!(
            msg.contains("7:5") && msg.contains("16:9") && msg.contains("1:2"),
            "{msg}"
        );
    }

    #[test]
    fn serde_uses_the_label() {
        let json = serde_json::to_string(&AspectRatio::SQUARE).unwrap();
        assert_eq!(json, "\"1:1\"");
        let back: AspectRatio = serde_json::from_str("\"21:9\"").unwrap();
        assert_eq!(back.size(), (1024, 440));
        assert!(serde_json::from_str::<AspectRatio>("\"wide\"").is_err());
    }
}
