//! Fetching a finished media: a plain GET of its URL (or decoding a `data:` URL), as a byte stream.

use bytes::Bytes;
use futures::StreamExt;
use url::Url;

use crate::{ByteStream, ProviderError};

use super::request::{Target, check_status, network, stream_error};

/// Downloads a media URL with a plain GET: no credentials, whatever the host. `data:` URLs are decoded
/// in place. Returns the byte stream and the claimed MIME type.
///
/// The URL is a [`Target::Media`]: a 404 is an invalid answer of `provider` (it named a media that is not
/// there), never its "model not supported"; other statuses keep their meaning (5xx and 429 are retried).
pub async fn download(
    http: &reqwest::Client,
    provider: &str,
    url: &Url,
) -> Result<(ByteStream, Option<String>), ProviderError> {
    if url.scheme() == "data" {
        let (bytes, mime) = decode_data_url(provider, url)?;
        let stream: ByteStream = futures::stream::once(async move { Ok(bytes) }).boxed();
        return Ok((stream, Some(mime)));
    }
    let response = http.get(url.clone()).send().await.map_err(|e| network(provider, &e))?;
    let response = check_status(provider, Target::Media, response).await?;
    let mime = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((body_stream(provider, response), mime))
}

/// The bytes and MIME type of a `data:` URL.
fn decode_data_url(provider: &str, url: &Url) -> Result<(Bytes, String), ProviderError> {
    let data = data_url::DataUrl::process(url.as_str())
        .map_err(|e| ProviderError::invalid_response(provider, format!("the data URL is malformed: {e:?}")))?;
    let mime = data.mime_type().to_string();
    let (bytes, _) = data.decode_to_vec().map_err(|e| {
        ProviderError::invalid_response(provider, format!("the data URL's base64 could not be decoded: {e:?}"))
    })?;
    Ok((Bytes::from(bytes), mime))
}

/// A response body as a [`ByteStream`]; a broken or stalled body ends it with a
/// [`StreamError`](crate::StreamError).
pub fn body_stream(provider: &str, response: reqwest::Response) -> ByteStream {
    let provider = provider.to_owned();
    response
        .bytes_stream()
        .map(move |chunk| chunk.map_err(|e| stream_error(&provider, &e)))
        .boxed()
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;

    async fn collect(stream: ByteStream) -> Vec<u8> {
        let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
        chunks.concat()
    }

    #[tokio::test]
    async fn data_urls_are_decoded_without_a_request() {
        let url = Url::parse("data:image/png;base64,aGVsbG8=").unwrap();
        let (stream, mime) = download(&reqwest::Client::new(), "fal-ai", &url).await.unwrap();
        assert_eq!(collect(stream).await, b"hello");
        assert_eq!(mime.as_deref(), Some("image/png"));
        let bad = Url::parse("data:image/png;base64,%%%").unwrap();
        assert!(matches!(
            download(&reqwest::Client::new(), "fal-ai", &bad).await,
            Err(ProviderError::InvalidResponse { ref provider, .. }) if provider == "fal-ai"
        ));
    }

    #[tokio::test]
    async fn media_urls_are_fetched_and_a_missing_media_is_an_invalid_answer() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/cdn/a.png"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(b"png".to_vec(), "image/png"))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/cdn/busy.png"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&server)
            .await;
        let http = reqwest::Client::new();
        let url = |p: &str| Url::parse(&format!("{}{p}", server.uri())).unwrap();
        let (stream, mime) = download(&http, "replicate", &url("/cdn/a.png")).await.unwrap();
        assert_eq!(
            (collect(stream).await, mime.as_deref()),
            (b"png".to_vec(), Some("image/png"))
        );
        let err = download(&http, "replicate", &url("/cdn/gone.png")).await.err().unwrap();
        assert!(!err.is_model_not_supported(), "{err:?}");
        assert!(
            matches!(err, ProviderError::InvalidResponse { ref reason, .. } if reason.contains("HTTP 404")),
            "{err:?}"
        );
        let err = download(&http, "replicate", &url("/cdn/busy.png")).await.err().unwrap();
        assert!(err.is_retryable() && err.status() == Some(503), "{err:?}");
    }
}
