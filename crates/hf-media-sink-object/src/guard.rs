//! [`Guard`]: what a store that does not reach its end must undo, undone on error (awaited) or on
//! drop (spawned onto the runtime, since `Drop` cannot await).

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt as _;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt as _, PutPayload};
use tokio::task::{JoinHandle, JoinSet};

use crate::error::{is_a_folder, may_have_written};

/// An open multipart upload and its parts in flight.
struct OpenUpload {
    upload: Box<dyn MultipartUpload>,
    parts: JoinSet<object_store::Result<()>>,
}

impl OpenUpload {
    fn new(upload: Box<dyn MultipartUpload>) -> Self {
        Self {
            upload,
            parts: JoinSet::new(),
        }
    }
}

/// What a step (a request that publishes or opens something) left behind.
pub(crate) struct StepOutcome {
    /// A multipart upload to abort if the store does not finish: the one just opened, or one whose
    /// completion failed.
    open: Option<Box<dyn MultipartUpload>>,
    /// Whether the step's key may now hold an object of ours.
    wrote: bool,
    /// How the request went.
    result: object_store::Result<()>,
}

impl StepOutcome {
    /// The outcome of a put (or of a completion without an upload to abort).
    pub(crate) fn put<T>(result: object_store::Result<T>) -> Self {
        match result {
            Ok(_) => Self {
                open: None,
                wrote: true,
                result: Ok(()),
            },
            Err(e) => Self {
                open: None,
                wrote: may_have_written(&e),
                result: Err(e),
            },
        }
    }

    /// The outcome of opening a multipart upload.
    pub(crate) fn opened(result: object_store::Result<Box<dyn MultipartUpload>>) -> Self {
        match result {
            Ok(upload) => Self {
                open: Some(upload),
                wrote: false,
                result: Ok(()),
            },
            Err(e) => Self {
                open: None,
                wrote: false,
                result: Err(e),
            },
        }
    }

    /// The outcome of completing `upload`.
    fn completed<T>(upload: Box<dyn MultipartUpload>, result: object_store::Result<T>) -> Self {
        match result {
            Ok(_) => Self {
                open: None,
                wrote: true,
                result: Ok(()),
            },
            Err(e) => Self {
                open: Some(upload),
                wrote: may_have_written(&e),
                result: Err(e),
            },
        }
    }
}

/// A step running as its own task, on `key`.
struct Step {
    handle: JoinHandle<StepOutcome>,
    key: Path,
    /// Objects to clear too if the step wrote (see [`Guard::step_replacing`]).
    also: Vec<Path>,
}

/// Everything to undo.
#[derive(Default)]
struct Undo {
    upload: Option<OpenUpload>,
    step: Option<Step>,
    published: Vec<Path>,
    /// Objects of a keyed store's key that go with its media once that may have been replaced (its
    /// sidecar, its other formats): deleted in one request where the store can.
    cleared: Vec<Path>,
}

impl Undo {
    fn is_empty(&self) -> bool {
        self.upload.is_none() && self.step.is_none() && self.published.is_empty() && self.cleared.is_empty()
    }

    /// Undoes: waits for a running step and undoes what it did, aborts the open upload (its part
    /// tasks first), deletes what was published, then what is to be cleared. Best effort: failures
    /// are ignored (the parts of an upload whose abort failed stay invisible, for a lifecycle rule
    /// to reclaim).
    async fn run(self, store: &dyn ObjectStore) {
        let Self {
            upload,
            step,
            mut published,
            mut cleared,
        } = self;
        if let Some(step) = step {
            let wrote = match step.handle.await {
                Ok(outcome) => {
                    if let Some(mut upload) = outcome.open {
                        let _ = upload.abort().await;
                    }
                    outcome.wrote
                }
                // The task panicked or the runtime is shutting down: whether it wrote is unknown.
                Err(_) => true,
            };
            if wrote {
                published.push(step.key);
                cleared.extend(step.also);
            }
        }
        if let Some(mut open) = upload {
            open.parts.shutdown().await;
            let _ = open.upload.abort().await;
        }
        for key in published {
            let _ = store.delete(&key).await;
        }
        if !cleared.is_empty() {
            let _ = delete_all(store, cleared).await;
        }
    }
}

