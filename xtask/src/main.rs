//! Project automation, run as `cargo xtask <task>`.
//!
//! - `cargo xtask ci`: what CI runs: format check, clippy with warnings denied, and every test.

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
        _ => {
            eprintln!(
                "usage: cargo xtask ci\n\n  ci   format check, clippy (-D warnings) and every test, as CI runs them"
            );
            ExitCode::from(2)
        }
    }
}
