//! The batch state, on both backends (SQLite and a throwaway PostgreSQL).

#![allow(clippy::unwrap_used)]

mod state_support;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use hf_media_batch::BatchError;
use hf_media_batch::state::{
    INVALID_LINE, ItemKey, ItemRow, ItemState, NewItem, Outcome, ProviderPause, SCHEMA_VERSION, StateLocation,
    WorkerId, open_state,
};
use serde_json::json;
use state_support::{Env, identity, item, items};

on_both!(
    open_batch,
    two_batches_one_database,
    add_items_is_idempotent,
    invalid_lines,
    exactly_once,
    lease_expiry,
    dead_process_on_this_host,
    tickets_and_media_survive_a_takeover,
    release_is_not_an_attempt,
    retry_failed,
    pauses,
    counts,
    scan_in_order,
    migrations,
    appends_from_many_tasks_and_processes,
    append_after_add_items,
    append_refuses_a_duplicate_id,
    item_by_id,
    pages,
    delete_item,
    claims_follow_appends,
);

const LONG: Duration = Duration::from_secs(3600);

async fn open_batch(env: Env) {
    let state = env.open().await;
    assert!(matches!(state.counts().await, Err(BatchError::NoBatch)));
    let info = state
        .open_batch(&identity("/out/a", "fp-1"), &json!({"items_per_folder": 1000}))
        .await
        .unwrap();
    assert!(info.created && !info.loaded);
    assert_eq!(info.total, 0);
    assert_eq!(info.settings, json!({"items_per_folder": 1000}));
    state.add_items(&items(0..3)).await.unwrap();

    // Reopened (another process): the first settings come back.
    let again = env.open().await;
    let info = again
        .open_batch(&identity("/out/a", "fp-1"), &json!({"items_per_folder": 5}))
        .await
        .unwrap();
    assert!(!info.created && !info.loaded);
    assert_eq!(info.total, 3);
    assert_eq!(info.settings, json!({"items_per_folder": 1000}));

    assert!(matches!(again.mark_loaded(4).await, Err(BatchError::StateData { .. })));
    again.mark_loaded(3).await.unwrap();
    let info = env
        .open()
        .await
        .open_batch(&identity("/out/a", "fp-1"), &json!({}))
        .await
        .unwrap();
    assert!(info.loaded && !info.created);
    assert_eq!(info.total, 3);

    // Another input for the same output is refused, saying what to do.
    let other = env.open().await;
    let error = other
        .open_batch(&identity("/out/a", "fp-2"), &json!({}))
        .await
        .unwrap_err();
    assert!(matches!(error, BatchError::DifferentBatch(_)), "{error:?}");
    assert_eq!(error.code(), "different_batch");
    let message = error.to_string();
    for part in ["/out/a", "prompts-fp-1.jsonl", "prompts-fp-2.jsonl", "-o", "--state"] {
        assert!(message.contains(part), "{part}: {message}");
    }
    // … and the refused handle stays unopened.
    assert!(matches!(other.counts().await, Err(BatchError::NoBatch)));

    // `batch status` opens the batch by its key alone.
    let status = env.open().await;
    let error = status.select_batch("/out/none").await.unwrap_err();
    assert!(matches!(error, BatchError::UnknownBatch { .. }), "{error:?}");
    assert!(error.to_string().contains("/out/none"), "{error}");
    let info = status.select_batch("/out/a").await.unwrap();
    assert!(info.loaded && !info.created);
    assert_eq!(info.total, 3);
    assert_eq!(status.counts().await.unwrap().pending, 3);

    // A handle serves one batch.
    let error = state
        .open_batch(&identity("/out/b", "fp-1"), &json!({}))
        .await
        .unwrap_err();
    assert!(matches!(error, BatchError::OtherBatch { .. }), "{error:?}");
}

async fn two_batches_one_database(env: Env) {
    let a = env.batch("/out/a").await;
    let b = env.open().await;
    // Another key may hold other items.
    b.open_batch(&identity("s3://bucket/b", "fp-9"), &json!({}))
        .await
        .unwrap();
    a.add_items(&items(0..10)).await.unwrap();
    b.add_items(&items(0..4)).await.unwrap();
    assert_eq!(a.counts().await.unwrap().pending, 10);
    assert_eq!(b.counts().await.unwrap().pending, 4);
    let worker = WorkerId::current();
    let claimed = b.claim(&worker, 100, LONG).await.unwrap();
    assert_eq!(claimed.len(), 4);
    assert!(b.claim(&worker, 100, LONG).await.unwrap().is_empty());
    assert_eq!(a.counts().await.unwrap().running, 0);
    assert_eq!(a.scan().count().await, 10);
    assert!(
        b.finish(
            &worker,
            claimed[0].key,
            Outcome::Done {
                provider: "fal-ai".into()
            }
        )
        .await
        .unwrap()
    );
    assert_eq!(a.counts().await.unwrap().done, 0);
    a.pause_provider(&pause("fal-ai", 1, "rate_limited", None))
        .await
        .unwrap();
    assert!(b.provider_pauses().await.unwrap().is_empty());
}

