//! Where the media live: a folder, or an object-store prefix (`s3://bucket/prefix`, `gs://…`, `az://…`,
//! `file:///…`), the same `-o` as `generate` and `batch` (the batch's [`BatchOutput`]). One place knows
//! both: the sink the generator writes with (sidecars included), the name a stored media is served
//! under, reading it back (base64 answers, the gallery's records), listing, removing, and answering a
//! `GET` of it with ranges, `ETag` and `If-None-Match`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use hf_media::sink::DynMediaSink;
use hf_media::{FileSink, MediaLocation, SinkConfig};
use hf_media_batch::runner::{BatchOutput, default_state};
use hf_media_batch::state::StateLocation;
use hf_media_sink_object::ObjectSink;
use hf_media_sink_object::object_store::path::Path as ObjectPath;
use hf_media_sink_object::object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};

use crate::ServerError;

/// A stored file, as a listing gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    /// Its name under the output, `/`-separated.
    pub name: String,
    /// When it was last written.
    pub modified: SystemTime,
}

/// The media store.
#[derive(Debug, Clone)]
pub(crate) struct MediaStore {
    output: BatchOutput,
}

fn backend(what: &str, error: impl std::fmt::Display) -> ServerError {
    ServerError::Internal(format!("{what}: {error}"))
}

impl MediaStore {
    /// The store `-o output` names.
    pub fn open(output: &Path) -> Result<MediaStore, ServerError> {
        let text = output.to_string_lossy();
        let parsed = BatchOutput::parse(&text).map_err(|e| ServerError::Config(e.to_string()))?;
        Ok(MediaStore { output: parsed })
    }

    /// Creates the folder (and removes temporary files a killed process left), or checks the bucket.
    pub async fn prepare(&self) -> Result<(), ServerError> {
        self.output
            .check()
            .await
            .map_err(|e| ServerError::Config(e.to_string()))?;
        if let BatchOutput::Dir(dir) = &self.output
            && let Err(error) = FileSink::new(dir.clone()).cleanup_temporaries()
        {
            tracing::warn!(%error, "could not remove temporary files left in the output folder");
        }
        Ok(())
    }

    /// The sink the generator stores with: media and their JSON sidecars, within the size limit of
    /// `config`, a folder's stores synced unless `config` says not to (an object store's puts are
    /// durable when they end).
    pub fn sink(&self, config: &SinkConfig) -> DynMediaSink {
        match &self.output {
            BatchOutput::Dir(dir) => Arc::new(
                FileSink::new(dir.clone())
                    .with_sidecar(true)
                    .with_max_bytes(config.max_media_bytes)
                    .with_sync(config.sync),
            ),
            BatchOutput::Object(sink) => {
                Arc::new(sink.clone().with_sidecar(true).with_max_bytes(config.max_media_bytes))
            }
        }
    }

    /// The output's identity (the folder's absolute path, the prefix's URI).
    pub fn key(&self) -> String {
        self.output.key()
    }

    /// The state a server keeps its video jobs in by default: a file in the folder, or (object storage)
    /// one in the user's cache folder, named after the prefix.
    pub fn default_state(&self) -> StateLocation {
        match &self.output {
            BatchOutput::Dir(dir) => StateLocation::Sqlite(dir.join(".hf-media").join("serve-state.sqlite")),
            BatchOutput::Object(_) => default_state(&self.output),
        }
    }

    /// The name a stored media is served under.
    pub fn name_of(&self, location: &MediaLocation) -> Result<String, ServerError> {
        let whole = match (location, &self.output) {
            (MediaLocation::File(path), BatchOutput::Dir(dir)) => {
                let relative = path.strip_prefix(dir).map_err(|_| {
                    ServerError::Internal(format!("a media was stored outside the output: {}", path.display()))
                })?;
                let parts: Option<Vec<&str>> = relative.iter().map(|p| p.to_str()).collect();
                return parts
                    .filter(|p| !p.is_empty())
                    .map(|p| p.join("/"))
                    .ok_or_else(|| ServerError::Internal("a media's name is not UTF-8".into()));
            }
            (other, _) => other.to_string(),
        };
        let name = self.output.relative(&whole);
        if name == whole {
            return Err(ServerError::Internal(format!(
                "a media was stored outside the output: {whole}"
            )));
        }
        Ok(name)
    }

