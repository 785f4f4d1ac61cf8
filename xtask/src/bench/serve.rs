//! The server scenario (issue 12; alone with `cargo xtask bench serve`): requests per second, added
//! latency and memory of `hf-media serve`'s `POST /v1/images/generations` (n=1, 64×64), side by side with
//! gpt4free's API server (`g4f api`, its HuggingFaceMedia provider), both against one `hf-media emulator`:
//!
//! - **Provider latency 0**: the emulator's bench router (`/_emulator/bench/4096`), whose hf-inference
//!   answers at once with a ~4 KiB PNG served from memory.
//! - **Provider latency 1 s**: the emulator's own hf-inference, with `{"hf-inference": {"latency": 1000}}`
//!   (it sleeps the latency, then renders a 64×64 picture).
//!
//! At each concurrency (1, 64, 512), `examples/serve_load.rs` (release; one thread; one keep-alive
//! HTTP/1.1 connection per worker, requests back to back) loads three targets in turn: the provider route
//! itself (the emulator, directly: the **direct** figures), `hf-media serve` and g4f. Each run has a
//! warm-up, then a window whose completed requests give requests/s and the latency percentiles. Against
//! the slow provider the workers' starts are spread over one latency (`--ramp`), so that requests arrive
//! as from independent clients, not in synchronized waves of 64 or 512. The
//! **added latency** of a server is its p50 minus the direct p50 at the same concurrency: what the server
//! itself adds. While a server is loaded, its VmRSS (`/proc/PID/status`) is sampled every 10 ms and its
//! CPU time (`/proc/PID/stat`) read before and after: **memory per in-flight request** is (peak RSS with
//! 512 requests in flight at 1 s latency − the RSS of the warmed-up idle server) / 512.
//!
//! The servers write their media under `target/bench-serve` of the workspace (removed at the end). g4f
//! runs in its own venv (`target/g4f-venv`, `pip install "g4f[api]==8.8.6"`), started by
//! `bench/g4f_serve.py`, which sends HuggingFaceMedia's Hub and router URLs to the emulator. If it cannot
//! be installed or started, the rows say why and our figures are still given.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Context, ENDPOINT_VARS, EmulatorProcess, Row, TOKEN, fresh_dir, mib, verdict};

/// The model of every request (the emulator's catalogue serves it by hf-inference, among others).
const MODEL: &str = "black-forest-labs/FLUX.1-schnell";
/// Bytes of the bench router's PNG (latency 0).
const IMAGE_BYTES: u64 = 4096;
/// The g4f release the wrapper was written against (it reaches into HuggingFaceMedia's module).
const G4F_VERSION: &str = "8.8.6";
const KIB: f64 = 1024.0;

/// Sizes of the server scenario.
#[derive(Debug, Clone, Copy)]
pub(super) struct ServeSizes {
    /// The concurrencies, smallest first; the largest is the one of the memory figure.
    pub concurrencies: &'static [usize],
    /// The slow provider's latency, in milliseconds.
    pub latency_ms: u64,
    /// Warm-up, window and ramp (the workers' starts spread over it) of a run at latency 0, in seconds.
    pub fast: (f64, f64, f64),
    /// Warm-up, window and ramp of a run at the slow latency, in seconds (the ramp: the latency).
    pub slow: (f64, f64, f64),
}

impl ServeSizes {
    /// The sizes.
    pub const FULL: ServeSizes = ServeSizes {
        concurrencies: &[1, 64, 512],
        latency_ms: 1000,
        fast: (1.0, 4.0, 0.0),
        slow: (2.5, 8.0, 1.0),
    };
    /// Tiny sizes, to keep the harness working.
    pub const SMOKE: ServeSizes = ServeSizes {
        concurrencies: &[1, 32],
        latency_ms: 200,
        fast: (0.2, 0.5, 0.0),
        slow: (0.3, 0.8, 0.2),
    };
}

/// A server child (`hf-media serve` or g4f) on a free loopback port, killed when dropped.
struct ServerProcess {
    child: Child,
    url: String,
}

