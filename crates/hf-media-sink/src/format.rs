//! Signature-based media format detection.

use std::fmt;

/// Whether a media is a still image or a video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// A still (or animated, like GIF) image.
    Image,
    /// A video.
    Video,
}

impl MediaKind {
    /// `"image"` or `"video"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
        }
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A recognised media format, decided from the bytes' signature (never from a
/// `Content-Type` header or a file name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaFormat {
    /// MIME type, e.g. `"image/png"`.
    pub mime: &'static str,
    /// File extension without the dot, e.g. `"png"`, `"jpg"`, `"mp4"`.
    pub extension: &'static str,
    /// Image or video.
    pub kind: MediaKind,
}

impl fmt::Display for MediaFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mime)
    }
}

/// How many leading bytes the sinks keep to call [`sniff`]. A bit more than the
/// 32 bytes most signatures need, so that Matroska's doc type is seen too.
pub(crate) const SNIFF_LEN: usize = 64;

type Matcher = fn(&[u8]) -> bool;

/// Image then video matchers of `infer`, in `infer`'s own order (more
/// specific signatures first, e.g. CR2 before TIFF, HEIF/AVIF before MP4).
const MATCHERS: &[(MediaKind, &str, &str, Matcher)] = &[
    (MediaKind::Image, "image/jpeg", "jpg", infer::image::is_jpeg),
    (MediaKind::Image, "image/jp2", "jp2", infer::image::is_jpeg2000),
    (MediaKind::Image, "image/png", "png", infer::image::is_png),
    (MediaKind::Image, "image/gif", "gif", infer::image::is_gif),
    (MediaKind::Image, "image/webp", "webp", infer::image::is_webp),
    (MediaKind::Image, "image/x-canon-cr2", "cr2", infer::image::is_cr2),
    (MediaKind::Image, "image/tiff", "tif", infer::image::is_tiff),
    (MediaKind::Image, "image/bmp", "bmp", infer::image::is_bmp),
    (MediaKind::Image, "image/vnd.ms-photo", "jxr", infer::image::is_jxr),
    (
        MediaKind::Image,
        "image/vnd.adobe.photoshop",
        "psd",
        infer::image::is_psd,
    ),
    (
        MediaKind::Image,
        "image/vnd.microsoft.icon",
        "ico",
        infer::image::is_ico,
    ),
    (MediaKind::Image, "image/heif", "heif", infer::image::is_heif),
    (MediaKind::Image, "image/avif", "avif", infer::image::is_avif),
    (MediaKind::Image, "image/jxl", "jxl", infer::image::is_jxl),
    (MediaKind::Image, "image/openraster", "ora", infer::image::is_ora),
    (MediaKind::Image, "image/vnd.djvu", "djvu", infer::image::is_djvu),
    (MediaKind::Video, "video/mp4", "mp4", infer::video::is_mp4),
    (MediaKind::Video, "video/x-m4v", "m4v", infer::video::is_m4v),
    (MediaKind::Video, "video/x-matroska", "mkv", infer::video::is_mkv),
    (MediaKind::Video, "video/webm", "webm", is_webm_not_matroska),
    (MediaKind::Video, "video/quicktime", "mov", infer::video::is_mov),
    (MediaKind::Video, "video/x-msvideo", "avi", infer::video::is_avi),
    (MediaKind::Video, "video/x-ms-wmv", "wmv", infer::video::is_wmv),
    (MediaKind::Video, "video/mpeg", "mpg", infer::video::is_mpeg),
    (MediaKind::Video, "video/x-flv", "flv", infer::video::is_flv),
];

const MATROSKA: MediaFormat = MediaFormat {
    mime: "video/x-matroska",
    extension: "mkv",
    kind: MediaKind::Video,
};

