//! The offline main job: `hf-media generate … --emulator`, and `hf-media emulator` as a server.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncBufReadExt;

fn command(home: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hf-media"));
    for var in [
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_ENDPOINT",
        "HF_ROUTER_URL",
        "FAL_KEY",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home).env("HF_HOME", home.join("hf"));
    cmd
}

fn lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

#[tokio::test]
async fn the_main_job_runs_offline_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("generated_media");
    let output = command(dir.path())
        .args([
            "generate",
            "A beautiful sunset over the mountains",
            "--emulator",
            "-n",
            "2",
            "--json",
        ])
        .args(["--width", "160", "--height", "96", "-o"])
        .arg(&out)
        .output()
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = lines(&output.stdout);
    let media: Vec<&Value> = lines.iter().filter(|l| l["event"] == "media").collect();
    assert_eq!(media.len(), 2);
    for m in media {
        let image = image::open(m["path"].as_str().unwrap()).unwrap();
        assert_eq!((image.width(), image.height()), (160, 96));
    }
}

/// The output of a served emulator, kept open while it runs (it goes on writing to it).
type ServerOutput = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// Starts `hf-media emulator` on a free port; returns the process, the URL it prints, and its output.
async fn serve_emulator(home: &Path) -> (tokio::process::Child, String, ServerOutput) {
    let mut server = command(home)
        .args(["emulator", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let first = stdout.next_line().await.unwrap().unwrap();
    let url = first.rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{first}");
    (server, url, stdout)
}

#[tokio::test]
async fn the_emulator_command_serves_the_hub_and_the_router() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url, _output) = serve_emulator(dir.path()).await;
    let out = dir.path().join("o");
    let output = command(dir.path())
        .args([
            "generate",
            "a fox",
            "-m",
            "flux-dev:replicate",
            "--width",
            "64",
            "--height",
            "64",
            "--json",
            "-o",
        ])
        .arg(&out)
        .env("HF_ENDPOINT", &url)
        .env("HF_ROUTER_URL", &url)
        .env("HF_TOKEN", "hf_emulator")
        .output()
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = lines(&output.stdout);
    let media = lines.iter().find(|l| l["event"] == "media").unwrap();
    assert_eq!(media["provider"], "replicate");
    let image = image::open(media["path"].as_str().unwrap()).unwrap();
    assert_eq!((image.width(), image.height()), (64, 64));
    server.kill().await.unwrap();
}

/// Runs `generate --emulator` and returns the exit code and the JSON lines.
async fn generate_offline(home: &Path, args: &[&str], behaviours: Option<&Path>) -> (Option<i32>, Vec<Value>) {
    let mut cmd = command(home);
    cmd.args(["generate", "a fox running", "--emulator", "--json", "-o"])
        .arg(home.join("out"))
        .args(args);
    if let Some(path) = behaviours {
        cmd.env("HF_MEDIA_EMULATOR_BEHAVIOURS", path);
    }
    let output = cmd.output().await.unwrap();
    (output.status.code(), lines(&output.stdout))
}

