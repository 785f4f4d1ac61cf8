//! Real, deterministic media for the emulator: still images (PNG, JPEG, WebP) and short MP4 videos.
//!
//! Everything here is a pure function of the prompt, the seed, the input images and the requested geometry:
//! the same request always yields the same bytes, on every platform (the renderer uses integer arithmetic
//! only).
//!
//! * Images are a smooth two- or three-colour gradient along one of 16 directions, modulated by soft
//!   bands and overlaid with a few anti-aliased translucent circles, all chosen from [`picture_seed`].
//! * Videos are that same picture panning over time (frame 0 is exactly the still image), encoded as
//!   lossless H.264 (`I_PCM` macroblocks, Constrained Baseline, every frame an IDR frame) by `less-avc` and
//!   muxed into an ISO-BMFF (`.mp4`) file by the `mp4` crate with AVCC (length-prefixed) samples.
//! * Edits ([`edit_image`]) are the input images side by side, stretched to the size, pulled towards a tint
//!   derived from the prompt and seed and framed in a darker shade of it, so a person sees at once that
//!   the output came from the input(s); animations ([`animate_image`]) zoom over that edit, frame by
//!   frame, in the same MP4 format. Inputs are decoded by [`decode_input`].

use std::io::Cursor;

use image::ImageEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::codecs::webp::WebPEncoder;
use less_avc::ycbcr_image::{DataPlane, Planes, YCbCrImage};

use crate::error::EmulatorError;

/// Image encodings providers answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// PNG (lossless, fast deflate).
    Png,
    /// Baseline JPEG, quality 90.
    Jpeg,
    /// Lossless WebP (VP8L).
    Webp,
}

impl ImageFormat {
    /// The MIME type of this encoding, e.g. `image/png`.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }

    /// The usual file extension of this encoding, without the dot, e.g. `png`.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Webp => "webp",
        }
    }
}

/// Largest width or height the emulator renders (bigger requests are an error: say so).
pub const MAX_SIDE: u32 = 4096;

/// Largest number of frames [`render_video`] renders.
pub const MAX_FRAMES: u32 = 1200;

/// Largest frame rate [`render_video`] accepts, in frames per second.
pub const MAX_FPS: u32 = 240;

/// Largest uncompressed H.264 payload [`render_video`] produces, in bytes (512 MiB).
///
/// Frames are stored losslessly (`I_PCM`), so a frame costs about `1.5 × width × height` bytes (sizes
/// rounded up to multiples of 16); requests whose frames would add up to more than this are refused
/// rather than exhausting memory.
pub const MAX_VIDEO_BYTES: u64 = 512 * 1024 * 1024;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A 64-bit FNV-1a hash of the prompt mixed with the seed: the picture's identity.
///
/// The hash runs over the prompt's UTF-8 bytes, then, when there is a seed, over a `0xFF` separator byte
/// (which never occurs in UTF-8, so a seed cannot collide with a longer prompt) and the seed's eight
/// little-endian bytes. `None` and `Some(_)` therefore give different pictures for the same prompt.
pub fn picture_seed(prompt: &str, seed: Option<u64>) -> u64 {
    let mut hash = FNV_OFFSET_BASIS;
    let mut feed = |byte: u8| {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    };
    prompt.bytes().for_each(&mut feed);
    if let Some(seed) = seed {
        feed(0xFF);
        seed.to_le_bytes().into_iter().for_each(&mut feed);
    }
    hash
}

/// An image of exactly `width × height` pixels, derived from `prompt` and `seed`, encoded as `format`.
///
/// The picture is a smooth two- or three-colour gradient whose colours and direction come from
/// [`picture_seed`], modulated by soft bands and overlaid with a few translucent circles. Rendering is
/// integer-only, so the bytes are identical for identical inputs on every platform.
///
/// # Errors
///
/// [`EmulatorError::Media`] when `width` or `height` is 0 or larger than [`MAX_SIDE`], or when the encoder
/// fails.
pub fn render_image(
    prompt: &str,
    seed: Option<u64>,
    width: u32,
    height: u32,
    format: ImageFormat,
) -> Result<Vec<u8>, EmulatorError> {
    check_side("image width", width)?;
    check_side("image height", height)?;
    let scene = Scene::new(picture_seed(prompt, seed), width, height);
    let mut rgb = vec![0u8; rgb_len(width, height)];
    scene.render(&mut rgb, 0, 0);

    encode_image(&rgb, width, height, format)
}

/// Encodes an RGB8 buffer of `width × height` pixels as `format`.
fn encode_image(rgb: &[u8], width: u32, height: u32, format: ImageFormat) -> Result<Vec<u8>, EmulatorError> {
    let mut out = Vec::with_capacity(rgb.len() / 4);
    let result = match format {
        ImageFormat::Png => PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive)
            .write_image(rgb, width, height, image::ExtendedColorType::Rgb8),
        ImageFormat::Jpeg => {
            JpegEncoder::new_with_quality(&mut out, 90).write_image(rgb, width, height, image::ExtendedColorType::Rgb8)
        }
        ImageFormat::Webp => {
            WebPEncoder::new_lossless(&mut out).write_image(rgb, width, height, image::ExtendedColorType::Rgb8)
        }
    };
    result.map_err(|e| {
        EmulatorError::Media(format!(
            "{} encoder failed for {width}x{height}: {e}",
            format.extension()
        ))
    })?;
    Ok(out)
}

/// A real, playable MP4 of `frames` frames at `fps` frames per second showing the [`render_image`] picture
/// for the same prompt and seed panning over time (frame 0 is exactly that picture).
///
/// The single video track is H.264 (`avc1`, Constrained Baseline profile, level chosen from the frame size
/// and rate) written by `less-avc`: every frame is a lossless `I_PCM` IDR frame (a sync sample), with
/// full-range BT.601 YCbCr 4:2:0 samples. The SPS/PPS live in the `avcC` box and samples are AVCC
/// (4-byte length-prefixed NAL units). The movie and track timescale is `fps × 1000` and each sample lasts
/// 1000 ticks, so the duration is exactly `frames / fps` seconds.
///
/// Sizes: H.264 4:2:0 can only crop to even sizes, so an odd `width` or `height` is rounded **up** to the
/// next even number (the MP4 then reports that even size); even sizes are kept exactly (the encoder pads to
/// macroblock multiples of 16 and crops back via the SPS frame-cropping fields).
///
/// Frames are uncompressed, so files are large: about `1.5 × width × height` bytes per frame (848×480 ×
/// 16 frames ≈ 9.8 MB).
///
/// # Errors
///
/// [`EmulatorError::Media`] when `width`/`height` is 0 or larger than [`MAX_SIDE`], `frames` is 0 or larger
/// than [`MAX_FRAMES`], `fps` is 0 or larger than [`MAX_FPS`], the total frame data would exceed
/// [`MAX_VIDEO_BYTES`], or the encoder or muxer fails.
pub fn render_video(
    prompt: &str,
    seed: Option<u64>,
    width: u32,
    height: u32,
    frames: u32,
    fps: u32,
) -> Result<Vec<u8>, EmulatorError> {
    encode_video(width, height, frames, fps, |width, height| {
        let scene = Scene::new(picture_seed(prompt, seed), width, height);
        let (vx, vy) = scene.velocity;
        move |index: u32, rgb: &mut [u8]| {
            let t = i64::from(index);
            scene.render(rgb, vx * t, vy * t);
        }
    })
}

