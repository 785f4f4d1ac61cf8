//! The API as a client sees it, against the embedded emulator: every route's answer shape (pinned with
//! insta, volatile values redacted), the media behind the URLs, streaming, edits, video jobs, models,
//! the gallery listing, health and metrics.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use base64::Engine;
use hf_media_server::testing::TestServer;
use serde_json::{Value, json};

const SCHNELL_FAL: &str = "black-forest-labs/FLUX.1-schnell:fal-ai";
const KONTEXT: &str = "black-forest-labs/FLUX.1-Kontext-dev";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a client")
}

async fn post_json(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let response = client()
        .post(format!("{}{path}", server.url()))
        .json(&body)
        .send()
        .await
        .expect("an answer");
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json",
        "JSON answers are always application/json"
    );
    (status, response.json().await.expect("a JSON body"))
}

async fn get_json(server: &TestServer, path: &str) -> (u16, Value) {
    let response = client()
        .get(format!("{}{path}", server.url()))
        .send()
        .await
        .expect("an answer");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// The PNG bytes of a small image.
fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png).expect("a PNG");
    bytes.into_inner()
}

fn decode(bytes: &[u8]) -> (u32, u32) {
    let image = image::load_from_memory(bytes).expect("an image");
    (image.width(), image.height())
}

#[tokio::test]
async fn generations_answer_urls_that_serve_the_media_at_the_asked_size() {
    let server = TestServer::start().await.unwrap();
    let (status, answer) = post_json(
        &server,
        "/v1/images/generations",
        json!({"prompt": "a red fox", "model": SCHNELL_FAL, "n": 2, "size": "512x384", "quality": "hd", "seed": 40}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    insta::assert_json_snapshot!("generations_url", answer, {
        ".created" => "[created]",
        ".data[].url" => "[url]",
    });
    for (i, entry) in answer["data"].as_array().unwrap().iter().enumerate() {
        let url = entry["url"].as_str().unwrap();
        assert!(
            url.starts_with(&format!("{}/media/", server.url())),
            "absolute, on the server: {url}"
        );
        let name = url.rsplit('/').next().unwrap();
        let (stem, _) = name.rsplit_once('.').unwrap();
        let random = stem.rsplit('_').next().unwrap().split('-').next().unwrap();
        assert_eq!(random.len(), 32, "128 random bits in the name: {name}");
        let bytes = client().get(url).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(decode(&bytes), (512, 384));
        let sidecar: Value = serde_json::from_slice(
            &std::fs::read(server.output().join(format!("{stem}.json"))).expect("a sidecar next to the media"),
        )
        .unwrap();
        assert_eq!(sidecar["seed"], 40 + i as u64, "generation i has seed S+i");
        assert_eq!(sidecar["prompt"], "a red fox");
    }
}

#[tokio::test]
async fn b64_json_carries_the_image_itself() {
    let server = TestServer::start().await.unwrap();
    let (status, answer) = post_json(
        &server,
        "/v1/images/generations",
        json!({"prompt": "a fox", "model": SCHNELL_FAL, "response_format": "b64_json", "size": "256x256"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let b64 = answer["data"][0]["b64_json"].as_str().expect("b64_json");
    assert!(answer["data"][0].get("url").is_none());
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    assert_eq!(decode(&bytes), (256, 256));
    assert_eq!(answer["data"][0]["revised_prompt"], "a fox");
}

/// The SSE blocks of a body: (event name, data) pairs, and whether any `id:` line came.
fn sse_blocks(body: &str) -> (Vec<(String, String)>, bool) {
    let mut blocks = Vec::new();
    let mut saw_id = false;
    for block in body.split("\n\n") {
        let mut event = String::new();
        let mut data = String::new();
        for line in block.lines() {
            if let Some(rest) = line.strip_prefix("event:") {
                event = rest.trim().to_owned();
            } else if let Some(rest) = line.strip_prefix("data:") {
                data.push_str(rest.trim_start());
            } else if line.starts_with("id:") {
                saw_id = true;
            }
        }
        if !data.is_empty() {
            blocks.push((event, data));
        }
    }
    (blocks, saw_id)
}

#[tokio::test]
async fn streaming_sends_real_events_and_each_image_once() {
    let server = TestServer::start().await.unwrap();
    let response = client()
        .post(format!("{}/v1/images/generations", server.url()))
        .json(&json!({"prompt": "a fox", "model": SCHNELL_FAL, "n": 2, "stream": true, "partial_images": 1, "size": "128x128"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"),
        "a stream request never gets plain JSON"
    );
    let body = response.text().await.unwrap();
    let (blocks, saw_id) = sse_blocks(&body);
    assert!(!saw_id, "no id: lines (the SDK would replay empty events)");
    assert_eq!(blocks.last().map(|b| b.1.as_str()), Some("[DONE]"));
    let mut completed = Vec::new();
    let mut partials = 0;
    for (event, data) in &blocks[..blocks.len() - 1] {
        let data: Value = serde_json::from_str(data).unwrap();
        assert_eq!(data["type"], event.as_str(), "the event name is the data's type");
        match event.as_str() {
            "image_generation.partial_image" => {
                partials += 1;
                assert!(data["progress"].as_u64().unwrap() < 100);
                assert_eq!(
                    data["partial_image_index"], 0,
                    "one partial image per image was asked for"
                );
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data["b64_json"].as_str().unwrap())
                    .unwrap();
                assert_eq!(decode(&bytes), (128, 128), "a placeholder picture of the image's shape");
            }
            "image_generation.completed" => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data["b64_json"].as_str().unwrap())
                    .unwrap();
                assert_eq!(decode(&bytes), (128, 128));
                completed.push(data["index"].as_u64().unwrap());
            }
            other => panic!("unexpected event {other}: {data}"),
        }
    }
    completed.sort();
    assert_eq!(
        completed,
        vec![0, 1],
        "one completed event per image, told apart by index"
    );
    assert!(
        partials >= 2,
        "fal-ai reports queued and in progress for each image: {partials}"
    );
}

#[tokio::test]
async fn a_failed_stream_ends_with_an_error_event() {
    let server = TestServer::start().await.unwrap();
    let response = client()
        .post(format!("{}/v1/images/generations", server.url()))
        .json(&json!({"prompt": "a fox", "model": "nobody/no-such-model", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the stream had started");
    let (blocks, _) = sse_blocks(&response.text().await.unwrap());
    let error: Value = serde_json::from_str(&blocks[0].1).unwrap();
    assert_eq!(blocks[0].0, "error");
    assert_eq!(error["error"]["code"], "model_not_found");
    assert_eq!(blocks.last().unwrap().1, "[DONE]");
}

#[tokio::test]
async fn edits_take_one_image_or_a_list() {
    let server = TestServer::start().await.unwrap();
    let part = || {
        reqwest::multipart::Part::bytes(png(96, 64))
            .file_name("cat.png")
            .mime_str("image/png")
            .unwrap()
    };
    for (name, count) in [("image", 1), ("image[]", 2)] {
        let mut form = reqwest::multipart::Form::new()
            .text("prompt", "make it blue")
            .text("model", KONTEXT)
            .text("n", "1")
            .text("response_format", "b64_json");
        for _ in 0..count {
            form = form.part(name, part());
        }
        let response = client()
            .post(format!("{}/v1/images/edits", server.url()))
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{name}: {answer}");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(answer["data"][0]["b64_json"].as_str().unwrap())
            .unwrap();
        assert!(decode(&bytes).0 > 0);
        let sidecars: Vec<Value> = std::fs::read_dir(server.output())
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .map(|e| serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap())
            .collect();
        assert!(
            sidecars
                .iter()
                .any(|s| s["inputs"].as_array().is_some_and(|i| i.len() == count)),
            "{name}: the record lists {count} input image(s)"
        );
    }
    let form = reqwest::multipart::Form::new().text("prompt", "x");
    let response = client()
        .post(format!("{}/v1/images/edits", server.url()))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["param"], "image");
    let text = reqwest::multipart::Form::new().text("prompt", "x").part(
        "image",
        reqwest::multipart::Part::bytes(b"not an image".to_vec()).file_name("x.png"),
    );
    let response = client()
        .post(format!("{}/v1/images/edits", server.url()))
        .multipart(text)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("is not an image"));
}

#[tokio::test]
async fn models_list_the_catalogue_and_take_an_encoded_id() {
    let server = TestServer::start().await.unwrap();
    let (status, list) = get_json(&server, "/v1/models").await;
    assert_eq!(status, 200);
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"black-forest-labs/FLUX.1-schnell"), "{ids:?}");
    assert!(ids.contains(&"Wan-AI/Wan2.2-T2V-A14B"), "{ids:?}");
    assert!(ids.contains(&KONTEXT), "{ids:?}");
    let (status, model) = get_json(&server, "/v1/models/black-forest-labs%2FFLUX.1-schnell").await;
    assert_eq!(status, 200, "{model}");
    insta::assert_json_snapshot!("model", model);
    let (status, missing) = get_json(&server, "/v1/models/nobody%2Fnothing").await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["error"]["param"], "model");
}

async fn wait_for_video(server: &TestServer, id: &str) -> Value {
    for _ in 0..200 {
        let response = client()
            .get(format!("{}/v1/videos/{id}", server.url()))
            .send()
            .await
            .unwrap();
        let poll_after = response
            .headers()
            .get("openai-poll-after-ms")
            .map(|v| v.to_str().unwrap().to_owned());
        let video: Value = response.json().await.unwrap();
        match video["status"].as_str().unwrap() {
            "completed" | "failed" => {
                assert!(poll_after.is_none(), "a finished video asks for no more polls");
                return video;
            }
            _ => {
                let wait: u64 = poll_after.expect("a pending video says when to poll").parse().unwrap();
                assert!(video["progress"].as_u64().unwrap() < 100);
                tokio::time::sleep(Duration::from_millis(wait.min(200))).await;
            }
        }
    }
    panic!("video {id} did not finish");
}

#[tokio::test]
async fn a_video_job_runs_and_its_content_seeks() {
    let server = TestServer::start().await.unwrap();
    let form = reqwest::multipart::Form::new()
        .text("prompt", "a fox running")
        .text("seconds", "1")
        .text("size", "256x144");
    let response = client()
        .post(format!("{}/v1/videos", server.url()))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("openai-poll-after-ms"));
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["status"], "queued");
    assert_eq!(created["object"], "video");
    assert_eq!(created["model"], "Wan-AI/Wan2.2-T2V-A14B", "the default video model");
    let id = created["id"].as_str().unwrap().to_owned();
    let video = wait_for_video(&server, &id).await;
    insta::assert_json_snapshot!("video_completed", video, {
        ".id" => "[id]", ".created_at" => "[time]", ".completed_at" => "[time]", ".seed" => "[seed]",
    });
    let content = format!("{}/v1/videos/{id}/content", server.url());
    let whole = client().get(&content).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "video/mp4");
    let bytes = whole.bytes().await.unwrap();
    assert_eq!(&bytes[4..8], b"ftyp", "an ISO-BMFF file");
    let part = client()
        .get(&content)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206, "a <video> element seeks with ranges");
    assert_eq!(part.bytes().await.unwrap(), bytes.slice(10..20));
    let (status, list) = get_json(&server, "/v1/videos?limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"][0]["id"], id.as_str());
    assert_eq!(list["last_id"], id.as_str());
    assert_eq!(list["has_more"], false);
    let deleted: Value = client()
        .delete(format!("{}/v1/videos/{id}", server.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deleted, json!({"id": id, "object": "video.deleted", "deleted": true}));
    let (status, gone) = get_json(&server, &format!("/v1/videos/{id}")).await;
    assert_eq!(status, 404, "{gone}");
    let left: Vec<_> = std::fs::read_dir(server.output())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_str().unwrap().starts_with(&id))
        .collect();
    assert!(left.is_empty(), "a deleted video's files are removed: {left:?}");
}

