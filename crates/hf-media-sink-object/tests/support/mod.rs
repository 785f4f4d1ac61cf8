//! Shared test support: a store wrapper that records what the sink does (and can make names look
//! taken), listing helpers, the scenarios run against every store, and the moto S3 server.

#![allow(dead_code, clippy::unwrap_used)]

pub mod moto;

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt as _, TryStreamExt as _};
use hf_media_sink::conformance::{keyed_record, sample_record, tiny_jpeg_head, tiny_png};
use hf_media_sink::{ByteStream, MediaLocation, MediaRecord, MediaSink, SinkError, StoredMedia, StreamError};
use hf_media_sink_object::ObjectSink;
use hf_media_sink_object::object_store::path::Path;
use hf_media_sink_object::object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt as _,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};

/// What the sink did to a [`Tracked`] store.
#[derive(Debug, Default)]
pub struct Stats {
    pub uploads_opened: AtomicUsize,
    pub uploads_completed: AtomicUsize,
    pub uploads_aborted: AtomicUsize,
    pub parts_started: AtomicUsize,
    pub part_sizes: Mutex<Vec<usize>>,
    pub puts: AtomicUsize,
    pub puts_done: AtomicUsize,
    pub completes_started: AtomicUsize,
    pub deletes: AtomicUsize,
    /// Puts with `PutMode::Create` (first writer wins), and with `PutMode::Overwrite`.
    pub creates: AtomicUsize,
    pub overwrites: AtomicUsize,
    /// Puts of a key ending with this suffix fail (the store answers an error), while set.
    pub fail_puts_ending: Mutex<Option<String>>,
    /// Milliseconds every put and every completion waits before it reaches the store.
    pub delay_ms: AtomicU64,
    /// The next `n` `PutMode::Create` puts of a key ending with `suffix` go to `target` instead.
    redirect: Mutex<Option<(String, Path, usize)>>,
    pub redirected: AtomicUsize,
}

impl Stats {
    pub fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }

    async fn delay(&self) {
        let ms = self.delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// Makes the next `n` conditional puts of keys ending with `suffix` land on `target`, an
    /// existing object: the store then answers that the name is taken.
    pub fn redirect_creates(&self, suffix: &str, target: Path, n: usize) {
        *self.redirect.lock().unwrap() = Some((suffix.to_owned(), target, n));
    }

    fn redirect_of(&self, location: &Path, mode: &PutMode) -> Option<Path> {
        if !matches!(mode, PutMode::Create) {
            return None;
        }
        let mut redirect = self.redirect.lock().unwrap();
        let (suffix, target, n) = redirect.as_mut()?;
        if *n == 0 || !location.as_ref().ends_with(suffix.as_str()) {
            return None;
        }
        *n -= 1;
        self.redirected.fetch_add(1, Ordering::SeqCst);
        Some(target.clone())
    }
}

/// Wraps a store and records uploads, parts, aborts.
#[derive(Debug)]
pub struct Tracked {
    pub inner: Arc<dyn ObjectStore>,
    pub stats: Arc<Stats>,
}

impl Tracked {
    pub fn new(inner: Arc<dyn ObjectStore>) -> (Arc<Self>, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        let tracked = Arc::new(Self {
            inner,
            stats: Arc::clone(&stats),
        });
        (tracked, stats)
    }
}

impl fmt::Display for Tracked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tracked({})", self.inner)
    }
}

#[derive(Debug)]
struct TrackedUpload {
    inner: Box<dyn MultipartUpload>,
    stats: Arc<Stats>,
}

#[async_trait]
impl MultipartUpload for TrackedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.stats.parts_started.fetch_add(1, Ordering::SeqCst);
        self.stats.part_sizes.lock().unwrap().push(data.content_length());
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.stats.completes_started.fetch_add(1, Ordering::SeqCst);
        self.stats.delay().await;
        let result = self.inner.complete().await;
        if result.is_ok() {
            self.stats.uploads_completed.fetch_add(1, Ordering::SeqCst);
        }
        result
    }

    async fn abort(&mut self) -> Result<()> {
        let result = self.inner.abort().await;
        if result.is_ok() {
            self.stats.uploads_aborted.fetch_add(1, Ordering::SeqCst);
        }
        result
    }
}

