//! Real processes on one state: four copies of this test binary open the same (new) SQLite file, or the
//! same PostgreSQL database, at once — racing the migrations, the batch's creation and the loading — then
//! claim and finish its items. Every item is finished exactly once.

#![allow(clippy::unwrap_used)]

mod state_support;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use hf_media_batch::state::{Outcome, StateLocation, WorkerId, open_state};
use serde_json::json;
use state_support::{Env, identity, items};

const ITEMS: u64 = 600;
const PROCESSES: usize = 4;
const CHILD: &str = "HF_MEDIA_BATCH_STATE_CHILD";

/// One process's work (run by the parent, as a child process; ignored otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the multi-process tests, as a child process"]
async fn child() {
    let Ok(location) = std::env::var(CHILD) else { return };
    let location: StateLocation = location.parse().unwrap();
    let state = open_state(&location).await.unwrap();
    state.open_batch(&identity("/out", "fp-1"), &json!({})).await.unwrap();
    // Every process loads the same items: idempotent.
    for chunk in items(0..ITEMS).chunks(100) {
        state.add_items(chunk).await.unwrap();
    }
    let worker = WorkerId::current();
    let mut finished = Vec::new();
    loop {
        let claimed = state.claim(&worker, 3, Duration::from_secs(600)).await.unwrap();
        if claimed.is_empty() {
            let counts = state.counts().await.unwrap();
            if counts.total() == ITEMS && counts.pending == 0 && counts.running == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        for item in claimed {
            let outcome = Outcome::Done {
                provider: std::process::id().to_string(),
            };
            assert!(state.finish(&worker, item.key, outcome).await.unwrap());
            finished.push(item.position.to_string());
        }
    }
    println!("FINISHED {}", finished.join(","));
}

async fn processes(env: Env) {
    let exe = std::env::current_exe().unwrap();
    let location = match &env.location {
        StateLocation::Sqlite(path) => format!("sqlite:{}", path.display()),
        StateLocation::Postgres(url) => url.clone(),
    };
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args(["--exact", "child", "--ignored", "--nocapture", "--test-threads", "1"])
                .env(CHILD, &location)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut finished: HashMap<u64, usize> = HashMap::new();
    let mut busy = 0;
    for child in children {
        let output = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "a child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("FINISHED ").map(|(_, list)| list))
            .expect("the child's report");
        let positions: Vec<u64> = line
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        busy += usize::from(!positions.is_empty());
        for position in positions {
            *finished.entry(position).or_default() += 1;
        }
    }
    assert_eq!(finished.len() as u64, ITEMS);
    assert!(finished.values().all(|&n| n == 1), "an item was finished twice");
    assert!(busy > 1, "only one process did any work");
    let state = env.batch("/out").await;
    let counts = state.counts().await.unwrap();
    assert_eq!(counts.done, ITEMS);
    assert!(counts.done_by_provider.len() > 1);
}

on_both!(processes);
