//! [`FileSink`]: media files in a folder, written atomically.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt as _;
use tempfile::{Builder, TempPath};

use crate::{
    ByteStream, MediaIntake, MediaLocation, MediaRecord, MediaSink, SinkError, StoredMedia, media_file_stem, millis,
};

/// Folder [`FileSink::default`] writes into, relative to the working directory.
pub const DEFAULT_DIR: &str = "generated_media";

/// Default size limit of one media: 2 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Prefix of the temporary files; they are hidden and never left behind.
const TEMP_PREFIX: &str = ".hf-media-";

/// How many fresh names are tried when a name is already taken.
const NAME_ATTEMPTS: usize = 8;
/// Media up to this size are gathered in memory and written in one go; larger ones are written to a
/// temporary file in writes of this size.
const SPILL_BYTES: usize = 1024 * 1024;

/// Stores each media as a file in a folder.
///
/// Guarantees:
/// - **Atomic**: bytes go to a hidden `.hf-media-*.part` file in the target
///   folder and are renamed into place only once complete and synced. On any
///   error, or when the `store` future is dropped, the temporary file is
///   deleted: no partial file is ever left.
/// - **Signature-based extension**: `.png`, `.jpg`, `.mp4`... are decided from
///   the bytes, never from a `Content-Type`. Unknown bytes are refused.
/// - **Unique names**: `{unix_secs}_{prompt slug}_{8 random hex}.{ext}`, and an
///   existing file is never overwritten.
/// - **Sidecar** (on by default): `{same stem}.json`, the pretty-printed
///   [`MediaRecord`] with the measured `timings.store_ms`, also written
///   atomically (temporary file, sync, rename), right after the media is
///   published (so a folder watcher may see the media a moment before its
///   sidecar); [`StoredMedia::sidecar`] is its [`MediaLocation::File`]. If it
///   cannot be written, the media is removed again and the store fails.
/// - **Timing**: `timings.store_ms` is the time from the call of `store` to
///   the media being in place (receiving, writing, syncing, renaming), the
///   same in the returned record and in the sidecar.
#[derive(Debug, Clone)]
pub struct FileSink {
    dir: PathBuf,
    sidecar: bool,
    max_bytes: u64,
}

impl Default for FileSink {
    /// A sink writing into [`DEFAULT_DIR`].
    fn default() -> Self {
        Self::new(DEFAULT_DIR)
    }
}

impl FileSink {
    /// A sink writing into `dir` (created when missing), with sidecars and a
    /// [`DEFAULT_MAX_BYTES`] limit.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            sidecar: true,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    /// Whether to write a JSON sidecar next to each media (default: `true`).
    #[must_use]
    pub fn with_sidecar(mut self, sidecar: bool) -> Self {
        self.sidecar = sidecar;
        self
    }

    /// Largest media accepted, in bytes (default: [`DEFAULT_MAX_BYTES`]).
    /// Reading stops with [`SinkError::TooLarge`] as soon as it is exceeded.
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The folder media are written into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether sidecars are written.
    pub fn sidecar(&self) -> bool {
        self.sidecar
    }

    /// The size limit, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }
}

/// Runs `f` on the blocking pool. A panic there becomes an I/O error on `path`.
async fn blocking<T, F>(path: &Path, f: F) -> Result<T, SinkError>
where
    F: FnOnce() -> Result<T, SinkError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(join) => Err(SinkError::io(
            path,
            io::Error::other(format!("file-system task failed: {join}")),
        )),
    }
}

/// Final files that are deleted again if dropped before being handed over:
/// when the `store` future is cancelled while the blocking rename runs, the
/// runtime drops this value and nothing remains.
#[derive(Debug)]
struct Placed {
    media: PathBuf,
    sidecar: Option<PathBuf>,
    armed: bool,
}

impl Placed {
    fn hand_over(mut self) -> (PathBuf, Option<PathBuf>) {
        self.armed = false;
        (std::mem::take(&mut self.media), self.sidecar.take())
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.media);
            if let Some(sidecar) = &self.sidecar {
                let _ = std::fs::remove_file(sidecar);
            }
        }
    }
}

