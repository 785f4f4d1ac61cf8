//! `ObjectSink` over `object_store`'s in-memory and local-file stores: the whole conformance
//! suite, multipart uploads of several parts, and clean-up of failed and dropped stores.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path as FsPath;
use std::sync::Arc;

use hf_media_sink::conformance;
use hf_media_sink::{MediaKey, MediaLocation, MediaRecord, MediaSink, SinkError};
use hf_media_sink_object::object_store::memory::InMemory;
use hf_media_sink_object::object_store::{ObjectStore, ObjectStoreExt as _};
use hf_media_sink_object::{Backend, DEFAULT_PART_SIZE, ObjectSink};

use support::{Stats, Tracked, count_objects};

/// Small parts, so that multipart uploads stay fast in memory and on disk.
const PART: usize = 64 * 1024;

fn memory_sink(prefix: &str) -> (ObjectSink, Arc<dyn ObjectStore>, Arc<Stats>) {
    let (tracked, stats) = Tracked::new(Arc::new(InMemory::new()));
    let store: Arc<dyn ObjectStore> = tracked;
    let sink = ObjectSink::new(Arc::clone(&store), prefix, "memory://").with_part_size(PART);
    (sink, store, stats)
}

/// Every file under `dir`, staging files of unfinished uploads included.
fn files_under(dir: &FsPath) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path.display().to_string());
            }
        }
    }
    files.sort();
    files
}

