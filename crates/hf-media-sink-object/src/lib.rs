#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::TryStreamExt as _;
use object_store::ObjectStore;
use object_store::path::Path;

use hf_media_sink::SinkError;

mod error;
mod guard;
mod location;
mod store;

pub use location::Backend;
/// The `object_store` crate this sink is built on, to build a store by hand for [`ObjectSink::new`].
pub use object_store;

use error::Redactor;

/// Default size of the parts of a multipart upload: 8 MiB. A media no larger than one part is
/// stored with a single put.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// Smallest part S3 accepts (all parts but the last): 5 MiB. [`ObjectSink::with_part_size`] allows
/// smaller parts for stores without that rule (in memory, local files), down to [`MIN_PART_SIZE`].
pub const S3_MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// Smallest part size [`ObjectSink::with_part_size`] accepts: 64 bytes, so that the format is known
/// (sniffed) before the first part leaves.
pub const MIN_PART_SIZE: usize = 64;

/// Default number of parts uploaded at the same time: 2.
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 2;

/// Default size limit of one media: 2 GiB, as [`hf_media_sink::FileSink`].
pub const DEFAULT_MAX_BYTES: u64 = hf_media_sink::DEFAULT_MAX_BYTES;

/// What the store turned out to support, learnt from its answers and shared by clones.
#[derive(Debug)]
struct Capabilities {
    /// `PutMode::Create` (first writer wins) is supported.
    create: AtomicBool,
    /// Attributes (the `Content-Type`) are supported.
    attributes: AtomicBool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            create: AtomicBool::new(true),
            attributes: AtomicBool::new(true),
        }
    }
}

/// A [`MediaSink`](hf_media_sink::MediaSink) storing each media as an object: S3 or an
/// S3-compatible server, Google Cloud Storage, Azure Blob Storage, or local files, through
/// [`object_store`].
///
/// - **Names**: the media is `{prefix}/{unix_secs}_{prompt slug}_{8 random hex}.{ext}`, the
///   extension sniffed from the first bytes (never from a `Content-Type`); its sidecar is
///   `{prefix}/{same stem}.json`, the pretty-printed [`MediaRecord`](hf_media_sink::MediaRecord)
///   with the measured `timings.store_ms`. Locations are [`MediaLocation::Object`] URIs such as
///   `s3://bucket/prefix/1732623000_a-cat_0f3a9c21.png`.
/// - **Keys**: a record with a [`MediaRecord::key`](hf_media_sink::MediaRecord::key) is stored at
///   `{prefix}/{key}.{ext}` and its sidecar at `{prefix}/{key}.json`, *replacing* what is there
///   (`PutMode::Overwrite`; a multipart upload's completion, invisible until then). The key's media
///   of other formats (`{key}.png` when the new bytes are a JPEG) are deleted next (one bulk request
///   on S3, so keyed stores need the delete permission): a key never holds two media. A keyed store
///   failing before its media is published leaves the key as it was; failing (or dropped) after,
///   it deletes what the key holds.
/// - **Fresh keys** ([`MediaKey::fresh`](hf_media_sink::MediaKey::fresh), the caller knows the key
///   is new): the media and the sidecar are created (`PutMode::Create`, or a `HEAD` first where the
///   store has no conditional put, and before a large media's multipart upload, whose completion has no
///   create-only form: those need read access, and S3 without list permission answers such a `HEAD`
///   403, an access error; a taken name is
///   [`SinkError::KeyTaken`](hf_media_sink::SinkError::KeyTaken) and is left alone), and no other
///   format is deleted, so neither the delete request nor the delete permission is needed.
/// - **Atomic**: a media no larger than one part (default [`DEFAULT_PART_SIZE`]) is stored with a
///   single put; a larger one with a multipart upload of equal parts (the last one shorter), which
///   becomes visible only when the upload completes. At most the first part is buffered before
///   the upload starts (the key needs the format); then memory stays bounded by
///   `part_size × (upload_concurrency + 1)` plus one chunk.
/// - **Nothing left behind**: on error the upload is aborted (and anything already published
///   deleted) before `store` returns; when the `store` future is dropped, a guard spawns the same
///   clean-up onto the Tokio runtime. A request already sent (a put, the completion of an upload)
///   is not cut off: the clean-up waits for it, then deletes what it wrote.
/// - **Never overwrites** (unkeyed stores): single puts (media and sidecar) use `PutMode::Create` where the store
///   supports it (S3 and compatibles with `If-None-Match`, GCS, Azure, local files, memory) and
///   take a fresh name when the name is taken; a multipart upload cannot be conditional, so it
///   relies on the random part of the name, as [`FileSink`](hf_media_sink::FileSink) does.
/// - **Sidecar after the media**: it is written once the media is complete, with
///   `timings.store_ms` (the time from the call of `store` to the media being published). If it
///   cannot be written, the media is deleted again and the store fails.
/// - **Errors**: storage failures are [`SinkError::Backend`], retryable for 5xx, throttling,
///   timeouts and connection errors, not for refused credentials, a missing bucket or a taken name;
///   their message says what to check and never holds credentials.
///
/// [`MediaLocation::Object`]: hf_media_sink::MediaLocation::Object
#[derive(Clone)]
pub struct ObjectSink {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    uri_base: String,
    backend: Backend,
    part_size: usize,
    upload_concurrency: usize,
    max_bytes: u64,
    sidecar: bool,
    capabilities: Arc<Capabilities>,
    redactor: Arc<Redactor>,
}