impl ServerProcess {
    /// Starts `command` and waits for its `… listening on http://ADDR` line; its stdout is then drained
    /// by a thread (so that it never blocks on a full pipe) and its stderr goes to `log`.
    fn start(mut command: Command, what: &str, log: &Path) -> Result<ServerProcess, String> {
        let stderr = super::log_file(log)?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {what}: {e}"))?;
        let mut stdout = child.stdout.take().map(BufReader::new);
        let mut said = String::new();
        let mut url = None;
        if let Some(out) = &mut stdout {
            for _ in 0..50 {
                let mut line = String::new();
                if out.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(rest) = line.split("listening on ").nth(1) {
                    url = rest.split_whitespace().next().map(str::to_owned);
                    break;
                }
                said.push_str(&line);
            }
        }
        let Some(url) = url else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{what} did not start (it printed {said:?}; see {})",
                log.display()
            ));
        };
        if let Some(mut out) = stdout {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut out, &mut std::io::sink());
            });
        }
        Ok(ServerProcess { child, url })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's resident set size in bytes and its thread count (`VmRSS`, `Threads` of
/// `/proc/PID/status`).
fn status_of(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("VmRSS:")? * 1024, field("Threads:")?))
}

/// A process's resident set size, in bytes.
fn rss(pid: u32) -> Option<u64> {
    status_of(pid).map(|(rss, _)| rss)
}

/// Clock ticks per second of `/proc/PID/stat` (`getconf CLK_TCK`; 100 if it cannot say).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .filter(|&t| t > 0.0)
        .unwrap_or(100.0)
}

/// A process's CPU time so far, user and system, every thread (`/proc/PID/stat`), in seconds.
fn cpu_seconds(pid: u32, ticks: f64) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 (from 1) after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime / ticks, stime / ticks))
}

/// One load run, as the load generator and the sampling of the server saw it.
#[derive(Debug, Clone, Default)]
struct Load {
    rps: f64,
    p50: f64,
    p99: f64,
    ok_total: u64,
    /// The server's peak RSS during the run.
    peak_rss: u64,
    /// The server's largest thread count during the run.
    peak_threads: u64,
    /// The server's CPU seconds during the run, user and system.
    cpu: (f64, f64),
}

impl Load {
    /// User and system CPU per request, in milliseconds.
    fn cpu_per_request_ms(&self) -> (f64, f64) {
        let n = self.ok_total.max(1) as f64;
        (self.cpu.0 * 1e3 / n, self.cpu.1 * 1e3 / n)
    }

    /// User + system CPU per request, in milliseconds.
    fn cpu_ms(&self) -> f64 {
        let (user, system) = self.cpu_per_request_ms();
        user + system
    }

    /// The CPU per request, with its split.
    fn cpu_label(&self) -> String {
        let (user, system) = self.cpu_per_request_ms();
        format!("{} (user {:.2} + system {:.2})", ms(user + system), user, system)
    }
}

/// What to load.
struct Target<'a> {
    url: String,
    body: String,
    headers: &'a [&'a str],
    /// A text every successful answer's start must hold (`"url"` for an `ImagesResponse`).
    expect: Option<&'a str>,
    /// The server process to watch (RSS, CPU), if any.
    watch: Option<u32>,
}

struct Runner<'a> {
    ctx: &'a Context,
    loadgen: &'a Path,
    ticks: f64,
}

