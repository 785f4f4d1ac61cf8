//! The public item runner as a server uses it: items appended one at a time, media stored flat
//! (`{id}-0.mp4`), every generation event observed, a deleted running item lost. Against the emulator,
//! on an SQLite state.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hf_media::{GenerateRequest, GenerationEvent, MediaGeneratorBuilder, PollConfig};
use hf_media_batch::runner::{BatchOutput, ItemEnd, ItemObserver, ItemRunner, MediaLayout};
use hf_media_batch::state::{BatchIdentity, BatchState, ItemKey, ItemState, NewItem, WorkerId, open_state};
use hf_media_emulator::{Emulator, ProviderBehaviour, RunningEmulator};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const MODEL: &str = "Wan-AI/Wan2.2-T2V-A14B:fal-ai";
const LONG: Duration = Duration::from_secs(3600);

struct Setup {
    running: RunningEmulator,
    emulator: Emulator,
    state: Arc<dyn BatchState>,
    out: tempfile::TempDir,
}

async fn setup() -> Setup {
    let emulator = Emulator::new();
    let running = emulator.start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let location = format!("sqlite:{}", out.path().join(".state/state.db").display());
    let state = open_state(&location.parse().unwrap()).await.unwrap();
    let batch = BatchIdentity {
        key: format!("serve:{}", out.path().display()),
        fingerprint: "videos".into(),
        input: "POST /v1/videos".into(),
    };
    state.open_batch(&batch, &json!({})).await.unwrap();
    Setup {
        running,
        emulator,
        state,
        out,
    }
}

fn runner(setup: &Setup, url: &str, observer: ItemObserver) -> ItemRunner {
    let generator = MediaGeneratorBuilder::default()
        .emulator_url(url)
        .poll(PollConfig {
            interval: Duration::from_millis(50),
            deadline: Duration::from_secs(60),
        })
        .sink(BatchOutput::Dir(setup.out.path().to_owned()).sink(64 << 20))
        .build()
        .unwrap();
    ItemRunner::new(generator, setup.state.clone(), WorkerId::current(), MediaLayout::Flat).observer(observer)
}

fn video(id: &str) -> NewItem {
    let request = GenerateRequest::new(format!("waves at dusk ({id})")).model(MODEL);
    NewItem {
        position: 0,
        id: id.into(),
        line: 0,
        n: 1,
        spec: serde_json::to_value(&request).unwrap(),
        invalid: None,
    }
}

type Seen = Arc<Mutex<Vec<(ItemKey, String)>>>;

