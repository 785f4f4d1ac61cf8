//! `cargo xtask fuzz [--cases N] [--include-ignored]`: the property tests of every parser of untrusted
//! input (provider answers, the Hub mapping, prompts and parameters, sniffing and file names), run in
//! release mode with many more cases than `cargo test` runs (`PROPTEST_CASES`, default 20 000).
//!
//! `cargo fuzz` needs a nightly toolchain; these `proptest` properties run on stable and in CI.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

/// The default number of cases per property.
const DEFAULT_CASES: u64 = 20_000;
/// The crates that have a `tests/properties.rs`.
const CRATES: [&str; 4] = [
    "hf-media-provider",
    "hf-media-mapping",
    "hf-media-prompt",
    "hf-media-sink",
];

/// Runs the properties; `args` are the arguments after `fuzz`.
pub fn run(cargo: &str, args: &[String]) -> ExitCode {
    let mut cases = DEFAULT_CASES;
    let mut include_ignored = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cases" => match args.next().and_then(|n| n.parse().ok()).filter(|n| *n > 0) {
                Some(n) => cases = n,
                None => return usage("`--cases` needs a positive number"),
            },
            "--include-ignored" => include_ignored = true,
            other => return usage(&format!("unknown argument `{other}`")),
        }
    }
    let mut command = Command::new(cargo);
    command.args(["test", "--release", "--no-fail-fast"]);
    for name in CRATES {
        command.args(["-p", name]);
    }
    // The provider properties reach the per-provider parsers through the `testing` feature (the
    // sink's through its own), as CI's `--all-features` does.
    command.args(["--all-features", "--test", "properties"]);
    if include_ignored {
        command.args(["--", "--include-ignored"]);
    }
    command.env("PROPTEST_CASES", cases.to_string()).stdout(Stdio::piped());
    eprintln!(
        "$ PROPTEST_CASES={cases} cargo test --release --no-fail-fast -p {} --all-features --test properties",
        CRATES.join(" -p ")
    );
    let started = Instant::now();
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("could not run cargo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            if let Some(result) = line.strip_prefix("test result: ") {
                passed += count(result, "passed");
                failed += count(result, "failed");
                ignored += count(result, "ignored");
            }
        }
    }
    let success = child.wait().is_ok_and(|status| status.success());
    println!(
        "fuzz: {} — {passed} properties passed, {failed} failed, {ignored} ignored (known bugs), {cases} cases each, {} crates, {:.1}s",
        if success { "ok" } else { "FAILED" },
        CRATES.len(),
        started.elapsed().as_secs_f64()
    );
    if success { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// `N` in `… N word; …` of a libtest summary.
fn count(summary: &str, word: &str) -> u64 {
    summary
        .split(';')
        .filter_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .split_once(' ')
        })
        .find(|(_, w)| *w == word)
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(0)
}

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "{problem}\nusage: cargo xtask fuzz [--cases N] [--include-ignored]\n\n  \
         --cases N            cases per property (default {DEFAULT_CASES})\n  \
         --include-ignored    also run the properties kept `#[ignore]`d for known bugs"
    );
    ExitCode::from(2)
}