/// Encodes `frames` frames drawn by the drawer that `make` builds for the (even) frame size into an MP4
/// (see [`render_video`] for the format, the size rounding and the errors).
fn encode_video<M, D>(width: u32, height: u32, frames: u32, fps: u32, make: M) -> Result<Vec<u8>, EmulatorError>
where
    M: FnOnce(u32, u32) -> D,
    D: FnMut(u32, &mut [u8]),
{
    check_side("video width", width)?;
    check_side("video height", height)?;
    if frames == 0 || frames > MAX_FRAMES {
        return Err(EmulatorError::Media(format!(
            "video frame count must be between 1 and {MAX_FRAMES}, got {frames}"
        )));
    }
    if fps == 0 || fps > MAX_FPS {
        return Err(EmulatorError::Media(format!(
            "video frame rate must be between 1 and {MAX_FPS} frames per second, got {fps}"
        )));
    }
    // 4:2:0 needs even sizes; MAX_SIDE is even so this never exceeds it.
    let width = width + (width & 1);
    let height = height + (height & 1);
    let padded_w = width.div_ceil(16) * 16;
    let padded_h = height.div_ceil(16) * 16;
    let frame_bytes = u64::from(padded_w) * u64::from(padded_h) * 3 / 2;
    let total = frame_bytes * u64::from(frames);
    if total > MAX_VIDEO_BYTES {
        return Err(EmulatorError::Media(format!(
            "video too large: {frames} lossless frames of {width}x{height} need {total} bytes, more than the \
             {MAX_VIDEO_BYTES}-byte limit; ask for fewer frames or a smaller size"
        )));
    }

    let mut draw = make(width, height);
    let (w, h, pw, ph) = (width as usize, height as usize, padded_w as usize, padded_h as usize);
    let mut rgb = vec![0u8; rgb_len(width, height)];
    let mut y_plane = vec![0u8; pw * ph];
    let mut cb_plane = vec![128u8; pw / 2 * (ph / 2)];
    let mut cr_plane = vec![128u8; pw / 2 * (ph / 2)];

    let encoder_error = |e: less_avc::Error| EmulatorError::Media(format!("H.264 encoder failed: {e}"));
    let mux_error = |e: mp4::Error| EmulatorError::Media(format!("MP4 muxer failed: {e}"));
    // Samples go straight into the muxer (which buffers one second per chunk), so memory stays near the
    // size of the output file.
    let mut session: Option<(less_avc::LessEncoder, Mp4Writer)> = None;
    for index in 0..frames {
        draw(index, &mut rgb);
        rgb_to_ycbcr420(&rgb, w, h, pw, &mut y_plane, &mut cb_plane, &mut cr_plane);
        let picture = YCbCrImage {
            planes: Planes::YCbCr((
                DataPlane {
                    data: &y_plane,
                    stride: pw,
                    bit_depth: less_avc::BitDepth::Depth8,
                },
                DataPlane {
                    data: &cb_plane,
                    stride: pw / 2,
                    bit_depth: less_avc::BitDepth::Depth8,
                },
                DataPlane {
                    data: &cr_plane,
                    stride: pw / 2,
                    bit_depth: less_avc::BitDepth::Depth8,
                },
            )),
            width,
            height,
        };
        let (nal, writer) = match session.as_mut() {
            Some((encoder, writer)) => (encoder.encode(&picture).map_err(encoder_error)?, writer),
            None => {
                let (initial, encoder) = less_avc::LessEncoder::new(&picture).map_err(encoder_error)?;
                let mut sps = initial.sps.to_nal_unit();
                patch_sps(&mut sps, padded_w, padded_h, fps);
                let capacity = usize::try_from(total)
                    .unwrap_or(0)
                    .saturating_add(64 * frames as usize + 4096);
                let writer = start_mp4(width, height, fps, sps, initial.pps.to_nal_unit(), capacity)?;
                let (_, writer) = session.insert((encoder, writer));
                (initial.frame, writer)
            }
        };
        let nal = nal.to_nal_unit();
        let len = u32::try_from(nal.len())
            .map_err(|_| EmulatorError::Media(format!("H.264 frame of {} bytes is too large for MP4", nal.len())))?;
        let mut sample = Vec::with_capacity(nal.len() + 4);
        sample.extend_from_slice(&len.to_be_bytes());
        sample.extend_from_slice(&nal);
        let sample = mp4::Mp4Sample {
            start_time: u64::from(index) * SAMPLE_TICKS,
            duration: SAMPLE_TICKS as u32,
            rendering_offset: 0,
            is_sync: true,
            bytes: bytes::Bytes::from(sample),
        };
        writer.write_sample(1, &sample).map_err(mux_error)?;
    }
    let (_, mut writer) = session.ok_or_else(|| EmulatorError::Media("no video frame was encoded".into()))?;
    writer.write_end().map_err(mux_error)?;
    Ok(writer.into_writer().into_inner())
}

/// Most input images one edit combines.
pub const MAX_INPUTS: usize = 16;

/// Longest side of a video made from input images when the request names no size: the inputs' picture is
/// scaled down to fit it.
pub const DEFAULT_VIDEO_SIDE: u32 = 848;

/// How strongly edits pull the input towards the prompt's tint, out of 256.
const TINT_STRENGTH: i64 = 96;

/// How far an animation zooms in by its last frame, out of 256 (64: the last frame shows 75 % of the picture).
const ZOOM_STRENGTH: i64 = 64;

/// Decodes an input image (PNG, JPEG or WebP, sniffed from the bytes, whatever the label it came with) into
/// RGB8.
///
/// # Errors
///
/// [`EmulatorError::Media`] when the bytes are not an image of a supported format, do not decode, or are
/// larger than [`MAX_SIDE`] on a side.
pub fn decode_input(bytes: &[u8]) -> Result<image::RgbImage, EmulatorError> {
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| EmulatorError::Media(format!("cannot read the image: {e}")))?;
    if reader.format().is_none() {
        return Err(EmulatorError::Media(
            "cannot identify the image format (PNG, JPEG or WebP expected)".into(),
        ));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    reader.limits(limits);
    let decoded = reader
        .decode()
        .map_err(|e| EmulatorError::Media(format!("cannot decode the image: {e}")))?;
    if decoded.width() == 0 || decoded.height() == 0 {
        return Err(EmulatorError::Media("the image is empty".into()));
    }
    Ok(decoded.to_rgb8())
}

/// The size of the picture an edit starts from: the inputs side by side, each scaled to the first one's
/// height, then scaled down (keeping its shape) to fit `max_side` on its longest side.
///
/// # Errors
///
/// [`EmulatorError::Media`] when there is no input, more than [`MAX_INPUTS`], or an empty one.
pub fn input_size(inputs: &[image::RgbImage], max_side: u32) -> Result<(u32, u32), EmulatorError> {
    let canvas = Canvas::new(inputs)?;
    let (w, h) = (canvas.width, canvas.height);
    let max_side = i64::from(max_side.clamp(1, MAX_SIDE));
    let long = w.max(h);
    let (w, h) = if long > max_side {
        ((w * max_side / long).max(1), (h * max_side / long).max(1))
    } else {
        (w, h)
    };
    let side = |v: i64| u32::try_from(v.clamp(1, i64::from(MAX_SIDE))).unwrap_or(MAX_SIDE);
    Ok((side(w), side(h)))
}

