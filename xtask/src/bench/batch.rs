//! The batch scenarios (issue 11), against one `hf-media emulator` whose bench router answers hf-inference
//! at once with a PNG of about `batch_image_bytes` (`/_emulator/bench/{N}`):
//!
//! 1. **Throughput**: `hf-media batch prompts.jsonl -o DIR --concurrency 64 --json` over `batch_items`
//!    lines (default SQLite state, release binary): wall time, items per second, client CPU per item
//!    (user + system of the process / items) and peak RSS, vs one `curl --parallel --parallel-max 64 -K
//!    config` process making the same HTTP exchange per file (`POST` of the same JSON body to the same
//!    route, the answer saved to its own file).
//! 2. **Resume scan**: a state of `resume_items` items, all done (made by `examples/batch_state.rs`
//!    through the library, the media files hard links to one PNG), then the same command again: it checks
//!    the input, opens the state, finds nothing to do and rewrites the result files. Median of 3.
//! 3. **Memory is flat in the batch size**: peak RSS of the throughput run, of the resume of the big input,
//!    and of a real run of the big input (`batch_big_run`).
//! 4. **Python baseline**: `bench/python_batch.py` (huggingface_hub's `InferenceClient.text_to_image` +
//!    `Image.save` on a `ThreadPoolExecutor(64)`, no state) over the same input.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use super::{
    Context, ENDPOINT_VARS, EmulatorProcess, MIB, Row, Sizes, TOKEN, Usage, events, fresh_dir, measure, median, mib,
    python_venv, secs, verdict,
};

/// The model every line names (the emulator's catalogue serves it by hf-inference only).
const MODEL: &str = "stabilityai/sdxl-turbo";
/// The provider the lines ask for.
const PROVIDER: &str = "hf-inference";

/// Writes `n` flat JSONL rows, each with its prompt and model (so that the command needs no `-m` and a
/// resume is the same command).
fn write_prompts(path: &Path, n: u64) -> Result<(), String> {
    let mut text = String::with_capacity(usize::try_from(n).unwrap_or(0) * 80);
    for i in 0..n {
        let _ = writeln!(
            text,
            "{}",
            json!({ "prompt": format!("bench item {i}"), "model": format!("{MODEL}:{PROVIDER}") })
        );
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `hf-media batch INPUT -o OUT --json` against the emulator, with `extra` flags.
fn batch(ctx: &Context, hub: &str, router: &str, input: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(&ctx.bin);
    for var in ENDPOINT_VARS
        .iter()
        .copied()
        .chain(ctx.key_vars.iter().map(String::as_str))
        .chain(["HF_MEDIA_BATCH_STATE", "RUST_LOG"])
    {
        command.env_remove(var);
    }
    command
        .env("HF_TOKEN", TOKEN)
        .env("HF_ENDPOINT", hub)
        .arg("batch")
        .arg(input)
        .arg("-o")
        .arg(out)
        .args(["--json", "--router-url", router])
        .args(extra);
    command
}

/// What a batch run printed: its `started` and `finished` events, and how many `item_done` events.
struct BatchRun {
    usage: Usage,
    started: Value,
    finished: Value,
    items_done: u64,
}

/// Runs a batch and checks that it ended with every one of `total` items done.
fn run_batch(mut command: Command, ctx: &Context, total: u64, what: &str) -> Result<BatchRun, String> {
    let (usage, stdout) = measure(&mut command, &ctx.log)?;
    let events = events(&stdout);
    let find = |name: &str| events.iter().rev().find(|e| e["event"] == name).cloned();
    let (Some(started), Some(finished)) = (find("started"), find("finished")) else {
        let tail: String = stdout.lines().rev().take(5).collect::<Vec<_>>().join("\n");
        return Err(format!(
            "{what}: no started/finished event (exit ok: {}); see {}; last lines:\n{tail}",
            usage.success,
            ctx.log.display()
        ));
    };
    let done = finished["progress"]["done"].as_u64();
    if !usage.success || done != Some(total) || finished["progress"]["failed"].as_u64() != Some(0) {
        return Err(format!(
            "{what}: {done:?} of {total} items done (exit ok: {}): {finished}",
            usage.success
        ));
    }
    let items_done = events.iter().filter(|e| e["event"] == "item_done").count() as u64;
    Ok(BatchRun {
        usage,
        started,
        finished,
        items_done,
    })
}

/// The curl config that makes the batch's HTTP exchange for each of `n` items: `POST` of the same JSON
/// body (`{"inputs": prompt, "parameters": {"seed": …}}`) to the same route, the answer saved to a file
/// in sub-folders of 10,000 like the batch's. Transfers are separated by `next`, so that each has its own
/// body and output.
fn curl_config(route: &str, out: &Path, n: u64) -> String {
    let mut config = String::with_capacity(usize::try_from(n).unwrap_or(0) * 400);
    for i in 0..n {
        if i > 0 {
            config.push_str("next\n");
        }
        let body = json!({ "inputs": format!("bench item {i}"), "parameters": { "seed": i } }).to_string();
        let file = out
            .join(format!("{:05}", i / 10_000))
            .join(format!("line-{:06}-0.png", i + 1));
        let _ = writeln!(
            config,
            "url = {}\noutput = {}\nheader = {}\nheader = {}\ndata = {}\ncreate-dirs\nfail",
            quote(route),
            quote(&file.display().to_string()),
            quote(&format!("Authorization: Bearer {TOKEN}")),
            quote("Content-Type: application/json"),
            quote(&body)
        );
    }
    config
}

/// A curl config string: double-quoted, `\` and `"` escaped.
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Files under `dir` (recursively) and their total size.
fn files_under(dir: &Path) -> (u64, u64) {
    let (mut count, mut bytes) = (0, 0);
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => folders.push(entry.path()),
                Ok(kind) if kind.is_file() => {
                    count += 1;
                    bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                }
                _ => {}
            }
        }
    }
    (count, bytes)
}

