//! From a provider's answer to a stored media: the body becomes a byte stream (downloading it when the
//! provider answered with a URL) and streams into the sink. A passing failure of the download or of the
//! sink is tried again from the body (the URL again, the bytes again), never by asking the provider for
//! a second job: that one is done and paid for.

use std::sync::Mutex;

use bytes::Bytes;
use futures::StreamExt;
use hf_media_provider::{ByteStream, MediaBody, ProviderError, RetryPolicy, RetryStage, Retryable, Transience, http};
use hf_media_sink::SinkError;
use url::Url;

use crate::Error;
use crate::GeneratedMedia;
use crate::emitter::Emitter;
use crate::generator::Inner;
use crate::record::Made;
use crate::run::{AttemptFailure, Tries};

/// Where a media's bytes come from, as many times as they can be read.
enum BodySource {
    /// In memory: read again at will.
    Bytes(Bytes),
    /// A stream that can be read once.
    Once(Mutex<Option<ByteStream>>),
    /// A URL: downloaded again at will (`data:` URLs are decoded in place).
    Url(Url),
}

impl BodySource {
    fn new(body: MediaBody) -> Self {
        match body {
            MediaBody::Bytes(bytes) => BodySource::Bytes(bytes),
            MediaBody::Stream(stream) => BodySource::Once(Mutex::new(Some(stream))),
            MediaBody::Url(url) => BodySource::Url(url),
        }
    }

    /// Whether a second read gives the same media.
    fn replayable(&self) -> bool {
        !matches!(self, BodySource::Once(_))
    }

    /// The URL the bytes come from, when it is worth recording (never a `data:` URL).
    fn source_url(&self) -> Option<String> {
        match self {
            BodySource::Url(url) if url.scheme() != "data" => Some(url.to_string()),
            _ => None,
        }
    }

    /// The bytes as a stream.
    async fn open(&self, http_client: &reqwest::Client, provider: &str) -> Result<ByteStream, ProviderError> {
        match self {
            BodySource::Bytes(bytes) => {
                let bytes = bytes.clone();
                Ok(futures::stream::once(async move { Ok(bytes) }).boxed())
            }
            BodySource::Once(stream) => stream
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take()
                .ok_or_else(|| ProviderError::Network {
                    provider: provider.to_owned(),
                    message: "the answer's body broke and cannot be read again".into(),
                }),
            BodySource::Url(url) => http::download(http_client, provider, url)
                .await
                .map(|(stream, _)| stream),
        }
    }
}

/// Why one delivery try failed.
enum DeliveryFailure {
    /// The download, or the bytes as they arrived (the provider's side).
    Provider(ProviderError),
    /// The sink could not store them.
    Sink(SinkError),
}

impl Retryable for DeliveryFailure {
    fn transience(&self) -> Transience {
        match self {
            DeliveryFailure::Provider(error) => error.transience(),
            DeliveryFailure::Sink(error) if error.is_retryable() => Transience::Transient { retry_after: None },
            DeliveryFailure::Sink(_) => Transience::Final,
        }
    }

    fn retry_status(&self) -> Option<u16> {
        match self {
            DeliveryFailure::Provider(error) => error.status(),
            DeliveryFailure::Sink(_) => None,
        }
    }

    fn retry_message(&self) -> String {
        match self {
            DeliveryFailure::Provider(error) => error.message(),
            DeliveryFailure::Sink(error) => error.to_string(),
        }
    }
}

/// A sink's failure, seen from the generation: a broken byte stream or bytes that are not media are the
/// provider's failure (the next provider may do better); anything else stops the generation.
fn sink_failure(provider: &str, error: SinkError) -> DeliveryFailure {
    match error {
        SinkError::Source(stream) => DeliveryFailure::Provider(if stream.is_retryable() {
            match stream.kind() {
                hf_media_sink::StreamErrorKind::Timeout => ProviderError::RequestTimeout {
                    provider: provider.to_owned(),
                    what: stream.message().to_owned(),
                },
                _ => ProviderError::Network {
                    provider: provider.to_owned(),
                    message: stream.message().to_owned(),
                },
            }
        } else {
            ProviderError::InvalidResponse {
                provider: provider.to_owned(),
                reason: stream.message().to_owned(),
            }
        }),
        error @ (SinkError::Empty | SinkError::UnrecognizedMedia { .. }) => {
            DeliveryFailure::Provider(ProviderError::InvalidResponse {
                provider: provider.to_owned(),
                reason: error.to_string(),
            })
        }
        other => DeliveryFailure::Sink(other),
    }
}

/// Stores the media of `body` (or, without downloads, reports its URL), trying passing failures again.
pub(crate) async fn deliver(
    inner: &Inner,
    made: &Made<'_>,
    body: MediaBody,
    emitter: &Emitter,
    tries: &Tries,
) -> Result<GeneratedMedia, AttemptFailure> {
    let provider = made.candidate.mapping.provider.as_str();
    if !inner.download_media {
        match &body {
            MediaBody::Url(url) if url.scheme() != "data" => return Ok(made.left_at(url.as_str())),
            _ => emitter.warning(format!(
                "{provider} answered with the media itself, not a URL: saving it to the sink"
            )),
        }
    }
    let source = BodySource::new(body);
    let source_url = source.source_url();
    // A stream read once cannot be retried here: its failure goes back to the caller as the provider's.
    let policy = if source.replayable() {
        inner.retry
    } else {
        RetryPolicy::none()
    };
    let outcome = policy
        .run(
            RetryStage::Download,
            |_| {
                let (source, source_url) = (&source, &source_url);
                async move {
                    let stream = source
                        .open(&inner.access.http, provider)
                        .await
                        .map_err(DeliveryFailure::Provider)?;
                    let record = made.record(source_url.as_deref());
                    let stored = inner
                        .sink
                        .store(stream, record)
                        .await
                        .map_err(|e| sink_failure(provider, e))?;
                    Ok(made.stored(stored, source_url.clone()))
                }
            },
            |notice, failure| {
                let mut notice = notice.clone();
                match failure {
                    DeliveryFailure::Provider(error) => tries.push_error(error),
                    DeliveryFailure::Sink(_) => notice.stage = RetryStage::Store,
                }
                emitter.retry(Some(provider), &notice);
            },
        )
        .await;
    outcome.map_err(|failure| match failure {
        DeliveryFailure::Provider(error) if !source.replayable() => AttemptFailure::Provider(error),
        DeliveryFailure::Provider(error) => AttemptFailure::Delivered(error),
        DeliveryFailure::Sink(error) => AttemptFailure::Fatal(Error::Sink(error)),
    })
}