/// An edit of `inputs` of exactly `width × height` pixels, encoded as `format`: the inputs side by side
/// (each scaled to the first one's height), stretched to the size, pulled towards a tint derived from
/// `prompt` and `seed` (its luminance is kept, so the input stays recognisable) and framed in a darker
/// shade of that tint. Integer-only and deterministic, like [`render_image`].
///
/// # Errors
///
/// [`EmulatorError::Media`] when there is no input, more than [`MAX_INPUTS`], a side is out of range (see
/// [`render_image`]), or the encoder fails.
pub fn edit_image(
    inputs: &[image::RgbImage],
    prompt: &str,
    seed: Option<u64>,
    width: u32,
    height: u32,
    format: ImageFormat,
) -> Result<Vec<u8>, EmulatorError> {
    check_side("image width", width)?;
    check_side("image height", height)?;
    let canvas = Canvas::new(inputs)?;
    let look = Look::new(prompt, seed);
    let mut rgb = vec![0u8; rgb_len(width, height)];
    canvas.render(&look, &mut rgb, width, height, canvas.full_view());
    encode_image(&rgb, width, height, format)
}

/// A real, playable MP4 (the format of [`render_video`]) whose frames move over the [`edit_image`] picture
/// of the same inputs, prompt and seed: frame 0 is exactly that picture, and each next frame zooms in a
/// little further towards a corner or an edge chosen from the prompt and seed (the last one shows 75 % of
/// the picture).
///
/// # Errors
///
/// Those of [`render_video`], and [`EmulatorError::Media`] when there is no input or more than
/// [`MAX_INPUTS`].
pub fn animate_image(
    inputs: &[image::RgbImage],
    prompt: &str,
    seed: Option<u64>,
    width: u32,
    height: u32,
    frames: u32,
    fps: u32,
) -> Result<Vec<u8>, EmulatorError> {
    let canvas = Canvas::new(inputs)?;
    let look = Look::new(prompt, seed);
    encode_video(width, height, frames, fps, |width, height| {
        move |index: u32, rgb: &mut [u8]| {
            let view = canvas.zoomed_view(&look, index, frames);
            canvas.render(&look, rgb, width, height, view);
        }
    })
}

/// What a prompt and seed do to an edit: the tint, the frame colour, where animations zoom to.
struct Look {
    tint: [i64; 3],
    frame: [i64; 3],
    /// Where the zoom ends, each axis in `0..=256` (0: left/top, 256: right/bottom).
    anchor: (i64, i64),
}

impl Look {
    fn new(prompt: &str, seed: Option<u64>) -> Self {
        let mut rng = Rng(picture_seed(prompt, seed) ^ 0x0ED1_7ED1_7ED1_7ED1);
        let tint = hsv(rng.range(0, 1535), rng.range(170, 230), 255);
        let frame = tint.map(|c| c * 3 / 5);
        // Eight anchors: the corners and the middles of the edges (never the centre, so frames also pan).
        const ANCHORS: [(i64, i64); 8] = [
            (0, 0),
            (128, 0),
            (256, 0),
            (256, 128),
            (256, 256),
            (128, 256),
            (0, 256),
            (0, 128),
        ];
        let anchor = ANCHORS[(rng.next() % 8) as usize];
        Look { tint, frame, anchor }
    }
}

/// The part of a [`Canvas`] a picture shows: `(left, top, width, height)`, in 1/256 pixel.
type View = (i64, i64, i64, i64);

/// Input images side by side, each scaled to the first one's height, sampled lazily (the whole row is
/// never materialised).
struct Canvas<'a> {
    /// Each image with its left edge and width on the canvas.
    parts: Vec<(&'a image::RgbImage, i64, i64)>,
    width: i64,
    height: i64,
}

impl<'a> Canvas<'a> {
    fn new(inputs: &'a [image::RgbImage]) -> Result<Self, EmulatorError> {
        let Some(first) = inputs.first() else {
            return Err(EmulatorError::Media("an edit needs at least one input image".into()));
        };
        if inputs.len() > MAX_INPUTS {
            return Err(EmulatorError::Media(format!(
                "at most {MAX_INPUTS} input images, got {}",
                inputs.len()
            )));
        }
        if inputs.iter().any(|i| i.width() == 0 || i.height() == 0) {
            return Err(EmulatorError::Media("an input image is empty".into()));
        }
        let height = i64::from(first.height());
        let mut parts = Vec::with_capacity(inputs.len());
        let mut left = 0;
        for input in inputs {
            let width = (i64::from(input.width()) * height / i64::from(input.height())).max(1);
            parts.push((input, left, width));
            left += width;
        }
        Ok(Canvas {
            parts,
            width: left,
            height,
        })
    }

    fn full_view(&self) -> View {
        (0, 0, self.width * 256, self.height * 256)
    }

    /// Frame `index` of `frames`: the full view at 0, then zooming in towards the look's anchor.
    fn zoomed_view(&self, look: &Look, index: u32, frames: u32) -> View {
        let progress = if frames > 1 {
            i64::from(index) * 256 / i64::from(frames - 1)
        } else {
            0
        };
        let zoom = 256 - ZOOM_STRENGTH * progress / 256;
        let (full_w, full_h) = (self.width * 256, self.height * 256);
        let (w, h) = (full_w * zoom / 256, full_h * zoom / 256);
        let (ax, ay) = look.anchor;
        ((full_w - w) * ax / 256, (full_h - h) * ay / 256, w, h)
    }

    /// The colour at `(u, v)` (1/256 pixel from the canvas's top-left corner), bilinear.
    fn sample(&self, u: i64, v: i64) -> [i64; 3] {
        let u = u.clamp(0, self.width * 256 - 1);
        let index = self
            .parts
            .iter()
            .rposition(|&(_, left, _)| left * 256 <= u)
            .unwrap_or(0);
        let (image, left, width) = self.parts[index];
        let (sw, sh) = (i64::from(image.width()), i64::from(image.height()));
        // Centre-aligned source positions, in 1/256 pixel.
        let sx = ((u - left * 256) * sw / width - 128).clamp(0, (sw - 1) * 256);
        let sy = (v * sh / self.height - 128).clamp(0, (sh - 1) * 256);
        let (x0, y0, fx, fy) = (sx >> 8, sy >> 8, sx & 255, sy & 255);
        let (x1, y1) = ((x0 + 1).min(sw - 1), (y0 + 1).min(sh - 1));
        let pixel = |x: i64, y: i64| image.get_pixel(x as u32, y as u32).0.map(i64::from);
        let (a, b, c, d) = (pixel(x0, y0), pixel(x1, y0), pixel(x0, y1), pixel(x1, y1));
        [0, 1, 2].map(|i| {
            let top = a[i] * (256 - fx) + b[i] * fx;
            let bottom = c[i] * (256 - fx) + d[i] * fx;
            (top * (256 - fy) + bottom * fy + (1 << 15)) >> 16
        })
    }

