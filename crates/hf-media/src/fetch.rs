//! From a provider's answer to a stored media: the body becomes a byte stream (downloading it when the
//! provider answered with a URL) and streams into the sink. A passing failure of the download or of the
//! sink is tried again from the body (the URL again, the bytes again), never by asking the provider for
//! a second job: that one is done and paid for.

use bytes::Bytes;
use futures::StreamExt;
use hf_media_provider::{ByteStream, MediaBody, ProviderError, RetryStage, Retryable, Transience, http};
use hf_media_sink::{MediaKey, SinkError};
use url::Url;

use crate::Error;
use crate::GeneratedMedia;
use crate::emitter::Emitter;
use crate::generator::Inner;
use crate::record::Made;
use crate::replay::Replayable;
use crate::run::{AttemptFailure, Tries};

/// Where a media's bytes come from, as many times as they can be read.
enum BodySource {
    /// In memory: read again at will.
    Bytes(Bytes),
    /// A stream read once, kept as it is read so that a failed store can be replayed.
    Once(Replayable),
    /// A URL: downloaded again at will (`data:` URLs are decoded in place).
    Url(Url),
}

impl BodySource {
    fn new(body: MediaBody) -> Self {
        match body {
            MediaBody::Bytes(bytes) => BodySource::Bytes(bytes),
            MediaBody::Stream(stream) => BodySource::Once(Replayable::new(stream)),
            MediaBody::Url(url) => BodySource::Url(url),
        }
    }

    /// Whether another read gives the whole media again.
    fn replayable(&self) -> bool {
        match self {
            BodySource::Once(stream) => stream.replayable(),
            BodySource::Bytes(_) | BodySource::Url(_) => true,
        }
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
            BodySource::Once(stream) => stream.open().ok_or_else(|| ProviderError::Network {
                provider: provider.to_owned(),
                message: "the answer's body cannot be read again".into(),
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
    /// A passing failure, but the body (read once, and too long to keep or broken) cannot be read whole
    /// again: the provider must be asked again.
    Unreplayable(ProviderError),
}

impl Retryable for DeliveryFailure {
    fn transience(&self) -> Transience {
        match self {
            DeliveryFailure::Provider(error) => error.transience(),
            DeliveryFailure::Sink(error) if error.is_retryable() => Transience::Transient { retry_after: None },
            DeliveryFailure::Sink(_) | DeliveryFailure::Unreplayable(_) => Transience::Final,
        }
    }

    fn retry_status(&self) -> Option<u16> {
        match self {
            DeliveryFailure::Provider(error) | DeliveryFailure::Unreplayable(error) => error.status(),
            DeliveryFailure::Sink(_) => None,
        }
    }

    fn retry_message(&self) -> String {
        match self {
            DeliveryFailure::Provider(error) | DeliveryFailure::Unreplayable(error) => error.message(),
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
    // Downloaded as it came, recorded scrubbed (a provider may echo a key into the URL's query).
    let source_url = source.source_url().map(|url| inner.secrets.scrub(&url).into_owned());
    let outcome = inner
        .retry
        .run(
            RetryStage::Download,
            |try_number| {
                let (source, source_url) = (&source, &source_url);
                async move {
                    let stored = async {
                        let stream = source
                            .open(&inner.access.http, provider)
                            .await
                            .map_err(DeliveryFailure::Provider)?;
                        let mut record = made.record(source_url.as_deref());
                        if try_number > 1 {
                            // A failed store's undo may have left something at a fresh key (a remote
                            // sink's is best effort): the next try replaces it instead of being refused.
                            record.key = record.key.map(MediaKey::replacing);
                        }
                        inner
                            .sink
                            .store(stream, record)
                            .await
                            .map_err(|e| sink_failure(provider, e))
                    }
                    .await;
                    match stored {
                        Ok(stored) => Ok(made.stored(stored, source_url.clone())),
                        // A passing failure on a body that can no longer be read whole: the provider
                        // is asked again (a body read once is the answer of a call, not of a job).
                        Err(failure) if failure.transience() != Transience::Final && !source.replayable() => {
                            Err(DeliveryFailure::Unreplayable(match failure {
                                DeliveryFailure::Provider(error) | DeliveryFailure::Unreplayable(error) => error,
                                DeliveryFailure::Sink(error) => ProviderError::Network {
                                    provider: provider.to_owned(),
                                    message: format!("{error}; the answer cannot be stored again without asking again"),
                                },
                            }))
                        }
                        Err(failure) => Err(failure),
                    }
                }
            },
            |notice, failure| {
                let mut notice = notice.clone();
                match failure {
                    DeliveryFailure::Provider(error) | DeliveryFailure::Unreplayable(error) => tries.push_error(error),
                    DeliveryFailure::Sink(_) => notice.stage = RetryStage::Store,
                }
                emitter.retry(Some(provider), &notice);
            },
        )
        .await;
    outcome.map_err(|failure| match failure {
        DeliveryFailure::Unreplayable(error) => AttemptFailure::Provider(error),
        DeliveryFailure::Provider(error) => AttemptFailure::NotResubmitted(error),
        DeliveryFailure::Sink(error) => AttemptFailure::Fatal(Error::Sink(error)),
    })
}