    fn file(dir: &Path, name: &str) -> PathBuf {
        name.split('/').fold(dir.to_path_buf(), |path, part| path.join(part))
    }

    fn object(sink: &ObjectSink, name: &str) -> ObjectPath {
        let prefix = sink.prefix().as_ref();
        if prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{prefix}/{name}"))
        }
    }

    /// The whole file `name`.
    pub async fn read(&self, name: &str) -> Result<Vec<u8>, ServerError> {
        match &self.output {
            BatchOutput::Dir(dir) => tokio::fs::read(Self::file(dir, name))
                .await
                .map_err(|e| backend("a stored media could not be read back", e)),
            BatchOutput::Object(sink) => {
                let got = sink
                    .object_store()
                    .get(&Self::object(sink, name))
                    .await
                    .map_err(|e| backend("a stored media could not be read back", e))?;
                got.bytes()
                    .await
                    .map(|b| b.to_vec())
                    .map_err(|e| backend("a stored media could not be read back", e))
            }
        }
    }

    /// The first `bytes` bytes of `name` (to tell an image from a video), if it can be read.
    pub async fn head(&self, name: &str, bytes: u64) -> Option<Vec<u8>> {
        match &self.output {
            BatchOutput::Dir(dir) => {
                use tokio::io::AsyncReadExt;
                let file = tokio::fs::File::open(Self::file(dir, name)).await.ok()?;
                let mut head = Vec::new();
                file.take(bytes).read_to_end(&mut head).await.ok()?;
                Some(head)
            }
            BatchOutput::Object(sink) => {
                let options = GetOptions {
                    range: Some(GetRange::Bounded(0..bytes)),
                    ..GetOptions::default()
                };
                let got = sink
                    .object_store()
                    .get_opts(&Self::object(sink, name), options)
                    .await
                    .ok()?;
                got.bytes().await.ok().map(|b| b.to_vec())
            }
        }
    }

    /// Every file under the output down to `depth` levels (hidden files and folders left out), or only
    /// those at the top whose name starts with `prefix`.
    pub async fn list(&self, depth: usize, prefix: Option<&str>) -> Result<Vec<Stored>, ServerError> {
        let mut found = match &self.output {
            BatchOutput::Dir(dir) => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || {
                    let mut found = Vec::new();
                    list_dir(&dir, "", depth, &mut found);
                    found
                })
                .await
                .map_err(|e| backend("the output folder could not be listed", e))?
            }
            BatchOutput::Object(sink) => {
                let root = sink.prefix().clone();
                let skip = root.as_ref().len() + usize::from(!root.as_ref().is_empty());
                let listed: Vec<_> = sink
                    .object_store()
                    .list(Some(&root))
                    .try_collect()
                    .await
                    .map_err(|e| backend("the output could not be listed", e))?;
                listed
                    .into_iter()
                    .filter_map(|meta| {
                        let name = meta.location.as_ref().get(skip..)?.to_owned();
                        let visible = name.split('/').count() <= depth && name.split('/').all(|p| !p.starts_with('.'));
                        visible.then(|| Stored {
                            name,
                            modified: SystemTime::from(meta.last_modified),
                        })
                    })
                    .collect()
            }
        };
        if let Some(prefix) = prefix {
            found.retain(|stored| !stored.name.contains('/') && stored.name.starts_with(prefix));
        }
        Ok(found)
    }

    /// Removes `name` (a missing one is no error).
    pub async fn remove(&self, name: &str) -> Result<(), ServerError> {
        let result = match &self.output {
            BatchOutput::Dir(dir) => match tokio::fs::remove_file(Self::file(dir, name)).await {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other.map_err(|e| e.to_string()),
            },
            BatchOutput::Object(sink) => match sink.object_store().delete(&Self::object(sink, name)).await {
                Err(hf_media_sink_object::object_store::Error::NotFound { .. }) => Ok(()),
                other => other.map_err(|e| e.to_string()),
            },
        };
        result.map_err(|e| backend(&format!("{name} could not be removed"), e))
    }

    /// Answers a `GET` (or `HEAD`) of the stored file `name`: ranges, `ETag`, `Last-Modified`; 404 when
    /// there is no such file.
    pub async fn respond(&self, request: Request, name: &str) -> Result<Response, ServerError> {
        match &self.output {
            BatchOutput::Dir(dir) => crate::media::send_file(request, &Self::file(dir, name), name).await,
            BatchOutput::Object(sink) => object_response(sink, request, &Self::object(sink, name), name).await,
        }
    }
}

