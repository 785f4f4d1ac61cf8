//! The generator against the embedded emulator: every provider and task, real media decoded, `n` in
//! parallel, fallback and not-supported paths scripted through faults.
#![allow(clippy::unwrap_used)]

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hf_media::{Error, GenerateRequest, GenerationParams, MediaGenerator, MediaKind, MemorySink, PollConfig};
use hf_media_emulator::{Emulator, Fault, FaultRule, ProviderBehaviour, RunningEmulator};
use hf_media_tests::{attempts, collect, fallbacks, media, single_error};

async fn start() -> (Emulator, RunningEmulator) {
    let emulator = Emulator::new();
    let running = emulator.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (emulator, running)
}

fn generator(running: &RunningEmulator, sink: &MemorySink) -> MediaGenerator {
    MediaGenerator::builder()
        .token("hf_emulator_test")
        .hub_url(running.url())
        .router_url(running.url())
        .poll(PollConfig {
            interval: Duration::from_millis(20),
            deadline: Duration::from_secs(20),
        })
        .sink(Arc::new(sink.clone()))
        .build()
        .unwrap()
}

fn small(video: bool) -> GenerationParams {
    GenerationParams {
        width: Some(if video { 64 } else { 96 }),
        height: Some(if video { 48 } else { 64 }),
        num_frames: video.then_some(4),
        seed: Some(7),
        ..Default::default()
    }
}

/// Decodes a stored media and checks its size: images with `image`, videos by parsing the MP4.
fn check_media(bytes: &[u8], kind: MediaKind, width: u32, height: u32) {
    match kind {
        MediaKind::Image => {
            let image = image::load_from_memory(bytes).expect("the image decodes");
            assert_eq!((image.width(), image.height()), (width, height));
        }
        MediaKind::Video => {
            let reader = mp4::Mp4Reader::read_header(Cursor::new(bytes), bytes.len() as u64).expect("the MP4 parses");
            let track = reader.tracks().values().next().expect("one track");
            assert_eq!(track.track_type().unwrap(), mp4::TrackType::Video);
            assert!(track.sample_count() >= 1);
            assert!(
                u32::from(track.width()) >= width && u32::from(track.height()) >= height,
                "{}x{} for {width}x{height}",
                track.width(),
                track.height()
            );
        }
    }
}