/// A PNG whose left half is red and right half blue, so that an edit made from it can be told apart.
fn red_blue_png(path: &Path) -> Vec<u8> {
    let image = image::RgbImage::from_fn(64, 48, |x, _| {
        if x < 32 {
            image::Rgb([230, 20, 20])
        } else {
            image::Rgb([20, 20, 230])
        }
    });
    image.save(path).unwrap();
    std::fs::read(path).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn the_binary_makes_every_provider_and_task_offline() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("red-blue.png");
    let input_bytes = red_blue_png(&input);
    let input_arg = input.to_str().unwrap().to_owned();
    let mut seen = std::collections::HashSet::new();
    for model in hf_media_emulator::catalogue::builtin() {
        for entry in model.entries.iter().filter(|e| e.status == "live") {
            if !seen.insert((entry.provider, entry.task)) {
                continue;
            }
            let video = entry.task.ends_with("-to-video");
            let with_image = entry.task.starts_with("image-");
            let spec = format!("{}:{}", model.id, entry.provider);
            let mut args: Vec<&str> = vec!["-m", spec.as_str(), "--task", entry.task];
            if video {
                args.extend(["--width", "64", "--height", "48", "--num-frames", "3"]);
            } else {
                args.extend(["--width", "80", "--height", "48"]);
            }
            if with_image {
                args.extend(["--image", input_arg.as_str()]);
            }
            let (code, lines) = generate_offline(dir.path(), &args, None).await;
            let label = format!("{spec} {}", entry.task);
            assert_eq!(code, Some(0), "{label}: {lines:?}");
            let media = lines
                .iter()
                .find(|l| l["event"] == "media")
                .unwrap_or_else(|| panic!("{label}: {lines:?}"));
            let path = media["path"].as_str().unwrap();
            if with_image {
                assert_eq!(media["inputs"][0]["sha256"], sha256_hex(&input_bytes), "{label}");
                let sidecar: Value =
                    serde_json::from_str(&std::fs::read_to_string(media["sidecar"].as_str().unwrap()).unwrap())
                        .unwrap();
                assert_eq!(
                    sidecar["inputs"], media["inputs"],
                    "{label}: the sidecar names the input"
                );
            }
            if video {
                assert_eq!(media["mime"], "video/mp4", "{label}");
                let bytes = std::fs::read(path).unwrap();
                let reader = mp4::Mp4Reader::read_header(std::io::Cursor::new(&bytes), bytes.len() as u64).unwrap();
                let track = reader.tracks().values().next().unwrap();
                assert_eq!((track.width(), track.height()), (64, 48), "{label}");
                assert_eq!(track.sample_count(), 3, "{label}");
            } else {
                let image = image::open(path).unwrap().to_rgb8();
                assert_eq!((image.width(), image.height()), (80, 48), "{label}");
                if with_image {
                    // The edit comes from the input: red on the left, blue on the right.
                    let left = image.get_pixel(20, 24);
                    let right = image.get_pixel(60, 24);
                    assert!(left[0] > left[2] && right[2] > right[0], "{label}: {left:?} {right:?}");
                }
            }
        }
    }
    let tasks: std::collections::BTreeSet<&str> = seen.iter().map(|(_, task)| *task).collect();
    assert_eq!(
        tasks.into_iter().collect::<Vec<_>>(),
        [
            "image-text-to-image",
            "image-text-to-video",
            "image-to-image",
            "image-to-video",
            "text-to-image",
            "text-to-video"
        ]
    );
    assert!(seen.len() >= 22, "{seen:?}");
}

#[tokio::test]
async fn faults_scripted_in_a_behaviours_file_drive_fallback_and_not_supported() {
    let dir = tempfile::tempdir().unwrap();
    let behaviours = dir.path().join("behaviours.json");
    std::fs::write(
        &behaviours,
        r#"{"fal-ai": {"fault": {"fault": {"kind": "status", "status": 402,
            "body": {"error": "You have exceeded your monthly included credits"}}}}}"#,
    )
    .unwrap();
    let (code, lines) = generate_offline(dir.path(), &["--width", "64", "--height", "64"], Some(&behaviours)).await;
    assert_eq!(code, Some(0), "{lines:?}");
    let fallback = lines.iter().find(|l| l["event"] == "fallback").unwrap();
    assert_eq!(
        (fallback["provider"].as_str(), fallback["status"].as_u64()),
        (Some("fal-ai"), Some(402))
    );
    assert!(
        fallback["message"]
            .as_str()
            .unwrap()
            .contains("monthly included credits")
    );
    let media = lines.iter().find(|l| l["event"] == "media").unwrap();
    assert_eq!(media["provider"], "together");

    std::fs::write(
        &behaviours,
        r#"{"fal-ai": {"fault": {"fault": {"kind": "status", "status": 404}}}}"#,
    )
    .unwrap();
    let (code, lines) = generate_offline(dir.path(), &["--width", "64", "--height", "64"], Some(&behaviours)).await;
    assert_eq!(code, Some(1), "{lines:?}");
    let error = lines.iter().find(|l| l["event"] == "error").unwrap();
    assert_eq!(error["kind"], "model_not_supported");

    std::fs::write(&behaviours, r#"{"acme": {}}"#).unwrap();
    let (code, _) = generate_offline(dir.path(), &[], Some(&behaviours)).await;
    assert_eq!(
        code,
        Some(2),
        "an unknown provider in the behaviours file is a usage error"
    );
}

#[tokio::test]
async fn ctrl_c_cancels_everything_exits_130_and_leaves_no_partial_file() {
    interrupt_mid_download("-INT", 130).await;
}

#[tokio::test]
async fn sigterm_cancels_everything_exits_143_and_leaves_no_partial_file() {
    interrupt_mid_download("-TERM", 143).await;
}