    /// Renders `view` into `out` (RGB8, `width × height`), tinted and framed.
    fn render(&self, look: &Look, out: &mut [u8], width: u32, height: u32, view: View) {
        let (w, h) = (i64::from(width), i64::from(height));
        let (left, top, vw, vh) = view;
        let border = (w.min(h) / 32).max(1);
        for (y, row) in out
            .chunks_exact_mut(width as usize * 3)
            .enumerate()
            .take(height as usize)
        {
            let y = y as i64;
            let v = top + (2 * y + 1) * vh / (2 * h);
            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                let x = x as i64;
                let color = if x < border || y < border || x >= w - border || y >= h - border {
                    look.frame
                } else {
                    let src = self.sample(left + (2 * x + 1) * vw / (2 * w), v);
                    let luma = (77 * src[0] + 150 * src[1] + 29 * src[2] + 128) >> 8;
                    [0, 1, 2].map(|c| {
                        let toned = look.tint[c] * luma / 255;
                        src[c] + (toned - src[c]) * TINT_STRENGTH / 256
                    })
                };
                for (dst, c) in px.iter_mut().zip(color) {
                    *dst = c.clamp(0, 255) as u8;
                }
            }
        }
    }
}

/// Video size `(width, height)` for a resolution label and an aspect ratio.
///
/// `resolution` is one of `240p`, `360p`, `480p`, `720p`, `1080p` (case-insensitive, the `p` optional;
/// `None` or anything else → `480p`) and names the **short** side. `aspect_ratio` is one of `16:9`,
/// `9:16`, `1:1`, `4:3`, `3:4`, `21:9` (`None` or anything else → `16:9`); the long side follows the ratio
/// from the label. Both sides are then rounded to the **nearest** multiple of 16, halves rounding up, so
/// `(480p, 16:9)` → `(848, 480)` (853.3 → 848), `(720p, 16:9)` → `(1280, 720)`, `(360p, 16:9)` →
/// `(640, 368)` and `(1080p, 16:9)` → `(1920, 1088)`.
pub fn video_size(resolution: Option<&str>, aspect_ratio: Option<&str>) -> (u32, u32) {
    let label = resolution.map(|r| r.trim().to_ascii_lowercase()).unwrap_or_default();
    let short: u32 = match label.trim_end_matches('p') {
        "240" => 240,
        "360" => 360,
        "720" => 720,
        "1080" => 1080,
        _ => 480,
    };
    // (long, short, landscape?)
    let (a, b, landscape) = match aspect_ratio.map(str::trim) {
        Some("9:16") => (16, 9, false),
        Some("1:1") => (1, 1, true),
        Some("4:3") => (4, 3, true),
        Some("3:4") => (4, 3, false),
        Some("21:9") => (21, 9, true),
        _ => (16, 9, true),
    };
    let round16 = |v: u32| v.saturating_add(8) / 16 * 16;
    // long = short × a / b, rounded to the nearest multiple of 16 (computed as (short·a/b + 8) / 16, exactly).
    let long = (short * a + 8 * b) / (16 * b) * 16;
    let short = round16(short);
    if landscape { (long, short) } else { (short, long) }
}

fn check_side(what: &str, value: u32) -> Result<(), EmulatorError> {
    if value == 0 || value > MAX_SIDE {
        return Err(EmulatorError::Media(format!(
            "{what} must be between 1 and {MAX_SIDE} pixels, got {value}"
        )));
    }
    Ok(())
}

fn rgb_len(width: u32, height: u32) -> usize {
    width as usize * height as usize * 3
}

/// splitmix64: a tiny, well-mixed deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish integer in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi - lo + 1) as u64;
        lo + (self.next() % span) as i64
    }
}

/// Unit vectors × 64 for 16 directions, 22.5° apart.
const DIRECTIONS: [(i64, i64); 16] = [
    (64, 0),
    (59, 24),
    (45, 45),
    (24, 59),
    (0, 64),
    (-24, 59),
    (-45, 45),
    (-59, 24),
    (-64, 0),
    (-59, -24),
    (-45, -45),
    (-24, -59),
    (0, -64),
    (24, -59),
    (45, -45),
    (59, -24),
];

/// Gradient position scale: `t` runs over `0..=T_ONE` across the still picture.
const T_ONE: i64 = 1024;

struct Circle {
    cx: i64,
    cy: i64,
    r: i64,
    color: [i64; 3],
    alpha: i64,
}

/// Everything that defines a picture, derived from its seed and size.
struct Scene {
    width: i64,
    height: i64,
    colors: Vec<[i64; 3]>,
    dir: (i64, i64),
    p_min: i64,
    /// `T_ONE / span` in 16.16 fixed point.
    t_scale: i64,
    band_dir: (i64, i64),
    band_period: i64,
    band_amp: i64,
    circles: Vec<Circle>,
    /// Pan per frame, in pixels.
    velocity: (i64, i64),
}

impl Scene {
    fn new(seed: u64, width: u32, height: u32) -> Self {
        let mut rng = Rng(seed);
        let (w, h) = (i64::from(width), i64::from(height));
        let n_colors = if rng.next() % 2 == 0 { 2 } else { 3 };
        let base_hue = rng.range(0, 1535);
        let colors = (0..n_colors)
            .map(|i| {
                let hue = (base_hue + i * rng.range(256, 640)) % 1536;
                hsv(hue, rng.range(110, 240), rng.range(150, 255))
            })
            .collect();
        let dir = DIRECTIONS[(rng.next() % 16) as usize];
        let corners = [0, dir.0 * (w - 1)].into_iter().flat_map(|x| [x, x + dir.1 * (h - 1)]);
        let (p_min, p_max) = corners.fold((i64::MAX, i64::MIN), |(lo, hi), p| (lo.min(p), hi.max(p)));
        let span = (p_max - p_min).max(1);
        let band_dir = DIRECTIONS[(rng.next() % 16) as usize];
        let short = w.min(h);
        let band_period = 64 * (short / rng.range(3, 8)).max(4);
        let band_amp = rng.range(8, 28);
        let n_circles = rng.range(3, 6);
        let circles = (0..n_circles)
            .map(|_| {
                let hue = rng.range(0, 1535);
                Circle {
                    cx: rng.range(0, w - 1),
                    cy: rng.range(0, h - 1),
                    r: (short * rng.range(6, 24) / 100).max(1),
                    color: hsv(hue, rng.range(60, 255), rng.range(120, 255)),
                    alpha: rng.range(80, 170),
                }
            })
            .collect();
        let motion = DIRECTIONS[(rng.next() % 16) as usize];
        let speed = (short / 100).max(1) * rng.range(1, 3);
        let velocity = ((motion.0 * speed) / 64, (motion.1 * speed) / 64);
        let velocity = if velocity == (0, 0) { (speed, 0) } else { velocity };
        Self {
            width: w,
            height: h,
            colors,
            dir,
            p_min,
            t_scale: (T_ONE << 16) / span,
            band_dir,
            band_period,
            band_amp,
            circles,
            velocity,
        }
    }

    /// Gradient colour at position `t` (any integer; mirrored into `0..=T_ONE`).
    fn gradient(&self, t: i64) -> [i64; 3] {
        let t = t.rem_euclid(2 * T_ONE);
        let t = if t > T_ONE { 2 * T_ONE - t } else { t };
        let segments = self.colors.len() as i64 - 1;
        let pos = t * segments;
        let seg = (pos / T_ONE).min(segments - 1);
        let frac = pos - seg * T_ONE;
        let (a, b) = (self.colors[seg as usize], self.colors[seg as usize + 1]);
        [0, 1, 2].map(|c| a[c] + (b[c] - a[c]) * frac / T_ONE)
    }

