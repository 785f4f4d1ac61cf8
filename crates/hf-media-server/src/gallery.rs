//! The gallery: `GET /` is one self-contained page (HTML, CSS and JavaScript embedded in the binary, no
//! build step), and `GET /gallery/media?page=&per_page=` lists the media of the output folder from their
//! sidecars, newest first, with their prompt, model, provider and seed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::media::valid_name;
use crate::{App, ServerError};

/// The page.
const PAGE: &str = include_str!("gallery/index.html");
/// The most media a listing page holds.
const MAX_PER_PAGE: usize = 100;
/// How deep the listing looks for sidecars (the output folder and one level of sub-folders).
const MAX_DEPTH: usize = 2;

/// `GET /`.
pub(crate) async fn page() -> Response {
    let mut response = axum::response::Html(PAGE).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data: blob: https: http:; media-src 'self' blob: https: http:; \
             style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; connect-src 'self'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
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

/// A sidecar found in the output folder.
struct Found {
    sidecar: PathBuf,
    modified: SystemTime,
}

fn sidecars(dir: &Path, depth: usize, found: &mut Vec<Found>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() && depth > 1 {
            sidecars(&entry.path(), depth - 1, found);
        } else if kind.is_file() && name.ends_with(".json") {
            let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(UNIX_EPOCH);
            found.push(Found {
                sidecar: entry.path(),
                modified,
            });
        }
    }
}

/// The media entry of a sidecar, when it describes a media that is in the output folder.
fn entry(app: &App, base: &str, found: &Found) -> Option<Value> {
    let text = std::fs::read_to_string(&found.sidecar).ok()?;
    let record: Value = serde_json::from_str(&text).ok()?;
    // The media sits next to its sidecar: `{stem}.{ext}` for `{stem}.json`… or `{name}.json`.
    let stem = found.sidecar.file_stem()?.to_str()?;
    let folder = found.sidecar.parent()?;
    let media = std::fs::read_dir(folder).ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_str()?.to_owned();
        let (file_stem, _) = name.rsplit_once('.')?;
        (file_stem == stem && !name.ends_with(".json")).then_some(e.path())
    })?;
    let relative = media.strip_prefix(&app.config.output).ok()?;
    let name = relative
        .iter()
        .map(|p| p.to_str())
        .collect::<Option<Vec<_>>>()?
        .join("/");
    if !valid_name(&name) {
        return None;
    }
    let created = found.modified.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let kind = if hf_media::sink::sniff(&std::fs::read(&media).ok()?.get(..64).unwrap_or_default())
        .is_some_and(|f| f.kind == hf_media::MediaKind::Video)
    {
        "video"
    } else {
        "image"
    };
    Some(json!({
        "name": name,
        "url": app.links.url(base, &name),
        "kind": record.get("kind").and_then(Value::as_str).unwrap_or(kind),
        "prompt": record.get("prompt"),
        "model": record.get("model"),
        "provider": record.get("provider"),
        "seed": record.get("seed"),
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
    let per_page = query.per_page.unwrap_or(24).clamp(1, MAX_PER_PAGE);
    let page = query.page.unwrap_or(1).max(1);
    let base = app.links.base(&headers);
    let output = app.config.output.clone();
    let app_for_scan = app.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let mut found = Vec::new();
        sidecars(&output, MAX_DEPTH, &mut found);
        found.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| b.sidecar.cmp(&a.sidecar)));
        let total = found.len();
        let items: Vec<Value> = found
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .filter_map(|f| entry(&app_for_scan, &base, f))
            .collect();
        json!({ "object": "list", "page": page, "per_page": per_page, "total": total,
                "has_more": page * per_page < total, "data": items })
    })
    .await
    .map_err(|e| ServerError::Internal(format!("the gallery listing failed: {e}")))?;
    Ok(axum::Json(answer).into_response())
}