/// Deletes `keys` with the store's bulk delete (one request for up to 1,000 keys on S3), a missing
/// object (or a folder of local files, which holds no object of that name) counting as deleted; the
/// first other error, once every deletion was tried.
pub(crate) async fn delete_all(store: &dyn ObjectStore, keys: Vec<Path>) -> object_store::Result<()> {
    let keys = futures::stream::iter(keys.into_iter().map(Ok)).boxed();
    let mut results = store.delete_stream(keys);
    let mut first_error = None;
    while let Some(result) = results.next().await {
        match result {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) if is_a_folder(&e) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// What a store in progress must undo if it does not reach its end: an open multipart upload (to
/// abort), a request in flight (to wait for, then undo), objects already published (to delete).
///
/// On the error path, [`undo_now`](Self::undo_now) undoes, awaited. When the `store` future is
/// dropped, `Drop` spawns the same undo onto the Tokio runtime. [`disarm`](Self::disarm) once the
/// store succeeded.
///
/// Requests that publish (a put, the completion of an upload) run as their own tasks
/// ([`step`](Self::step)): a dropped `store` does not cut them off midway, where whether they
/// wrote would be unknown; the undo waits for them and deletes what they wrote.
pub(crate) struct Guard {
    store: Arc<dyn ObjectStore>,
    undo: Undo,
}

impl Guard {
    pub(crate) fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            undo: Undo::default(),
        }
    }

    /// Runs `task` (a request on `key`) as its own task and waits for it. Afterwards, the guard
    /// holds what it left to undo: the upload it opened, or failed to complete; the object it
    /// wrote (or may have written).
    pub(crate) async fn step<F>(&mut self, key: &Path, task: F) -> object_store::Result<()>
    where
        F: Future<Output = StepOutcome> + Send + 'static,
    {
        self.step_replacing(key, Vec::new(), task).await
    }

    /// [`step`](Self::step) for a request that may replace what `key` held (a keyed store): once it
    /// wrote (or may have written), undoing deletes the objects `also` too (the key's sidecar and its
    /// other formats), so that an undone keyed store leaves its key empty rather than half old, half
    /// new.
    pub(crate) async fn step_replacing<F>(&mut self, key: &Path, also: Vec<Path>, task: F) -> object_store::Result<()>
    where
        F: Future<Output = StepOutcome> + Send + 'static,
    {
        let handle = tokio::spawn(task);
        let step = self.undo.step.insert(Step {
            handle,
            key: key.clone(),
            also,
        });
        let joined = (&mut step.handle).await;
        let also = self.undo.step.take().map(|step| step.also).unwrap_or_default();
        let (wrote, result) = match joined {
            Ok(outcome) => {
                if let Some(upload) = outcome.open {
                    self.undo.upload = Some(OpenUpload::new(upload));
                }
                (outcome.wrote, outcome.result)
            }
            Err(join) => (true, Err(join.into())),
        };
        if wrote {
            self.undo.published.push(key.clone());
            self.undo.cleared.extend(also);
        }
        result
    }

    /// Sends `part` of the open upload, once fewer than `max_in_flight` parts are in flight.
    pub(crate) async fn put_part(&mut self, part: PutPayload, max_in_flight: usize) -> object_store::Result<()> {
        let open = self.open()?;
        while open.parts.len() >= max_in_flight.max(1) {
            if let Some(done) = open.parts.join_next().await {
                done??;
            }
        }
        let upload = open.upload.put_part(part);
        open.parts.spawn(upload);
        Ok(())
    }

    /// Waits for every part in flight.
    pub(crate) async fn finish_parts(&mut self) -> object_store::Result<()> {
        let open = self.open()?;
        while let Some(done) = open.parts.join_next().await {
            done??;
        }
        Ok(())
    }

    /// Completes the open upload (all its parts sent) at `key`: the one atomic step that makes the
    /// object visible. Afterwards the guard holds the object, to delete, or the upload, to abort;
    /// and `also`, to delete, as [`step_replacing`](Self::step_replacing) says.
    pub(crate) async fn complete(&mut self, key: &Path, also: Vec<Path>) -> object_store::Result<()> {
        self.finish_parts().await?;
        let Some(OpenUpload { mut upload, .. }) = self.undo.upload.take() else {
            return Err(no_upload());
        };
        self.step_replacing(key, also, async move {
            let result = upload.complete().await;
            StepOutcome::completed(upload, result)
        })
        .await
    }

    /// Undoes everything now, awaited. The guard is left with nothing to undo.
    pub(crate) async fn undo_now(&mut self) {
        let undo = std::mem::take(&mut self.undo);
        undo.run(self.store.as_ref()).await;
    }

    /// The store succeeded: nothing to undo.
    pub(crate) fn disarm(&mut self) {
        self.undo = Undo::default();
    }

    fn open(&mut self) -> object_store::Result<&mut OpenUpload> {
        self.undo.upload.as_mut().ok_or_else(no_upload)
    }
}

fn no_upload() -> object_store::Error {
    object_store::Error::Generic {
        store: "hf-media-sink-object",
        source: "no multipart upload is open".into(),
    }
}

impl Drop for Guard {
    /// The `store` future was dropped midway: `Drop` cannot await, so the undo is spawned onto the
    /// runtime (without one, nothing can be done: an unfinished upload's parts stay invisible).
    fn drop(&mut self) {
        if self.undo.is_empty() {
            return;
        }
        let undo = std::mem::take(&mut self.undo);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let store = Arc::clone(&self.store);
            runtime.spawn(async move { undo.run(store.as_ref()).await });
        }
    }
}