fn local_sink(dir: &FsPath) -> (ObjectSink, Arc<dyn ObjectStore>, Arc<Stats>) {
    let url = format!("file://{}/media", dir.display());
    let from_url = ObjectSink::from_url(&url).unwrap();
    assert_eq!(from_url.backend(), Backend::Local);
    let (tracked, stats) = Tracked::new(Arc::clone(from_url.object_store()));
    let store: Arc<dyn ObjectStore> = tracked;
    let sink = ObjectSink::new(Arc::clone(&store), from_url.prefix().as_ref(), "file://").with_part_size(PART);
    assert_eq!(sink.uri(), url);
    (sink, store, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_passes_the_conformance_suite() {
    let (sink, store, stats) = memory_sink("media/run-1");
    let prefix = sink.prefix().clone();
    conformance::run_all(&sink, || count_objects(&store, &prefix)).await;
    let limited = sink.clone().with_max_bytes(100);
    conformance::rejects_oversized(&limited, 100, || count_objects(&store, &prefix)).await;
    // The same, with the limit above one part (refused midway through a multipart upload).
    let limited = sink.clone().with_max_bytes((PART * 3) as u64);
    conformance::rejects_oversized(&limited, (PART * 3) as u64, || count_objects(&store, &prefix)).await;
    assert_eq!(
        Stats::get(&stats.uploads_opened),
        Stats::get(&stats.uploads_aborted),
        "the oversized multipart upload was aborted"
    );

    let stored = conformance::stores_png(&sink).await;
    let MediaLocation::Object(uri) = &stored.location else {
        panic!("expected an object, got {:?}", stored.location);
    };
    assert!(
        uri.starts_with("memory:///media/run-1/") && uri.ends_with(".png"),
        "{uri}"
    );
    assert!(uri.contains("_a-tiny-red-pixel_"), "{uri}");
    support::check_sidecar(&sink, store.as_ref(), &stored).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_without_sidecar_passes() {
    let (sink, store, _) = memory_sink("bare");
    let sink = sink.with_sidecar(false);
    let prefix = sink.prefix().clone();
    conformance::run_all(&sink, || count_objects(&store, &prefix)).await;
    let stored = conformance::stores_png(&sink).await;
    assert!(stored.sidecar.is_none());
    let keys = support::list_keys(store.as_ref(), &prefix).await;
    assert!(keys.iter().all(|k| !k.ends_with(".json")), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_multipart_and_clean_up() {
    let (sink, store, stats) = memory_sink("big");
    support::multipart_in_several_parts(&sink, store.as_ref(), &stats).await;
    support::part_boundaries(&sink, store.as_ref(), &stats).await;
    support::dropped_upload_leaves_nothing(&sink, store.as_ref(), &stats).await;
    support::failed_upload_is_aborted_before_returning(&sink, store.as_ref(), &stats).await;
    support::concurrent_identical_names(&sink, store.as_ref(), PART * 2).await;
    support::concurrent_identical_names(&sink, store.as_ref(), 1000).await;
    support::taken_names_are_never_overwritten(&sink, store.as_ref(), &stats).await;
    support::dropped_while_publishing_leaves_nothing(&sink, store.as_ref(), &stats).await;
    let opened = Stats::get(&stats.uploads_opened);
    let settled = Stats::get(&stats.uploads_completed) + Stats::get(&stats.uploads_aborted);
    assert_eq!(opened, settled, "every upload was completed or aborted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_keyed_stores_replace_what_the_key_held() {
    let (sink, store, stats) = memory_sink("keys");
    support::keyed_stores_replace_what_the_key_held(&sink, store.as_ref(), &stats).await;
    let prefix = sink.prefix().clone();
    let (first, second) =
        conformance::keyed_store_lands_at_key_and_replaces(&sink, || count_objects(&store, &prefix)).await;
    assert_eq!(
        first.location,
        MediaLocation::Object("memory:///keys/conformance/shard-0000/replaced.png".to_owned())
    );
    assert_eq!(second.location, first.location);
    let bytes = support::read_uri(&sink, store.as_ref(), &second.location).await;
    assert!(bytes.ends_with(b"second take"), "the second's bytes");
    support::check_sidecar(&sink, store.as_ref(), &second).await;
    let opened = Stats::get(&stats.uploads_opened);
    let settled = Stats::get(&stats.uploads_completed) + Stats::get(&stats.uploads_aborted);
    assert_eq!(opened, settled, "every upload was completed or aborted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_fresh_keys_of_large_media_never_replace() {
    let (sink, store, stats) = memory_sink("fresh");
    let fresh = |prompt: &str, key: &str| MediaRecord {
        key: Some(MediaKey::new(key).unwrap().fresh()),
        ..conformance::sample_record(prompt)
    };
    // A large media (a multipart upload) at a fresh key: stored, no delete of other formats sent.
    let first = support::big_png(3 * PART, 1);
    let stored = sink
        .store(support::stream_in(&first, 10_000), fresh("first", "f/one"))
        .await
        .unwrap();
    assert_eq!(
        stored.location,
        MediaLocation::Object("memory:///fresh/f/one.png".to_owned())
    );
    // Another large media at the same fresh key: refused before any upload, nothing replaced.
    let opened = Stats::get(&stats.uploads_opened);
    let err = sink
        .store(
            support::stream_in(&support::big_png(3 * PART, 2), 10_000),
            fresh("second", "f/one"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SinkError::KeyTaken { key, taken } if key == "f/one" && taken.ends_with("f/one.png")),
        "{err:?}"
    );
    assert_eq!(Stats::get(&stats.uploads_opened), opened, "no upload was opened");
    assert_eq!(support::read_uri(&sink, store.as_ref(), &stored.location).await, first);
    // Only the sidecar's name taken: refused too, the sidecar left alone.
    let sidecar = sink.prefix().clone().join("f").join("two.json");
    store.put(&sidecar, b"someone else's".to_vec().into()).await.unwrap();
    let err = sink
        .store(
            support::stream_in(&support::big_png(3 * PART, 3), 10_000),
            fresh("third", "f/two"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SinkError::KeyTaken { taken, .. } if taken.ends_with("f/two.json")),
        "{err:?}"
    );
    let keys = support::list_keys(store.as_ref(), sink.prefix()).await;
    assert_eq!(keys, ["fresh/f/one.json", "fresh/f/one.png", "fresh/f/two.json"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_upload_concurrency_one_keeps_order() {
    let (sink, store, stats) = memory_sink("serial");
    let sink = sink.with_upload_concurrency(1);
    support::multipart_in_several_parts(&sink, store.as_ref(), &stats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_files_pass_the_conformance_suite() {
    let tmp = tempfile::tempdir().unwrap();
    let (sink, store, _) = local_sink(tmp.path());
    let prefix = sink.prefix().clone();
    conformance::run_all(&sink, || count_objects(&store, &prefix)).await;
    let limited = sink.clone().with_max_bytes(100);
    conformance::rejects_oversized(&limited, 100, || count_objects(&store, &prefix)).await;

    let stored = conformance::stores_png(&sink).await;
    let MediaLocation::Object(uri) = &stored.location else {
        panic!("expected an object, got {:?}", stored.location);
    };
    // The URI is the file's own URL.
    let path = uri.strip_prefix("file://").unwrap();
    assert_eq!(std::fs::read(path).unwrap(), conformance::tiny_png());
    assert!(
        path.starts_with(&tmp.path().join("media").display().to_string()),
        "{path}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_files_multipart_and_clean_up() {
    let tmp = tempfile::tempdir().unwrap();
    let (sink, store, stats) = local_sink(tmp.path());
    support::multipart_in_several_parts(&sink, store.as_ref(), &stats).await;
    support::part_boundaries(&sink, store.as_ref(), &stats).await;
    let files = files_under(tmp.path());
    support::dropped_upload_leaves_nothing(&sink, store.as_ref(), &stats).await;
    support::failed_upload_is_aborted_before_returning(&sink, store.as_ref(), &stats).await;
    // No staging file of the aborted uploads is left on disk.
    support::eventually("the staging files are removed", || files_under(tmp.path()) == files).await;
    support::concurrent_identical_names(&sink, store.as_ref(), PART * 2).await;
    support::taken_names_are_never_overwritten(&sink, store.as_ref(), &stats).await;
    support::dropped_while_publishing_leaves_nothing(&sink, store.as_ref(), &stats).await;
    assert_eq!(files_under(tmp.path()).iter().filter(|f| f.contains('#')).count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_files_keyed_stores_replace_what_the_key_held() {
    let tmp = tempfile::tempdir().unwrap();
    let (sink, store, stats) = local_sink(tmp.path());
    support::keyed_stores_replace_what_the_key_held(&sink, store.as_ref(), &stats).await;
    let media = tmp.path().join("media");
    // No staging file is left by the multipart uploads (completed or aborted).
    support::eventually("no staging file is left", || {
        files_under(&media).iter().all(|f| !f.contains('#'))
    })
    .await;

    // A folder named like another format of a key (the folder of the key `a.gif/b`) holds no
    // object of that name: a keyed store at `a` leaves it.
    let nested = conformance::keyed_record("nested", "a.gif/b");
    sink.store(conformance::stream_of(vec![conformance::tiny_png()]), nested)
        .await
        .unwrap();
    let jpeg = conformance::keyed_record("a jpeg", "a");
    let stored = sink
        .store(conformance::stream_of(vec![conformance::tiny_jpeg_head()]), jpeg)
        .await
        .unwrap();
    assert_eq!(stored.location, MediaLocation::Object(format!("{}/a.jpg", sink.uri())));
    assert!(media.join("a.jpg").is_file() && media.join("a.json").is_file());
    assert!(media.join("a.gif/b.png").is_file() && media.join("a.gif/b.json").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_part_size_suits_s3() {
    let (sink, _, _) = memory_sink("x");
    let sink = ObjectSink::new(Arc::clone(sink.object_store()), "x", "memory://");
    assert_eq!(sink.part_size(), DEFAULT_PART_SIZE);
    const { assert!(DEFAULT_PART_SIZE >= hf_media_sink_object::S3_MIN_PART_SIZE) };
    // Still one put for a media under one part.
    let stored = conformance::stores_mp4(&sink).await;
    assert!(matches!(stored.location, MediaLocation::Object(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_a_reachable_store() {
    let (sink, _, _) = memory_sink("x");
    sink.check().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (sink, _, _) = local_sink(tmp.path());
    sink.check().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_is_a_dyn_media_sink() {
    let (sink, _, _) = memory_sink("dyn");
    let dynamic: hf_media_sink::DynMediaSink = Arc::new(sink);
    conformance::stores_png(&dynamic).await;
    let _: &dyn MediaSink = dynamic.as_ref();
}
