//! [`FileSink`]: media files in a folder, written atomically.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt as _;
use tempfile::{Builder, TempPath};

use crate::folder_sync::{sync_folder, sync_now};
use crate::{
    ByteStream, MediaIntake, MediaKey, MediaLocation, MediaRecord, MediaSink, SinkError, StoredMedia, media_extensions,
    media_file_stem, millis,
};

/// Folder [`FileSink::default`] writes into, relative to the working directory.
pub const DEFAULT_DIR: &str = "generated_media";

/// Default size limit of one media: 2 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Prefix of the temporary files; they are hidden and never left behind (but by a killed process:
/// see [`FileSink::cleanup_temporaries`]). No [`MediaKey`] segment starts with `.`, so no media,
/// sidecar or folder of a key is ever named like one.
const TEMP_PREFIX: &str = ".hf-media-";
/// Suffix of every temporary file (`.part` for media, `.json.part` for sidecars).
const TEMP_SUFFIX: &str = ".part";

/// How many fresh names are tried when a name is already taken.
const NAME_ATTEMPTS: usize = 8;
/// Media up to this size are gathered in memory and written in one go; larger ones are written to a
/// temporary file in writes of this size.
const SPILL_BYTES: usize = 1024 * 1024;

/// Stores each media as a file in a folder.
///
/// Guarantees:
/// - **Atomic**: bytes go to a hidden `.hf-media-*.part` file in the target
///   folder and are renamed into place only once complete (and synced, unless
///   [`with_sync(false)`](Self::with_sync)). On any
///   error, or when the `store` future is dropped, the temporary file is
///   deleted: no partial file is ever left.
/// - **Signature-based extension**: `.png`, `.jpg`, `.mp4`... are decided from
///   the bytes, never from a `Content-Type`. Unknown bytes are refused.
/// - **Unique names**: `{unix_secs}_{prompt slug}_{8 random hex}.{ext}`, and an
///   existing file is never overwritten.
/// - **Or the caller's key**: a record with a [`MediaRecord::key`] is stored at
///   `{dir}/{key}.{ext}` (sidecar `{dir}/{key}.json`), the key's folders created as needed. The
///   temporary file is made in that folder and renamed *over* a media already there, so readers
///   see the old file or the new one, never a partial one; the sidecar likewise. A media of
///   another format at that key (`{key}.png` for JPEG bytes) is then removed: a key never holds
///   two media. A store failing before the rename leaves the key as it was. A
///   [fresh](MediaKey::fresh) key is created instead, never replacing: no other format is looked
///   for, and a taken media or sidecar name is [`SinkError::KeyTaken`].
/// - **Sidecar** (on by default): `{same stem}.json`, the pretty-printed
///   [`MediaRecord`] with the measured `timings.store_ms`, also written
///   atomically: to its own temporary file, synced with the media's, and
///   renamed into place right after the media (so a folder watcher may see the
///   media a moment before its sidecar); [`StoredMedia::sidecar`] is its
///   [`MediaLocation::File`]. If it cannot be put in place, the media is
///   removed again and the store fails.
/// - **Durable**: the media and the sidecar are synced before their renames
///   (on Linux their write-back started together, so that the two cost about
///   one sync),
///   the folder after them. Concurrent stores into one folder share the folder's
///   syncs (one sync covers every rename made before it began), so that under
///   load a store costs its file syncs and a fraction of a folder sync. Or not:
///   [`with_sync(false)`](Self::with_sync) leaves the writing to the system.
/// - **Timing**: `timings.store_ms` is the time from the call of `store` to
///   the last byte received (a large media being written meanwhile); the syncs
///   and renames that follow are not in it. The same in the returned record and
///   in the sidecar.
#[derive(Debug, Clone)]
pub struct FileSink {
    dir: PathBuf,
    sidecar: bool,
    max_bytes: u64,
    sync: bool,
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
            sync: true,
        }
    }

    /// Whether to write a JSON sidecar next to each media (default: `true`).
    #[must_use]
    pub fn with_sidecar(mut self, sidecar: bool) -> Self {
        self.sidecar = sidecar;
        self
    }

    /// Whether stores are made durable before they return (default: `true`): the media and its sidecar
    /// synced to the disk before their renames, the folder after them.
    ///
    /// `false` leaves the writing back to the operating system: stores are still atomic (a reader
    /// never sees a partial file, a failed or cancelled store leaves nothing), but a power loss or a
    /// system crash can lose what was stored in the seconds before it, or leave those files empty.
    /// For media that are disposable or kept elsewhere too, on a disk whose syncs are slow; a process
    /// that is killed loses nothing either way.
    #[must_use]
    pub fn with_sync(mut self, sync: bool) -> Self {
        self.sync = sync;
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

    /// Whether stores are synced to the disk before they return ([`with_sync`](Self::with_sync)).
    pub fn sync(&self) -> bool {
        self.sync
    }

    /// Removes the temporary files (hidden `.hf-media-*.part` files) that a killed process left
    /// anywhere under [`dir`](Self::dir), in sub-folders too (symbolic links are not followed), and
    /// returns how many were removed. A missing folder has none: `Ok(0)`.
    ///
    /// Call it only when no other process writes to this folder (a batch calls it when it resumes
    /// and holds the folder): it would remove the temporary file of a store in progress there,
    /// failing that store. Stores of this process must not be running either. A sink never leaves
    /// such a file otherwise: errors and cancelled stores remove their own.
    ///
    /// Blocking: from async code, run it with `tokio::task::spawn_blocking`.
    ///
    /// Errors: the first folder that cannot be listed or file that cannot be removed, with its
    /// path in the message (files already removed stay removed).
    pub fn cleanup_temporaries(&self) -> io::Result<usize> {
        let mut removed = 0;
        let mut folders = vec![self.dir.clone()];
        let with_path = |path: &Path, e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        while let Some(folder) = folders.pop() {
            let entries = match std::fs::read_dir(&folder) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(with_path(&folder, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| with_path(&folder, e))?;
                // The entry's own type: a symbolic link is neither a folder nor a file here.
                let kind = entry.file_type().map_err(|e| with_path(&entry.path(), e))?;
                if kind.is_dir() {
                    folders.push(entry.path());
                } else if kind.is_file() && is_temporary(&entry.file_name()) {
                    match std::fs::remove_file(entry.path()) {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(with_path(&entry.path(), e)),
                    }
                }
            }
        }
        Ok(removed)
    }

    /// The folder a media of `key` goes into: the sink's folder, then the key's folders.
    fn folder_for(&self, key: Option<&MediaKey>) -> PathBuf {
        let mut folder = self.dir.clone();
        folder.extend(key.into_iter().flat_map(MediaKey::folders));
        folder
    }
}

