//! `ObjectSink` against a real S3-compatible server: moto, started per test on a free loopback
//! port (`HF_MEDIA_MOTO_SERVER`, else `moto_server` on PATH; these tests fail, with how to install
//! it, when it is missing).

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use hf_media_sink::conformance;
use hf_media_sink::{MediaLocation, MediaSink, SinkError};
use hf_media_sink_object::object_store::aws::AmazonS3Builder;
use hf_media_sink_object::object_store::path::Path;
use hf_media_sink_object::object_store::{
    Attribute, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, RetryConfig,
};
use hf_media_sink_object::{Backend, ObjectSink, S3_MIN_PART_SIZE};

use support::moto::Moto;
use support::{Stats, Tracked, count_objects, list_keys};

const BUCKET: &str = "hf-media-test";

/// moto with a bucket, and a sink over it built from an `s3://` URL, its store wrapped to record
/// uploads. Parts are S3's smallest (5 MiB): moto, like S3, refuses smaller ones.
async fn s3_sink(prefix: &str) -> (Moto, ObjectSink, Arc<dyn ObjectStore>, Arc<Stats>) {
    let moto = Moto::start();
    moto.create_bucket(BUCKET).await;
    let url = format!("s3://{BUCKET}/{prefix}");
    let from_url = ObjectSink::from_url_opts(&url, moto.options()).unwrap();
    assert_eq!(from_url.backend(), Backend::S3);
    assert_eq!(from_url.uri(), url);
    let (tracked, stats) = Tracked::new(Arc::clone(from_url.object_store()));
    let store: Arc<dyn ObjectStore> = tracked;
    let sink = ObjectSink::new(Arc::clone(&store), prefix, format!("s3://{BUCKET}")).with_part_size(S3_MIN_PART_SIZE);
    assert_eq!(sink.uri(), url);
    (moto, sink, store, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_passes_the_conformance_suite() {
    let (_moto, sink, store, _) = s3_sink("conformance").await;
    sink.check().await.unwrap();
    let prefix = sink.prefix().clone();
    conformance::run_all(&sink, || count_objects(&store, &prefix)).await;
    let limited = sink.clone().with_max_bytes(100);
    conformance::rejects_oversized(&limited, 100, || count_objects(&store, &prefix)).await;

    let stored = conformance::stores_png(&sink).await;
    let MediaLocation::Object(uri) = &stored.location else {
        panic!("expected an object, got {:?}", stored.location);
    };
    assert!(
        uri.starts_with("s3://hf-media-test/conformance/") && uri.ends_with(".png"),
        "{uri}"
    );
    support::check_sidecar(&sink, store.as_ref(), &stored).await;
    // The Content-Type is the sniffed one.
    let got = store.get(&support::key_of(&sink, &stored.location)).await.unwrap();
    assert_eq!(
        got.attributes.get(&Attribute::ContentType).map(|v| v.as_ref()),
        Some("image/png")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_completed_multipart_object_is_listed_and_exact() {
    let (_moto, sink, store, stats) = s3_sink("multipart").await;
    support::multipart_in_several_parts(&sink, store.as_ref(), &stats).await;
    let keys = list_keys(store.as_ref(), sink.prefix()).await;
    let media = keys.iter().find(|k| k.ends_with(".png")).unwrap();
    let got = store.get(&Path::from(media.as_str())).await.unwrap();
    assert_eq!(
        got.attributes.get(&Attribute::ContentType).map(|v| v.as_ref()),
        Some("image/png"),
        "the multipart upload carries the Content-Type"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_upload_killed_midway_leaves_nothing() {
    let (moto, sink, store, stats) = s3_sink("killed").await;
    let part = sink.part_size();
    let png = support::big_png(part * 2 + 100, 7);
    let store_future = sink.store(
        support::stalling_after(&png, 256 * 1024),
        conformance::sample_record("killed"),
    );
    let watched = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::select! {
            result = store_future => panic!("a stalled store cannot end, got {result:?}"),
            () = support::eventually("two parts are sent", || stats.part_sizes.lock().unwrap().len() >= 2) => {}
        }
    });
    // While the upload is open, moto lists it as an unfinished upload (and no object).
    watched.await.unwrap();
    // The store future is dropped: the guard's abort runs on the runtime.
    support::eventually("the abort ran", || Stats::get(&stats.uploads_aborted) == 1).await;
    assert_eq!(list_keys(store.as_ref(), sink.prefix()).await, Vec::<String>::new());
    assert_eq!(
        moto.open_uploads(BUCKET).await,
        Vec::<String>::new(),
        "moto has no open upload left"
    );

    // The same with the stream failing: aborted before `store` returns.
    support::failed_upload_is_aborted_before_returning(&sink, store.as_ref(), &stats).await;
    assert_eq!(moto.open_uploads(BUCKET).await, Vec::<String>::new());

    // Dropped while the put, the completion or the sidecar's put is in flight.
    support::dropped_while_publishing_leaves_nothing(&sink, store.as_ref(), &stats).await;
    assert_eq!(moto.open_uploads(BUCKET).await, Vec::<String>::new());
    assert_eq!(list_keys(store.as_ref(), sink.prefix()).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_open_upload_is_invisible_until_complete() {
    let (moto, sink, store, _) = s3_sink("invisible").await;
    // Directly on the store: what the sink relies on.
    let key = sink.prefix().clone().join("direct.png");
    let mut upload = store.put_multipart(&key).await.unwrap();
    upload.put_part(vec![7u8; S3_MIN_PART_SIZE].into()).await.unwrap();
    upload.put_part(vec![8u8; 10].into()).await.unwrap();
    assert!(
        list_keys(store.as_ref(), sink.prefix()).await.is_empty(),
        "no object before completion"
    );
    assert_eq!(moto.open_uploads(BUCKET).await, vec![key.to_string()]);
    upload.complete().await.unwrap();
    assert_eq!(list_keys(store.as_ref(), sink.prefix()).await, vec![key.to_string()]);
    assert!(moto.open_uploads(BUCKET).await.is_empty());
    // PutMode::Create: the first writer wins.
    let create = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    let again = store.put_opts(&key, vec![1u8].into(), create).await;
    assert!(
        matches!(
            again,
            Err(hf_media_sink_object::object_store::Error::AlreadyExists { .. })
        ),
        "{again:?}"
    );
    let size = store.head(&key).await.unwrap().size;
    assert_eq!(size, (S3_MIN_PART_SIZE + 10) as u64, "not overwritten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_keyed_stores_replace_what_the_key_held() {
    let (moto, sink, store, stats) = s3_sink("keyed").await;
    support::keyed_stores_replace_what_the_key_held(&sink, store.as_ref(), &stats).await;
    assert!(moto.open_uploads(BUCKET).await.is_empty(), "no open upload left");
    let prefix = sink.prefix().clone();
    let (_, second) =
        conformance::keyed_store_lands_at_key_and_replaces(&sink, || count_objects(&store, &prefix)).await;
    assert_eq!(
        second.location,
        MediaLocation::Object("s3://hf-media-test/keyed/conformance/shard-0000/replaced.png".to_owned())
    );
    let got = store.get(&support::key_of(&sink, &second.location)).await.unwrap();
    assert_eq!(
        got.attributes.get(&Attribute::ContentType).map(|v| v.as_ref()),
        Some("image/png")
    );
    assert!(
        got.bytes().await.unwrap().ends_with(b"second take"),
        "the second's bytes"
    );
    support::check_sidecar(&sink, store.as_ref(), &second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_concurrent_stores_of_one_name_get_distinct_keys() {
    let (_moto, sink, store, stats) = s3_sink("concurrent").await;
    // Single puts, and multipart uploads, of the same prompt at the same time.
    support::concurrent_identical_names(&sink, store.as_ref(), 2000).await;
    support::concurrent_identical_names(&sink, store.as_ref(), S3_MIN_PART_SIZE + 1000).await;
    // A name found taken (moto answers 412 to If-None-Match) is never overwritten.
    support::taken_names_are_never_overwritten(&sink, store.as_ref(), &stats).await;
    assert_eq!(
        Stats::get(&stats.uploads_opened),
        Stats::get(&stats.uploads_completed) + Stats::get(&stats.uploads_aborted)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_without_conditional_puts_falls_back_to_unique_names() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET).await;
    let mut options = moto.options();
    options.push(("AWS_CONDITIONAL_PUT".to_owned(), "disabled".to_owned()));
    let sink = ObjectSink::from_url_opts(&format!("s3://{BUCKET}/plain"), options).unwrap();
    let store = Arc::clone(sink.object_store());
    let prefix = sink.prefix().clone();
    conformance::run_all(&sink, || count_objects(&store, &prefix)).await;
    let stored = conformance::stores_png(&sink).await;
    support::check_sidecar(&sink, store.as_ref(), &stored).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_errors_say_what_to_check() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET).await;

    // A missing bucket: not retryable, says to check the bucket.
    let missing = ObjectSink::from_url_opts("s3://no-such-bucket/p", moto.options()).unwrap();
    match missing.check().await {
        Err(SinkError::Backend { message, retryable }) => {
            assert!(!retryable, "{message}");
            eprintln!("missing bucket: {message}");
            assert!(message.contains("bucket exists"), "{message}");
            assert!(!message.contains("moto-test-secret-key"), "{message}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    let result = missing
        .store(
            conformance::stream_of(vec![conformance::tiny_png()]),
            conformance::sample_record("x"),
        )
        .await;
    assert!(matches!(&result, Err(e) if !e.is_retryable()), "{result:?}");

    // Nothing listening: a connection error, retryable, says to check the endpoint.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let unreachable = AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_endpoint(format!("http://127.0.0.1:{closed}"))
        .with_allow_http(true)
        .with_access_key_id("testing")
        .with_secret_access_key("moto-test-secret-key")
        .with_region("us-east-1")
        .with_retry(RetryConfig {
            max_retries: 0,
            ..RetryConfig::default()
        })
        .build()
        .unwrap();
    let sink = ObjectSink::new(Arc::new(unreachable), "p", format!("s3://{BUCKET}"));
    let result = sink
        .store(
            conformance::stream_of(vec![conformance::tiny_png()]),
            conformance::sample_record("x"),
        )
        .await;
    match result {
        Err(SinkError::Backend { message, retryable }) => {
            assert!(retryable, "{message}");
            eprintln!("unreachable endpoint: {message}");
            assert!(message.contains("AWS_ENDPOINT_URL"), "{message}");
            assert!(!message.contains("moto-test-secret-key"), "{message}");
        }
        other => panic!("expected a retryable backend error, got {other:?}"),
    }

    // Parts below S3's minimum are refused when the upload completes: not retryable, and aborted.
    let (tracked, stats) = Tracked::new(Arc::clone(
        ObjectSink::from_url_opts(&format!("s3://{BUCKET}/small"), moto.options())
            .unwrap()
            .object_store(),
    ));
    let store: Arc<dyn ObjectStore> = tracked;
    let small_parts = ObjectSink::new(Arc::clone(&store), "small", format!("s3://{BUCKET}")).with_part_size(1024);
    let png = support::big_png(3000, 9);
    let result = small_parts
        .store(support::stream_in(&png, 512), conformance::sample_record("x"))
        .await;
    match result {
        Err(SinkError::Backend { message, retryable }) => {
            assert!(!retryable, "{message}");
            assert!(
                message.contains("completing the upload of s3://hf-media-test/small/"),
                "{message}"
            );
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert!(list_keys(store.as_ref(), &Path::from("small")).await.is_empty());
    assert_eq!(Stats::get(&stats.uploads_aborted), 1);
    assert!(moto.open_uploads(BUCKET).await.is_empty());
}
