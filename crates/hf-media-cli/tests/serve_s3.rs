//! `hf-media serve -o s3://bucket/prefix` against a real S3-compatible server (moto): images and their
//! sidecars stored as objects and served back (whole, ranges, base64), the gallery listing read from the
//! bucket, a video job's content served from it and removed with it, the video state in the cache
//! folder, and the AWS secret nowhere in what the server says.

#![allow(clippy::unwrap_used)]

#[path = "../../hf-media-sink-object/tests/support/moto.rs"]
#[allow(dead_code)]
mod moto;
#[path = "support/serve.rs"]
mod serve;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use futures::TryStreamExt;
use hf_media_sink_object::ObjectSink;
use hf_media_sink_object::object_store::ObjectStore;
use hf_media_sink_object::object_store::path::Path as ObjectPath;
use serde_json::{Value, json};
use serve::Serve;

const SECRET: &str = "aws_secret_canary_serve_51d0";

async fn keys(store: &dyn ObjectStore, prefix: &str) -> BTreeSet<String> {
    let listed: Vec<_> = store.list(Some(&ObjectPath::from(prefix))).try_collect().await.unwrap();
    listed.into_iter().map(|meta| meta.location.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_live_in_the_bucket_and_are_served_from_it() {
    let moto = moto::Moto::start();
    moto.create_bucket("media").await;
    let mut builder = Serve::builder().args(["--emulator", "-o", "s3://media/served"]);
    for (key, value) in moto.options() {
        builder = builder.env(key, value);
    }
    let server = builder.env("AWS_SECRET_ACCESS_KEY", SECRET).start();
    let options: Vec<(String, String)> = moto
        .options()
        .into_iter()
        .map(|(k, v)| {
            if k == "AWS_SECRET_ACCESS_KEY" {
                (k, SECRET.to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    let bucket = ObjectSink::from_url_opts("s3://media", options)
        .unwrap()
        .object_store()
        .clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut said = Vec::new();

    let answer: Value = http
        .post(format!("{}/images/generations", server.api_url()))
        .json(&json!({"prompt": "a fox in a bucket", "model": "black-forest-labs/FLUX.1-schnell:fal-ai", "n": 2, "size": "96x64"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    said.push(answer.to_string());
    let urls: Vec<String> = answer["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}\n{}", server.logs()))
        .iter()
        .map(|d| d["url"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(urls.len(), 2, "{answer}");
    let stored = keys(&*bucket, "served").await;
    for url in &urls {
        let name = url.rsplit_once("/media/").unwrap().1;
        let (stem, _) = name.rsplit_once('.').unwrap();
        assert!(stored.contains(&format!("served/{name}")), "{name} in {stored:?}");
        assert!(
            stored.contains(&format!("served/{stem}.json")),
            "its sidecar in {stored:?}"
        );
        let whole = http.get(url).send().await.unwrap();
        assert_eq!(whole.status(), 200);
        assert_eq!(whole.headers()["content-type"], "image/png");
        let etag = whole.headers()["etag"].to_str().unwrap().to_owned();
        let bytes = whole.bytes().await.unwrap();
        let image = image::load_from_memory(&bytes).unwrap();
        assert_eq!((image.width(), image.height()), (96, 64));
        let part = http.get(url).header("range", "bytes=0-7").send().await.unwrap();
        assert_eq!(part.status(), 206);
        assert_eq!(
            part.headers()["content-range"],
            format!("bytes 0-7/{}", bytes.len()).as_str()
        );
        assert_eq!(&part.bytes().await.unwrap()[..], &bytes[..8]);
        let cached = http.get(url).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(cached.status(), 304);
    }
    let missing = http
        .get(format!("{}/media/nothing-0.png", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let b64: Value = http
        .post(format!("{}/images/generations", server.api_url()))
        .json(&json!({"prompt": "a fox", "model": "black-forest-labs/FLUX.1-schnell:fal-ai", "size": "64x64", "response_format": "b64_json"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    assert_eq!(image::load_from_memory(&bytes).unwrap().width(), 64);

    let gallery: Value = http
        .get(format!("{}/gallery/media", server.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    said.push(gallery.to_string());
    assert_eq!(gallery["total"], 3, "{gallery}");
    assert!(
        gallery["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["kind"] == "image" && m["prompt"].is_string())
    );

    let video: Value = http
        .post(format!("{}/videos", server.api_url()))
        .json(&json!({"prompt": "a fox running", "seconds": 1, "size": "128x72"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = video["id"].as_str().unwrap().to_owned();
    let mut done = Value::Null;
    for _ in 0..300 {
        done = http
            .get(format!("{}/videos/{id}", server.api_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if done["status"] != "queued" && done["status"] != "in_progress" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    said.push(done.to_string());
    assert_eq!(done["status"], "completed", "{done}\n{}", server.logs());
    let content = http
        .get(format!("{}/videos/{id}/content", server.api_url()))
        .header("range", "bytes=4-7")
        .send()
        .await
        .unwrap();
    assert_eq!(content.status(), 206);
    assert_eq!(&content.bytes().await.unwrap()[..], b"ftyp");
    assert!(
        keys(&*bucket, "served")
            .await
            .iter()
            .any(|k| k.starts_with(&format!("served/{id}-0.")))
    );
    let deleted = http
        .delete(format!("{}/videos/{id}", server.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert!(
        !keys(&*bucket, "served").await.iter().any(|k| k.contains(&id)),
        "a deleted video's objects are removed"
    );
    assert!(moto.open_uploads("media").await.is_empty(), "no upload left open");

    let states = std::fs::read_dir(server.home().join(".cache/hf-media/batches"))
        .expect("the video state is in ~/.cache/hf-media/batches")
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sqlite"))
        .count();
    assert_eq!(states, 1);
    said.push(server.logs());
    for text in &said {
        assert!(!text.contains(SECRET), "the AWS secret leaked: {text}");
    }
}
