//! Runs a state test body on both backends: an SQLite file in a temporary folder, and a throwaway
//! PostgreSQL cluster ([`TempPostgres`]; the test fails, saying how to install PostgreSQL, when it is
//! missing).

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use hf_media_batch::state::{BatchIdentity, BatchState, NewItem, StateLocation, open_state};
use hf_media_batch::testing::TempPostgres;
use serde_json::{Value, json};

/// The PostgreSQL cluster of the tests running now.
static CLUSTER: Mutex<Weak<TempPostgres>> = Mutex::new(Weak::new());

/// How many databases were made.
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// Where a test's state lives, and what keeps it alive.
#[derive(Clone)]
pub struct Env {
    pub location: StateLocation,
    pub postgres: Option<Arc<TempPostgres>>,
    _dir: Arc<tempfile::TempDir>,
}

impl Env {
    pub fn sqlite() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let path: PathBuf = dir.path().join("state").join("batch.db");
        Env {
            location: StateLocation::Sqlite(path),
            postgres: None,
            _dir: Arc::new(dir),
        }
    }

    /// A fresh database in the cluster the tests running now share (started by the first, stopped when
    /// the last one ends).
    pub async fn postgres() -> Env {
        let cluster = tokio::task::spawn_blocking(|| {
            let mut shared = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(cluster) = shared.upgrade() {
                return Ok(cluster);
            }
            let cluster = Arc::new(TempPostgres::start()?);
            *shared = Arc::downgrade(&cluster);
            Ok::<_, String>(cluster)
        })
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("cannot start PostgreSQL for the test: {e}"));
        let name = format!("test_{}", DATABASES.fetch_add(1, Ordering::Relaxed));
        let url = tokio::task::spawn_blocking({
            let cluster = cluster.clone();
            move || cluster.create_database(&name)
        })
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("cannot make a database for the test: {e}"));
        Env {
            location: StateLocation::Postgres(url),
            postgres: Some(cluster),
            _dir: Arc::new(tempfile::tempdir().expect("temp dir")),
        }
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self.location, StateLocation::Sqlite(_))
    }

    /// A new handle (a new pool: another process, as far as the database can tell).
    pub async fn open(&self) -> Arc<dyn BatchState> {
        open_state(&self.location).await.expect("open the state")
    }

    /// A new handle with the batch `key` opened.
    pub async fn batch(&self, key: &str) -> Arc<dyn BatchState> {
        let state = self.open().await;
        state
            .open_batch(&identity(key, "fp-1"), &json!({}))
            .await
            .expect("open the batch");
        state
    }
}

pub fn identity(key: &str, fingerprint: &str) -> BatchIdentity {
    BatchIdentity {
        key: key.into(),
        fingerprint: fingerprint.into(),
        input: format!("prompts-{fingerprint}.jsonl"),
    }
}

pub fn spec(i: u64) -> Value {
    json!({
        "model": "black-forest-labs/FLUX.1-schnell",
        "prompt": format!("a watercolor painting of a lighthouse in a storm, number {i}"),
        "n": 1,
        "params": {"width": 1024, "height": 768, "seed": i, "num_inference_steps": 4},
    })
}

pub fn item(position: u64) -> NewItem {
    NewItem {
        position,
        id: format!("item-{position:06}"),
        line: position + 1,
        n: 1,
        spec: spec(position),
        invalid: None,
    }
}

pub fn items(range: std::ops::Range<u64>) -> Vec<NewItem> {
    range.map(item).collect()
}

/// Runs `body` on `env`.
pub async fn run<F, Fut>(env: Env, body: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    body(env).await;
}

/// Makes `mod NAME { sqlite, postgres }`: the test body `NAME(env)` on each backend.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                $crate::state_support::run($crate::state_support::Env::sqlite(), super::$name).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                $crate::state_support::run($crate::state_support::Env::postgres().await, super::$name).await;
            }
        }
    )*};
}
