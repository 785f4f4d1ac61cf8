//! A test suite every [`MediaSink`] implementation should pass (feature
//! `testing`), this crate's sinks and sinks written elsewhere alike.
//!
//! Each check takes the sink as `&dyn MediaSink`, runs one scenario and panics
//! with a clear message when the sink misbehaves. Checks about failures also
//! take `count`, a closure telling how many things the sink currently holds
//! (files in its folder, *including* hidden temporary files; entries in
//! memory; objects listed in a bucket...): a failed or cancelled store must
//! not change it. The parts of an unfinished multipart upload are not listed
//! objects, so an object-store sink need not count them (its abort may still
//! be running, spawned from a guard, when `count` is called).
//!
//! Every successful store is checked for its format, size and record: the
//! record comes back unchanged except `timings.store_ms`. A
//! [`MediaLocation::File`] media is read back; so is a
//! [`MediaLocation::File`] sidecar, which must hold exactly the returned record
//! (`store_ms` included, [`MediaRecord::key`] aside: it is not written). A sidecar
//! elsewhere (an object, ...) is only checked to be somewhere else than the media.
//! [`measures_store_time`] checks that `store_ms` is really measured.
//!
//! Keyed stores ([`MediaRecord::key`]) are checked by
//! [`keyed_store_lands_at_key_and_replaces`], [`keyed_store_of_another_format_replaces`] and
//! [`failed_keyed_store_keeps_the_key_as_it_was`]: a key holds one media, the last stored. They
//! use keys under `conformance/`, with sub-folders; a file or object location must end with
//! `{key}.{ext}`, its sidecar with `{key}.json`. Run again on the same sink, they replace what
//! the previous run stored. For these, `count` must also count what is in sub-folders (or under
//! the prefix, for objects).
//!
//! Checks need a Tokio runtime with the timer enabled and time *not* paused
//! (`#[tokio::test]`, without `start_paused`): [`measures_store_time`] sleeps
//! for real.
//!
//! ```no_run
//! # async fn demo() {
//! use hf_media_sink::{conformance, MemorySink};
//! let sink = MemorySink::new();
//! let counter = sink.clone();
//! conformance::run_all(&sink, move || counter.len()).await;
//! # }
//! ```

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream;

use crate::{
    ByteStream, MediaKey, MediaKind, MediaLocation, MediaRecord, MediaSink, SinkError, StoredMedia, StreamError,
};

/// A real, valid 1×1 red PNG (70 bytes; correct CRCs and zlib stream).
pub fn tiny_png() -> Vec<u8> {
    vec![
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, // signature
        0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, // IHDR
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, //
        0x1f, 0x15, 0xc4, 0x89, // IHDR CRC
        0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, // IDAT
        0x78, 0xda, 0x63, 0xf8, 0xcf, 0xc0, 0xf0, 0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, //
        0x56, 0xc7, 0x2f, 0x0d, // IDAT CRC
        0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, // IEND
        0xae, 0x42, 0x60, 0x82, // IEND CRC
    ]
}

/// The start of an MP4 file: an `ftyp` box (brand `isom`, compatible
/// `isom`/`mp42`) and an empty `free` box. Enough to be sniffed as MP4.
pub fn tiny_mp4_head() -> Vec<u8> {
    let mut head = Vec::with_capacity(32);
    head.extend_from_slice(&24u32.to_be_bytes());
    head.extend_from_slice(b"ftypisom");
    head.extend_from_slice(&0x200u32.to_be_bytes());
    head.extend_from_slice(b"isommp42");
    head.extend_from_slice(&8u32.to_be_bytes());
    head.extend_from_slice(b"free");
    head
}

/// The start of a JPEG file (JFIF APP0 marker): enough to be sniffed as JPEG.
pub fn tiny_jpeg_head() -> Vec<u8> {
    vec![
        0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01,
        0x00, 0x00,
    ]
}

/// A record with every field set (but [`MediaRecord::key`]), for `prompt`.
pub fn sample_record(prompt: &str) -> MediaRecord {
    MediaRecord {
        prompt: prompt.to_owned(),
        model: "black-forest-labs/FLUX.1-schnell".to_owned(),
        provider: "fal-ai".to_owned(),
        provider_id: "fal-ai/flux/schnell".to_owned(),
        task: "text-to-image".to_owned(),
        task_index: 0,
        parameters: serde_json::json!({ "width": 1, "height": 1 }),
        seed: Some(42),
        source_url: Some("https://example.invalid/media.png".to_owned()),
        provider_response: Some(serde_json::json!({ "request_id": "req-1", "nsfw": [false] })),
        inputs: Vec::new(),
        created_at_unix_ms: 1_732_623_000_000,
        timings: crate::MediaTimings {
            generation_ms: 1234,
            store_ms: 0,
        },
        key: None,
    }
}

