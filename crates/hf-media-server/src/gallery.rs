//! The gallery: `GET /` is one self-contained page (HTML, CSS and JavaScript embedded in the binary, no
//! build step), and `GET /gallery/media?page=&per_page=` lists the media of the output folder from their
//! sidecars, newest first, with their prompt, model, provider and seed.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::media::valid_name;
use crate::store::Stored;
use crate::{App, ServerError};

/// The page's markup, with its style and script put in where their comments stand.
const MARKUP: &str = include_str!("gallery/index.html");
const STYLE: &str = include_str!("gallery/gallery.css");
const SCRIPT: &str = include_str!("gallery/gallery.js");
/// The page's `<html>` attribute that tells its script whether the server wants an API key.
const KEY_OPTIONAL: &str = r#"data-api-key="optional""#;

/// The page, for an open server (`[0]`) and for one with API keys (`[1]`): the page asks for the key
/// before its first request instead of after a 401.
static PAGES: LazyLock<[String; 2]> = LazyLock::new(|| {
    let page = MARKUP
        .replacen("/* gallery.css */", STYLE, 1)
        .replacen("/* gallery.js */", SCRIPT, 1);
    let keyed = page.replacen(KEY_OPTIONAL, r#"data-api-key="required""#, 1);
    [page, keyed]
});
/// The most media a listing page holds.
const MAX_PER_PAGE: usize = 100;
/// The media a listing page holds when the query names no number.
const DEFAULT_PER_PAGE: usize = 24;
/// How deep the listing looks for sidecars (the output folder and one level of sub-folders).
const MAX_DEPTH: usize = 2;
/// The page's Content-Security-Policy: its own inline script and style, media from this server (or
/// elsewhere, with `--public-url`), requests to this server only, no frames, no plugins.
const CSP: &str = "default-src 'self'; img-src 'self' data: blob: https: http:; media-src 'self' blob: https: http:; \
                   style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; connect-src 'self'; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// `GET /`.
pub(crate) async fn page(State(app): State<Arc<App>>) -> Response {
    let page = &PAGES[usize::from(app.keys.required())];
    let mut response = axum::response::Html(page.as_str()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// The listing's query.
#[derive(Debug, Deserialize)]
pub(crate) struct ListingQuery {
    #[serde(default)]
    page: Option<usize>,
    #[serde(default)]
    per_page: Option<usize>,
}

/// A media of the output with its sidecar (`{stem}.{ext}` next to `{stem}.json`).
#[derive(Debug)]
struct Found {
    media: String,
    sidecar: String,
    modified: SystemTime,
}

/// The media among `stored` that have a sidecar (a `.json` without a media beside it is not one), and
/// that `/media/` serves.
fn with_sidecars(stored: Vec<Stored>) -> Vec<Found> {
    let names: HashSet<&str> = stored.iter().map(|s| s.name.as_str()).collect();
    let mut found: Vec<Found> = stored
        .iter()
        .filter_map(|s| {
            let stem = s.name.strip_suffix(".json")?;
            let media = hf_media::sink::media_extensions()
                .map(|ext| format!("{stem}.{ext}"))
                .find(|name| names.contains(name.as_str()) && valid_name(name))?;
            Some(Found {
                media,
                sidecar: s.name.clone(),
                modified: s.modified,
            })
        })
        .collect();
    newest_first(&mut found);
    found
}

/// Newest first; equal times by name, the later name first (names start with their Unix time), so that
/// pages never overlap.
fn newest_first(found: &mut [Found]) {
    found.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| b.media.cmp(&a.media)));
}

/// `image` or `video`, from the media's first bytes (else its record's task).
fn kind_of(head: Option<&[u8]>, record: &Value) -> &'static str {
    let video = match head.and_then(hf_media::sink::sniff) {
        Some(format) => format.kind == hf_media::MediaKind::Video,
        None => record["task"].as_str().is_some_and(|task| task.ends_with("-to-video")),
    };
    if video { "video" } else { "image" }
}

