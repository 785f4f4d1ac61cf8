//! The soak test (run by `cargo xtask soak`, not in every CI run): thousands of generations through the
//! emulator at high concurrency with a few percent of injected faults. It prints how many succeeded,
//! failed with which typed error, and were lost (must be zero), and the peak memory.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hf_media::{FileSink, GenerateRequest, GenerationEvent, GenerationParams, MediaGenerator, PollConfig, RetryPolicy};
use hf_media_emulator::{Emulator, Fault, FaultRule, ProviderBehaviour};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "soak test: run with `cargo xtask soak`"]
async fn soak() {
    let total = env_usize("SOAK_GENERATIONS", 2000);
    let concurrency = env_usize("SOAK_CONCURRENCY", 64).clamp(1, 256);
    let emulator = Emulator::new();
    // A few percent of faults of every kind, spread over the providers of the default model.
    let faults = [
        (
            "fal-ai",
            Fault::Status {
                status: 503,
                body: None,
            },
            0.04,
        ),
        ("together", Fault::ConnectionReset, 0.03),
        (
            "hf-inference",
            Fault::Status {
                status: 402,
                body: None,
            },
            0.05,
        ),
        ("replicate", Fault::MalformedJson, 0.03),
        ("nscale", Fault::RateLimited { retry_after_secs: 0 }, 0.05),
        ("wavespeed", Fault::TruncatedBody, 0.03),
    ];
    for (provider, fault, p) in faults.iter().cloned() {
        emulator.set_behaviour(
            provider,
            ProviderBehaviour::default().with_fault(FaultRule::sometimes(fault, p)),
        );
    }
    let running = emulator.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let generator = MediaGenerator::builder()
        .token("hf_soak")
        .hub_url(running.url())
        .router_url(running.url())
        .poll(PollConfig {
            interval: Duration::from_millis(20),
            deadline: Duration::from_secs(30),
        })
        .retry(RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(2),
        })
        .read_timeout(Duration::from_secs(5))
        .generation_timeout(Some(Duration::from_secs(60)))
        .sink(Arc::new(FileSink::new(dir.path())))
        .build()
        .unwrap();

    let started = Instant::now();
    let (mut succeeded, mut failed, mut reported) = (0usize, 0usize, 0usize);
    let mut by_kind: BTreeMap<&'static str, usize> = BTreeMap::new();
    // Every provider in turn (and the automatic choice, which falls back across them), images and videos.
    let specs = [
        "black-forest-labs/FLUX.1-schnell",
        "black-forest-labs/FLUX.1-schnell:together",
        "black-forest-labs/FLUX.1-schnell:hf-inference",
        "black-forest-labs/FLUX.1-schnell:replicate",
        "black-forest-labs/FLUX.1-schnell:nscale",
        "black-forest-labs/FLUX.1-schnell:wavespeed",
        "zai-org/CogView4-6B:zai-org",
        "Wan-AI/Wan2.1-T2V-14B:novita",
        "Wan-AI/Wan2.1-T2V-14B:fal-ai",
    ];
    let mut remaining = total;
    let mut batch = 0;
    while remaining > 0 {
        let n = remaining.min(concurrency);
        remaining -= n;
        let spec = specs[batch % specs.len()];
        batch += 1;
        let params = GenerationParams {
            width: Some(64),
            height: Some(48),
            num_frames: spec.contains("T2V").then_some(2),
            ..Default::default()
        };
        let request = GenerateRequest::new("soak").model(spec).params(params).n(n);
        let mut events = generator.generate(request);
        while let Some(event) = events.next().await {
            match event {
                GenerationEvent::Media(_) => succeeded += 1,
                GenerationEvent::Error { task: Some(_), error } => {
                    failed += 1;
                    *by_kind.entry(error.kind()).or_default() += 1;
                }
                GenerationEvent::Error { task: None, error } => panic!("the request failed: {error}"),
                GenerationEvent::Done {
                    succeeded: s,
                    failed: f,
                    ..
                } => reported += s + f,
                _ => {}
            }
        }
    }
    let elapsed = started.elapsed();
    let files = std::fs::read_dir(dir.path()).unwrap().flatten().collect::<Vec<_>>();
    let partial = files
        .iter()
        .filter(|e| e.file_name().to_string_lossy().contains(".part"))
        .count();
    let media_files = files
        .iter()
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".json"))
        .count();
    let lost = total - succeeded - failed;
    println!(
        "soak: {total} generations at concurrency {concurrency} in {:.1}s ({:.0}/s)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    println!("soak: succeeded {succeeded}, failed {failed} {by_kind:?}, lost {lost}");
    println!(
        "soak: files {media_files} media, {partial} partial; peak RSS {} KiB",
        peak_rss_kib().unwrap_or(0)
    );
    println!("soak: emulator requests {:?}", emulator.stats());
    assert_eq!(lost, 0, "every generation ends with a media or a typed error");
    assert_eq!(reported, total);
    assert_eq!(media_files, succeeded, "every success is a complete file on disk");
    assert_eq!(partial, 0, "no partial file");
}
