//! What the batch tests share: the binary run with a clean environment, an emulator served by the test
//! process, file listings, and the tools outside Rust (moto's S3 server, a Python with `datasets`).

#![allow(dead_code, clippy::unwrap_used)]

#[path = "../../../hf-media-sink-object/tests/support/moto.rs"]
pub mod moto;
pub mod python;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hf_media_emulator::{Emulator, ProviderBehaviour, RunningEmulator};
use serde_json::Value;

/// Variables of the test's environment that would change what the binary does.
const CLEARED: [&str; 22] = [
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_ENDPOINT",
    "HF_ROUTER_URL",
    "HF_MEDIA_BATCH_STATE",
    "HF_MEDIA_EMULATOR_BEHAVIOURS",
    "XDG_CACHE_HOME",
    "RUST_LOG",
    "FAL_KEY",
    "REPLICATE_API_TOKEN",
    "TOGETHER_API_KEY",
    "NSCALE_API_KEY",
    "WAVESPEED_API_KEY",
    "ZAI_API_KEY",
    "NOVITA_API_KEY",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_PROFILE",
    "AWS_ALLOW_HTTP",
];

/// The binary, with the variables above removed and `HOME` in `home`.
pub fn command(home: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hf-media"));
    for var in CLEARED {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home).env("HF_HOME", home.join("hf")).kill_on_drop(true);
    cmd
}

/// What a run of the binary gave.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// The stdout lines, each parsed (a line that is not JSON fails the test).
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a stdout line is not JSON ({e}): {l}")))
            .collect()
    }

    /// Fails the test unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "exit code; stderr:\n{}\nstdout (end):\n{}",
            self.stderr,
            tail(&self.stdout, 3000)
        );
        self
    }
}

fn tail(text: &str, chars: usize) -> &str {
    let start = text.len().saturating_sub(chars);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    &text[start..]
}

/// Runs `cmd` to its end (at most two minutes).
pub async fn run(mut cmd: tokio::process::Command) -> Run {
    let started = Instant::now();
    let output = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the binary ends within two minutes")
        .expect("the binary runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// An emulator served by the test process on a free loopback port: its request counts are the test's to
/// read.
pub struct Served {
    pub emulator: Emulator,
    pub running: RunningEmulator,
}

impl Served {
    /// Queued jobs complete at their first status request (the poll interval, 500 ms, is then the only
    /// wait of a generation).
    pub async fn start() -> Served {
        let emulator = Emulator::new();
        for provider in hf_media_emulator::PROVIDERS {
            emulator.set_behaviour(provider, ProviderBehaviour::default().with_pending_polls(0));
        }
        let running = emulator
            .start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("the emulator starts");
        Served { emulator, running }
    }

    pub fn url(&self) -> String {
        self.running.url()
    }

    /// Points `cmd` at this emulator (the Hub and the router), with `token`.
    pub fn point(&self, cmd: &mut tokio::process::Command, token: &str) {
        cmd.env("HF_ENDPOINT", self.url())
            .env("HF_ROUTER_URL", self.url())
            .env("HF_TOKEN", token);
    }

    /// Generations submitted so far, over every provider (`… submit` counts).
    pub fn submits(&self) -> u64 {
        submits(&self.emulator.stats())
    }
}

/// The `… submit` counts of emulator stats, added up.
pub fn submits(stats: &BTreeMap<String, u64>) -> u64 {
    stats
        .iter()
        .filter(|(k, _)| k.ends_with(" submit"))
        .map(|(_, v)| v)
        .sum()
}

/// Every file under `dir`, as paths relative to it with `/` separators, sorted (hidden ones included).
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                folders.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap();
                found.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    found.sort();
    found
}

/// The lines of a JSONL file, each parsed.
pub fn jsonl(path: &Path) -> Vec<Value> {
    parse_jsonl(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// The lines of JSONL text, each parsed.
pub fn parse_jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// A PNG of `width`×`height`, its left half red and its right half blue.
pub fn red_blue_png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, _| {
        if x < width / 2 {
            image::Rgb([230, 20, 20])
        } else {
            image::Rgb([20, 20, 230])
        }
    });
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

/// Where the build puts things (`target/`): two folders above the binary (`target/debug/hf-media`).
pub fn target_dir() -> PathBuf {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_hf-media"));
    binary
        .parent()
        .and_then(Path::parent)
        .map(Path::to_owned)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}