/// Every live (provider, task, model) of the emulator's catalogue that the default registry serves.
fn cases(emulator: &Emulator) -> Vec<(String, String, bool)> {
    let registry = hf_media::ProviderRegistry::with_defaults();
    let mut seen = std::collections::HashSet::new();
    let mut cases = Vec::new();
    for model in emulator.catalogue() {
        for entry in &model.entries {
            let video = entry.task == "text-to-video";
            if entry.status == "live" && registry.get(entry.provider).is_some() && seen.insert((entry.provider, video))
            {
                cases.push((model.id.to_owned(), entry.provider.to_owned(), video));
            }
        }
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_and_task_makes_real_media() {
    let (emulator, running) = start().await;
    let cases = cases(&emulator);
    let providers: std::collections::HashSet<&str> = cases.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(
        providers.len(),
        hf_media::ProviderRegistry::with_defaults().len(),
        "{cases:?}"
    );
    for (model, provider, video) in cases {
        let sink = MemorySink::new();
        let params = small(video);
        let request = GenerateRequest::new("a fox running")
            .model(format!("{model}:{provider}"))
            .params(params.clone());
        let events = collect(generator(&running, &sink).generate(request)).await;
        let made = media(&events);
        assert_eq!(made.len(), 1, "{provider} {model}: {events:#?}");
        let expected = if video { MediaKind::Video } else { MediaKind::Image };
        assert_eq!(made[0].kind, expected, "{provider} {model}");
        let items = sink.items();
        check_media(&items[0].bytes, expected, params.width.unwrap(), params.height.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_request_gives_the_same_image_and_n_gives_variations() {
    let (_emulator, running) = start().await;
    let request = |seed: Option<u64>| {
        GenerateRequest::new("a lighthouse")
            .model("black-forest-labs/FLUX.1-schnell:hf-inference")
            .params(GenerationParams { seed, ..small(false) })
    };
    // The same prompt and seed, asked twice: the same picture.
    let sink = MemorySink::new();
    let twice = generator(&running, &sink);
    collect(twice.generate(request(Some(7)))).await;
    collect(twice.generate(request(Some(7)))).await;
    let items = sink.items();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].bytes, items[1].bytes);
    assert_eq!((items[0].record.seed, items[1].record.seed), (Some(7), Some(7)));

    // `-n 4`: four different pictures, each with the seed it was made with (with a seed: S, S+1, …).
    for seed in [Some(7), None] {
        let sink = MemorySink::new();
        collect(generator(&running, &sink).generate(request(seed).n(4))).await;
        let items = sink.items();
        assert_eq!(items.len(), 4);
        let distinct: std::collections::HashSet<&[u8]> = items.iter().map(|m| m.bytes.as_ref()).collect();
        assert_eq!(distinct.len(), 4, "{seed:?}: four different images");
        let mut seeds: Vec<u64> = items.iter().map(|m| m.record.seed.unwrap()).collect();
        seeds.sort();
        if let Some(first) = seed {
            assert_eq!(seeds, [first, first + 1, first + 2, first + 3]);
        }
        assert!(seeds.windows(2).all(|w| w[0] != w[1]), "{seeds:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_generations_run_in_parallel_with_one_hub_call() {
    let (emulator, running) = start().await;
    emulator.set_behaviour(
        "fal-ai",
        ProviderBehaviour::default().with_latency(Duration::from_millis(600)),
    );
    let sink = MemorySink::new();
    let started = Instant::now();
    let request = GenerateRequest::new("a fox")
        .model("black-forest-labs/FLUX.1-schnell:fal-ai")
        .params(small(false))
        .n(6);
    let events = collect(generator(&running, &sink).generate(request)).await;
    assert_eq!(media(&events).len(), 6);
    assert!(
        started.elapsed() < Duration::from_millis(6 * 600 / 2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(emulator.stats().get("hub model"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_402_falls_back_to_the_next_provider() {
    let (emulator, running) = start().await;
    emulator.set_behaviour(
        "fal-ai",
        ProviderBehaviour::default().with_fault(FaultRule::always(Fault::Status {
            status: 402,
            body: None,
        })),
    );
    let sink = MemorySink::new();
    let request = GenerateRequest::new("a fox")
        .model("black-forest-labs/FLUX.1-schnell")
        .params(small(false));
    let events = collect(generator(&running, &sink).generate(request)).await;
    assert_eq!(attempts(&events)[..2], ["fal-ai", "together"]);
    assert_eq!(fallbacks(&events)[0].1, Some(402));
    assert_eq!(media(&events)[0].provider, "together");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_is_model_not_supported_and_stops() {
    let (emulator, running) = start().await;
    emulator.set_behaviour(
        "fal-ai",
        ProviderBehaviour::default().with_fault(FaultRule::always(Fault::Status {
            status: 404,
            body: None,
        })),
    );
    let sink = MemorySink::new();
    let request = GenerateRequest::new("a fox")
        .model("black-forest-labs/FLUX.1-schnell")
        .params(small(false));
    let events = collect(generator(&running, &sink).generate(request)).await;
    assert!(matches!(single_error(&events), Error::ModelNotSupported { provider, .. } if provider == "fal-ai"));
    assert_eq!(attempts(&events), ["fal-ai"]);
    assert_eq!(emulator.stats().get("together submit"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_answers_fall_back_and_leave_nothing() {
    for fault in [Fault::MalformedJson, Fault::TruncatedBody, Fault::ConnectionReset] {
        let (emulator, running) = start().await;
        emulator.set_behaviour(
            "fal-ai",
            ProviderBehaviour::default().with_fault(FaultRule::always(fault.clone())),
        );
        let dir = tempfile::tempdir().unwrap();
        let generator = MediaGenerator::builder()
            .token("hf_emulator_test")
            .hub_url(running.url())
            .router_url(running.url())
            .sink(Arc::new(hf_media::FileSink::new(dir.path())))
            .build()
            .unwrap();
        let request = GenerateRequest::new("a fox")
            .model("black-forest-labs/FLUX.1-schnell")
            .params(small(false));
        let events = collect(generator.generate(request)).await;
        assert_eq!(fallbacks(&events)[0].0, "fal-ai", "{fault:?}");
        assert_eq!(media(&events)[0].provider, "together", "{fault:?}");
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files.len(), 2, "one media and its sidecar, nothing partial: {files:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_answers_404_for_unknown_models() {
    let (_emulator, running) = start().await;
    let sink = MemorySink::new();
    let events = collect(generator(&running, &sink).generate(GenerateRequest::new("x").model("nobody/nothing"))).await;
    assert_eq!(single_error(&events).kind(), "model_not_found");
}