fn recorder() -> (Seen, ItemObserver) {
    let seen: Seen = Arc::default();
    let observer: ItemObserver = {
        let seen = seen.clone();
        Arc::new(move |key, event: &GenerationEvent| {
            seen.lock().unwrap().push((key, event.name().to_owned()));
        })
    };
    (seen, observer)
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_runs_flat_and_observed() {
    let setup = setup().await;
    setup
        .emulator
        .set_behaviour("fal-ai", ProviderBehaviour::default().with_pending_polls(2));
    let (seen, observer) = recorder();
    let runner = runner(&setup, &setup.running.url(), observer);
    let key = setup.state.append_item(video("video_0a1b2c")).await.unwrap();
    let claimed = setup.state.claim(runner.worker(), 1, LONG).await.unwrap();
    assert_eq!(claimed[0].key, key);
    let end = runner
        .run(claimed.into_iter().next().unwrap(), CancellationToken::new())
        .await
        .unwrap();
    assert!(
        matches!(&end, ItemEnd::Done { provider: Some(p), media: 1, resumed_jobs: 0, .. } if p == "fal-ai"),
        "{end:?}"
    );
    // Stored flat, under the id, with its sidecar.
    let names = files(setup.out.path());
    assert!(names.contains(&"video_0a1b2c-0.mp4".to_owned()), "{names:?}");
    let row = setup.state.item("video_0a1b2c").await.unwrap().unwrap();
    assert_eq!(row.state, ItemState::Done);
    assert!(row.jobs.is_empty());
    let record = row.media[&0].to_string();
    assert!(record.contains("video_0a1b2c-0.mp4"), "{record}");
    // Every event, in order, for this item's key.
    let seen = seen.lock().unwrap();
    assert!(seen.iter().all(|(k, _)| *k == key));
    let names: Vec<&str> = seen.iter().map(|(_, name)| name.as_str()).collect();
    let at = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("{name}: {names:?}"))
    };
    assert!(at("accepted") < at("media") && at("media") < at("done"), "{names:?}");
    assert!(names.contains(&"provider_status"), "{names:?}");
    assert_eq!(names.last(), Some(&"done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_running_video_is_lost() {
    let setup = setup().await;
    setup.emulator.set_behaviour(
        "fal-ai",
        ProviderBehaviour::default()
            .with_pending_polls(20)
            .with_latency(Duration::from_millis(500)),
    );
    let (seen, observer) = recorder();
    let runner = Arc::new(runner(&setup, &setup.running.url(), observer));
    setup.state.append_item(video("video_keep")).await.unwrap();
    let key = setup.state.append_item(video("video_gone")).await.unwrap();
    setup.state.delete_item("video_keep").await.unwrap().unwrap();
    let claimed = setup.state.claim(runner.worker(), 1, LONG).await.unwrap();
    assert_eq!(claimed[0].key, key);
    let task = tokio::spawn({
        let runner = runner.clone();
        let item = claimed.into_iter().next().unwrap();
        async move { runner.run(item, CancellationToken::new()).await }
    });
    // Deleted once its job ticket is stored.
    let started = std::time::Instant::now();
    while setup.state.item("video_gone").await.unwrap().unwrap().jobs.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(20), "no ticket recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deleted = setup.state.delete_item("video_gone").await.unwrap().unwrap();
    assert_eq!((deleted.state, deleted.jobs.len()), (ItemState::Running, 1));
    // Its holder carries on to its next write, which finds the item gone: lost, nothing written.
    let end = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(end, ItemEnd::Lost), "{end:?}");
    assert!(setup.state.item("video_gone").await.unwrap().is_none());
    assert_eq!(setup.state.counts().await.unwrap().total(), 0);
    // The media it stored before noticing is in the sink, in no record: the observer saw it.
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|(k, name)| *k == key && name == "media")
    );
    assert!(files(setup.out.path()).contains(&"video_gone-0.mp4".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_video_cancelled_stays_deleted() {
    let setup = setup().await;
    setup.emulator.set_behaviour(
        "fal-ai",
        ProviderBehaviour::default()
            .with_pending_polls(1_000)
            .with_latency(Duration::from_secs(60)),
    );
    let (_, observer) = recorder();
    let runner = Arc::new(runner(&setup, &setup.running.url(), observer));
    setup.state.append_item(video("video_stop")).await.unwrap();
    let item = setup.state.claim(runner.worker(), 1, LONG).await.unwrap().remove(0);
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let (runner, cancel) = (runner.clone(), cancel.clone());
        async move { runner.run(item, cancel).await }
    });
    let started = std::time::Instant::now();
    while setup.state.item("video_stop").await.unwrap().unwrap().jobs.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(20), "no ticket recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What a server does on DELETE: the row goes, then the local run is stopped at once.
    setup.state.delete_item("video_stop").await.unwrap().unwrap();
    cancel.cancel();
    let end = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // Released (the release finds nothing to put back) or lost (a drained event found the item gone).
    assert!(matches!(end, ItemEnd::Released { .. } | ItemEnd::Lost), "{end:?}");
    assert!(setup.state.item("video_stop").await.unwrap().is_none());
    assert_eq!(setup.state.counts().await.unwrap().total(), 0);
    assert!(!files(setup.out.path()).iter().any(|f| f.starts_with("video_stop")));
}