#[tokio::test]
async fn videos_page_and_animate_an_image() {
    let server = TestServer::start().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let (status, video) = post_json(
            &server,
            "/v1/videos",
            json!({"prompt": format!("clip {i}"), "seconds": 1, "size": "128x72"}),
        )
        .await;
        assert_eq!(status, 200, "{video}");
        ids.push(video["id"].as_str().unwrap().to_owned());
    }
    let (_, first) = get_json(&server, "/v1/videos?limit=2&order=asc").await;
    let page: Vec<&str> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(page, vec![ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(first["has_more"], true);
    let (_, second) = get_json(&server, &format!("/v1/videos?limit=2&order=asc&after={}", ids[1])).await;
    assert_eq!(second["data"][0]["id"], ids[2].as_str());
    assert_eq!(second["has_more"], false);
    let (_, newest) = get_json(&server, "/v1/videos?limit=1").await;
    assert_eq!(newest["data"][0]["id"], ids[2].as_str(), "newest first by default");
    let (status, bad) = get_json(&server, "/v1/videos?order=sideways").await;
    assert_eq!((status, bad["error"]["param"].as_str()), (400, Some("order")));
    let form = reqwest::multipart::Form::new()
        .text("prompt", "the cat walks")
        .text("model", "Wan-AI/Wan2.2-I2V-A14B")
        .text("seconds", "1")
        .part(
            "input_reference",
            reqwest::multipart::Part::bytes(png(128, 72))
                .file_name("cat.png")
                .mime_str("image/png")
                .unwrap(),
        );
    let created: Value = client()
        .post(format!("{}/v1/videos", server.url()))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().expect("a video").to_owned();
    let video = wait_for_video(&server, &id).await;
    assert_eq!(video["status"], "completed", "{video}");
    for id in &ids {
        assert_eq!(wait_for_video(&server, id).await["status"], "completed");
    }
}

#[tokio::test]
async fn the_gallery_lists_media_newest_first_with_their_records() {
    let server = TestServer::start().await.unwrap();
    for prompt in ["first fox", "second fox"] {
        let (status, _) = post_json(
            &server,
            "/v1/images/generations",
            json!({"prompt": prompt, "model": SCHNELL_FAL, "size": "64x64"}),
        )
        .await;
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, page) = get_json(&server, "/gallery/media?per_page=1").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 2);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["data"][0]["prompt"], "second fox");
    assert_eq!(page["data"][0]["provider"], "fal-ai");
    assert_eq!(page["data"][0]["model"], "black-forest-labs/FLUX.1-schnell");
    assert!(page["data"][0]["seed"].is_u64());
    let (_, second) = get_json(&server, "/gallery/media?per_page=1&page=2").await;
    assert_eq!(second["data"][0]["prompt"], "first fox");
    let html = client().get(server.url()).send().await.unwrap();
    assert_eq!(html.status(), 200);
    assert!(
        html.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

#[tokio::test]
async fn health_and_metrics_report_the_work() {
    let server = TestServer::start().await.unwrap();
    let (status, health) = get_json(&server, "/healthz").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    assert_eq!(health["generations_in_flight"], 0);
    let (status, _) = post_json(
        &server,
        "/v1/images/generations",
        json!({"prompt": "a fox", "model": SCHNELL_FAL, "size": "64x64"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = post_json(&server, "/v1/images/generations", json!({"prompt": ""})).await;
    assert_eq!(status, 400);
    let metrics = client()
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"hf_media_generations_total{provider="fal-ai",outcome="succeeded"} 1"#,
        r#"hf_media_http_requests_total{route="/v1/images/generations",method="POST",status="200"} 1"#,
        r#"hf_media_http_requests_total{route="/v1/images/generations",method="POST",status="400"} 1"#,
        "hf_media_generations_in_flight 0",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in:\n{metrics}");
    }
    assert!(metrics.contains("hf_media_generation_duration_seconds_bucket"));
}
