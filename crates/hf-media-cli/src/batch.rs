//! `hf-media batch` and `hf-media batch status`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use hf_media::{GenerateRequest, MediaGeneratorBuilder};
use hf_media_batch::runner::{
    BatchControl, BatchEvent, BatchJob, BatchOutput, BatchSummary, Progress, ProviderRate, Stopped, batch_status,
    run_batch,
};
use hf_media_batch::state::StateLocation;
use hf_media_batch::{Format, ReadOptions};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;

use crate::cli::{BatchArgs, BatchCommand, InputFormat};
use crate::{
    Connected, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED, build_error, connect, generation_params, usage_error,
};

/// The exit code of a batch stopped because every provider it can use is out of credits: the same
/// command resumes it after a top-up.
pub const EXIT_OUT_OF_CREDITS: u8 = 3;

fn seconds(flag: &str, value: f64) -> Result<Duration, String> {
    match Duration::try_from_secs_f64(value) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(format!("{flag} must be a positive number of seconds")),
    }
}

/// `hf-media batch …`.
pub async fn run(args: BatchArgs) -> ExitCode {
    if let Some(BatchCommand::Status { output, state, json }) = &args.command {
        return status(output, state.as_deref(), *json).await;
    }
    let (Some(input), Some(output)) = (args.input.clone(), args.output.clone()) else {
        return usage_error("give the input file and -o OUTPUT: hf-media batch prompts.jsonl -o dataset/");
    };
    let job = match job(&args, input, &output) {
        Ok(job) => job,
        Err(message) => return usage_error(message),
    };
    let Connected {
        mut config,
        emulator: _emulator,
    } = match connect(&args.connect).await {
        Ok(connected) => connected,
        Err(message) => return usage_error(message),
    };
    config.sink.max_media_bytes = args.connect.max_media_bytes;
    let builder = MediaGeneratorBuilder::from_config(config);
    // Fail early on a missing token, before the input is loaded.
    if let Err(error) = MediaGeneratorBuilder::from_config(builder.config().clone()).build() {
        return usage_error(build_error(error));
    }
    let control = BatchControl::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let runner = tokio::spawn(run_batch(job, builder, control.clone(), tx));
    let bar = (!args.json && std::io::stderr().is_terminal()).then(progress_bar);
    let mut interrupts = 0;
    let mut terminated = false;
    let mut signals = Signals::new();
    let mut summary: Option<BatchSummary> = None;
    loop {
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { break };
                if let BatchEvent::Finished(done) = &event {
                    summary = Some((**done).clone());
                }
                show(&event, args.json, bar.as_ref());
            }
            signal = signals.next() => {
                interrupts += 1;
                terminated |= signal == Interrupt::Terminate;
                if interrupts == 1 {
                    control.stop();
                    note(bar.as_ref(), "stopping: no new items; running items get the grace period (Ctrl-C again to stop at once)");
                } else {
                    control.stop_now();
                    note(bar.as_ref(), "stopping now: running items are left to be resumed");
                }
            }
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let ended = match runner.await {
        Ok(ended) => ended,
        Err(join) => {
            eprintln!("error: the batch ended abnormally: {join}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match ended {
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(if error.is_usage() {
                crate::EXIT_USAGE
            } else {
                EXIT_FAILED
            })
        }
        Ok(summary_) => {
            let summary = summary.unwrap_or(summary_);
            if !args.json {
                eprintln!("{}", summary_text(&summary));
            }
            match &summary.stopped {
                Some(Stopped::OutOfCredits { .. }) => ExitCode::from(EXIT_OUT_OF_CREDITS),
                Some(_) if terminated => ExitCode::from(EXIT_TERMINATED),
                Some(_) => ExitCode::from(EXIT_INTERRUPTED),
                None if summary.progress.failed > 0 => ExitCode::from(EXIT_FAILED),
                None => ExitCode::SUCCESS,
            }
        }
    }
}

/// The job the flags describe.
fn job(args: &BatchArgs, input: std::path::PathBuf, output: &str) -> Result<BatchJob, String> {
    let params = generation_params(&args.params)?;
    let defaults = GenerateRequest {
        model: args.model.clone(),
        params,
        n: usize::from(args.n),
        task: args.params.task.map(hf_media::Task::from),
        ..GenerateRequest::default()
    };
    let output = BatchOutput::parse(output).map_err(|e| e.to_string())?;
    let mut job = BatchJob::new(input, output);
    job.defaults = defaults;
    job.format = args.format.map(|f| match f {
        InputFormat::Jsonl => Format::Jsonl,
        InputFormat::Csv => Format::Csv,
    });
    job.read = ReadOptions::default()
        .prompt_column(args.prompt_column.clone())
        .strict(args.strict);
    job.state = match &args.state {
        Some(state) => Some(state.parse::<StateLocation>().map_err(|e| e.to_string())?),
        None => None,
    };
    job.concurrency = usize::from(args.concurrency);
    job.lease = seconds("--lease", args.lease)?;
    job.grace =
        Duration::try_from_secs_f64(args.grace).map_err(|_| "--grace must be a number of seconds".to_owned())?;
    job.rates = args
        .rates
        .iter()
        .map(|rate| rate.parse::<ProviderRate>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    job.retry_failed = args.retry_failed;
    job.max_media_bytes = args.connect.max_media_bytes;
    Ok(job)
}

/// What stopped a batch from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    /// Ctrl-C (SIGINT).
    CtrlC,
    /// SIGTERM or SIGHUP: a `kill`, a closed terminal, a stopped container or pod.
    Terminate,
}

/// The signals that stop a batch, listened to for the whole run (so that none is missed between two
/// events): Ctrl-C, and on Unix SIGTERM and SIGHUP too. Each stops the batch like Ctrl-C does: a container
/// stopped with SIGTERM lets its running items finish within the grace period, then writes the result
/// files.
struct Signals {
    /// SIGINT, SIGTERM, SIGHUP.
    #[cfg(unix)]
    unix: Option<[tokio::signal::unix::Signal; 3]>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let unix = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) {
                (Ok(int), Ok(term), Ok(hup)) => Some([int, term, hup]),
                _ => None,
            };
            Signals { unix }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next stopping signal (never, when none can be listened to).
    async fn next(&mut self) -> Interrupt {
        #[cfg(unix)]
        if let Some([int, term, hup]) = &mut self.unix {
            return tokio::select! {
                _ = int.recv() => Interrupt::CtrlC,
                _ = term.recv() => Interrupt::Terminate,
                _ = hup.recv() => Interrupt::Terminate,
            };
        }
        match tokio::signal::ctrl_c().await {
            Ok(()) => Interrupt::CtrlC,
            Err(_) => std::future::pending().await,
        }
    }
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn note(bar: Option<&ProgressBar>, line: &str) {
    match bar {
        Some(bar) => bar.println(line),
        None => eprintln!("{line}"),
    }
}

fn show(event: &BatchEvent, json: bool, bar: Option<&ProgressBar>) {
    if json {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", serde_json::to_string(event).unwrap_or_default());
        let _ = out.flush();
        return;
    }
    match event {
        BatchEvent::Started {
            output,
            state,
            resumed,
            total,
            invalid,
            finished,
            leftovers_removed,
            ..
        } => {
            let how = if *resumed { "resuming" } else { "starting" };
            note(
                bar,
                &format!(
                    "{how} a batch of {total} items into {output} ({finished} finished, {invalid} bad lines); state: {state}"
                ),
            );
            if *leftovers_removed > 0 {
                note(
                    bar,
                    &format!("removed {leftovers_removed} temporary files a stopped run had left"),
                );
            }
            if let Some(bar) = bar {
                bar.set_length(*total);
                bar.set_position(*finished);
            }
        }
        BatchEvent::BadLine { line, message, .. } => note(bar, &format!("line {line}: {message}")),
        BatchEvent::ItemFailed { id, kind, message } => note(bar, &format!("{id} failed ({kind}): {message}")),
        BatchEvent::ProviderPaused {
            provider,
            pause_ms,
            limit,
        } => note(
            bar,
            &format!(
                "{provider} is rate-limited: paused {:.1}s, at most {limit} in flight",
                *pause_ms as f64 / 1000.0
            ),
        ),
        BatchEvent::ProviderOutOfCredits { provider } => note(
            bar,
            &format!("{provider} is out of credits (HTTP 402): held back for this run"),
        ),
        BatchEvent::Progress(progress) => {
            if let Some(bar) = bar {
                bar.set_length(progress.total);
                bar.set_position(progress.done + progress.failed);
                bar.set_message(progress_text(progress));
            }
        }
        BatchEvent::Stopping { running, grace_ms } => note(
            bar,
            &format!(
                "{running} items running; they get {:.0}s to finish",
                *grace_ms as f64 / 1000.0
            ),
        ),
        _ => {}
    }
}

fn progress_text(progress: &Progress) -> String {
    let eta = match progress.eta_seconds {
        Some(secs) => format!(", ETA {}", clock(secs)),
        None => String::new(),
    };
    format!(
        "{:.1} items/s, {} failed, {} running{eta}",
        progress.items_per_second, progress.failed, progress.running
    )
}

fn clock(secs: f64) -> String {
    let secs = secs.max(0.0) as u64;
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

fn summary_text(summary: &BatchSummary) -> String {
    let p = &summary.progress;
    let mut text = format!(
        "{} done, {} failed, {} pending of {} items; {} finished in this run in {:.1}s ({:.1} items/s); \
         results.jsonl: {} lines, errors.jsonl: {}, metadata.jsonl: {} media",
        p.done,
        p.failed,
        p.pending + p.running,
        p.total,
        p.finished_this_run,
        summary.elapsed_ms as f64 / 1000.0,
        p.items_per_second,
        summary.results,
        summary.errors,
        summary.media
    );
    for (kind, count) in &summary.failed_by_kind {
        text.push_str(&format!("\n  failed ({kind}): {count}"));
    }
    for (provider, count) in &summary.done_by_provider {
        text.push_str(&format!("\n  done by {provider}: {count}"));
    }
    match &summary.stopped {
        Some(Stopped::OutOfCredits { providers }) => text.push_str(&format!(
            "\nstopped: out of credits on {}; the remaining items are pending. Top up the account, then run the \
             same command again to carry on.",
            providers.join(", ")
        )),
        Some(_) => text.push_str(
            "\nstopped: run the same command again to carry on (done items are skipped, running jobs are polled).",
        ),
        None => {}
    }
    text
}

/// `hf-media batch status -o OUTPUT`.
async fn status(output: &str, state: Option<&str>, json: bool) -> ExitCode {
    let output = match BatchOutput::parse(output) {
        Ok(output) => output,
        Err(e) => return usage_error(e),
    };
    let state = match state.map(str::parse::<StateLocation>).transpose() {
        Ok(state) => state,
        Err(e) => return usage_error(e),
    };
    match batch_status(&output, state).await {
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.is_usage() { crate::EXIT_USAGE } else { EXIT_FAILED })
        }
        Ok(status) => {
            if json {
                println!("{}", serde_json::to_string(&status).unwrap_or_default());
            } else {
                println!("{}", status.text());
            }
            ExitCode::SUCCESS
        }
    }
}
