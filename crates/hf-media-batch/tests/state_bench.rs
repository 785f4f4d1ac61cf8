//! Figures for the batch state (ignored by default; `cargo test -p hf-media-batch --all-features --release
//! --test state_bench -- --ignored --nocapture`): adding 100,000 items in chunks of 1,000, scanning them,
//! counting them, and claiming/finishing a share of them, on SQLite and on a throwaway PostgreSQL.

#![allow(clippy::unwrap_used)]

mod state_support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use hf_media_batch::state::{Outcome, WorkerId};
use state_support::{Env, items};

const ITEMS: u64 = 100_000;
const CHUNK: usize = 1_000;

async fn bench(env: Env, name: &str) {
    let state = env.batch("/bench").await;
    let all = items(0..ITEMS);

    let start = Instant::now();
    for chunk in all.chunks(CHUNK) {
        state.add_items(chunk).await.unwrap();
    }
    state.mark_loaded(ITEMS).await.unwrap();
    let add = start.elapsed();

    let start = Instant::now();
    let mut rows = 0u64;
    let mut scan = state.scan();
    while let Some(row) = scan.next().await {
        row.unwrap();
        rows += 1;
    }
    drop(scan);
    let scan = start.elapsed();
    assert_eq!(rows, ITEMS);

    let start = Instant::now();
    let counts = state.counts().await.unwrap();
    let count = start.elapsed();
    assert_eq!(counts.pending, ITEMS);

    // Claim and finish 5,000 items, 10 at a time, then count again (a mixed batch).
    let worker = WorkerId::current();
    let start = Instant::now();
    let mut finished = 0;
    while finished < 5_000 {
        let claimed = state.claim(&worker, 10, Duration::from_secs(600)).await.unwrap();
        for item in claimed {
            let outcome = Outcome::Done {
                provider: "fal-ai".into(),
            };
            assert!(state.finish(&worker, item.key, outcome).await.unwrap());
            finished += 1;
        }
    }
    let work = start.elapsed();
    let start = Instant::now();
    let counts = state.counts().await.unwrap();
    let count_mixed = start.elapsed();
    assert_eq!(counts.done, 5_000);

    report(name, add, scan, count, work, count_mixed);
}

fn report(name: &str, add: Duration, scan: Duration, count: Duration, work: Duration, count_mixed: Duration) {
    let per_s = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "{name}: add {ITEMS} items in chunks of {CHUNK}: {:.2} s ({:.0} items/s); scan: {:.2} s ({:.0} rows/s); \
         counts: {:.1} ms (after 5,000 finished: {:.1} ms); claim 10 + finish each, 5,000 items: {:.2} s \
         ({:.0} items/s)",
        add.as_secs_f64(),
        per_s(ITEMS, add),
        scan.as_secs_f64(),
        per_s(ITEMS, scan),
        count.as_secs_f64() * 1e3,
        count_mixed.as_secs_f64() * 1e3,
        work.as_secs_f64(),
        per_s(5_000, work),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: run with --ignored --nocapture"]
async fn sqlite_100k() {
    bench(Env::sqlite(), "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: run with --ignored --nocapture"]
async fn postgres_100k() {
    bench(Env::postgres().await, "postgres").await;
}