    /// Render into `out` (RGB8, `width × height`), the picture shifted by `(ox, oy)` pixels.
    fn render(&self, out: &mut [u8], ox: i64, oy: i64) {
        let (w, h) = (self.width, self.height);
        let (dx, dy) = self.dir;
        let (bx, by) = self.band_dir;
        let period = self.band_period;
        let mut active: Vec<(&Circle, i64)> = Vec::with_capacity(self.circles.len());
        for (y, row) in out.chunks_exact_mut(w as usize * 3).enumerate().take(h as usize) {
            let py = y as i64 + oy;
            // Circles live on a torus of the picture's size so that panning wraps them around seamlessly.
            let wy = py.rem_euclid(h);
            active.clear();
            for circle in &self.circles {
                let d = (wy - circle.cy).abs();
                let d = d.min(h - d);
                if d <= circle.r + 1 {
                    active.push((circle, d * d));
                }
            }
            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                let px_x = x as i64 + ox;
                let p = px_x * dx + py * dy;
                let t = ((p - self.p_min) * self.t_scale) >> 16;
                let mut color = self.gradient(t);

                let phase = (px_x * bx + py * by).rem_euclid(period);
                let tri = (2 * phase - period).abs() * 256 / period; // 0..=256
                let factor = 256 - self.band_amp + self.band_amp * tri / 128;
                for c in &mut color {
                    *c = (*c * factor) >> 8;
                }

                if !active.is_empty() {
                    let wx = px_x.rem_euclid(w);
                    for &(circle, dy2) in &active {
                        let d = (wx - circle.cx).abs();
                        let d = d.min(w - d);
                        let d2 = d * d + dy2;
                        let (inner, outer) = ((circle.r - 1).max(0).pow(2), (circle.r + 1).pow(2));
                        if d2 >= outer {
                            continue;
                        }
                        let alpha = if d2 <= inner {
                            circle.alpha
                        } else {
                            circle.alpha * (outer - d2) / (outer - inner).max(1)
                        };
                        for (c, target) in color.iter_mut().zip(circle.color) {
                            *c += (target - *c) * alpha / 256;
                        }
                    }
                }
                for (dst, c) in px.iter_mut().zip(color) {
                    *dst = c.clamp(0, 255) as u8;
                }
            }
        }
    }
}

/// HSV to RGB with hue in `0..1536` (six 256-wide sectors) and saturation/value in `0..=255`.
fn hsv(hue: i64, sat: i64, val: i64) -> [i64; 3] {
    let sector = hue / 256;
    let f = hue % 256;
    let p = val * (255 - sat) / 255;
    let q = val * (255 * 256 - sat * f) / (255 * 256);
    let t = val * (255 * 256 - sat * (256 - f)) / (255 * 256);
    match sector {
        0 => [val, t, p],
        1 => [q, val, p],
        2 => [p, val, t],
        3 => [p, q, val],
        4 => [t, p, val],
        _ => [val, p, q],
    }
}

/// Full-range BT.601 (JPEG) RGB → YCbCr 4:2:0 into padded planes (luma stride `stride`, chroma `stride / 2`).
/// `w` and `h` must be even.
fn rgb_to_ycbcr420(rgb: &[u8], w: usize, h: usize, stride: usize, y: &mut [u8], cb: &mut [u8], cr: &mut [u8]) {
    let luma = |r: i32, g: i32, b: i32| ((77 * r + 150 * g + 29 * b + 128) >> 8).clamp(0, 255) as u8;
    for row in 0..h {
        let src = &rgb[row * w * 3..(row + 1) * w * 3];
        let dst = &mut y[row * stride..row * stride + w];
        for (d, s) in dst.iter_mut().zip(src.chunks_exact(3)) {
            *d = luma(i32::from(s[0]), i32::from(s[1]), i32::from(s[2]));
        }
    }
    let c_stride = stride / 2;
    for row in 0..h / 2 {
        let top = &rgb[2 * row * w * 3..(2 * row + 1) * w * 3];
        let bottom = &rgb[(2 * row + 1) * w * 3..(2 * row + 2) * w * 3];
        for col in 0..w / 2 {
            let i = col * 6;
            let sum = |c: usize| {
                i32::from(top[i + c])
                    + i32::from(top[i + 3 + c])
                    + i32::from(bottom[i + c])
                    + i32::from(bottom[i + 3 + c])
            };
            let (r, g, b) = (sum(0), sum(1), sum(2)); // 4× the average
            cb[row * c_stride + col] = (((-43 * r - 85 * g + 128 * b + 512) >> 10) + 128).clamp(0, 255) as u8;
            cr[row * c_stride + col] = (((128 * r - 107 * g - 21 * b + 512) >> 10) + 128).clamp(0, 255) as u8;
        }
    }
}

/// H.264 levels (Table A-1 and level 6.x): `(level_idc, max macroblocks per second, max frame size in
/// macroblocks)`.
const LEVELS: [(u8, u64, u64); 19] = [
    (10, 1_485, 99),
    (11, 3_000, 396),
    (12, 6_000, 396),
    (13, 11_880, 396),
    (20, 11_880, 396),
    (21, 19_800, 792),
    (22, 20_250, 1_620),
    (30, 40_500, 1_620),
    (31, 108_000, 3_600),
    (32, 216_000, 5_120),
    (40, 245_760, 8_192),
    (41, 245_760, 8_192),
    (42, 522_240, 8_704),
    (50, 589_824, 22_080),
    (51, 983_040, 36_864),
    (52, 2_073_600, 36_864),
    (60, 4_177_920, 139_264),
    (61, 8_355_840, 139_264),
    (62, 16_711_680, 139_264),
];

/// `less-avc` always writes profile Baseline with no constraint flags and level 1.0 whatever the size.
/// Rewrite those header bytes (which sit before any Exp-Golomb field, so no emulation-prevention byte can
/// be affected) to Constrained Baseline (the stream uses only I_PCM macroblocks, one slice per picture) and
/// the smallest level whose frame-size and macroblock-rate limits fit (bit-rate limits cannot be met by
/// lossless frames and are ignored), so that strict players accept the stream.
fn patch_sps(sps: &mut [u8], padded_w: u32, padded_h: u32, fps: u32) {
    // [nal header (type 7), profile_idc 66, constraint flags, level_idc, …]
    if sps.len() < 5 || sps[0] & 0x1f != 7 || sps[1] != 66 || sps[2] != 0 || sps[4] == 0 {
        return;
    }
    let (mbs_w, mbs_h) = (u64::from(padded_w / 16), u64::from(padded_h / 16));
    let frame_mbs = mbs_w * mbs_h;
    let mbs_per_second = frame_mbs * u64::from(fps);
    let level = LEVELS
        .iter()
        .find(|&&(_, max_mbps, max_fs)| {
            // Each side is also limited to sqrt(8 × MaxFS) macroblocks.
            frame_mbs <= max_fs
                && mbs_w * mbs_w <= 8 * max_fs
                && mbs_h * mbs_h <= 8 * max_fs
                && mbs_per_second <= max_mbps
        })
        .map_or(62, |&(idc, _, _)| idc);
    sps[2] = 0xC0; // constraint_set0_flag (Baseline) + constraint_set1_flag (Main) ⇒ Constrained Baseline
    sps[3] = level;
}