/// The listing entry of a media and its sidecar; `None` when the sidecar is not a JSON record.
async fn entry(app: &App, base: &str, found: &Found) -> Option<Value> {
    let record: Value = serde_json::from_slice(&app.store.read(&found.sidecar).await.ok()?).ok()?;
    if !record.is_object() {
        return None;
    }
    let head = app.store.head(&found.media, 64).await;
    let created = record["created_at_unix_ms"]
        .as_u64()
        .map(|ms| ms / 1000)
        .unwrap_or_else(|| found.modified.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    Some(json!({
        "name": found.media,
        "url": app.links.url(base, &found.media),
        "kind": kind_of(head.as_deref(), &record),
        "prompt": record["prompt"],
        "model": record["model"],
        "provider": record["provider"],
        "seed": record["seed"],
        "created": created,
        "record": record,
    }))
}

/// `GET /gallery/media`.
pub(crate) async fn listing(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<ListingQuery>,
) -> Result<Response, ServerError> {
    let per_page = query.per_page.unwrap_or(DEFAULT_PER_PAGE).clamp(1, MAX_PER_PAGE);
    let page = query.page.unwrap_or(1).clamp(1, usize::MAX / MAX_PER_PAGE);
    let base = app.links.base(&headers);
    let found = with_sidecars(app.store.list(MAX_DEPTH, None).await?);
    let total = found.len();
    let mut items = Vec::with_capacity(per_page);
    for found in found.iter().skip((page - 1) * per_page).take(per_page) {
        if let Some(item) = entry(&app, &base, found).await {
            items.push(item);
        }
    }
    let answer = json!({ "object": "list", "page": page, "per_page": per_page, "total": total,
                         "has_more": page * per_page < total, "data": items });
    Ok(axum::Json(answer).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Duration;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0";
    const MP4: &[u8] = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2avc1mp41";

    fn write(path: &Path, bytes: &[u8], modified: u64) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(UNIX_EPOCH + Duration::from_secs(modified)).unwrap();
    }

    #[tokio::test]
    async fn only_media_with_sidecars_are_found_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(&root.join("100_a-0.png"), PNG, 100);
        write(&root.join("100_a-0.json"), br#"{"prompt": "a"}"#, 100);
        write(&root.join("100_b-0.png"), PNG, 100);
        write(&root.join("100_b-0.json"), br#"{"prompt": "b"}"#, 100);
        write(&root.join("00001/item-0.mp4"), MP4, 300);
        write(&root.join("00001/item-0.json"), br#"{"prompt": "v"}"#, 300);
        write(&root.join("orphan.json"), b"{}", 400);
        write(&root.join("no-sidecar.png"), PNG, 400);
        write(&root.join(".hf-media/hidden.png"), PNG, 500);
        write(&root.join(".hf-media/hidden.json"), b"{}", 500);
        write(&root.join("a/b/deep.png"), PNG, 500);
        write(&root.join("a/b/deep.json"), b"{}", 500);
        let store = crate::store::MediaStore::open(root).unwrap();
        let found = with_sidecars(store.list(MAX_DEPTH, None).await.unwrap());
        let names: Vec<&str> = found.iter().map(|f| f.media.as_str()).collect();
        assert_eq!(names, ["00001/item-0.mp4", "100_b-0.png", "100_a-0.png"]);
        assert_eq!(
            kind_of(store.head(&found[0].media, 64).await.as_deref(), &Value::Null),
            "video"
        );
        assert_eq!(
            kind_of(store.head(&found[1].media, 64).await.as_deref(), &Value::Null),
            "image"
        );
        assert_eq!(
            kind_of(None, &json!({"task": "text-to-video"})),
            "video",
            "a media that cannot be read takes its kind from the record"
        );
    }

    #[test]
    fn the_page_is_one_self_contained_document() {
        let [open, keyed] = &*PAGES;
        for page in [open, keyed] {
            assert!(!page.contains("/* gallery.js */") && !page.contains("/* gallery.css */"));
            assert!(page.contains("readEvents") && page.contains("--accent"));
            for external in ["src=\"http", "href=\"http", "@import", "//cdn"] {
                assert!(!page.contains(external), "no external resource: {external}");
            }
        }
        assert!(open.contains(KEY_OPTIONAL));
        assert!(keyed.contains(r#"data-api-key="required""#));
        assert!(
            !SCRIPT.contains("innerHTML"),
            "record texts are set as text, never as HTML"
        );
    }
}