/// Whether `name` is one of the sink's temporary files.
fn is_temporary(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| n.starts_with(TEMP_PREFIX) && n.ends_with(TEMP_SUFFIX))
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
    /// What a keyed store removes too if it does not reach its end, the previous media at the key
    /// being replaced already: the key's sidecar (also before the new one is written) and its media
    /// of other formats. Not handed over.
    also: Vec<PathBuf>,
    armed: bool,
}

/// Where a store's files are put once written: the folder, and the key or the prompt that names them.
#[derive(Debug)]
struct Placement {
    dir: PathBuf,
    key: Option<MediaKey>,
    extension: &'static str,
    prompt: String,
    /// Whether the folder is synced after the renames ([`FileSink::with_sync`]).
    sync: bool,
}

impl Placement {
    /// Renames the media's temporary file (and the sidecar's) into place, then syncs the folder (unless
    /// the sink does not sync).
    fn place(&self, temp: TempPath, sidecar: Option<TempPath>) -> Result<Placed, SinkError> {
        let placed = match &self.key {
            Some(key) => place_at_key(&self.dir, temp, sidecar, key, self.extension)?,
            None => place(&self.dir, temp, sidecar, self.extension, &self.prompt)?,
        };
        if self.sync {
            sync_folder(&self.dir);
            #[cfg(test)]
            tests::note_synced(&self.dir);
        }
        Ok(placed)
    }
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
            for path in &self.also {
                remove_media_file(path);
            }
        }
    }
}

/// Removes the file at `path`, if there is one: nothing happens to a folder (a key's folder may be
/// named like another key's media, `a.png/` for the key `a.png/b`). Best effort.
fn remove_media_file(path: &Path) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_dir()) {
        let _ = std::fs::remove_file(path);
    }
}

/// A temporary-file builder in the sink's style. Temporary files are private (0600) by default; media
/// and sidecars are published files, readable like any other output (0644 on Unix).
fn temp_builder(suffix: &'static str) -> Builder<'static, 'static> {
    let mut builder = Builder::new();
    debug_assert!(suffix.ends_with(TEMP_SUFFIX));
    builder.prefix(TEMP_PREFIX).suffix(suffix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    builder
}

/// Writes the sidecar's `json` to a temporary file in `dir`, the folder the media's temporary file was
/// made in: what the store syncs with the media ([`sync_files`]) and renames to the sidecar's name
/// once the media is published.
fn write_sidecar(dir: &Path, json: &[u8]) -> Result<(std::fs::File, TempPath), SinkError> {
    let mut tmp = temp_builder(".json.part")
        .tempfile_in(dir)
        .map_err(|e| SinkError::io(dir, e))?;
    // On failure the temporary file is dropped, hence deleted.
    tmp.write_all(json).map_err(|e| SinkError::io(tmp.path(), e))?;
    Ok(tmp.into_parts())
}

/// Makes the written bytes of `files` (each with its path, for errors) durable: each is `fsync`ed,
/// one after the other. On Linux the write-back of all of them is started first, so that their data
/// go to the disk together and the first sync finds the others' on their way: measured on ext4, a
/// media and its sidecar then cost about one sync, where two syncs in a row, or two at once from two
/// threads (which wait for each other's metadata writes), cost about two.
fn sync_files(files: &[(&std::fs::File, &Path)]) -> Result<(), SinkError> {
    if files.len() > 1 {
        for (file, _) in files {
            write_back::start(file);
        }
    }
    for (file, path) in files {
        file.sync_all().map_err(|e| SinkError::io(*path, e))?;
        #[cfg(test)]
        tests::note_synced(path);
    }
    Ok(())
}

/// Starting a file's write-back without waiting for it: a hint, so a failure is ignored (the `fsync`
/// that follows writes everything anyway).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod write_back {
    use std::os::fd::AsRawFd as _;

    /// `sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)`: queue the whole file's dirty pages for
    /// writing and return.
    pub(super) fn start(file: &std::fs::File) {
        // SAFETY: the descriptor is borrowed from `file`, open for the whole call; the call takes
        // integers only and touches no memory of this process.
        let _ = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    }
}