impl Runner<'_> {
    /// Runs the load generator on `target` at `concurrency`, with a warm-up and a window in seconds.
    fn load(
        &self,
        target: &Target<'_>,
        concurrency: usize,
        (warmup, window, ramp): (f64, f64, f64),
    ) -> Result<Load, String> {
        let mut command = Command::new(self.loadgen);
        command
            .args(["--url", &target.url, "--body", &target.body])
            .args(["--concurrency", &concurrency.to_string()])
            .args(["--warmup", &warmup.to_string(), "--duration", &window.to_string()])
            .args(["--ramp", &ramp.to_string()])
            .args(["--timeout", "60"]);
        for header in target.headers {
            command.args(["--header", header]);
        }
        let stderr = super::log_file(&self.ctx.log)?;
        let cpu_before = target.watch.and_then(|pid| cpu_seconds(pid, self.ticks));
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run the load generator {}: {e}", self.loadgen.display()))?;
        // The server's RSS, sampled every 10 ms while the load runs.
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = target.watch.map(|pid| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let (mut rss, mut threads) = (0, 0);
                while !stop.load(Ordering::Relaxed) {
                    if let Some((now_rss, now_threads)) = status_of(pid) {
                        rss = rss.max(now_rss);
                        threads = threads.max(now_threads);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                (rss, threads)
            })
        });
        let mut stdout = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        let status = child.wait().map_err(|e| format!("the load generator: {e}"))?;
        stop.store(true, Ordering::Relaxed);
        let (peak_rss, peak_threads) = sampler.and_then(|s| s.join().ok()).unwrap_or((0, 0));
        let cpu_after = target.watch.and_then(|pid| cpu_seconds(pid, self.ticks));
        let answer: Value = serde_json::from_str(stdout.trim())
            .map_err(|e| format!("the load generator printed {stdout:?} ({status}): {e}"))?;
        let number = |key: &str| answer[key].as_f64().unwrap_or(f64::NAN);
        let count = |key: &str| answer[key].as_u64().unwrap_or(0);
        let errors = count("errors_total");
        if !status.success() || errors > 0 || count("completed") == 0 {
            return Err(format!(
                "{} at concurrency {concurrency}: {} completed, {errors} failed (first: {})",
                target.url,
                count("completed"),
                answer["first_error"]
            ));
        }
        if let Some(expect) = target.expect {
            let sample = answer["sample"].as_str().unwrap_or("");
            if !sample.contains(expect) {
                return Err(format!("{} answered {sample:?}, without {expect:?}", target.url));
            }
        }
        Ok(Load {
            rps: number("rps"),
            p50: number("p50_ms"),
            p99: number("p99_ms"),
            ok_total: count("ok_total"),
            peak_rss,
            peak_threads,
            cpu: match (cpu_before, cpu_after) {
                (Some(before), Some(after)) => (after.0 - before.0, after.1 - before.1),
                _ => (f64::NAN, f64::NAN),
            },
        })
    }
}

/// `hf-media serve` against the emulator, its provider router at `router` (with `--no-sync` if not `sync`).
fn start_serve(ctx: &Context, hub: &str, router: &str, out: &Path, sync: bool) -> Result<ServerProcess, String> {
    fresh_dir(out)?;
    let mut command = Command::new(&ctx.bin);
    for var in ENDPOINT_VARS
        .iter()
        .copied()
        .chain(ctx.key_vars.iter().map(String::as_str))
        .chain(["HF_MEDIA_API_KEYS", "HF_MEDIA_SERVE_STATE", "RUST_LOG"])
    {
        command.env_remove(var);
    }
    command
        .env("HF_TOKEN", TOKEN)
        .args(["serve", "--addr", "127.0.0.1:0", "--max-concurrent", "1024"])
        .args(["--hf-endpoint", hub, "--router-url", router])
        .arg("-o")
        .arg(out);
    if !sync {
        command.arg("--no-sync");
    }
    ServerProcess::start(command, "hf-media serve", &ctx.log)
}

/// Writes out what the file system holding `dir` has in memory (`sync -f`, coreutils' `syncfs`). Best
/// effort: without it the next runs only share the disk with that write-back.
fn flush_file_system(dir: &Path) {
    let flushed = Command::new("sync").arg("-f").arg(dir).status();
    if !flushed.is_ok_and(|status| status.success()) {
        eprintln!(
            "  serve: `sync -f {}` failed; the next runs may share the disk with a write-back",
            dir.display()
        );
    }
}

/// The venv's Python with g4f and its API server's packages, made if needed.
fn g4f_venv(ctx: &Context) -> Result<PathBuf, String> {
    let check = format!("import importlib.metadata as m, fastapi, uvicorn; assert m.version('g4f') == '{G4F_VERSION}'");
    let package = format!("g4f[api]=={G4F_VERSION}");
    super::venv(ctx, "g4f-venv", &check, &[&package])
        .ok_or_else(|| format!("`pip install {package}` into target/g4f-venv failed"))
}