/// [`sample_record`] for `prompt`, to be stored at `key`.
///
/// # Panics
///
/// When `key` is not a valid [`MediaKey`].
pub fn keyed_record(prompt: &str, key: &str) -> MediaRecord {
    let key = MediaKey::new(key).unwrap_or_else(|e| panic!("{e}"));
    MediaRecord {
        key: Some(key),
        ..sample_record(prompt)
    }
}

/// A stream yielding `chunks` in order, then ending.
pub fn stream_of(chunks: Vec<Vec<u8>>) -> ByteStream {
    stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c)))).boxed()
}

/// A stream yielding `prefix`, then failing with `message`.
pub fn failing_stream(prefix: Vec<u8>, message: &str) -> ByteStream {
    let error = StreamError::network(message);
    stream::iter(vec![Ok(Bytes::from(prefix)), Err(error)]).boxed()
}

/// A stream yielding `prefix`, then never yielding again (a stalled download).
pub fn stalled_stream(prefix: Vec<u8>) -> ByteStream {
    stream::iter(vec![Ok(Bytes::from(prefix))])
        .chain(stream::pending())
        .boxed()
}

/// Splits `bytes` in chunks of (at most) `size` bytes.
fn chunked(bytes: &[u8], size: usize) -> Vec<Vec<u8>> {
    bytes.chunks(size.max(1)).map(<[u8]>::to_vec).collect()
}

/// Checks what every successful store must satisfy; reads back files.
fn check_stored(stored: &StoredMedia, bytes: &[u8], record: &MediaRecord, ext: &str, kind: MediaKind) {
    assert_eq!(
        stored.format.extension, ext,
        "the format must be decided from the bytes"
    );
    assert_eq!(stored.format.kind, kind, "wrong media kind");
    assert_eq!(
        stored.bytes,
        bytes.len() as u64,
        "StoredMedia.bytes must be the number of bytes received"
    );
    let mut expected = record.clone();
    expected.timings.store_ms = stored.record.timings.store_ms;
    assert_eq!(
        stored.record, expected,
        "the record must come back unchanged, except timings.store_ms"
    );
    if let MediaLocation::File(path) = &stored.location {
        let on_disk = std::fs::read(path).unwrap_or_else(|e| panic!("stored file {} unreadable: {e}", path.display()));
        assert_eq!(on_disk, bytes, "file {} has other bytes", path.display());
        assert_eq!(
            path.extension().and_then(|e| e.to_str()),
            Some(ext),
            "file {} has the wrong extension",
            path.display()
        );
    }
    if let Some(sidecar) = &stored.sidecar {
        assert_ne!(
            *sidecar, stored.location,
            "the sidecar must not be at the media's location"
        );
        if let MediaLocation::File(path) = sidecar {
            let text =
                std::fs::read_to_string(path).unwrap_or_else(|e| panic!("sidecar {} unreadable: {e}", path.display()));
            let back: MediaRecord = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("sidecar {} is not a MediaRecord: {e}", path.display()));
            let written = MediaRecord {
                key: None,
                ..stored.record.clone()
            };
            assert_eq!(
                back,
                written,
                "the sidecar {} must hold the returned record, timings.store_ms included",
                path.display()
            );
        }
    }
}

/// Stores [`tiny_png`] sent in small chunks; checks format, size, record,
/// and (for files) the bytes on disk and the sidecar. Returns what the sink
/// answered for further checks.
pub async fn stores_png(sink: &dyn MediaSink) -> StoredMedia {
    let png = tiny_png();
    let record = sample_record("A tiny red pixel");
    let stored = sink
        .store(stream_of(chunked(&png, 7)), record.clone())
        .await
        .unwrap_or_else(|e| panic!("storing a valid PNG failed: {e}"));
    check_stored(&stored, &png, &record, "png", MediaKind::Image);
    stored
}

