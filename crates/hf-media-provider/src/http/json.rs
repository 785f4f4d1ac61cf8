//! Reading JSON answers, bounded in size; large ones (base64 media) are parsed off the async workers.

use serde_json::Value;

use crate::{ProviderContext, ProviderError};

use super::request::{Target, network, send_to};

/// The most bytes of a JSON answer that are read (base64 media included).
pub const MAX_JSON_BYTES: usize = 512 * 1024 * 1024;

/// Answers larger than this are parsed on a blocking thread, off the async workers.
const PARSE_OFF_THREAD_BYTES: usize = 1024 * 1024;

/// Reads at most `limit` bytes of a body; past it, an error (or, with `truncate`, the first `limit` bytes).
pub(super) async fn read_limited(
    provider: &str,
    mut response: reqwest::Response,
    limit: usize,
    truncate: bool,
) -> Result<Vec<u8>, ProviderError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| network(provider, &e))? {
        if body.len() + chunk.len() > limit {
            if truncate {
                body.extend_from_slice(&chunk[..limit - body.len()]);
                return Ok(body);
            }
            return Err(ProviderError::invalid_response(
                provider,
                format!("the JSON answer is larger than {limit} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads a JSON answer (at most [`MAX_JSON_BYTES`]). Large answers (base64 media) are parsed on a blocking
/// thread, so that progress ticks, timers and other generations are not held up.
pub async fn read_json(provider: &str, response: reqwest::Response) -> Result<Value, ProviderError> {
    let body = read_limited(provider, response, MAX_JSON_BYTES, false).await?;
    parse(provider, body).await
}

/// Parses a JSON body, off the async workers when it is large.
async fn parse(provider: &str, body: Vec<u8>) -> Result<Value, ProviderError> {
    let invalid = |e: serde_json::Error, body: &[u8]| {
        ProviderError::invalid_response(
            provider,
            format!("the answer is not valid JSON ({e}); it starts with {:?}", preview(body)),
        )
    };
    if body.len() <= PARSE_OFF_THREAD_BYTES {
        return serde_json::from_slice(&body).map_err(|e| invalid(e, &body));
    }
    let parsed = tokio::task::spawn_blocking(move || {
        let parsed = serde_json::from_slice::<Value>(&body);
        (parsed, body)
    })
    .await;
    match parsed {
        Ok((Ok(value), _)) => Ok(value),
        Ok((Err(e), body)) => Err(invalid(e, &body)),
        Err(join) => Err(ProviderError::invalid_response(
            provider,
            format!("the answer could not be parsed: {join}"),
        )),
    }
}

/// Sends a request to a model's route ([`Target::Model`]) and reads its JSON answer.
pub async fn send_json(ctx: &ProviderContext, request: reqwest::RequestBuilder) -> Result<Value, ProviderError> {
    send_json_to(ctx, Target::Model, request).await
}

/// POSTs `body` as JSON to `path_and_query` on the context's base ([`ProviderContext::url`]), a model's
/// route ([`Target::Model`]), and reads the JSON answer: most providers' submit.
pub async fn post_json(ctx: &ProviderContext, path_and_query: &str, body: &Value) -> Result<Value, ProviderError> {
    let url = ctx.url(path_and_query)?;
    send_json(ctx, ctx.request(reqwest::Method::POST, url).json(body)).await
}

/// Sends a request to `target` (see [`Target`] for what a 404 means there) and reads its JSON answer.
pub async fn send_json_to(
    ctx: &ProviderContext,
    target: Target<'_>,
    request: reqwest::RequestBuilder,
) -> Result<Value, ProviderError> {
    let response = send_to(ctx, target, request).await?;
    read_json(ctx.provider(), response).await
}

fn preview(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned()
}

#[cfg(test)]
mod tests {
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;

    async fn answer(server: &MockServer, body: &'static [u8]) -> reqwest::Response {
        Mock::given(wiremock::matchers::any())
            .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
            .mount(server)
            .await;
        reqwest::get(server.uri()).await.unwrap()
    }

    #[tokio::test]
    async fn bodies_past_the_limit_are_an_error_or_cut() {
        let server = MockServer::start().await;
        let whole = read_limited("p", answer(&server, b"0123456789").await, 10, false)
            .await
            .unwrap();
        assert_eq!(whole, b"0123456789");
        let err = read_limited("nscale", answer(&server, b"0123456789").await, 4, false)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ProviderError::invalid_response("nscale", "the JSON answer is larger than 4 bytes")
        );
        let cut = read_limited("p", answer(&server, b"0123456789").await, 4, true)
            .await
            .unwrap();
        assert_eq!(cut, b"0123");
    }

    #[tokio::test]
    async fn small_and_large_bodies_parse_alike_and_garbage_says_how_it_starts() {
        let value = parse("p", br#"{"a": 1}"#.to_vec()).await.unwrap();
        assert_eq!(value["a"], 1);
        let mut large = br#"{"data": ""#.to_vec();
        large.resize(PARSE_OFF_THREAD_BYTES + 10, b'x');
        large.extend_from_slice(br#""}"#);
        let value = parse("p", large).await.unwrap();
        assert_eq!(value["data"].as_str().map(str::len), Some(PARSE_OFF_THREAD_BYTES));
        for garbage in [b"not json".to_vec(), vec![b'{'; PARSE_OFF_THREAD_BYTES + 1]] {
            match parse("together", garbage).await.unwrap_err() {
                ProviderError::InvalidResponse { provider, reason } => {
                    assert_eq!(provider, "together");
                    assert!(
                        reason.contains("not valid JSON") && reason.contains("it starts with"),
                        "{reason}"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
