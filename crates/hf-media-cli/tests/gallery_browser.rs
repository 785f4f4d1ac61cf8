//! The gallery page of `hf-media serve --emulator` in a real headless browser: Debian's `chromium`
//! driven by Playwright (`tests/browser/gallery.py`, the sync API, with `executable_path` set to that
//! chromium: Playwright's own browsers are never downloaded).
//!
//! The Python comes from `HF_MEDIA_PYTHON`, else `target/py-venv` (made with Playwright on first use);
//! the browser from `HF_MEDIA_CHROMIUM`, else `chromium` on `PATH`. `source .ci/browser.sh` installs
//! Debian's chromium (what `.ci/run` does before the tests). Without a browser the tests fail, saying
//! how to get one: they never pass silently.
//!
//! The screenshot of the full scenario goes to `HF_MEDIA_GALLERY_SCREENSHOT` when set (a relative path
//! is from the repository's root), else into the server's scratch folder. `docs/gallery.png` is made so:
//!
//! ```text
//! source .ci/python.sh; source .ci/browser.sh
//! HF_MEDIA_GALLERY_SCREENSHOT=docs/gallery.png cargo test -p hf-media-cli --all-features --test gallery_browser
//! ```

#![allow(clippy::unwrap_used)]

#[path = "support/python.rs"]
mod python;
#[path = "support/serve.rs"]
mod serve;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use serve::Serve;

/// The key of the server that asks for one.
const KEY: &str = "sk-gallery-test";
/// The longest a scenario may take (each of its steps waits a few seconds at most).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);
/// fal-ai (the first provider of the image and video models the page picks) answers slowly enough for
/// the placeholder's progress to be seen: queued, then in progress, then the media.
const SLOW_FAL: &str = r#"{"fal-ai": {"latency": 800, "pending_polls": 2}}"#;

const HOW_TO_GET_CHROMIUM: &str = "install Chromium (`apt-get install chromium` on Debian/Ubuntu) or set \
    HF_MEDIA_CHROMIUM to a Chromium executable; `source .ci/browser.sh` does it (what `.ci/run` does before \
    the tests)";

/// The Chromium to drive: `HF_MEDIA_CHROMIUM`, else `chromium` or `chromium-browser` on `PATH`; a
/// failure that says how to get one otherwise.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("HF_MEDIA_CHROMIUM").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "HF_MEDIA_CHROMIUM={} is not a file: {HOW_TO_GET_CHROMIUM}",
            path.display()
        );
        return path;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("the gallery browser test needs Chromium: {HOW_TO_GET_CHROMIUM}"))
}

/// Python with Playwright (made on first use, see `support/python.rs`), and Chromium.
fn tools() -> (PathBuf, PathBuf) {
    (python::python(), chromium())
}

/// A server against the emulator, fal-ai slowed down, with `args`; the folder of its behaviours file.
fn server(args: &[&str]) -> (Serve, tempfile::TempDir) {
    let behaviours = tempfile::tempdir().unwrap();
    let file = behaviours.path().join("behaviours.json");
    std::fs::write(&file, SLOW_FAL).unwrap();
    let server = Serve::builder()
        .args(["--emulator"])
        .args(args)
        .env("HF_MEDIA_EMULATOR_BEHAVIOURS", &file)
        .start();
    (server, behaviours)
}

/// Runs `gallery.py --scenario scenario` against `server`; what it printed as JSON.
fn scenario(server: &Serve, (python, chromium): &(PathBuf, PathBuf), scenario: &str, screenshot: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/gallery.py");
    let started = Instant::now();
    let mut child = Command::new(python)
        .arg(&script)
        .args(["--url", &server.url(), "--scenario", scenario, "--key", KEY])
        .arg("--chromium")
        .arg(chromium)
        .arg("--screenshot")
        .arg(screenshot)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > SCENARIO_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the {scenario} scenario took over {SCENARIO_TIMEOUT:?}\n{}",
                server.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.success(),
        "the {scenario} scenario failed ({status}):\n{stderr}\n{stdout}\n{}",
        server.logs()
    );
    eprintln!(
        "{scenario} scenario: {:.1} s in the browser: {}",
        started.elapsed().as_secs_f64(),
        stdout.trim()
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("the scenario's last line is not JSON ({e}): {stdout}"))
}

/// A PNG file of at least `width`×`height`.
fn assert_png(path: &Path, width: u32, height: u32) {
    let image = image::open(path).unwrap_or_else(|e| panic!("the screenshot {}: {e}", path.display()));
    assert!(
        image.width() >= width && image.height() >= height,
        "the screenshot is {}×{}",
        image.width(),
        image.height()
    );
}

/// The images and the videos the server stored (media files with a sidecar).
fn stored(server: &Serve) -> (usize, usize) {
    let media: Vec<PathBuf> = std::fs::read_dir(server.output())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x != "json") && p.with_extension("json").is_file())
        .collect();
    let videos = media
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "mp4"))
        .count();
    (media.len() - videos, videos)
}

/// Loads the page with no console error (the model choice grouped into images and videos); a prompt
/// submitted from the page shows a placeholder with progress, then an image that decodes; after a
/// reload the grid shows it with its prompt (markup in it left as text), model, provider and seed; a
/// click opens the full image and its record; 12 more made through the API push it to page 2 (newest
/// first, paged); a video is generated, and plays when this Chromium plays H.264 (checked first with
/// `canPlayType`; else its element points at the content and fails cleanly), and opens from the grid;
/// the layout fits a phone's width; a screenshot.
#[test]
fn the_gallery_generates_and_shows_images_and_videos() {
    let tools = tools();
    let (server, _behaviours) = server(&[]);
    // A relative path is from the repository's root.
    let screenshot = std::env::var_os("HF_MEDIA_GALLERY_SCREENSHOT")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || server.scratch().join("gallery.png"),
            |path| Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path),
        );
    let seen = scenario(&server, &tools, "full", &screenshot);
    assert_eq!(seen["image_size"], serde_json::json!([256, 256]), "{seen}");
    assert!(seen["progress"][0].as_u64().unwrap() > 0, "{seen}");
    let video = &seen["video"];
    if video["can_play"].as_str().unwrap_or_default().is_empty() {
        eprintln!("this Chromium plays no H.264: the video was checked to fail cleanly ({video})");
    } else {
        assert!(video["readyState"].as_u64().unwrap() >= 2, "the video played: {video}");
    }
    // 12 images made through the API, 3 from the page, and the video.
    assert_eq!(stored(&server), (15, 1), "{}", server.logs());
    assert_png(&screenshot, 1280, 900);
}

/// With `--api-key`: the page asks for the key before any request; a wrong key is refused and asked
/// again; the right one loads the gallery and is kept in the browser's storage (no question after a
/// reload); an image and a video are made with it (the video played from a `blob:` URL, since a
/// `<video>` cannot send the key); "Forget API key" asks again.
#[test]
fn the_gallery_asks_for_the_api_key_once() {
    let tools = tools();
    let (server, _behaviours) = server(&["--api-key", KEY]);
    let screenshot = server.scratch().join("gallery-key.png");
    let seen = scenario(&server, &tools, "key", &screenshot);
    assert_eq!(seen["image_size"], serde_json::json!([256, 256]), "{seen}");
    assert_eq!(stored(&server), (1, 1), "{}", server.logs());
    assert_png(&screenshot, 1280, 900);
}