/// Stores an MP4 (well, its head) and checks it is kept as a video.
pub async fn stores_mp4(sink: &dyn MediaSink) -> StoredMedia {
    let mut mp4 = tiny_mp4_head();
    mp4.extend_from_slice(&[0u8; 100]);
    let mut record = sample_record("a short clip");
    record.task = "text-to-video".to_owned();
    let stored = sink
        .store(stream_of(chunked(&mp4, 5)), record.clone())
        .await
        .unwrap_or_else(|e| panic!("storing an MP4 failed: {e}"));
    check_stored(&stored, &mp4, &record, "mp4", MediaKind::Video);
    stored
}

/// An HTML error page is refused with [`SinkError::UnrecognizedMedia`] and
/// leaves nothing.
pub async fn rejects_unknown_bytes(sink: &dyn MediaSink, count: impl Fn() -> usize) {
    let before = count();
    let html = b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>".to_vec();
    let result = sink.store(stream_of(vec![html]), sample_record("x")).await;
    match result {
        Err(SinkError::UnrecognizedMedia { head }) => {
            assert!(head.starts_with("3c 21"), "head should be a hex dump: {head}");
        }
        other => panic!("HTML must be refused as UnrecognizedMedia, got {other:?}"),
    }
    assert_eq!(count(), before, "a refused media must leave nothing");
}

/// A stream without bytes is refused with [`SinkError::Empty`] and leaves
/// nothing.
pub async fn rejects_empty_stream(sink: &dyn MediaSink, count: impl Fn() -> usize) {
    let before = count();
    let result = sink.store(stream_of(vec![]), sample_record("x")).await;
    assert!(
        matches!(result, Err(SinkError::Empty)),
        "an empty stream must give SinkError::Empty, got {result:?}"
    );
    assert_eq!(count(), before, "an empty stream must leave nothing");
}

/// A stream failing mid-way gives [`SinkError::Source`] carrying the stream's
/// error, and leaves nothing.
pub async fn failed_stream_stores_nothing(sink: &dyn MediaSink, count: impl Fn() -> usize) {
    let before = count();
    let png = tiny_png();
    let result = sink
        .store(
            failing_stream(png[..40].to_vec(), "connection reset by peer"),
            sample_record("x"),
        )
        .await;
    match result {
        Err(SinkError::Source(source)) => assert!(
            source.to_string().contains("connection reset by peer"),
            "the stream's error must be kept, got {source}"
        ),
        other => panic!("a failing stream must give SinkError::Source, got {other:?}"),
    }
    assert_eq!(count(), before, "a failed stream must leave nothing");
}

/// A store cancelled (future dropped) while the stream stalls leaves nothing.
pub async fn cancelled_store_leaves_nothing(sink: &dyn MediaSink, count: impl Fn() -> usize) {
    let before = count();
    let png = tiny_png();
    let result = tokio::time::timeout(
        Duration::from_millis(100),
        sink.store(stalled_stream(png[..40].to_vec()), sample_record("x")),
    )
    .await;
    assert!(
        result.is_err(),
        "store must wait for a stalled stream, it returned {result:?}"
    );
    assert_eq!(count(), before, "a cancelled store must leave nothing");
}

/// A media over `limit` bytes is refused with [`SinkError::TooLarge`] and
/// leaves nothing. `sink` must have been configured with that `limit`, and it
/// must be at least 64 bytes.
pub async fn rejects_oversized(sink: &dyn MediaSink, limit: u64, count: impl Fn() -> usize) {
    let before = count();
    let mut big = tiny_png();
    let len = usize::try_from(limit).unwrap_or(usize::MAX).saturating_add(1);
    big.resize(len.max(big.len()), 0);
    let result = sink.store(stream_of(chunked(&big, 16)), sample_record("x")).await;
    assert!(
        matches!(result, Err(SinkError::TooLarge { limit: l }) if l == limit),
        "a media over {limit} bytes must give TooLarge {{ limit: {limit} }}, got {result:?}"
    );
    assert_eq!(count(), before, "an oversized media must leave nothing");
}

/// A stream yielding `chunks` with a real (not paused) `delay` before each chunk after the first.
pub fn delayed_stream(chunks: Vec<Vec<u8>>, delay: Duration) -> ByteStream {
    stream::iter(chunks.into_iter().enumerate())
        .then(move |(i, chunk)| async move {
            if i > 0 {
                tokio::time::sleep(delay).await;
            }
            Ok(Bytes::from(chunk))
        })
        .boxed()
}

