//! Runs the `conformance` suite on every sink of this crate, directly and
//! behind `Arc`, `Box` and `Arc<dyn MediaSink>`; on an object-store sink
//! written outside the crate with the public contract (`MediaIntake`,
//! `MediaLocation::Object`); and checks that the suite catches broken sinks.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use hf_media_sink::conformance::{self, tiny_mp4_head, tiny_png};
use hf_media_sink::{
    ByteStream, DynMediaSink, FileSink, MediaFormat, MediaIntake, MediaKey, MediaKind, MediaLocation, MediaRecord,
    MediaSink, MemorySink, SinkError, StoredMedia, media_extensions, sniff,
};

fn _obj_safe(_: &dyn MediaSink) {}

/// Every entry under `dir`, in sub-folders too, hidden temporary files included.
fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| {
                let entry = e.expect("entry");
                let below = if entry.file_type().expect("type").is_dir() {
                    entries(&entry.path())
                } else {
                    0
                };
                1 + below
            })
            .sum()
        })
        .unwrap_or(0)
}

/// The hidden entries under `dir`, in sub-folders too.
fn hidden_entries(dir: &Path) -> Vec<String> {
    let mut hidden = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            hidden.push(name);
        } else if entry.file_type().expect("type").is_dir() {
            hidden.extend(hidden_entries(&entry.path()));
        }
    }
    hidden
}

#[tokio::test]
async fn file_sink_passes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("media");
    let sink = FileSink::new(&dir);
    conformance::run_all(&sink, || entries(&dir)).await;
    // Without syncs, every behaviour is the same (only the disk writes are left to the system).
    let unsynced_dir = tmp.path().join("unsynced");
    let unsynced = FileSink::new(&unsynced_dir).with_sync(false);
    conformance::run_all(&unsynced, || entries(&unsynced_dir)).await;
    assert!(
        hidden_entries(&unsynced_dir).is_empty(),
        "{:?}",
        hidden_entries(&unsynced_dir)
    );
    let limited = FileSink::new(&dir).with_max_bytes(100);
    conformance::rejects_oversized(&limited, 100, || entries(&dir)).await;
    assert!(hidden_entries(&dir).is_empty(), "{:?}", hidden_entries(&dir));

    // The keyed checks, on their own: files at `{dir}/{key}.{ext}`, in sub-folders.
    let (first, second) = conformance::keyed_store_lands_at_key_and_replaces(&sink, || entries(&dir)).await;
    let expected = dir.join("conformance/shard-0000/replaced.png");
    assert_eq!(first.location, MediaLocation::File(expected.clone()));
    assert_eq!(second.location, MediaLocation::File(expected.clone()));
    assert_eq!(
        second.sidecar,
        Some(MediaLocation::File(dir.join("conformance/shard-0000/replaced.json")))
    );
    let (png, jpeg) = conformance::keyed_store_of_another_format_replaces(&sink, || entries(&dir)).await;
    assert!(!png.location.as_path().expect("a file").exists());
    assert_eq!(
        jpeg.location,
        MediaLocation::File(dir.join("conformance/shard-0000/reformatted.jpg"))
    );
    conformance::failed_keyed_store_keeps_the_key_as_it_was(&sink, || entries(&dir)).await;
    let mut names: Vec<String> = std::fs::read_dir(dir.join("conformance/shard-0000"))
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["reformatted.jpg", "reformatted.json", "replaced.json", "replaced.png"],
        "one media and one sidecar per key, nothing else"
    );
    assert!(hidden_entries(&dir).is_empty(), "{:?}", hidden_entries(&dir));
}

#[tokio::test]
async fn file_sink_without_sidecar_passes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sink = FileSink::new(tmp.path()).with_sidecar(false);
    let stored = conformance::stores_png(&sink).await;
    assert!(stored.sidecar.is_none());
    conformance::run_all(&sink, || entries(tmp.path())).await;
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".json")), "{names:?}");
    let keyed: Vec<String> = std::fs::read_dir(tmp.path().join("conformance/shard-0000"))
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(keyed.iter().all(|n| !n.ends_with(".json")), "{keyed:?}");
}

