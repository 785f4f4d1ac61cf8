//! The embedded emulator: `generate --emulator` and `hf-media emulator`.

use std::collections::HashMap;
use std::process::ExitCode;

use hf_media_emulator::{Emulator, ProviderBehaviour, RunningEmulator};

use crate::cli::EmulatorArgs;

/// The token sent to the emulator (it checks that one is present, like the router).
pub const EMULATOR_TOKEN: &str = "hf_emulator";
/// The providers the emulator speaks for.
pub use hf_media_emulator::PROVIDERS;
/// The variable naming a behaviours file for `generate --emulator`.
const BEHAVIOURS_VAR: &str = "HF_MEDIA_EMULATOR_BEHAVIOURS";

/// Reads a behaviours file: `{"provider": ProviderBehaviour, …}`.
fn load_behaviours(emulator: &Emulator, path: &std::path::Path) -> Result<(), String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read behaviours file {}: {e}", path.display()))?;
    let behaviours: HashMap<String, ProviderBehaviour> = serde_json::from_str(&text).map_err(|e| {
        format!(
            "behaviours file {} is not a JSON object of provider behaviours ({e}); expected \
             {{\"fal-ai\": {{\"latency\": 500, \"pending_polls\": 2}}}}",
            path.display()
        )
    })?;
    for (provider, behaviour) in behaviours {
        if !PROVIDERS.contains(&provider.as_str()) {
            return Err(format!(
                "behaviours file {}: unknown provider `{provider}` (one of {})",
                path.display(),
                PROVIDERS.join(", ")
            ));
        }
        emulator.set_behaviour(&provider, behaviour);
    }
    Ok(())
}

/// Starts an emulator on a free loopback port for this process.
pub async fn start_embedded() -> Result<RunningEmulator, String> {
    let emulator = Emulator::new();
    if let Some(path) = std::env::var_os(BEHAVIOURS_VAR) {
        load_behaviours(&emulator, std::path::Path::new(&path))?;
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    emulator.start(addr).await.map_err(|e| e.to_string())
}

/// `hf-media emulator`: serves until Ctrl-C.
pub async fn serve(args: EmulatorArgs) -> ExitCode {
    let emulator = Emulator::new();
    if let Some(path) = &args.behaviours
        && let Err(message) = load_behaviours(&emulator, path)
    {
        return crate::usage_error(message);
    }
    let running = match emulator.start(args.addr).await {
        Ok(running) => running,
        Err(e) => return crate::usage_error(e),
    };
    let url = running.url();
    println!("hf-media emulator listening on {url}");
    println!("  HF_ENDPOINT={url} HF_ROUTER_URL={url} HF_TOKEN={EMULATOR_TOKEN} hf-media generate \"a fox\"");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let _ = tokio::signal::ctrl_c().await;
    drop(running);
    ExitCode::SUCCESS
}