#[async_trait]
impl ObjectStore for Tracked {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.stats.puts.fetch_add(1, Ordering::SeqCst);
        match opts.mode {
            PutMode::Create => self.stats.creates.fetch_add(1, Ordering::SeqCst),
            PutMode::Overwrite => self.stats.overwrites.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
        let failing = self.stats.fail_puts_ending.lock().unwrap().clone();
        if failing.is_some_and(|suffix| location.as_ref().ends_with(suffix.as_str())) {
            return Err(hf_media_sink_object::object_store::Error::Generic {
                store: "Tracked",
                source: "refused by the test".into(),
            });
        }
        let location = self
            .stats
            .redirect_of(location, &opts.mode)
            .unwrap_or_else(|| location.clone());
        self.stats.delay().await;
        let result = self.inner.put_opts(&location, payload, opts).await;
        if result.is_ok() {
            self.stats.puts_done.fetch_add(1, Ordering::SeqCst);
        }
        result
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        self.stats.uploads_opened.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(TrackedUpload {
            inner,
            stats: Arc::clone(&self.stats),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let stats = Arc::clone(&self.stats);
        let counted = locations
            .inspect(move |_| {
                stats.deletes.fetch_add(1, Ordering::SeqCst);
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// The keys listed under `prefix`, sorted.
pub async fn list_keys(store: &dyn ObjectStore, prefix: &Path) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(Some(prefix))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

/// How many objects are listed under `prefix`, from synchronous code inside a multi-threaded
/// runtime (the conformance suite's `count`).
pub fn count_objects(store: &Arc<dyn ObjectStore>, prefix: &Path) -> usize {
    let store = Arc::clone(store);
    let prefix = prefix.clone();
    tokio::task::block_in_place(move || {
        tokio::runtime::Handle::current().block_on(async move { list_keys(store.as_ref(), &prefix).await.len() })
    })
}

/// The bytes of the object at `uri` (a location of `sink`).
pub async fn read_uri(sink: &ObjectSink, store: &dyn ObjectStore, location: &MediaLocation) -> Bytes {
    let key = key_of(sink, location);
    store.get(&key).await.unwrap().bytes().await.unwrap()
}

/// The key of an object location of `sink`.
pub fn key_of(sink: &ObjectSink, location: &MediaLocation) -> Path {
    let MediaLocation::Object(uri) = location else {
        panic!("expected an object location, got {location:?}");
    };
    let base = sink.uri_of(&Path::from(""));
    let key = uri
        .strip_prefix(base.as_str())
        .unwrap_or_else(|| panic!("{uri} is not under {base}"));
    Path::from(key)
}

/// A PNG of `len` bytes: a real PNG head, then pseudo-random bytes (so that a misplaced part shows).
pub fn big_png(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = tiny_png();
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// `bytes` in chunks of `size`.
pub fn stream_in(bytes: &[u8], size: usize) -> ByteStream {
    let chunks: Vec<Result<Bytes, StreamError>> = bytes.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    futures::stream::iter(chunks).boxed()
}

/// `bytes` in chunks of `size`, then never ending (a stalled download).
pub fn stalling_after(bytes: &[u8], size: usize) -> ByteStream {
    stream_in(bytes, size).chain(futures::stream::pending()).boxed()
}

/// Waits (at most 20 s) until `done` holds.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}");
}

/// Waits (at most 20 s) until exactly `expected` is listed under `prefix`.
pub async fn listed_eventually(store: &dyn ObjectStore, prefix: &Path, expected: &[String]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let keys = list_keys(store, prefix).await;
        if keys == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still listed: {keys:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Checks the sidecar object of `stored` holds its record.
pub async fn check_sidecar(sink: &ObjectSink, store: &dyn ObjectStore, stored: &StoredMedia) {
    let sidecar = stored.sidecar.as_ref().expect("a sidecar");
    let json = read_uri(sink, store, sidecar).await;
    let back: MediaRecord = serde_json::from_slice(&json).unwrap();
    let written = MediaRecord {
        key: None,
        ..stored.record.clone()
    };
    assert_eq!(
        back, written,
        "the sidecar holds the returned record, store_ms included (the key is not written)"
    );
    let media_key = key_of(sink, &stored.location);
    let sidecar_key = key_of(sink, sidecar);
    assert_eq!(
        media_key.as_ref().rsplit_once('.').map(|(stem, _)| stem),
        sidecar_key.as_ref().strip_suffix(".json"),
        "media and sidecar share their stem"
    );
}

/// A media over two parts goes up as a multipart upload of equal parts (the last shorter), is listed
/// and readable with the exact bytes, and its sidecar follows.
pub async fn multipart_in_several_parts(sink: &ObjectSink, store: &dyn ObjectStore, stats: &Stats) {
    let part = sink.part_size();
    let len = part * 2 + part / 2 + 3;
    let png = big_png(len, 1);
    let before = list_keys(store, sink.prefix()).await.len();
    let opened = Stats::get(&stats.uploads_opened);
    let record = sample_record("a big picture in several parts");
    let stored = sink
        .store(stream_in(&png, 64 * 1024 + 7), record.clone())
        .await
        .unwrap();
    assert_eq!(stored.bytes, len as u64);
    assert_eq!(stored.format.extension, "png");
    assert_eq!(Stats::get(&stats.uploads_opened), opened + 1, "one multipart upload");
    assert_eq!(
        stats
            .part_sizes
            .lock()
            .unwrap()
            .iter()
            .rev()
            .take(3)
            .rev()
            .copied()
            .collect::<Vec<_>>(),
        vec![part, part, part / 2 + 3],
        "equal parts, the last shorter"
    );
    let MediaLocation::Object(uri) = &stored.location else {
        panic!("expected an object");
    };
    assert!(uri.starts_with(&sink.uri()) && uri.ends_with(".png"), "{uri}");
    assert!(uri.contains("_a-big-picture-in-several-parts_"), "{uri}");
    let back = read_uri(sink, store, &stored.location).await;
    assert!(back.as_ref() == png.as_slice(), "the object holds the exact bytes");
    check_sidecar(sink, store, &stored).await;
    let keys = list_keys(store, sink.prefix()).await;
    assert_eq!(keys.len(), before + 2, "the media and its sidecar are listed: {keys:?}");
    assert!(keys.contains(&key_of(sink, &stored.location).to_string()));
}

/// A media just over one part and one exactly one part long: multipart for the first (two
/// parts), a single put for the second.
pub async fn part_boundaries(sink: &ObjectSink, store: &dyn ObjectStore, stats: &Stats) {
    let part = sink.part_size();
    let opened = Stats::get(&stats.uploads_opened);
    let exact = big_png(part, 2);
    let stored = sink
        .store(stream_in(&exact, 4096), sample_record("exactly one part"))
        .await
        .unwrap();
    assert_eq!(
        Stats::get(&stats.uploads_opened),
        opened,
        "one part or less: a single put"
    );
    assert!(read_uri(sink, store, &stored.location).await.as_ref() == exact.as_slice());
    let over = big_png(part + 1, 3);
    let stored = sink
        .store(stream_in(&over, 4096), sample_record("one byte more"))
        .await
        .unwrap();
    assert_eq!(Stats::get(&stats.uploads_opened), opened + 1);
    assert!(read_uri(sink, store, &stored.location).await.as_ref() == over.as_slice());
    let sizes = stats.part_sizes.lock().unwrap().clone();
    assert_eq!(&sizes[sizes.len() - 2..], &[part, 1]);
}

/// A store dropped while its multipart upload is midway (parts sent, the stream stalled) leaves
/// nothing listed, and the abort spawned from the guard runs.
pub async fn dropped_upload_leaves_nothing(sink: &ObjectSink, store: &dyn ObjectStore, stats: &Stats) {
    let part = sink.part_size();
    let before = list_keys(store, sink.prefix()).await;
    let aborted = Stats::get(&stats.uploads_aborted);
    let parts = Stats::get(&stats.parts_started);
    let png = big_png(part * 2 + 100, 4);
    let store_future = sink.store(stalling_after(&png, 32 * 1024), sample_record("never finished"));
    let outcome = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::select! {
            result = store_future => panic!("a stalled store cannot end, got {result:?}"),
            () = eventually("two parts are sent", || Stats::get(&stats.parts_started) >= parts + 2) => {}
        }
    })
    .await;
    assert!(outcome.is_ok(), "the upload never sent two parts");
    // The store future is dropped here: the guard spawns the abort.
    eventually("the abort ran", || Stats::get(&stats.uploads_aborted) == aborted + 1).await;
    assert_eq!(
        list_keys(store, sink.prefix()).await,
        before,
        "a dropped upload leaves no listed object"
    );
}

/// A store whose stream fails after several parts aborts the upload before returning.
pub async fn failed_upload_is_aborted_before_returning(sink: &ObjectSink, store: &dyn ObjectStore, stats: &Stats) {
    let part = sink.part_size();
    let before = list_keys(store, sink.prefix()).await;
    let aborted = Stats::get(&stats.uploads_aborted);
    let png = big_png(part * 2 + 100, 5);
    let broken = stream_in(&png, 64 * 1024)
        .chain(futures::stream::iter([Err(StreamError::network("connection reset"))]))
        .boxed();
    let result = sink.store(broken, sample_record("broken download")).await;
    assert!(matches!(result, Err(SinkError::Source(_))), "{result:?}");
    assert_eq!(
        Stats::get(&stats.uploads_aborted),
        aborted + 1,
        "aborted before store returned"
    );
    assert_eq!(list_keys(store, sink.prefix()).await, before);
    // Too large, midway through a multipart upload: aborted as well.
    let limited = sink.clone().with_max_bytes((part * 2) as u64);
    let result = limited
        .store(stream_in(&png, 64 * 1024), sample_record("too big"))
        .await;
    assert!(matches!(result, Err(SinkError::TooLarge { .. })), "{result:?}");
    assert_eq!(Stats::get(&stats.uploads_aborted), aborted + 2);
    assert_eq!(list_keys(store, sink.prefix()).await, before);
}

/// Stores under the same prompt at the same time get distinct keys and each keeps its own bytes.
pub async fn concurrent_identical_names(sink: &ObjectSink, store: &dyn ObjectStore, len: usize) {
    let medias: Vec<Vec<u8>> = (0..4).map(|i| big_png(len, 10 + i)).collect();
    let stores = medias
        .iter()
        .map(|media| sink.store(stream_in(media, 256 * 1024), sample_record("the same prompt")));
    let results = futures::future::join_all(stores).await;
    let mut keys = std::collections::HashSet::new();
    for (media, result) in medias.iter().zip(results) {
        let stored = result.unwrap();
        assert!(
            keys.insert(stored.location.clone()),
            "two stores got {}",
            stored.location
        );
        let back = read_uri(sink, store, &stored.location).await;
        assert!(
            back.as_ref() == media.as_slice(),
            "{} holds another store's bytes",
            stored.location
        );
        check_sidecar(sink, store, &stored).await;
    }
}

/// A name found taken is never overwritten: the media takes another name; a sidecar name found
/// taken makes the media go again (a single put retries under a fresh name; a multipart upload
/// fails retryable, its media deleted).
pub async fn taken_names_are_never_overwritten(sink: &ObjectSink, store: &dyn ObjectStore, stats: &Stats) {
    let taken_media = sink.prefix().clone().join("taken.png");
    let taken_sidecar = sink.prefix().clone().join("taken.json");
    let original = Bytes::from_static(b"someone else's object");
    store.put(&taken_media, original.clone().into()).await.unwrap();
    store.put(&taken_sidecar, original.clone().into()).await.unwrap();
    let before = list_keys(store, sink.prefix()).await;

    // The media's first name is taken.
    let png = tiny_png();
    stats.redirect_creates(".png", taken_media.clone(), 1);
    let redirected = Stats::get(&stats.redirected);
    let stored = sink.store(stream_in(&png, 16), sample_record("taken")).await.unwrap();
    assert_eq!(
        Stats::get(&stats.redirected),
        redirected + 1,
        "the first name was tried"
    );
    assert_ne!(key_of(sink, &stored.location), taken_media);
    assert!(read_uri(sink, store, &stored.location).await.as_ref() == png.as_slice());
    check_sidecar(sink, store, &stored).await;

    // The sidecar's first name is taken: the media stored under that stem is deleted again.
    stats.redirect_creates(".json", taken_sidecar.clone(), 1);
    let stored_too = sink.store(stream_in(&png, 16), sample_record("taken")).await.unwrap();
    assert_eq!(Stats::get(&stats.redirected), redirected + 2);
    check_sidecar(sink, store, &stored_too).await;

    let mut expected = before.clone();
    for s in [&stored, &stored_too] {
        expected.push(key_of(sink, &s.location).to_string());
        expected.push(key_of(sink, s.sidecar.as_ref().unwrap()).to_string());
    }
    expected.sort();
    assert_eq!(list_keys(store, sink.prefix()).await, expected, "nothing else is left");

    // A multipart media whose sidecar name is taken: deleted again, the error is retryable.
    let big = big_png(sink.part_size() + 10, 6);
    stats.redirect_creates(".json", taken_sidecar.clone(), 1);
    let result = sink.store(stream_in(&big, 64 * 1024), sample_record("taken")).await;
    match result {
        Err(SinkError::Backend { message, retryable }) => {
            assert!(retryable, "{message}");
            assert!(message.contains("taken"), "{message}");
        }
        other => panic!("expected a retryable backend error, got {other:?}"),
    }
    assert_eq!(
        list_keys(store, sink.prefix()).await,
        expected,
        "the media was deleted again"
    );

    for taken in [&taken_media, &taken_sidecar] {
        let bytes = store.get(taken).await.unwrap().bytes().await.unwrap();
        assert_eq!(bytes, original, "{taken} was overwritten");
    }
}

/// A store dropped while a request that publishes is in flight (the put of a small media, the
/// completion of a multipart upload, the put of the sidecar) leaves nothing: the request is not cut
/// off midway, the clean-up waits for it and deletes what it wrote.
pub async fn dropped_while_publishing_leaves_nothing(sink: &ObjectSink, store: &dyn ObjectStore, stats: &Stats) {
    let before = list_keys(store, sink.prefix()).await;
    stats.delay_ms.store(300, Ordering::SeqCst);

    // During the put of a small media.
    let (puts, done, deletes) = (
        Stats::get(&stats.puts),
        Stats::get(&stats.puts_done),
        Stats::get(&stats.deletes),
    );
    let store_future = sink.store(stream_in(&tiny_png(), 16), sample_record("dropped during the put"));
    tokio::select! {
        result = store_future => panic!("the put takes 300 ms, got {result:?}"),
        () = eventually("the put was sent", || Stats::get(&stats.puts) > puts) => {}
    }
    assert_eq!(Stats::get(&stats.puts_done), done, "dropped before the put landed");
    eventually("the put landed", || Stats::get(&stats.puts_done) == done + 1).await;
    eventually("it was deleted", || Stats::get(&stats.deletes) > deletes).await;
    listed_eventually(store, sink.prefix(), &before).await;

    // During the completion of a multipart upload.
    let (completed, deletes) = (Stats::get(&stats.uploads_completed), Stats::get(&stats.deletes));
    let completes = Stats::get(&stats.completes_started);
    let big = big_png(sink.part_size() * 2 + 10, 8);
    let store_future = sink.store(stream_in(&big, 256 * 1024), sample_record("dropped during completion"));
    tokio::select! {
        result = store_future => panic!("the completion takes 300 ms, got {result:?}"),
        () = eventually("the completion started", || Stats::get(&stats.completes_started) > completes) => {}
    }
    eventually("the upload completed", || {
        Stats::get(&stats.uploads_completed) == completed + 1
    })
    .await;
    eventually("it was deleted", || Stats::get(&stats.deletes) > deletes).await;
    listed_eventually(store, sink.prefix(), &before).await;

    // During the put of the sidecar (the media is published by then).
    let (puts, done, deletes) = (
        Stats::get(&stats.puts),
        Stats::get(&stats.puts_done),
        Stats::get(&stats.deletes),
    );
    let store_future = sink.store(stream_in(&tiny_png(), 16), sample_record("dropped during the sidecar"));
    tokio::select! {
        result = store_future => panic!("the sidecar's put takes 300 ms, got {result:?}"),
        () = eventually("the sidecar's put was sent", || Stats::get(&stats.puts) >= puts + 2) => {}
    }
    assert_eq!(
        Stats::get(&stats.puts_done),
        done + 1,
        "dropped after the media, before the sidecar landed"
    );
    eventually("both puts landed", || Stats::get(&stats.puts_done) == done + 2).await;
    eventually("both were deleted", || Stats::get(&stats.deletes) >= deletes + 2).await;
    listed_eventually(store, sink.prefix(), &before).await;
    stats.delay_ms.store(0, Ordering::SeqCst);
}

/// The keys listed under `{prefix}/{folder}`, relative to the prefix, sorted.
async fn listed_at(sink: &ObjectSink, store: &dyn ObjectStore, folder: &str) -> Vec<String> {
    let prefix = sink.prefix().clone();
    let at = folder.split('/').fold(prefix.clone(), Path::join);
    list_keys(store, &at)
        .await
        .into_iter()
        .map(|key| {
            let relative = Path::from(key.as_str());
            relative
                .prefix_match(&prefix)
                .unwrap()
                .map(|p| p.as_ref().to_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect()
}

/// Keyed stores: at `{prefix}/{key}.{ext}` (sidecar `{key}.json`) with `PutMode::Overwrite`, a second
/// store (a single put, then a multipart upload) replacing the first, another format replacing the
/// other, failures before publishing leaving the key as it was, failures and drops after leaving it
/// empty; unkeyed stores still use `PutMode::Create`.
pub async fn keyed_stores_replace_what_the_key_held(sink: &ObjectSink, store: &dyn ObjectStore, stats: &Stats) {
    const KEY: &str = "keyed/shard-0001/item-000001";
    let folder = "keyed/shard-0001";
    let media_key = |ext: &str| format!("{KEY}.{ext}");
    let read = |key: String| async move {
        let path = key.split('/').fold(sink.prefix().clone(), Path::join);
        store.get(&path).await.unwrap().bytes().await.unwrap()
    };
    let sidecar_prompt = |key: String| async move {
        let bytes = read(key).await;
        serde_json::from_slice::<MediaRecord>(&bytes).unwrap().prompt
    };

    // A small media: one put, overwriting.
    let (creates, overwrites) = (Stats::get(&stats.creates), Stats::get(&stats.overwrites));
    let png = tiny_png();
    let first = sink
        .store(stream_in(&png, 16), keyed_record("first", KEY))
        .await
        .unwrap();
    assert_eq!(
        first.location,
        MediaLocation::Object(format!("{}/{}", sink.uri(), media_key("png")))
    );
    assert_eq!(
        first.sidecar,
        Some(MediaLocation::Object(format!("{}/{}", sink.uri(), media_key("json"))))
    );
    check_sidecar(sink, store, &first).await;
    assert_eq!(
        Stats::get(&stats.creates),
        creates,
        "a keyed store never puts with PutMode::Create"
    );
    // The media and its sidecar (a store refusing attributes sees one more, retried without).
    assert!(
        Stats::get(&stats.overwrites) >= overwrites + 2,
        "the media and its sidecar overwrite"
    );
    assert_eq!(
        listed_at(sink, store, folder).await,
        [media_key("json"), media_key("png")]
    );

    // Again, larger than a part: a multipart upload whose completion replaces the first.
    let big = big_png(sink.part_size() + 1000, 11);
    let opened = Stats::get(&stats.uploads_opened);
    let second = sink
        .store(stream_in(&big, 64 * 1024), keyed_record("second", KEY))
        .await
        .unwrap();
    assert_eq!(Stats::get(&stats.uploads_opened), opened + 1, "a multipart upload");
    assert_eq!(second.location, first.location);
    assert_eq!(second.sidecar, first.sidecar);
    assert!(
        read(media_key("png")).await.as_ref() == big.as_slice(),
        "the second's bytes"
    );
    assert_eq!(sidecar_prompt(media_key("json")).await, "second");
    assert_eq!(
        listed_at(sink, store, folder).await,
        [media_key("json"), media_key("png")]
    );

    // Another format: the PNG goes.
    let jpeg = tiny_jpeg_head();
    let third = sink
        .store(stream_in(&jpeg, 7), keyed_record("third", KEY))
        .await
        .unwrap();
    assert_eq!(
        third.location,
        MediaLocation::Object(format!("{}/{}", sink.uri(), media_key("jpg")))
    );
    assert!(read(media_key("jpg")).await.as_ref() == jpeg.as_slice());
    assert_eq!(sidecar_prompt(media_key("json")).await, "third");
    assert_eq!(
        listed_at(sink, store, folder).await,
        [media_key("jpg"), media_key("json")]
    );

    // Failing before the media is published (a broken stream, single put or multipart): the key
    // is as it was.
    let aborted = Stats::get(&stats.uploads_aborted);
    for len in [40, sink.part_size() * 2 + 10] {
        let png = big_png(len.max(64), 12);
        let broken = stream_in(&png[..len.min(png.len())], 64 * 1024)
            .chain(futures::stream::iter([Err(StreamError::network("reset"))]))
            .boxed();
        let result = sink.store(broken, keyed_record("broken", KEY)).await;
        assert!(matches!(result, Err(SinkError::Source(_))), "{result:?}");
    }
    assert_eq!(
        Stats::get(&stats.uploads_aborted),
        aborted + 1,
        "the multipart one was aborted"
    );
    assert!(read(media_key("jpg")).await.as_ref() == jpeg.as_slice());
    assert_eq!(sidecar_prompt(media_key("json")).await, "third");
    assert_eq!(
        listed_at(sink, store, folder).await,
        [media_key("jpg"), media_key("json")]
    );

    // Failing after (the sidecar is refused): the key is left empty, the JPEG having been replaced.
    *stats.fail_puts_ending.lock().unwrap() = Some(media_key("json"));
    let result = sink
        .store(stream_in(&tiny_png(), 16), keyed_record("no sidecar", KEY))
        .await;
    *stats.fail_puts_ending.lock().unwrap() = None;
    match result {
        Err(SinkError::Backend { message, .. }) => {
            assert!(message.contains("writing the sidecar"), "{message}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert_eq!(listed_at(sink, store, folder).await, Vec::<String>::new());

    // Dropped while the media's put is in flight: once it lands, the key is emptied (media and
    // sidecar of the previous store).
    sink.store(stream_in(&tiny_png(), 16), keyed_record("before the drop", KEY))
        .await
        .unwrap();
    assert_eq!(
        listed_at(sink, store, folder).await,
        [media_key("json"), media_key("png")]
    );
    stats.delay_ms.store(300, Ordering::SeqCst);
    let (puts, done) = (Stats::get(&stats.puts), Stats::get(&stats.puts_done));
    let store_future = sink.store(stream_in(&jpeg, 7), keyed_record("dropped", KEY));
    tokio::select! {
        result = store_future => panic!("the put takes 300 ms, got {result:?}"),
        () = eventually("the put was sent", || Stats::get(&stats.puts) > puts) => {}
    }
    eventually("the put landed", || Stats::get(&stats.puts_done) > done).await;
    stats.delay_ms.store(0, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !listed_at(sink, store, folder).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still listed: {:?}",
            listed_at(sink, store, folder).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Unkeyed stores still never overwrite.
    let creates = Stats::get(&stats.creates);
    let overwrites = Stats::get(&stats.overwrites);
    let unkeyed = sink.store(stream_in(&png, 16), sample_record("unkeyed")).await.unwrap();
    if sink_supports_create(stats, creates) {
        assert_eq!(Stats::get(&stats.overwrites), overwrites, "{unkeyed:?}");
    }
    store.delete(&key_of(sink, &unkeyed.location)).await.unwrap();
    store
        .delete(&key_of(sink, unkeyed.sidecar.as_ref().unwrap()))
        .await
        .unwrap();
}

/// Whether puts since `creates_before` used `PutMode::Create` (the store supports it).
fn sink_supports_create(stats: &Stats, creates_before: usize) -> bool {
    Stats::get(&stats.creates) > creates_before
}