/// The media files of a batch output (the result files and the state left out).
fn media_under(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|k| k.is_dir()) && e.file_name() != ".hf-media")
                .map(|e| files_under(&e.path()).0)
                .sum()
        })
        .unwrap_or(0)
}

fn per_item_ms(cpu: Duration, items: u64) -> f64 {
    cpu.as_secs_f64() * 1e3 / items.max(1) as f64
}

fn rate(items: u64, wall: Duration) -> f64 {
    items as f64 / wall.as_secs_f64().max(1e-9)
}

/// The batch scenarios; `maker` is the state maker's binary.
pub(super) fn scenarios(ctx: &Context, sizes: Sizes, smoke: bool, maker: &Path) -> Result<Vec<Row>, String> {
    let emulator = EmulatorProcess::start(&ctx.bin, None)?;
    let router = format!("{}/_emulator/bench/{}", emulator.url, sizes.batch_image_bytes);
    let route = format!("{router}/{PROVIDER}/models/{MODEL}");
    let concurrency = sizes.batch_concurrency.to_string();
    let n = sizes.batch_items;
    let big = sizes.resume_items;
    let dir = ctx.dir.join("batch");
    fresh_dir(&dir)?;
    let prompts = dir.join("prompts.jsonl");
    write_prompts(&prompts, n)?;
    let big_prompts = dir.join("prompts-big.jsonl");
    write_prompts(&big_prompts, big)?;
    let out = dir.join("out");

    // Untimed: the emulator renders and caches its picture; the binary and the page cache warm up.
    let warm = dir.join("warm.jsonl");
    write_prompts(&warm, 64)?;
    fresh_dir(&out)?;
    run_batch(
        batch(
            ctx,
            &emulator.url,
            &router,
            &warm,
            &out,
            &["--concurrency", &concurrency],
        ),
        ctx,
        64,
        "warm-up batch",
    )?;

    // 1. Throughput.
    eprintln!("  batch: {n} items, concurrency {concurrency}");
    fresh_dir(&out)?;
    let ours = run_batch(
        batch(
            ctx,
            &emulator.url,
            &router,
            &prompts,
            &out,
            &["--concurrency", &concurrency],
        ),
        ctx,
        n,
        "the batch",
    )?;
    let saved = media_under(&out);
    if saved != n || ours.items_done != n {
        return Err(format!(
            "the batch saved {saved} media and reported {} items done, not {n}",
            ours.items_done
        ));
    }
    let _ = std::fs::remove_dir_all(&out);
    let in_process = Duration::from_millis(ours.finished["elapsed_ms"].as_u64().unwrap_or(0));

    eprintln!("  batch: curl --parallel --parallel-max {concurrency}, {n} files");
    let curl_out = dir.join("curl");
    fresh_dir(&curl_out)?;
    let config = dir.join("curl.config");
    std::fs::write(&config, curl_config(&route, &curl_out, n))
        .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    let (curl, _) = measure(
        Command::new("curl")
            .args([
                "--silent",
                "--show-error",
                "--parallel",
                "--parallel-max",
                &concurrency,
                "--config",
            ])
            .arg(&config),
        &ctx.log,
    )?;
    let (curl_files, curl_bytes) = files_under(&curl_out);
    if !curl.success || curl_files != n {
        return Err(format!(
            "curl saved {curl_files} files instead of {n} (see {})",
            ctx.log.display()
        ));
    }
    let _ = std::fs::remove_dir_all(&curl_out);

    // 4. Python baseline.
    let python = match python_venv(ctx) {
        Some(python) => Some(python),
        None if smoke => {
            eprintln!("  batch: no Python venv (target/bench-venv); the Python baseline is skipped");
            None
        }
        None => return Err("could not make the Python venv for the Python baseline".into()),
    };
    let py = match &python {
        None => None,
        Some(python) => {
            eprintln!("  batch: Python baseline, {n} items, {concurrency} threads");
            let py_out = dir.join("python");
            fresh_dir(&py_out)?;
            let (usage, stdout) = measure(
                Command::new(python)
                    .arg(ctx.root.join("bench").join("python_batch.py"))
                    .arg(&prompts)
                    .args(["--hub", &emulator.url, "--router", &router, "--model", MODEL])
                    .args(["--concurrency", &concurrency])
                    .arg("--out")
                    .arg(&py_out),
                &ctx.log,
            )?;
            let _ = std::fs::remove_dir_all(&py_out);
            let answer: Value = serde_json::from_str(stdout.trim())
                .map_err(|e| format!("the Python baseline printed {stdout:?}: {e}"))?;
            if !usage.success || answer["failures"].as_u64() != Some(0) || answer["items"].as_u64() != Some(n) {
                return Err(format!("the Python baseline failed: {stdout}"));
            }
            let wall = Duration::from_secs_f64(answer["wall_s"].as_f64().unwrap_or(f64::NAN).max(0.0));
            let cpu = Duration::from_secs_f64(answer["cpu_s"].as_f64().unwrap_or(f64::NAN).max(0.0));
            Some((cpu, wall, usage))
        }
    };

    // 3. A real run of the big input (its RSS), when the sizes ask for it.
    let big_run = if sizes.batch_big_run {
        eprintln!("  batch: {big} items, concurrency {concurrency} (memory)");
        fresh_dir(&out)?;
        let run = run_batch(
            batch(
                ctx,
                &emulator.url,
                &router,
                &big_prompts,
                &out,
                &["--concurrency", &concurrency],
            ),
            ctx,
            big,
            "the big batch",
        )?;
        let _ = std::fs::remove_dir_all(&out);
        Some(run)
    } else {
        None
    };

    // 2. Resume scan of a finished big batch.
    eprintln!("  batch: making a finished state of {big} items (examples/batch_state.rs)");
    fresh_dir(&out)?;
    let png = dir.join("media.png");
    let fetched = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {TOKEN}"),
            "-d",
            "{}",
            "-o",
        ])
        .arg(&png)
        .arg(&route)
        .status()
        .is_ok_and(|s| s.success());
    if !fetched {
        return Err(format!("cannot fetch a bench PNG from {route}"));
    }
    let (made, _) = measure(Command::new(maker).arg(&big_prompts).arg(&out).arg(&png), &ctx.log)?;
    if !made.success {
        return Err(format!("the state maker failed (see {})", ctx.log.display()));
    }
    eprintln!(
        "  batch: resume scan of {big} done items (state made in {})",
        secs(made.wall)
    );
    let mut resumes = Vec::new();
    for _ in 0..sizes.resume_reps {
        let run = run_batch(
            batch(ctx, &emulator.url, &router, &big_prompts, &out, &[]),
            ctx,
            big,
            "the resume",
        )?;
        if run.started["resumed"] != true || run.started["finished"].as_u64() != Some(big) || run.items_done != 0 {
            return Err(format!("the resume did not find {big} finished items: {}", run.started));
        }
        if run.finished["results"].as_u64() != Some(big) || run.finished["media"].as_u64() != Some(big) {
            return Err(format!("the resume did not rewrite {big} results: {}", run.finished));
        }
        resumes.push(run);
    }
    let _ = std::fs::remove_dir_all(&out);
    let resume_wall = median(resumes.iter().map(|r| r.usage.wall).collect());
    let resume_in_process = median(
        resumes
            .iter()
            .map(|r| Duration::from_millis(r.finished["elapsed_ms"].as_u64().unwrap_or(0)))
            .collect(),
    );
    let resume_rss = resumes.iter().map(|r| r.usage.max_rss).max().unwrap_or(0);
    let resume_cpu = median(resumes.iter().map(|r| r.usage.cpu).collect());

    let _ = std::fs::remove_dir_all(&dir);

    // The rows.
    let label = format!(
        "batch of {n} items, {} PNG, concurrency {concurrency}",
        super::size_label(sizes.batch_image_bytes)
    );
    let items_per_s = rate(n, ours.usage.wall);
    let cpu_item = per_item_ms(ours.usage.cpu, n);
    let curl_item = per_item_ms(curl.cpu, n);
    let cpu_ratio = cpu_item / curl_item;
    let mut rows = vec![
        Row::new(
            format!("{label}: wall time of the process"),
            secs(ours.usage.wall),
            format!("`curl --parallel`: {}", secs(curl.wall)),
            format!(
                "{:.2}× (in-process `finished.elapsed_ms`: {})",
                ours.usage.wall.as_secs_f64() / curl.wall.as_secs_f64(),
                secs(in_process)
            ),
        ),
        Row::new(
            format!("{label}: items per second"),
            format!("{items_per_s:.0}/s"),
            format!("`curl --parallel`: {:.0}/s", rate(n, curl.wall)),
            format!("target ≥ 1000/s: {}", verdict(items_per_s >= 1000.0)),
        ),
        Row::new(
            format!("{label}: client CPU per item (user + system)"),
            format!("{cpu_item:.2} ms"),
            format!(
                "`curl --parallel`: {curl_item:.2} ms per file ({} saved)",
                mib(curl_bytes)
            ),
            format!("{cpu_ratio:.2}× (target ≤ 1.5×: {})", verdict(cpu_ratio <= 1.5)),
        ),
    ];
    match py {
        Some((cpu, wall, usage)) => {
            let py_item = per_item_ms(cpu, n);
            let py_rate = rate(n, wall);
            rows.push(Row::new(
                format!("{label}: vs Python, CPU per item"),
                format!("{cpu_item:.2} ms"),
                format!(
                    "Python `InferenceClient` + threads: {py_item:.2} ms (whole process: {:.2} ms)",
                    per_item_ms(usage.cpu, n)
                ),
                format!("{:.1}× less", py_item / cpu_item),
            ));
            rows.push(Row::new(
                format!("{label}: vs Python, items per second"),
                format!("{items_per_s:.0}/s"),
                format!("Python `InferenceClient` + threads: {py_rate:.0}/s"),
                format!("{:.1}×", items_per_s / py_rate),
            ));
        }
        None => rows.push(Row::new(
            format!("{label}: vs Python"),
            format!("{cpu_item:.2} ms, {items_per_s:.0}/s"),
            "skipped (no Python venv)".into(),
            "n/a".into(),
        )),
    }
    rows.push(Row::new(
        format!(
            "resume scan: {big} items all done, same command again (median of {})",
            sizes.resume_reps
        ),
        secs(resume_wall),
        format!(
            "in-process `finished.elapsed_ms`: {}; CPU {}",
            secs(resume_in_process),
            secs(resume_cpu)
        ),
        format!("target < 2 s: {}", verdict(resume_wall < Duration::from_secs(2))),
    ));
    let mut memory = format!(
        "{n}-item run: {}; {big}-line resume: {}",
        mib(ours.usage.max_rss),
        mib(resume_rss)
    );
    let mut peak = ours.usage.max_rss.max(resume_rss);
    if let Some(run) = &big_run {
        let _ = write!(
            memory,
            "; {big}-item run: {} ({:.0}/s, {:.2} ms CPU per item)",
            mib(run.usage.max_rss),
            rate(big, run.usage.wall),
            per_item_ms(run.usage.cpu, big)
        );
        peak = peak.max(run.usage.max_rss);
    }
    let flat = peak as f64 / ours.usage.max_rss.max(1) as f64;
    rows.push(Row::new(
        "batch: peak RSS by batch size".to_owned(),
        memory,
        format!("`curl --parallel` ({n} files): {}", mib(curl.max_rss)),
        format!(
            "largest / {n}-item run: {flat:.2}× ({})",
            if flat <= 1.5 && peak < 256 * MIB {
                "flat"
            } else {
                "**grows**"
            }
        ),
    ));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_configs_separate_transfers_and_quote() {
        let config = curl_config("http://h/r", Path::new("/o"), 2);
        assert_eq!(config.matches("\nnext\n").count(), 1);
        assert!(config.starts_with("url = \"http://h/r\"\noutput = \"/o/00000/line-000001-0.png\"\n"));
        assert!(
            config.contains("data = \"{\\\"inputs\\\":\\\"bench item 1\\\",\\\"parameters\\\":{\\\"seed\\\":1}}\"")
        );
        assert_eq!(quote("a\\b\"c"), "\"a\\\\b\\\"c\"");
    }
}