async fn add_items_is_idempotent(env: Env) {
    let state = env.batch("/out").await;
    state.add_items(&items(0..10)).await.unwrap();
    let mut changed = items(5..15);
    for item in &mut changed {
        item.spec = json!({"changed": true});
    }
    state.add_items(&changed).await.unwrap();
    state.add_items(&[]).await.unwrap();
    let rows = scan(&*state).await;
    assert_eq!(rows.len(), 15);
    for row in &rows {
        assert_eq!(row.spec.get("changed").is_some(), row.position >= 10, "{row:?}");
        assert_eq!(row.state, ItemState::Pending);
        assert_eq!(row.attempts, 0);
    }
    // The same id at another position is left out too.
    let mut moved = item(3);
    moved.position = 99;
    state.add_items(&[moved]).await.unwrap();
    assert_eq!(state.counts().await.unwrap().total(), 15);
}

async fn invalid_lines(env: Env) {
    let state = env.batch("/out").await;
    let mut all = items(0..4);
    all[1] = NewItem {
        position: 1,
        id: "line-000002".into(),
        line: 2,
        n: 0,
        spec: serde_json::Value::Null,
        invalid: Some(json!({"code": "invalid_json", "message": "not JSON"})),
    };
    state.add_items(&all).await.unwrap();
    let worker = WorkerId::current();
    let claimed = state.claim(&worker, 10, LONG).await.unwrap();
    assert_eq!(claimed.iter().map(|c| c.position).collect::<Vec<_>>(), [0, 2, 3]);
    let counts = state.counts().await.unwrap();
    assert_eq!(counts.failed, 1);
    assert_eq!(counts.failed_by_kind, BTreeMap::from([(INVALID_LINE.to_owned(), 1)]));
    assert_eq!(state.retry_failed().await.unwrap(), 0);
    let rows = scan(&*state).await;
    assert_eq!(rows[1].state, ItemState::Failed);
    assert_eq!(rows[1].error_kind.as_deref(), Some(INVALID_LINE));
    assert_eq!(
        rows[1].error,
        Some(json!({"code": "invalid_json", "message": "not JSON"}))
    );
    assert_eq!(rows[1].attempts, 0);
}