/// Elsewhere there is no such hint: the syncs do all the work.
#[cfg(not(target_os = "linux"))]
mod write_back {
    pub(super) fn start(_file: &std::fs::File) {}
}

/// Creates `dir` and the folders above it up to `root` where missing, and makes their entries
/// durable if `sync` (syncs the folder holding each one created).
fn create_folder(root: &Path, dir: &Path, sync: bool) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    if !sync {
        return Ok(());
    }
    let mut at = dir;
    while let Some(parent) = at.parent() {
        sync_now(parent);
        #[cfg(test)]
        tests::note_synced(parent);
        if at == root || !parent.starts_with(root) {
            break;
        }
        at = parent;
    }
    Ok(())
}

/// Creates the temporary file the media is written to, in the target folder `dir` (created if
/// missing, with the folders above it up to `root`; their entries synced if `sync`).
fn create_temp(root: &Path, dir: &Path, sync: bool) -> Result<(std::fs::File, TempPath), SinkError> {
    create_folder(root, dir, sync).map_err(|e| SinkError::io(dir, e))?;
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

/// Names the media, renames it into place, then renames the prepared `sidecar` next to it. A stem
/// whose media or sidecar name is taken is skipped for a fresh one.
fn place(
    dir: &Path,
    mut temp: TempPath,
    mut sidecar: Option<TempPath>,
    extension: &str,
    prompt: &str,
) -> Result<Placed, SinkError> {
    let unix_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut last_taken = None;
    for _ in 0..NAME_ATTEMPTS {
        let stem = media_file_stem(prompt, unix_secs);
        let media = dir.join(format!("{stem}.{extension}"));
        let sidecar_path = dir.join(format!("{stem}.json"));
        // The media is published first, so its sidecar name must be free beforehand.
        if sidecar.is_some() && taken(&sidecar_path) {
            last_taken = Some(sidecar_path);
            continue;
        }
        let with_sidecar = sidecar.take().map(|temp| (temp, sidecar_path));
        match publish(temp, media, with_sidecar)? {
            Published::Placed(placed) => return Ok(placed),
            Published::Taken {
                temp: back,
                sidecar: sidecar_back,
                name,
            } => {
                temp = back;
                sidecar = sidecar_back;
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
    /// `name` was taken: nothing was published, the temporary files are handed back.
    Taken {
        /// The media's temporary file, still hidden.
        temp: TempPath,
        /// The sidecar's temporary file, still hidden.
        sidecar: Option<TempPath>,
        /// The name that was taken.
        name: PathBuf,
    },
}

/// Renames `temp` to `media` (never replacing a file), which publishes the media; then renames the
/// prepared sidecar to its name (never replacing either). If the sidecar cannot be renamed, the
/// media is removed again: on error nothing remains.
fn publish(temp: TempPath, media: PathBuf, sidecar: Option<(TempPath, PathBuf)>) -> Result<Published, SinkError> {
    if let Err(e) = temp.persist_noclobber(&media) {
        if e.error.kind() == io::ErrorKind::AlreadyExists {
            return Ok(Published::Taken {
                temp: e.path,
                sidecar: sidecar.map(|(temp, _)| temp),
                name: media,
            });
        }
        return Err(SinkError::io(media, e.error));
    }
    // From here on, dropping `placed` (an error below, or a cancelled caller) removes the media.
    let mut placed = Placed {
        media,
        sidecar: None,
        also: Vec::new(),
        armed: true,
    };
    if let Some((temp, path)) = sidecar {
        // On failure the temporary file is dropped, hence deleted.
        temp.persist_noclobber(&path)
            .map_err(|e| SinkError::io(&path, e.error))?;
        placed.sidecar = Some(path);
    }
    Ok(Published::Placed(placed))
}

/// A keyed store: publishes `temp` at `{dir}/{name}.{extension}` and the prepared `sidecar` at
/// `{dir}/{name}.json`, `name` being the key's name.
///
/// A key that is not [fresh](MediaKey::fresh) is replaced: the media renamed over what is there
/// (readers see the old file or the new one), the key's media of other formats removed (`{name}.png`
/// when this one is a `.jpg`), the sidecar renamed over the key's. On an error after the media's
/// rename, or if the returned value is dropped before being handed over, everything at the key is
/// removed: the previous media was replaced already.
///
/// A fresh key is created: neither rename replaces anything (a taken name is
/// [`SinkError::KeyTaken`], and what holds it is left alone), and no other format is looked for.
fn place_at_key(
    dir: &Path,
    temp: TempPath,
    sidecar: Option<TempPath>,
    key: &MediaKey,
    extension: &str,
) -> Result<Placed, SinkError> {
    let name = key.name();
    let media = dir.join(format!("{name}.{extension}"));
    let sidecar_path = dir.join(format!("{name}.json"));
    let fresh = key.is_fresh();
    let failed = |path: &Path, error: io::Error| {
        if fresh && error.kind() == io::ErrorKind::AlreadyExists {
            SinkError::KeyTaken {
                key: key.as_str().to_owned(),
                taken: path.display().to_string(),
            }
        } else {
            SinkError::io(path, error)
        }
    };
    let others: Vec<PathBuf> = if fresh {
        Vec::new()
    } else {
        media_extensions()
            .filter(|other| *other != extension)
            .map(|other| dir.join(format!("{name}.{other}")))
            .collect()
    };
    // A fresh key's sidecar name is checked first, so that its media is never published next to
    // someone else's sidecar (the no-replace renames below still decide).
    if fresh && sidecar.is_some() && taken(&sidecar_path) {
        return Err(failed(&sidecar_path, io::Error::from(io::ErrorKind::AlreadyExists)));
    }
    // A fresh key's names are created (a taken one refused), another key's replaced. On failure the
    // temporary file is dropped, hence deleted.
    let rename = |temp: TempPath, path: &Path| {
        let renamed = if fresh {
            temp.persist_noclobber(path)
        } else {
            temp.persist(path)
        };
        renamed.map_err(|e| failed(path, e.error))
    };
    // The key is untouched until this rename.
    rename(temp, &media)?;
    let mut placed = Placed {
        media,
        sidecar: None,
        // A fresh key has no other formats, and a sidecar there is not this store's.
        also: others
            .iter()
            .cloned()
            .chain((!fresh && sidecar.is_some()).then(|| sidecar_path.clone()))
            .collect(),
        armed: true,
    };
    for other in &others {
        match std::fs::symlink_metadata(other) {
            Ok(meta) if !meta.is_dir() => match std::fs::remove_file(other) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(SinkError::io(other, e)),
            },
            // None there (or a folder of another key, left alone).
            _ => {}
        }
    }
    if let Some(temp) = sidecar {
        rename(temp, &sidecar_path)?;
        placed.sidecar = Some(sidecar_path);
    }
    Ok(placed)
}

#[async_trait::async_trait]
impl MediaSink for FileSink {
    async fn store(&self, mut media: ByteStream, mut record: MediaRecord) -> Result<StoredMedia, SinkError> {
        let started = Instant::now();
        let root = self.dir.clone();
        // A keyed media goes to its key's folder, where its temporary file is made too (a rename
        // never crosses folders).
        let dir = self.folder_for(record.key.as_ref());
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
                    let (temp_root, temp_dir, sync) = (root.clone(), dir.clone(), self.sync);
                    let (file, path) = blocking(&dir, move || create_temp(&temp_root, &temp_dir, sync)).await?;
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
        record.timings.store_ms = millis(started.elapsed());

        // The media's last bytes and the sidecar are written to their temporary files, synced together
        // (`sync_files`), renamed into place and the folder synced (the syncs unless the sink does not
        // sync), all in one blocking task: one hand-off to the blocking pool per store. If this future
        // is dropped meanwhile, the task still ends, and its unclaimed output (temporary paths, the
        // `Placed` guard) is dropped, which removes the files.
        let sidecar_json = if self.sidecar {
            Some(serde_json::to_vec_pretty(&record).map_err(|e| SinkError::io(&dir, io::Error::other(e)))?)
        } else {
            None
        };
        let placement = Placement {
            dir: dir.clone(),
            key: record.key.clone(),
            extension: format.extension,
            prompt: record.prompt.clone(),
            sync: self.sync,
        };
        let placed = blocking(&dir, move || {
            let (file, temp) = match (spilled, temp) {
                (Some(file), Some(temp)) => (file, temp),
                _ => create_temp(&root, &placement.dir, placement.sync)?,
            };
            let file = write_batch(file, &pending).map_err(|e| SinkError::io(temp.to_path_buf(), e))?;
            let sidecar = match sidecar_json {
                Some(json) => Some(write_sidecar(&placement.dir, &json)?),
                None => None,
            };
            let mut files = vec![(&file, &*temp)];
            files.extend(sidecar.as_ref().map(|(file, temp)| (file, &**temp)));
            if placement.sync {
                sync_files(&files)?;
            }
            drop(files);
            placement.place(temp, sidecar.map(|(_, temp)| temp))
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

    /// The files and folders synced by this process's stores, for the checks of `with_sync`.
    static SYNCED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

    pub(super) fn note_synced(path: &Path) {
        SYNCED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(path.to_path_buf());
    }

    /// What was synced under `root`.
    fn synced_under(root: &Path) -> Vec<PathBuf> {
        let synced = SYNCED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        synced.iter().filter(|path| path.starts_with(root)).cloned().collect()
    }

    #[tokio::test]
    async fn a_store_syncs_its_files_and_then_the_folder_unless_told_not_to() {
        let (big, big_chunks) = big_png(SPILL_BYTES + 1000);
        // A small media, one whose key makes new sub-folders, and one large enough to spill to disk.
        let cases = [
            (
                "small",
                record("synced or not"),
                vec![PNG.to_vec()],
                PNG.to_vec(),
                "out",
            ),
            (
                "keyed",
                keyed("keyed", "a/b/c"),
                vec![PNG.to_vec()],
                PNG.to_vec(),
                "out/a/b",
            ),
            ("spilled", record("spilled"), big_chunks, big, "out"),
        ];
        for (what, record, chunks_of_media, bytes, folder) in cases {
            for sync in [true, false] {
                let tmp = tempfile::tempdir().expect("tempdir");
                let sink = FileSink::new(tmp.path().join("out")).with_sync(sync);
                assert_eq!(sink.sync(), sync);
                let stored = sink
                    .store(chunks(chunks_of_media.clone()), record.clone())
                    .await
                    .expect("stored");
                let dir = tmp.path().join(folder);
                let synced = synced_under(tmp.path());
                if sync {
                    // The entries of the folders just made (each in its parent), the two temporary files
                    // (the media's, the sidecar's), then the folder, after the renames.
                    let (files, last) = (&synced[synced.len() - 3..synced.len() - 1], &synced[synced.len() - 1]);
                    assert!(
                        files
                            .iter()
                            .all(|p| p.parent() == Some(dir.as_path()) && is_temporary(p.file_name().expect("name"))),
                        "{what}: {synced:?}"
                    );
                    assert_eq!(last, &dir, "{what}: {synced:?}");
                    let folders = &synced[..synced.len() - 3];
                    let expected: Vec<PathBuf> = match what {
                        "keyed" => vec![
                            tmp.path().join("out/a"),
                            tmp.path().join("out"),
                            tmp.path().to_path_buf(),
                        ],
                        _ => vec![tmp.path().to_path_buf()],
                    };
                    assert_eq!(folders, expected.as_slice(), "{what}: the new folders' entries");
                } else {
                    assert!(synced.is_empty(), "{what}: {synced:?}");
                }
                // Atomic either way: the media and its sidecar in place, no temporary file.
                let MediaLocation::File(path) = &stored.location else {
                    panic!("expected a file, got {:?}", stored.location);
                };
                assert_eq!(std::fs::read(path).expect("read"), bytes, "{what}");
                let names = listing(&dir);
                assert_eq!(names.len(), 2, "{what}: {names:?}");
                assert!(names.iter().all(|n| !n.starts_with('.')), "{what}: {names:?}");
            }
        }
    }

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
        let sidecar_temp = write_sidecar(tmp.path(), b"{}").expect("sidecar temp").1;
        let sidecar = tmp.path().join("taken.json");
        match publish(temp, taken.clone(), Some((sidecar_temp, sidecar.clone()))) {
            Ok(Published::Taken {
                temp,
                sidecar: Some(sidecar_temp),
                name,
            }) => {
                assert_eq!(name, taken);
                assert!(temp.exists(), "the temporary file is kept for the next name");
                assert!(sidecar_temp.exists(), "and the sidecar's");
            }
            other => panic!("expected Taken, got {other:?}"),
        }
        assert_eq!(std::fs::read(&taken).expect("read"), b"someone else's");
        assert!(!sidecar.exists());
        assert_eq!(
            listing(tmp.path()),
            vec!["taken.png".to_owned()],
            "the temporary files went with their paths"
        );
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
        let sidecar_temp = write_sidecar(tmp.path(), b"{}").expect("sidecar temp").1;
        let err = publish(
            temp.into_temp_path(),
            media.clone(),
            Some((sidecar_temp, sidecar.clone())),
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
        assert!(sink.sync());
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
        let sidecar_temp = write_sidecar(tmp.path(), b"{}").expect("sidecar temp").1;
        let err = sidecar_temp.persist_noclobber(&taken).expect_err("must not overwrite");
        assert_eq!(err.error.kind(), io::ErrorKind::AlreadyExists);
        drop(err);
        assert_eq!(std::fs::read(&taken).expect("read"), b"original");
        assert_eq!(listing(tmp.path()), vec!["taken.json".to_owned()]);
    }

    fn keyed(prompt: &str, key: &str) -> MediaRecord {
        MediaRecord {
            key: Some(MediaKey::new(key).expect("a valid key")),
            ..record(prompt)
        }
    }

    const JPEG: &[u8] = &[0xff, 0xd8, 0xff, 0xe0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1];

    fn sidecar_prompt(path: &Path) -> String {
        let text = std::fs::read_to_string(path).expect("read sidecar");
        serde_json::from_str::<MediaRecord>(&text).expect("parse").prompt
    }

    #[tokio::test]
    async fn a_keyed_store_replaces_in_place_in_its_sub_folders() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::new(tmp.path().join("out"));
        let first = sink
            .store(
                chunks(vec![PNG.to_vec()]),
                keyed("first", "run-1/shard-0000/item-000001"),
            )
            .await
            .expect("stored");
        let folder = tmp.path().join("out/run-1/shard-0000");
        let media = folder.join("item-000001.png");
        let sidecar = folder.join("item-000001.json");
        assert_eq!(first.location, MediaLocation::File(media.clone()));
        assert_eq!(first.sidecar, Some(MediaLocation::File(sidecar.clone())));
        assert_eq!(
            first.record.key.as_ref().map(MediaKey::as_str),
            Some("run-1/shard-0000/item-000001")
        );
        assert_eq!(sidecar_prompt(&sidecar), "first");
        let text = std::fs::read_to_string(&sidecar).expect("read");
        assert!(!text.contains("item-000001"), "the key is not written: {text}");

        // A reader holding the first file keeps reading it whole: the second is renamed over it.
        let mut reader = std::fs::File::open(&media).expect("open");
        let mut second_png = PNG.to_vec();
        second_png.extend_from_slice(b"second");
        let second = sink
            .store(
                chunks(vec![second_png.clone()]),
                keyed("second", "run-1/shard-0000/item-000001"),
            )
            .await
            .expect("stored again");
        assert_eq!(second.location, first.location);
        assert_eq!(second.sidecar, first.sidecar);
        assert_eq!(std::fs::read(&media).expect("read"), second_png);
        assert_eq!(sidecar_prompt(&sidecar), "second");
        let mut old = Vec::new();
        io::Read::read_to_end(&mut reader, &mut old).expect("read the old file");
        assert_eq!(old, PNG, "the old file was replaced, not rewritten");
        assert_eq!(listing(&folder), ["item-000001.json", "item-000001.png"]);
        assert_eq!(listing(tmp.path().join("out").as_path()), ["run-1"]);

        // Without sidecars: the media is replaced, a sidecar already there is left alone.
        let bare = FileSink::new(tmp.path().join("out")).with_sidecar(false);
        let third = bare
            .store(
                chunks(vec![PNG.to_vec()]),
                keyed("third", "run-1/shard-0000/item-000001"),
            )
            .await
            .expect("stored");
        assert!(third.sidecar.is_none());
        assert_eq!(std::fs::read(&media).expect("read"), PNG);
        assert_eq!(sidecar_prompt(&sidecar), "second");
        assert_eq!(listing(&folder), ["item-000001.json", "item-000001.png"]);
    }

    #[tokio::test]
    async fn a_keyed_store_of_another_format_removes_the_other() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::new(tmp.path());
        sink.store(chunks(vec![PNG.to_vec()]), keyed("png", "a"))
            .await
            .expect("stored");
        // A folder named like another format of the key (the key `a.gif/b`) is not touched.
        sink.store(chunks(vec![PNG.to_vec()]), keyed("nested", "a.gif/b"))
            .await
            .expect("stored");
        assert_eq!(listing(tmp.path()), ["a.gif", "a.json", "a.png"]);
        let stored = sink
            .store(chunks(vec![JPEG.to_vec()]), keyed("jpeg", "a"))
            .await
            .expect("stored");
        assert_eq!(stored.location, MediaLocation::File(tmp.path().join("a.jpg")));
        assert_eq!(listing(tmp.path()), ["a.gif", "a.jpg", "a.json"]);
        assert_eq!(sidecar_prompt(&tmp.path().join("a.json")), "jpeg");
        assert_eq!(listing(&tmp.path().join("a.gif")), ["b.json", "b.png"]);
        // Names that merely start like the key are other keys: left alone.
        std::fs::write(tmp.path().join("a.png.png"), PNG).expect("write");
        std::fs::write(tmp.path().join("ab.png"), PNG).expect("write");
        sink.store(chunks(vec![PNG.to_vec()]), keyed("png again", "a"))
            .await
            .expect("stored");
        assert_eq!(listing(tmp.path()), ["a.gif", "a.json", "a.png", "a.png.png", "ab.png"]);
    }

    #[tokio::test]
    async fn a_keyed_store_failing_after_the_rename_leaves_the_key_empty() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::new(tmp.path());
        // Another format of the key, and a folder where the sidecar must go: the sidecar's rename
        // fails once the media replaced what was there.
        std::fs::write(tmp.path().join("k.webp"), b"an older media").expect("write");
        std::fs::write(tmp.path().join("k.png"), b"the previous media").expect("write");
        std::fs::create_dir(tmp.path().join("k.json")).expect("mkdir");
        let err = sink
            .store(chunks(vec![PNG.to_vec()]), keyed("x", "k"))
            .await
            .expect_err("the sidecar cannot be written");
        match &err {
            SinkError::Io { path, .. } => assert_eq!(path, &tmp.path().join("k.json")),
            other => panic!("expected Io, got {other:?}"),
        }
        assert_eq!(listing(tmp.path()), ["k.json"], "only the folder that was in the way");
        assert!(listing(&tmp.path().join("k.json")).is_empty());
    }

    #[tokio::test]
    async fn a_keyed_store_failing_before_the_rename_leaves_the_key_as_it_was() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::new(tmp.path());
        sink.store(chunks(vec![PNG.to_vec()]), keyed("kept", "s/k"))
            .await
            .expect("stored");
        let media = stream::iter(vec![
            Ok(Bytes::from_static(&PNG[..40])),
            Err::<Bytes, crate::StreamError>(crate::StreamError::network("reset")),
        ])
        .boxed();
        sink.store(media, keyed("failed", "s/k")).await.expect_err("fails");
        // A key whose folder cannot be made (a file is in the way).
        std::fs::write(tmp.path().join("blocked"), b"a file").expect("write");
        let err = sink
            .store(chunks(vec![PNG.to_vec()]), keyed("blocked", "blocked/k"))
            .await
            .expect_err("no folder");
        assert!(matches!(err, SinkError::Io { .. }), "{err:?}");
        assert_eq!(listing(&tmp.path().join("s")), ["k.json", "k.png"]);
        assert_eq!(std::fs::read(tmp.path().join("s/k.png")).expect("read"), PNG);
        assert_eq!(sidecar_prompt(&tmp.path().join("s/k.json")), "kept");
        assert_eq!(listing(tmp.path()), ["blocked", "s"]);
    }

    fn fresh(prompt: &str, key: &str) -> MediaRecord {
        MediaRecord {
            key: Some(MediaKey::new(key).expect("a valid key").fresh()),
            ..record(prompt)
        }
    }

    #[tokio::test]
    async fn a_fresh_key_is_created_and_never_replaces() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::new(tmp.path());
        // A fresh key looks for no other format: what a lying caller left there stays.
        std::fs::write(tmp.path().join("k.webp"), b"not looked for").expect("write");
        let stored = sink
            .store(chunks(vec![PNG.to_vec()]), fresh("made", "k"))
            .await
            .expect("stored");
        assert_eq!(stored.location, MediaLocation::File(tmp.path().join("k.png")));
        assert_eq!(listing(tmp.path()), ["k.json", "k.png", "k.webp"]);

        // Taken media name: refused, nothing touched, no temporary left.
        let err = sink
            .store(chunks(vec![PNG.to_vec(), b"other".to_vec()]), fresh("again", "k"))
            .await
            .expect_err("k.png is taken");
        match &err {
            SinkError::KeyTaken { key, taken } => {
                assert_eq!(key, "k");
                // The sidecar's name is looked at first: the media is never published beside it.
                assert_eq!(taken, &tmp.path().join("k.json").display().to_string());
            }
            other => panic!("expected KeyTaken, got {other:?}"),
        }
        // Without sidecars, the media's name decides.
        let bare = FileSink::new(tmp.path()).with_sidecar(false);
        let err = bare
            .store(chunks(vec![PNG.to_vec(), b"bare".to_vec()]), fresh("bare", "k"))
            .await
            .expect_err("k.png is taken");
        assert!(
            matches!(&err, SinkError::KeyTaken { taken, .. } if taken.ends_with("k.png")),
            "{err:?}"
        );
        assert_eq!(std::fs::read(tmp.path().join("k.png")).expect("read"), PNG);
        assert_eq!(listing(tmp.path()), ["k.json", "k.png", "k.webp"]);
        // Another format is a free media name, but the key's sidecar name is taken: refused too.
        let err = sink
            .store(chunks(vec![JPEG.to_vec()]), fresh("as a JPEG", "k"))
            .await
            .expect_err("k.json is taken");
        assert!(
            matches!(&err, SinkError::KeyTaken { taken, .. } if taken.ends_with("k.json")),
            "{err:?}"
        );
        assert_eq!(sidecar_prompt(&tmp.path().join("k.json")), "made");

        // Taken sidecar name only: the media renamed into place goes again, the sidecar stays.
        std::fs::write(tmp.path().join("j.json"), b"someone else's").expect("write");
        let err = sink
            .store(chunks(vec![PNG.to_vec()]), fresh("late", "j"))
            .await
            .expect_err("j.json is taken");
        assert!(
            matches!(&err, SinkError::KeyTaken { taken, .. } if taken.ends_with("j.json")),
            "{err:?}"
        );
        assert!(err.to_string().contains("new key"), "{err}");
        assert_eq!(
            std::fs::read(tmp.path().join("j.json")).expect("read"),
            b"someone else's"
        );
        assert_eq!(listing(tmp.path()), ["j.json", "k.json", "k.png", "k.webp"]);

        // The same name, not fresh: replaced as usual.
        sink.store(chunks(vec![PNG.to_vec()]), keyed("replaced", "k"))
            .await
            .expect("replaced");
        assert_eq!(listing(tmp.path()), ["j.json", "k.json", "k.png"]);
        assert_eq!(sidecar_prompt(&tmp.path().join("k.json")), "replaced");
    }

    #[tokio::test]
    async fn a_large_keyed_media_is_written_in_its_final_folder() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::new(tmp.path());
        let (bytes, parts) = big_png(2 * SPILL_BYTES + 99);
        let stored = sink
            .store(chunks(parts.clone()), keyed("big", "big/one"))
            .await
            .expect("stored");
        assert_eq!(stored.location, MediaLocation::File(tmp.path().join("big/one.png")));
        assert_eq!(std::fs::read(tmp.path().join("big/one.png")).expect("read"), bytes);
        assert_eq!(listing(&tmp.path().join("big")), ["one.json", "one.png"]);

        // While a large keyed store waits for bytes, its temporary file is in the key's folder.
        let stalled = stream::iter(parts.into_iter().map(|p| Ok(Bytes::from(p))))
            .chain(stream::pending())
            .boxed();
        let mut store = Box::pin(sink.store(stalled, keyed("stalled", "big/two/three")));
        tokio::select! {
            result = &mut store => panic!("the stream stalls, got {result:?}"),
            () = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
        let folder = tmp.path().join("big/two");
        let names = listing(&folder);
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(is_temporary(std::ffi::OsStr::new(&names[0])), "{names:?}");
        drop(store);
        assert!(listing(&folder).is_empty(), "{:?}", listing(&folder));
        assert_eq!(listing(&tmp.path().join("big")), ["one.json", "one.png", "two"]);
    }

    #[test]
    fn cleanup_temporaries_removes_only_the_sinks_temporary_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("out");
        let sink = FileSink::new(&dir);
        assert_eq!(sink.cleanup_temporaries().expect("no folder"), 0);
        let deep = dir.join("a/b");
        std::fs::create_dir_all(&deep).expect("mkdir");
        // What a killed process leaves: temporary files kept on disk, in every folder.
        let mut left = Vec::new();
        for (folder, suffix) in [
            (&dir, ".part"),
            (&dir, ".json.part"),
            (&dir.join("a"), ".part"),
            (&deep, ".json.part"),
        ] {
            let (_, path) = temp_builder(suffix)
                .tempfile_in(folder)
                .expect("temp")
                .keep()
                .expect("kept");
            left.push(path);
        }
        // Decoys: media, other hidden files, files nearly named like a temporary one, a folder
        // named like one (walked, not removed).
        let decoys = [
            dir.join("1732623000_a-cat_0f3a9c21.png"),
            dir.join("x.part"),
            dir.join(".other.part"),
            dir.join(".hf-media-notes.txt"),
            deep.join("item.json"),
        ];
        for decoy in &decoys {
            std::fs::write(decoy, b"keep me").expect("write");
        }
        let named_like = dir.join(".hf-media-folder.part");
        std::fs::create_dir(&named_like).expect("mkdir");
        std::fs::write(named_like.join(".hf-media-inside.part"), b"").expect("write");
        // Symbolic links are not followed, nor removed.
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        std::fs::write(outside.join(".hf-media-outside.part"), b"").expect("write");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&outside, dir.join("link")).expect("symlink");
            std::os::unix::fs::symlink(outside.join(".hf-media-outside.part"), dir.join(".hf-media-link.part"))
                .expect("symlink");
        }

        assert_eq!(sink.cleanup_temporaries().expect("cleaned"), 5);
        for path in &left {
            assert!(!path.exists(), "{} was left", path.display());
        }
        for decoy in &decoys {
            assert!(decoy.exists(), "{} was removed", decoy.display());
        }
        assert!(named_like.is_dir());
        assert!(listing(&named_like).is_empty());
        assert_eq!(listing(&outside), [".hf-media-outside.part"]);
        #[cfg(unix)]
        assert!(std::fs::symlink_metadata(dir.join(".hf-media-link.part")).is_ok());
        assert_eq!(sink.cleanup_temporaries().expect("nothing left"), 0);
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
        let sidecar = write_sidecar(tmp.path(), b"{}").expect("sidecar temp").1;
        let placed = place(tmp.path(), temp, Some(sidecar), "png", "p").expect("placed");
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
