//! `hf-media batch` when things go wrong: a process killed at random moments and started again, several
//! workers on one SQLite or PostgreSQL state (one of them killed), a storm of 429s, 402s from every
//! provider, Ctrl-C. The binary runs as child processes against an emulator served by the test process,
//! behind a layer that records every fal-ai submit (its prompt, its seed, the job id it got) and every
//! status poll, so that "nothing lost, nothing paid twice" is checked generation by generation.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use hf_media_batch::runner::{items_per_folder, media_key};
use hf_media_emulator::{Emulator, Fault, FaultRule, FaultTarget, PROVIDERS, ProviderBehaviour};
use serde_json::{Value, json};

/// A model whose first provider is fal-ai (asynchronous: its jobs have tickets), with five others.
const MODEL: &str = "black-forest-labs/FLUX.1-schnell";
/// The same, fal-ai alone.
const MODEL_ON_FAL: &str = "black-forest-labs/FLUX.1-schnell:fal-ai";
const FAL: &str = "fal-ai";

// ---------------------------------------------------------------------------------------------------------
// The emulator, served behind a recorder.

/// A generation: its prompt and seed (the `n` generations of an item have their own seeds).
type Generation = (String, Option<u64>);

/// A fal-ai submit, as the recorder saw it.
#[derive(Debug, Clone)]
struct Submit {
    prompt: String,
    seed: Option<u64>,
    status: u16,
    /// The job id of an accepted submit.
    job: Option<String>,
    /// The test's run number when it was answered.
    run: u32,
    at: Instant,
}

impl Submit {
    fn accepted(&self) -> bool {
        self.status == 200 && self.job.is_some()
    }
}

#[derive(Debug, Default)]
struct Log {
    submits: Vec<Submit>,
    /// Status polls: job id, run number.
    polls: Vec<(String, u32)>,
}

/// What the layer in front of the emulator saw.
#[derive(Debug, Default)]
struct Recorder {
    log: Mutex<Log>,
    run: AtomicU32,
}

impl Recorder {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_run(&self, run: u32) {
        self.run.store(run, Ordering::SeqCst);
    }

    fn submits(&self) -> Vec<Submit> {
        self.log().submits.clone()
    }

    fn accepted(&self) -> Vec<Submit> {
        self.submits().into_iter().filter(Submit::accepted).collect()
    }

    /// Accepted submits by generation (prompt and seed: the `n` generations of an item have their own seeds).
    fn by_generation(&self) -> BTreeMap<Generation, Vec<Submit>> {
        let mut map: BTreeMap<Generation, Vec<Submit>> = BTreeMap::new();
        for submit in self.accepted() {
            map.entry((submit.prompt.clone(), submit.seed))
                .or_default()
                .push(submit);
        }
        map
    }

    /// Generations submitted more than once: the paid-twice ones.
    fn paid_twice(&self) -> Vec<(Generation, usize)> {
        self.by_generation()
            .into_iter()
            .filter(|(_, submits)| submits.len() > 1)
            .map(|(key, submits)| (key, submits.len()))
            .collect()
    }

    /// Status polls of jobs submitted in an earlier run: resumed jobs, polled rather than submitted again.
    fn resumed_polls(&self) -> (usize, BTreeSet<String>) {
        let log = self.log();
        let submitted: BTreeMap<&str, u32> = log
            .submits
            .iter()
            .filter_map(|s| s.job.as_deref().map(|job| (job, s.run)))
            .collect();
        let mut polls = 0;
        let mut jobs = BTreeSet::new();
        for (job, run) in &log.polls {
            if submitted.get(job.as_str()).is_some_and(|first| first < run) {
                polls += 1;
                jobs.insert(job.clone());
            }
        }
        (polls, jobs)
    }
}

async fn record(State(recorder): State<Arc<Recorder>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let run = recorder.run.load(Ordering::SeqCst);
    let fal = path.starts_with("/fal-ai/");
    if fal && request.method() == Method::GET && path.ends_with("/status") {
        if let Some((_, rest)) = path.rsplit_once("/requests/") {
            let job = rest.trim_end_matches("/status").to_owned();
            recorder.log().polls.push((job, run));
        }
        return next.run(request).await;
    }
    if !fal || request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, hf_media_emulator::MAX_BODY_BYTES)
        .await
        .unwrap_or_default();
    let sent: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    recorder.log().submits.push(Submit {
        prompt: sent["prompt"].as_str().unwrap_or_default().to_owned(),
        seed: sent["seed"].as_u64(),
        status: parts.status.as_u16(),
        job: answer["request_id"].as_str().map(str::to_owned),
        run,
        at: Instant::now(),
    });
    Response::from_parts(parts, Body::from(bytes))
}