/// g4f's API server (`bench/g4f_serve.py`), HuggingFaceMedia pointed at the emulator.
fn start_g4f(ctx: &Context, python: &Path, hub: &str, router: &str, dir: &Path) -> Result<ServerProcess, String> {
    fresh_dir(dir)?;
    let mut command = Command::new(python);
    command
        .arg(ctx.root.join("bench").join("g4f_serve.py"))
        .args(["--hub", hub, "--router", router])
        .current_dir(dir);
    ServerProcess::start(command, "g4f (bench/g4f_serve.py)", &ctx.log)
}

/// The p50 of `rounds` times what the sink does per small media, in `dir`: a 4 KiB file created, written
/// and `fsync`ed, renamed into place, and the folder `fsync`ed (the disk's share of a request).
fn disk_probe(dir: &Path, rounds: usize) -> Result<f64, String> {
    use std::io::Write as _;
    let probe = dir.join("disk-probe");
    fresh_dir(&probe)?;
    let folder = std::fs::File::open(&probe).map_err(|e| format!("cannot open {}: {e}", probe.display()))?;
    let block = [0x5au8; 4096];
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let started = std::time::Instant::now();
        let temp = probe.join(format!(".{i}.part"));
        let io = (|| {
            let mut file = std::fs::File::create_new(&temp)?;
            file.write_all(&block)?;
            file.sync_all()?;
            std::fs::rename(&temp, probe.join(format!("{i}.png")))?;
            folder.sync_all()
        })();
        io.map_err(|e| format!("the disk probe in {}: {e}", probe.display()))?;
        times.push(started.elapsed());
    }
    let _ = std::fs::remove_dir_all(&probe);
    Ok(super::median(times).as_secs_f64() * 1e3)
}

/// The figures of one server at one provider latency.
#[derive(Debug, Default)]
struct Series {
    /// RSS of the warmed-up idle server.
    idle_rss: u64,
    /// One run per concurrency.
    loads: Vec<Load>,
}

impl Series {
    /// The series of the server `target` watches, its idle RSS read now (after its warm-up).
    fn idle(target: &Target<'_>) -> Series {
        Series {
            idle_rss: target.watch.and_then(rss).unwrap_or(0),
            loads: Vec::new(),
        }
    }
}

/// `POST /v1/images/generations` of `server` with `body`, its answers holding a URL, the server watched.
fn images_target<'a>(server: &ServerProcess, body: &str) -> Target<'a> {
    Target {
        url: format!("{}/v1/images/generations", server.url),
        body: body.to_owned(),
        headers: &[],
        expect: Some("\"url\""),
        watch: Some(server.pid()),
    }
}

/// The runs at one provider latency: direct, ours (synced, as by default, and with `--no-sync`), and
/// g4f's (or why it was not measured).
struct Latency {
    label: String,
    /// The provider's latency.
    slow: Duration,
    direct: Vec<Load>,
    ours: Series,
    unsynced: Series,
    g4f: Result<Series, String>,
}

impl Latency {
    /// Our two servers' series, each with its name in the rows.
    fn ours(&self) -> [(&'static str, &Series); 2] {
        [(OURS, &self.ours), (OURS_UNSYNCED, &self.unsynced)]
    }
}

/// How our two servers are named in the rows.
const OURS: &str = "hf-media serve";
const OURS_UNSYNCED: &str = "hf-media serve --no-sync (no disk syncs, like g4f)";

fn ms(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0} ms")
    } else if value.abs() >= 10.0 {
        format!("{value:.1} ms")
    } else {
        format!("{value:.2} ms")
    }
}

fn signed_ms(value: f64) -> String {
    if value >= 0.0 {
        format!("+{}", ms(value))
    } else {
        format!("−{}", ms(-value))
    }
}