#[tokio::test]
async fn memory_sink_passes() {
    let sink = MemorySink::new();
    let counter = sink.clone();
    conformance::run_all(&sink, move || counter.len()).await;
    let limited = MemorySink::new().with_max_bytes(64);
    let counter = limited.clone();
    conformance::rejects_oversized(&limited, 64, move || counter.len()).await;

    // One entry per key, found by its key.
    let key = MediaKey::new("conformance/shard-0000/replaced").unwrap();
    let held = sink.get_by_key(&key).expect("held under its key");
    assert_eq!(held.record.prompt, "the second take");
    assert_eq!(held.record.key.as_ref(), Some(&key));
    let reformatted = MediaKey::new("conformance/shard-0000/reformatted").unwrap();
    assert_eq!(sink.get_by_key(&reformatted).map(|m| m.format.extension), Some("jpg"));
    let keyed = sink.items().iter().filter(|m| m.record.key.is_some()).count();
    assert_eq!(keyed, 4, "four keys (one fresh), one entry each");
}

#[tokio::test]
async fn arc_box_and_dyn_forms_pass() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();

    let arc = Arc::new(FileSink::new(&dir));
    conformance::run_all(&arc, || entries(&dir)).await;

    let boxed: Box<dyn MediaSink> = Box::new(FileSink::new(&dir));
    conformance::run_all(&boxed, || entries(&dir)).await;

    let memory = MemorySink::new();
    let counter = memory.clone();
    let dynamic: DynMediaSink = Arc::new(memory);
    // As `Arc<dyn MediaSink>` itself, and as the `dyn MediaSink` inside it.
    conformance::run_all(&dynamic, || counter.len()).await;
    conformance::run_all(dynamic.as_ref(), || counter.len()).await;

    let boxed_arc: Box<DynMediaSink> = Box::new(Arc::new(MemorySink::new()));
    conformance::stores_png(&boxed_arc).await;
}

#[tokio::test]
async fn memory_ids_follow_store_order() {
    let sink = MemorySink::new();
    for expected in 0..3 {
        let stored = conformance::stores_png(&sink).await;
        assert_eq!(stored.location, MediaLocation::Memory { id: expected });
    }
    let items = sink.items();
    assert_eq!(items.len(), 3);
    assert!(items.iter().enumerate().all(|(i, m)| m.id == i));
    assert_eq!(items[2].bytes.as_ref(), tiny_png().as_slice());
}

/// CRC-32 (IEEE), to check the PNG helper really is a valid PNG.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn tiny_png_is_a_valid_png() {
    let png = tiny_png();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let mut at = 8;
    let mut kinds = Vec::new();
    while at < png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().expect("len")) as usize;
        let kind_and_data = &png[at + 4..at + 8 + len];
        let crc = u32::from_be_bytes(png[at + 8 + len..at + 12 + len].try_into().expect("crc"));
        assert_eq!(crc32(kind_and_data), crc, "bad CRC at offset {at}");
        kinds.push(String::from_utf8_lossy(&kind_and_data[..4]).into_owned());
        at += 12 + len;
    }
    assert_eq!(at, png.len());
    assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
    // 1×1, 8-bit RGBA.
    assert_eq!(&png[16..26], &[0, 0, 0, 1, 0, 0, 0, 1, 8, 6]);
    assert_eq!(sniff(&png).map(|f| f.extension), Some("png"));
}

#[test]
fn tiny_mp4_head_is_sniffed_as_mp4() {
    let head = tiny_mp4_head();
    assert_eq!(&head[4..8], b"ftyp");
    let format = sniff(&head).expect("mp4");
    assert_eq!(format.extension, "mp4");
    assert_eq!(format.kind, MediaKind::Video);
}

/// An in-memory stand-in for an object store: an object becomes visible (listed) only when its
/// multipart upload completes; an unfinished upload's parts are never listed.
#[derive(Debug, Default)]
struct Bucket {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
    uploads: Mutex<BTreeMap<u64, Vec<u8>>>,
    next_upload: AtomicU64,
}

impl Bucket {
    fn listed(&self) -> usize {
        self.objects.lock().unwrap().len()
    }

    fn pending_uploads(&self) -> usize {
        self.uploads.lock().unwrap().len()
    }

    async fn create_multipart(&self) -> u64 {
        tokio::task::yield_now().await;
        let id = self.next_upload.fetch_add(1, Ordering::Relaxed);
        self.uploads.lock().unwrap().insert(id, Vec::new());
        id
    }

    async fn upload_part(&self, upload: u64, part: &[u8]) -> Result<(), SinkError> {
        tokio::task::yield_now().await;
        match self.uploads.lock().unwrap().get_mut(&upload) {
            Some(bytes) => {
                bytes.extend_from_slice(part);
                Ok(())
            }
            None => Err(SinkError::backend("NoSuchUpload", false)),
        }
    }