/// `infer` calls every EBML stream WebM unless `matroska` sits at one of two
/// fixed offsets; ffmpeg writes it elsewhere. An EBML header whose doc type is
/// `matroska` is not WebM.
fn is_webm_not_matroska(buf: &[u8]) -> bool {
    infer::video::is_webm(buf) && !contains(buf, b"matroska")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Recognises an image or video from its first bytes.
///
/// Knows PNG, JPEG, WebP, GIF, MP4 (and other ISO-BMFF video such as MOV and
/// M4V), WebM, Matroska, AVIF, HEIF, BMP, TIFF and the other image/video
/// signatures of the [`infer`] crate. Only image and video signatures count:
/// HTML, JSON, archives or audio give `None`. 64 bytes are plenty.
///
/// ```
/// use hf_media_sink::{sniff, MediaKind};
/// let png = sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").expect("a PNG");
/// assert_eq!((png.extension, png.kind), ("png", MediaKind::Image));
/// assert!(sniff(b"<!DOCTYPE html>").is_none());
/// ```
pub fn sniff(head: &[u8]) -> Option<MediaFormat> {
    if infer::video::is_webm(head) && contains(head, b"matroska") {
        return Some(MATROSKA);
    }
    MATCHERS
        .iter()
        .find(|(_, _, _, matches)| matches(head))
        .map(|&(kind, mime, extension, _)| MediaFormat { mime, extension, kind })
}

/// Every extension [`sniff`] can give (`"jpg"`, `"png"`, ..., `"mp4"`, `"mkv"`...), each once.
///
/// A keyed store uses it to find the media a key may already hold in another format
/// (`{key}.png` when the new bytes are a JPEG), so that a key never has two media.
pub fn media_extensions() -> impl Iterator<Item = &'static str> + Clone {
    MATCHERS
        .iter()
        .enumerate()
        .filter(|&(i, &(_, _, ext, _))| MATCHERS[..i].iter().all(|&(_, _, other, _)| other != ext))
        .map(|(_, &(_, _, ext, _))| ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(bytes: &[u8]) -> Option<(&'static str, MediaKind)> {
        sniff(bytes).map(|f| (f.extension, f.kind))
    }

    #[test]
    fn media_extensions_are_every_sniffed_one_once() {
        let all: Vec<&str> = media_extensions().collect();
        let unique: std::collections::HashSet<&str> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "{all:?}");
        for ext in [
            "png",
            "jpg",
            "webp",
            "gif",
            "avif",
            "mp4",
            "mov",
            "webm",
            "mkv",
            MATROSKA.extension,
        ] {
            assert!(all.contains(&ext), "{ext} missing from {all:?}");
        }
        assert!(!all.contains(&"json"), "a sidecar is never a media");
        assert!(
            all.iter()
                .all(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_alphanumeric()))
        );
    }

    #[test]
    fn png() {
        let f = sniff(b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR").expect("png");
        assert_eq!(
            f,
            MediaFormat {
                mime: "image/png",
                extension: "png",
                kind: MediaKind::Image
            }
        );
    }

    #[test]
    fn jpeg() {
        let f = sniff(&[0xff, 0xd8, 0xff, 0xe0, 0, 0x10, b'J', b'F', b'I', b'F']).expect("jpeg");
        assert_eq!((f.mime, f.extension), ("image/jpeg", "jpg"));
    }

    #[test]
    fn webp() {
        assert_eq!(
            ext(b"RIFF\x24\0\0\0WEBPVP8 \x18\0\0\0"),
            Some(("webp", MediaKind::Image))
        );
    }

    #[test]
    fn gif() {
        assert_eq!(ext(b"GIF89a\x01\0\x01\0"), Some(("gif", MediaKind::Image)));
        assert_eq!(ext(b"GIF87a\x01\0\x01\0"), Some(("gif", MediaKind::Image)));
    }

    #[test]
    fn mp4() {
        let head = b"\0\0\0\x18ftypisom\0\0\x02\0isommp42\0\0\0\x08free";
        let f = sniff(head).expect("mp4");
        assert_eq!((f.mime, f.extension, f.kind), ("video/mp4", "mp4", MediaKind::Video));
        // Other common brands.
        assert_eq!(
            ext(b"\0\0\0\x20ftypmp42\0\0\0\0mp42isom"),
            Some(("mp4", MediaKind::Video))
        );
        assert_eq!(
            ext(b"\0\0\0\x1cftypavc1\0\0\0\0avc1isom"),
            Some(("mp4", MediaKind::Video))
        );
    }

    #[test]
    fn quicktime_is_video() {
        assert_eq!(
            ext(b"\0\0\0\x14ftypqt  \0\0\x02\0qt  \0\0\0\x08wide"),
            Some(("mov", MediaKind::Video))
        );
    }

    #[test]
    fn avif_is_an_image_not_an_mp4() {
        assert_eq!(
            ext(b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf\0\0\0\0meta"),
            Some(("avif", MediaKind::Image))
        );
    }

    #[test]
    fn webm() {
        // EBML header as written by ffmpeg, DocType "webm".
        let head = [
            0x1a, 0x45, 0xdf, 0xa3, 0x9f, 0x42, 0x86, 0x81, 0x01, 0x42, 0xf7, 0x81, 0x01, 0x42, 0xf2, 0x81, 0x04, 0x42,
            0xf3, 0x81, 0x08, 0x42, 0x82, 0x84, b'w', b'e', b'b', b'm', 0x42, 0x87, 0x81, 0x04, 0x42, 0x85, 0x81, 0x02,
        ];
        let f = sniff(&head).expect("webm");
        assert_eq!((f.mime, f.extension, f.kind), ("video/webm", "webm", MediaKind::Video));
    }

    #[test]
    fn matroska_is_not_called_webm() {
        let head = [
            0x1a, 0x45, 0xdf, 0xa3, 0xa3, 0x42, 0x86, 0x81, 0x01, 0x42, 0xf7, 0x81, 0x01, 0x42, 0xf2, 0x81, 0x04, 0x42,
            0xf3, 0x81, 0x08, 0x42, 0x82, 0x88, b'm', b'a', b't', b'r', b'o', b's', b'k', b'a', 0x42, 0x87, 0x81, 0x04,
        ];
        assert_eq!(ext(&head), Some(("mkv", MediaKind::Video)));
    }

    #[test]
    fn bmp_and_tiff() {
        assert_eq!(ext(b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0"), Some(("bmp", MediaKind::Image)));
        assert_eq!(ext(b"II*\0\x08\0\0\0\0\0"), Some(("tif", MediaKind::Image)));
    }

    #[test]
    fn unknown_is_none() {
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"<!DOCTYPE html><html>"), None);
        assert_eq!(sniff(br#"{"error":"Model is loading"}"#), None);
        assert_eq!(sniff(b"hello world, this is plain text"), None);
        // Non-media signatures known to `infer` do not count.
        assert_eq!(sniff(b"PK\x03\x04\x14\0\0\0\x08\0"), None); // zip
        assert_eq!(sniff(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3"), None);
        assert_eq!(sniff(b"ID3\x04\0\0\0\0\0\0"), None); // mp3
        assert_eq!(sniff(b"RIFF\x24\0\0\0WAVEfmt "), None);
    }

    #[test]
    fn truncated_signature_is_none() {
        assert_eq!(sniff(b"\x89PN"), None);
        assert_eq!(sniff(b"\xff\xd8"), None);
    }

    #[test]
    fn kind_display_and_serde() {
        assert_eq!(MediaKind::Image.to_string(), "image");
        assert_eq!(MediaKind::Video.to_string(), "video");
        assert_eq!(
            serde_json::to_string(&MediaKind::Video).expect("serialize"),
            "\"video\""
        );
        let k: MediaKind = serde_json::from_str("\"image\"").expect("deserialize");
        assert_eq!(k, MediaKind::Image);
    }
}
