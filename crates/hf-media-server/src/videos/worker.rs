//! This process's video worker: claims queued jobs (and jobs whose replica died) under a lease, up to
//! its concurrency, runs each with the [`ItemRunner`], renews the leases while they run, cancels a job
//! another replica took over or a client deleted, and on stop puts its running jobs back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hf_media_batch::runner::{ItemEnd, ItemRunner};
use hf_media_batch::state::{BatchState, ItemKey};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How often the state is looked at for jobs other replicas queued.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// How long a failed state call waits before the next.
const STATE_BACKOFF: Duration = Duration::from_secs(1);

pub(crate) struct Worker {
    pub runner: Arc<ItemRunner>,
    pub state: Arc<dyn BatchState>,
    pub concurrency: usize,
    pub lease: Duration,
    pub progress: Arc<Mutex<HashMap<ItemKey, u8>>>,
    pub running: Arc<Mutex<HashMap<ItemKey, CancellationToken>>>,
    pub wake: Arc<Notify>,
    /// Fired when a shutdown begins: no more claims.
    pub drain: CancellationToken,
    pub stop: CancellationToken,
    pub metrics: Metrics,
}

impl Worker {
    fn running_keys(&self) -> Vec<ItemKey> {
        self.running
            .lock()
            .map(|r| r.keys().copied().collect())
            .unwrap_or_default()
    }

    fn forget(&self, key: ItemKey) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(&key);
        }
        if let Ok(mut progress) = self.progress.lock() {
            progress.remove(&key);
        }
    }

    async fn publish_counts(&self) {
        if let Ok(counts) = self.state.counts().await {
            self.metrics.video_jobs("queued", counts.pending);
            self.metrics.video_jobs("in_progress", counts.running);
            self.metrics.video_jobs("completed", counts.done);
            self.metrics.video_jobs("failed", counts.failed);
        }
    }
}

/// Runs until `stop`.
pub(crate) async fn run(worker: Worker) {
    let mut jobs: JoinSet<(ItemKey, Result<ItemEnd, hf_media_batch::BatchError>)> = JoinSet::new();
    let mut renew = tokio::time::interval((worker.lease / 3).max(Duration::from_millis(100)));
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let free = worker.concurrency.saturating_sub(jobs.len());
        if free > 0 && !worker.drain.is_cancelled() {
            match worker.state.claim(worker.runner.worker(), free, worker.lease).await {
                Ok(claimed) => {
                    for item in claimed {
                        let key = item.key;
                        let cancel = worker.stop.child_token();
                        if let Ok(mut running) = worker.running.lock() {
                            running.insert(key, cancel.clone());
                        }
                        let runner = worker.runner.clone();
                        tracing::info!(video = %item.id, attempts = item.attempts, "video job started");
                        jobs.spawn(async move { (key, runner.run(item, cancel).await) });
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "could not claim video jobs; trying again");
                    tokio::time::sleep(STATE_BACKOFF).await;
                }
            }
            worker.publish_counts().await;
        }
        tokio::select! {
            () = worker.stop.cancelled() => break,
            () = worker.wake.notified() => {}
            () = tokio::time::sleep(LOOK_EVERY) => {}
            _ = renew.tick() => {
                let keys = worker.running_keys();
                if !keys.is_empty() {
                    match worker.state.renew(worker.runner.worker(), &keys, worker.lease).await {
                        Ok(lost) => {
                            for key in lost {
                                // Taken over by another replica, or deleted: stop working on it.
                                if let Some(token) = worker.running.lock().ok().and_then(|r| r.get(&key).cloned()) {
                                    token.cancel();
                                }
                            }
                        }
                        Err(error) => tracing::warn!(%error, "could not renew the video leases"),
                    }
                }
            }
            Some(ended) = jobs.join_next(), if !jobs.is_empty() => {
                if let Ok((key, end)) = ended {
                    match &end {
                        Ok(end) => tracing::info!(?key, ?end, "video job ended"),
                        Err(error) => tracing::warn!(?key, %error, "a video job's state could not be written"),
                    }
                    worker.forget(key);
                }
                worker.publish_counts().await;
            }
        }
    }
    // Stop: every running job was cancelled with the stop token; each puts itself back.
    while let Some(ended) = jobs.join_next().await {
        if let Ok((key, _)) = ended {
            worker.forget(key);
        }
    }
}
