//! The official `openai` Python client (PyPI) against `hf-media serve --emulator`, the way users of an
//! OpenAI-compatible server call it: `images.generate` (URLs and base64, `n`, `size`, `extra_body`, the
//! streaming form), `images.edit` (one image, a list), `models.list`/`retrieve`, the errors it raises (a
//! bad key, an unknown model, a failing provider, without a retry storm), and the video jobs
//! (`videos.create_and_poll`, `download_content`, `retrieve`, `list`, `delete`).
//!
//! The cases are the functions of `tests/python/openai_client.py`, run with the Python named by
//! `HF_MEDIA_PYTHON`, else `target/py-venv` (made on first use; `source .ci/python.sh` makes it too); each prints what it saw
//! as one JSON line, and the checks here assert on those values and on the server's output folder. A
//! test with no Python to be had fails, saying how to get one: it never passes silently.

#![allow(clippy::unwrap_used)]

#[path = "support/python.rs"]
mod python;
#[path = "support/serve.rs"]
mod serve;

use std::collections::BTreeMap;
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use serve::Serve;
use sha2::{Digest, Sha256};

/// The key the servers take.
const KEY: &str = "sk-test-1";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/openai_client.py");
/// What the servers log on stderr (shown when a test fails; `hf-media serve` logs nothing by default).
const SERVER_LOG: &str = "hf_media_server=debug,hf_media=info,hf_media_provider=info";
/// The longest one run of the script may take.
const PYTHON_TIMEOUT: Duration = Duration::from_secs(300);

const SCHNELL: &str = "black-forest-labs/FLUX.1-schnell";
const KONTEXT: &str = "black-forest-labs/FLUX.1-Kontext-dev";
const MULTI_EDIT: &str = "Qwen/Qwen-Image-Edit-2509";
const VIDEO_MODEL: &str = "Wan-AI/Wan2.2-T2V-A14B";

/// The server the tests share (`--emulator --api-key sk-test-1`): started by the first test that asks,
/// killed when the last one holding it ends.
fn shared_server() -> Arc<Serve> {
    static SHARED: Mutex<Weak<Serve>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(server) = shared.upgrade() {
        return server;
    }
    let server = Arc::new(
        Serve::builder()
            .args(["--emulator", "--api-key", KEY])
            .env("RUST_LOG", SERVER_LOG)
            .start(),
    );
    *shared = Arc::downgrade(&server);
    server
}

/// What one run of the script gave.
struct Run {
    /// Each case's result, or its Python traceback.
    cases: BTreeMap<String, Result<Value, String>>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs `cases` of the script against `server` with the client's key `key`.
fn run_python(server: &Serve, cases: &[&str]) -> Run {
    let python = python::python();
    let work = server.scratch().join(cases.join("+"));
    let mut command = Command::new(&python);
    // The client must reach the loopback server directly, with nothing of the test's environment
    // (an OpenAI key or base URL, a proxy) in between.
    for var in [
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "OPENAI_LOG",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "PYTHONWARNINGS",
    ] {
        command.env_remove(var);
    }
    command
        .arg(SCRIPT)
        .args(["--base-url", &server.api_url(), "--api-key", KEY, "--work"])
        .arg(&work)
        .args(cases)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let collect = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = collect(Box::new(child.stdout.take().unwrap()));
    let stderr = collect(Box::new(child.stderr.take().unwrap()));
    let mut timed_out = false;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > PYTHON_TIMEOUT {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.wait().unwrap();
    let stdout = stdout.join().unwrap();
    let mut stderr = stderr.join().unwrap();
    if timed_out {
        stderr.push_str(&format!("\n(killed after {PYTHON_TIMEOUT:?})\n"));
    } else if !status.success() {
        stderr.push_str(&format!("\n(the script exited with {status})\n"));
    }
    let mut results = BTreeMap::new();
    for line in stdout.lines() {
        let Some(json) = line.strip_prefix("@@result ") else {
            continue;
        };
        let line: Value =
            serde_json::from_str(json).unwrap_or_else(|e| panic!("a result line is not JSON ({e}): {json}"));
        let name = line["case"].as_str().unwrap_or_default().to_owned();
        let result = if line["ok"] == true {
            Ok(line["result"].clone())
        } else {
            Err(line["error"].as_str().unwrap_or("(no traceback)").to_owned())
        };
        results.insert(name, result);
    }
    Run {
        cases: results,
        stdout,
        stderr,
        elapsed: started.elapsed(),
    }
}

/// The checks of one run: every case is checked (a failing one does not hide the others), then the
/// failures are reported together, with what the script and the server printed.
struct Checks<'a> {
    server: &'a Serve,
    run: Run,
    failures: Vec<String>,
}

impl<'a> Checks<'a> {
    fn run(server: &'a Serve, cases: &[&str]) -> Self {
        let run = run_python(server, cases);
        eprintln!("python ran {cases:?} in {:.1?}", run.elapsed);
        Checks {
            server,
            run,
            failures: Vec::new(),
        }
    }