/// A temporary-file builder in the sink's style. Temporary files are private (0600) by default; media
/// and sidecars are published files, readable like any other output (0644 on Unix).
fn temp_builder(suffix: &'static str) -> Builder<'static, 'static> {
    let mut builder = Builder::new();
    builder.prefix(TEMP_PREFIX).suffix(suffix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    builder
}

/// Writes `json` to `path` atomically, never replacing an existing file.
fn write_sidecar(dir: &Path, path: &Path, json: &[u8]) -> io::Result<()> {
    let mut tmp = temp_builder(".json.part").tempfile_in(dir)?;
    tmp.write_all(json)?;
    tmp.as_file().sync_all()?;
    // On failure the temporary file is dropped, hence deleted.
    tmp.persist_noclobber(path).map(drop).map_err(|e| e.error)
}

/// Best effort: makes the renames durable.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Creates the temporary file the media is written to, in the target folder (created if missing).
fn create_temp(dir: &Path) -> Result<(std::fs::File, TempPath), SinkError> {
    std::fs::create_dir_all(dir).map_err(|e| SinkError::io(dir, e))?;
    temp_builder(".part")
        .tempfile_in(dir)
        .map(tempfile::NamedTempFile::into_parts)
        .map_err(|e| SinkError::io(dir, e))
}

/// Writes a batch of chunks, handing the file back for the next batch.
fn write_batch(mut file: std::fs::File, batch: &[Bytes]) -> io::Result<std::fs::File> {
    for chunk in batch {
        file.write_all(chunk)?;
    }
    Ok(file)
}

/// Waits for a batch being written.
async fn finish_write(
    dir: &Path,
    temp: Option<&TempPath>,
    write: tokio::task::JoinHandle<io::Result<std::fs::File>>,
) -> Result<std::fs::File, SinkError> {
    let path = temp.map_or_else(|| dir.to_path_buf(), |t| t.to_path_buf());
    match write.await {
        Ok(result) => result.map_err(|e| SinkError::io(path, e)),
        Err(join) => Err(SinkError::io(
            path,
            io::Error::other(format!("file-system task failed: {join}")),
        )),
    }
}

/// Whether something (a file, a folder, a dangling link) already has this name.
fn taken(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Names the media, renames it into place, measures `store_ms` into `record`, then writes the sidecar
/// (when `sidecar` is set). A stem whose media or sidecar name is taken is skipped for a fresh one.
fn place(
    dir: &Path,
    mut temp: TempPath,
    extension: &str,
    record: &mut MediaRecord,
    sidecar: bool,
    started: Instant,
) -> Result<Placed, SinkError> {
    let unix_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut last_taken = None;
    for _ in 0..NAME_ATTEMPTS {
        let stem = media_file_stem(&record.prompt, unix_secs);
        let media = dir.join(format!("{stem}.{extension}"));
        let sidecar_path = sidecar.then(|| dir.join(format!("{stem}.json")));
        // The media is published first, so its sidecar name must be free beforehand.
        if let Some(path) = sidecar_path.as_ref().filter(|p| taken(p)) {
            last_taken = Some(path.clone());
            continue;
        }
        match publish(dir, temp, media, sidecar_path, record, started)? {
            Published::Placed(placed) => return Ok(placed),
            Published::Taken { temp: back, name } => {
                temp = back;
                last_taken = Some(name);
            }
        }
    }
    let taken = last_taken.unwrap_or_else(|| dir.to_path_buf());
    Err(SinkError::io(
        taken,
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{NAME_ATTEMPTS} file names in a row were already taken"),
        ),
    ))
}

/// What [`publish`] did.
#[derive(Debug)]
enum Published {
    /// The media (and its sidecar) are in place.
    Placed(Placed),
    /// `name` was taken: nothing was published, the temporary file is handed back.
    Taken {
        /// The media's temporary file, still hidden.
        temp: TempPath,
        /// The name that was taken.
        name: PathBuf,
    },
}

/// Renames `temp` to `media` (never replacing a file), which publishes the media; then sets
/// `record.timings.store_ms` and writes the sidecar at `sidecar`. If the sidecar cannot be written,
/// the media is removed again: on error nothing remains.
fn publish(
    dir: &Path,
    temp: TempPath,
    media: PathBuf,
    sidecar: Option<PathBuf>,
    record: &mut MediaRecord,
    started: Instant,
) -> Result<Published, SinkError> {
    if let Err(e) = temp.persist_noclobber(&media) {
        if e.error.kind() == io::ErrorKind::AlreadyExists {
            return Ok(Published::Taken {
                temp: e.path,
                name: media,
            });
        }
        return Err(SinkError::io(media, e.error));
    }
    // From here on, dropping `placed` (an error below, or a cancelled caller) removes the media.
    let mut placed = Placed {
        media,
        sidecar: None,
        armed: true,
    };
    sync_dir(dir);
    record.timings.store_ms = millis(started.elapsed());
    if let Some(path) = sidecar {
        let json = serde_json::to_vec_pretty(record).map_err(|e| SinkError::io(&path, io::Error::other(e)))?;
        write_sidecar(dir, &path, &json).map_err(|e| SinkError::io(&path, e))?;
        placed.sidecar = Some(path);
        sync_dir(dir);
    }
    Ok(Published::Placed(placed))
}

#[async_trait::async_trait]
impl MediaSink for FileSink {
    async fn store(&self, mut media: ByteStream, mut record: MediaRecord) -> Result<StoredMedia, SinkError> {
        let started = Instant::now();
        let dir = self.dir.clone();
        // Bytes are gathered in memory up to SPILL_BYTES: a typical image never touches the disk until it
        // is complete, and is then written, synced and renamed in one blocking call. Larger media spill to
        // a temporary file in batches of SPILL_BYTES, each written by a blocking task while the next batch
        // arrives (at most two batches in memory). Nothing is visible before the rename, and a cancelled
        // store leaves nothing: the temporary file is deleted when `temp` is dropped (a batch still being
        // written then goes to the unlinked file).
        let mut pending: Vec<Bytes> = Vec::new();
        let mut pending_len = 0usize;
        let mut temp: Option<TempPath> = None;
        let mut in_flight: Option<tokio::task::JoinHandle<io::Result<std::fs::File>>> = None;
        let mut intake = MediaIntake::new(self.max_bytes);
        while let Some(chunk) = media.next().await {
            let chunk = chunk.map_err(SinkError::Source)?;
            if chunk.is_empty() {
                continue;
            }
            intake.accept(&chunk)?;
            pending_len += chunk.len();
            pending.push(chunk);
            if pending_len < SPILL_BYTES {
                continue;
            }
            let file = match in_flight.take() {
                Some(write) => finish_write(&dir, temp.as_ref(), write).await?,
                None => {
                    let temp_dir = dir.clone();
                    let (file, path) = blocking(&dir, move || create_temp(&temp_dir)).await?;
                    temp = Some(path);
                    file
                }
            };
            let batch = std::mem::take(&mut pending);
            pending_len = 0;
            in_flight = Some(tokio::task::spawn_blocking(move || write_batch(file, &batch)));
        }
        let format = intake.finish()?;
        drop(media);
        let spilled = match in_flight.take() {
            Some(write) => Some(finish_write(&dir, temp.as_ref(), write).await?),
            None => None,
        };

        let extension = format.extension;
        let sidecar = self.sidecar;
        let place_dir = dir.clone();
        // Writing, syncing, renaming and the sidecar run in one blocking task. If this future is dropped
        // meanwhile, the task still ends, and its unclaimed output (the `Placed` guard) is dropped by the
        // runtime, which removes the media and its sidecar.
        let (placed, record) = blocking(&dir, move || {
            let (file, temp) = match (spilled, temp) {
                (Some(file), Some(temp)) => (file, temp),
                _ => create_temp(&place_dir)?,
            };
            let write_err = |e| SinkError::io(temp.to_path_buf(), e);
            let file = write_batch(file, &pending).map_err(write_err)?;
            file.sync_all().map_err(write_err)?;
            drop(file);
            let placed = place(&place_dir, temp, extension, &mut record, sidecar, started)?;
            Ok((placed, record))
        })
        .await?;
        let (path, sidecar) = placed.hand_over();

        Ok(StoredMedia {
            location: MediaLocation::File(path),
            format,
            bytes: intake.total(),
            sidecar: sidecar.map(MediaLocation::File),
            record,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures::stream;
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::Duration;

    const PNG: &[u8] = &[
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00,
        0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0xf8, 0xcf, 0xc0, 0xf0, 0x1f, 0x00, 0x05, 0x00, 0x01, 0xff,
        0x56, 0xc7, 0x2f, 0x0d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];

    fn chunks(parts: Vec<Vec<u8>>) -> ByteStream {
        stream::iter(parts.into_iter().map(|p| Ok(Bytes::from(p)))).boxed()
    }

    fn record(prompt: &str) -> MediaRecord {
        MediaRecord {
            prompt: prompt.into(),
            model: "black-forest-labs/FLUX.1-schnell".into(),
            provider: "fal-ai".into(),
            provider_id: "fal-ai/flux/schnell".into(),
            task: "text-to-image".into(),
            parameters: serde_json::json!({"width": 1, "height": 1}),
            seed: Some(7),
            ..MediaRecord::default()
        }
    }

    fn listing(dir: &Path) -> Vec<String> {
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                names
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("cannot list {}: {e}", dir.display()),
        }
    }

    /// A PNG signature followed by `len` pattern bytes, in 64 KiB chunks.
    fn big_png(len: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut bytes = PNG[..16].to_vec();
        bytes.extend((0..len).map(|i| (i % 251) as u8));
        let chunks = bytes.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
        (bytes, chunks)
    }

    #[tokio::test]
    async fn large_media_spill_to_disk_and_arrive_whole() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (bytes, parts) = big_png(3 * SPILL_BYTES + 12345);
        let stored = FileSink::new(tmp.path())
            .store(chunks(parts), record("big"))
            .await
            .expect("stored");
        let MediaLocation::File(path) = &stored.location else {
            panic!("expected a file");
        };
        assert_eq!(std::fs::read(path).expect("read"), bytes);
        assert_eq!(stored.bytes, bytes.len() as u64);
        assert_eq!(listing(tmp.path()).len(), 2, "the media and its sidecar only");
    }

    #[tokio::test]
    async fn a_cancelled_store_that_already_spilled_leaves_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (_, parts) = big_png(2 * SPILL_BYTES);
        let stalled = stream::iter(parts.into_iter().map(|p| Ok(Bytes::from(p))))
            .chain(stream::pending())
            .boxed();
        let sink = FileSink::new(tmp.path());
        let outcome = tokio::time::timeout(Duration::from_millis(300), sink.store(stalled, record("stall"))).await;
        assert!(outcome.is_err(), "the store is still waiting for bytes");
        assert!(listing(tmp.path()).is_empty(), "{:?}", listing(tmp.path()));
    }

    /// A stream of `PNG` in three chunks, `delay` apart.
    fn slow_png(delay: Duration) -> ByteStream {
        stream::iter([&PNG[..10], &PNG[10..40], &PNG[40..]])
            .enumerate()
            .then(move |(i, part)| async move {
                if i > 0 {
                    tokio::time::sleep(delay).await;
                }
                Ok(Bytes::from_static(part))
            })
            .boxed()
    }

    #[tokio::test]
    async fn store_ms_is_measured_into_the_record_and_the_sidecar() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::new(tmp.path());
        let stored = sink
            .store(slow_png(Duration::from_millis(25)), record("slow"))
            .await
            .expect("stored");
        let store_ms = stored.record.timings.store_ms;
        assert!(store_ms >= 50, "two 25 ms waits, store_ms = {store_ms}");
        let sidecar = stored
            .sidecar
            .as_ref()
            .and_then(MediaLocation::as_path)
            .expect("sidecar file");
        let on_disk: MediaRecord =
            serde_json::from_str(&std::fs::read_to_string(sidecar).expect("read")).expect("parse");
        assert_eq!(
            on_disk.timings.store_ms, store_ms,
            "the sidecar holds the measured time"
        );
        assert_eq!(on_disk, stored.record);

        let sink = FileSink::new(tmp.path().join("no-sidecar")).with_sidecar(false);
        let stored = sink
            .store(slow_png(Duration::from_millis(10)), record("slow"))
            .await
            .expect("stored");
        assert!(stored.record.timings.store_ms >= 20, "{:?}", stored.record.timings);
    }

    #[test]
    fn a_media_taken_name_hands_the_temp_file_back() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let taken = tmp.path().join("taken.png");
        std::fs::write(&taken, b"someone else's").expect("write");
        let temp = temp_builder(".part")
            .tempfile_in(tmp.path())
            .expect("temp")
            .into_temp_path();
        let mut record = record("p");
        let sidecar = tmp.path().join("taken.json");
        match publish(
            tmp.path(),
            temp,
            taken.clone(),
            Some(sidecar.clone()),
            &mut record,
            Instant::now(),
        ) {
            Ok(Published::Taken { temp, name }) => {
                assert_eq!(name, taken);
                assert!(temp.exists(), "the temporary file is kept for the next name");
            }
            other => panic!("expected Taken, got {other:?}"),
        }
        assert_eq!(std::fs::read(&taken).expect("read"), b"someone else's");
        assert!(!sidecar.exists());
        assert_eq!(listing(tmp.path()), vec!["taken.png".to_owned()]);
    }

    #[test]
    fn a_sidecar_that_cannot_be_written_removes_the_published_media() {
        let tmp = tempfile::tempdir().expect("tempdir");
        // The sidecar name was free when checked, then someone took it (a race): the media, already
        // renamed into place, must go again.
        let sidecar = tmp.path().join("m.json");
        std::fs::write(&sidecar, b"someone else's").expect("write");
        let mut temp = temp_builder(".part").tempfile_in(tmp.path()).expect("temp");
        temp.write_all(PNG).expect("write");
        let media = tmp.path().join("m.png");
        let mut record = record("p");
        let err = publish(
            tmp.path(),
            temp.into_temp_path(),
            media.clone(),
            Some(sidecar.clone()),
            &mut record,
            Instant::now(),
        )
        .expect_err("the sidecar name is taken");
        match &err {
            SinkError::Io { path, source } => {
                assert_eq!(path, &sidecar);
                assert_eq!(source.kind(), io::ErrorKind::AlreadyExists);
            }
            other => panic!("expected Io, got {other:?}"),
        }
        assert!(!media.exists(), "the media was removed again");
        assert_eq!(std::fs::read(&sidecar).expect("read"), b"someone else's");
        assert_eq!(listing(tmp.path()), vec!["m.json".to_owned()]);
    }

    #[test]
    fn defaults() {
        assert_eq!(DEFAULT_DIR, "generated_media");
        let sink = FileSink::default();
        assert_eq!(sink.dir(), Path::new("generated_media"));
        assert!(sink.sidecar());
        assert_eq!(sink.max_bytes(), 2 * 1024 * 1024 * 1024);
        let sink = FileSink::new("/x").with_sidecar(false).with_max_bytes(3);
        assert_eq!(sink.dir(), Path::new("/x"));
        assert!(!sink.sidecar());
        assert_eq!(sink.max_bytes(), 3);
    }

    #[tokio::test]
    async fn writes_file_and_sidecar() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("nested").join("out");
        let sink = FileSink::new(&dir);
        let stored = sink
            .store(
                chunks(vec![PNG[..5].to_vec(), PNG[5..40].to_vec(), PNG[40..].to_vec()]),
                record("A red fox, at dawn!"),
            )
            .await
            .expect("stored");

        let MediaLocation::File(path) = &stored.location else {
            panic!("expected a file location, got {:?}", stored.location);
        };
        assert_eq!(path.parent(), Some(dir.as_path()));
        assert_eq!(path.extension().and_then(|e| e.to_str()), Some("png"));
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(name.contains("_a-red-fox-at-dawn_"), "{name}");
        assert_eq!(std::fs::read(path).expect("read"), PNG);
        assert_eq!(stored.bytes, PNG.len() as u64);
        assert_eq!(stored.format.extension, "png");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
            assert_eq!(mode, 0o644, "published media are readable like any other output");
        }

        let sidecar = stored
            .sidecar
            .as_ref()
            .and_then(MediaLocation::as_path)
            .expect("sidecar file");
        assert_eq!(sidecar.with_extension("png"), *path);
        let text = std::fs::read_to_string(sidecar).expect("read sidecar");
        assert!(text.contains('\n'), "pretty JSON expected: {text}");
        let back: MediaRecord = serde_json::from_str(&text).expect("sidecar parses");
        assert_eq!(back.prompt, "A red fox, at dawn!");
        assert_eq!(back.model, "black-forest-labs/FLUX.1-schnell");
        assert_eq!(back.provider, "fal-ai");
        assert_eq!(back.seed, Some(7));
        assert_eq!(back, stored.record);

        // Exactly the media and its sidecar, no temporary file.
        let names = listing(&dir);
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    }

    #[tokio::test]
    async fn extension_comes_from_bytes_not_from_the_prompt() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::new(tmp.path()).with_sidecar(false);
        let jpeg = vec![0xff, 0xd8, 0xff, 0xe0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1];
        let stored = sink
            .store(chunks(vec![jpeg.clone()]), record("photo.png"))
            .await
            .expect("stored");
        let MediaLocation::File(path) = stored.location else {
            panic!("file expected");
        };
        assert_eq!(path.extension().and_then(|e| e.to_str()), Some("jpg"));
        assert_eq!(stored.format.mime, "image/jpeg");
        assert!(stored.sidecar.is_none());
        assert_eq!(listing(tmp.path()).len(), 1);
        assert_eq!(std::fs::read(path).expect("read"), jpeg);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn identical_concurrent_prompts_get_distinct_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sink = Arc::new(FileSink::new(tmp.path()));
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let sink = Arc::clone(&sink);
                tokio::spawn(async move {
                    let mut r = record("same prompt");
                    r.task_index = i;
                    sink.store(chunks(vec![PNG.to_vec()]), r).await
                })
            })
            .collect();
        let mut paths = HashSet::new();
        for task in tasks {
            let stored = task.await.expect("join").expect("stored");
            let MediaLocation::File(path) = stored.location else {
                panic!("file expected");
            };
            assert_eq!(std::fs::read(&path).expect("read"), PNG);
            paths.insert(path);
        }
        assert_eq!(paths.len(), 20);
        let names = listing(tmp.path());
        assert_eq!(names.iter().filter(|n| n.ends_with(".png")).count(), 20);
        assert_eq!(names.iter().filter(|n| n.ends_with(".json")).count(), 20);
        assert_eq!(names.len(), 40, "{names:?}");
    }

    #[tokio::test]
    async fn stream_error_midway_leaves_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::new(tmp.path());
        let media = stream::iter(vec![
            Ok(Bytes::from_static(&PNG[..40])),
            Err::<Bytes, crate::StreamError>(crate::StreamError::network("connection reset by peer")),
        ])
        .boxed();
        let err = sink.store(media, record("x")).await.expect_err("must fail");
        match &err {
            SinkError::Source(source) => assert!(source.to_string().contains("connection reset")),
            other => panic!("expected Source, got {other:?}"),
        }
        assert_eq!(listing(tmp.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn cancellation_leaves_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::new(tmp.path());
        let media = stream::iter(vec![Ok(Bytes::from_static(&PNG[..40]))])
            .chain(stream::pending())
            .boxed();
        let result = tokio::time::timeout(Duration::from_millis(200), sink.store(media, record("x"))).await;
        assert!(result.is_err(), "store should still be pending");
        assert_eq!(listing(tmp.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn too_large_leaves_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::new(tmp.path()).with_max_bytes(50);
        let err = sink
            .store(chunks(vec![PNG[..30].to_vec(), PNG[30..].to_vec()]), record("x"))
            .await
            .expect_err("must fail");
        assert!(matches!(err, SinkError::TooLarge { limit: 50 }), "{err:?}");
        assert_eq!(listing(tmp.path()), Vec::<String>::new());

        // Exactly at the limit is fine.
        let sink = FileSink::new(tmp.path()).with_max_bytes(PNG.len() as u64);
        sink.store(chunks(vec![PNG.to_vec()]), record("x"))
            .await
            .expect("at the limit");
    }

    #[tokio::test]
    async fn too_large_stops_reading() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::new(tmp.path()).with_max_bytes(100);
        // An endless stream: must be abandoned as soon as the limit is passed.
        let media = stream::iter(std::iter::once(PNG.to_vec()).chain(std::iter::repeat(vec![0u8; 64])))
            .map(|c| Ok(Bytes::from(c)))
            .boxed();
        let err = sink.store(media, record("x")).await.expect_err("must fail");
        assert!(matches!(err, SinkError::TooLarge { limit: 100 }), "{err:?}");
        assert_eq!(listing(tmp.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn empty_stream_is_empty() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::new(tmp.path());
        let err = sink.store(chunks(vec![]), record("x")).await.expect_err("must fail");
        assert!(matches!(err, SinkError::Empty), "{err:?}");
        let err = sink
            .store(chunks(vec![vec![], vec![]]), record("x"))
            .await
            .expect_err("must fail");
        assert!(matches!(err, SinkError::Empty), "{err:?}");
        assert_eq!(listing(tmp.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn unknown_bytes_leave_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::new(tmp.path());
        let err = sink
            .store(
                chunks(vec![b"<!DOCTYPE html><html>rate limited</html>".to_vec()]),
                record("x"),
            )
            .await
            .expect_err("must fail");
        match err {
            SinkError::UnrecognizedMedia { head } => {
                assert!(head.starts_with("3c 21 44"), "{head}")
            }
            other => panic!("expected UnrecognizedMedia, got {other:?}"),
        }
        assert_eq!(listing(tmp.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn unwritable_dir_is_an_io_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let blocker = tmp.path().join("a-file");
        std::fs::write(&blocker, b"not a folder").expect("write");
        let sink = FileSink::new(blocker.join("sub"));
        let err = sink
            .store(chunks(vec![PNG.to_vec()]), record("x"))
            .await
            .expect_err("must fail");
        match &err {
            SinkError::Io { path, .. } => assert!(path.starts_with(&blocker), "{path:?}"),
            other => panic!("expected Io, got {other:?}"),
        }
    }

    #[test]
    fn sidecar_never_overwrites_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let taken = tmp.path().join("taken.json");
        std::fs::write(&taken, b"original").expect("write");
        let err = write_sidecar(tmp.path(), &taken, b"{}").expect_err("must not overwrite");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&taken).expect("read"), b"original");
        assert_eq!(listing(tmp.path()), vec!["taken.json".to_owned()]);
    }

    #[test]
    fn placed_files_are_removed_unless_handed_over() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let temp = Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(".part")
            .tempfile_in(tmp.path())
            .expect("temp")
            .into_temp_path();
        let mut record = record("p");
        let placed = place(tmp.path(), temp, "png", &mut record, true, Instant::now()).expect("placed");
        assert!(placed.media.exists());
        assert!(placed.sidecar.as_ref().is_some_and(|s| s.exists()));
        let (media, sidecar) = (placed.media.clone(), placed.sidecar.clone());
        // Dropped without being handed over (cancelled caller): removed.
        drop(placed);
        assert!(!media.exists());
        assert!(!sidecar.expect("sidecar").exists());
        assert_eq!(listing(tmp.path()), Vec::<String>::new());
    }
}
