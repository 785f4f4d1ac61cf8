//! A resumable batch, offline: the embedded emulator plays the Hub and the providers. Writes 20 prompts
//! to a JSONL file, runs them into a dataset folder (SQLite state inside it), then runs the same batch
//! again to show that a finished batch submits nothing.
//!
//! ```sh
//! cargo run -p hf-media-batch --example batch              # writes ./batch_example/
//! cargo run -p hf-media-batch --example batch -- my-folder
//! ```
//! Against the real service, drop `emulator_url` and set HF_TOKEN: `MediaGeneratorBuilder::from_env()`.

use std::io::Write;
use std::path::PathBuf;

use hf_media::MediaGeneratorBuilder;
use hf_media_batch::runner::{BatchControl, BatchEvent, BatchJob, BatchOutput, run_batch};
use hf_media_emulator::Emulator;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "batch_example".into()));
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("prompts.jsonl");
    let mut file = std::fs::File::create(&input)?;
    for i in 0..20 {
        writeln!(
            file,
            r#"{{"custom_id": "fox-{i:02}", "prompt": "a fox, study number {i}", "width": 128, "height": 96}}"#
        )?;
    }
    drop(file);

    let emulator = Emulator::new().start(([127, 0, 0, 1], 0).into()).await?;
    for run in ["first run", "second run (nothing left to do)"] {
        println!("== {run}");
        let mut job = BatchJob::new(&input, BatchOutput::Dir(dir.join("dataset")));
        job.concurrency = 8;
        let generator = MediaGeneratorBuilder::default().emulator_url(emulator.url());
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let batch = tokio::spawn(run_batch(job, generator, BatchControl::new(), tx));
        while let Some(event) = events.recv().await {
            match event {
                BatchEvent::ItemDone { id, provider, .. } => {
                    println!("✓ {id} by {}", provider.unwrap_or_default())
                }
                BatchEvent::ItemFailed { id, kind, message } => println!("✗ {id} ({kind}): {message}"),
                BatchEvent::Finished(summary) => println!(
                    "{} done, {} failed, {} media in metadata.jsonl, {:.0} items/s",
                    summary.progress.done, summary.progress.failed, summary.media, summary.progress.items_per_second
                ),
                _ => {}
            }
        }
        batch.await??;
    }
    println!("see {}/dataset/results.jsonl and metadata.jsonl", dir.display());
    Ok(())
}