    /// Checks case `name`'s result with `check` (which asserts).
    fn case(&mut self, name: &str, check: impl FnOnce(&Value)) {
        let failure = match self.run.cases.get(name) {
            None => format!("{name}: the script reported nothing for it"),
            Some(Err(traceback)) => format!("{name}: the Python case failed:\n{traceback}"),
            Some(Ok(result)) => match catch_unwind(AssertUnwindSafe(|| check(result))) {
                Ok(()) => return,
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_else(|| "(a panic)".into());
                    format!("{name}: {message}\nwhat the case saw: {result}")
                }
            },
        };
        self.failures.push(failure);
    }

    fn finish(self) {
        if self.failures.is_empty() {
            return;
        }
        panic!(
            "{} case(s) failed:\n\n{}\n\n--- python stdout (besides the results) ---\n{}--- python stderr ---\n{}\n{}",
            self.failures.len(),
            self.failures.join("\n\n"),
            self.run
                .stdout
                .lines()
                .filter(|line| !line.starts_with("@@result "))
                .map(|line| format!("{line}\n"))
                .collect::<String>(),
            self.run.stderr,
            self.server.logs()
        );
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}"))
}

/// The stored file a `/media/…` URL of `server` names.
fn stored(server: &Serve, url: &str) -> PathBuf {
    let prefix = format!("{}/media/", server.url());
    let name = url
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{url} is not a media URL on the server ({prefix}…)"));
    let name = name.split('?').next().unwrap_or_default();
    name.split('/')
        .fold(server.output().to_path_buf(), |path, part| path.join(part))
}

