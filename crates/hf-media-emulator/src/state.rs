//! The emulator's shared state: behaviours, queued jobs, served files, request counts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;

use crate::behaviour::{FaultRule, FaultTarget, ProviderBehaviour};
use crate::catalogue::CatalogueModel;

/// How many rendered files keep their bytes; older ones are rendered again from their recipe when they are
/// downloaded (rendering is deterministic), so a long batch resumed much later still finds its media.
const MAX_FILES: usize = 1024;
/// How many hosted input images are kept before the oldest are forgotten.
const MAX_INPUTS: usize = 256;

/// A rendered media, served from the file route.
#[derive(Debug, Clone)]
pub(crate) struct StoredFile {
    /// The provider that made it (download faults are the provider's).
    pub provider: &'static str,
    pub bytes: Bytes,
    pub mime: &'static str,
}

/// How a file was rendered, to render it again once its bytes were dropped.
#[derive(Debug, Clone)]
pub(crate) struct Recipe {
    /// The task (image or video).
    pub task: String,
    pub ask: crate::support::MediaAsk,
    pub format: crate::media::ImageFormat,
}

/// A file: its bytes while they are cached, and how to make them again.
#[derive(Debug, Clone)]
struct FileEntry {
    provider: &'static str,
    mime: &'static str,
    bytes: Option<Bytes>,
    recipe: Option<Recipe>,
}

/// What a download finds.
pub(crate) enum Found {
    /// The bytes.
    File(StoredFile),
    /// Only the recipe: render it, then [`State::recache`].
    Recipe(&'static str, Recipe),
}

/// A queued job of an asynchronous provider.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub provider: &'static str,
    pub created: Instant,
    pub polls: u32,
    /// The rendered media's file id.
    pub file_id: String,
    /// Provider-specific data (the submitted body, the task).
    pub data: Value,
}

/// A hosted input image: its bytes and MIME type.
pub(crate) type HostedInput = (Bytes, String);

/// Where a job is.
#[derive(Debug, Clone)]
pub(crate) enum JobState {
    /// Still pending; `polls` status requests were answered so far (this one included).
    Pending { polls: u32 },
    /// Done.
    Done,
}

