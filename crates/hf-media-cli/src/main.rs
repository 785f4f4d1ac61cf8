//! `hf-media`: the command line of hf-media.

mod batch;
mod cli;
mod emulator;
mod models;
mod output;
mod serve;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use hf_media::token::TOKEN_SETTINGS_URL;
use hf_media::{
    ChatMessage, GenerateRequest, GenerationEvent, GenerationParams, GeneratorConfig, MediaGeneratorBuilder,
    MediaInput, OpenAiProviderConfig, ProviderRegistry, Secret, Task,
};
use hf_media_sink_object::ObjectSink;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::cli::{Cli, Command, ConnectFlags, GenerateArgs, ParamFlags};

/// Exit codes of the CLI contract.
const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_INTERRUPTED: u8 = 130;
const EXIT_TERMINATED: u8 = 143;

/// Resolves on SIGTERM or SIGHUP (a `kill`, a closed terminal, a stopped container): the CLI then cleans
/// up like on Ctrl-C. Never resolves where those signals do not exist.
pub(crate) async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::hangup())) {
            (Ok(mut term), Ok(mut hup)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    std::future::pending::<()>().await;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose, matches!(cli.command, Command::Serve(_)));
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match cli.command {
        Command::Generate(args) => runtime.block_on(generate(*args)),
        Command::Providers { json } => providers(json),
        Command::Models(args) => runtime.block_on(models::run(args)),
        Command::Emulator(args) => runtime.block_on(emulator::serve(args)),
        Command::Batch(args) => runtime.block_on(batch::run(*args)),
        Command::Serve(args) => runtime.block_on(serve::run(*args)),
    }
}

/// Logs to stderr: nothing by default (the CLI prints its own lines), a server's requests and failures
/// for `serve`, everything on the wire with `-v`; `RUST_LOG` wins.
fn init_tracing(verbose: bool, serving: bool) {
    let default = match (verbose, serving) {
        (true, _) => {
            "hf_media=debug,hf_media_provider=debug,hf_media_mapping=debug,hf_media_batch=debug,hf_media_server=debug"
        }
        (false, true) => "hf_media_server=info,hf_media=warn,hf_media_provider=warn,hf_media_batch=warn",
        (false, false) => "off",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_USAGE)
}

fn providers(json: bool) -> ExitCode {
    let registry = ProviderRegistry::with_defaults();
    let mut out = std::io::stdout().lock();
    for provider in registry.iter() {
        let tasks: Vec<&str> = provider.tasks().iter().map(|t| t.as_str()).collect();
        let info = provider.info();
        let line = if json {
            serde_json::json!({
                "provider": provider.name(),
                "tasks": tasks,
                "api": info.direct.as_ref().map(|api| api.base_url.as_ref()),
                "key_env": info.key_env(),
            })
            .to_string()
        } else {
            format!("{:<14} {}", provider.name(), tasks.join(", "))
        };
        if writeln!(out, "{line}").is_err() {
            return ExitCode::from(EXIT_FAILED);
        }
    }
    ExitCode::SUCCESS
}

/// `-o` as an object-store URL (`s3://bucket/prefix`, `gs://…`, `az://…`, `file:///…`), or `None` for a
/// folder.
fn object_url(output: &std::path::Path) -> Option<String> {
    let text = output.to_str()?;
    let (scheme, _) = text.split_once("://")?;
    matches!(
        scheme,
        "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" | "adl" | "file" | "memory"
    )
    .then(|| text.to_owned())
}

/// Splits `NAME=VALUE` (both non-empty, trimmed).
fn name_value(entry: &str) -> Option<(&str, &str)> {
    let (name, value) = entry.split_once('=')?;
    let (name, value) = (name.trim(), value.trim());
    (!name.is_empty() && !value.is_empty()).then_some((name, value))
}