/// Memory per in-flight request, in KiB: (peak RSS − idle RSS) / concurrency.
fn per_request_kib(series: &Series, concurrency: usize) -> Option<f64> {
    let load = series.loads.last()?;
    Some(load.peak_rss.saturating_sub(series.idle_rss) as f64 / KIB / concurrency as f64)
}

/// The server scenario.
pub(super) fn scenarios(ctx: &Context, sizes: ServeSizes, loadgen: &Path) -> Result<Vec<Row>, String> {
    let runner = Runner {
        ctx,
        loadgen,
        ticks: clock_ticks(),
    };
    // The servers' media go to the workspace's own `target/`, not to the bench folder of the target dir:
    // that one may be shared by concurrent builds (`CARGO_TARGET_DIR`), and on the machine of
    // docs/PERFORMANCE.md a create + write + fsync + rename + folder fsync there took 2–4× as long.
    let dir = ctx.root.join("target").join("bench-serve");
    fresh_dir(&dir)?;
    let behaviours = dir.join("behaviours.json");
    std::fs::write(
        &behaviours,
        json!({ "hf-inference": { "latency": sizes.latency_ms } }).to_string(),
    )
    .map_err(|e| format!("cannot write {}: {e}", behaviours.display()))?;
    let emulator = EmulatorProcess::start(&ctx.bin, Some(&behaviours))?;
    let disk_before = disk_probe(&dir, 200)?;
    let python = g4f_venv(ctx);
    if let Err(reason) = &python {
        eprintln!("  serve: g4f not measured: {reason}");
    }
    let auth = format!("Authorization: Bearer {TOKEN}");
    let direct_headers = [auth.as_str()];
    let direct_body = json!({ "inputs": "{prompt}", "parameters": { "width": 64, "height": 64 } }).to_string();
    let ours_body = json!({ "prompt": "{prompt}", "model": format!("{MODEL}:hf-inference"), "size": "64x64", "n": 1 });
    let mut g4f_body = ours_body.clone();
    g4f_body["api_key"] = json!(TOKEN);
    let (ours_body, g4f_body) = (ours_body.to_string(), g4f_body.to_string());

    let slow = Duration::from_millis(sizes.latency_ms);
    let bench_router = format!("{}/_emulator/bench/{IMAGE_BYTES}", emulator.url);
    let cases = [
        ("0 s".to_owned(), Duration::ZERO, bench_router, sizes.fast),
        (super::secs(slow), slow, emulator.url.clone(), sizes.slow),
    ];
    let mut latencies = Vec::new();
    for (index, (label, provider_latency, router, times)) in cases.into_iter().enumerate() {
        let direct_url = format!("{router}/hf-inference/models/{MODEL}");
        let ours_server = start_serve(ctx, &emulator.url, &router, &dir.join(format!("serve-{index}")), true)?;
        let unsynced_server = start_serve(
            ctx,
            &emulator.url,
            &router,
            &dir.join(format!("serve-unsynced-{index}")),
            false,
        )?;
        let g4f_server = python
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|python| start_g4f(ctx, python, &emulator.url, &router, &dir.join(format!("g4f-{index}"))));
        let ours = images_target(&ours_server, &ours_body);
        let unsynced = images_target(&unsynced_server, &ours_body);
        let g4f = g4f_server.as_ref().map(|server| images_target(server, &g4f_body));
        let direct = Target {
            url: direct_url,
            body: direct_body.clone(),
            headers: &direct_headers,
            expect: None,
            watch: None,
        };
        // Warm-up (the Hub mapping, the connection pools, the emulator's picture), then the idle RSS.
        let warm = (
            0.0,
            if index == 0 {
                0.5
            } else {
                2.5 * slow.as_secs_f64() + 0.5
            },
            0.0,
        );
        eprintln!("  serve: provider latency {label}: warming up");
        runner.load(&ours, 1, warm)?;
        runner.load(&unsynced, 1, warm)?;
        let mut ours_series = Series::idle(&ours);
        let mut unsynced_series = Series::idle(&unsynced);
        let mut g4f_series = match &g4f {
            Ok(target) => runner
                .load(target, 1, warm)
                .map(|_| Series::idle(target))
                .map_err(|e| format!("g4f failed: {e}")),
            Err(e) => Err(e.to_string()),
        };
        let mut direct_loads = Vec::new();
        for &concurrency in sizes.concurrencies {
            eprintln!(
                "  serve: provider latency {label}, concurrency {concurrency}: direct, hf-media serve (synced, unsynced), g4f"
            );
            direct_loads.push(runner.load(&direct, concurrency, times)?);
            ours_series.loads.push(runner.load(&ours, concurrency, times)?);
            unsynced_series.loads.push(runner.load(&unsynced, concurrency, times)?);
            // What the unsynced server left for the system to write is written now, outside every
            // window, so that it does not compete with the next runs' syncs.
            flush_file_system(&dir);
            if let (Ok(target), Ok(series)) = (&g4f, &mut g4f_series) {
                match runner.load(target, concurrency, times) {
                    Ok(load) => series.loads.push(load),
                    Err(e) => g4f_series = Err(format!("g4f failed: {e}")),
                }
            }
        }
        drop(ours_server);
        drop(unsynced_server);
        drop(g4f_server);
        latencies.push(Latency {
            label,
            slow: provider_latency,
            direct: direct_loads,
            ours: ours_series,
            unsynced: unsynced_series,
            g4f: g4f_series,
        });
    }
    drop(emulator);
    let disk_after = disk_probe(&dir, 200)?;
    let _ = std::fs::remove_dir_all(&dir);
    let mut rows = rows(&latencies, sizes);
    rows.push(Row::new(
        "the disk under the media: 4 KiB file created + written + fsync + rename + folder fsync (p50 of 200)",
        format!("before the runs: {}; after: {}", ms(disk_before), ms(disk_after)),
        "—".into(),
        "`hf-media serve` does this for the media and its sidecar together (their write-back started at once), one \
         folder fsync shared by concurrent stores; with --no-sync, none of the fsyncs"
            .into(),
    ));
    Ok(rows)
}