type Mp4Writer = mp4::Mp4Writer<Cursor<Vec<u8>>>;

/// Ticks per frame: the movie and track timescale is `fps × SAMPLE_TICKS`.
const SAMPLE_TICKS: u64 = 1000;

/// Start an in-memory MP4 with one `avc1` video track (track id 1) whose `avcC` holds `sps` and `pps`.
fn start_mp4(
    width: u32,
    height: u32,
    fps: u32,
    sps: Vec<u8>,
    pps: Vec<u8>,
    capacity: usize,
) -> Result<Mp4Writer, EmulatorError> {
    let mux_error = |e: mp4::Error| EmulatorError::Media(format!("MP4 muxer failed: {e}"));
    let side = |v: u32| {
        u16::try_from(v).map_err(|_| EmulatorError::Media(format!("video side {v} does not fit an MP4 header")))
    };
    // One timescale for movie and track so that durations are exact (the mp4 crate converts per sample).
    let timescale = fps * SAMPLE_TICKS as u32;
    let config = mp4::Mp4Config {
        major_brand: mp4::FourCC::from(*b"isom"),
        minor_version: 512,
        compatible_brands: [b"isom", b"iso2", b"avc1", b"mp41"]
            .map(|b| mp4::FourCC::from(*b))
            .to_vec(),
        timescale,
    };
    let mut writer =
        mp4::Mp4Writer::write_start(Cursor::new(Vec::with_capacity(capacity)), &config).map_err(mux_error)?;
    writer
        .add_track(&mp4::TrackConfig {
            track_type: mp4::TrackType::Video,
            timescale,
            language: String::from("und"),
            media_conf: mp4::MediaConfig::AvcConfig(mp4::AvcConfig {
                width: side(width)?,
                height: side(height)?,
                seq_param_set: sps,
                pic_param_set: pps,
            }),
        })
        .map_err(mux_error)?;
    Ok(writer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8], format: ImageFormat) -> image::DynamicImage {
        let fmt = match format {
            ImageFormat::Png => image::ImageFormat::Png,
            ImageFormat::Jpeg => image::ImageFormat::Jpeg,
            ImageFormat::Webp => image::ImageFormat::WebP,
        };
        assert_eq!(image::guess_format(bytes).unwrap(), fmt);
        image::load_from_memory_with_format(bytes, fmt).unwrap()
    }

    const FORMATS: [ImageFormat; 3] = [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Webp];

    #[test]
    fn images_decode_with_exact_dimensions() {
        for format in FORMATS {
            for (w, h) in [(1, 1), (64, 48), (333, 17), (17, 333), (512, 512)] {
                let bytes = render_image("a red fox", Some(7), w, h, format).unwrap();
                let img = decode(&bytes, format);
                assert_eq!((img.width(), img.height()), (w, h), "{format:?} {w}x{h}");
            }
        }
    }

    #[test]
    fn png_and_webp_are_lossless_and_agree() {
        let png = decode(
            &render_image("lossless", None, 97, 61, ImageFormat::Png).unwrap(),
            ImageFormat::Png,
        );
        let webp = decode(
            &render_image("lossless", None, 97, 61, ImageFormat::Webp).unwrap(),
            ImageFormat::Webp,
        );
        assert_eq!(png.to_rgb8(), webp.to_rgb8());
    }

    #[test]
    fn images_are_not_flat() {
        let img = decode(
            &render_image("a cat", None, 128, 128, ImageFormat::Png).unwrap(),
            ImageFormat::Png,
        )
        .to_rgb8();
        let mut colors: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        colors.sort_unstable();
        colors.dedup();
        assert!(colors.len() > 200, "only {} distinct colours", colors.len());
    }

    #[test]
    fn images_are_deterministic_and_prompt_dependent() {
        for format in FORMATS {
            let a = render_image("a lighthouse at dusk", Some(42), 200, 120, format).unwrap();
            let b = render_image("a lighthouse at dusk", Some(42), 200, 120, format).unwrap();
            assert_eq!(a, b, "{format:?} not deterministic");
            let other_prompt = render_image("a lighthouse at dawn", Some(42), 200, 120, format).unwrap();
            assert_ne!(a, other_prompt, "{format:?} ignores the prompt");
            let other_seed = render_image("a lighthouse at dusk", Some(43), 200, 120, format).unwrap();
            assert_ne!(a, other_seed, "{format:?} ignores the seed");
            let no_seed = render_image("a lighthouse at dusk", None, 200, 120, format).unwrap();
            assert_ne!(a, no_seed, "{format:?} ignores the seed");
        }
    }

    #[test]
    fn picture_seed_is_fnv1a() {
        // Reference FNV-1a 64 values.
        assert_eq!(picture_seed("", None), 0xcbf2_9ce4_8422_2325);
        assert_eq!(picture_seed("a", None), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(picture_seed("foobar", None), 0x8594_4171_f739_67e8);
        assert_ne!(picture_seed("foobar", None), picture_seed("foobar", Some(0)));
        assert_ne!(picture_seed("foobar", Some(1)), picture_seed("foobar", Some(2)));
    }

    #[test]
    fn image_size_errors() {
        for (w, h) in [(0, 10), (10, 0), (MAX_SIDE + 1, 10), (10, MAX_SIDE + 1)] {
            let err = render_image("x", None, w, h, ImageFormat::Png).unwrap_err();
            let EmulatorError::Media(msg) = &err else {
                panic!("wrong variant: {err:?}")
            };
            assert!(msg.contains("between 1 and 4096"), "{msg}");
            assert!(msg.contains(if w == 10 { "height" } else { "width" }), "{msg}");
        }
        assert!(render_image("x", None, MAX_SIDE, 1, ImageFormat::Png).is_ok());
    }

    #[test]
    fn image_format_names() {
        assert_eq!(ImageFormat::Png.mime(), "image/png");
        assert_eq!(ImageFormat::Jpeg.mime(), "image/jpeg");
        assert_eq!(ImageFormat::Webp.mime(), "image/webp");
        assert_eq!(ImageFormat::Jpeg.extension(), "jpg");
        assert_eq!(serde_json::to_string(&ImageFormat::Webp).unwrap(), "\"webp\"");
        assert_eq!(
            serde_json::from_str::<ImageFormat>("\"jpeg\"").unwrap(),
            ImageFormat::Jpeg
        );
    }

    fn read_mp4(bytes: &[u8]) -> mp4::Mp4Reader<Cursor<&[u8]>> {
        mp4::Mp4Reader::read_header(Cursor::new(bytes), bytes.len() as u64).unwrap()
    }

    fn check_mp4(bytes: &[u8], width: u16, height: u16, frames: u32, fps: u32) {
        let mut reader = read_mp4(bytes);
        assert_eq!(reader.tracks().len(), 1);
        let (&track_id, track) = reader.tracks().iter().next().unwrap();
        assert_eq!(track.track_type().unwrap(), mp4::TrackType::Video);
        assert_eq!(track.media_type().unwrap(), mp4::MediaType::H264);
        assert_eq!(track.box_type().unwrap(), mp4::FourCC::from(*b"avc1"));
        assert_eq!((track.width(), track.height()), (width, height));
        assert_eq!(track.sample_count(), frames);
        let expected = std::time::Duration::from_secs_f64(f64::from(frames) / f64::from(fps));
        let diff = track.duration().abs_diff(expected);
        assert!(
            diff < std::time::Duration::from_millis(2),
            "{:?} vs {expected:?}",
            track.duration()
        );
        assert!(reader.duration().abs_diff(expected) < std::time::Duration::from_millis(2));
        let sps = track.sequence_parameter_set().unwrap().to_vec();
        assert_eq!(sps[0] & 0x1f, 7);
        assert_eq!(track.picture_parameter_set().unwrap()[0] & 0x1f, 8);
        for sample_id in 1..=frames {
            let sample = reader.read_sample(track_id, sample_id).unwrap().unwrap();
            assert!(sample.is_sync);
            // AVCC: a single length-prefixed IDR slice NAL unit, no Annex-B start code.
            let len = u32::from_be_bytes(sample.bytes[..4].try_into().unwrap()) as usize;
            assert_eq!(len + 4, sample.bytes.len());
            assert_eq!(sample.bytes[4] & 0x1f, 5, "not an IDR slice");
        }
    }

    #[test]
    fn video_parses_as_mp4() {
        let bytes = render_video("a dancing robot", Some(1), 176, 144, 12, 24).unwrap();
        check_mp4(&bytes, 176, 144, 12, 24);
        // Sizes that are not macroblock multiples are kept (cropped in the SPS).
        let bytes = render_video("a dancing robot", Some(1), 100, 58, 3, 7).unwrap();
        check_mp4(&bytes, 100, 58, 3, 7);
        // Odd sizes are rounded up to even.
        let bytes = render_video("a dancing robot", Some(1), 33, 1, 1, 1).unwrap();
        check_mp4(&bytes, 34, 2, 1, 1);
    }

    #[test]
    fn video_is_deterministic_and_animated() {
        let a = render_video("waves", Some(3), 64, 48, 4, 8).unwrap();
        let b = render_video("waves", Some(3), 64, 48, 4, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, render_video("wave", Some(3), 64, 48, 4, 8).unwrap());
        let mut reader = read_mp4(&a);
        let first = reader.read_sample(1, 1).unwrap().unwrap().bytes;
        let last = reader.read_sample(1, 4).unwrap().unwrap().bytes;
        assert_ne!(first, last, "frames do not move");
    }

    #[test]
    fn video_first_frame_is_the_image() {
        // The luma of frame 0 equals the luma of the still picture (I_PCM is lossless).
        let (w, h) = (32u32, 32u32);
        let video = render_video("same", None, w, h, 1, 1).unwrap();
        let png = render_image("same", None, w, h, ImageFormat::Png).unwrap();
        let rgb = decode(&png, ImageFormat::Png).to_rgb8();
        let mut reader = read_mp4(&video);
        let sample = reader.read_sample(1, 1).unwrap().unwrap().bytes;
        // The 32x32 picture is 4 macroblocks; macroblock 0 starts byte-aligned after the slice header, and its
        // first 16 bytes are the first luma row.
        let expected: Vec<u8> = rgb
            .pixels()
            .take(16)
            .map(|p| {
                let [r, g, b] = p.0.map(i32::from);
                ((77 * r + 150 * g + 29 * b + 128) >> 8) as u8
            })
            .collect();
        let nal = &sample[4..];
        assert!(
            nal.windows(16).any(|w| w == expected.as_slice()),
            "first luma row not found in the IDR slice"
        );
    }

    #[test]
    fn video_errors() {
        let cases = [
            (0, 10, 1, 1, "width"),
            (10, 0, 1, 1, "height"),
            (MAX_SIDE + 1, 10, 1, 1, "width"),
            (10, MAX_SIDE + 2, 1, 1, "height"),
            (16, 16, 0, 1, "frame count"),
            (16, 16, MAX_FRAMES + 1, 1, "frame count"),
            (16, 16, 1, 0, "frame rate"),
            (16, 16, 1, MAX_FPS + 1, "frame rate"),
            (MAX_SIDE, MAX_SIDE, 100, 24, "too large"),
        ];
        for (w, h, frames, fps, needle) in cases {
            let err = render_video("x", None, w, h, frames, fps).unwrap_err();
            let EmulatorError::Media(msg) = &err else {
                panic!("wrong variant: {err:?}")
            };
            assert!(msg.contains(needle), "{msg}");
        }
    }

    #[test]
    fn video_sizes() {
        assert_eq!(video_size(None, None), (848, 480));
        assert_eq!(video_size(Some("480p"), Some("16:9")), (848, 480));
        assert_eq!(video_size(Some("720p"), None), (1280, 720));
        assert_eq!(video_size(Some("1080P"), Some("16:9")), (1920, 1088));
        assert_eq!(video_size(Some("1080"), Some("9:16")), (1088, 1920));
        assert_eq!(video_size(Some("360p"), Some("16:9")), (640, 368));
        assert_eq!(video_size(Some("240p"), Some("16:9")), (432, 240));
        assert_eq!(video_size(Some("480p"), Some("1:1")), (480, 480));
        assert_eq!(video_size(Some("480p"), Some("4:3")), (640, 480));
        assert_eq!(video_size(Some("480p"), Some("3:4")), (480, 640));
        assert_eq!(video_size(Some("720p"), Some("21:9")), (1680, 720));
        assert_eq!(video_size(Some("4k"), Some("weird")), (848, 480));
        for res in ["240p", "360p", "480p", "720p", "1080p"] {
            for ar in ["16:9", "9:16", "1:1", "4:3", "3:4", "21:9"] {
                let (w, h) = video_size(Some(res), Some(ar));
                assert!(
                    w % 16 == 0 && h % 16 == 0 && w <= MAX_SIDE && h <= MAX_SIDE,
                    "{res} {ar}: {w}x{h}"
                );
            }
        }
    }

    fn quadrants(w: u32, h: u32) -> image::RgbImage {
        image::RgbImage::from_fn(w, h, |x, y| match (x < w / 2, y < h / 2) {
            (true, true) => image::Rgb([230, 20, 20]),
            (false, true) => image::Rgb([20, 200, 20]),
            (true, false) => image::Rgb([20, 20, 230]),
            (false, false) => image::Rgb([230, 230, 20]),
        })
    }

    fn flat(w: u32, h: u32, color: [u8; 3]) -> image::RgbImage {
        image::RgbImage::from_pixel(w, h, image::Rgb(color))
    }

    #[test]
    fn edits_keep_the_input_recognisable_at_any_size() {
        let input = quadrants(64, 48);
        for format in FORMATS {
            for (w, h) in [(64, 48), (128, 96), (33, 17), (1, 1)] {
                let bytes = edit_image(std::slice::from_ref(&input), "make it gold", Some(1), w, h, format).unwrap();
                let img = decode(&bytes, format).to_rgb8();
                assert_eq!(img.dimensions(), (w, h), "{format:?}");
            }
        }
        let img = decode(
            &edit_image(&[input], "make it gold", Some(1), 128, 96, ImageFormat::Png).unwrap(),
            ImageFormat::Png,
        )
        .to_rgb8();
        // Each quadrant keeps its dominant channel.
        let [tl, tr, bl, br] = [(32, 24), (96, 24), (32, 72), (96, 72)].map(|(x, y)| img.get_pixel(x, y).0);
        assert!(tl[0] > tl[1] && tl[0] > tl[2], "{tl:?}");
        assert!(tr[1] > tr[0] && tr[1] > tr[2], "{tr:?}");
        assert!(bl[2] > bl[0] && bl[2] > bl[1], "{bl:?}");
        assert!(br[0] > br[2] && br[1] > br[2], "{br:?}");
        // A frame in one colour.
        assert_eq!(img.get_pixel(0, 0), img.get_pixel(127, 95));
        assert_eq!(img.get_pixel(0, 50), img.get_pixel(64, 0));
        assert_ne!(img.get_pixel(0, 0), img.get_pixel(32, 24));
    }

    #[test]
    fn edits_are_deterministic_and_depend_on_prompt_seed_and_input() {
        let input = [quadrants(40, 30)];
        let a = edit_image(&input, "gold", Some(2), 40, 30, ImageFormat::Png).unwrap();
        assert_eq!(
            a,
            edit_image(&input, "gold", Some(2), 40, 30, ImageFormat::Png).unwrap()
        );
        assert_ne!(
            a,
            edit_image(&input, "silver", Some(2), 40, 30, ImageFormat::Png).unwrap()
        );
        assert_ne!(
            a,
            edit_image(&input, "gold", Some(3), 40, 30, ImageFormat::Png).unwrap()
        );
        let other = [flat(40, 30, [9, 9, 9])];
        assert_ne!(
            a,
            edit_image(&other, "gold", Some(2), 40, 30, ImageFormat::Png).unwrap()
        );
    }

    #[test]
    fn several_inputs_are_side_by_side() {
        let inputs = [flat(32, 48, [230, 20, 20]), flat(64, 96, [20, 20, 230])];
        // The second is scaled to the first one's height: 32 + 32 wide.
        assert_eq!(input_size(&inputs, MAX_SIDE).unwrap(), (64, 48));
        let img = decode(
            &edit_image(&inputs, "x", None, 64, 48, ImageFormat::Png).unwrap(),
            ImageFormat::Png,
        )
        .to_rgb8();
        let (left, right) = (img.get_pixel(16, 24).0, img.get_pixel(48, 24).0);
        assert!(left[0] > left[2] + 60 && right[2] > right[0] + 60, "{left:?} {right:?}");
    }

    #[test]
    fn input_sizes_and_errors() {
        assert_eq!(input_size(&[flat(4000, 1000, [0; 3])], 848).unwrap(), (848, 212));
        assert_eq!(input_size(&[flat(10, 20, [0; 3])], 848).unwrap(), (10, 20));
        assert!(input_size(&[], 848).is_err());
        let many: Vec<_> = (0..=MAX_INPUTS).map(|_| flat(1, 1, [0; 3])).collect();
        assert!(input_size(&many, 848).is_err());
        assert!(edit_image(&[], "x", None, 8, 8, ImageFormat::Png).is_err());
        assert!(edit_image(&[flat(2, 2, [0; 3])], "x", None, 0, 8, ImageFormat::Png).is_err());
        assert!(animate_image(&[], "x", None, 8, 8, 2, 8).is_err());
    }

    #[test]
    fn inputs_decode_whatever_their_format() {
        let input = quadrants(20, 10);
        for format in [
            image::ImageFormat::Png,
            image::ImageFormat::Jpeg,
            image::ImageFormat::WebP,
        ] {
            let mut bytes = Vec::new();
            input.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
            assert_eq!(decode_input(&bytes).unwrap().dimensions(), (20, 10), "{format:?}");
        }
        let err = decode_input(b"hello, not an image").unwrap_err();
        assert!(err.to_string().contains("cannot identify"), "{err}");
        // A PNG signature with garbage after it.
        let err = decode_input(b"\x89PNG\r\n\x1a\n garbage").unwrap_err();
        assert!(err.to_string().contains("cannot decode"), "{err}");
        let mut wide = Vec::new();
        flat(MAX_SIDE + 1, 1, [0; 3])
            .write_to(&mut Cursor::new(&mut wide), image::ImageFormat::Png)
            .unwrap();
        assert!(decode_input(&wide).is_err());
    }

    #[test]
    fn animations_move_over_the_edit() {
        let input = [quadrants(64, 48)];
        let video = animate_image(&input, "zoom", Some(4), 64, 48, 6, 8).unwrap();
        check_mp4(&video, 64, 48, 6, 8);
        assert_eq!(video, animate_image(&input, "zoom", Some(4), 64, 48, 6, 8).unwrap());
        let mut reader = read_mp4(&video);
        let frames: Vec<_> = (1..=6)
            .map(|i| reader.read_sample(1, i).unwrap().unwrap().bytes)
            .collect();
        assert!(frames.windows(2).all(|w| w[0] != w[1]), "every frame moves");
        // Frame 0 is the edit: its luma row 8 (first macroblock) is in the first sample.
        let edit = decode(
            &edit_image(&input, "zoom", Some(4), 64, 48, ImageFormat::Png).unwrap(),
            ImageFormat::Png,
        )
        .to_rgb8();
        let row: Vec<u8> = (0..16)
            .map(|x| {
                let [r, g, b] = edit.get_pixel(x, 8).0.map(i32::from);
                ((77 * r + 150 * g + 29 * b + 128) >> 8) as u8
            })
            .collect();
        assert!(frames[0].windows(16).any(|w| w == row.as_slice()));
        // A single frame is the edit; odd sizes round up like every video.
        check_mp4(
            &animate_image(&input, "zoom", None, 33, 17, 1, 8).unwrap(),
            34,
            18,
            1,
            8,
        );
    }

    #[test]
    #[ignore = "timing and sample output; run with --release -- --ignored --nocapture"]
    fn timings() {
        use std::time::Instant;
        for format in FORMATS {
            let start = Instant::now();
            let bytes = render_image("benchmark prompt", Some(9), 1024, 1024, format).unwrap();
            println!("1024x1024 {format:?}: {:?}, {} bytes", start.elapsed(), bytes.len());
            std::fs::write(format!("/tmp/hf-media-sample.{}", format.extension()), &bytes).unwrap();
        }
        let start = Instant::now();
        let bytes = render_video("benchmark prompt", Some(9), 848, 480, 16, 8).unwrap();
        println!("848x480x16 MP4: {:?}, {} bytes", start.elapsed(), bytes.len());
        std::fs::write("/tmp/hf-media-sample.mp4", &bytes).unwrap();
        let source = render_image("a source picture", Some(1), 640, 480, ImageFormat::Png).unwrap();
        let inputs = [decode_input(&source).unwrap(), quadrants(320, 480)];
        let start = Instant::now();
        let bytes = edit_image(&inputs, "benchmark prompt", Some(9), 1024, 480, ImageFormat::Png).unwrap();
        println!(
            "1024x480 edit of two inputs: {:?}, {} bytes",
            start.elapsed(),
            bytes.len()
        );
        std::fs::write("/tmp/hf-media-sample-edit.png", &bytes).unwrap();
        let start = Instant::now();
        let bytes = animate_image(&inputs[..1], "benchmark prompt", Some(9), 640, 480, 16, 8).unwrap();
        println!("640x480x16 animation: {:?}, {} bytes", start.elapsed(), bytes.len());
        std::fs::write("/tmp/hf-media-sample-animation.mp4", &bytes).unwrap();
    }
}
