//! How one request is run, beyond what it asks for: which of its generations, which jobs to resume, and
//! where its media go. A batch uses it to carry on an item after a crash; a plain call needs none of it.

use std::collections::{BTreeMap, BTreeSet};

use hf_media_provider::JobTicket;
use hf_media_sink::MediaKey;

use crate::Error;

/// Options of one [`MediaGenerator::generate_with`](crate::MediaGenerator::generate_with) call. The
/// default runs every generation, submits every job, and lets the sink name the media.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RunOptions {
    /// Which of the `n` generations to run (0-based; the others are left out, as if already made):
    /// `None` runs them all. Each keeps its own seed (the request's seed plus its index).
    pub only: Option<BTreeSet<usize>>,
    /// Jobs a provider accepted earlier for some generations (their [`JobTicket`]s, reported in
    /// [`GenerationEvent::Accepted`](crate::GenerationEvent::Accepted)): such a generation polls its job
    /// with [`MediaProvider::resume`](hf_media_provider::MediaProvider::resume) instead of submitting
    /// another; if the job cannot be finished, the next provider is tried, never that one again.
    pub resume: BTreeMap<usize, JobTicket>,
    /// The sink key of the media: generation `i` is stored at `{media_key}-{i}` (see
    /// [`MediaKey`]), replacing what an earlier run stored there. `None`: the sink names them.
    pub media_key: Option<String>,
    /// Whether `media_key` is new ([fresh](MediaKey::fresh)): the caller knows nothing was stored
    /// under it (it carries random bits), so the sink creates the media without replacing or
    /// looking for anything, and a taken name fails the generation. Set by
    /// [`fresh_media_key`](Self::fresh_media_key).
    pub media_key_is_fresh: bool,
}

impl RunOptions {
    /// Runs only the generations in `only`.
    pub fn only(mut self, only: impl IntoIterator<Item = usize>) -> Self {
        self.only = Some(only.into_iter().collect());
        self
    }

    /// Resumes `job` for generation `task`.
    pub fn resume(mut self, task: usize, job: JobTicket) -> Self {
        self.resume.insert(task, job);
        self
    }

    /// Stores generation `i`'s media at `{key}-{i}`, replacing what is there.
    pub fn media_key(mut self, key: impl Into<String>) -> Self {
        self.media_key = Some(key.into());
        self.media_key_is_fresh = false;
        self
    }

    /// Stores generation `i`'s media at `{key}-{i}`, a name the caller knows is new (it carries
    /// random bits): the sink creates it, without the lookups and deletes a replacing store makes
    /// (see [`MediaKey::fresh`]).
    pub fn fresh_media_key(mut self, key: impl Into<String>) -> Self {
        self.media_key = Some(key.into());
        self.media_key_is_fresh = true;
        self
    }

    /// Whether generation `task` runs.
    pub(crate) fn runs(&self, task: usize) -> bool {
        self.only.as_ref().is_none_or(|only| only.contains(&task))
    }

    /// The sink key of generation `task`'s media, checked: a bad key is a usage error before anything
    /// is sent.
    pub(crate) fn key_for(&self, task: usize) -> Result<Option<MediaKey>, Error> {
        self.media_key
            .as_ref()
            .map(|prefix| {
                MediaKey::new(format!("{prefix}-{task}"))
                    .map(|key| if self.media_key_is_fresh { key.fresh() } else { key })
                    .map_err(|e| Error::InvalidRequest(format!("media key `{prefix}`: {e}")))
            })
            .transpose()
    }

    /// Checks the options against a request of `total` generations.
    pub(crate) fn check(&self, total: usize) -> Result<(), Error> {
        if let Some(task) = self.only.iter().flatten().find(|task| **task >= total) {
            return Err(Error::InvalidRequest(format!(
                "generation {task} was asked for, but the request has {total} (0 to {})",
                total.saturating_sub(1)
            )));
        }
        if let Some(task) = self.resume.keys().find(|task| **task >= total) {
            return Err(Error::InvalidRequest(format!(
                "a job is resumed for generation {task}, but the request has {total}"
            )));
        }
        // Every key that will be used is checked, not only the first: a longer index (`-10` after `-9`)
        // can make a key too long.
        (0..total)
            .filter(|task| self.runs(*task))
            .try_for_each(|task| self.key_for(task).map(drop))
    }
}