/// An emulator served on 127.0.0.1 behind the recorder; stopped on drop.
struct Served {
    emulator: Emulator,
    recorder: Arc<Recorder>,
    url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Served {
    async fn start() -> Served {
        let emulator = Emulator::new();
        let recorder = Arc::new(Recorder::default());
        let app = emulator
            .router()
            .layer(axum::middleware::from_fn_with_state(recorder.clone(), record));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Served {
            emulator,
            recorder,
            url,
            server,
        }
    }

    fn stat(&self, key: &str) -> u64 {
        self.emulator.stats().get(key).copied().unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------------------------------------
// The binary.

/// Variables of the test's environment that would change what the binary does.
const CLEARED: [&str; 16] = [
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
    "HF_HOME",
];

/// A batch test's folder: the input, the output, a home, the logs of each run.
struct Batch {
    dir: tempfile::TempDir,
    input: PathBuf,
    out: PathBuf,
    /// Each item's id and `n`, in input order.
    items: Vec<(String, u32)>,
    url: String,
}

impl Batch {
    /// `count` items `item-0000`…, every fourth asking for two media.
    fn new(served: &Served, count: usize) -> Batch {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("prompts.jsonl");
        let mut text = String::new();
        let mut items = Vec::new();
        for i in 0..count {
            let id = format!("item-{i:04}");
            let n = if i % 4 == 3 { 2 } else { 1 };
            text.push_str(&json!({ "custom_id": id, "prompt": format!("a red fox, picture {i}"), "n": n }).to_string());
            text.push('\n');
            items.push((id, n));
        }
        std::fs::write(&input, text).unwrap();
        let out = dir.path().join("dataset");
        Batch {
            input,
            out,
            items,
            url: served.url.clone(),
            dir,
        }
    }

    /// Generations in the batch (`items × n`).
    fn generations(&self) -> usize {
        self.items.iter().map(|(_, n)| *n as usize).sum()
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The binary with a clean environment, pointed at the emulator.
    fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hf-media"));
        for var in CLEARED {
            cmd.env_remove(var);
        }
        cmd.env("HOME", self.home())
            .env("HF_HOME", self.home().join("hf"))
            .env("HF_ENDPOINT", &self.url)
            .env("HF_ROUTER_URL", &self.url)
            .env("HF_TOKEN", "hf_emulator")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// `hf-media batch INPUT -o OUT -m MODEL --width 64 --height 64 ARGS…`, its stdout and stderr in
    /// `{name}.out` and `{name}.err`.
    fn spawn(&self, name: &str, model: &str, args: &[&str]) -> tokio::process::Child {
        let stdout = std::fs::File::create(self.dir.path().join(format!("{name}.out"))).unwrap();
        let stderr = std::fs::File::create(self.dir.path().join(format!("{name}.err"))).unwrap();
        self.command()
            .arg("batch")
            .arg(&self.input)
            .arg("-o")
            .arg(&self.out)
            .args(["-m", model, "--width", "64", "--height", "64"])
            .args(args)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap()
    }

    fn stdout(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.out"))).unwrap_or_default()
    }

    fn stderr(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.err"))).unwrap_or_default()
    }

    /// The JSON event lines of a `--json` run (a killed run's last line may be cut: it is left out).
    fn events(&self, name: &str) -> Vec<Value> {
        self.stdout(name)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Waits for a run to end by itself (at most `limit`), and says how it went when it did not end well.
    async fn finish(&self, name: &str, mut child: tokio::process::Child, limit: Duration) -> ExitStatus {
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => {
                child.start_kill().unwrap();
                let _ = child.wait().await;
                panic!(
                    "run {name} did not end within {limit:?}\nstderr:\n{}\nstdout (end):\n{}",
                    self.stderr(name),
                    tail(&self.stdout(name), 4000)
                );
            }
        }
    }

    /// `hf-media batch status -o OUT --json [ARGS…]`.
    async fn status(&self, args: &[&str]) -> Value {
        let output = self
            .command()
            .args(["batch", "status", "-o"])
            .arg(&self.out)
            .arg("--json")
            .args(args)
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "batch status: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// Checks what the output holds once every item is done: `results.jsonl` has every item exactly
    /// once, each with its `n` media; exactly one media file per (item, index), each at its key; no
    /// temporary file left. Returns the results by id.
    fn check_complete(&self) -> BTreeMap<String, Value> {
        let text = std::fs::read_to_string(self.out.join("results.jsonl")).unwrap();
        let mut results: BTreeMap<String, Value> = BTreeMap::new();
        for line in text.lines() {
            let line: Value = serde_json::from_str(line).unwrap();
            let id = line["custom_id"].as_str().unwrap().to_owned();
            assert!(
                results.insert(id.clone(), line).is_none(),
                "{id} is twice in results.jsonl"
            );
        }
        let ids: BTreeSet<&str> = self.items.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(results.keys().map(String::as_str).collect::<BTreeSet<_>>(), ids);
        for (id, n) in &self.items {
            let result = &results[id];
            assert_eq!(result["error"], Value::Null, "{id}: {result}");
            assert_eq!(result["response"]["status_code"], 200, "{id}: {result}");
            let data = result["response"]["body"]["data"].as_array().unwrap();
            assert_eq!(data.len(), *n as usize, "{id}: {result}");
        }
        assert_eq!(std::fs::read_to_string(self.out.join("errors.jsonl")).unwrap(), "");

        // Media: exactly one file per (item, index), at the key derived from the item.
        let per_folder = items_per_folder(self.items.iter().map(|(_, n)| u64::from(*n)).max().unwrap_or(1));
        let expected: BTreeSet<String> = self
            .items
            .iter()
            .enumerate()
            .flat_map(|(position, (id, n))| {
                let key = media_key(id, position as u64, per_folder);
                (0..*n).map(move |i| format!("{key}-{i}"))
            })
            .collect();
        let (media, temporaries) = files(&self.out);
        assert!(temporaries.is_empty(), "temporary files left: {temporaries:?}");
        let mut stems: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for file in &media {
            let stem = match file.rsplit_once('.') {
                Some((stem, extension)) if !extension.contains('/') => stem.to_owned(),
                _ => file.clone(),
            };
            stems.entry(stem).or_default().push(file.clone());
        }
        let twice: Vec<&Vec<String>> = stems.values().filter(|files| files.len() > 1).collect();
        assert!(twice.is_empty(), "several files for one media: {twice:?}");
        let found: BTreeSet<String> = stems.into_keys().collect();
        let missing: Vec<&String> = expected.difference(&found).collect();
        let extra: Vec<&String> = found.difference(&expected).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "missing media {missing:?}, unexpected files {extra:?}"
        );
        let metadata = std::fs::read_to_string(self.out.join("metadata.jsonl")).unwrap();
        assert_eq!(metadata.lines().count(), self.generations());
        results
    }
}

/// The media files of an output folder (relative paths, the state and the result files left out) and the
/// temporary files (`.hf-media-*.part`) anywhere in it.
fn files(out: &Path) -> (Vec<String>, Vec<String>) {
    let (mut media, mut temporaries) = (Vec::new(), Vec::new());
    let mut folders = vec![out.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                if name != ".hf-media" {
                    folders.push(path);
                }
                continue;
            }
            let relative = path.strip_prefix(out).unwrap().to_string_lossy().replace('\\', "/");
            if name.starts_with(".hf-media-") && name.ends_with(".part") {
                temporaries.push(relative);
            } else if !["results.jsonl", "errors.jsonl", "metadata.jsonl"].contains(&relative.as_str()) {
                media.push(relative);
            }
        }
    }
    (media, temporaries)
}

fn tail(text: &str, chars: usize) -> &str {
    let start = text.len().saturating_sub(chars);
    let start = (start..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    &text[start..]
}

fn item_done_resumed(events: &[Value]) -> (usize, u64) {
    let done: Vec<&Value> = events.iter().filter(|e| e["event"] == "item_done").collect();
    let resumed = done.iter().map(|e| e["resumed_jobs"].as_u64().unwrap_or(0)).sum();
    (done.len(), resumed)
}

fn fal_behaviour(pending_polls: u32, latency_ms: u64) -> ProviderBehaviour {
    ProviderBehaviour::default()
        .with_pending_polls(pending_polls)
        .with_latency(Duration::from_millis(latency_ms))
}

/// Waits until `ready` holds (checked every 20 ms), at most `limit`.
async fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------------------
// 1. Killed at random moments, started again each time.

/// How long a job's ticket may take to reach the state after its submit was answered, at most, in the
/// crash test: a generation submitted again must have had its first answer less than this before a kill.
const TICKET_WINDOW: Duration = Duration::from_millis(1_500);

/// What the crash test found.
struct Crash {
    kills: u32,
    generations: usize,
    /// Generations submitted more than once, with the runs of their submits.
    paid_twice: Vec<(Generation, Vec<u32>)>,
    /// For each extra submit, how long before the kill of its run the earlier one was answered.
    windows: Vec<Duration>,
}

/// 200 items (250 generations), fal-ai jobs pending for three polls; the batch is killed (SIGKILL) at
/// random moments 150–900 ms after it starts, nine times, then run to its end. Checks everything but the
/// number of generations paid twice, and returns the figures.
async fn crash_and_resume() -> Crash {
    const ITEMS: usize = 200;
    const KILLS: u32 = 9;
    let started = Instant::now();
    let served = Served::start().await;
    served.emulator.set_behaviour(FAL, fal_behaviour(3, 30));
    let batch = Batch::new(&served, ITEMS);
    let seed = std::env::var("HF_MEDIA_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0001_u64);
    let mut rng = fastrand::Rng::with_seed(seed);
    let args = ["--json", "--concurrency", "48"];
    let mut kills = 0;
    let mut waits = Vec::new();
    let mut killed_at = Vec::new();
    for run in 0..KILLS {
        served.recorder.set_run(run);
        let name = format!("run{run}");
        let mut child = batch.spawn(&name, MODEL_ON_FAL, &args);
        let after = Duration::from_millis(rng.u64(150..=900));
        waits.push(after.as_millis());
        match tokio::time::timeout(after, child.wait()).await {
            Ok(status) => panic!(
                "run {run} ended by itself ({:?}) before its kill after {after:?}:\n{}",
                status.unwrap(),
                batch.stderr(&name)
            ),
            Err(_) => {
                child.start_kill().unwrap();
                killed_at.push(Instant::now());
                // Reaped: a zombie still has its /proc entry, and its items would wait for the lease.
                child.wait().await.unwrap();
                kills += 1;
            }
        }
    }
    served.recorder.set_run(KILLS);
    let child = batch.spawn("final", MODEL_ON_FAL, &args);
    let status = batch.finish("final", child, Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(0), "{}", batch.stderr("final"));
    batch.check_complete();

    let mut done_in_killed_runs = 0;
    let mut resumed_in_events = 0;
    for run in 0..=KILLS {
        let name = if run == KILLS {
            "final".to_owned()
        } else {
            format!("run{run}")
        };
        let (done, resumed) = item_done_resumed(&batch.events(&name));
        if run < KILLS {
            done_in_killed_runs += done;
        }
        resumed_in_events += resumed;
    }
    let submits = served.stat("fal-ai submit");
    let polls = served.stat("fal-ai poll");
    let (resumed_polls, resumed_jobs) = served.recorder.resumed_polls();
    let generations = batch.generations();
    let mut paid_twice = Vec::new();
    let mut windows = Vec::new();
    for (key, submits) in served.recorder.by_generation() {
        if submits.len() < 2 {
            continue;
        }
        let runs: Vec<u32> = submits.iter().map(|s| s.run).collect();
        // Each extra submit comes from a later run than the one before, which was killed soon after its
        // answer: never twice in one run, never for a job whose ticket had time to be stored.
        for pair in submits.windows(2) {
            assert!(
                pair[0].run < pair[1].run,
                "{key:?} was submitted twice in one run: {runs:?}"
            );
            windows.push(killed_at[pair[0].run as usize].saturating_duration_since(pair[0].at));
        }
        paid_twice.push((key, runs));
    }
    windows.sort();
    eprintln!(
        "crash and resume (seed {seed}): {kills} kills after {waits:?} ms; {ITEMS} items, {generations} generations; \
         fal submits {submits} ({} answered, the others cut off by a kill; {} generations paid more than once, {} \
         extra submits, their first answer {:?}..{:?} before a kill), polls {polls}, of which {resumed_polls} of {} jobs resumed from an earlier run; \
         item_done in killed runs {done_in_killed_runs}, resumed_jobs in events {resumed_in_events}; {:.1}s",
        served.recorder.accepted().len(),
        paid_twice.len(),
        windows.len(),
        windows.first().copied().unwrap_or_default(),
        windows.last().copied().unwrap_or_default(),
        resumed_jobs.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(kills >= 8);
    // Every generation was asked for; the answered submits are one per generation and one per extra submit.
    // The emulator also counts the submits a kill cut off before their answer (at most the items in flight).
    let answered = served.recorder.accepted().len();
    assert_eq!(served.recorder.by_generation().len(), generations);
    assert_eq!(answered, generations + windows.len());
    assert!(submits as usize >= answered && submits as usize - answered <= 48 * kills as usize);
    // Only a job whose ticket a kill beat to the state was asked for again.
    assert!(
        windows.last().is_none_or(|longest| *longest < TICKET_WINDOW),
        "a job answered {:?} before a kill was submitted again: {paid_twice:?}",
        windows.last()
    );
    // Resumed jobs were polled, not submitted again.
    assert!(!resumed_jobs.is_empty() && resumed_in_events > 0);
    Crash {
        kills,
        generations,
        paid_twice,
        windows,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_killed_again_and_again_finishes_every_item_once_and_resumes_its_stored_jobs() {
    let crash = crash_and_resume().await;
    assert!(crash.generations > 0 && crash.kills >= 8);
}

/// The contract's bound: one kill pays at most one job twice (the one between its submit's answer and
/// its ticket's write). It holds because a ticket write is a WAL commit without an fsync
/// (`synchronous = NORMAL`: durable against a kill); with FULL, the fsyncs of a burst of submits kept
/// many tickets unwritten for up to 260 ms and a kill found them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_pays_at_most_one_job_twice() {
    let crash = crash_and_resume().await;
    assert!(
        crash.windows.len() <= crash.kills as usize,
        "{} extra submits for {} kills: {:?}",
        crash.windows.len(),
        crash.kills,
        crash.paid_twice
    );
}

// ---------------------------------------------------------------------------------------------------------
// 2. Four workers on one SQLite state.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_on_one_sqlite_state_do_every_item_once() {
    const ITEMS: usize = 300;
    let started = Instant::now();
    let served = Served::start().await;
    served.emulator.set_behaviour(FAL, fal_behaviour(1, 20));
    let batch = Batch::new(&served, ITEMS);
    let workers: Vec<_> = (0..4)
        .map(|w| batch.spawn(&format!("worker{w}"), MODEL_ON_FAL, &["--json", "--concurrency", "16"]))
        .collect();
    let mut done_by_worker = Vec::new();
    for (w, child) in workers.into_iter().enumerate() {
        let name = format!("worker{w}");
        let status = batch.finish(&name, child, Duration::from_secs(60)).await;
        assert_eq!(status.code(), Some(0), "{name}: {}", batch.stderr(&name));
        done_by_worker.push(item_done_resumed(&batch.events(&name)).0);
    }
    batch.check_complete();
    let submits = served.stat("fal-ai submit");
    eprintln!(
        "four SQLite workers: {ITEMS} items, {} generations, done per worker {done_by_worker:?}, fal submits {submits}, \
         {:.1}s",
        batch.generations(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        done_by_worker.iter().sum::<usize>(),
        ITEMS,
        "an item was done by two workers"
    );
    assert_eq!(submits as usize, batch.generations());
    assert!(served.recorder.paid_twice().is_empty());
    let status = batch.status(&[]).await;
    assert_eq!(status["progress"]["done"], ITEMS as u64);
}

// ---------------------------------------------------------------------------------------------------------
// 3. Three workers on one PostgreSQL state, one killed midway.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_on_postgres_one_killed_midway_do_every_item_once() {
    const ITEMS: usize = 150;
    const CONCURRENCY: usize = 16;
    let started = Instant::now();
    let postgres = match hf_media_batch::testing::TempPostgres::start() {
        Ok(postgres) => postgres,
        Err(message) => panic!("{message}"),
    };
    let url = postgres.url();
    let served = Served::start().await;
    served.emulator.set_behaviour(FAL, fal_behaviour(2, 20));
    let batch = Batch::new(&served, ITEMS);
    let concurrency = CONCURRENCY.to_string();
    let args = ["--json", "--state", &url, "--lease", "2", "--concurrency", &concurrency];
    let mut workers: Vec<_> = (0..3)
        .map(|w| batch.spawn(&format!("worker{w}"), MODEL_ON_FAL, &args))
        .collect();
    // Kill the first worker once it has jobs in flight.
    let recorder = served.recorder.clone();
    wait_for("the first jobs", Duration::from_secs(30), || {
        recorder.accepted().len() >= 20
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let killed_at = Instant::now();
    let mut killed = workers.remove(0);
    killed.start_kill().unwrap();
    killed.wait().await.unwrap();
    for (w, child) in workers.into_iter().enumerate() {
        let name = format!("worker{}", w + 1);
        let status = batch.finish(&name, child, Duration::from_secs(60)).await;
        assert_eq!(status.code(), Some(0), "{name}: {}", batch.stderr(&name));
    }
    batch.check_complete();
    let done_killed = item_done_resumed(&batch.events("worker0")).0;
    let done_others: usize = (1..3)
        .map(|w| item_done_resumed(&batch.events(&format!("worker{w}"))).0)
        .sum();
    let (resumed_in_events, released): (u64, usize) = (1..3).fold((0, 0), |(r, l), w| {
        let events = batch.events(&format!("worker{w}"));
        (
            r + item_done_resumed(&events).1,
            l + events.iter().filter(|e| e["event"] == "item_released").count(),
        )
    });
    let submits = served.stat("fal-ai submit");
    let paid_twice = served.recorder.paid_twice();
    let generations = batch.generations();
    eprintln!(
        "three PostgreSQL workers, one killed: {ITEMS} items, {generations} generations; done by the killed worker \
         {done_killed}, by the others {done_others} (resumed jobs {resumed_in_events}, released {released}); fal \
         submits {submits} ({} answered), paid twice {}; {:.1}s",
        served.recorder.accepted().len(),
        paid_twice.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(done_killed + done_others, ITEMS, "an item was done twice");
    // Taken over: the killed worker's stored jobs were polled by the others, not submitted again; only a job
    // between its submit's answer and its ticket's write when the kill came can be paid twice, and the
    // killed worker had at most CONCURRENCY items in flight.
    for ((prompt, seed), _) in &paid_twice {
        let submits = served.recorder.by_generation()[&(prompt.clone(), *seed)].clone();
        assert!(
            submits[0].at <= killed_at,
            "{prompt} was submitted twice, the first time after the kill"
        );
    }
    assert!(paid_twice.len() <= CONCURRENCY, "{paid_twice:?}");
    let answered = served.recorder.accepted().len();
    let extra: usize = paid_twice.iter().map(|(_, times)| times - 1).sum();
    assert_eq!(answered, generations + extra);
    // The emulator also counts submits the kill cut off before their answer.
    assert!(submits as usize >= answered && submits as usize <= answered + CONCURRENCY);
    assert!(resumed_in_events > 0, "no stored job of the killed worker was resumed");
    let status = batch.status(&["--state", &url]).await;
    assert_eq!(status["progress"]["done"], ITEMS as u64);
    drop(postgres);
}

// ---------------------------------------------------------------------------------------------------------
// 4. A storm of 429s.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_429s_slows_the_batch_down_and_fails_nothing() {
    const ITEMS: usize = 60;
    let started = Instant::now();
    let served = Served::start().await;
    // Most submits answer 429 with a Retry-After of 1 s, until 10 such answers were given …
    let with_retry_after = FaultRule {
        probability: Some(0.8),
        times: Some(10),
        ..FaultRule::always(Fault::RateLimited { retry_after_secs: 1 })
    };
    // (and `on` keeps the rule on submits)
    let with_retry_after = with_retry_after.on(FaultTarget::Submit);
    served
        .emulator
        .set_behaviour(FAL, fal_behaviour(0, 10).with_fault(with_retry_after));
    let batch = Batch::new(&served, ITEMS);
    let child = batch.spawn("storm", MODEL_ON_FAL, &["--json", "--concurrency", "8"]);
    // … then the next submits answer 429 without one.
    let recorder = served.recorder.clone();
    let limited = |recorder: &Recorder| recorder.submits().iter().filter(|s| s.status == 429).count();
    wait_for("10 answers of 429", Duration::from_secs(40), || {
        limited(&recorder) >= 10
    })
    .await;
    // … and, once a few jobs went through (successes end the run of 429s), two without one.
    let accepted = recorder.accepted().len();
    wait_for("jobs after the storm", Duration::from_secs(40), || {
        recorder.accepted().len() >= accepted + 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    served.emulator.set_behaviour(
        FAL,
        fal_behaviour(0, 10).with_fault(FaultRule::times(
            Fault::Status {
                status: 429,
                body: None,
            },
            2,
        )),
    );
    let status = batch.finish("storm", child, Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(0), "{}", batch.stderr("storm"));
    batch.check_complete();
    let events = batch.events("storm");
    let paused: Vec<&Value> = events.iter().filter(|e| e["event"] == "provider_paused").collect();
    let limits: Vec<u64> = paused.iter().map(|e| e["limit"].as_u64().unwrap()).collect();
    let pauses: Vec<u64> = paused.iter().map(|e| e["pause_ms"].as_u64().unwrap()).collect();
    let failed = events.iter().filter(|e| e["event"] == "item_failed").count();
    let released = events.iter().filter(|e| e["event"] == "item_released").count();
    let rate_limited = limited(&served.recorder);
    eprintln!(
        "429 storm: {ITEMS} items, {rate_limited} answers of 429, {} provider_paused events (limits {limits:?}, pauses \
         {pauses:?} ms), {released} items released, fal submits {}; {:.1}s",
        paused.len(),
        served.stat("fal-ai submit"),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(failed, 0);
    assert!(
        rate_limited >= 12,
        "the storm did not happen: {rate_limited} answers of 429"
    );
    assert!(!paused.is_empty(), "no provider_paused event");
    assert!(
        limits.iter().any(|limit| *limit < 8),
        "the limit never went down: {limits:?}"
    );
    assert!(
        pauses.contains(&1_000),
        "no pause for the Retry-After of 1 s: {pauses:?}"
    );
    assert!(
        pauses.iter().any(|p| *p >= 2_000),
        "no backoff pause for a 429 without Retry-After: {pauses:?}"
    );
    assert!(served.recorder.paid_twice().is_empty());
}

// ---------------------------------------------------------------------------------------------------------
// 5. Out of credits everywhere, then topped up.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_credits_everywhere_stops_with_items_pending_and_resumes_after_a_top_up() {
    const ITEMS: usize = 20;
    let started = Instant::now();
    let served = Served::start().await;
    for provider in PROVIDERS {
        served.emulator.set_behaviour(
            provider,
            ProviderBehaviour::default().with_fault(
                FaultRule::always(Fault::Status {
                    status: 402,
                    body: None,
                })
                .on(FaultTarget::Any),
            ),
        );
    }
    let batch = Batch::new(&served, ITEMS);
    let child = batch.spawn("broke", MODEL, &["--concurrency", "4"]);
    let status = batch.finish("broke", child, Duration::from_secs(30)).await;
    let stderr = batch.stderr("broke");
    assert_eq!(status.code(), Some(3), "{stderr}");
    let asked: Vec<&str> = PROVIDERS
        .iter()
        .copied()
        .filter(|p| served.stat(&format!("{p} submit")) > 0)
        .collect();
    let calls: BTreeMap<&str, u64> = asked
        .iter()
        .map(|p| (*p, served.stat(&format!("{p} submit"))))
        .collect();
    assert!(asked.len() >= 2 && asked.contains(&FAL), "{calls:?}");
    let stopped = stderr
        .lines()
        .find(|l| l.contains("out of credits on"))
        .unwrap_or_else(|| panic!("no out-of-credits summary:\n{stderr}"));
    for provider in &asked {
        assert!(stopped.contains(provider), "{provider} is not named: {stopped}");
    }
    let state = batch.status(&[]).await;
    eprintln!(
        "402 everywhere: exit 3, calls {calls:?}, summary `{stopped}`, status {}",
        state["progress"]
    );
    assert_eq!(state["progress"]["pending"], ITEMS as u64, "{state}");
    assert_eq!(state["progress"]["failed"], 0);
    assert_eq!(state["progress"]["running"], 0);
    // Held back for the run: a provider out of credits is not asked again for every item.
    for (provider, count) in &calls {
        assert!(*count <= 4, "{provider} was asked {count} times after its 402");
    }

    // Topped up: the same command carries on.
    for provider in PROVIDERS {
        served.emulator.set_behaviour(provider, ProviderBehaviour::default());
    }
    let child = batch.spawn("topped-up", MODEL, &["--json", "--concurrency", "10"]);
    let status = batch.finish("topped-up", child, Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", batch.stderr("topped-up"));
    batch.check_complete();
    let state = batch.status(&[]).await;
    assert_eq!(state["progress"]["done"], ITEMS as u64, "{state}");
    eprintln!("402 then topped up: {:.1}s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------------------
// 6. Ctrl-C.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_releases_running_items_and_the_next_run_resumes_their_jobs() {
    const ITEMS: usize = 24;
    const CONCURRENCY: usize = 8;
    let started = Instant::now();
    let served = Served::start().await;
    // Slow jobs: none ends within the grace.
    served.emulator.set_behaviour(FAL, fal_behaviour(2, 20_000));
    let batch = Batch::new(&served, ITEMS);
    served.recorder.set_run(0);
    let concurrency = CONCURRENCY.to_string();
    let mut child = batch.spawn(
        "interrupted",
        MODEL_ON_FAL,
        &["--json", "--concurrency", &concurrency, "--grace", "0.5"],
    );
    // Every running item's job accepted and polled once (its ticket is stored by then).
    let recorder = served.recorder.clone();
    wait_for("the first jobs polled", Duration::from_secs(30), || {
        let log = recorder.log();
        let jobs: BTreeSet<&str> = log.submits.iter().filter_map(|s| s.job.as_deref()).collect();
        let polled: BTreeSet<&str> = log.polls.iter().map(|(job, _)| job.as_str()).collect();
        jobs.len() >= CONCURRENCY && jobs.is_subset(&polled)
    })
    .await;
    let submitted_before = served.recorder.accepted().len();
    let pid = child.id().unwrap();
    let interrupted = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the batch did not stop within 10 s of Ctrl-C")
        .unwrap();
    let stop_took = interrupted.elapsed();
    assert_eq!(status.code(), Some(130), "{}", batch.stderr("interrupted"));
    assert!(stop_took < Duration::from_secs(4), "stopping took {stop_took:?}");
    let events = batch.events("interrupted");
    assert!(events.iter().any(|e| e["event"] == "stopping"), "no stopping event");
    let state = batch.status(&[]).await;
    assert_eq!(state["progress"]["running"], 0, "{state}");
    assert_eq!(state["progress"]["failed"], 0, "{state}");
    assert_eq!(
        state["progress"]["pending"].as_u64().unwrap() + state["progress"]["done"].as_u64().unwrap(),
        ITEMS as u64
    );
    let (_, temporaries) = files(&batch.out);
    assert!(temporaries.is_empty(), "{temporaries:?}");

    // The next run polls the stored jobs and submits only the rest.
    served.emulator.set_behaviour(FAL, fal_behaviour(2, 20));
    served.recorder.set_run(1);
    let child = batch.spawn("next", MODEL_ON_FAL, &["--json", "--concurrency", &concurrency]);
    let status = batch.finish("next", child, Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", batch.stderr("next"));
    batch.check_complete();
    let (_, resumed_in_events) = item_done_resumed(&batch.events("next"));
    let (resumed_polls, resumed_jobs) = served.recorder.resumed_polls();
    let submits = served.stat("fal-ai submit");
    eprintln!(
        "Ctrl-C: stopped in {stop_took:?} with {submitted_before} jobs accepted; next run resumed {} jobs ({resumed_polls} \
         polls, resumed_jobs in events {resumed_in_events}); fal submits {submits} for {} generations; {:.1}s",
        resumed_jobs.len(),
        batch.generations(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        submits as usize,
        batch.generations(),
        "a job was submitted again or started while stopping (answered: {}, paid twice: {:?})",
        served.recorder.accepted().len(),
        served.recorder.paid_twice()
    );
    assert!(served.recorder.paid_twice().is_empty());
    assert_eq!(resumed_jobs.len(), submitted_before);
    assert_eq!(resumed_in_events as usize, submitted_before);
}