/// Delay between the chunks of [`measures_store_time`]'s stream.
const STORE_DELAY: Duration = Duration::from_millis(20);

/// Stores [`tiny_png`] from a stream that takes about 40 ms (three chunks, 20 ms apart), and checks
/// that `timings.store_ms` (given as 0) was measured from the call of `store`: at least 40 in the
/// returned record, and the same value in a [`MediaLocation::File`] sidecar. Returns what the sink
/// answered.
pub async fn measures_store_time(sink: &dyn MediaSink) -> StoredMedia {
    let png = tiny_png();
    let mut record = sample_record("a slow download");
    record.timings.store_ms = 0;
    let parts = chunked(&png, png.len().div_ceil(3));
    let waits = u32::try_from(parts.len().saturating_sub(1)).unwrap_or(u32::MAX);
    let least = crate::millis(STORE_DELAY * waits);
    let stored = sink
        .store(delayed_stream(parts, STORE_DELAY), record.clone())
        .await
        .unwrap_or_else(|e| panic!("storing a slowly arriving PNG failed: {e}"));
    check_stored(&stored, &png, &record, "png", MediaKind::Image);
    let store_ms = stored.record.timings.store_ms;
    assert!(
        store_ms >= least,
        "the bytes took at least {least} ms to arrive, but timings.store_ms is {store_ms}: \
         it must be measured from the call of `store` to the media being published"
    );
    stored
}

/// `n` stores of the same prompt, run concurrently, all succeed at distinct
/// locations.
pub async fn identical_prompts_get_distinct_locations(sink: &dyn MediaSink, n: usize) {
    let png = tiny_png();
    let stores = (0..n).map(|i| {
        let mut record = sample_record("the very same prompt");
        record.task_index = i;
        sink.store(stream_of(vec![png.clone()]), record)
    });
    let results = futures::future::join_all(stores).await;
    let mut locations = std::collections::HashSet::new();
    let mut sidecars = std::collections::HashSet::new();
    for (i, result) in results.into_iter().enumerate() {
        let stored = result.unwrap_or_else(|e| panic!("concurrent store {i} failed: {e}"));
        assert_eq!(stored.record.task_index, i);
        check_stored(&stored, &png, &stored.record.clone(), "png", MediaKind::Image);
        assert!(
            locations.insert(stored.location.clone()),
            "two stores got the same location {}",
            stored.location
        );
        if let Some(sidecar) = stored.sidecar {
            assert!(
                sidecars.insert(sidecar.clone()),
                "two stores got the same sidecar location {sidecar}"
            );
        }
    }
    assert_eq!(locations.len(), n);
}

/// Checks that `stored`, stored at `key` as a `.{ext}`, is at that key: a file or object location
/// ends with `{key}.{ext}`, a file or object sidecar with `{key}.json`.
fn check_at_key(stored: &StoredMedia, key: &str, ext: &str) {
    let media = format!("{key}.{ext}");
    let sidecar = format!("{key}.json");
    let ends_with = |location: &MediaLocation, tail: &str| match location {
        MediaLocation::File(path) => Some(path.ends_with(tail)),
        MediaLocation::Object(uri) => Some(uri.ends_with(&format!("/{tail}"))),
        _ => None,
    };
    if let Some(at) = ends_with(&stored.location, &media) {
        assert!(
            at,
            "a media stored at the key {key} must be at {media}, it is at {}",
            stored.location
        );
    }
    if let Some(at) = stored.sidecar.as_ref().and_then(|s| ends_with(s, &sidecar)) {
        assert!(
            at,
            "the sidecar of a media stored at the key {key} must be at {sidecar}, it is at {:?}",
            stored.sidecar
        );
    }
    assert_eq!(
        stored.record.key.as_ref().map(MediaKey::as_str),
        Some(key),
        "the returned record keeps its key"
    );
}

/// Whether something is at `location`, when it is a file; `None` elsewhere.
fn file_exists(location: &MediaLocation) -> Option<bool> {
    location.as_path().map(|path| std::fs::symlink_metadata(path).is_ok())
}

