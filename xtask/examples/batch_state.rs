//! `batch_state INPUT DIR PNG`: the state of a finished batch, made without generating anything, for the
//! resume-scan scenario of `cargo xtask bench` (a real run of 100,000 items would take minutes).
//!
//! It does what `hf-media batch INPUT -o DIR` does with the same input and default flags, through the
//! library (`hf_media_batch::state`): the input read and checked as the runner reads it (same ids, same
//! specs, same fingerprint), the batch opened under DIR's key with the runner's settings, every item added,
//! claimed, given one media record like the sink's (the media file itself a hard link to PNG, in the
//! runner's layout, so the folder holds as many files as a real run's) and finished done. The state is
//! written to a file on `/dev/shm` (no `fsync` cost) and then moved to DIR's default state path; the same
//! `hf-media batch INPUT -o DIR` then finds every item done. Prints the item count.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hf_media::GenerateRequest;
use hf_media_batch::runner::{BatchOutput, STATE_FILE, items_per_folder, media_key};
use hf_media_batch::state::{BatchIdentity, NewItem, Outcome, StateLocation, WorkerId, open_state};
use hf_media_batch::{ReadOptions, read_file};
use serde_json::json;

/// Items claimed (and finished) per round.
const CLAIM: usize = 1_000;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, dir, png] = args.as_slice() else {
        return Err("usage: batch_state INPUT DIR PNG".into());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let items = runtime.block_on(make(Path::new(input), Path::new(dir), Path::new(png)))?;
    println!("{items}");
    Ok(())
}

async fn make(input: &Path, dir: &Path, png: &Path) -> Result<u64, String> {
    let defaults = GenerateRequest::default();
    let options = ReadOptions::default();
    // What the runner's check does: read every line, learn the fingerprint and the largest n.
    let mut read = read_file(input, None, &defaults, &options).map_err(|e| e.to_string())?;
    let mut new_items = Vec::new();
    let mut max_n = 1u64;
    for (position, item) in read.by_ref().enumerate() {
        let item = item.map_err(|e| format!("line {}: {}", e.line, e.error))?;
        max_n = max_n.max(item.request.n as u64);
        new_items.push(NewItem {
            position: position as u64,
            id: item.id,
            line: item.line as u64,
            n: u32::try_from(item.request.n.max(1)).unwrap_or(u32::MAX),
            spec: serde_json::to_value(&item.request).map_err(|e| e.to_string())?,
            invalid: None,
        });
    }
    let total = new_items.len() as u64;
    let output = BatchOutput::Dir(dir.to_owned());
    output.check().await.map_err(|e| e.to_string())?;
    let per_folder = items_per_folder(max_n);
    let scratch = scratch_dir()?.join(format!("batch-state-{}.sqlite", std::process::id()));
    remove_state_files(&scratch);
    let state = open_state(&StateLocation::Sqlite(scratch.clone()))
        .await
        .map_err(|e| e.to_string())?;
    let identity = BatchIdentity {
        key: output.key(),
        fingerprint: read.fingerprint(),
        input: input.display().to_string(),
    };
    state
        .open_batch(&identity, &json!({ "items_per_folder": per_folder }))
        .await
        .map_err(|e| e.to_string())?;
    for chunk in new_items.chunks(1_000) {
        state.add_items(chunk).await.map_err(|e| e.to_string())?;
    }
    state.mark_loaded(total).await.map_err(|e| e.to_string())?;
    drop(new_items);

    let bytes = std::fs::metadata(png)
        .map_err(|e| format!("{}: {e}", png.display()))?
        .len();
    let worker = WorkerId::current();
    let lease = Duration::from_secs(600);
    loop {
        let claimed = state.claim(&worker, CLAIM, lease).await.map_err(|e| e.to_string())?;
        if claimed.is_empty() {
            break;
        }
        for item in claimed {
            let model = item.spec["model"].as_str().unwrap_or_default().to_owned();
            let (hub_model, provider) = model.split_once(':').unwrap_or((model.as_str(), "hf-inference"));
            let key = media_key(&item.id, item.position, per_folder);
            let file = dir.join(format!("{key}-0.png"));
            if let Some(folder) = file.parent() {
                std::fs::create_dir_all(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
            }
            let _ = std::fs::remove_file(&file);
            std::fs::hard_link(png, &file).map_err(|e| format!("{}: {e}", file.display()))?;
            // A record like the one the runner stores (`GeneratedMedia` as JSON, no sidecar).
            let record = json!({
                "task": 0,
                "provider": provider,
                "provider_id": hub_model,
                "model": hub_model,
                "kind": "image",
                "mime": "image/png",
                "path": file.display().to_string(),
                "bytes": bytes,
                "sidecar": null,
                "seed": item.spec["params"]["seed"],
                "source_url": null,
                "provider_response": null,
                "elapsed_ms": 3,
            });
            let held = state
                .record_media(&worker, item.key, 0, &record)
                .await
                .map_err(|e| e.to_string())?;
            let outcome = Outcome::Done {
                provider: provider.to_owned(),
            };
            let finished = state
                .finish(&worker, item.key, outcome)
                .await
                .map_err(|e| e.to_string())?;
            if !held || !finished {
                return Err(format!("item {} was lost while making the state", item.key));
            }
        }
    }
    let counts = state.counts().await.map_err(|e| e.to_string())?;
    if counts.done != total {
        return Err(format!("{} of {total} items are done", counts.done));
    }
    drop(state);
    // Let the pool's connections close (the last one checkpoints the WAL), then move the files.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let target = dir.join(STATE_FILE);
    if let Some(folder) = target.parent() {
        std::fs::create_dir_all(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    }
    remove_state_files(&target);
    for suffix in ["", "-wal"] {
        let from = PathBuf::from(format!("{}{suffix}", scratch.display()));
        if from.exists() {
            let to = PathBuf::from(format!("{}{suffix}", target.display()));
            std::fs::copy(&from, &to).map_err(|e| format!("{} -> {}: {e}", from.display(), to.display()))?;
        }
    }
    remove_state_files(&scratch);
    Ok(total)
}

/// Where the state is made: `/dev/shm` when there is one (a tmpfs: `fsync` costs nothing), else the
/// temporary folder.
fn scratch_dir() -> Result<PathBuf, String> {
    let shm = Path::new("/dev/shm");
    Ok(if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    })
}

fn remove_state_files(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
