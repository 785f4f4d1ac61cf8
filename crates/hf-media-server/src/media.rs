//! `GET /media/{name}` (and `HEAD`): the stored media, by the name answers gave out. Only a media file
//! of the output folder is served (never a sidecar, a temporary file, or anything outside it); `..`,
//! absolute paths and percent-encoded names answer 404. Range requests (a `<video>` seeks with them),
//! `ETag` with `If-None-Match`, `Last-Modified`, and immutable caching; with `--signed-media`, a valid,
//! unexpired signature is required.

use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::{App, ServerError};

/// The most folders a media name may go down (the batch layout's `00000/name` included).
const MAX_DEPTH: usize = 3;

/// Whether `name` can be a stored media's name: `/`-separated segments of `[A-Za-z0-9._-]`, none empty or
/// starting with `.`, a media extension at the end.
pub(crate) fn valid_name(name: &str) -> bool {
    let segments: Vec<&str> = name.split('/').collect();
    if segments.len() > MAX_DEPTH || name.len() > 512 {
        return false;
    }
    let safe = segments.iter().all(|segment| {
        !segment.is_empty()
            && !segment.starts_with('.')
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    });
    let extension = name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase());
    safe && extension.is_some_and(|ext| hf_media::sink::media_extensions().any(|known| known == ext))
}

fn query_value<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// `GET /media/{*name}`.
pub(crate) async fn serve(State(app): State<Arc<App>>, request: Request) -> Response {
    match respond(&app, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

pub(crate) fn not_found() -> ServerError {
    ServerError::not_found("no such media: use a URL from an answer of this server")
}

async fn respond(app: &App, request: Request) -> Result<Response, ServerError> {
    let path = request.uri().path();
    let Some(name) = path.strip_prefix("/media/") else {
        return Err(not_found());
    };
    // Names are plain: anything percent-encoded (an encoded `/` or `..`) is not one.
    if name.contains('%') || !valid_name(name) {
        return Err(not_found());
    }
    let name = name.to_owned();
    let query = request.uri().query();
    if !app
        .links
        .allows(&name, query_value(query, "expires"), query_value(query, "sig"))
    {
        return Err(ServerError::Forbidden(
            "this media link has expired or is not signed: ask the API for the media again".into(),
        ));
    }
    serve_stored(app, request, &name).await
}

/// Answers `request` with the stored media `name` (ranges, `ETag`, `Last-Modified`), with the caching
/// headers of media: immutable for plain names, private for signed links.
pub(crate) async fn serve_stored(app: &App, request: Request, name: &str) -> Result<Response, ServerError> {
    let result = app.store.respond(request, name).await;
    app.metrics.media_served(
        result
            .as_ref()
            .map_or_else(|e| e.status().as_u16(), |r| r.status().as_u16()),
    );
    let mut response = result?;
    let cache = if app.config.signed_media.is_some() {
        "private, max-age=3600"
    } else {
        "public, max-age=31536000, immutable"
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    Ok(response)
}

/// Answers `request` with the file at `file` (served as `name`): range requests (`tower-http`'s
/// `ServeFile`), `ETag` and `If-None-Match`, `Last-Modified`. A missing file, or anything but a plain
/// file, answers 404.
pub(crate) async fn send_file(request: Request, file: &Path, name: &str) -> Result<Response, ServerError> {
    let metadata = match tokio::fs::symlink_metadata(file).await {
        Ok(metadata) if metadata.is_file() => metadata,
        _ => return Err(not_found()),
    };
    let modified = metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let tag = crate::store::etag(name, metadata.len(), modified);
    let mut response = if crate::store::none_match(&request, &tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match ServeFile::new(file).oneshot(request).await {
            Ok(response) => response.map(axum::body::Body::new),
            Err(error) => return Err(ServerError::Internal(format!("the media could not be read: {error}"))),
        }
    };
    if let Ok(value) = HeaderValue::from_str(&tag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_media_names_are_served() {
        for good in [
            "1700000000_a-fox_0123abcd-0.png",
            "00000/item-0.mp4",
            "video_ab12-0.MP4",
            "a.webp",
        ] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "../secret.png",
            "a/../b.png",
            "/etc/passwd",
            ".hf-media/x.png",
            "a.png.json",
            "a.json",
            "a.png.tmp",
            "a b.png",
            "a//b.png",
            "a/b/c/d.png",
            "noextension",
            "a\\b.png",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn query_values_are_found() {
        assert_eq!(query_value(Some("expires=5&sig=ab"), "sig"), Some("ab"));
        assert_eq!(query_value(Some("x"), "sig"), None);
        assert_eq!(query_value(None, "sig"), None);
    }
}
