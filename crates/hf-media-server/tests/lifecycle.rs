//! Reliability: clients that go away mid-generation, failures mapped to their statuses, graceful
//! shutdown, and video jobs that outlive a server or are deleted while they run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use hf_media::RetryPolicy;
use hf_media_emulator::{Emulator, Fault, FaultRule, ProviderBehaviour};
use hf_media_server::testing::TestServer;
use serde_json::{Value, json};
use support::{
    SCHNELL_FAL, SCHNELL_HF, VIDEO_FAL, client, decode, eventually, health, openai_error, send, slow, stored_files,
    temporaries,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A request for one small image, as raw HTTP/1.1 bytes.
fn image_request(model: &str, stream: bool) -> Vec<u8> {
    let body = json!({"prompt": "a fox", "model": model, "size": "64x64", "stream": stream}).to_string();
    format!(
        "POST /v1/images/generations HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn stat(emulator: &Emulator, kind: &str) -> u64 {
    emulator.stats().get(kind).copied().unwrap_or(0)
}

async fn in_flight(server: &TestServer) -> u64 {
    health(&server.url()).await["generations_in_flight"].as_u64().unwrap()
}

/// Waits until the server has `n` generations in flight.
async fn wait_in_flight(server: &TestServer, n: u64) {
    for _ in 0..250 {
        if in_flight(server).await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the server never had {n} generations in flight");
}

#[tokio::test]
async fn a_client_that_goes_away_mid_generation_cancels_it() {
    let latency = Duration::from_secs(2);
    let server = TestServer::start_on(slow("hf-inference", latency), |_| {}, |b| b)
        .await
        .unwrap();
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream.write_all(&image_request(SCHNELL_HF, false)).await.unwrap();
    wait_in_flight(&server, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(stream);
    // The slot is given back as soon as the server sees the client gone, well before the provider answers.
    let mut freed = false;
    for _ in 0..50 {
        if in_flight(&server).await == 0 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "the generation of a gone client still holds its slot");
    assert!(started.elapsed() < latency, "freed before the provider answered");
    // After the provider would have answered: nothing was stored, nothing retried.
    tokio::time::sleep(latency + Duration::from_millis(700) - started.elapsed().min(latency)).await;
    assert_eq!(stored_files(server.output()), Vec::<String>::new());
    assert_eq!(temporaries(server.output()), Vec::<String>::new());
    assert_eq!(
        stat(&server.emulator, "hf-inference submit"),
        1,
        "{:?}",
        server.emulator.stats()
    );
    assert_eq!(in_flight(&server).await, 0);
}

#[tokio::test]
async fn a_streaming_client_that_goes_away_cancels_its_generation() {
    // fal-ai is a queue: the job stays pending for the latency, polled meanwhile, then downloaded.
    let latency = Duration::from_secs(2);
    let server = TestServer::start_on(slow("fal-ai", latency), |_| {}, |b| b)
        .await
        .unwrap();
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream.write_all(&image_request(SCHNELL_FAL, true)).await.unwrap();
    // The stream's head comes at once.
    let mut head = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut head))
        .await
        .expect("the stream starts")
        .unwrap();
    let head = String::from_utf8_lossy(&head[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    assert!(
        eventually(Duration::from_secs(1), || stat(&server.emulator, "fal-ai poll") >= 1).await,
        "the job is polled: {:?}",
        server.emulator.stats()
    );
    assert_eq!(in_flight(&server).await, 1);
    drop(stream);
    let mut freed = false;
    for _ in 0..50 {
        if in_flight(&server).await == 0 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "the stream of a gone client still holds its slot");
    assert!(started.elapsed() < latency);
    let polls = stat(&server.emulator, "fal-ai poll");
    tokio::time::sleep(latency + Duration::from_millis(700) - started.elapsed().min(latency)).await;
    let stats = server.emulator.stats();
    assert_eq!(stat(&server.emulator, "fal-ai submit"), 1, "{stats:?}");
    assert_eq!(
        stat(&server.emulator, "fal-ai poll"),
        polls,
        "no more polls once cancelled: {stats:?}"
    );
    assert_eq!(
        stat(&server.emulator, "download"),
        0,
        "the media was never fetched: {stats:?}"
    );
    assert_eq!(stored_files(server.output()), Vec::<String>::new());
}

#[tokio::test]
async fn unknown_models_answer_404_and_models_without_a_provider_for_the_task_422() {
    let server = TestServer::start().await.unwrap();
    let post = |path: &'static str, body: Value| send(client().post(format!("{}{path}", server.url())).json(&body));
    for path in ["/v1/images/generations", "/v1/videos"] {
        let (status, headers, answer) = post(path, json!({"prompt": "a fox", "model": "nobody/no-such-model"})).await;
        assert_eq!(status, 404, "{path}: {answer}");
        let message = openai_error(&answer, Some("model"), "model_not_found");
        assert!(message.contains("nobody/no-such-model"), "{message}");
        assert_eq!(answer["error"]["type"], "not_found_error");
        assert_eq!(headers["x-should-retry"], "false");
    }
    // A video model cannot make images, an image model cannot make videos.
    for (path, model) in [
        ("/v1/images/generations", "Wan-AI/Wan2.2-T2V-A14B"),
        ("/v1/videos", "black-forest-labs/FLUX.1-schnell"),
    ] {
        let (status, headers, answer) = post(path, json!({"prompt": "a fox", "model": model})).await;
        assert_eq!(status, 422, "{path} {model}: {answer}");
        let message = openai_error(&answer, Some("model"), "no_provider");
        assert!(message.contains(model), "{message}");
        assert_eq!(answer["error"]["type"], "invalid_request_error");
        assert_eq!(headers["x-should-retry"], "false");
    }
    let (status, _, list) = send(client().get(format!("{}/v1/videos", server.url()))).await;
    assert_eq!(status, 200);
    assert_eq!(
        list["data"],
        json!([]),
        "no job was queued for a model that cannot make it"
    );
    let submits: Vec<String> = server
        .emulator
        .stats()
        .into_keys()
        .filter(|kind| kind.ends_with("submit"))
        .collect();
    assert!(submits.is_empty(), "{submits:?}");
}

#[tokio::test]
async fn a_failing_provider_answers_502_naming_it_and_says_not_to_retry() {
    let emulator = Emulator::new();
    emulator.set_behaviour(
        "hf-inference",
        ProviderBehaviour::default().with_fault(FaultRule::always(Fault::Status {
            status: 500,
            body: None,
        })),
    );
    let quick_retries = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        ..RetryPolicy::default()
    };
    let server = TestServer::start_on(emulator, |_| {}, |b| b.retry(quick_retries))
        .await
        .unwrap();
    let (status, headers, answer) = send(
        client()
            .post(format!("{}/v1/images/generations", server.url()))
            .json(&json!({"prompt": "a fox", "model": SCHNELL_HF})),
    )
    .await;
    assert_eq!(status, 502, "{answer}");
    assert_eq!(headers["x-should-retry"], "false");
    assert!(headers.get("retry-after").is_none());
    assert_eq!(answer["error"]["code"], "all_providers_failed", "{answer}");
    assert_eq!(answer["error"]["type"], "server_error");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("hf-inference") && message.contains("500"), "{message}");
    let attempts = answer["error"]["attempts"].as_array().expect("the attempts");
    assert_eq!(attempts.len(), 2, "{answer}");
    for attempt in attempts {
        assert_eq!(
            (&attempt["provider"], &attempt["status"]),
            (&json!("hf-inference"), &json!(500))
        );
    }
    assert_eq!(stat(&server.emulator, "hf-inference submit"), 2, "two tries, no more");
    assert_eq!(stored_files(server.output()), Vec::<String>::new());
}

#[tokio::test]
async fn a_generation_past_its_deadline_answers_504_and_leaves_nothing() {
    let latency = Duration::from_secs(2);
    let server = TestServer::start_on(
        slow("hf-inference", latency),
        |_| {},
        |b| b.generation_timeout(Some(Duration::from_millis(200))),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let (status, headers, answer) = send(
        client()
            .post(format!("{}/v1/images/generations", server.url()))
            .json(&json!({"prompt": "a fox", "model": SCHNELL_HF})),
    )
    .await;
    assert_eq!(status, 504, "{answer}");
    assert!(
        started.elapsed() < latency,
        "answered at the deadline: {:?}",
        started.elapsed()
    );
    assert_eq!(headers["x-should-retry"], "false");
    assert_eq!(answer["error"]["code"], "timeout", "{answer}");
    assert_eq!(answer["error"]["type"], "server_error");
    assert_eq!(in_flight(&server).await, 0);
    tokio::time::sleep(latency + Duration::from_millis(500) - started.elapsed().min(latency)).await;
    assert_eq!(stored_files(server.output()), Vec::<String>::new());
}

#[tokio::test]
async fn a_shutdown_lets_in_flight_requests_finish_within_the_grace() {
    let server_latency = Duration::from_secs(1);
    let mut server = TestServer::start_on(
        slow("hf-inference", server_latency),
        |config| config.grace = Duration::from_secs(5),
        |b| b,
    )
    .await
    .unwrap();
    let request = client()
        .post(format!("{}/v1/images/generations", server.url()))
        .json(&json!({"prompt": "a fox", "model": SCHNELL_HF, "size": "64x64", "response_format": "b64_json"}));
    let in_flight_request = tokio::spawn(send(request));
    wait_in_flight(&server, 1).await;
    let signalled = Instant::now();
    server.signal_shutdown();
    // No new connection is taken.
    let addr = server.addr();
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "new connections are refused once the shutdown is signalled");
    let (status, _, answer) = in_flight_request.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    let b64 = answer["data"][0]["b64_json"].as_str().unwrap();
    assert_eq!(
        decode(&base64::engine::general_purpose::STANDARD.decode(b64).unwrap()),
        (64, 64)
    );
    server.stop().await.unwrap();
    assert!(
        signalled.elapsed() < Duration::from_secs(4),
        "the server ended once its last request was answered, not at the grace: {:?}",
        signalled.elapsed()
    );
    assert_eq!(temporaries(server.output()), Vec::<String>::new());
}

#[tokio::test]
async fn a_shutdown_cancels_what_outlasts_the_grace_and_leaves_no_file() {
    let latency = Duration::from_secs(3);
    let grace = Duration::from_millis(200);
    let mut server = TestServer::start_on(slow("hf-inference", latency), |config| config.grace = grace, |b| b)
        .await
        .unwrap();
    let started = Instant::now();
    let request = client()
        .post(format!("{}/v1/images/generations", server.url()))
        .json(&json!({"prompt": "a fox", "model": SCHNELL_HF, "size": "64x64"}))
        .send();
    let in_flight_request = tokio::spawn(async move {
        match request.await {
            Ok(response) => {
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                Some((status, headers, response.json::<Value>().await.ok()))
            }
            // The connection closed without an answer.
            Err(_) => None,
        }
    });
    wait_in_flight(&server, 1).await;
    let signalled = Instant::now();
    server.signal_shutdown();
    let ended = in_flight_request.await.unwrap();
    let after = signalled.elapsed();
    assert!(
        after < grace + Duration::from_secs(1),
        "the request ended soon after the grace: {after:?}"
    );
    if let Some((status, headers, body)) = ended {
        assert_eq!(status, 503, "{body:?}");
        let body = body.expect("a JSON body");
        openai_error(&body, None, "shutting_down");
        assert_eq!(headers["x-should-retry"], "true");
        assert_eq!(headers["retry-after"], "1");
    }
    server.stop().await.unwrap();
    // After the provider would have answered: no media, no temporary file.
    tokio::time::sleep(latency + Duration::from_millis(500) - started.elapsed().min(latency)).await;
    assert_eq!(stored_files(server.output()), Vec::<String>::new());
    assert_eq!(stat(&server.emulator, "hf-inference submit"), 1);
}

/// Polls video `id` until it is completed or failed.
async fn wait_for_video(url: &str, id: &str, within: Duration) -> Value {
    let until = Instant::now() + within;
    loop {
        let (status, _, video) = send(client().get(format!("{url}/v1/videos/{id}"))).await;
        assert_eq!(status, 200, "{video}");
        if matches!(video["status"].as_str(), Some("completed" | "failed")) || Instant::now() > until {
            return video;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_video(url: &str) -> String {
    let (status, _, video) = send(
        client()
            .post(format!("{url}/v1/videos"))
            .json(&json!({"prompt": "a fox running", "model": VIDEO_FAL, "seconds": 1, "size": "256x144"})),
    )
    .await;
    assert_eq!(status, 200, "{video}");
    assert_eq!(video["status"], "queued");
    video["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_video_job_survives_a_restart_and_is_paid_for_once() {
    let emulator = slow("fal-ai", Duration::from_millis(2500));
    let mut server = TestServer::start_on(
        emulator.clone(),
        |config| config.grace = Duration::from_millis(50),
        |b| b,
    )
    .await
    .unwrap();
    let id = create_video(&server.url()).await;
    // The provider took the job (its ticket is recorded), and it is running.
    assert!(
        eventually(Duration::from_secs(5), || stat(&emulator, "fal-ai poll") >= 1).await,
        "{:?}",
        emulator.stats()
    );
    let (_, _, running) = send(client().get(format!("{}/v1/videos/{id}", server.url()))).await;
    assert_eq!(running["status"], "in_progress", "{running}");
    // The server stops mid-job; another starts over the same folder.
    server
        .restart(|config| config.grace = Duration::from_millis(50), |b| b)
        .await
        .unwrap();
    let (_, _, resumed) = send(client().get(format!("{}/v1/videos/{id}", server.url()))).await;
    assert_eq!(
        resumed["status"], "in_progress",
        "the new server knows the job: {resumed}"
    );
    let video = wait_for_video(&server.url(), &id, Duration::from_secs(15)).await;
    assert_eq!(video["status"], "completed", "{video}");
    assert_eq!(video["progress"], 100);
    assert_eq!(video["provider"], "fal-ai");
    assert_eq!(
        stat(&emulator, "fal-ai submit"),
        1,
        "the job ticket was resumed, not submitted (and paid) again: {:?}",
        emulator.stats()
    );
    let content = client()
        .get(format!("{}/v1/videos/{id}/content", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(content.status(), 200);
    assert_eq!(content.headers()["content-type"], "video/mp4");
    assert!(!content.bytes().await.unwrap().is_empty());
    assert_eq!(temporaries(server.output()), Vec::<String>::new());
}

#[tokio::test]
async fn a_shutdown_lets_running_video_jobs_finish_within_the_grace() {
    let emulator = slow("fal-ai", Duration::from_millis(1200));
    let mut server = TestServer::start_on(emulator.clone(), |config| config.grace = Duration::from_secs(10), |b| b)
        .await
        .unwrap();
    let id = create_video(&server.url()).await;
    assert!(
        eventually(Duration::from_secs(5), || stat(&emulator, "fal-ai poll") >= 1).await,
        "{:?}",
        emulator.stats()
    );
    // No client holds a connection open (a video's client polls): the job still gets the grace.
    let signalled = Instant::now();
    server.stop().await.unwrap();
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "the server ended once its job was done, not at the grace: {:?}",
        signalled.elapsed()
    );
    assert_eq!(
        stat(&emulator, "download"),
        1,
        "the video was fetched before the end: {:?}",
        emulator.stats()
    );
    let files = stored_files(server.output());
    assert!(
        files
            .iter()
            .any(|name| name.starts_with(&format!("{id}-")) && name.ends_with(".mp4")),
        "{files:?}"
    );
    // The next start finds it completed: nothing to resume, nothing submitted again.
    server.restart(|_| {}, |b| b).await.unwrap();
    let (_, _, video) = send(client().get(format!("{}/v1/videos/{id}", server.url()))).await;
    assert_eq!(video["status"], "completed", "{video}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stat(&emulator, "fal-ai submit"), 1);
}

#[tokio::test]
async fn deleting_a_running_video_cancels_it_and_leaves_no_file() {
    let latency = Duration::from_secs(2);
    let server = TestServer::start_on(slow("fal-ai", latency), |_| {}, |b| b)
        .await
        .unwrap();
    let started = Instant::now();
    let id = create_video(&server.url()).await;
    assert!(
        eventually(Duration::from_secs(5), || stat(&server.emulator, "fal-ai poll") >= 1).await,
        "{:?}",
        server.emulator.stats()
    );
    let video_url = format!("{}/v1/videos/{id}", server.url());
    let (status, _, deleted) = send(client().delete(&video_url)).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted, json!({"id": id, "object": "video.deleted", "deleted": true}));
    let polls = stat(&server.emulator, "fal-ai poll");
    let (status, _, gone) = send(client().get(&video_url)).await;
    assert_eq!(status, 404, "{gone}");
    openai_error(&gone, Some("video_id"), "not_found");
    let (status, _, _) = send(client().delete(&video_url)).await;
    assert_eq!(status, 404, "deleted once");
    let (_, _, list) = send(client().get(format!("{}/v1/videos", server.url()))).await;
    assert_eq!(list["data"], json!([]));
    // After the provider would have finished: no file, no more polls, nothing downloaded.
    tokio::time::sleep(latency + Duration::from_millis(800) - started.elapsed().min(latency)).await;
    assert_eq!(stored_files(server.output()), Vec::<String>::new());
    let stats = server.emulator.stats();
    assert_eq!(stat(&server.emulator, "fal-ai poll"), polls, "{stats:?}");
    assert_eq!(stat(&server.emulator, "download"), 0, "{stats:?}");
    assert_eq!(stat(&server.emulator, "fal-ai submit"), 1, "{stats:?}");
    let content = client().get(format!("{video_url}/content")).send().await.unwrap();
    assert_eq!(content.status(), 404);
}
