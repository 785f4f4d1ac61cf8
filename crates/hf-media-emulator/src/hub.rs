//! The Hub's model API: one model's `inferenceProviderMapping`, and the models listing.

use axum::extract::{Path, RawQuery, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::support::{Shared, error, origin};

/// Pairs of a query string, percent-decoded.
fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /api/models/{id}`: with `expand[]=inferenceProviderMapping` (or `expand=`), the mapping keyed by
/// provider; otherwise the id and pipeline tag.
pub(crate) async fn model_info(
    AxumState(state): AxumState<Shared>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    state.count("hub model");
    let Some(model) = state.catalogue.iter().find(|m| m.id == id) else {
        let mut response = error(StatusCode::NOT_FOUND, "Repository not found");
        response
            .headers_mut()
            .insert("x-error-code", HeaderValue::from_static("RepoNotFound"));
        return response;
    };
    let expand: Vec<String> = query_pairs(query.as_deref())
        .into_iter()
        .filter(|(k, _)| k == "expand[]" || k == "expand")
        .map(|(_, v)| v)
        .collect();
    let mut answer = json!({ "_id": format!("emulated-{}", model.id), "id": model.id });
    if expand.is_empty() || expand.iter().any(|e| e == "pipeline_tag") {
        answer["pipeline_tag"] = json!(model.pipeline_tag);
    }
    if expand.is_empty() || expand.iter().any(|e| e == "inferenceProviderMapping") {
        answer["inferenceProviderMapping"] = model.mapping_by_provider();
    }
    axum::Json(answer).into_response()
}

/// `GET /api/models?inference_provider=…&pipeline_tag=…&search=…&limit=…`: models in the listing form,
/// paginated with a `Link: <…>; rel="next"` header. `pipeline_tag` matches a model's tag or the task of
/// one of its mapping entries.
pub(crate) async fn list_models(
    AxumState(state): AxumState<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    state.count("hub list");
    let pairs = query_pairs(query.as_deref());
    let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let providers: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "inference_provider")
        .flat_map(|(_, v)| v.split(','))
        .filter(|p| !p.is_empty() && *p != "all")
        .collect();
    let task = get("pipeline_tag");
    let search = get("search").map(str::to_lowercase);
    let limit = get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 500);
    let cursor = get("cursor").and_then(|c| c.parse::<usize>().ok()).unwrap_or(0);
    let matching: Vec<Value> = state
        .catalogue
        .iter()
        // A model matches its pipeline tag, and also the task of any of its mapping entries: the two can
        // differ (LTX-Video is tagged text-to-video, fal-ai maps it as image-text-to-video).
        .filter(|m| task.is_none_or(|t| m.pipeline_tag == t || m.entries.iter().any(|e| e.task == t)))
        .filter(|m| search.as_deref().is_none_or(|s| m.id.to_lowercase().contains(s)))
        .filter(|m| providers.is_empty() || m.entries.iter().any(|e| providers.contains(&e.provider)))
        .map(|m| json!({ "_id": format!("emulated-{}", m.id), "id": m.id, "pipeline_tag": m.pipeline_tag, "inferenceProviderMapping": m.mapping_list() }))
        .collect();
    let page: Vec<Value> = matching.iter().skip(cursor).take(limit).cloned().collect();
    let mut response = axum::Json(Value::Array(page)).into_response();
    if cursor + limit < matching.len() {
        let mut next: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k != "cursor")
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        next.push(format!("cursor={}", cursor + limit));
        let link = format!("<{}/api/models?{}>; rel=\"next\"", origin(&headers), next.join("&"));
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    response
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'[' | b']' | b',' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_decoded() {
        assert_eq!(
            query_pairs(Some("expand%5B%5D=inferenceProviderMapping&search=flux+dev")),
            vec![
                ("expand[]".to_owned(), "inferenceProviderMapping".to_owned()),
                ("search".to_owned(), "flux dev".to_owned())
            ]
        );
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(encode("a b/c"), "a%20b/c");
    }

    async fn listed(url: &str, query: &str) -> Vec<String> {
        let models: Value = reqwest::get(format!("{url}/api/models?{query}&limit=100"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        models
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn listings_filter_image_input_tasks() {
        let running = crate::providers::test_support::serve().await;
        let url = running.url();
        assert_eq!(
            listed(&url, "pipeline_tag=image-to-image").await,
            [
                "black-forest-labs/FLUX.1-Kontext-dev",
                "Qwen/Qwen-Image-Edit-2509",
                "timbrooks/instruct-pix2pix"
            ]
        );
        assert_eq!(
            listed(&url, "pipeline_tag=image-to-image&inference_provider=together").await,
            ["black-forest-labs/FLUX.1-Kontext-dev"]
        );
        assert_eq!(
            listed(&url, "pipeline_tag=image-to-video").await,
            ["Wan-AI/Wan2.2-I2V-A14B"]
        );
        assert_eq!(
            listed(&url, "pipeline_tag=image-text-to-image").await,
            ["black-forest-labs/FLUX.2-dev"]
        );
        // Tagged text-to-video, mapped as image-text-to-video on fal-ai: listed under both.
        assert_eq!(
            listed(&url, "pipeline_tag=image-text-to-video").await,
            ["Lightricks/LTX-Video"]
        );
        assert!(
            listed(&url, "pipeline_tag=text-to-video")
                .await
                .contains(&"Lightricks/LTX-Video".to_owned())
        );
        assert!(
            !listed(&url, "pipeline_tag=text-to-image")
                .await
                .contains(&"timbrooks/instruct-pix2pix".to_owned())
        );

        let info: Value = reqwest::get(format!(
            "{url}/api/models/Wan-AI/Wan2.2-I2V-A14B?expand[]=inferenceProviderMapping&expand[]=pipeline_tag"
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(info["pipeline_tag"], "image-to-video");
        let mapping = &info["inferenceProviderMapping"];
        assert_eq!(mapping["together"]["providerId"], "Wan-AI/Wan2.2-I2V-A14B");
        assert_eq!(mapping["wavespeed"]["task"], "image-to-video");
    }
}