/// Turns the flags into a request, or says what is wrong with them.
fn build_request(args: &GenerateArgs) -> Result<GenerateRequest, String> {
    let messages: Vec<ChatMessage> = match &args.messages {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --messages file {}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| {
                format!(
                    "--messages file {} is not a JSON array of chat messages ({e}); expected \
                     [{{\"role\": \"user\", \"content\": \"…\"}}]",
                    path.display()
                )
            })?
        }
        None => Vec::new(),
    };
    if args.prompt.is_none() && args.messages.is_none() {
        return Err("give a PROMPT, or --messages FILE with a chat conversation".into());
    }
    if args.images.iter().any(|image| image.trim().is_empty()) {
        return Err("--image needs a file, an http(s) URL or a data: URL".into());
    }
    let params = generation_params(&args.params)?;
    Ok(GenerateRequest {
        model: args.model.clone(),
        prompt: args.prompt.clone(),
        messages,
        params,
        n: usize::from(args.n),
        concurrency: args.concurrency.map(usize::from),
        images: args.images.iter().map(|image| MediaInput::parse(image)).collect(),
        task: args.params.task.map(Task::from),
    })
}

/// Turns the parameter flags into generation parameters, or says what is wrong with them.
pub(crate) fn generation_params(flags: &ParamFlags) -> Result<GenerationParams, String> {
    let mut extra = serde_json::Map::new();
    for param in &flags.params {
        let (key, raw) = param
            .split_once('=')
            .ok_or_else(|| format!("--param `{param}` must be KEY=VALUE, for example --param style=\"anime\""))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("--param `{param}` has an empty key"));
        }
        let value = serde_json::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
        extra.insert(key.to_owned(), value);
    }
    let aspect_ratio = match &flags.aspect_ratio {
        Some(r) => Some(r.parse().map_err(|e| format!("--aspect-ratio: {e}"))?),
        None => None,
    };
    let params = GenerationParams {
        negative_prompt: flags.negative_prompt.clone(),
        width: flags.width,
        height: flags.height,
        aspect_ratio,
        num_inference_steps: flags.steps,
        guidance_scale: flags.guidance_scale,
        strength: flags.strength,
        seed: flags.seed,
        scheduler: flags.scheduler.clone(),
        num_frames: flags.num_frames,
        resolution: flags.resolution.clone(),
        extra,
    };
    params.validate().map_err(|e| e.to_string())?;
    Ok(params)
}

/// A configuration made from the connection flags, and the embedded emulator it talks to (kept
/// running while the value lives).
pub(crate) struct Connected {
    pub config: GeneratorConfig,
    pub emulator: Option<hf_media_emulator::RunningEmulator>,
}

/// Turns the connection flags into a configuration (the environment's token and keys, then the flags),
/// starting the embedded emulator for `--emulator`; or says what is wrong with them.
pub(crate) async fn connect(flags: &ConnectFlags) -> Result<Connected, String> {
    let timeout = match Duration::try_from_secs_f64(flags.timeout) {
        Ok(timeout) if !timeout.is_zero() => timeout,
        _ => return Err("--timeout must be a positive number of seconds (at most about 10^19)".into()),
    };
    let mut config = GeneratorConfig::from_env();
    for entry in &flags.openai_providers {
        let Some((name, url)) = name_value(entry) else {
            return Err(
                "--openai-provider must be NAME=URL, for example --openai-provider my-images=https://api.example.com"
                    .into(),
            );
        };
        match url::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
            _ => return Err(format!("--openai-provider {name}: `{url}` is not an http(s) URL")),
        }
        config.openai_providers.push(OpenAiProviderConfig {
            name: name.to_owned(),
            url: url.to_owned(),
            response_format: Default::default(),
            key: None,
        });
    }
    for entry in &flags.provider_keys {
        let Some((name, key)) = name_value(entry) else {
            return Err("--provider-key must be NAME=KEY, for example --provider-key fal-ai=$FAL_KEY".into());
        };
        config.provider_keys.insert(name.to_owned(), Secret::new(key));
    }
    for entry in &flags.provider_urls {
        let Some((name, url)) = name_value(entry) else {
            return Err(
                "--provider-url must be NAME=URL, for example --provider-url fal-ai=https://queue.fal.run".into(),
            );
        };
        config.provider_urls.insert(name.to_owned(), url.to_owned());
    }
    config.hub_url = Some(flags.hf_endpoint.clone());
    config.router_url = Some(flags.router_url.clone());
    // Without a token, only providers called with their own key can be used; `build` says so if there is
    // neither. The emulator needs none (it gets a stand-in token), and no key from the environment then
    // sends a call to a real provider.
    let emulator = if flags.emulator {
        let running = emulator::start_embedded().await?;
        config.token = None;
        config.emulator_url = Some(running.url());
        Some(running)
    } else {
        None
    };
    config.max_input_bytes = flags.max_input_bytes;
    config.provider_order = flags.prefer.clone();
    config.timeouts.generation_ms = Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
    config.bill_to = flags.bill_to.clone();
    Ok(Connected { config, emulator })
}