/// That a file location still holds `bytes`, and a file sidecar the record of `prompt`: what a refused,
/// failed or cancelled store must leave as it was.
fn check_still_held(stored: &StoredMedia, bytes: &[u8], prompt: &str) {
    if let MediaLocation::File(path) = &stored.location {
        let on_disk = std::fs::read(path).unwrap_or_else(|e| panic!("{} unreadable: {e}", path.display()));
        assert_eq!(on_disk, bytes, "{} must still hold the first media", path.display());
    }
    if let Some(MediaLocation::File(path)) = &stored.sidecar {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{} unreadable: {e}", path.display()));
        let back: MediaRecord = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            back.prompt,
            prompt,
            "{} must still be the first sidecar",
            path.display()
        );
    }
}

/// Two stores at one key (in sub-folders), of two different PNGs: both succeed at that key, the
/// second replacing the first. `count` must not grow with the second, and a file location holds the
/// second's bytes (and sidecar). Returns both answers.
pub async fn keyed_store_lands_at_key_and_replaces(
    sink: &dyn MediaSink,
    count: impl Fn() -> usize,
) -> (StoredMedia, StoredMedia) {
    const KEY: &str = "conformance/shard-0000/replaced";
    let first_png = tiny_png();
    let record = keyed_record("the first take", KEY);
    let first = sink
        .store(stream_of(chunked(&first_png, 9)), record.clone())
        .await
        .unwrap_or_else(|e| panic!("storing a PNG at the key {KEY} failed: {e}"));
    check_stored(&first, &first_png, &record, "png", MediaKind::Image);
    check_at_key(&first, KEY, "png");
    let after_first = count();

    // Another PNG (the same image, trailing bytes after IEND), another record.
    let mut second_png = tiny_png();
    second_png.extend_from_slice(b"second take");
    let record = keyed_record("the second take", KEY);
    let second = sink
        .store(stream_of(chunked(&second_png, 9)), record.clone())
        .await
        .unwrap_or_else(|e| panic!("storing again at the key {KEY} failed: {e}"));
    check_stored(&second, &second_png, &record, "png", MediaKind::Image);
    check_at_key(&second, KEY, "png");
    assert_eq!(
        count(),
        after_first,
        "a second store at the key {KEY} must replace the first, not add to it"
    );
    if matches!(first.location, MediaLocation::File(_) | MediaLocation::Object(_)) {
        assert_eq!(
            first.location, second.location,
            "two PNGs stored at one key must be at one place"
        );
        assert_eq!(first.sidecar, second.sidecar, "and their sidecar too");
    }
    (first, second)
}

/// A PNG, then a JPEG, at one key: the JPEG is at `{key}.jpg` and the PNG is gone (a key never holds
/// two media): `count` must not grow with the JPEG, and a PNG file must not exist anymore. Returns
/// both answers.
pub async fn keyed_store_of_another_format_replaces(
    sink: &dyn MediaSink,
    count: impl Fn() -> usize,
) -> (StoredMedia, StoredMedia) {
    const KEY: &str = "conformance/shard-0000/reformatted";
    let png = tiny_png();
    let record = keyed_record("first as a PNG", KEY);
    let first = sink
        .store(stream_of(vec![png.clone()]), record.clone())
        .await
        .unwrap_or_else(|e| panic!("storing a PNG at the key {KEY} failed: {e}"));
    check_stored(&first, &png, &record, "png", MediaKind::Image);
    check_at_key(&first, KEY, "png");
    let after_first = count();

    let jpeg = tiny_jpeg_head();
    let record = keyed_record("then as a JPEG", KEY);
    let second = sink
        .store(stream_of(chunked(&jpeg, 5)), record.clone())
        .await
        .unwrap_or_else(|e| panic!("storing a JPEG at the key {KEY} failed: {e}"));
    check_stored(&second, &jpeg, &record, "jpg", MediaKind::Image);
    check_at_key(&second, KEY, "jpg");
    assert_eq!(
        count(),
        after_first,
        "a JPEG stored at the key {KEY} must replace the PNG there, not add to it"
    );
    if let Some(exists) = file_exists(&first.location) {
        assert!(
            !exists,
            "{} must be removed once a JPEG is stored at its key",
            first.location
        );
    }
    if let Some(exists) = file_exists(&second.location) {
        assert!(exists, "{} must exist", second.location);
    }
    (first, second)
}