/// The JSON record stored next to a media (`name.json` for `name.png`).
fn sidecar(media: &Path) -> Value {
    let path = media.with_extension("json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("no record {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// What an error case saw, checked against the class, status and retry header expected.
fn assert_error(error: &Value, class: &str, status: u64) {
    assert_eq!(error["class"], class, "the exception class: {error}");
    assert_eq!(error["status"], status, "the status: {error}");
    assert_eq!(
        error["should_retry"], "false",
        "a failure no retry can mend says x-should-retry: false"
    );
    assert!(
        error["body"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "an OpenAI error body with a message: {error}"
    );
}

// ---------------------------------------------------------------------------------------------------------

#[test]
fn images_generate_urls_base64_and_extra_body() {
    let server = shared_server();
    let mut checks = Checks::run(&server, &["generate_url", "generate_b64", "generate_extra_body"]);
    checks.case("generate_url", |r| {
        assert_eq!(r["origin"], server.url());
        assert_eq!(r["model"], SCHNELL, "the extra `model` field");
        assert_eq!(
            r["provider"], "fal-ai",
            "the extra `provider` field (pinned with :fal-ai)"
        );
        assert_eq!(r["size"], "1024x768");
        assert_eq!(r["output_format"], "png");
        assert!(r["created"].as_u64().is_some_and(|c| c > 1_600_000_000), "created");
        let images = r["images"].as_array().unwrap();
        assert_eq!(images.len(), 2, "n=2 makes two images");
        let mut indexes = Vec::new();
        for image in images {
            let url = text(&image["url"]);
            assert!(url.starts_with(&format!("{}/media/", server.url())), "{url}");
            assert_eq!(image["status"], 200, "{url} is served with no key");
            assert_eq!(image["content_type"], "image/png");
            assert_eq!(image["format"], "PNG", "Pillow reads a PNG");
            assert_eq!(image["size"], json!([1024, 768]), "the asked size");
            assert_eq!(image["revised_prompt"], "a red fox in the snow");
            assert!(stored(&server, url).is_file(), "{url} is in the output folder");
            indexes.push(image["index"].as_u64().unwrap());
        }
        indexes.sort_unstable();
        assert_eq!(indexes, [0, 1]);
        assert_ne!(images[0]["url"], images[1]["url"]);
    });
    checks.case("generate_b64", |r| {
        assert_eq!(r["format"], "PNG");
        assert_eq!(r["size"], json!([256, 256]));
        assert_eq!(r["revised_prompt"], "a lighthouse at dusk");
        assert_eq!(r["model"], SCHNELL);
        assert_eq!(r["provider"], "fal-ai");
    });
    checks.case("generate_extra_body", |r| {
        assert_eq!(r["seed"], 42, "the entry's seed");
        assert_eq!(r["format"], "PNG");
        let record = sidecar(&stored(&server, text(&r["url"])));
        assert_eq!(record["seed"], 42, "the record's seed: {record:#}");
        let parameters = &record["parameters"];
        assert_eq!(parameters["seed"], 42, "{parameters}");
        assert_eq!(parameters["negative_prompt"], "blur", "{parameters}");
        assert_eq!(
            parameters["num_inference_steps"], 4,
            "`steps` reached the provider: {parameters}"
        );
        assert_eq!(record["provider"], "fal-ai");
    });
    checks.finish();
}

/// The events a stream case saw: every type is `{prefix}.partial_image` or `{prefix}.completed`, each
/// completed event a PNG of `size` on the server, their `index`es `0..n`.
fn assert_stream(server: &Serve, r: &Value, prefix: &str, n: u64, size: u32) {
    let types: Vec<&str> = r["types"].as_array().unwrap().iter().map(text).collect();
    let partial = format!("{prefix}.partial_image");
    let completed = format!("{prefix}.completed");
    for kind in &types {
        assert!(
            *kind == partial || *kind == completed,
            "an unexpected event type {kind} in {types:?}"
        );
    }
    let done = r["completed"].as_array().unwrap();
    assert_eq!(done.len() as u64, n, "one completed event per image: {types:?}");
    let mut indexes: Vec<u64> = done.iter().map(|c| c["index"].as_u64().unwrap()).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, (0..n).collect::<Vec<_>>(), "distinct indexes");
    for image in done {
        assert_eq!(image["format"], "PNG", "b64_json decodes to a PNG");
        assert_eq!(image["size"], json!([size, size]));
        assert_eq!(image["size_field"], format!("{size}x{size}"));
        assert_eq!(image["output_format"], "png");
        assert!(stored(server, text(&image["url"])).is_file());
    }
    // Each image's partial events come before its completed event, which is its last.
    let events = r["events"].as_array().unwrap();
    for image in indexes {
        let of_image: Vec<&str> = events
            .iter()
            .filter(|e| e["index"] == image)
            .map(|e| text(&e["type"]))
            .collect();
        assert_eq!(
            of_image.last(),
            Some(&completed.as_str()),
            "image {image}'s events end with its completion: {of_image:?}"
        );
        assert_eq!(of_image.iter().filter(|t| **t == completed).count(), 1, "{of_image:?}");
    }
}

#[test]
fn images_stream_server_sent_events() {
    let server = shared_server();
    let mut checks = Checks::run(
        &server,
        &["generate_stream", "generate_stream_final_only", "edit_stream"],
    );
    checks.case("generate_stream", |r| {
        assert_stream(&server, r, "image_generation", 2, 256);
        assert!(
            !r["partials"].as_array().unwrap().is_empty(),
            "partial_images=1 sends partial events"
        );
    });
    checks.case("generate_stream_final_only", |r| {
        assert_eq!(
            r["types"],
            json!(["image_generation.completed"]),
            "partial_images 0: one event"
        );
        assert_stream(&server, r, "image_generation", 1, 64);
    });
    checks.case("edit_stream", |r| assert_stream(&server, r, "image_edit", 1, 64));
    checks.finish();
}

/// The partial events as the SDK types them (`ImageGenPartialImageEvent`: `b64_json` required) and as
/// OpenAI documents `partial_images` (at most that many partial images per image).
#[test]
fn images_stream_partial_events_follow_the_sdk_types() {
    let server = shared_server();
    let mut checks = Checks::run(&server, &["generate_stream_partials"]);
    checks.case("generate_stream_partials", |r| {
        let partials = r["partials"].as_array().unwrap();
        for image in 0..2u64 {
            let count = partials.iter().filter(|p| p["index"] == image).count();
            assert!(
                count <= 1,
                "partial_images=1 asks for at most 1 partial image per image; image {image} had {count}: {}",
                Value::Array(partials.clone())
            );
        }
        for partial in partials {
            assert_eq!(
                partial["b64_json"], true,
                "a partial_image event carries b64_json (required in the SDK's type; \
                 `base64.b64decode(event.b64_json)` as in openai's examples/image_stream.py): {partial}"
            );
        }
    });
    checks.finish();
}

#[test]
fn images_edit_one_image_and_a_list() {
    let server = shared_server();
    let mut checks = Checks::run(&server, &["edit_one", "edit_tuple", "edit_list"]);
    let work = server.scratch().join("edit_one+edit_tuple+edit_list");
    let check = |r: &Value, model: &str, inputs: &[&str]| {
        assert_eq!(r["model"], model);
        let images = r["images"].as_array().unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0]["format"], "PNG");
        assert_eq!(images[0]["size"], json!([256, 256]));
        let record = sidecar(&stored(&server, text(&images[0]["url"])));
        assert_eq!(record["task"], "image-to-image", "{record:#}");
        let sent: Vec<String> = inputs.iter().map(|name| sha256_hex(&work.join(name))).collect();
        let received: Vec<&str> = record["inputs"]
            .as_array()
            .unwrap_or_else(|| panic!("the record lists its inputs: {record:#}"))
            .iter()
            .map(|input| text(&input["sha256"]))
            .collect();
        assert_eq!(
            received, sent,
            "every image the client sent reached the provider, in order"
        );
    };
    checks.case("edit_one", |r| check(r, KONTEXT, &["edit-input.png"]));
    checks.case("edit_tuple", |r| check(r, KONTEXT, &["edit-tuple.png"]));
    checks.case("edit_list", |r| {
        check(r, MULTI_EDIT, &["edit-first.png", "edit-second.png"])
    });
    checks.finish();
}

#[test]
fn models_and_client_errors() {
    let server = shared_server();
    let mut checks = Checks::run(&server, &["models", "bad_key", "unknown_model"]);
    checks.case("models", |r| {
        let ids: Vec<&str> = r["ids"].as_array().unwrap().iter().map(text).collect();
        for model in [SCHNELL, KONTEXT, VIDEO_MODEL] {
            assert!(ids.contains(&model), "{model} is listed: {ids:?}");
        }
        assert_eq!(r["objects"], json!(["model"]));
        assert_eq!(
            r["retrieved"],
            json!({"id": SCHNELL, "object": "model", "owned_by": "black-forest-labs"})
        );
        assert_error(&r["missing"], "NotFoundError", 404);
    });
    checks.case("bad_key", |r| {
        for error in [&r["error"], &r["models_error"]] {
            assert_error(error, "AuthenticationError", 401);
            assert_eq!(error["code"], "invalid_api_key");
            assert_eq!(error["type"], "authentication_error");
        }
        assert_eq!(r["requests"], 2, "two calls, two requests: a 401 is not retried");
    });
    checks.case("unknown_model", |r| {
        let error = &r["error"];
        assert_error(error, "NotFoundError", 404);
        assert_eq!(error["param"], "model");
        assert!(error["code"].as_str().is_some_and(|c| !c.is_empty()), "a code: {error}");
        assert!(text(&error["message"]).contains("nobody/not-a-model"), "{error}");
        assert_eq!(r["requests"], 1, "not retried");
    });
    checks.finish();
}

#[test]
fn a_failing_provider_raises_once_with_no_retry() {
    let behaviours = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        behaviours.path(),
        r#"{"fal-ai": {"fault": {"fault": {"kind": "status", "status": 500}, "target": "submit"}}}"#,
    )
    .unwrap();
    let server = Serve::builder()
        .args(["--emulator", "--api-key", KEY])
        .env("HF_MEDIA_EMULATOR_BEHAVIOURS", behaviours.path())
        .env("RUST_LOG", SERVER_LOG)
        .start();
    let mut checks = Checks::run(&server, &["failing_provider"]);
    checks.case("failing_provider", |r| {
        let error = &r["error"];
        assert_error(error, "InternalServerError", 502);
        assert!(
            error["classes"].as_array().unwrap().contains(&json!("APIStatusError")),
            "{error}"
        );
        assert_eq!(error["type"], "server_error");
        assert_eq!(error["code"], "all_providers_failed");
        assert!(
            text(&error["message"]).contains("fal-ai"),
            "the provider is named: {error}"
        );
        assert_eq!(r["max_retries"], 2, "the client's default retries were on");
        assert_eq!(
            r["requests"],
            json!(["POST /v1/images/generations"]),
            "exactly one request: x-should-retry: false stopped the client's retries"
        );
    });
    checks.finish();
}