#[derive(Default)]
pub(crate) struct State {
    pub catalogue: Vec<CatalogueModel>,
    behaviours: RwLock<HashMap<String, ProviderBehaviour>>,
    fault_hits: Mutex<HashMap<String, u32>>,
    jobs: Mutex<HashMap<String, Job>>,
    /// Every file by id, and the ids whose bytes are cached, oldest first.
    files: Mutex<(HashMap<String, FileEntry>, VecDeque<String>)>,
    /// Input images hosted for tests under `/_emulator/inputs/{name}`: bytes and MIME type.
    inputs: Mutex<(HashMap<String, HostedInput>, VecDeque<String>)>,
    next_id: AtomicU64,
    stats: Mutex<BTreeMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl State {
    pub fn new(catalogue: Vec<CatalogueModel>) -> Self {
        State {
            catalogue,
            ..State::default()
        }
    }

    pub fn behaviour(&self, provider: &str) -> ProviderBehaviour {
        self.behaviours
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(provider)
            .cloned()
            .unwrap_or_default()
    }

    pub fn set_behaviour(&self, provider: &str, behaviour: ProviderBehaviour) {
        self.behaviours
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(provider.to_owned(), behaviour);
        lock(&self.fault_hits).remove(provider);
    }

    pub fn reset(&self) {
        self.behaviours.write().unwrap_or_else(|p| p.into_inner()).clear();
        lock(&self.fault_hits).clear();
        lock(&self.stats).clear();
    }

    /// Whether the provider's fault hits this request; counts the hit.
    pub fn fault_for(&self, provider: &str, target: FaultTarget) -> Option<FaultRule> {
        let rule = self.behaviour(provider).fault?;
        if rule.target != FaultTarget::Any && rule.target != target {
            return None;
        }
        if let Some(p) = rule.probability
            && fastrand::f64() >= p
        {
            return None;
        }
        let mut hits = lock(&self.fault_hits);
        let count = hits.entry(provider.to_owned()).or_insert(0);
        if rule.times.is_some_and(|times| *count >= times) {
            return None;
        }
        *count += 1;
        Some(rule)
    }

    pub fn new_id(&self, prefix: &str) -> String {
        format!("{prefix}{:06}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    pub fn count(&self, key: impl Into<String>) {
        *lock(&self.stats).entry(key.into()).or_insert(0) += 1;
    }

    pub fn stats(&self) -> BTreeMap<String, u64> {
        lock(&self.stats).clone()
    }

    pub fn store_file(&self, provider: &'static str, bytes: Bytes, mime: &'static str) -> String {
        self.keep_file(provider, bytes, mime, None)
    }

    /// Keeps a rendered file with the recipe that made it: its bytes may be dropped later, never the file.
    pub fn store_rendered(&self, provider: &'static str, bytes: Bytes, mime: &'static str, recipe: Recipe) -> String {
        self.keep_file(provider, bytes, mime, Some(recipe))
    }

    fn keep_file(&self, provider: &'static str, bytes: Bytes, mime: &'static str, recipe: Option<Recipe>) -> String {
        let id = self.new_id("f");
        let mut files = lock(&self.files);
        files.0.insert(
            id.clone(),
            FileEntry {
                provider,
                mime,
                bytes: Some(bytes),
                recipe,
            },
        );
        files.1.push_back(id.clone());
        Self::evict(&mut files);
        id
    }

    /// Drops the oldest cached bytes past [`MAX_FILES`]: a file with a recipe stays (it is rendered again
    /// when asked for), one without is forgotten.
    fn evict(files: &mut (HashMap<String, FileEntry>, VecDeque<String>)) {
        while files.1.len() > MAX_FILES {
            let Some(old) = files.1.pop_front() else { break };
            let keep = match files.0.get_mut(&old) {
                Some(entry) if entry.recipe.is_some() => {
                    entry.bytes = None;
                    true
                }
                _ => false,
            };
            if !keep {
                files.0.remove(&old);
            }
        }
    }

    /// The file `id`: its bytes, or the recipe to render it again.
    pub fn find_file(&self, id: &str) -> Option<Found> {
        let files = lock(&self.files);
        let entry = files.0.get(id)?;
        match (&entry.bytes, &entry.recipe) {
            (Some(bytes), _) => Some(Found::File(StoredFile {
                provider: entry.provider,
                bytes: bytes.clone(),
                mime: entry.mime,
            })),
            (None, Some(recipe)) => Some(Found::Recipe(entry.provider, recipe.clone())),
            (None, None) => None,
        }
    }

    /// Puts the bytes of file `id`, rendered again, back in the cache.
    pub fn recache(&self, id: &str, bytes: Bytes) {
        let mut files = lock(&self.files);
        if let Some(entry) = files.0.get_mut(id)
            && entry.bytes.is_none()
        {
            entry.bytes = Some(bytes);
            files.1.push_back(id.to_owned());
            Self::evict(&mut files);
        }
    }

    /// The file `id` when its bytes are at hand (inputs hosted on the emulator).
    pub fn file(&self, id: &str) -> Option<StoredFile> {
        match self.find_file(id)? {
            Found::File(file) => Some(file),
            Found::Recipe(..) => None,
        }
    }

    /// Hosts an input image under `name` (replacing one of the same name).
    pub fn host_input(&self, name: &str, bytes: Bytes, mime: String) {
        let mut inputs = lock(&self.inputs);
        if inputs.0.insert(name.to_owned(), (bytes, mime)).is_none() {
            inputs.1.push_back(name.to_owned());
        }
        while inputs.1.len() > MAX_INPUTS {
            if let Some(old) = inputs.1.pop_front() {
                inputs.0.remove(&old);
            }
        }
    }

    /// A hosted input image: its bytes and MIME type.
    pub fn input(&self, name: &str) -> Option<HostedInput> {
        lock(&self.inputs).0.get(name).cloned()
    }

    pub fn create_job(&self, provider: &'static str, file_id: String, data: Value) -> String {
        let id = self.new_id(&format!("{}-", provider.replace('-', "")));
        lock(&self.jobs).insert(
            id.clone(),
            Job {
                provider,
                created: Instant::now(),
                polls: 0,
                file_id,
                data,
            },
        );
        id
    }

    pub fn job(&self, provider: &str, id: &str) -> Option<Job> {
        lock(&self.jobs).get(id).filter(|job| job.provider == provider).cloned()
    }

    /// Counts a status poll and says where the job is: pending until both the provider's latency has
    /// passed and it answered `pending_polls` polls.
    pub fn poll_job(&self, provider: &str, id: &str) -> Option<(Job, JobState)> {
        let behaviour = self.behaviour(provider);
        let mut jobs = lock(&self.jobs);
        let job = jobs.get_mut(id).filter(|job| job.provider == provider)?;
        let state = if job.polls >= behaviour.pending_polls && job.created.elapsed() >= behaviour.latency {
            JobState::Done
        } else {
            job.polls += 1;
            JobState::Pending { polls: job.polls }
        };
        Some((job.clone(), state))
    }

    /// Whether a job is done, without counting a poll (result fetches).
    pub fn job_done(&self, provider: &str, id: &str) -> Option<(Job, bool)> {
        let behaviour = self.behaviour(provider);
        let job = self.job(provider, id)?;
        let done = job.polls >= behaviour.pending_polls && job.created.elapsed() >= behaviour.latency;
        Some((job, done))
    }
}