/// A PNG at one key, then a store at that key failing mid-stream, one refused (not a media) and one
/// cancelled (stalled, then dropped): none changes `count`, and a file location still holds the
/// first PNG. Returns the first store's answer.
pub async fn failed_keyed_store_keeps_the_key_as_it_was(
    sink: &dyn MediaSink,
    count: impl Fn() -> usize,
) -> StoredMedia {
    const KEY: &str = "conformance/kept";
    let png = tiny_png();
    let record = keyed_record("kept", KEY);
    let stored = sink
        .store(stream_of(vec![png.clone()]), record.clone())
        .await
        .unwrap_or_else(|e| panic!("storing a PNG at the key {KEY} failed: {e}"));
    check_at_key(&stored, KEY, "png");
    let before = count();

    let failed = sink
        .store(
            failing_stream(png[..40].to_vec(), "connection reset by peer"),
            keyed_record("failing", KEY),
        )
        .await;
    assert!(
        matches!(failed, Err(SinkError::Source(_))),
        "a failing stream at a key must give SinkError::Source, got {failed:?}"
    );
    let html = b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>".to_vec();
    let refused = sink.store(stream_of(vec![html]), keyed_record("refused", KEY)).await;
    assert!(
        matches!(refused, Err(SinkError::UnrecognizedMedia { .. })),
        "HTML at a key must be refused as UnrecognizedMedia, got {refused:?}"
    );
    let cancelled = tokio::time::timeout(
        Duration::from_millis(100),
        sink.store(stalled_stream(png[..40].to_vec()), keyed_record("cancelled", KEY)),
    )
    .await;
    assert!(
        cancelled.is_err(),
        "store must wait for a stalled stream, it returned {cancelled:?}"
    );
    assert_eq!(
        count(),
        before,
        "a failed or cancelled store at the key {KEY} must leave it as it was"
    );
    check_still_held(&stored, &png, "kept");
    stored
}

/// A PNG at a [fresh](MediaKey::fresh) key (a new random one at each call), then another at the
/// same fresh key: the first lands at the key (`count` grows), the second fails with
/// [`SinkError::KeyTaken`] and changes nothing (a file location still holds the first PNG and its
/// sidecar). Returns the first store's answer.
pub async fn fresh_key_is_created_never_replaced(sink: &dyn MediaSink, count: impl Fn() -> usize) -> StoredMedia {
    let key = format!("conformance/fresh-{:016x}", fastrand::u64(..));
    let fresh = |prompt: &str| {
        let mut record = keyed_record(prompt, &key);
        record.key = record.key.map(MediaKey::fresh);
        record
    };
    let before = count();
    let png = tiny_png();
    let record = fresh("the only take");
    let stored = sink
        .store(stream_of(chunked(&png, 7)), record.clone())
        .await
        .unwrap_or_else(|e| panic!("storing a PNG at the fresh key {key} failed: {e}"));
    check_stored(&stored, &png, &record, "png", MediaKind::Image);
    check_at_key(&stored, &key, "png");
    let after = count();
    assert!(after > before, "a store at a fresh key adds a media");

    let mut other = tiny_png();
    other.extend_from_slice(b"another take");
    let again = sink.store(stream_of(vec![other]), fresh("another take")).await;
    match &again {
        Err(SinkError::KeyTaken { key: taken_key, taken }) => {
            assert_eq!(taken_key, &key, "KeyTaken names the key");
            assert!(!taken.is_empty(), "KeyTaken says what holds the key");
        }
        other => panic!("a second store at the fresh key {key} must fail with KeyTaken, got {other:?}"),
    }
    assert_eq!(count(), after, "a refused fresh store adds nothing");
    check_still_held(&stored, &png, "the only take");
    stored
}

/// Runs every check above except [`rejects_oversized`] (which needs a
/// configured limit).
pub async fn run_all(sink: &dyn MediaSink, count: impl Fn() -> usize) {
    rejects_empty_stream(sink, &count).await;
    rejects_unknown_bytes(sink, &count).await;
    failed_stream_stores_nothing(sink, &count).await;
    cancelled_store_leaves_nothing(sink, &count).await;
    stores_png(sink).await;
    stores_mp4(sink).await;
    measures_store_time(sink).await;
    identical_prompts_get_distinct_locations(sink, 10).await;
    keyed_store_lands_at_key_and_replaces(sink, &count).await;
    keyed_store_of_another_format_replaces(sink, &count).await;
    failed_keyed_store_keeps_the_key_as_it_was(sink, &count).await;
    fresh_key_is_created_never_replaced(sink, &count).await;
}
