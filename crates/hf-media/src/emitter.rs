//! The one place events leave a generation: typed methods instead of channel sends scattered over the
//! code, and the last line of defence of the secrets (every text that came from the network is scrubbed
//! here before it becomes an event).

use std::sync::Arc;
use std::time::Duration;

use hf_media_provider::{
    JobTicket, NoticeReporter, ProviderError, ProviderNotice, ProviderStatus, RetryNotice, Secrets,
};
use hf_media_sink::MediaLocation;
use tokio::sync::mpsc;

use crate::{Error, GeneratedMedia, GenerationEvent};

/// Sends the events of one request (`task: None`) or of one of its generations.
#[derive(Clone)]
pub(crate) struct Emitter {
    tx: mpsc::UnboundedSender<GenerationEvent>,
    task: Option<usize>,
    secrets: Secrets,
}

impl Emitter {
    /// The request's emitter.
    pub(crate) fn new(tx: mpsc::UnboundedSender<GenerationEvent>, secrets: Secrets) -> Self {
        Emitter {
            tx,
            task: None,
            secrets,
        }
    }

    /// The emitter of generation `task`.
    pub(crate) fn for_task(&self, task: usize) -> Emitter {
        Emitter {
            task: Some(task),
            ..self.clone()
        }
    }

    /// The generation this emitter speaks for (0 for request-level events that need one).
    fn task(&self) -> usize {
        self.task.unwrap_or_default()
    }

    fn send(&self, event: GenerationEvent) {
        // The receiver is gone only when the stream was dropped, and then everything is being cancelled.
        let _ = self.tx.send(event);
    }

    fn clean(&self, text: &str) -> String {
        self.secrets.scrub(text).into_owned()
    }

    /// The generation is asking `provider`.
    pub(crate) fn attempt(&self, provider: &str, provider_id: &str) {
        self.send(GenerationEvent::Attempt {
            task: self.task(),
            provider: provider.to_owned(),
            provider_id: provider_id.to_owned(),
        });
    }

    /// A passing failure of `provider` (or of the Hub, with `None`) is tried again.
    pub(crate) fn retry(&self, provider: Option<&str>, notice: &RetryNotice) {
        tracing::info!(
            task = self.task,
            provider,
            stage = %notice.stage,
            attempt = notice.attempt,
            delay = ?notice.delay,
            status = ?notice.status,
            "transient failure, trying again"
        );
        self.send(GenerationEvent::Retry {
            task: self.task,
            provider: provider.map(str::to_owned),
            stage: notice.stage,
            attempt: notice.attempt,
            delay: notice.delay,
            status: notice.status,
            message: self.clean(&notice.message),
        });
    }

    /// `error`'s provider failed; the next one is tried.
    pub(crate) fn fallback(&self, error: &ProviderError) {
        let message = self.clean(&error.message());
        tracing::warn!(task = self.task, provider = error.provider(), %message, "provider failed, trying the next one");
        self.send(GenerationEvent::Fallback {
            task: self.task(),
            provider: error.provider().to_owned(),
            status: error.status(),
            message,
        });
    }

    /// Something was skipped or looks wrong; the generation goes on.
    pub(crate) fn warning(&self, message: impl AsRef<str>) {
        self.send(GenerationEvent::Warning {
            task: self.task,
            message: self.clean(message.as_ref()),
        });
    }

    /// A provider's own report on a pending job.
    pub(crate) fn status(&self, provider: &str, status: ProviderStatus) {
        let status = ProviderStatus {
            job_id: status.job_id.map(|id| self.clean(&id)),
            state: self.clean(&status.state),
            queue_position: status.queue_position,
        };
        self.send(GenerationEvent::ProviderStatus {
            task: self.task(),
            provider: provider.to_owned(),
            status,
        });
    }

    /// `provider` accepted the generation's job.
    pub(crate) fn accepted(&self, provider: &str, mut job: JobTicket) {
        self.secrets.scrub_string(&mut job.job_id);
        self.secrets.scrub_json(&mut job.data);
        self.send(GenerationEvent::Accepted {
            task: self.task(),
            provider: provider.to_owned(),
            job,
        });
    }

    /// A media is ready.
    pub(crate) fn media(&self, mut media: GeneratedMedia) {
        if let Some(response) = &mut media.provider_response {
            self.secrets.scrub_json(response);
        }
        // A provider may put a key into its media URL's query: the URL is downloaded as it came, but
        // reported scrubbed.
        if let Some(url) = &mut media.source_url {
            self.secrets.scrub_string(url);
        }
        if let MediaLocation::Url(url) = &mut media.location {
            self.secrets.scrub_string(url);
        }
        self.secrets.scrub_string(&mut media.mime);
        self.send(GenerationEvent::Media(Box::new(media)));
    }

    /// The generation (or, request-level, the whole request) failed.
    pub(crate) fn error(&self, error: Error) {
        let error = error.scrubbed(&self.secrets);
        tracing::warn!(task = self.task, %error, "generation failed");
        self.send(GenerationEvent::Error { task: self.task, error });
    }

    /// A tick while waiting.
    pub(crate) fn progress(&self, elapsed: Duration, done: usize, total: usize) {
        self.send(GenerationEvent::Progress { elapsed, done, total });
    }

    /// Everything is finished.
    pub(crate) fn done(&self, succeeded: usize, failed: usize, elapsed: Duration) {
        self.send(GenerationEvent::Done {
            succeeded,
            failed,
            elapsed,
        });
    }

    /// Where `provider` sends its notices (job status, warnings, retries inside its job).
    pub(crate) fn reporter(&self, provider: &str) -> NoticeReporter {
        let emitter = self.clone();
        let provider = provider.to_owned();
        Arc::new(move |notice| match notice {
            ProviderNotice::Status(status) => emitter.status(&provider, status),
            ProviderNotice::Warning(message) => emitter.warning(message),
            ProviderNotice::Retry(notice) => emitter.retry(Some(&provider), &notice),
            ProviderNotice::Accepted { job } => emitter.accepted(&provider, job),
            _ => {}
        })
    }
}