/// The table's rows.
fn rows(latencies: &[Latency], sizes: ServeSizes) -> Vec<Row> {
    let mut rows = Vec::new();
    let what = "`POST /v1/images/generations` (n=1, 64×64)";
    let target_concurrency = if sizes.concurrencies.contains(&64) {
        64
    } else {
        sizes.concurrencies[sizes.concurrencies.len() / 2]
    };
    for latency in latencies {
        for (i, &concurrency) in sizes.concurrencies.iter().enumerate() {
            let direct = &latency.direct[i];
            let theirs = latency.g4f.as_ref().ok().map(|series| &series.loads[i]);
            let reference = match (&latency.g4f, theirs) {
                (Ok(_), Some(theirs)) => format!(
                    "g4f: {:.1}/s, p50 {} ({}), p99 {}",
                    theirs.rps,
                    ms(theirs.p50),
                    signed_ms(theirs.p50 - direct.p50),
                    ms(theirs.p99)
                ),
                (Err(reason), _) => format!("g4f not measured: {reason}"),
                (Ok(_), None) => "g4f not measured".into(),
            };
            for (name, series) in latency.ours() {
                let ours = &series.loads[i];
                // With a slow provider, a closed loop of `concurrency` clients cannot make more than
                // concurrency / latency requests a second, whatever the server: the 10× target is held
                // where the server's own speed decides the throughput (latency 0).
                let ratio = match theirs {
                    Some(theirs) if latency.slow.is_zero() => {
                        let ratio = ours.rps / theirs.rps;
                        format!("{ratio:.1}× (target ≥ 10×: {})", verdict(ratio >= 10.0))
                    }
                    Some(theirs) => format!(
                        "{:.1}× (any server: ≤ {:.0}/s)",
                        ours.rps / theirs.rps,
                        concurrency as f64 / latency.slow.as_secs_f64()
                    ),
                    None => "n/a".into(),
                };
                rows.push(Row::new(
                    format!(
                        "{name}: {what}, provider latency {}, concurrency {concurrency}: requests/s, latency (added over the provider's own)",
                        latency.label
                    ),
                    format!(
                        "{:.0}/s, p50 {} ({}), p99 {}; direct: {:.0}/s, p50 {}",
                        ours.rps,
                        ms(ours.p50),
                        signed_ms(ours.p50 - direct.p50),
                        ms(ours.p99),
                        direct.rps,
                        ms(direct.p50)
                    ),
                    reference.clone(),
                    ratio,
                ));
            }
        }
    }
    // The targets: p50 overhead at concurrency 64, memory per in-flight request.
    if let Some(i) = sizes.concurrencies.iter().position(|&c| c == target_concurrency) {
        for latency in latencies {
            let direct = &latency.direct[i];
            let theirs = latency.g4f.as_ref().ok().map(|series| &series.loads[i]);
            for (name, series) in latency.ours() {
                let ours = &series.loads[i];
                let added = ours.p50 - direct.p50;
                rows.push(Row::new(
                    format!(
                        "{name}: {what}, provider latency {}, concurrency {target_concurrency}: p50 added latency (server p50 − direct p50)",
                        latency.label
                    ),
                    signed_ms(added),
                    theirs.map_or_else(
                        || "g4f not measured".into(),
                        |theirs| format!("g4f: {}", signed_ms(theirs.p50 - direct.p50)),
                    ),
                    format!("target < 2 ms: {}", verdict(added < 2.0)),
                ));
                rows.push(Row::new(
                    format!(
                        "{name}: {what}, provider latency {}, concurrency {target_concurrency}: server CPU per request (user + system)",
                        latency.label
                    ),
                    ours.cpu_label(),
                    theirs.map_or_else(
                        || "g4f not measured".into(),
                        |theirs| format!("g4f: {}", theirs.cpu_label()),
                    ),
                    theirs.map_or_else(
                        || "n/a".into(),
                        |theirs| format!("{:.1}× less", theirs.cpu_ms() / ours.cpu_ms()),
                    ),
                ));
            }
        }
    }
    if let Some(slow) = latencies.last() {
        let concurrency = sizes.concurrencies.last().copied().unwrap_or(1);
        let describe = |series: &Series| {
            let load = series.loads.last().cloned().unwrap_or_default();
            let kib = per_request_kib(series, concurrency).unwrap_or(f64::NAN);
            (
                kib,
                format!(
                    "{kib:.1} KiB (idle {} → peak {}; at most {} threads)",
                    mib(series.idle_rss),
                    mib(load.peak_rss),
                    load.peak_threads
                ),
            )
        };
        let (kib, figure) = describe(&slow.ours);
        rows.push(Row::new(
            format!(
                "{OURS}: memory per in-flight request: (peak RSS with {concurrency} in flight, provider latency {}) − idle RSS, / {concurrency}",
                slow.label
            ),
            figure,
            match &slow.g4f {
                Ok(series) => format!("g4f: {}", describe(series).1),
                Err(_) => "g4f not measured".into(),
            },
            format!("target: tens of KiB (< 100 KiB): {}", verdict(kib < 100.0)),
        ));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::super::MIB;
    use super::*;

    #[test]
    fn proc_figures_of_this_process() {
        let pid = std::process::id();
        assert!(rss(pid).is_some_and(|r| r > 0));
        assert!(cpu_seconds(pid, clock_ticks()).is_some_and(|(user, system)| user >= 0.0 && system >= 0.0));
    }

    #[test]
    fn milliseconds_are_printed_with_sensible_digits() {
        assert_eq!(ms(0.456), "0.46 ms");
        assert_eq!(ms(12.34), "12.3 ms");
        assert_eq!(ms(1234.0), "1234 ms");
        assert_eq!(signed_ms(-0.5), "−0.50 ms");
        assert_eq!(signed_ms(1.0), "+1.00 ms");
    }

    #[test]
    fn memory_per_request_is_the_growth_over_idle() {
        let series = Series {
            idle_rss: 10 * MIB,
            loads: vec![Load {
                peak_rss: 10 * MIB + 512 * 1024 * 20,
                ..Load::default()
            }],
        };
        assert_eq!(per_request_kib(&series, 512), Some(20.0));
    }
}
