//! `hf-media serve`: the flags into a server configuration and a generator, then serve until Ctrl-C or
//! SIGTERM (in-flight work gets the grace period).

use std::process::ExitCode;
use std::time::Duration;

use hf_media::{MediaGeneratorBuilder, Secret, SinkConfig};
use hf_media_server::{Server, ServerConfig};

use crate::cli::ServeArgs;
use crate::{Connected, build_error, connect, usage_error};

fn seconds(flag: &str, value: f64) -> Result<Duration, String> {
    match Duration::try_from_secs_f64(value) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(format!("{flag} must be a positive number of seconds")),
    }
}

/// The server configuration the flags ask for, or what is wrong with them.
fn server_config(args: &ServeArgs) -> Result<ServerConfig, String> {
    let mut config = ServerConfig::new(&args.output);
    config.api_keys = args
        .api_keys
        .iter()
        .map(|key| key.trim())
        .filter(|key| !key.is_empty())
        .map(Secret::new)
        .collect();
    if config.api_keys.is_empty() && !args.addr.ip().is_loopback() && !args.allow_open {
        return Err(format!(
            "refusing to serve {} without an API key: anyone who reaches it could spend your credits. Give \
             --api-key KEY (or HF_MEDIA_API_KEYS), or --allow-open to serve it open anyway",
            args.addr
        ));
    }
    if let Some(url) = &args.public_url {
        config.public_url = Some(
            url::Url::parse(url)
                .map_err(|e| format!("--public-url {url}: {e}; give a URL such as https://media.example.com"))?,
        );
    }
    config.cors_origins = args.cors_origins.clone();
    config.signed_media = args.signed_media.map(Duration::from_secs);
    config.signing_key = args.signing_key.as_deref().map(Secret::new);
    config.max_body_bytes = args.max_body_bytes;
    config.max_concurrent = args.max_concurrent;
    config.rate_per_minute = args.rate_per_minute;
    config.header_timeout = seconds("--header-timeout", args.header_timeout)?;
    config.grace =
        Duration::try_from_secs_f64(args.grace).map_err(|_| "--grace must be 0 or more seconds".to_owned())?;
    config.state = match &args.state {
        Some(state) => Some(state.parse().map_err(|e| format!("--state: {e}"))?),
        None => None,
    };
    config.default_image_model = args.default_model.clone();
    config.default_video_model = args.default_video_model.clone();
    config.video_concurrency = args.video_concurrency;
    config.check().map_err(|e| e.to_string())?;
    Ok(config)
}

/// What the flags say of the media sink: its size limit, and whether stores wait for the disk.
fn sink_config(args: &ServeArgs, sink: &mut SinkConfig) {
    sink.max_media_bytes = args.connect.max_media_bytes;
    sink.sync = !args.no_sync;
}

/// Runs `hf-media serve`.
pub async fn run(args: ServeArgs) -> ExitCode {
    let config = match server_config(&args) {
        Ok(config) => config,
        Err(message) => return usage_error(message),
    };
    let Connected {
        config: generator_config,
        emulator,
    } = match connect(&args.connect).await {
        Ok(connected) => connected,
        Err(message) => return usage_error(message),
    };
    let mut generator_config = generator_config;
    sink_config(&args, &mut generator_config.sink);
    let builder = MediaGeneratorBuilder::from_config(generator_config);
    let server = match Server::new(builder, config).await {
        Ok(server) => server,
        Err(hf_media_server::ServerError::Generation(error)) => return usage_error(build_error(error)),
        Err(error) => return usage_error(error),
    };
    let listener = match tokio::net::TcpListener::bind(args.addr).await {
        Ok(listener) => listener,
        Err(e) => return usage_error(format!("cannot listen on {}: {e}", args.addr)),
    };
    let addr = listener.local_addr().unwrap_or(args.addr);
    let open = if server.config().api_keys.is_empty() {
        "open (no API key)"
    } else {
        "API keys required"
    };
    println!("hf-media serve listening on http://{addr}  ({open})");
    println!(
        "  gallery: http://{addr}/   API: http://{addr}/v1   media: {}",
        server.config().output.display()
    );
    if emulator.is_some() {
        println!("  against the embedded emulator (offline)");
    }
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let shutdown = async {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = crate::terminated() => {}
        }
        eprintln!("shutting down: finishing in-flight work (--grace), then stopping");
    };
    let result = server.serve(listener, shutdown).await;
    drop(emulator);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(crate::EXIT_FAILED)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn serve_args(flags: &[&str]) -> ServeArgs {
        let argv = ["hf-media", "serve"].iter().chain(flags);
        match Cli::try_parse_from(argv).map(|cli| cli.command) {
            Ok(Command::Serve(args)) => *args,
            other => panic!("expected serve arguments, got {other:?}"),
        }
    }

    #[test]
    fn stores_are_synced_unless_no_sync_is_given() {
        let mut sink = SinkConfig::default();
        sink_config(&serve_args(&["--max-media-bytes", "1000"]), &mut sink);
        assert!(sink.sync);
        assert_eq!(sink.max_media_bytes, 1000);
        sink_config(&serve_args(&["--no-sync"]), &mut sink);
        assert!(!sink.sync);
    }
}