    /// Completes `upload` at `key`; with `if_absent`, only if no object is there (else `false`, and the
    /// upload is gone).
    async fn complete_multipart(&self, upload: u64, key: &str, if_absent: bool) -> Result<bool, SinkError> {
        tokio::task::yield_now().await;
        let bytes = self.uploads.lock().unwrap().remove(&upload);
        let bytes = bytes.ok_or_else(|| SinkError::backend("NoSuchUpload", false))?;
        let mut objects = self.objects.lock().unwrap();
        if if_absent && objects.contains_key(key) {
            return Ok(false);
        }
        objects.insert(key.to_owned(), bytes);
        Ok(true)
    }

    async fn abort_multipart(&self, upload: u64) {
        tokio::task::yield_now().await;
        self.uploads.lock().unwrap().remove(&upload);
    }

    async fn put(&self, key: &str, body: Vec<u8>) {
        tokio::task::yield_now().await;
        self.objects.lock().unwrap().insert(key.to_owned(), body);
    }

    async fn delete(&self, key: &str) {
        tokio::task::yield_now().await;
        self.objects.lock().unwrap().remove(key);
    }
}

/// What an [`ObjectSink`] store has left to undo if it does not reach its end.
enum Undo {
    Abort(u64),
    Delete(String),
}

impl Undo {
    async fn run(self, bucket: &Bucket) {
        match self {
            Undo::Abort(upload) => bucket.abort_multipart(upload).await,
            Undo::Delete(key) => bucket.delete(&key).await,
        }
    }
}

/// Undoes on error (awaited) or on drop (spawned: Drop cannot await).
struct Guard {
    bucket: Arc<Bucket>,
    undo: Option<Undo>,
}

