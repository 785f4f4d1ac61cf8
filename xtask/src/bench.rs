//! `cargo xtask bench [--smoke]`: the performance scenarios of issue 5, each measured side by side with a
//! reference client in the same run, against `hf-media emulator` processes on loopback.
//!
//! 1. **Big video**: `hf-media generate -m Wan-AI/Wan2.1-T2V-14B:fal-ai` whose fal answer points at the
//!    emulator's streamed bench video (`/_emulator/bench/video?bytes=N`), vs `curl -o` of the same URL (and
//!    `curl -o` followed by `sync FILE`, since the sink `fsync`s): wall time and peak RSS.
//! 2. **Parallel**: `-n 16` against hf-inference with 1 s latency: the `done` event's `elapsed_ms`, the
//!    process wall time, Hub model calls (emulator stats), and TCP connections opened (with `strace`).
//! 3. **Per-generation overhead**: 256 KiB PNGs served at once, concurrency 64: client CPU time per generation
//!    (user + system, from `wait4`) and generations per second, vs `bench/python_reference.py`
//!    (huggingface_hub's `InferenceClient.text_to_image`, a thread pool of 64) in a venv.
//!
//! 4. **Batch** (issue 11, `bench/batch.rs`; alone with `cargo xtask bench batch`): `hf-media batch` over
//!    10,000 items vs `curl --parallel` and a Python thread pool, the resume scan of a finished
//!    100,000-item state, and peak RSS by batch size.
//! 5. **Server** (issue 12, `bench/serve.rs`; alone with `cargo xtask bench serve`): `hf-media serve`'s
//!    `POST /v1/images/generations` at concurrency 1, 64 and 512, provider latency 0 and 1 s, vs g4f's
//!    API server (`bench/g4f_serve.py`): requests per second, added latency, memory per in-flight request.
//!
//! CPU time and peak memory (`ru_maxrss`) come from `wait4` on each child: the OS's own accounting.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod batch;
mod serve;

const MIB: u64 = 1024 * 1024;
/// The token given to the emulator (it only checks that one is there).
const TOKEN: &str = "hf_emulator";
/// Variables that would point `hf-media` somewhere else than the emulator; the providers' own key
/// variables (which would make it call a provider directly) come from `hf-media providers --json`, the
/// registry's own list, so the bench cannot drift from it.
const ENDPOINT_VARS: [&str; 2] = ["HF_ROUTER_URL", "HF_ENDPOINT"];

/// The key variables of every provider the binary knows (`key_env` of `hf-media providers --json`).
fn provider_key_vars(bin: &Path) -> Result<Vec<String>, String> {
    let output = Command::new(bin)
        .args(["providers", "--json"])
        .output()
        .map_err(|e| format!("cannot run {} providers: {e}", bin.display()))?;
    if !output.status.success() {
        return Err(format!("{} providers --json failed", bin.display()));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut vars = Vec::new();
    for line in text.lines() {
        let provider: Value = serde_json::from_str(line).map_err(|e| format!("providers --json: {e}: {line}"))?;
        if let Some(var) = provider["key_env"].as_str() {
            vars.push(var.to_owned());
        }
    }
    Ok(vars)
}

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Bytes of the big video.
    pub video_bytes: u64,
    /// Repetitions of the video scenario (the median is reported).
    pub video_reps: usize,
    /// `-n` of the parallel scenario.
    pub parallel_n: u32,
    /// Latency of the provider in the parallel scenario, in milliseconds.
    pub latency_ms: u64,
    /// Generations of the overhead scenario.
    pub overhead_total: u32,
    /// Concurrency of the overhead scenario.
    pub overhead_concurrency: u32,
    /// Image bytes of the overhead scenario.
    pub image_bytes: u64,
    /// Items of the batch throughput scenario.
    pub batch_items: u64,
    /// `--concurrency` of the batch scenarios.
    pub batch_concurrency: u32,
    /// Image bytes of the batch scenarios.
    pub batch_image_bytes: u64,
    /// Items of the finished state the resume scan reads (and of the big run).
    pub resume_items: u64,
    /// Repetitions of the resume scan (the median is reported).
    pub resume_reps: usize,
    /// Whether a real batch of `resume_items` items is run too (its peak RSS).
    pub batch_big_run: bool,
}