/// The message for a generator that could not be built.
pub(crate) fn build_error(error: hf_media::Error) -> String {
    match error {
        hf_media::Error::MissingToken => format!(
            "no Hugging Face token found: set HF_TOKEN=hf_… (create a token at {TOKEN_SETTINGS_URL}), \
             log in with `hf auth login`, or give a provider's own key with --provider-key NAME=KEY"
        ),
        other => other.to_string(),
    }
}

async fn generate(args: GenerateArgs) -> ExitCode {
    let request = match build_request(&args) {
        Ok(request) => request,
        Err(message) => return usage_error(message),
    };
    let Connected {
        mut config,
        emulator: _emulator,
    } = match connect(&args.connect).await {
        Ok(connected) => connected,
        Err(message) => return usage_error(message),
    };
    config.download_media = !args.no_download;
    config.sink.dir = args.output.clone();
    config.sink.max_media_bytes = args.connect.max_media_bytes;
    let mut builder = MediaGeneratorBuilder::from_config(config);
    if let Some(url) = object_url(&args.output) {
        // Object storage: checked (credentials, bucket, endpoint) before any generation is paid for.
        let sink = match ObjectSink::from_url(&url) {
            Ok(sink) => sink.with_max_bytes(args.connect.max_media_bytes),
            Err(e) => return usage_error(format!("-o {url}: {e}")),
        };
        if let Err(e) = sink.check().await {
            return usage_error(format!("-o {url}: {e}"));
        }
        builder = builder.sink(Arc::new(sink));
    }
    let generator = match builder.build() {
        Ok(generator) => generator,
        Err(e) => return usage_error(build_error(e)),
    };
    let total = request.n;
    let progress = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar.set_message(format!("generating {total} with {}", request.model));
        bar
    });
    let mut events = generator.generate(request);
    let mut exit = ExitCode::SUCCESS;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let terminated = terminated();
    tokio::pin!(terminated);
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = &mut ctrl_c => {
                drop(events);
                if let Some(bar) = &progress {
                    bar.finish_and_clear();
                }
                eprintln!("interrupted: every request was cancelled and no partial file was kept");
                return ExitCode::from(EXIT_INTERRUPTED);
            }
            _ = &mut terminated => {
                drop(events);
                if let Some(bar) = &progress {
                    bar.finish_and_clear();
                }
                eprintln!("terminated: every request was cancelled and no partial file was kept");
                return ExitCode::from(EXIT_TERMINATED);
            }
        };
        let Some(event) = event else { break };
        match &event {
            GenerationEvent::Error { task: None, error } if error.is_usage() => exit = ExitCode::from(EXIT_USAGE),
            GenerationEvent::Error { .. } if exit == ExitCode::SUCCESS => exit = ExitCode::from(EXIT_FAILED),
            GenerationEvent::Progress { elapsed, done, total } => {
                if let Some(bar) = &progress {
                    bar.set_message(format!("waiting… {:.1}s ({done}/{total} done)", elapsed.as_secs_f64()));
                }
            }
            _ => {}
        }
        if args.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", output::event_json(&event));
            let _ = out.flush();
        } else if let Some(line) = output::event_line(&event, total) {
            match &progress {
                Some(bar) => bar.println(line),
                None => println!("{line}"),
            }
        }
    }
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    exit
}
