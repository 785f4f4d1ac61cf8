//! Bad inputs and attacks: malformed and mistyped bodies, bodies over the limit, paths that try to leave
//! the media folder, and clients that send their request slowly or never.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use hf_media_server::testing::TestServer;
use serde_json::{Value, json};
use support::{SCHNELL_HF, client, openai_error, png, raw, raw_body, send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A JSON body as given (not necessarily valid JSON).
async fn post_raw(server: &TestServer, path: &str, body: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    send(
        client()
            .post(format!("{}{path}", server.url()))
            .header("content-type", "application/json")
            .body(body.to_owned()),
    )
    .await
}

#[tokio::test]
async fn malformed_and_mistyped_bodies_answer_400_naming_the_field_and_what_to_send() {
    let server = TestServer::start().await.unwrap();
    // (body, the field at fault, what the message says)
    let cases: &[(&str, Option<&str>, &[&str])] = &[
        (
            r#"{"prompt": "a fox","#,
            None,
            &[
                "not valid JSON",
                "Content-Type: application/json",
                r#"{"prompt": "a red fox"}"#,
            ],
        ),
        ("", None, &["not valid JSON"]),
        (
            r#"[{"prompt": "a fox"}]"#,
            None,
            &["must be a JSON object, not an array"],
        ),
        (r#""a fox""#, None, &["must be a JSON object, not a string"]),
        (
            r#"{"prompt": "a fox", "n": "two"}"#,
            Some("n"),
            &["`n` must be a number", "\"two\""],
        ),
        (
            r#"{"prompt": "a fox", "n": 0}"#,
            Some("n"),
            &["`n` must be a whole number from 1 to 10"],
        ),
        (
            r#"{"prompt": "a fox", "n": 11}"#,
            Some("n"),
            &["`n` must be a whole number from 1 to 10"],
        ),
        (r#"{"prompt": "a fox", "n": 2.5}"#, Some("n"), &["whole number"]),
        (
            r#"{"prompt": 5}"#,
            Some("prompt"),
            &["`prompt` must be a string, not a number"],
        ),
        (
            r#"{"prompt": ["a", "fox"]}"#,
            Some("prompt"),
            &["must be a string, not an array"],
        ),
        (r#"{"n": 1}"#, Some("prompt"), &["`prompt` is required"]),
        (r#"{"prompt": "   "}"#, Some("prompt"), &["`prompt` is required"]),
        (
            r#"{"prompt": "a fox", "response_format": "png"}"#,
            Some("response_format"),
            &["`response_format` must be `url` or `b64_json`, not `png`"],
        ),
        (r#"{"prompt": "a fox", "size": "huge"}"#, Some("size"), &["give WxH"]),
        (r#"{"prompt": "a fox", "size": "10x10"}"#, Some("size"), &["64 to 8192"]),
        (
            r#"{"prompt": "a fox", "stream": "maybe"}"#,
            Some("stream"),
            &["`stream`"],
        ),
        (
            r#"{"prompt": "a fox", "seed": -1}"#,
            Some("seed"),
            &["`seed` must be a whole number"],
        ),
        (r#"{"prompt": "a fox", "model": "not a model"}"#, Some("model"), &[]),
        (
            r#"{"prompt": "a fox", "image": "/etc/passwd"}"#,
            Some("image"),
            &["multipart/form-data"],
        ),
    ];
    for (body, param, says) in cases {
        let (status, headers, answer) = post_raw(&server, "/v1/images/generations", body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let message = openai_error(&answer, *param, "invalid_request");
        assert_eq!(answer["error"]["type"], "invalid_request_error", "{body}");
        for said in *says {
            assert!(message.contains(said), "{body}: `{message}` should say {said}");
        }
        assert_eq!(headers["x-should-retry"], "false", "{body}");
        assert_eq!(headers["content-type"], "application/json", "{body}");
    }
    // The video endpoint reads its fields the same way.
    for (body, param) in [
        (r#"[1, 2]"#, None),
        (r#"{"prompt": "a fox", "n": 2}"#, Some("n")),
        (r#"{"prompt": "a fox", "seconds": "forever"}"#, Some("seconds")),
        (r#"{"prompt": "a fox", "seconds": 0}"#, Some("seconds")),
        (r#"{"prompt": "a fox", "stream": true}"#, Some("stream")),
    ] {
        let (status, _, answer) = post_raw(&server, "/v1/videos", body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        openai_error(&answer, param, "invalid_request");
    }
    // An edit is multipart: JSON is refused, and a form's values are checked like JSON fields.
    let (status, _, answer) = post_raw(&server, "/v1/images/edits", r#"{"prompt": "gold"}"#).await;
    assert_eq!(status, 400, "{answer}");
    assert!(openai_error(&answer, Some("image"), "invalid_request").contains("multipart/form-data"));
    let form = reqwest::multipart::Form::new()
        .part("image", reqwest::multipart::Part::bytes(png(64, 64)).file_name("a.png"))
        .text("prompt", "gold")
        .text("n", "two");
    let (status, _, answer) = send(
        client()
            .post(format!("{}/v1/images/edits", server.url()))
            .multipart(form),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    openai_error(&answer, Some("n"), "invalid_request");
    let form = reqwest::multipart::Form::new()
        .part(
            "image",
            reqwest::multipart::Part::bytes(b"#!/bin/sh\nrm -rf /\n".to_vec()).file_name("a.png"),
        )
        .text("prompt", "gold");
    let (status, _, answer) = send(
        client()
            .post(format!("{}/v1/images/edits", server.url()))
            .multipart(form),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(openai_error(&answer, Some("image"), "invalid_request").contains("is not an image"));
    let submits: Vec<String> = server
        .emulator
        .stats()
        .into_keys()
        .filter(|kind| kind.ends_with("submit"))
        .collect();
    assert!(submits.is_empty(), "no bad request reached a provider: {submits:?}");
}

#[tokio::test]
async fn bodies_over_the_limit_answer_413_and_the_server_serves_the_next_request() {
    const LIMIT: usize = 64 * 1024;
    let server = TestServer::start_with(|config| config.max_body_bytes = LIMIT)
        .await
        .unwrap();
    let padding = "x".repeat(3 * LIMIT);
    for path in ["/v1/images/generations", "/v1/videos"] {
        let (status, headers, answer) = send(
            client()
                .post(format!("{}{path}", server.url()))
                .json(&json!({"prompt": "a fox", "model": SCHNELL_HF, "padding": padding})),
        )
        .await;
        assert_eq!(status, 413, "{path}: {answer}");
        let message = openai_error(&answer, None, "body_too_large");
        assert!(message.contains(&LIMIT.to_string()), "{message}");
        assert_eq!(answer["error"]["type"], "invalid_request_error");
        assert_eq!(headers["x-should-retry"], "false");
    }
    // A chunked body (no Content-Length to refuse it by) is cut off at the limit too.
    let chunks = futures::stream::iter((0..48).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 4096]))));
    let (status, _, answer) = send(
        client()
            .post(format!("{}/v1/images/generations", server.url()))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(chunks)),
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    openai_error(&answer, None, "body_too_large");
    // An edit whose image is larger than the limit.
    let big = {
        let mut bytes = png(64, 64);
        bytes.resize(3 * LIMIT, 0);
        bytes
    };
    let form = reqwest::multipart::Form::new()
        .text("prompt", "gold")
        .text("model", "black-forest-labs/FLUX.1-Kontext-dev")
        .part("image", reqwest::multipart::Part::bytes(big).file_name("big.png"));
    let (status, _, answer) = send(
        client()
            .post(format!("{}/v1/images/edits", server.url()))
            .multipart(form),
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    openai_error(&answer, None, "body_too_large");
    // The server goes on: a request under the limit is served.
    let (status, _, answer) = send(
        client()
            .post(format!("{}/v1/images/generations", server.url()))
            .json(&json!({"prompt": "a fox", "model": SCHNELL_HF, "size": "64x64", "response_format": "b64_json"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["data"][0]["b64_json"].as_str().is_some_and(|b| !b.is_empty()));
    let submits = server.emulator.stats().get("hf-inference submit").copied();
    assert_eq!(
        submits,
        Some(1),
        "only the request under the limit reached the provider"
    );
}

#[tokio::test]
async fn media_paths_that_leave_the_folder_or_name_no_media_answer_404() {
    let server = TestServer::start().await.unwrap();
    let (status, _, answer) = send(
        client()
            .post(format!("{}/v1/images/generations", server.url()))
            .json(&json!({"prompt": "a fox", "model": SCHNELL_HF, "size": "64x64"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let url = answer["data"][0]["url"].as_str().unwrap().to_owned();
    let name = url.rsplit_once("/media/").unwrap().1.to_owned();
    let stem = name.rsplit_once('.').unwrap().0.to_owned();
    let output = server.output().to_path_buf();
    assert!(output.join(format!("{stem}.json")).is_file(), "the media has a sidecar");
    assert!(
        output.join(".hf-media/serve-state.sqlite").is_file(),
        "the job store is in the output"
    );
    // A temporary file of the sink, and a link to a media outside the folder.
    std::fs::write(output.join(".hf-media-0123abcd.part"), png(64, 64)).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.png"), b"\x89PNG outside secret").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.path().join("secret.png"), output.join("link.png")).unwrap();
    let folder = output.file_name().unwrap().to_str().unwrap().to_owned();
    let outside_abs = outside.path().join("secret.png").display().to_string();

    let get = |target: String| {
        let addr = server.addr();
        async move {
            let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            raw(addr, request.as_bytes()).await
        }
    };
    // The real media is served; nothing else is.
    let (status, answer) = get(format!("/media/{name}")).await;
    assert_eq!(status, 200, "{answer}");
    let attempts = [
        format!("/media/{stem}.json"),
        format!("/media/{name}.json"),
        "/media/.hf-media/serve-state.sqlite".to_owned(),
        "/media/.hf-media/serve-state.sqlite-wal".to_owned(),
        "/media/.hf-media-0123abcd.part".to_owned(),
        "/media/link.png".to_owned(),
        "/media/../../../../../../etc/passwd".to_owned(),
        format!("/media/../{folder}/{name}"),
        format!("/media/./{name}"),
        format!("/media/x/../{name}"),
        "/media/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd".to_owned(),
        "/media/%2E%2E%2F%2E%2E%2F%2E%2E%2Fetc%2Fpasswd".to_owned(),
        format!("/media/%2e%2e%2f{folder}%2f{name}"),
        format!("/media/{}", name.replace('.', "%2e")),
        "/media//etc/passwd".to_owned(),
        format!("/media/{outside_abs}"),
        format!("/media/%2F{}", outside_abs.trim_start_matches('/').replace('/', "%2F")),
        "/media/..%5c..%5c..%5cetc%5cpasswd".to_owned(),
        format!("/media/{stem}.png%00.json"),
        format!("/media/{stem}.json%00.png"),
        format!("/media/{name}/"),
        "/media/".to_owned(),
        "/media/serve-state.sqlite".to_owned(),
    ];
    for target in attempts {
        let (status, answer) = get(target.clone()).await;
        assert_eq!(status, 404, "{target}: {answer}");
        let body = raw_body(&answer);
        let message = openai_error(&body, None, "not_found");
        assert!(message.starts_with("no such"), "{target}: {message}");
        for leaked in ["root:", "SQLite format", "\"prompt\"", "outside secret", "PNG"] {
            assert!(!answer.contains(leaked), "{target} leaked {leaked}: {answer}");
        }
    }
}

/// Reads from `stream` until the server closes it or `within` passes; what came, and when it ended.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<(Vec<u8>, Instant)> {
    let mut got = Vec::new();
    let mut buffer = [0u8; 1024];
    let ended = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    ended.ok().map(|()| (got, Instant::now()))
}

/// What a cut-off client may have seen before the connection closed: nothing, or a 408.
fn cut_off(got: &[u8]) -> bool {
    got.is_empty() || String::from_utf8_lossy(got).starts_with("HTTP/1.1 408")
}

#[tokio::test]
async fn slow_and_silent_clients_are_cut_off_at_the_header_timeout_while_others_are_served() {
    let timeout = Duration::from_secs(1);
    let server = TestServer::start_with(|config| config.header_timeout = timeout)
        .await
        .unwrap();
    let addr = server.addr();

    // A slow-loris client: the request line, then one header line every 300 ms, never the blank line.
    let slow = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let opened = Instant::now();
        stream.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let drip = tokio::spawn(async move {
            for i in 0..30 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if writer.write_all(format!("X-Drip-{i}: 1\r\n").as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(8), reader.read_to_end(&mut got)).await;
        drip.abort();
        assert!(read.is_ok(), "the slow client was never cut off");
        (got, opened.elapsed())
    });
    // A client that connects and sends nothing at all.
    let silent = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let opened = Instant::now();
        let ended = read_until_closed(&mut stream, Duration::from_secs(8)).await;
        let (got, at) = ended.expect("the silent client was never cut off");
        (got, at - opened)
    });
    // A client that starts the HTTP/2 preface and stops half-way.
    let half_preface = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let opened = Instant::now();
        stream.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        let ended = read_until_closed(&mut stream, Duration::from_secs(8)).await;
        let (got, at) = ended.expect("the half-preface client was never cut off");
        (got, at - opened)
    });

    // Meanwhile, other clients are served at once.
    for _ in 0..5 {
        let started = Instant::now();
        let health = support::health(&server.url()).await;
        assert_eq!(health["status"], "ok");
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "served before the slow clients were cut off: {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    for (who, task) in [("slow", slow), ("silent", silent), ("half preface", half_preface)] {
        let (got, after) = task.await.unwrap();
        assert!(cut_off(&got), "{who}: {:?}", String::from_utf8_lossy(&got));
        assert!(
            after >= timeout - Duration::from_millis(100) && after < timeout * 3,
            "{who} was cut off after {after:?}, the header timeout being {timeout:?}"
        );
    }
    // A whole request on a fresh connection still works after all that.
    let (status, answer) = raw(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}
