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

#[tokio::test]
async fn the_emulator_command_serves_the_hub_and_the_router() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = command(dir.path())
        .args(["emulator", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let first = stdout.next_line().await.unwrap().unwrap();
    let url = first.rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{first}");
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
