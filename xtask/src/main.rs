//! Project automation, run as `cargo xtask <task>`.
//!
//! - `cargo xtask ci`: what CI runs: format check, clippy with warnings denied, and every test.
//! - `cargo xtask bench [batch|serve] [--smoke]`: the performance scenarios (big video, parallel,
//!   per-generation overhead, batch, server; `batch`/`serve`: those only) side by side with reference
//!   clients; prints a Markdown table (see `docs/PERFORMANCE.md`).
//! - `cargo xtask fuzz [--cases N]`: the property tests of every parser of untrusted input, with many cases.

mod bench;
mod fuzz;

use std::process::{Command, ExitCode};

fn run(args: &[&str]) -> bool {
    eprintln!("$ cargo {}", args.join(" "));
    match Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .status()
    {
        Ok(status) => status.success(),
        Err(e) => {
            eprintln!("could not run cargo: {e}");
            false
        }
    }
}

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        Some("ci") => {
            let steps: [&[&str]; 3] = [
                &["fmt", "--all", "--", "--check"],
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--all-features",
                    "--",
                    "-D",
                    "warnings",
                ],
                &["test", "--workspace", "--all-features"],
            ];
            for step in steps {
                if !run(step) {
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Some("bench") => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            let smoke = args.iter().any(|a| a == "--smoke");
            let selection = match args.iter().find(|a| !a.starts_with("--")).map(String::as_str) {
                None => bench::Selection::All,
                Some("batch") => bench::Selection::Batch,
                Some("serve") => bench::Selection::Serve,
                Some(other) => {
                    eprintln!("unknown bench selection `{other}`: cargo xtask bench [batch|serve] [--smoke]");
                    return ExitCode::from(2);
                }
            };
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .to_owned();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            match bench::run(&root, &cargo, smoke, selection) {
                Ok(table) => {
                    println!("{table}");
                    ExitCode::SUCCESS
                }
                Err(message) => {
                    eprintln!("bench failed: {message}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("fuzz") => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            fuzz::run(&std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()), &args)
        }
        Some("soak") => {
            // Thousands of generations through the emulator with a few percent of faults (tests/tests/soak.rs).
            let generations = std::env::args()
                .skip(2)
                .find_map(|a| a.strip_prefix("--generations=").map(str::to_owned))
                .unwrap_or_else(|| "5000".into());
            eprintln!(
                "$ SOAK_GENERATIONS={generations} cargo test --release -p hf-media-tests --test soak -- --ignored --nocapture"
            );
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args([
                    "test",
                    "--release",
                    "-p",
                    "hf-media-tests",
                    "--test",
                    "soak",
                    "--",
                    "--ignored",
                    "--nocapture",
                ])
                .env("SOAK_GENERATIONS", generations)
                .status();
            match status {
                Ok(status) if status.success() => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("could not run cargo: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!(
                "usage: cargo xtask ci | bench [batch|serve] [--smoke] | fuzz [--cases N] | soak [--generations=N]\n\n  \
                 ci      format check, clippy (-D warnings) and every test, as CI runs them\n  \
                 bench   the performance scenarios against the emulator, with reference clients (--smoke: tiny sizes;\n          `bench batch`, `bench serve`: those scenarios only)\n  \
                 fuzz    the property tests of every parser with many cases (default 20000)\n  \
                 soak    thousands of generations through the emulator with injected faults (default 5000)"
            );
            ExitCode::from(2)
        }
    }
}
