//! The gallery: `GET /` is one self-contained page (HTML, CSS and JavaScript embedded in the binary, no
//! build step), and `GET /gallery/media?page=&per_page=` lists the media of the output folder from their
//! sidecars, newest first, with their prompt, model, provider and seed.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::media::valid_name;
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

/// A media of the output folder with its sidecar (`{stem}.{ext}` next to `{stem}.json`).
#[derive(Debug)]
struct Found {
    media: PathBuf,
    sidecar: PathBuf,
    modified: SystemTime,
}

/// The media of `dir` that have a sidecar, and those of its sub-folders down to `depth` levels (hidden
/// files and folders skipped). A `.json` without a media beside it is not a sidecar.
fn sidecars(dir: &Path, depth: usize, found: &mut Vec<Found>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut files = HashSet::new();
    let mut jsons = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Ok(kind) = entry.file_type() else { continue };
        if name.starts_with('.') {
            continue;
        }
        if kind.is_dir() && depth > 1 {
            sidecars(&entry.path(), depth - 1, found);
        } else if kind.is_file() {
            if let Some(stem) = name.strip_suffix(".json") {
                let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(UNIX_EPOCH);
                jsons.push((stem.to_owned(), modified));
            }
            files.insert(name);
        }
    }
    for (stem, modified) in jsons {
        let media = hf_media::sink::media_extensions()
            .map(|ext| format!("{stem}.{ext}"))
            .find(|name| files.contains(name));
        if let Some(media) = media {
            found.push(Found {
                media: dir.join(media),
                sidecar: dir.join(format!("{stem}.json")),
                modified,
            });
        }
    }
}

/// Newest first; equal times by name, the later name first (names start with their Unix time), so that
/// pages never overlap.
fn newest_first(found: &mut [Found]) {
    found.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| b.media.cmp(&a.media)));
}

/// `path`'s name under `output`, `/`-separated, when it is one that `/media/` serves.
fn media_name(output: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(output).ok()?;
    let name = relative
        .iter()
        .map(|p| p.to_str())
        .collect::<Option<Vec<_>>>()?
        .join("/");
    valid_name(&name).then_some(name)
}

/// `image` or `video`, from the media's first bytes (else its record's task).
fn kind_of(media: &Path, record: &Value) -> &'static str {
    let mut head = Vec::with_capacity(64);
    let sniffed = std::fs::File::open(media)
        .and_then(|file| file.take(64).read_to_end(&mut head))
        .ok()
        .and_then(|_| hf_media::sink::sniff(&head));
    let video = match sniffed {
        Some(format) => format.kind == hf_media::MediaKind::Video,
        None => record["task"].as_str().is_some_and(|task| task.ends_with("-to-video")),
    };
    if video { "video" } else { "image" }
}

/// The listing entry of a media and its sidecar; `None` when the sidecar is not a JSON record.
fn entry(app: &App, base: &str, found: &Found) -> Option<Value> {
    let record: Value = serde_json::from_slice(&std::fs::read(&found.sidecar).ok()?).ok()?;
    if !record.is_object() {
        return None;
    }
    let name = media_name(&app.config.output, &found.media)?;
    let created = record["created_at_unix_ms"]
        .as_u64()
        .map(|ms| ms / 1000)
        .unwrap_or_else(|| found.modified.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    Some(json!({
        "name": name,
        "url": app.links.url(base, &name),
        "kind": kind_of(&found.media, &record),
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
    let answer = tokio::task::spawn_blocking(move || {
        let mut found = Vec::new();
        sidecars(&app.config.output, MAX_DEPTH, &mut found);
        newest_first(&mut found);
        let total = found.len();
        let items: Vec<Value> = found
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .filter_map(|f| entry(&app, &base, f))
            .collect();
        json!({ "object": "list", "page": page, "per_page": per_page, "total": total,
                "has_more": page * per_page < total, "data": items })
    })
    .await
    .map_err(|e| ServerError::Internal(format!("the gallery listing failed: {e}")))?;
    Ok(axum::Json(answer).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0";
    const MP4: &[u8] = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2avc1mp41";

    fn write(path: &Path, bytes: &[u8], modified: u64) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(UNIX_EPOCH + Duration::from_secs(modified)).unwrap();
    }

    #[test]
    fn only_media_with_sidecars_are_found_newest_first() {
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
        let mut found = Vec::new();
        sidecars(root, MAX_DEPTH, &mut found);
        newest_first(&mut found);
        let names: Vec<String> = found.iter().map(|f| media_name(root, &f.media).unwrap()).collect();
        assert_eq!(names, ["00001/item-0.mp4", "100_b-0.png", "100_a-0.png"]);
        assert_eq!(kind_of(&found[0].media, &Value::Null), "video");
        assert_eq!(kind_of(&found[1].media, &Value::Null), "image");
        assert_eq!(
            kind_of(Path::new("/nonexistent.bin"), &json!({"task": "text-to-video"})),
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