fn list_dir(dir: &Path, relative: &str, depth: usize, found: &mut Vec<Stored>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let Ok(kind) = entry.file_type() else { continue };
        let full = if relative.is_empty() {
            name.clone()
        } else {
            format!("{relative}/{name}")
        };
        if kind.is_dir() && depth > 1 {
            list_dir(&entry.path(), &full, depth - 1, found);
        } else if kind.is_file() {
            let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(UNIX_EPOCH);
            found.push(Stored { name: full, modified });
        }
    }
}

/// The strong `ETag` of a stored file: its name, size and time.
pub(crate) fn etag(name: &str, size: u64, modified_secs: u64) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let short: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("\"{size:x}-{modified_secs:x}-{short}\"")
}

/// Whether an `If-None-Match` value matches `etag`.
pub(crate) fn none_match(request: &Request, etag: &str) -> bool {
    request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"))
}

/// A single byte range of a `Range` header over a file of `size` bytes: `Ok(None)` for no (or an
/// unusable multi-) range, `Err(())` for one that cannot be satisfied.
pub(crate) fn byte_range(request: &Request, size: u64) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(value) = request.headers().get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        // Several ranges: answered whole, as RFC 9110 allows.
        return Ok(None);
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let (start, end) = (start.trim(), end.trim());
    let range = match (start.parse::<u64>().ok(), end.parse::<u64>().ok()) {
        (Some(start), Some(end)) if start <= end => start..end.saturating_add(1).min(size),
        (Some(start), None) if end.is_empty() => start..size,
        (None, Some(last)) if start.is_empty() && last > 0 => size.saturating_sub(last)..size,
        _ => return Err(()),
    };
    if range.start >= size || range.is_empty() {
        return Err(());
    }
    Ok(Some(range))
}

