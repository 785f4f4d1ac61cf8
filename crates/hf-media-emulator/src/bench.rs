//! Benchmark-only routes (`cargo xtask bench`), mounted under `/_emulator/bench`:
//!
//! - `GET /_emulator/bench/video?bytes=N`: a synthetic but well-formed MP4 of exactly `N` bytes (`ftyp`
//!   `isom`, a `moov` with its `mvhd`, then one `mdat` of zeros), **streamed** in 64 KiB chunks without ever
//!   being held in memory, so gigabyte downloads cost the emulator nothing but the socket.
//! - `{router}` = `/_emulator/bench/{bytes}`: a router base whose providers answer at once, whatever the
//!   model, with media of about `bytes` bytes (benchmarks measure the client, not the renderer):
//!   - `POST {router}/fal-ai/{app…}`: fal's synchronous answer, `{"video": {"url": …/bench/video?bytes=N}}`;
//!   - `POST {router}/hf-inference/models/{model…}`: raw PNG bytes, a real noise picture (so it barely
//!     compresses) whose file is about `bytes` long, rendered once per size and then served from memory.
//!
//! The Hub (`/api/models/…`) stays the emulator's own, so clients resolve real model ids as usual.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::{BufMut, Bytes, BytesMut};
use image::ImageEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use serde::Deserialize;
use serde_json::json;

use crate::support::{self, Shared};

/// Size of each streamed chunk of a bench video.
const CHUNK: usize = 64 * 1024;
/// Zeros that every `mdat` chunk is sliced from (no allocation per chunk).
static ZEROS: [u8; CHUNK] = [0; CHUNK];
/// Largest bench image (they are kept in memory).
const MAX_IMAGE_BYTES: u64 = 64 * 1024 * 1024;
/// Largest bench video (the sink's default limit is 2 GiB; allow going past it to test that).
const MAX_VIDEO_BYTES: u64 = 16 * 1024 * 1024 * 1024;

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/video", get(video))
        .route("/{bytes}/fal-ai/{*app}", post(fal_ai))
        .route("/{bytes}/hf-inference/models/{*model}", post(hf_inference))
}

#[derive(Deserialize)]
struct VideoQuery {
    bytes: u64,
}

/// `ftyp` (`isom`, compatible `isom`, `mp42`) + `moov` (`mvhd` only) + the `mdat` header for a file of
/// `total` bytes; returns the head and how many payload bytes follow it.
fn mp4_head(total: u64) -> (Bytes, u64) {
    let mut head = BytesMut::with_capacity(160);
    head.put_u32(24);
    head.put_slice(b"ftypisom");
    head.put_u32(0x200);
    head.put_slice(b"isommp42");
    // moov { mvhd v0 }: 8 + 108 bytes.
    head.put_u32(116);
    head.put_slice(b"moov");
    head.put_u32(108);
    head.put_slice(b"mvhd");
    head.put_u32(0); // version 0, flags 0
    head.put_u32(0); // creation time
    head.put_u32(0); // modification time
    head.put_u32(1000); // timescale
    head.put_u32(0); // duration
    head.put_u32(0x0001_0000); // rate 1.0
    head.put_u16(0x0100); // volume 1.0
    head.put_bytes(0, 10); // reserved
    for value in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        head.put_u32(value); // unity matrix
    }
    head.put_bytes(0, 24); // pre-defined
    head.put_u32(1); // next track id
    let rest = total.saturating_sub(head.len() as u64);
    if rest <= u64::from(u32::MAX) {
        head.put_u32(rest as u32);
        head.put_slice(b"mdat");
    } else {
        head.put_u32(1);
        head.put_slice(b"mdat");
        head.put_u64(rest);
    }
    let payload = total.saturating_sub(head.len() as u64);
    (head.freeze(), payload)
}

/// The smallest bench video: its head and an empty `mdat`.
pub(crate) fn min_video_bytes() -> u64 {
    mp4_head(0).0.len() as u64
}