async fn exactly_once(env: Env) {
    const ITEMS: u64 = 2_000;
    const WORKERS: usize = 8;
    let loader = env.batch("/out").await;
    for chunk in items(0..ITEMS).chunks(500) {
        loader.add_items(chunk).await.unwrap();
    }
    loader.mark_loaded(ITEMS).await.unwrap();
    // Eight handles opened at once (eight pools: eight processes, as far as the database can tell).
    let handles = futures::future::join_all((0..WORKERS).map(|_| env.batch("/out"))).await;
    // Who holds what: a claim must never return an item another worker holds.
    let holders: Arc<Mutex<HashMap<u64, String>>> = Arc::default();
    let finished: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let mut tasks = Vec::new();
    for (n, state) in handles.into_iter().enumerate() {
        let holders = holders.clone();
        let finished = finished.clone();
        tasks.push(tokio::spawn(async move {
            let worker = WorkerId::current();
            let mut mine = 0;
            loop {
                let claimed = state.claim(&worker, 1 + n % 7, LONG).await.unwrap();
                if claimed.is_empty() {
                    let counts = state.counts().await.unwrap();
                    if counts.pending == 0 && counts.running == 0 {
                        return mine;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                {
                    let mut holders = holders.lock().unwrap();
                    for item in &claimed {
                        assert_eq!(item.attempts, 1, "{item:?}");
                        if let Some(other) = holders.insert(item.position, worker.id.clone()) {
                            panic!("item {} claimed by {} while {other} holds it", item.position, worker.id);
                        }
                    }
                }
                for item in claimed {
                    holders.lock().unwrap().remove(&item.position);
                    let outcome = Outcome::Done {
                        provider: format!("provider-{}", n % 2),
                    };
                    assert!(state.finish(&worker, item.key, outcome).await.unwrap());
                    *finished.lock().unwrap().entry(item.position).or_default() += 1;
                    mine += 1;
                }
            }
        }));
    }
    let mut per_worker = Vec::new();
    for task in tasks {
        per_worker.push(task.await.unwrap());
    }
    {
        let finished = finished.lock().unwrap();
        assert_eq!(finished.len() as u64, ITEMS);
        assert!(finished.values().all(|&n| n == 1));
    }
    assert_eq!(per_worker.iter().sum::<u64>(), ITEMS);
    assert!(per_worker.iter().filter(|&&n| n > 0).count() > 1, "{per_worker:?}");
    let counts = loader.counts().await.unwrap();
    assert_eq!(counts.done, ITEMS);
    assert_eq!(counts.done_by_provider.values().sum::<u64>(), ITEMS);
    let rows = scan(&*loader).await;
    assert!(
        rows.iter()
            .all(|r| r.state == ItemState::Done && r.attempts == 1 && r.lease_owner.is_none())
    );
}

async fn lease_expiry(env: Env) {
    let first = env.batch("/out").await;
    let second = env.batch("/out").await;
    first.add_items(&items(0..5)).await.unwrap();
    let w1 = WorkerId::current();
    let w2 = WorkerId::current();
    let lease = Duration::from_millis(2_000);
    let start = std::time::Instant::now();
    let claimed = first.claim(&w1, 10, lease).await.unwrap();
    assert_eq!(claimed.len(), 5);
    let keys: Vec<ItemKey> = claimed.iter().map(|c| c.key).collect();
    // Not before the lease ends: a claim that returns before it would have ended gets nothing (its lease
    // ends at the earliest `lease` after `start`) …
    let mut early = 0;
    while start.elapsed() < lease / 2 {
        let got = second.claim(&w2, 10, LONG).await.unwrap();
        if start.elapsed() < lease {
            assert!(got.is_empty(), "{got:?}");
            early += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(early > 0);
    tokio::time::sleep(lease.saturating_sub(start.elapsed()) + Duration::from_millis(100)).await;
    // … at once after.
    let taken = second.claim(&w2, 10, LONG).await.unwrap();
    assert_eq!(taken.iter().map(|c| c.key).collect::<Vec<_>>(), keys);
    assert!(taken.iter().all(|c| c.attempts == 2));
    // The first worker learns it lost them, and writes nothing.
    assert_eq!(first.renew(&w1, &keys, LONG).await.unwrap(), keys);
    assert!(
        !first
            .record_job(&w1, keys[0], 0, &json!({"job": "late"}))
            .await
            .unwrap()
    );
    assert!(
        !first
            .record_media(&w1, keys[0], 0, &json!({"file": "late.png"}))
            .await
            .unwrap()
    );
    assert!(
        !first
            .finish(
                &w1,
                keys[0],
                Outcome::Done {
                    provider: "late".into()
                }
            )
            .await
            .unwrap()
    );
    first.release(&w1, &keys).await.unwrap();
    assert!(second.renew(&w2, &keys, LONG).await.unwrap().is_empty());
    assert!(
        second
            .finish(&w2, keys[0], Outcome::Done { provider: "p2".into() })
            .await
            .unwrap()
    );
    let rows = scan(&*first).await;
    assert_eq!(rows[0].state, ItemState::Done);
    assert_eq!(rows[0].provider.as_deref(), Some("p2"));
    assert!(rows[0].jobs.is_empty() && rows[0].media.is_empty());
    assert!(
        rows[1..]
            .iter()
            .all(|r| r.state == ItemState::Running && r.lease_owner.as_deref() == Some(&w2.id))
    );
    // A finished item is not held any more.
    assert_eq!(second.renew(&w2, &keys[..1], LONG).await.unwrap(), &keys[..1]);
    // A worker is never handed back what it holds, even when its lease ran out; another worker takes it.
    second.release(&w2, &keys[1..]).await.unwrap();
    assert_eq!(
        second.claim(&w2, 10, Duration::from_millis(100)).await.unwrap().len(),
        4
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(second.claim(&w2, 10, LONG).await.unwrap().is_empty());
    assert_eq!(first.claim(&w1, 10, LONG).await.unwrap().len(), 4);
}

/// A pid that no process has: a child's, once it exited.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

async fn dead_process_on_this_host(env: Env) {
    let state = env.batch("/out").await;
    state.add_items(&items(0..6)).await.unwrap();
    let pid = dead_pid();
    let me = WorkerId::current();
    let dead = WorkerId {
        id: format!("{}/{pid}/dead", me.host),
        pid,
        ..me.clone()
    };
    // The same dead pid on another host (or in another PID namespace) proves nothing.
    let elsewhere = WorkerId {
        id: format!("elsewhere/{pid}/x"),
        host: "elsewhere".into(),
        pid,
        pid_namespace: me.pid_namespace.clone(),
    };
    let other_namespace = WorkerId {
        id: format!("{}/{pid}/ns", me.host),
        pid_namespace: Some("pid:[1]".into()),
        ..dead.clone()
    };
    assert_eq!(state.claim(&dead, 3, LONG).await.unwrap().len(), 3);
    assert_eq!(state.claim(&elsewhere, 2, LONG).await.unwrap().len(), 2);
    assert_eq!(state.claim(&other_namespace, 1, LONG).await.unwrap().len(), 1);
    let taken = env.open().await;
    taken.open_batch(&identity("/out", "fp-1"), &json!({})).await.unwrap();
    let claimed = taken.claim(&me, 10, LONG).await.unwrap();
    if cfg!(target_os = "linux") {
        assert_eq!(claimed.iter().map(|c| c.position).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(claimed.iter().all(|c| c.attempts == 2));
    } else {
        assert!(claimed.is_empty());
    }
}

async fn tickets_and_media_survive_a_takeover(env: Env) {
    let state = env.batch("/out").await;
    let mut three = item(0);
    three.n = 3;
    state.add_items(&[three]).await.unwrap();
    let w1 = WorkerId::current();
    let w2 = WorkerId::current();
    let claimed = state.claim(&w1, 1, Duration::from_millis(300)).await.unwrap();
    let key = claimed[0].key;
    assert_eq!(claimed[0].n, 3);
    assert!(claimed[0].jobs.is_empty() && claimed[0].media.is_empty());
    let ticket =
        |id: &str| json!({"provider": "fal-ai", "job_id": id, "data": {"status_url": format!("https://q/{id}")}});
    assert!(state.record_job(&w1, key, 0, &ticket("a")).await.unwrap());
    assert!(state.record_job(&w1, key, 1, &ticket("b")).await.unwrap());
    assert!(state.record_job(&w1, key, 2, &ticket("c")).await.unwrap());
    assert!(state.record_job(&w1, key, 2, &ticket("c2")).await.unwrap());
    assert!(
        state
            .record_media(&w1, key, 0, &json!({"file": "0000/item-0.png", "bytes": 1234}))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let taken = state.claim(&w2, 1, LONG).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].jobs, BTreeMap::from([(1, ticket("b")), (2, ticket("c2"))]));
    assert_eq!(
        taken[0].media,
        BTreeMap::from([(0, json!({"file": "0000/item-0.png", "bytes": 1234}))])
    );
    // A null ticket forgets one that cannot be resumed.
    assert!(state.record_job(&w2, key, 2, &serde_json::Value::Null).await.unwrap());
    assert!(
        state
            .record_media(&w2, key, 1, &json!({"file": "b.png"}))
            .await
            .unwrap()
    );
    let row = scan(&*state).await.remove(0);
    assert!(row.jobs.is_empty(), "{row:?}");
    assert_eq!(row.media.keys().copied().collect::<Vec<_>>(), [0, 1]);
    // Released, they are still there for the next claim.
    state.release(&w2, &[key]).await.unwrap();
    let again = state.claim(&w1, 1, LONG).await.unwrap();
    assert_eq!(again[0].media.len(), 2);
}

async fn release_is_not_an_attempt(env: Env) {
    let state = env.batch("/out").await;
    state.add_items(&items(0..3)).await.unwrap();
    let w1 = WorkerId::current();
    let w2 = WorkerId::current();
    let claimed = state.claim(&w1, 3, LONG).await.unwrap();
    let keys: Vec<ItemKey> = claimed.iter().map(|c| c.key).collect();
    assert!(claimed.iter().all(|c| c.attempts == 1));
    // Another worker's release does nothing.
    state.release(&w2, &keys).await.unwrap();
    assert_eq!(state.counts().await.unwrap().running, 3);
    state.release(&w1, &keys[..2]).await.unwrap();
    let counts = state.counts().await.unwrap();
    assert_eq!((counts.pending, counts.running), (2, 1));
    let rows = scan(&*state).await;
    assert_eq!(rows.iter().map(|r| r.attempts).collect::<Vec<_>>(), [0, 0, 1]);
    assert!(rows[0].lease_owner.is_none() && rows[0].lease_until.is_none());
    assert!(rows[0].started_at.is_some());
    let again = state.claim(&w2, 3, LONG).await.unwrap();
    assert_eq!(
        again.iter().map(|c| (c.position, c.attempts)).collect::<Vec<_>>(),
        [(0, 1), (1, 1)]
    );
}

async fn retry_failed(env: Env) {
    let state = env.batch("/out").await;
    let mut all = items(0..4);
    all.push(NewItem {
        invalid: Some(json!({"code": "missing_prompt", "message": "no prompt"})),
        ..item(4)
    });
    state.add_items(&all).await.unwrap();
    let worker = WorkerId::current();
    let claimed = state.claim(&worker, 4, LONG).await.unwrap();
    let fail = |kind: &str| Outcome::Failed {
        kind: kind.into(),
        error: json!({"code": kind, "message": "it broke"}),
    };
    assert!(
        state
            .finish(&worker, claimed[0].key, fail("provider_error"))
            .await
            .unwrap()
    );
    assert!(state.finish(&worker, claimed[1].key, fail("timeout")).await.unwrap());
    assert!(
        state
            .record_media(&worker, claimed[2].key, 0, &json!({"file": "x"}))
            .await
            .unwrap()
    );
    assert!(state.finish(&worker, claimed[2].key, fail("timeout")).await.unwrap());
    assert!(
        state
            .finish(
                &worker,
                claimed[3].key,
                Outcome::Done {
                    provider: "fal-ai".into()
                }
            )
            .await
            .unwrap()
    );
    // Finished twice: no.
    assert!(!state.finish(&worker, claimed[3].key, fail("timeout")).await.unwrap());
    let counts = state.counts().await.unwrap();
    assert_eq!(counts.failed, 4);
    assert_eq!(
        counts.failed_by_kind,
        BTreeMap::from([
            ("provider_error".into(), 1),
            ("timeout".into(), 2),
            (INVALID_LINE.into(), 1)
        ])
    );
    assert_eq!(state.retry_failed().await.unwrap(), 3);
    assert_eq!(state.retry_failed().await.unwrap(), 0);
    let rows = scan(&*state).await;
    for row in &rows[..3] {
        assert_eq!(row.state, ItemState::Pending);
        assert_eq!(
            (row.attempts, &row.error, &row.error_kind, row.finished_at),
            (0, &None, &None, None)
        );
    }
    assert_eq!(rows[2].media.len(), 1, "media are kept");
    assert_eq!(rows[3].state, ItemState::Done);
    assert_eq!(rows[4].state, ItemState::Failed);
    let again = state.claim(&worker, 10, LONG).await.unwrap();
    assert_eq!(
        again.iter().map(|c| (c.position, c.attempts)).collect::<Vec<_>>(),
        [(0, 1), (1, 1), (2, 1)]
    );
}

fn pause(provider: &str, until: i64, reason: &str, hint: Option<u32>) -> ProviderPause {
    ProviderPause {
        provider: provider.into(),
        until_unix_ms: until,
        reason: reason.into(),
        concurrency_hint: hint,
    }
}

async fn pauses(env: Env) {
    let state = env.batch("/out").await;
    let other = env.batch("/out").await;
    let t = 1_900_000_000_000;
    state
        .pause_provider(&pause("replicate", t + 1_000, "rate_limited", Some(4)))
        .await
        .unwrap();
    other
        .pause_provider(&pause("replicate", t + 500, "out_of_credits", Some(1)))
        .await
        .unwrap();
    assert_eq!(
        state.provider_pauses().await.unwrap(),
        [pause("replicate", t + 1_000, "rate_limited", Some(4))]
    );
    other
        .pause_provider(&pause("replicate", t + 2_000, "out_of_credits", None))
        .await
        .unwrap();
    state
        .pause_provider(&pause("fal-ai", t, "rate_limited", None))
        .await
        .unwrap();
    assert_eq!(
        other.provider_pauses().await.unwrap(),
        [
            pause("fal-ai", t, "rate_limited", None),
            pause("replicate", t + 2_000, "out_of_credits", Some(4)),
        ]
    );
    // A new run forgets the credit pauses (credits may have been topped up).
    assert_eq!(state.clear_pauses("out_of_credits").await.unwrap(), 1);
    assert_eq!(state.clear_pauses("out_of_credits").await.unwrap(), 0);
    assert_eq!(
        other.provider_pauses().await.unwrap(),
        [pause("fal-ai", t, "rate_limited", None)]
    );
}

async fn counts(env: Env) {
    let state = env.batch("/out").await;
    let empty = state.counts().await.unwrap();
    assert_eq!(empty.total(), 0);
    assert_eq!((empty.first_started_at, empty.last_finished_at), (None, None));
    state.add_items(&items(0..10)).await.unwrap();
    let worker = WorkerId::current();
    let before = hf_media_batch_now();
    let claimed = state.claim(&worker, 6, LONG).await.unwrap();
    for (i, item) in claimed.iter().enumerate().take(5) {
        let outcome = match i {
            0..=2 => Outcome::Done {
                provider: if i == 0 { "replicate" } else { "fal-ai" }.into(),
            },
            _ => Outcome::Failed {
                kind: "content_filtered".into(),
                error: json!({"code": "content_filtered"}),
            },
        };
        assert!(state.finish(&worker, item.key, outcome).await.unwrap());
    }
    let counts = state.counts().await.unwrap();
    assert_eq!(
        (counts.pending, counts.running, counts.done, counts.failed),
        (4, 1, 3, 2)
    );
    assert_eq!(counts.total(), 10);
    assert_eq!(counts.finished(), 5);
    assert_eq!(
        counts.done_by_provider,
        BTreeMap::from([("fal-ai".into(), 2), ("replicate".into(), 1)])
    );
    assert_eq!(counts.failed_by_kind, BTreeMap::from([("content_filtered".into(), 2)]));
    let started = counts.first_started_at.unwrap();
    let finished = counts.last_finished_at.unwrap();
    assert!(before <= started && started <= finished && finished <= hf_media_batch_now() + 1);
}

fn hf_media_batch_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn scan_in_order(env: Env) {
    let state = env.batch("/out").await;
    // Added out of order, in several calls.
    let mut all = items(0..3_000);
    fastrand::seed(7);
    fastrand::shuffle(&mut all);
    for chunk in all.chunks(700) {
        state.add_items(chunk).await.unwrap();
    }
    let positions: Vec<u64> = state.scan().map(|r| r.unwrap().position).collect().await;
    assert_eq!(positions, (0..3_000).collect::<Vec<_>>());
    // Streamed: the first rows come without reading the rest, and the stream can be dropped part way.
    let first: Vec<ItemRow> = state.scan().take(2).map(Result::unwrap).collect().await;
    assert_eq!(first[1].id, "item-000001");
    assert_eq!(first[1].line, 2);
    assert_eq!(first[1].spec, state_support::spec(1));
    // Scanning while items change is fine.
    let worker = WorkerId::current();
    let mut scan = state.scan();
    let mut seen = 0;
    while let Some(row) = scan.next().await {
        row.unwrap();
        seen += 1;
        if seen == 10 && env.is_sqlite() {
            // (WAL: a writer does not wait for the reader.)
            state.claim(&worker, 5, LONG).await.unwrap();
        }
    }
    assert_eq!(seen, 3_000);
}

async fn migrations(env: Env) {
    let state = env.open().await;
    assert_eq!(state.schema_version().await.unwrap(), SCHEMA_VERSION);
    let applied = applied_migrations(&env).await;
    assert_eq!(applied.len() as i64, SCHEMA_VERSION);
    assert_eq!(applied.last().map(|m| m.0), Some(SCHEMA_VERSION));
    drop(state);
    // Reopening runs nothing again.
    let again = env.open().await;
    assert_eq!(again.schema_version().await.unwrap(), SCHEMA_VERSION);
    assert_eq!(applied_migrations(&env).await, applied);
}

/// The migrations recorded: version and when it was applied.
async fn applied_migrations(env: &Env) -> Vec<(i64, String)> {
    match &env.location {
        StateLocation::Sqlite(path) => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", path.display()))
                .await
                .unwrap();
            sqlx::query_as("SELECT version, CAST(installed_on AS TEXT) FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&pool)
                .await
                .unwrap()
        }
        StateLocation::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            // The migrations table is the crate's own, in its schema.
            let public: Option<String> = sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations')::text")
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(public, None);
            sqlx::query_as("SELECT version, installed_on::text FROM hf_media_batch._sqlx_migrations ORDER BY version")
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    }
}

async fn scan(state: &dyn hf_media_batch::state::BatchState) -> Vec<ItemRow> {
    state.scan().map(Result::unwrap).collect().await
}

#[tokio::test]
async fn errors_name_no_password() {
    let location: StateLocation = "postgres://user:sekrit@127.0.0.1:1/db".parse().unwrap();
    assert!(!format!("{location} {location:?}").contains("sekrit"));
    let error = open_state(&location).await.unwrap_err();
    let message = format!("{error} {error:?}");
    assert!(!message.contains("sekrit"), "{message}");
    assert!(message.contains("127.0.0.1:1"), "{message}");
    // The reason, not a pool timeout.
    assert!(!message.contains("timed out"), "{message}");
    assert_eq!(error.code(), "state");
    // An SQLite file that cannot be made says why.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let error = open_state(&StateLocation::Sqlite(file.join("state.db")))
        .await
        .unwrap_err();
    assert_eq!(error.code(), "state");
    assert!(error.to_string().contains("state.db"), "{error}");
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let location = StateLocation::Sqlite(path.clone());
    drop(open_state(&location).await.unwrap());
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'from the future', 1, x'00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let error = open_state(&location).await.unwrap_err();
    assert!(matches!(error, BatchError::StateMigrate { .. }), "{error:?}");
    assert!(error.to_string().contains("newer hf-media"), "{error}");
}

/// An item to append: its position is left for the state to choose.
fn video(id: &str) -> NewItem {
    NewItem {
        position: u64::MAX,
        id: id.into(),
        line: 0,
        n: 1,
        spec: json!({"model": "Wan-AI/Wan2.2-T2V-A14B", "prompt": format!("video {id}"), "n": 1}),
        invalid: None,
    }
}

fn ids(rows: &[ItemRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

async fn appends_from_many_tasks_and_processes(env: Env) {
    const PER_HANDLE: usize = 40;
    // Two handles: two processes (two pools), each appending from many tasks at once.
    let handles = [env.batch("/serve").await, env.batch("/serve").await];
    let mut tasks = Vec::new();
    for (h, state) in handles.iter().enumerate() {
        for i in 0..PER_HANDLE {
            let state = state.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("video_{h}_{i:02}");
                let key = state.append_item(video(&id)).await.unwrap();
                (id, key)
            }));
        }
    }
    let mut appended: Vec<(String, ItemKey)> = Vec::new();
    for task in tasks {
        appended.push(task.await.unwrap());
    }
    let total = 2 * PER_HANDLE as u64;
    // Distinct positions, with no gap: 0 .. total.
    let mut positions: Vec<u64> = appended.iter().map(|(_, key)| key.0).collect();
    positions.sort_unstable();
    assert_eq!(positions, (0..total).collect::<Vec<_>>());
    // Every item is there, at the position it was told.
    let rows = scan(&*handles[0]).await;
    assert_eq!(rows.len() as u64, total);
    let by_id: HashMap<&str, &ItemRow> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
    for (id, key) in &appended {
        let row = by_id[id.as_str()];
        assert_eq!((row.key, row.position, row.state), (*key, key.0, ItemState::Pending));
        assert_eq!(row.spec["prompt"], json!(format!("video {id}")));
        assert_eq!((row.n, row.attempts, row.line), (1, 0, 0));
    }
    assert_eq!(handles[1].counts().await.unwrap().pending, total);
    // Another batch of the same database numbers its own items from 0.
    let other = env.open().await;
    other
        .open_batch(&identity("/serve-2", "videos"), &json!({}))
        .await
        .unwrap();
    assert_eq!(other.append_item(video("video_x")).await.unwrap(), ItemKey(0));
    assert_eq!(handles[0].counts().await.unwrap().total(), total);
}

async fn append_after_add_items(env: Env) {
    let state = env.batch("/out").await;
    state.add_items(&items(0..3)).await.unwrap();
    state.mark_loaded(3).await.unwrap();
    // The next position, whatever the position given; a bad line appended is stored failed, as add_items
    // stores it.
    let mut bad = video("bad");
    bad.position = 0;
    bad.invalid = Some(json!({"code": "invalid_json", "message": "not JSON"}));
    assert_eq!(state.append_item(video("a")).await.unwrap(), ItemKey(3));
    assert_eq!(state.append_item(bad).await.unwrap(), ItemKey(4));
    let rows = scan(&*state).await;
    assert_eq!(ids(&rows), ["item-000000", "item-000001", "item-000002", "a", "bad"]);
    assert_eq!(rows[4].state, ItemState::Failed);
    assert_eq!(rows[4].error_kind.as_deref(), Some(INVALID_LINE));
    // A loaded batch's total follows appends and deletes.
    let info = env
        .open()
        .await
        .open_batch(&identity("/out", "fp-1"), &json!({}))
        .await
        .unwrap();
    assert!(info.loaded);
    assert_eq!(info.total, 5);
    assert_eq!(state.delete_item("item-000001").await.unwrap().unwrap().position, 1);
    let info = env
        .open()
        .await
        .open_batch(&identity("/out", "fp-1"), &json!({}))
        .await
        .unwrap();
    assert_eq!(info.total, 4);
    assert_eq!(state.counts().await.unwrap().total(), 4);
    // Items added by add_items after appends: the next append comes after them too.
    state.add_items(&items(5..6)).await.unwrap();
    assert_eq!(state.append_item(video("b")).await.unwrap(), ItemKey(6));
}

async fn append_refuses_a_duplicate_id(env: Env) {
    let state = env.batch("/serve").await;
    state.add_items(&items(0..1)).await.unwrap();
    assert_eq!(state.append_item(video("video_a")).await.unwrap(), ItemKey(1));
    let mut again = video("video_a");
    again.spec = json!({"prompt": "another"});
    let error = state.append_item(again).await.unwrap_err();
    assert!(
        matches!(&error, BatchError::DuplicateItem { id } if id == "video_a"),
        "{error:?}"
    );
    assert_eq!(error.code(), "duplicate_item");
    assert!(error.to_string().contains("`video_a`"), "{error}");
    // An id that came from add_items too.
    let error = state.append_item(video("item-000000")).await.unwrap_err();
    assert!(
        matches!(&error, BatchError::DuplicateItem { id } if id == "item-000000"),
        "{error:?}"
    );
    // Nothing was stored or changed, and the refused appends used no position.
    let rows = scan(&*state).await;
    assert_eq!(ids(&rows), ["item-000000", "video_a"]);
    assert_eq!(rows[1].spec["prompt"], json!("video video_a"));
    assert_eq!(state.append_item(video("video_b")).await.unwrap(), ItemKey(2));
    // Two handles appending the same id at once: exactly one succeeds.
    let other = env.batch("/serve").await;
    let (a, b) = tokio::join!(state.append_item(video("video_c")), other.append_item(video("video_c")));
    assert_eq!([&a, &b].iter().filter(|r| r.is_ok()).count(), 1, "{a:?} {b:?}");
    assert!(
        [a, b]
            .into_iter()
            .any(|r| matches!(r, Err(BatchError::DuplicateItem { id }) if id == "video_c"))
    );
    assert_eq!(state.counts().await.unwrap().total(), 4);
}

async fn item_by_id(env: Env) {
    let state = env.batch("/serve").await;
    assert!(state.item("video_a").await.unwrap().is_none());
    let key = state.append_item(video("video_a")).await.unwrap();
    state.append_item(video("video_b")).await.unwrap();
    let row = state.item("video_a").await.unwrap().unwrap();
    assert_eq!(
        (row.key, row.id.as_str(), row.state),
        (key, "video_a", ItemState::Pending)
    );
    assert_eq!(row.spec, video("video_a").spec);
    assert_eq!(row.lease_owner, None);
    let worker = WorkerId::current();
    let claimed = state.claim(&worker, 1, LONG).await.unwrap();
    assert_eq!(claimed[0].key, key);
    assert!(
        state
            .record_job(&worker, key, 0, &json!({"job_id": "j1"}))
            .await
            .unwrap()
    );
    let row = state.item("video_a").await.unwrap().unwrap();
    assert_eq!(row.state, ItemState::Running);
    assert_eq!(row.lease_owner.as_deref(), Some(worker.id.as_str()));
    assert_eq!(row.attempts, 1);
    assert_eq!(row.jobs, BTreeMap::from([(0, json!({"job_id": "j1"}))]));
    assert!(
        state
            .finish(
                &worker,
                key,
                Outcome::Done {
                    provider: "fal-ai".into()
                }
            )
            .await
            .unwrap()
    );
    let row = state.item("video_a").await.unwrap().unwrap();
    assert_eq!((row.state, row.provider.as_deref()), (ItemState::Done, Some("fal-ai")));
    assert!(row.finished_at.is_some());
    // Ids are exact (no case folding, no patterns), and of this batch only.
    assert!(state.item("VIDEO_A").await.unwrap().is_none());
    assert!(state.item("video_%").await.unwrap().is_none());
    let other = env.open().await;
    other.open_batch(&identity("/other", "fp-1"), &json!({})).await.unwrap();
    assert!(other.item("video_a").await.unwrap().is_none());
}

async fn pages(env: Env) {
    let state = env.batch("/serve").await;
    // An empty batch: empty pages.
    assert!(state.items_page(None, 10, false).await.unwrap().is_empty());
    assert!(state.items_page(None, 10, true).await.unwrap().is_empty());
    for i in 0..7 {
        let mut item = video(&format!("v{i}"));
        if i == 3 {
            item.invalid = Some(json!({"code": "invalid_json", "message": "not JSON"}));
        }
        state.append_item(item).await.unwrap();
    }
    let page = |after: Option<&'static str>, limit: usize, descending: bool| {
        let state = state.clone();
        async move {
            let rows = state.items_page(after, limit, descending).await.unwrap();
            rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>()
        }
    };
    // Ascending, three at a time, to the end.
    assert_eq!(page(None, 3, false).await, ["v0", "v1", "v2"]);
    assert_eq!(page(Some("v2"), 3, false).await, ["v3", "v4", "v5"]);
    assert_eq!(page(Some("v5"), 3, false).await, ["v6"]);
    assert!(page(Some("v6"), 3, false).await.is_empty());
    // Descending: newest first.
    assert_eq!(page(None, 3, true).await, ["v6", "v5", "v4"]);
    assert_eq!(page(Some("v4"), 3, true).await, ["v3", "v2", "v1"]);
    assert_eq!(page(Some("v1"), 3, true).await, ["v0"]);
    assert!(page(Some("v0"), 3, true).await.is_empty());
    // A limit beyond the end, and a limit of 0.
    assert_eq!(page(None, 100, false).await.len(), 7);
    assert_eq!(page(Some("v4"), 100, true).await, ["v3", "v2", "v1", "v0"]);
    assert!(page(None, 0, false).await.is_empty());
    // The bad line is a row like the others, whole.
    let rows = state.items_page(Some("v2"), 1, false).await.unwrap();
    assert_eq!(rows[0].state, ItemState::Failed);
    assert_eq!(rows[0].error_kind.as_deref(), Some(INVALID_LINE));
    assert_eq!(rows[0].position, 3);
    // An unknown `after`, even with a limit of 0.
    for limit in [0, 3] {
        let error = state.items_page(Some("nope"), limit, false).await.unwrap_err();
        assert!(
            matches!(&error, BatchError::UnknownItem { id } if id == "nope"),
            "{error:?}"
        );
        assert_eq!(error.code(), "unknown_item");
        assert!(error.to_string().contains("`nope`"), "{error}");
    }
    // A deleted item is skipped, and is an unknown `after` from then on.
    state.delete_item("v1").await.unwrap().unwrap();
    assert_eq!(page(None, 3, false).await, ["v0", "v2", "v3"]);
    assert_eq!(page(Some("v2"), 3, true).await, ["v0"]);
    assert!(matches!(
        state.items_page(Some("v1"), 3, true).await,
        Err(BatchError::UnknownItem { .. })
    ));
    // Items appended while a listing goes on come at the end.
    state.append_item(video("v7")).await.unwrap();
    assert_eq!(page(Some("v5"), 3, false).await, ["v6", "v7"]);
    assert_eq!(page(None, 2, true).await, ["v7", "v6"]);
}

async fn delete_item(env: Env) {
    let state = env.batch("/serve").await;
    assert!(state.delete_item("video_a").await.unwrap().is_none());
    for id in ["video_a", "video_b", "video_c"] {
        state.append_item(video(id)).await.unwrap();
    }
    let holder = WorkerId::current();
    let claimed = state.claim(&holder, 2, LONG).await.unwrap();
    let (a, b) = (claimed[0].key, claimed[1].key);
    assert_eq!(claimed[1].id, "video_b");
    let ticket = json!({"provider": "fal-ai", "job_id": "req-1"});
    assert!(state.record_job(&holder, b, 0, &ticket).await.unwrap());
    assert!(
        state
            .record_media(&holder, a, 0, &json!({"file": "video_a-0.mp4"}))
            .await
            .unwrap()
    );
    // The running item, deleted by another process: what it was comes back, tickets and lease included.
    let other = env.batch("/serve").await;
    let deleted = other.delete_item("video_b").await.unwrap().unwrap();
    assert_eq!((deleted.key, deleted.id.as_str()), (b, "video_b"));
    assert_eq!(deleted.state, ItemState::Running);
    assert_eq!(deleted.lease_owner.as_deref(), Some(holder.id.as_str()));
    assert_eq!(deleted.jobs, BTreeMap::from([(0, ticket.clone())]));
    assert_eq!(deleted.spec, video("video_b").spec);
    assert!(state.item("video_b").await.unwrap().is_none());
    assert!(other.delete_item("video_b").await.unwrap().is_none());
    assert_eq!(ids(&scan(&*state).await), ["video_a", "video_c"]);
    // The holder learns it lost it, and none of its writes lands anywhere.
    assert_eq!(state.renew(&holder, &[a, b], LONG).await.unwrap(), [b]);
    assert!(!state.record_job(&holder, b, 0, &ticket).await.unwrap());
    assert!(
        !state
            .record_media(&holder, b, 0, &json!({"file": "video_b-0.mp4"}))
            .await
            .unwrap()
    );
    assert!(
        !state
            .finish(
                &holder,
                b,
                Outcome::Done {
                    provider: "fal-ai".into()
                }
            )
            .await
            .unwrap()
    );
    state.release(&holder, &[b]).await.unwrap();
    let counts = state.counts().await.unwrap();
    assert_eq!((counts.running, counts.pending, counts.done), (1, 1, 0));
    assert!(
        scan(&*state)
            .await
            .iter()
            .all(|r| r.id != "video_b" && r.jobs.is_empty())
    );
    // A done item with its media: the records come back for the caller to remove the files.
    assert!(
        state
            .finish(
                &holder,
                a,
                Outcome::Done {
                    provider: "fal-ai".into()
                }
            )
            .await
            .unwrap()
    );
    let deleted = state.delete_item("video_a").await.unwrap().unwrap();
    assert_eq!(deleted.state, ItemState::Done);
    assert_eq!(deleted.media, BTreeMap::from([(0, json!({"file": "video_a-0.mp4"}))]));
    // The last item deleted: its position is not handed out again.
    let c = state.item("video_c").await.unwrap().unwrap().key;
    assert_eq!(c, ItemKey(2));
    assert_eq!(state.delete_item("video_c").await.unwrap().unwrap().key, c);
    assert_eq!(state.counts().await.unwrap().total(), 0);
    let d = state.append_item(video("video_d")).await.unwrap();
    assert_eq!(d, ItemKey(3));
    // A deleted id may be used again, as a new item.
    let b_again = state.append_item(video("video_b")).await.unwrap();
    assert_eq!(b_again, ItemKey(4));
    let claimed = state.claim(&holder, 10, LONG).await.unwrap();
    assert_eq!(claimed.iter().map(|c| c.key).collect::<Vec<_>>(), [d, b_again]);
    assert!(
        claimed
            .iter()
            .all(|c| c.attempts == 1 && c.jobs.is_empty() && c.media.is_empty())
    );
}

async fn claims_follow_appends(env: Env) {
    let state = env.batch("/serve").await;
    let replica = env.batch("/serve").await;
    let (w1, w2) = (WorkerId::current(), WorkerId::current());
    for id in ["v0", "v1", "v2"] {
        state.append_item(video(id)).await.unwrap();
    }
    let first = state.claim(&w1, 1, LONG).await.unwrap();
    assert_eq!(first.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["v0"]);
    replica.append_item(video("v3")).await.unwrap();
    state.append_item(video("v4")).await.unwrap();
    let next = replica.claim(&w2, 3, LONG).await.unwrap();
    assert_eq!(
        next.iter().map(|c| (c.id.as_str(), c.position)).collect::<Vec<_>>(),
        [("v1", 1), ("v2", 2), ("v3", 3)]
    );
    let last = state.claim(&w1, 10, LONG).await.unwrap();
    assert_eq!(last.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["v4"]);
    assert!(replica.claim(&w2, 10, LONG).await.unwrap().is_empty());
}