/// Starts a generation whose download stalls, sends `signal` mid-way, and checks the exit code and that
/// nothing is left behind.
async fn interrupt_mid_download(signal: &str, expected: i32) {
    let dir = tempfile::tempdir().unwrap();
    let behaviours = dir.path().join("stall.json");
    std::fs::write(
        &behaviours,
        r#"{"fal-ai": {"fault": {"fault": {"kind": "stall", "secs": 60}, "target": "download"}}}"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut child = command(dir.path())
        .args([
            "generate",
            "a fox",
            "--emulator",
            "--json",
            "--width",
            "64",
            "--height",
            "64",
            "-o",
        ])
        .arg(&out)
        .env("HF_MEDIA_EMULATOR_BEHAVIOURS", &behaviours)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Wait until the job is in progress; the download (which stalls) follows right after it completes.
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let waited = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            if line.contains("in_progress") {
                return;
            }
        }
        panic!("the CLI ended before the job was in progress");
    })
    .await;
    assert!(waited.is_ok(), "the job never got in progress");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let pid = child.id().unwrap().to_string();
    let interrupted = std::time::Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(std::time::Duration::from_secs(5), child.wait())
        .await
        .expect("the CLI stops promptly after Ctrl-C")
        .unwrap();
    assert_eq!(status.code(), Some(expected));
    assert!(
        interrupted.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        interrupted.elapsed()
    );
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing may be left behind: {left:?}");
}

#[tokio::test]
async fn media_over_the_size_limit_are_refused_and_nothing_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (code, lines) = generate_offline(
        dir.path(),
        &[
            "-m",
            "black-forest-labs/FLUX.1-schnell:hf-inference",
            "--width",
            "256",
            "--height",
            "256",
            "--max-media-bytes",
            "1000",
        ],
        None,
    )
    .await;
    assert_eq!(code, Some(1), "{lines:?}");
    let error = lines.iter().find(|l| l["event"] == "error").unwrap();
    assert_eq!(error["kind"], "sink");
    assert!(error["message"].as_str().unwrap().contains("1000"), "{error}");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .map(|d| d.flatten().count())
        .into_iter()
        .collect();
    assert!(left.iter().all(|n| *n == 0), "{left:?}");
}

#[tokio::test]
async fn an_openai_compatible_server_edits_two_images_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url, _output) = serve_emulator(dir.path()).await;
    let input = dir.path().join("red-blue.png");
    let input_bytes = red_blue_png(&input);
    let output = command(dir.path())
        .args(["generate", "the two of them", "-m", "any/editor:mine", "--json", "-o"])
        .arg(dir.path().join("o"))
        .args(["--openai-provider", &format!("mine={url}/openai")])
        .args(["--image", input.to_str().unwrap(), "--image", input.to_str().unwrap()])
        .args(["--width", "64", "--height", "48"])
        .env("HF_TOKEN", "hf_emulator")
        .output()
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = lines(&output.stdout);
    let media = lines
        .iter()
        .find(|l| l["event"] == "media")
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(media["provider"], "mine");
    let inputs = media["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 2, "both images were sent (image[])");
    assert!(inputs.iter().all(|i| i["sha256"] == sha256_hex(&input_bytes)));
    let image = image::open(media["path"].as_str().unwrap()).unwrap();
    assert_eq!((image.width(), image.height()), (64, 48));
    server.kill().await.unwrap();
}

#[tokio::test]
async fn output_to_object_storage_through_a_url() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let url = format!("file://{}/media", bucket.display());
    let output = command(dir.path())
        .args([
            "generate",
            "a fox",
            "--emulator",
            "--json",
            "--width",
            "32",
            "--height",
            "32",
            "-o",
            &url,
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = lines(&output.stdout);
    let media = lines
        .iter()
        .find(|l| l["event"] == "media")
        .unwrap_or_else(|| panic!("{lines:?}"));
    let path = media["path"].as_str().unwrap();
    assert!(path.starts_with("file://") && path.ends_with(".png"), "{path}");
    let sidecar = media["sidecar"].as_str().unwrap();
    assert!(sidecar.ends_with(".json"), "{sidecar}");
    let names: Vec<String> = std::fs::read_dir(bucket.join("media"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "the media and its sidecar, nothing partial: {names:?}");
    let png = names.iter().find(|n| n.ends_with(".png")).unwrap();
    let image = image::open(bucket.join("media").join(png)).unwrap();
    assert_eq!((image.width(), image.height()), (32, 32));

    let bad = command(dir.path())
        .args(["generate", "a fox", "--emulator", "-o", "s3://no-such-bucket-here/x"])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "checked before any generation");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("s3://no-such-bucket-here/x"), "{stderr}");
}
