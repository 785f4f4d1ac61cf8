//! The OpenAI images API (`POST /v1/images/generations`), which together, nscale and every
//! OpenAI-compatible server speak, and its edits (`POST /v1/images/edits`, a multipart form, for
//! OpenAI-compatible servers): one call, answered `{"data": [{"b64_json": …} | {"url": …}], …}`.

use serde_json::Value;

use crate::http::{self, decode_base64, media_url};
use crate::{GenerationRequest, MediaBody, MediaOutput, ProviderContext, ProviderError};

/// The images route.
pub const IMAGE_ROUTE: &str = "/v1/images/generations";
/// The edits route (multipart form).
pub const EDIT_ROUTE: &str = "/v1/images/edits";

/// Makes one image for `provider`: POSTs `body` to [`IMAGE_ROUTE`] (a model's route) on the context's base
/// and reads the answer with [`images_api_answer`]; the seed is the answer's, else the one asked for.
pub(crate) async fn generate(
    ctx: &ProviderContext,
    provider: &str,
    body: &Value,
    request: &GenerationRequest,
) -> Result<MediaOutput, ProviderError> {
    let answer = http::post_json(ctx, IMAGE_ROUTE, body).await?;
    read_answer(provider, &answer, request)
}

/// Edits images for `provider`: POSTs the multipart `form` to [`EDIT_ROUTE`] (a model's route) on the
/// context's base and reads the answer as [`generate`] does.
pub(crate) async fn edit(
    ctx: &ProviderContext,
    provider: &str,
    form: reqwest::multipart::Form,
    request: &GenerationRequest,
) -> Result<MediaOutput, ProviderError> {
    let url = ctx.url(EDIT_ROUTE)?;
    let answer = http::send_json(ctx, ctx.request(reqwest::Method::POST, url).multipart(form)).await?;
    read_answer(provider, &answer, request)
}

/// The answer's media; the seed is the answer's, else the one asked for.
fn read_answer(provider: &str, answer: &Value, request: &GenerationRequest) -> Result<MediaOutput, ProviderError> {
    let mut output = images_api_answer(provider, answer)?;
    output.seed = output.seed.or(request.params.seed);
    Ok(output)
}

/// Reads an OpenAI-style images answer of `provider`: `data[0].b64_json` (decoded) or `data[0].url`, the
/// rest of the answer kept as the provider's response (without the media bytes).
pub fn images_api_answer(provider: &str, answer: &Value) -> Result<MediaOutput, ProviderError> {
    let first = answer.pointer("/data/0");
    let body = if let Some(b64) = first.and_then(|d| d.get("b64_json")).and_then(Value::as_str) {
        MediaBody::Bytes(decode_base64(provider, b64)?)
    } else if let Some(url) = first.and_then(|d| d.get("url")).and_then(Value::as_str) {
        MediaBody::Url(media_url(provider, url)?)
    } else {
        return Err(ProviderError::invalid_response(
            provider,
            "the answer has no `data[0].b64_json` or `data[0].url`",
        ));
    };
    Ok(MediaOutput::new(body).with_provider_response(answer))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn together_and_nscale_answers_in_base64_or_as_a_url() {
        for provider in [crate::providers::TOGETHER, crate::providers::NSCALE] {
            let out = images_api_answer(provider, &json!({"data": [{"b64_json": "aGVsbG8=", "index": 0}]})).unwrap();
            assert!(matches!(out.body, MediaBody::Bytes(ref b) if b.as_ref() == b"hello"));
            assert_eq!(out.provider_response.unwrap()["data"][0]["index"], json!(0));
            let out =
                images_api_answer(provider, &json!({"data": [{"url": "https://api.together.ai/x.jpg"}]})).unwrap();
            assert!(matches!(out.body, MediaBody::Url(_)));
            assert!(matches!(
                images_api_answer(provider, &json!({"data": []})),
                Err(ProviderError::InvalidResponse { .. })
            ));
            assert!(matches!(
                images_api_answer(provider, &json!({"data": [{"b64_json": "%%%"}]})),
                Err(ProviderError::InvalidResponse { .. })
            ));
        }
    }

    #[test]
    fn base64_and_url_answers_carry_the_providers_name() {
        let out = images_api_answer(
            "my-images",
            &json!({"data": [{"b64_json": "aGVsbG8=", "index": 0}], "seed": 4}),
        )
        .unwrap();
        assert!(matches!(out.body, MediaBody::Bytes(ref b) if b.as_ref() == b"hello"));
        let kept = out.provider_response.unwrap();
        assert_eq!(kept["data"][0]["index"], json!(0));
        assert_eq!(kept["data"][0]["b64_json"], json!("… (8 characters)"));
        assert_eq!(out.seed, Some(4));
        let out = images_api_answer("my-images", &json!({"data": [{"url": "https://cdn.example/x.png"}]})).unwrap();
        assert!(matches!(out.body, MediaBody::Url(ref u) if u.as_str() == "https://cdn.example/x.png"));
        for bad in [
            json!({"data": []}),
            json!({"data": [{"b64_json": "%%%"}]}),
            json!({"data": [{"url": "file:///x"}]}),
        ] {
            assert!(
                matches!(images_api_answer("my-images", &bad), Err(ProviderError::InvalidResponse { ref provider, .. }) if provider == "my-images"),
                "{bad}"
            );
        }
    }
}