impl Guard {
    async fn undo_now(mut self) {
        if let Some(undo) = self.undo.take() {
            undo.run(&self.bucket).await;
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(undo) = self.undo.take() {
            let bucket = Arc::clone(&self.bucket);
            tokio::spawn(async move { undo.run(&bucket).await });
        }
    }
}

/// A sink written outside this crate, the way `MediaSink::store`'s docs describe: `MediaIntake` for the
/// checks, multipart upload, sidecar object written after the media is published.
#[derive(Debug)]
struct ObjectSink {
    bucket: Arc<Bucket>,
    max_bytes: u64,
}

impl ObjectSink {
    fn new(bucket: &Arc<Bucket>) -> Self {
        Self {
            bucket: Arc::clone(bucket),
            max_bytes: 1024 * 1024,
        }
    }
}

#[async_trait::async_trait]
impl MediaSink for ObjectSink {
    async fn store(&self, mut media: ByteStream, mut record: MediaRecord) -> Result<StoredMedia, SinkError> {
        let started = Instant::now();
        let upload = self.bucket.create_multipart().await;
        let mut guard = Guard {
            bucket: Arc::clone(&self.bucket),
            undo: Some(Undo::Abort(upload)),
        };
        let mut intake = MediaIntake::new(self.max_bytes);
        // A keyed record is stored at `media/{key}.{ext}`, replacing what is there (or, for a fresh
        // key, only if nothing is there); otherwise at a fresh name.
        let fresh = record.key.as_ref().is_some_and(MediaKey::is_fresh);
        let stem = match &record.key {
            Some(key) => format!("media/{key}"),
            None => format!("media/{upload}"),
        };
        let key_of = |format: MediaFormat| format!("{stem}.{}", format.extension);
        let uploaded = async {
            while let Some(chunk) = media.next().await {
                let chunk = chunk.map_err(SinkError::Source)?;
                intake.accept(&chunk)?;
                self.bucket.upload_part(upload, &chunk).await?;
            }
            let format = intake.finish()?;
            let key = key_of(format);
            if !self.bucket.complete_multipart(upload, &key, fresh).await? {
                return Err(SinkError::KeyTaken {
                    key: record.key.as_ref().map(ToString::to_string).unwrap_or_default(),
                    taken: format!("s3://bucket/{key}"),
                });
            }
            Ok(format)
        };
        let format = match uploaded.await {
            Ok(format) => format,
            Err(e) => {
                guard.undo_now().await;
                return Err(e);
            }
        };
        let key = key_of(format);
        guard.undo = Some(Undo::Delete(key.clone()));
        record.timings.store_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if record.key.is_some() && !fresh {
            // A key holds one media: the other formats go (a fresh key has none).
            for other in media_extensions().filter(|e| *e != format.extension) {
                self.bucket.delete(&format!("{stem}.{other}")).await;
            }
        }
        let sidecar = format!("{stem}.json");
        self.bucket
            .put(&sidecar, serde_json::to_vec(&record).expect("a record serializes"))
            .await;
        guard.undo = None;
        Ok(StoredMedia {
            location: MediaLocation::Object(format!("s3://bucket/{key}")),
            format,
            bytes: intake.total(),
            sidecar: Some(MediaLocation::Object(format!("s3://bucket/{sidecar}"))),
            record,
        })
    }
}

#[tokio::test]
async fn an_object_store_sink_written_elsewhere_passes() {
    let bucket = Arc::new(Bucket::default());
    let sink = ObjectSink::new(&bucket);
    conformance::run_all(&sink, || bucket.listed()).await;
    let limited = ObjectSink {
        max_bytes: 100,
        ..ObjectSink::new(&bucket)
    };
    conformance::rejects_oversized(&limited, 100, || bucket.listed()).await;

    let stored = conformance::stores_png(&sink).await;
    let MediaLocation::Object(uri) = &stored.location else {
        panic!("expected an object, got {:?}", stored.location);
    };
    assert!(uri.starts_with("s3://bucket/media/") && uri.ends_with(".png"), "{uri}");
    assert_eq!(stored.location.to_string(), *uri);
    assert_eq!(stored.location.as_path(), None);
    let Some(MediaLocation::Object(sidecar)) = &stored.sidecar else {
        panic!("expected an object sidecar, got {:?}", stored.sidecar);
    };
    let key = sidecar.strip_prefix("s3://bucket/").expect("in the bucket");
    let json = bucket
        .objects
        .lock()
        .unwrap()
        .get(key)
        .cloned()
        .expect("sidecar object");
    let back: MediaRecord = serde_json::from_slice(&json).expect("a record");
    assert_eq!(back, stored.record);
    let keys: Vec<String> = bucket.objects.lock().unwrap().keys().cloned().collect();
    assert!(
        keys.contains(&"media/conformance/shard-0000/reformatted.jpg".to_owned())
            && !keys.contains(&"media/conformance/shard-0000/reformatted.png".to_owned()),
        "{keys:?}"
    );

    // The cancelled store's abort was spawned from the guard's Drop: it runs soon after.
    tokio::time::timeout(Duration::from_secs(5), async {
        while bucket.pending_uploads() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("every unfinished upload is aborted");
}

/// Wraps a sink and breaks one promise, to check that the suite notices.
#[derive(Debug)]
struct Broken<S> {
    inner: S,
    /// Reports `store_ms` as 0 whatever was measured.
    zero_store_ms: bool,
    /// Reports a `store_ms` other than the sidecar's.
    store_ms_differs_from_sidecar: bool,
}

#[async_trait::async_trait]
impl<S: MediaSink> MediaSink for Broken<S> {
    async fn store(&self, media: ByteStream, record: MediaRecord) -> Result<StoredMedia, SinkError> {
        let mut stored = self.inner.store(media, record).await?;
        if self.zero_store_ms {
            stored.record.timings.store_ms = 0;
        }
        if self.store_ms_differs_from_sidecar {
            stored.record.timings.store_ms += 1;
        }
        Ok(stored)
    }
}

#[tokio::test]
#[should_panic(expected = "timings.store_ms is 0")]
async fn the_suite_catches_an_unmeasured_store_ms() {
    let sink = Broken {
        inner: MemorySink::new(),
        zero_store_ms: true,
        store_ms_differs_from_sidecar: false,
    };
    conformance::measures_store_time(&sink).await;
}

#[tokio::test]
#[should_panic(expected = "timings.store_ms included")]
async fn the_suite_catches_a_sidecar_that_disagrees() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sink = Broken {
        inner: FileSink::new(tmp.path()),
        zero_store_ms: false,
        store_ms_differs_from_sidecar: true,
    };
    conformance::stores_png(&sink).await;
}

#[tokio::test]
async fn memory_media_can_be_taken_after_the_suite() {
    let sink = MemorySink::new();
    let counter = sink.clone();
    conformance::run_all(&sink, move || counter.len()).await;
    assert!(!sink.is_empty());
    let mut last = 0;
    for media in sink.items() {
        last = last.max(media.id);
        assert_eq!(sink.take(media.id), Some(media));
    }
    assert!(sink.is_empty());
    // Ids keep growing after the takes (and the replacements of keyed entries).
    let stored = conformance::stores_png(&sink).await;
    let MediaLocation::Memory { id } = stored.location else {
        panic!("a memory location expected, got {:?}", stored.location);
    };
    assert!(id > last, "{id} after {last}");
}