impl Sizes {
    /// The sizes.
    pub const FULL: Sizes = Sizes {
        video_bytes: 1024 * MIB,
        video_reps: 3,
        parallel_n: 16,
        latency_ms: 1000,
        overhead_total: 1024,
        overhead_concurrency: 64,
        image_bytes: 256 * 1024,
        batch_items: 10_000,
        batch_concurrency: 64,
        batch_image_bytes: 4096,
        resume_items: 100_000,
        resume_reps: 3,
        batch_big_run: true,
    };
    /// Tiny sizes, to keep the harness working (CI-ish).
    pub const SMOKE: Sizes = Sizes {
        video_bytes: 8 * MIB,
        video_reps: 1,
        parallel_n: 4,
        latency_ms: 200,
        overhead_total: 16,
        overhead_concurrency: 16,
        image_bytes: 256 * 1024,
        batch_items: 500,
        batch_concurrency: 64,
        batch_image_bytes: 4096,
        resume_items: 5_000,
        resume_reps: 1,
        batch_big_run: true,
    };
}

/// Which scenarios run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Every scenario.
    All,
    /// The batch scenarios only (`cargo xtask bench batch`).
    Batch,
    /// The server scenario only (`cargo xtask bench serve`).
    Serve,
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// What is measured.
    pub scenario: String,
    /// Our figure.
    pub figure: String,
    /// The reference's figure.
    pub reference: String,
    /// The ratio, with the target it is held to.
    pub ratio: String,
}

impl Row {
    fn new(scenario: impl Into<String>, figure: String, reference: String, ratio: String) -> Row {
        Row {
            scenario: scenario.into(),
            figure,
            reference,
            ratio,
        }
    }
}

/// The rows as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from("| scenario | figure | reference figure | ratio |\n|---|---|---|---|\n");
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            row.scenario, row.figure, row.reference, row.ratio
        );
    }
    out
}

/// What `wait4` says about a finished child.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Wall time from spawn to exit.
    pub wall: Duration,
    /// User + system CPU time.
    pub cpu: Duration,
    /// Peak resident set size, in bytes.
    pub max_rss: u64,
    /// Whether it exited with status 0.
    pub success: bool,
}

/// Waits for `pid` and returns its exit status and resource usage (`wait4`).
#[allow(unsafe_code)]
fn wait4(pid: u32) -> std::io::Result<(bool, Duration, u64)> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain old data, for which all zeroes is a valid value; `wait4` writes to the two
    // pointers, which point at live locals of the right types, and keeps neither.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if reaped != pid {
        return Err(std::io::Error::last_os_error());
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    let cpu = time(usage.ru_utime) + time(usage.ru_stime);
    // Linux reports ru_maxrss in KiB.
    let max_rss = u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024;
    let success = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    Ok((success, cpu, max_rss))
}

/// The bench log, opened for appending: where the children's stderr goes.
fn log_file(log: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("cannot open {}: {e}", log.display()))
}

/// Builds `xtask/examples/{example}.rs` in release (`what` it is, for the messages); its path.
fn build_example(root: &Path, cargo: &str, target: &Path, example: &str, what: &str) -> Result<PathBuf, String> {
    eprintln!("$ cargo build --release -p xtask --example {example}");
    let built = Command::new(cargo)
        .args(["build", "--release", "-p", "xtask", "--example", example])
        .current_dir(root)
        .status()
        .is_ok_and(|s| s.success());
    if !built {
        return Err(format!(
            "the release build of {what} (xtask/examples/{example}.rs) failed"
        ));
    }
    Ok(target.join("release").join("examples").join(example))
}

/// Runs `command` to the end, with its stdout captured and its stderr appended to `log`.
fn measure(command: &mut Command, log: &Path) -> Result<(Usage, String), String> {
    let stderr = log_file(log)?;
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    let (success, cpu, max_rss) = wait4(child.id()).map_err(|e| format!("wait4 failed: {e}"))?;
    let wall = start.elapsed();
    // Reaped by wait4: `child` must not be waited for again; dropping it does not wait.
    drop(child);
    Ok((
        Usage {
            wall,
            cpu,
            max_rss,
            success,
        },
        stdout,
    ))
}