async fn object_response(
    sink: &ObjectSink,
    request: Request,
    path: &ObjectPath,
    name: &str,
) -> Result<Response, ServerError> {
    let store = sink.object_store();
    let meta = match store.head(path).await {
        Ok(meta) => meta,
        Err(hf_media_sink_object::object_store::Error::NotFound { .. }) => return Err(crate::media::not_found()),
        Err(e) => return Err(backend("the media could not be read", e)),
    };
    let modified = SystemTime::from(meta.last_modified);
    let modified_secs = modified.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let tag = etag(name, meta.size, modified_secs);
    let mut response = if none_match(&request, &tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let range = match byte_range(&request, meta.size) {
            Ok(range) => range,
            Err(()) => {
                let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{}", meta.size)) {
                    response.headers_mut().insert(header::CONTENT_RANGE, value);
                }
                return Ok(response);
            }
        };
        let whole = 0..meta.size;
        let served = range.clone().unwrap_or(whole);
        let body = if request.method() == Method::HEAD || served.is_empty() {
            Body::empty()
        } else {
            let options = GetOptions {
                range: Some(GetRange::Bounded(served.clone())),
                ..GetOptions::default()
            };
            let got = store
                .get_opts(path, options)
                .await
                .map_err(|e| backend("the media could not be read", e))?;
            Body::from_stream(got.into_stream().map(|chunk| chunk.map_err(std::io::Error::other)))
        };
        let mut response = Response::new(body);
        if let Some(range) = &range {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(value) = HeaderValue::from_str(&format!("bytes {}-{}/{}", range.start, range.end - 1, meta.size))
            {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
        }
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(served.end - served.start));
        let mime = mime_guess::from_path(name).first_or_octet_stream();
        if let Ok(value) = HeaderValue::from_str(mime.as_ref()) {
            headers.insert(header::CONTENT_TYPE, value);
        }
        if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
            headers.insert(header::LAST_MODIFIED, value);
        }
        response
    };
    if let Ok(value) = HeaderValue::from_str(&tag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranged(value: &str) -> Request {
        Request::builder()
            .header(header::RANGE, value)
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(byte_range(&ranged("bytes=0-9"), 100), Ok(Some(0..10)));
        assert_eq!(byte_range(&ranged("bytes=90-"), 100), Ok(Some(90..100)));
        assert_eq!(byte_range(&ranged("bytes=-10"), 100), Ok(Some(90..100)));
        assert_eq!(byte_range(&ranged("bytes=95-200"), 100), Ok(Some(95..100)));
        assert_eq!(byte_range(&ranged("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(byte_range(&ranged("items=0-1"), 100), Ok(None));
        assert_eq!(byte_range(&ranged("bytes=100-"), 100), Err(()));
        assert_eq!(byte_range(&ranged("bytes=9-2"), 100), Err(()));
        assert_eq!(byte_range(&ranged("bytes=x-2"), 100), Err(()));
        assert_eq!(byte_range(&Request::new(Body::empty()), 100), Ok(None));
    }

    #[test]
    fn a_folders_sink_syncs_unless_the_config_says_not_to() {
        let store = MediaStore::open(Path::new("media")).unwrap();
        for sync in [true, false] {
            let config = SinkConfig {
                sync,
                max_media_bytes: 1234,
                ..SinkConfig::default()
            };
            let sink = format!("{:?}", store.sink(&config));
            assert!(sink.contains(&format!("sync: {sync}")), "{sink}");
            assert!(
                sink.contains("max_bytes: 1234") && sink.contains("sidecar: true"),
                "{sink}"
            );
        }
    }

    #[tokio::test]
    async fn an_object_prefix_stores_lists_serves_and_removes() {
        let store = MediaStore::open(Path::new("memory:///media")).unwrap();
        let BatchOutput::Object(sink) = &store.output else {
            panic!("an object store")
        };
        let bytes: Vec<u8> = (0..200u8).collect();
        sink.object_store()
            .put(&ObjectPath::from("media/a-0.png"), bytes.clone().into())
            .await
            .unwrap();
        sink.object_store()
            .put(&ObjectPath::from("media/.hf-media/x.png"), vec![1].into())
            .await
            .unwrap();
        let names: Vec<String> = store.list(2, None).await.unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, vec!["a-0.png"], "hidden objects are left out");
        assert_eq!(store.list(1, Some("a-")).await.unwrap().len(), 1);
        assert_eq!(store.read("a-0.png").await.unwrap(), bytes);
        assert_eq!(store.head("a-0.png", 4).await.unwrap(), vec![0, 1, 2, 3]);
        let location = MediaLocation::Object(format!("{}/a-0.png", sink.uri()));
        assert_eq!(store.name_of(&location).unwrap(), "a-0.png");
        let served = store.respond(ranged("bytes=10-19"), "a-0.png").await.unwrap();
        assert_eq!(served.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(served.headers()[header::CONTENT_RANGE], "bytes 10-19/200");
        assert_eq!(served.headers()[header::CONTENT_TYPE], "image/png");
        let body = axum::body::to_bytes(served.into_body(), 1 << 20).await.unwrap();
        assert_eq!(&body[..], &bytes[10..20]);
        let missing = store.respond(Request::new(Body::empty()), "b.png").await;
        assert!(matches!(missing, Err(ServerError::NotFound { .. })));
        store.remove("a-0.png").await.unwrap();
        store.remove("a-0.png").await.unwrap();
        assert!(store.list(2, None).await.unwrap().is_empty());
    }
}
