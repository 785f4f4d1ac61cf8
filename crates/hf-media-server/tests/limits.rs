//! Limits and access: hundreds of clients at once (served, or told to wait, never lost), the per-client
//! rate limit, API keys on every `/v1` route, CORS, and signed media links.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use base64::Engine;
use hf_media::Secret;
use hf_media_server::testing::TestServer;
use serde_json::{Value, json};
use support::{SCHNELL_HF, client, decode, openai_error, send, slow, stored_files};

/// The outcome of one of many concurrent image requests: 200 with its image, or 429 with its headers.
#[derive(Debug)]
enum Outcome {
    Made((u32, u32)),
    Busy {
        retry_after: u64,
        should_retry: String,
        body: Value,
    },
}

async fn many(server: &TestServer, clients: usize) -> Vec<Outcome> {
    // One connection per client: every request is in flight at once.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let url = format!("{}/v1/images/generations", server.url());
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let request = http.post(&url).json(&json!({
                "prompt": format!("fox number {i}"),
                "model": SCHNELL_HF,
                "size": "64x64",
                "response_format": "b64_json",
            }));
            tokio::spawn(async move {
                let response = request.send().await.expect("every client gets an answer");
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let body: Value = response.json().await.expect("a JSON body");
                match status {
                    200 => {
                        let b64 = body["data"][0]["b64_json"].as_str().expect("b64_json");
                        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
                        Outcome::Made(decode(&bytes))
                    }
                    429 => Outcome::Busy {
                        retry_after: headers["retry-after"].to_str().unwrap().parse().unwrap(),
                        should_retry: headers["x-should-retry"].to_str().unwrap().to_owned(),
                        body,
                    },
                    other => panic!("client {i}: {other} {body}"),
                }
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(clients);
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

fn media_of(output: &std::path::Path) -> usize {
    let files = stored_files(output);
    let sidecars = files.iter().filter(|name| name.ends_with(".json")).count();
    assert_eq!(
        sidecars * 2,
        files.len(),
        "each media has its sidecar, nothing else is left: {files:?}"
    );
    sidecars
}

/// The soft limit on open files, where the system says (Linux).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_clients_at_once_are_all_served() {
    const CLIENTS: usize = 500;
    // Each client holds two descriptors in this process (its end and the server's), and each generation
    // two more (the server's call to the emulator, and the emulator's end).
    if let Some(limit) = open_file_limit() {
        assert!(
            limit >= 4 * CLIENTS as u64 + 500,
            "this test needs about {} open files; the limit is {limit}: raise it (ulimit -n 4096)",
            4 * CLIENTS + 500
        );
    }
    let server = TestServer::start_with(|config| config.max_concurrent = CLIENTS)
        .await
        .unwrap();
    let outcomes = many(&server, CLIENTS).await;
    for (i, outcome) in outcomes.iter().enumerate() {
        assert!(matches!(outcome, Outcome::Made((64, 64))), "client {i}: {outcome:?}");
    }
    assert_eq!(server.emulator.stats()["hf-inference submit"], CLIENTS as u64);
    assert_eq!(media_of(server.output()), CLIENTS, "one stored media per client");
    let health = support::health(&server.url()).await;
    assert_eq!(health["generations_in_flight"], 0, "{health}");
    assert_eq!(health["max_concurrent"], CLIENTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_beyond_the_slots_are_told_to_retry_and_none_is_lost() {
    const CLIENTS: usize = 200;
    let emulator = slow("hf-inference", Duration::from_millis(300));
    let server = TestServer::start_on(emulator, |config| config.max_concurrent = 4, |b| b)
        .await
        .unwrap();
    let outcomes = many(&server, CLIENTS).await;
    let mut made = 0;
    let mut busy = 0;
    for outcome in &outcomes {
        match outcome {
            Outcome::Made(size) => {
                assert_eq!(*size, (64, 64));
                made += 1;
            }
            Outcome::Busy {
                retry_after,
                should_retry,
                body,
            } => {
                assert!(*retry_after >= 1, "{outcome:?}");
                assert_eq!(should_retry, "true");
                let message = openai_error(body, None, "server_busy");
                assert_eq!(body["error"]["type"], "rate_limit_error");
                assert!(message.contains("at most 4"), "{message}");
                busy += 1;
            }
        }
    }
    assert_eq!(made + busy, CLIENTS, "every client got an answer");
    assert!(made >= 4, "the first four at least were served: {made}");
    assert!(
        busy >= 1,
        "with 4 slots and a 300 ms provider some clients must wait: {made} made"
    );
    assert_eq!(
        server.emulator.stats()["hf-inference submit"],
        made as u64,
        "a refused request never reached the provider"
    );
    assert_eq!(media_of(server.output()), made);
    assert_eq!(support::health(&server.url()).await["generations_in_flight"], 0);
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after_per_key() {
    let server = TestServer::start_with(|config| {
        config.rate_per_minute = Some(2);
        config.api_keys = vec![Secret::new("sk-one"), Secret::new("sk-two")];
    })
    .await
    .unwrap();
    let models = |key: &'static str| send(client().get(format!("{}/v1/models", server.url())).bearer_auth(key));
    for _ in 0..2 {
        let (status, _, answer) = models("sk-one").await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, headers, answer) = models("sk-one").await;
    assert_eq!(status, 429, "{answer}");
    let message = openai_error(&answer, None, "rate_limited");
    assert!(message.contains("at most 2 a minute"), "{message}");
    assert_eq!(answer["error"]["type"], "rate_limit_error");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(headers["x-should-retry"], "true");
    // Another key has its own budget; health is never limited.
    let (status, _, answer) = models("sk-two").await;
    assert_eq!(status, 200, "{answer}");
    for _ in 0..3 {
        assert_eq!(support::health(&server.url()).await["status"], "ok");
    }
}

#[tokio::test]
async fn an_open_server_limits_each_address() {
    let server = TestServer::start_with(|config| config.rate_per_minute = Some(2))
        .await
        .unwrap();
    let url = format!("{}/v1/videos", server.url());
    assert_eq!(send(client().get(&url)).await.0, 200);
    assert_eq!(send(client().get(&url)).await.0, 200);
    let (status, headers, answer) = send(client().get(&url)).await;
    assert_eq!(status, 429, "{answer}");
    openai_error(&answer, None, "rate_limited");
    assert!(headers.contains_key("retry-after"));
}

const KEY: &str = "sk-test-0123456789abcdef";
const APP: &str = "https://app.example";

/// Every `/v1` route (and the gallery's listing), as (method, path).
fn guarded_routes() -> Vec<(reqwest::Method, String)> {
    let video = format!("video_{}", "0".repeat(32));
    vec![
        (reqwest::Method::POST, "/v1/images/generations".into()),
        (reqwest::Method::POST, "/v1/images/edits".into()),
        (reqwest::Method::POST, "/v1/videos".into()),
        (reqwest::Method::GET, "/v1/videos".into()),
        (reqwest::Method::GET, format!("/v1/videos/{video}")),
        (reqwest::Method::DELETE, format!("/v1/videos/{video}")),
        (reqwest::Method::GET, format!("/v1/videos/{video}/content")),
        (reqwest::Method::GET, "/v1/models".into()),
        (
            reqwest::Method::GET,
            "/v1/models/black-forest-labs%2FFLUX.1-schnell".into(),
        ),
        (reqwest::Method::GET, "/gallery/media".into()),
    ]
}

#[tokio::test]
async fn api_keys_guard_every_v1_route_and_only_those() {
    let server = TestServer::start_with(|config| {
        config.api_keys = vec![Secret::new(KEY)];
        config.cors_origins = vec![APP.into()];
    })
    .await
    .unwrap();
    let http = client();
    for (method, path) in guarded_routes() {
        let url = format!("{}{path}", server.url());
        let body = json!({"prompt": "a fox", "model": SCHNELL_HF});
        let wrong = [
            None,
            Some(("authorization", "Bearer sk-wrong".to_owned())),
            Some(("authorization", format!("Bearer {KEY}x"))),
            Some(("authorization", format!("Basic {KEY}"))),
            Some(("authorization", KEY.to_owned())),
            Some(("x-api-key", "sk-wrong".to_owned())),
        ];
        for header in wrong {
            let mut request = http.request(method.clone(), &url).json(&body);
            if let Some((name, value)) = &header {
                request = request.header(*name, value);
            }
            let (status, headers, answer) = send(request).await;
            assert_eq!(status, 401, "{method} {path} with {header:?}: {answer}");
            let message = openai_error(&answer, None, "invalid_api_key");
            assert_eq!(answer["error"]["type"], "authentication_error");
            assert!(!message.contains(KEY), "the key is never shown: {message}");
            assert_eq!(headers["x-should-retry"], "false");
        }
        // A browser's call from the allowed origin gets its 401 with the CORS headers (so the page can
        // read why).
        let (status, headers, _) = send(http.request(method.clone(), &url).header("origin", APP).json(&body)).await;
        assert_eq!(status, 401);
        assert_eq!(headers["access-control-allow-origin"], APP, "{method} {path}");
        let exposed = headers["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            exposed.contains("x-should-retry") && exposed.contains("retry-after"),
            "{exposed}"
        );
    }
    // The right key, as a Bearer credential or as x-api-key.
    let (status, _, answer) = send(
        http.post(format!("{}/v1/images/generations", server.url()))
            .bearer_auth(KEY)
            .json(&json!({"prompt": "a fox", "model": SCHNELL_HF, "size": "64x64"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let media = answer["data"][0]["url"].as_str().unwrap().to_owned();
    for (name, value) in [
        ("authorization", format!("Bearer {KEY}")),
        ("x-api-key", KEY.to_owned()),
    ] {
        for path in ["/v1/models", "/v1/videos", "/gallery/media"] {
            let (status, _, answer) = send(http.get(format!("{}{path}", server.url())).header(name, &value)).await;
            assert_eq!(status, 200, "{path} with {name}: {answer}");
        }
    }
    // Health and the media need no key.
    let health = http.get(format!("{}/healthz", server.url())).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let image = http.get(&media).send().await.unwrap();
    assert_eq!(image.status(), 200);
    assert_eq!(decode(&image.bytes().await.unwrap()), (64, 64));
}

#[tokio::test]
async fn cors_preflights_pass_without_a_key_for_allowed_origins_only() {
    let server = TestServer::start_with(|config| {
        config.api_keys = vec![Secret::new(KEY)];
        config.cors_origins = vec![APP.into()];
    })
    .await
    .unwrap();
    let http = client();
    let preflight = |origin: &'static str, path: &'static str| {
        http.request(reqwest::Method::OPTIONS, format!("{}{path}", server.url()))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
    };
    for path in ["/v1/images/generations", "/v1/images/edits", "/v1/videos"] {
        let answer = preflight(APP, path).await.unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        let headers = answer.headers();
        assert_eq!(headers["access-control-allow-origin"], APP);
        let methods = headers["access-control-allow-methods"].to_str().unwrap();
        assert!(methods.contains("POST"), "{methods}");
        let allowed = headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            allowed.contains("authorization") && allowed.contains("content-type"),
            "{allowed}"
        );
        assert_eq!(headers["access-control-max-age"], "600");
    }
    // Another origin is told nothing: no allow-origin on its preflight, nor on its answers.
    let answer = preflight("https://evil.example", "/v1/images/generations")
        .await
        .unwrap();
    assert!(
        answer.headers().get("access-control-allow-origin").is_none(),
        "{:?}",
        answer.headers()
    );
    let (status, headers, _) = send(
        http.post(format!("{}/v1/images/generations", server.url()))
            .header("origin", "https://evil.example")
            .json(&json!({"prompt": "a fox"})),
    )
    .await;
    assert_eq!(status, 401);
    assert!(headers.get("access-control-allow-origin").is_none(), "{headers:?}");
    // The allowed origin's real call, with the key, is answered with the CORS headers.
    let (status, headers, answer) = send(
        http.post(format!("{}/v1/images/generations", server.url()))
            .header("origin", APP)
            .bearer_auth(KEY)
            .json(&json!({"prompt": "a fox", "model": SCHNELL_HF, "size": "64x64"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(headers["access-control-allow-origin"], APP);
}

#[tokio::test]
async fn signed_media_links_work_as_given_and_never_altered() {
    let server = TestServer::start_with(|config| config.signed_media = Some(Duration::from_secs(60)))
        .await
        .unwrap();
    let (status, _, answer) = send(
        client()
            .post(format!("{}/v1/images/generations", server.url()))
            .json(&json!({"prompt": "a fox", "model": SCHNELL_HF, "size": "64x64", "n": 2})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let urls: Vec<url::Url> = answer["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| url::Url::parse(entry["url"].as_str().unwrap()).unwrap())
        .collect();
    let query = |url: &url::Url, key: &str| {
        url.query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("{key} in {url}"))
    };
    let http = client();
    for url in &urls {
        let media = http.get(url.clone()).send().await.unwrap();
        assert_eq!(media.status(), 200, "{url}");
        assert_eq!(media.headers()["cache-control"], "private, max-age=3600");
        assert_eq!(decode(&media.bytes().await.unwrap()), (64, 64));
    }
    let url = &urls[0];
    let (expires, sig) = (query(url, "expires"), query(url, "sig"));
    let expires_n: u64 = expires.parse().unwrap();
    let flipped = {
        let mut chars: Vec<char> = sig.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == '0' { '1' } else { '0' };
        chars.into_iter().collect::<String>()
    };
    let path = url.path();
    let base = server.url();
    let other_sig = query(&urls[1], "sig");
    let other_expires = query(&urls[1], "expires");
    let altered = [
        format!("{base}{path}"),
        format!("{base}{path}?expires={expires}"),
        format!("{base}{path}?sig={sig}"),
        format!("{base}{path}?expires={expires}&sig={flipped}"),
        format!("{base}{path}?expires={}&sig={sig}", expires_n + 1),
        format!("{base}{path}?expires={}&sig={sig}", expires_n - 1),
        format!("{base}{path}?expires=1&sig={sig}"),
        format!("{base}{path}?expires={expires}&sig="),
        format!("{base}{path}?expires={expires}&sig=zz{}", &sig[2..]),
        format!("{base}{path}?expires={expires}&sig={}", &sig[..sig.len() - 2]),
        format!("{base}{path}?expires={other_expires}&sig={other_sig}"),
        format!("{base}{path}?expires=-5&sig={sig}"),
    ];
    for link in altered {
        let (status, headers, answer) = send(http.get(&link)).await;
        assert_eq!(status, 403, "{link}: {answer}");
        let message = openai_error(&answer, None, "forbidden");
        assert_eq!(answer["error"]["type"], "permission_error");
        assert!(message.contains("ask the API for the media again"), "{message}");
        assert!(headers.get("content-disposition").is_none());
    }
    // The untouched link still works after all those.
    assert_eq!(http.get(url.clone()).send().await.unwrap().status(), 200);
}