/// A `hf-media emulator` process on a free loopback port, killed when dropped.
struct EmulatorProcess {
    child: Child,
    url: String,
    /// Its stdout, kept open (it prints more after its address, and would fail on a closed pipe).
    _stdout: Option<BufReader<std::process::ChildStdout>>,
}

impl EmulatorProcess {
    fn start(bin: &Path, behaviours: Option<&Path>) -> Result<EmulatorProcess, String> {
        let mut command = Command::new(bin);
        command.args(["emulator", "--addr", "127.0.0.1:0"]);
        if let Some(path) = behaviours {
            command.arg("--behaviours").arg(path);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the emulator {}: {e}", bin.display()))?;
        let mut line = String::new();
        let mut stdout = child.stdout.take().map(BufReader::new);
        if let Some(out) = &mut stdout {
            let _ = out.read_line(&mut line);
        }
        match line.split("listening on ").nth(1) {
            Some(url) => Ok(EmulatorProcess {
                child,
                url: url.trim().to_owned(),
                _stdout: stdout,
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("the emulator did not start (it said {line:?})"))
            }
        }
    }

    fn stats(&self) -> Result<Value, String> {
        let out = Command::new("curl")
            .args(["-sf", &format!("{}/_emulator/stats", self.url)])
            .output()
            .map_err(|e| format!("cannot run curl: {e}"))?;
        serde_json::from_slice(&out.stdout).map_err(|e| format!("emulator stats are not JSON: {e}"))
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON events printed by `hf-media generate --json`.
pub fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The `done` event's `(succeeded, failed, elapsed_ms)`.
pub fn done(events: &[Value]) -> Option<(u64, u64, u64)> {
    let done = events.iter().rev().find(|e| e["event"] == "done")?;
    Some((
        done["succeeded"].as_u64()?,
        done["failed"].as_u64()?,
        done["elapsed_ms"].as_u64()?,
    ))
}

/// The median of some durations (the upper one for an even count).
pub fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

fn size_label(bytes: u64) -> String {
    if bytes >= 1024 * MIB && bytes.is_multiple_of(1024 * MIB) {
        format!("{} GiB", bytes / (1024 * MIB))
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

/// A `hf-media generate` command against an emulator.
fn generate(ctx: &Context, hub: &str, router: &str, model: &str, out: &Path) -> Command {
    let mut command = Command::new(&ctx.bin);
    for var in ENDPOINT_VARS
        .iter()
        .copied()
        .chain(ctx.key_vars.iter().map(String::as_str))
    {
        command.env_remove(var);
    }
    command
        .env("HF_TOKEN", TOKEN)
        .env_remove("RUST_LOG")
        .args(["generate", "bench prompt", "-m", model, "--json", "--hf-endpoint", hub])
        .args(["--router-url", router])
        .arg("-o")
        .arg(out);
    command
}

struct Context {
    bin: PathBuf,
    /// The providers' own key variables, removed from every child's environment.
    key_vars: Vec<String>,
    dir: PathBuf,
    log: PathBuf,
    root: PathBuf,
}

fn fresh_dir(path: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(path);
    std::fs::create_dir_all(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

fn video(ctx: &Context, sizes: Sizes) -> Result<Vec<Row>, String> {
    let emulator = EmulatorProcess::start(&ctx.bin, None)?;
    let n = sizes.video_bytes;
    let url = format!("{}/_emulator/bench/video?bytes={n}", emulator.url);
    let router = format!("{}/_emulator/bench/{n}", emulator.url);
    let out = ctx.dir.join("video");
    let curl_file = ctx.dir.join("curl.mp4");
    let (mut ours, mut curl, mut curl_sync) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..sizes.video_reps {
        eprintln!("  video {}/{}", rep + 1, sizes.video_reps);
        let _ = std::fs::remove_file(&curl_file);
        let (usage, _) = measure(
            Command::new("curl").args(["-s", "-f", "-o"]).arg(&curl_file).arg(&url),
            &ctx.log,
        )?;
        let got = std::fs::metadata(&curl_file).map(|m| m.len()).unwrap_or(0);
        if !usage.success || got != n {
            return Err(format!("curl failed or saved {got} bytes instead of {n}"));
        }
        curl.push(usage);
        let _ = std::fs::remove_file(&curl_file);
        let (usage, _) = measure(
            Command::new("sh")
                .args(["-c", "curl -s -f -o \"$1\" \"$2\" && sync \"$1\"", "sh"])
                .arg(&curl_file)
                .arg(&url),
            &ctx.log,
        )?;
        curl_sync.push(usage);
        let _ = std::fs::remove_file(&curl_file);

        fresh_dir(&out)?;
        let (usage, stdout) = measure(
            &mut generate(ctx, &emulator.url, &router, "Wan-AI/Wan2.1-T2V-14B:fal-ai", &out),
            &ctx.log,
        )?;
        let events = events(&stdout);
        let bytes = events
            .iter()
            .find(|e| e["event"] == "media")
            .and_then(|e| e["bytes"].as_u64());
        if !usage.success || bytes != Some(n) {
            return Err(format!(
                "hf-media did not save the {n}-byte video (saved {bytes:?}); it printed:\n{stdout}"
            ));
        }
        ours.push(usage);
        let _ = std::fs::remove_dir_all(&out);
    }
    let wall = median(ours.iter().map(|u| u.wall).collect());
    let curl_wall = median(curl.iter().map(|u| u.wall).collect());
    let curl_sync_wall = median(curl_sync.iter().map(|u| u.wall).collect());
    let rss = ours.iter().map(|u| u.max_rss).max().unwrap_or(0);
    let curl_rss = curl.iter().map(|u| u.max_rss).max().unwrap_or(0);
    let label = size_label(n);
    let ratio = wall.as_secs_f64() / curl_wall.as_secs_f64();
    let ratio_sync = wall.as_secs_f64() / curl_sync_wall.as_secs_f64();
    let reps = sizes.video_reps;
    Ok(vec![
        Row::new(
            format!("save a {label} video over loopback: wall time (median of {reps})"),
            secs(wall),
            format!("`curl -o`: {}", secs(curl_wall)),
            format!("{ratio:.2}× (target ≤ 1.25×: {})", verdict(ratio <= 1.25)),
        ),
        Row::new(
            format!("save a {label} video: wall time, reference also fsyncs"),
            secs(wall),
            format!("`curl -o` + `sync FILE`: {}", secs(curl_sync_wall)),
            format!("{ratio_sync:.2}×"),
        ),
        Row::new(
            format!("save a {label} video: peak RSS of the whole process"),
            mib(rss),
            format!("`curl -o`: {}", mib(curl_rss)),
            format!(
                "{:.2}× (target < 64 MiB: {})",
                rss as f64 / curl_rss.max(1) as f64,
                verdict(rss < 64 * MIB)
            ),
        ),
    ])
}

/// Counts the TCP connections `command` opens to loopback, with `strace` (None if it cannot).
fn count_connections(command: Command, ctx: &Context) -> Option<u64> {
    let trace = ctx.dir.join("connect.trace");
    let _ = std::fs::remove_file(&trace);
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
    let mut strace = Command::new("strace");
    strace
        .args(["-f", "-e", "trace=connect", "-o"])
        .arg(&trace)
        .arg(program)
        .args(args);
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => strace.env(key, value),
            None => strace.env_remove(key),
        };
    }
    let status = strace.stdout(Stdio::null()).stderr(Stdio::null()).status().ok()?;
    if !status.success() {
        return None;
    }
    let text = std::fs::read_to_string(&trace).ok()?;
    Some(
        text.lines()
            .filter(|l| l.contains("connect(") && l.contains("AF_INET") && l.contains("127.0.0.1"))
            .count() as u64,
    )
}

fn parallel(ctx: &Context, sizes: Sizes) -> Result<Vec<Row>, String> {
    let behaviours = ctx.dir.join("behaviours-latency.json");
    std::fs::write(
        &behaviours,
        format!("{{\"hf-inference\": {{\"latency\": {}}}}}", sizes.latency_ms),
    )
    .map_err(|e| format!("cannot write {}: {e}", behaviours.display()))?;
    let emulator = EmulatorProcess::start(&ctx.bin, Some(&behaviours))?;
    let out = ctx.dir.join("parallel");
    fresh_dir(&out)?;
    let n = sizes.parallel_n;
    let command = || {
        let mut command = generate(
            ctx,
            &emulator.url,
            &emulator.url,
            "stabilityai/sdxl-turbo:hf-inference",
            &out,
        );
        command.args(["-n", &n.to_string(), "--width", "64", "--height", "64"]);
        command
    };
    eprintln!("  parallel -n {n}");
    let (usage, stdout) = measure(&mut command(), &ctx.log)?;
    let events = events(&stdout);
    let Some((succeeded, failed, elapsed_ms)) = done(&events) else {
        return Err(format!("hf-media printed no `done` event:\n{stdout}"));
    };
    if !usage.success || failed != 0 || succeeded != u64::from(n) {
        return Err(format!("{failed} of {n} generations failed:\n{stdout}"));
    }
    let stats = emulator.stats()?;
    let hub_calls = stats["hub model"].as_u64().unwrap_or(0);
    let latency = Duration::from_millis(sizes.latency_ms);
    let budget = latency.mul_f64(1.15);
    let generation = Duration::from_millis(elapsed_ms);
    let mut rows = vec![
        Row::new(
            format!(
                "`-n {n}`, provider latency {}: generation wall (`done.elapsed_ms`)",
                secs(latency)
            ),
            secs(generation),
            format!("the latency: {}", secs(latency)),
            format!(
                "{:.3}× (target ≤ {}: {})",
                generation.as_secs_f64() / latency.as_secs_f64(),
                secs(budget),
                verdict(generation <= budget)
            ),
        ),
        Row::new(
            format!("`-n {n}`: wall time of the whole process (start-up, Hub, {n} files)"),
            secs(usage.wall),
            format!("the latency: {}", secs(latency)),
            format!("{:.3}×", usage.wall.as_secs_f64() / latency.as_secs_f64()),
        ),
        Row::new(
            format!("`-n {n}`: Hub mapping requests (emulator stats)"),
            hub_calls.to_string(),
            "1".into(),
            format!("target 1: {}", verdict(hub_calls == 1)),
        ),
    ];
    fresh_dir(&out)?;
    if let Some(connections) = count_connections(command(), ctx) {
        rows.push(Row::new(
            format!("`-n {n}`: TCP connections opened (strace `connect`)"),
            connections.to_string(),
            format!("{n} concurrent HTTP/1.1 requests + 1 Hub request"),
            format!(
                "≤ {}: {} (the Hub's connection is pooled and reused)",
                n,
                verdict(connections <= u64::from(n))
            ),
        ));
    }
    let _ = std::fs::remove_dir_all(&out);
    Ok(rows)
}

/// The venv's Python with huggingface_hub and Pillow, made if needed; None if it cannot be made.
fn python_venv(ctx: &Context) -> Option<PathBuf> {
    venv(
        ctx,
        "bench-venv",
        "import huggingface_hub, PIL",
        &["huggingface_hub", "pillow"],
    )
}

/// The Python of `target/{name}`, made with `python3 -m venv` and `pip install packages` unless it already
/// runs `check`; None if it cannot be made.
fn venv(ctx: &Context, name: &str, check: &str, packages: &[&str]) -> Option<PathBuf> {
    let venv = ctx.root.join("target").join(name);
    let python = venv.join("bin").join("python");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", check])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ready(&python) {
        return Some(python);
    }
    eprintln!("  creating {} ({} from PyPI)", venv.display(), packages.join(", "));
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin").join("pip"))
            .args(["install", "-q"])
            .args(packages)
            .status()
            .is_ok_and(|s| s.success());
    (made && ready(&python)).then_some(python)
}

fn overhead(ctx: &Context, sizes: Sizes, smoke: bool) -> Result<Vec<Row>, String> {
    let emulator = EmulatorProcess::start(&ctx.bin, None)?;
    let router = format!("{}/_emulator/bench/{}", emulator.url, sizes.image_bytes);
    let model = "stabilityai/sdxl-turbo";
    let concurrency = sizes.overhead_concurrency;
    let rounds = sizes.overhead_total.div_ceil(concurrency);
    let total = rounds * concurrency;
    let out = ctx.dir.join("overhead");
    // One untimed run: the emulator renders and caches its picture, the page cache warms.
    fresh_dir(&out)?;
    measure(
        generate(ctx, &emulator.url, &router, &format!("{model}:hf-inference"), &out).args(["-n", "1"]),
        &ctx.log,
    )?;
    // One process makes every generation, `concurrency` at a time, like the Python reference's one
    // process with its pool of `concurrency` threads.
    eprintln!("  overhead: `-n {total} --concurrency {concurrency}`");
    fresh_dir(&out)?;
    let (usage, stdout) = measure(
        generate(ctx, &emulator.url, &router, &format!("{model}:hf-inference"), &out).args([
            "-n",
            &total.to_string(),
            "--concurrency",
            &concurrency.to_string(),
        ]),
        &ctx.log,
    )?;
    let succeeded = done(&events(&stdout)).map(|d| d.0);
    if !usage.success || succeeded != Some(u64::from(total)) {
        return Err(format!("the overhead scenario failed:\n{stdout}"));
    }
    let (cpu, wall, rss) = (usage.cpu, usage.wall, usage.max_rss);
    let _ = std::fs::remove_dir_all(&out);
    let per_gen = cpu.as_secs_f64() / f64::from(total);
    let rate = f64::from(total) / wall.as_secs_f64();
    let label = format!("{} PNG, concurrency {concurrency}", size_label(sizes.image_bytes));

    let python = python_venv(ctx);
    let reference = match &python {
        None if smoke => None,
        None => return Err("could not make the Python venv for the reference client".into()),
        Some(python) => {
            let py_out = ctx.dir.join("python");
            fresh_dir(&py_out)?;
            eprintln!("  overhead: Python reference, {total} generations, {concurrency} threads");
            let (usage, stdout) = measure(
                Command::new(python)
                    .arg(ctx.root.join("bench").join("python_reference.py"))
                    .args(["--hub", &emulator.url, "--router", &router, "--model", model])
                    .args(["--total", &total.to_string(), "--concurrency", &concurrency.to_string()])
                    .arg("--out")
                    .arg(&py_out),
                &ctx.log,
            )?;
            let _ = std::fs::remove_dir_all(&py_out);
            let answer: Value = serde_json::from_str(stdout.trim())
                .map_err(|e| format!("the Python reference printed {stdout:?}: {e}"))?;
            if !usage.success || answer["failures"].as_u64() != Some(0) {
                return Err(format!("the Python reference failed: {stdout}"));
            }
            Some((
                answer["cpu_s"].as_f64().unwrap_or(f64::NAN) / f64::from(total),
                f64::from(total) / answer["wall_s"].as_f64().unwrap_or(f64::NAN),
                usage.cpu.as_secs_f64() / f64::from(total),
            ))
        }
    };
    let (py_cpu, py_rate, py_cpu_whole) = reference.unwrap_or((f64::NAN, f64::NAN, f64::NAN));
    let skipped = reference.is_none();
    let ratio = |r: f64, ok: bool| {
        if skipped {
            "n/a (no Python venv)".to_owned()
        } else {
            format!("{r:.1}× (target ≥ 10×: {})", verdict(ok))
        }
    };
    Ok(vec![
        Row::new(
            format!("{label}: client CPU per generation ({total} generations)"),
            format!("{:.2} ms", per_gen * 1e3),
            format!(
                "Python `InferenceClient`: {:.2} ms (whole process: {:.2} ms)",
                py_cpu * 1e3,
                py_cpu_whole * 1e3
            ),
            ratio(py_cpu / per_gen, py_cpu / per_gen >= 10.0),
        ),
        Row::new(
            format!("{label}: generations per second"),
            format!("{rate:.0}/s"),
            format!("Python `InferenceClient`: {py_rate:.0}/s"),
            ratio(rate / py_rate, rate / py_rate >= 10.0),
        ),
        Row::new(
            format!("{label}: peak RSS of the `-n {total} --concurrency {concurrency}` process"),
            mib(rss),
            "—".into(),
            "—".into(),
        ),
    ])
}

/// Runs the selected scenarios and prints the table; `smoke` uses tiny sizes (and skips Python if no venv).
pub fn run(root: &Path, cargo: &str, smoke: bool, selection: Selection) -> Result<String, String> {
    eprintln!("$ cargo build --release -p hf-media-cli");
    let built = Command::new(cargo)
        .args(["build", "--release", "-p", "hf-media-cli"])
        .current_dir(root)
        .status()
        .is_ok_and(|s| s.success());
    if !built {
        return Err("the release build failed".into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let dir = target.join("bench");
    fresh_dir(&dir)?;
    let bin = target.join("release").join("hf-media");
    let runs_batch = matches!(selection, Selection::All | Selection::Batch);
    let runs_serve = matches!(selection, Selection::All | Selection::Serve);
    let maker = if runs_batch {
        Some(build_example(root, cargo, &target, "batch_state", "the state maker")?)
    } else {
        None
    };
    let loadgen = if runs_serve {
        Some(build_example(root, cargo, &target, "serve_load", "the load generator")?)
    } else {
        None
    };
    let ctx = Context {
        key_vars: provider_key_vars(&bin)?,
        bin,
        log: dir.join("stderr.log"),
        dir,
        root: root.to_owned(),
    };
    let sizes = if smoke { Sizes::SMOKE } else { Sizes::FULL };
    let mut rows = Vec::new();
    if selection == Selection::All {
        eprintln!("scenario 1: big video");
        rows.extend(video(&ctx, sizes)?);
        eprintln!("scenario 2: parallel");
        rows.extend(parallel(&ctx, sizes)?);
        eprintln!("scenario 3: per-generation overhead");
        rows.extend(overhead(&ctx, sizes, smoke)?);
    }
    if let Some(maker) = &maker {
        eprintln!("scenario 4: batch");
        rows.extend(batch::scenarios(&ctx, sizes, smoke, maker)?);
    }
    if let Some(loadgen) = &loadgen {
        eprintln!("scenario 5: server");
        let serve_sizes = if smoke {
            serve::ServeSizes::SMOKE
        } else {
            serve::ServeSizes::FULL
        };
        rows.extend(serve::scenarios(&ctx, serve_sizes, loadgen)?);
    }
    Ok(table(&rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_events_are_read_from_json_lines() {
        let out = "{\"event\":\"attempt\",\"task\":0}\nnot json\n{\"event\":\"done\",\"succeeded\":16,\"failed\":0,\"elapsed_ms\":1012}\n";
        assert_eq!(done(&events(out)), Some((16, 0, 1012)));
        assert_eq!(done(&events("")), None);
    }

    #[test]
    fn medians_and_labels() {
        let ms = Duration::from_millis;
        assert_eq!(median(vec![ms(3), ms(1), ms(2)]), ms(2));
        assert_eq!(median(Vec::new()), Duration::ZERO);
        assert_eq!(size_label(1024 * MIB), "1 GiB");
        assert_eq!(size_label(8 * MIB), "8 MiB");
        assert_eq!(size_label(256 * 1024), "256 KiB");
    }

    #[test]
    fn the_table_is_markdown() {
        let rows = [Row::new("a", "1".into(), "2".into(), "0.5×".into())];
        assert_eq!(
            table(&rows),
            "| scenario | figure | reference figure | ratio |\n|---|---|---|---|\n| a | 1 | 2 | 0.5× |\n"
        );
    }

    #[test]
    fn wait4_reports_a_childs_usage() {
        let log = std::env::temp_dir().join(format!("xtask-bench-test-{}.log", std::process::id()));
        let (usage, stdout) = measure(Command::new("sh").args(["-c", "echo hi"]), &log).expect("runs");
        let _ = std::fs::remove_file(&log);
        assert!(usage.success);
        assert_eq!(stdout.trim(), "hi");
        assert!(usage.max_rss > 0);
    }
}