impl fmt::Debug for ObjectSink {
    /// Shows the store by its `Display` (`AmazonS3(bucket)`, ...), never its credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectSink")
            .field("store", &format_args!("{}", self.store))
            .field("uri", &self.uri_of(&self.prefix))
            .field("part_size", &self.part_size)
            .field("upload_concurrency", &self.upload_concurrency)
            .field("max_bytes", &self.max_bytes)
            .field("sidecar", &self.sidecar)
            .finish_non_exhaustive()
    }
}

impl ObjectSink {
    /// A sink over `store`, writing under `prefix` (`"media/run-1"`, or `""` for the root), whose
    /// objects are named `{uri_base}/{key}` in [`MediaLocation::Object`]: `uri_base` is the URI of
    /// the store's root, e.g. `"s3://bucket"` (then a key `media/a.png` is
    /// `s3://bucket/media/a.png`), `"memory://"` or `"file://"` (for a `LocalFileSystem` rooted at
    /// `/`).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use hf_media_sink_object::ObjectSink;
    /// use hf_media_sink_object::object_store::memory::InMemory;
    ///
    /// let sink = ObjectSink::new(Arc::new(InMemory::new()), "media", "memory://");
    /// assert_eq!(sink.uri(), "memory:///media");
    /// ```
    ///
    /// [`MediaLocation::Object`]: hf_media_sink::MediaLocation::Object
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, uri_base: impl Into<String>) -> Self {
        let uri_base = location::normalize_base(uri_base.into());
        let backend = Backend::of_uri(&uri_base);
        Self::from_parts(store, Path::from(prefix), uri_base, backend, Redactor::default())
    }

    /// A sink for `url`, configured from the environment:
    ///
    /// - `s3://bucket/prefix` (or `s3a://`): the `AWS_*` variables: `AWS_ACCESS_KEY_ID`,
    ///   `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` / `AWS_DEFAULT_REGION`,
    ///   `AWS_ENDPOINT_URL` (an S3-compatible server), `AWS_ALLOW_HTTP=true` (a plain `http://`
    ///   endpoint), `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`, ... Without keys, the usual chain is tried
    ///   (web identity, container and instance credentials).
    /// - `gs://bucket/prefix` (feature `gcp`): `GOOGLE_SERVICE_ACCOUNT` (path of a key file),
    ///   `GOOGLE_SERVICE_ACCOUNT_KEY`, `GOOGLE_APPLICATION_CREDENTIALS`...
    /// - `az://container/prefix` (feature `azure`; also `abfs://`, `abfss://`, `adl://`,
    ///   `azure://`): `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_KEY`,
    ///   `AZURE_CLIENT_ID`...
    /// - `file:///absolute/folder`: local files (no variable).
    /// - `memory:///prefix`: a fresh in-memory store, for tests.
    ///
    /// Only the variables of the URL's service are read (`AWS_*` for `s3://`...). Nothing is
    /// contacted yet: [`check`](Self::check) does. Fails with a non-retryable
    /// [`SinkError::Backend`] for a malformed or unsupported URL or configuration.
    pub fn from_url(url: &str) -> Result<Self, SinkError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let options = location::env_options(url, env);
        Self::from_url_opts(url, options)
    }

    /// Like [`from_url`](Self::from_url), but configured from `options` alone, without reading the
    /// environment: keys are the variable names, in any case (`"AWS_ENDPOINT_URL"`,
    /// `"aws_allow_http"`, `"region"`...); unknown keys are ignored.
    ///
    /// ```
    /// use hf_media_sink_object::ObjectSink;
    ///
    /// let sink = ObjectSink::from_url_opts(
    ///     "s3://my-bucket/media",
    ///     [("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"), ("AWS_ALLOW_HTTP", "true"),
    ///      ("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "not-shown-by-debug"),
    ///      ("AWS_REGION", "us-east-1")],
    /// )?;
    /// assert_eq!(sink.uri(), "s3://my-bucket/media");
    /// assert!(!format!("{sink:?}").contains("not-shown-by-debug"));
    /// # Ok::<(), hf_media_sink::SinkError>(())
    /// ```
    pub fn from_url_opts<I, K, V>(url: &str, options: I) -> Result<Self, SinkError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let options: Vec<(String, String)> = options
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.into()))
            .collect();
        let redactor = Redactor::from_options(&options);
        let parsed = location::parse(url)?;
        let (store, prefix) = object_store::parse_url_opts(&parsed.url, options).map_err(|e| {
            let message = format!(
                "could not set up the object store for {}: {}; {}",
                parsed.shown,
                redactor.clean(&e.to_string()),
                parsed.backend.config_hint()
            );
            SinkError::backend(message, false)
        })?;
        Ok(Self::from_parts(
            Arc::from(store),
            prefix,
            parsed.uri_base,
            parsed.backend,
            redactor,
        ))
    }

    fn from_parts(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        uri_base: String,
        backend: Backend,
        redactor: Redactor,
    ) -> Self {
        Self {
            store,
            prefix,
            uri_base,
            backend,
            part_size: DEFAULT_PART_SIZE,
            upload_concurrency: DEFAULT_UPLOAD_CONCURRENCY,
            max_bytes: DEFAULT_MAX_BYTES,
            sidecar: true,
            capabilities: Arc::new(Capabilities::default()),
            redactor: Arc::new(redactor),
        }
    }

    /// Largest media accepted, in bytes (default: [`DEFAULT_MAX_BYTES`]). Reading stops with
    /// [`SinkError::TooLarge`] as soon as it is exceeded, and nothing is stored.
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Size of the parts of a multipart upload (default: [`DEFAULT_PART_SIZE`]), at least
    /// [`MIN_PART_SIZE`]. S3 and most compatible servers refuse parts under [`S3_MIN_PART_SIZE`]
    /// (except the last) when the upload completes; Cloudflare R2 also wants them equal, which they
    /// are. A media no larger than one part is stored with a single put.
    #[must_use]
    pub fn with_part_size(mut self, part_size: usize) -> Self {
        self.part_size = part_size.max(MIN_PART_SIZE);
        self
    }

    /// How many parts are uploaded at the same time (default: [`DEFAULT_UPLOAD_CONCURRENCY`], at
    /// least 1). Reading the stream waits while that many are in flight.
    #[must_use]
    pub fn with_upload_concurrency(mut self, parts: usize) -> Self {
        self.upload_concurrency = parts.max(1);
        self
    }

    /// Whether to write the JSON sidecar object next to each media (default: `true`).
    #[must_use]
    pub fn with_sidecar(mut self, sidecar: bool) -> Self {
        self.sidecar = sidecar;
        self
    }

    /// The store written to.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The prefix objects are written under (within the store).
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The URI of the prefix, e.g. `s3://bucket/media`.
    pub fn uri(&self) -> String {
        self.uri_of(&self.prefix)
    }

    /// The URI of the object at `key` (a path within the store, prefix included), e.g.
    /// `s3://bucket/media/a.png`: what [`MediaLocation::Object`](hf_media_sink::MediaLocation::Object)
    /// holds.
    pub fn uri_of(&self, key: &Path) -> String {
        location::join_uri(&self.uri_base, key)
    }

    /// The kind of service written to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The part size of multipart uploads.
    pub fn part_size(&self) -> usize {
        self.part_size
    }

    /// How many parts are uploaded at the same time.
    pub fn upload_concurrency(&self) -> usize {
        self.upload_concurrency
    }

    /// The size limit, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Whether sidecars are written.
    pub fn sidecar(&self) -> bool {
        self.sidecar
    }

    /// Contacts the store and lists (one page under) the prefix, to fail early with a clear
    /// message for wrong credentials, a missing bucket or an unreachable endpoint, before any
    /// generation is paid for. Writes nothing.
    pub async fn check(&self) -> Result<(), SinkError> {
        let mut listing = self.store.list(Some(&self.prefix));
        match listing.try_next().await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.error("listing", &self.prefix, &e)),
        }
    }

    /// Maps an `object_store` error met while `doing` something to `key`.
    fn error(&self, doing: &str, key: &Path, err: &object_store::Error) -> SinkError {
        error::backend_error(self.backend, doing, &self.uri_of(key), err, &self.redactor)
    }

    fn create_supported(&self) -> bool {
        self.capabilities.create.load(Ordering::Relaxed)
    }

    fn attributes_supported(&self) -> bool {
        self.capabilities.attributes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use object_store::memory::InMemory;

    #[test]
    fn new_names_objects_under_the_base() {
        let sink = ObjectSink::new(Arc::new(InMemory::new()), "a/b", "s3://bucket/");
        assert_eq!(sink.uri(), "s3://bucket/a/b");
        assert_eq!(sink.uri_of(&Path::from("a/b/c.png")), "s3://bucket/a/b/c.png");
        assert_eq!(sink.backend(), Backend::S3);
        let root = ObjectSink::new(Arc::new(InMemory::new()), "", "memory://");
        assert_eq!(root.uri(), "memory:///");
        assert_eq!(root.uri_of(&Path::from("x.png")), "memory:///x.png");
    }

    #[test]
    fn builders_clamp() {
        let sink = ObjectSink::new(Arc::new(InMemory::new()), "p", "memory://")
            .with_part_size(1)
            .with_upload_concurrency(0)
            .with_max_bytes(10)
            .with_sidecar(false);
        assert_eq!(sink.part_size(), MIN_PART_SIZE);
        assert_eq!(sink.upload_concurrency(), 1);
        assert_eq!(sink.max_bytes(), 10);
        assert!(!sink.sidecar());
        let sink = sink.with_part_size(S3_MIN_PART_SIZE);
        assert_eq!(sink.part_size(), S3_MIN_PART_SIZE);
    }

    #[test]
    fn from_url_s3_hides_credentials() {
        let sink = ObjectSink::from_url_opts(
            "s3://bucket/some/prefix",
            [
                ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID0001"),
                ("AWS_SECRET_ACCESS_KEY", "super-secret-value-123"),
                ("AWS_SESSION_TOKEN", "session-token-value-456"),
                ("AWS_REGION", "eu-west-1"),
            ],
        )
        .unwrap();
        assert_eq!(sink.uri(), "s3://bucket/some/prefix");
        assert_eq!(sink.prefix().as_ref(), "some/prefix");
        assert_eq!(sink.backend(), Backend::S3);
        let debug = format!("{sink:?}");
        for secret in [
            "super-secret-value-123",
            "session-token-value-456",
            "AKIAEXAMPLEKEYID0001",
        ] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("s3://bucket/some/prefix"), "{debug}");
    }

    #[test]
    fn from_url_file_and_memory() {
        let tmp = tempfile::tempdir().unwrap();
        let url = format!("file://{}/out", tmp.path().display());
        let sink = ObjectSink::from_url(&url).unwrap();
        assert_eq!(sink.uri(), url);
        assert_eq!(sink.backend(), Backend::Local);
        let sink = ObjectSink::from_url("memory:///m").unwrap();
        assert_eq!(sink.uri(), "memory:///m");
        assert_eq!(sink.backend(), Backend::Memory);
    }

    #[test]
    fn from_url_refuses_what_it_cannot_serve() {
        for url in [
            "not a url",
            "ftp://host/x",
            "https://example.com/bucket",
            "file://host/abs",
            "s3:///no-bucket",
        ] {
            match ObjectSink::from_url_opts(url, [("AWS_REGION", "us-east-1")]) {
                Err(SinkError::Backend { message, retryable }) => {
                    assert!(!retryable, "{url}: {message}");
                    assert!(
                        message.contains("s3://"),
                        "{url}: the message shows what is accepted: {message}"
                    );
                }
                other => panic!("{url}: expected a Backend error, got {other:?}"),
            }
        }
    }

    #[test]
    fn from_url_never_echoes_a_password() {
        let err = ObjectSink::from_url_opts("ftp://user:hunter2-password@host/x", [("a", "b")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2-password"), "{err}");
    }
}
