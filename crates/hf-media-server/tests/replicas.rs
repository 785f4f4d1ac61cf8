//! Two replicas behind one address: one PostgreSQL state and one media folder. A video created on one
//! is seen on the other, a job whose replica stops mid-way is taken over and resumed from its provider
//! job ticket (paid for once), and its content is served by either.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use hf_media_batch::state::StateLocation;
use hf_media_batch::testing::TempPostgres;
use hf_media_emulator::Emulator;
use hf_media_server::ServerConfig;
use hf_media_server::testing::TestServer;
use serde_json::{Value, json};
use support::{client, eventually, send, slow};

fn stat(emulator: &Emulator, kind: &str) -> u64 {
    emulator.stats().get(kind).copied().unwrap_or(0)
}

/// A replica's configuration: the shared state and folder, a short lease, no grace.
fn replica(state: &str, output: &Path) -> impl FnOnce(&mut ServerConfig) {
    let state = StateLocation::Postgres(state.to_owned());
    let output = output.to_path_buf();
    move |config| {
        config.state = Some(state);
        config.output = output;
        config.grace = Duration::from_millis(50);
        config.video_lease = Duration::from_secs(2);
    }
}

async fn video(url: &str, id: &str) -> Value {
    let (status, _, video) = send(client().get(format!("{url}/v1/videos/{id}"))).await;
    assert_eq!(status, 200, "{video}");
    video
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_video_jobs_and_take_over_a_stopped_one() {
    let postgres = TempPostgres::start().unwrap_or_else(|why| panic!("{why}"));
    let state = postgres.url();
    let shared = tempfile::tempdir().unwrap();
    let output = shared.path().to_path_buf();
    let emulator = slow("fal-ai", Duration::from_millis(2000));
    let mut first = TestServer::start_on(emulator.clone(), replica(&state, &output), |b| b)
        .await
        .unwrap();

    let (status, _, created) = send(client().post(format!("{}/v1/videos", first.url())).json(
        &json!({"prompt": "a fox running", "model": "Wan-AI/Wan2.2-T2V-A14B:fal-ai", "seconds": 1, "size": "256x144"}),
    ))
    .await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(
        eventually(Duration::from_secs(10), || stat(&emulator, "fal-ai poll") >= 1).await,
        "the first replica's worker took the job: {:?}",
        emulator.stats()
    );

    // The second replica sees the job the first one runs (and does not run it too).
    let second = TestServer::start_on(emulator.clone(), replica(&state, &output), |b| b)
        .await
        .unwrap();
    let seen = video(&second.url(), &id).await;
    assert_eq!(seen["status"], "in_progress", "{seen}");
    let (_, _, listed) = send(client().get(format!("{}/v1/videos", second.url()))).await;
    assert_eq!(listed["data"][0]["id"], id.as_str(), "{listed}");

    // The first replica stops mid-job: the second takes it over and resumes its provider job.
    first.stop().await.unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let current = video(&second.url(), &id).await;
        if current["status"] == "completed" || current["status"] == "failed" || Instant::now() > until {
            break current;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        stat(&emulator, "fal-ai submit"),
        1,
        "the job was resumed from its ticket, not submitted (paid) again: {:?}",
        emulator.stats()
    );
    let content = client()
        .get(format!("{}/v1/videos/{id}/content", second.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(content.status(), 200);
    assert_eq!(&content.bytes().await.unwrap()[4..8], b"ftyp");

    // A video made on one replica can be deleted on the other.
    let (status, _, deleted) = send(client().delete(format!("{}/v1/videos/{id}", second.url()))).await;
    assert_eq!((status, deleted["deleted"].as_bool()), (200, Some(true)));
    let left: Vec<_> = std::fs::read_dir(&output)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&id))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