async fn video(AxumState(state): AxumState<Shared>, Query(query): Query<VideoQuery>) -> Response {
    state.count("bench video");
    let total = query.bytes.clamp(min_video_bytes(), MAX_VIDEO_BYTES);
    let (head, payload) = mp4_head(total);
    let total = head.len() as u64 + payload;
    let stream = futures::stream::unfold((Some(head), payload), |(head, left)| async move {
        if let Some(head) = head {
            return Some((Ok::<Bytes, std::io::Error>(head), (None, left)));
        }
        if left == 0 {
            return None;
        }
        let n = usize::try_from(left).map_or(CHUNK, |left| left.min(CHUNK));
        Some((Ok(Bytes::from_static(&ZEROS[..n])), (None, left - n as u64)))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "video/mp4")
        .header(header::CONTENT_LENGTH, total)
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn fal_ai(
    AxumState(state): AxumState<Shared>,
    Path((bytes, _app)): Path<(u64, String)>,
    headers: HeaderMap,
    _body: Bytes,
) -> Response {
    state.count("bench fal-ai");
    let url = format!("{}/_emulator/bench/video?bytes={bytes}", support::origin(&headers));
    axum::Json(json!({
        "video": {"url": url, "content_type": "video/mp4", "file_size": bytes},
        "seed": 0,
    }))
    .into_response()
}

/// A PNG of uniform noise, square, whose file is about `bytes` long (at least 1×1).
pub(crate) fn noise_png(bytes: u64) -> Result<Bytes, String> {
    let side = ((bytes.min(MAX_IMAGE_BYTES) as f64 / 3.0).sqrt() as u32).max(1);
    let mut rgb = vec![0u8; (side as usize) * (side as usize) * 3];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ bytes;
    for px in rgb.chunks_mut(8) {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        px.copy_from_slice(&v[..px.len()]);
    }
    let mut out = Vec::with_capacity(rgb.len() + 1024);
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::NoFilter)
        .write_image(&rgb, side, side, image::ExtendedColorType::Rgb8)
        .map_err(|e| e.to_string())?;
    Ok(Bytes::from(out))
}

fn cached_png(bytes: u64) -> Result<Bytes, String> {
    static CACHE: OnceLock<Mutex<HashMap<u64, Bytes>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(png) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&bytes) {
        return Ok(png.clone());
    }
    let png = noise_png(bytes)?;
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() > 16 {
        cache.clear();
    }
    Ok(cache.entry(bytes).or_insert(png).clone())
}

// The request body is read (and dropped): answering before reading it would make hyper close the
// connection, which clients see as a reset.
async fn hf_inference(
    AxumState(state): AxumState<Shared>,
    Path((bytes, _model)): Path<(u64, String)>,
    _body: Bytes,
) -> Response {
    state.count("bench hf-inference");
    match tokio::task::spawn_blocking(move || cached_png(bytes)).await {
        Ok(Ok(png)) => ([(header::CONTENT_TYPE, "image/png")], png).into_response(),
        Ok(Err(e)) => support::error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => support::error(StatusCode::INTERNAL_SERVER_ERROR, format!("renderer crashed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_heads_are_mp4_and_exact() {
        for total in [0, 200, 8 << 20, 5 << 30] {
            let (head, payload) = mp4_head(total.max(min_video_bytes()));
            assert_eq!(&head[4..12], b"ftypisom");
            assert_eq!(&head[28..32], b"moov");
            assert_eq!(head.len() as u64 + payload, total.max(min_video_bytes()));
            let mdat = head.len() - if total > u64::from(u32::MAX) { 16 } else { 8 };
            assert_eq!(&head[mdat + 4..mdat + 8], b"mdat");
        }
    }

    #[test]
    fn noise_pngs_are_about_the_asked_size_and_decode() {
        let png = noise_png(256 * 1024).expect("png");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let len = png.len() as f64;
        assert!((len / (256.0 * 1024.0) - 1.0).abs() < 0.05, "{len}");
        let decoded = image::load_from_memory(&png).expect("decodes");
        assert!(decoded.width() > 200);
    }

    #[tokio::test]
    async fn the_video_route_streams_exactly_n_bytes() {
        let running = crate::Emulator::new()
            .start(([127, 0, 0, 1], 0).into())
            .await
            .expect("starts");
        let n = 3 * CHUNK as u64 + 123;
        let body = reqwest::get(format!("{}/_emulator/bench/video?bytes={n}", running.url()))
            .await
            .expect("answers")
            .bytes()
            .await
            .expect("body");
        assert_eq!(body.len() as u64, n);
        assert_eq!(&body[4..8], b"ftyp");
        let answer: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/_emulator/bench/{n}/fal-ai/fal-ai/wan-t2v", running.url()))
            .body("{}")
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("json");
        let url = answer["video"]["url"].as_str().expect("url");
        assert!(url.ends_with(&format!("/_emulator/bench/video?bytes={n}")), "{url}");
    }
}