#[test]
fn videos_create_poll_download_list_delete() {
    let server = shared_server();
    let mut checks = Checks::run(&server, &["video_lifecycle", "video_from_image"]);
    let check_video = |video: &Value| {
        assert!(text(&video["id"]).len() > 4, "an id: {video}");
        assert_eq!(video["object"], "video");
        assert_eq!(video["status"], "completed");
        assert_eq!(video["progress"], 100);
        assert!(video["error"].is_null(), "{video}");
    };
    // The MP4 written by `write_to_file`: its video track's size and frame count.
    let check_content = |content: &Value| -> (u16, u16, u32) {
        assert_eq!(
            content["box"], "ftyp",
            "an MP4 starts with an ISO-BMFF ftyp box: {content}"
        );
        let path = PathBuf::from(text(&content["path"]));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(content["bytes"], bytes.len(), "{content}");
        let reader = mp4::Mp4Reader::read_header(std::io::Cursor::new(&bytes), bytes.len() as u64)
            .unwrap_or_else(|e| panic!("{} is not an MP4 that parses: {e}", path.display()));
        let track = reader
            .tracks()
            .values()
            .find(|track| track.width() > 0)
            .unwrap_or_else(|| panic!("{} has no video track", path.display()));
        (track.width(), track.height(), track.sample_count())
    };
    checks.case("video_lifecycle", |r| {
        let created = &r["created"];
        check_video(created);
        assert_eq!(created["model"], VIDEO_MODEL);
        assert_eq!(created["seconds"], "4");
        assert_eq!(created["size"], "320x240");
        let (width, height, frames) = check_content(&r["content"]);
        assert_eq!((width, height), (320, 240), "the asked size");
        assert_eq!(frames, 65, "seconds 4 at 16 frames a second, and the first");
        let id = &created["id"];
        assert_eq!(r["retrieved"]["id"], *id);
        assert_eq!(r["retrieved"]["status"], "completed");
        assert!(
            r["listed"].as_array().unwrap().contains(id),
            "videos.list holds it: {}",
            r["listed"]
        );
        assert_eq!(
            r["deleted"],
            json!({"id": id, "object": "video.deleted", "deleted": true})
        );
        assert_eq!(
            r["gone"]["class"], "NotFoundError",
            "retrieve after delete: {}",
            r["gone"]
        );
        assert_eq!(r["gone"]["status"], 404);
    });
    checks.case("video_from_image", |r| {
        check_video(&r["created"]);
        assert_eq!(r["created"]["model"], "Wan-AI/Wan2.2-I2V-A14B");
        let (width, height, frames) = check_content(&r["content"]);
        assert!(
            width > 0 && height > 0 && frames > 0,
            "{width}x{height}, {frames} frames"
        );
    });
    checks.finish();
}
