//! The output of a batch: a folder or an object-store prefix holding the media (through the sink) and
//! three files rebuilt from the state, each replaced atomically (a reader sees the old file or the new
//! one, never a broken line):
//!
//! - `results.jsonl`: one line per finished input item, in OpenAI Batch output shape;
//! - `errors.jsonl`: the failed items alone, in the same shape;
//! - `metadata.jsonl`: one line per media in Hugging Face ImageFolder / VideoFolder form (`file_name`
//!   relative to the file), so `datasets.load_dataset("imagefolder", data_dir=…)` loads the output.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use hf_media::prompt::{ChatMessage, format_prompt};
use hf_media::sink::{DynMediaSink, FileSink, MediaSink};
use hf_media_sink_object::ObjectSink;
use hf_media_sink_object::object_store::{ObjectStoreExt, PutPayload, WriteMultipart, path::Path as ObjectPath};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::BatchError;
use crate::state::{BatchState, ItemRow, ItemState};

/// The name of the results file.
pub const RESULTS_FILE: &str = "results.jsonl";
/// The name of the errors file.
pub const ERRORS_FILE: &str = "errors.jsonl";
/// The name of the dataset metadata file.
pub const METADATA_FILE: &str = "metadata.jsonl";

/// Where a batch writes: a folder, or an object-store prefix.
#[derive(Debug, Clone)]
pub enum BatchOutput {
    /// A folder on disk.
    Dir(PathBuf),
    /// A prefix in object storage (`s3://bucket/prefix`, `gs://…`, `az://…`, `file:///…`).
    Object(ObjectSink),
}

/// Whether `output` names object storage rather than a folder.
pub fn is_object_url(output: &str) -> bool {
    [
        "s3://",
        "s3a://",
        "gs://",
        "az://",
        "abfs://",
        "abfss://",
        "adl://",
        "azure://",
        "file://",
        "memory://",
    ]
    .iter()
    .any(|scheme| output.starts_with(scheme))
}

impl BatchOutput {
    /// `-o` as given: an object-store URL (credentials and endpoint from the usual environment
    /// variables), else a folder.
    pub fn parse(output: &str) -> Result<BatchOutput, BatchError> {
        if is_object_url(output) {
            let sink = ObjectSink::from_url(output).map_err(|e| BatchError::Output {
                output: output.to_owned(),
                message: e.to_string(),
            })?;
            Ok(BatchOutput::Object(sink.with_sidecar(false)))
        } else {
            Ok(BatchOutput::Dir(PathBuf::from(output)))
        }
    }

    /// The batch's identity in a state: the folder's absolute path, or the prefix's URI.
    pub fn key(&self) -> String {
        match self {
            BatchOutput::Dir(dir) => std::path::absolute(dir)
                .unwrap_or_else(|_| dir.clone())
                .display()
                .to_string(),
            BatchOutput::Object(sink) => sink.uri(),
        }
    }

    /// How the output is shown.
    pub fn display(&self) -> String {
        match self {
            BatchOutput::Dir(dir) => dir.display().to_string(),
            BatchOutput::Object(sink) => sink.uri(),
        }
    }

    /// The folder, for a folder output.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            BatchOutput::Dir(dir) => Some(dir),
            BatchOutput::Object(_) => None,
        }
    }

    /// The sink the media go to (no sidecars: the records are in the result files).
    pub fn sink(&self, max_media_bytes: u64) -> DynMediaSink {
        match self {
            BatchOutput::Dir(dir) => Arc::new(
                FileSink::new(dir.clone())
                    .with_sidecar(false)
                    .with_max_bytes(max_media_bytes),
            ),
            BatchOutput::Object(sink) => Arc::new(sink.clone().with_max_bytes(max_media_bytes)),
        }
    }

    /// Checks that the output can be written (creates the folder; lists the prefix).
    pub async fn check(&self) -> Result<(), BatchError> {
        match self {
            BatchOutput::Dir(dir) => std::fs::create_dir_all(dir).map_err(|e| BatchError::Output {
                output: dir.display().to_string(),
                message: format!("cannot create the folder: {e}"),
            }),
            BatchOutput::Object(sink) => sink.check().await.map_err(|e| BatchError::Output {
                output: sink.uri(),
                message: e.to_string(),
            }),
        }
    }

    /// A media's location (a path or URI as the sink gave it) relative to the output: its `file_name`.
    pub fn relative(&self, location: &str) -> String {
        let base = match self {
            BatchOutput::Dir(dir) => dir.display().to_string(),
            BatchOutput::Object(sink) => sink.uri(),
        };
        location
            .strip_prefix(&base)
            .map(|rest| rest.trim_start_matches(['/', '\\']).replace('\\', "/"))
            .unwrap_or_else(|| location.to_owned())
    }

    /// Publishes the local file `from` as `name` in the output, atomically.
    async fn publish(&self, from: tempfile::NamedTempFile, name: &str) -> Result<(), BatchError> {
        let fail = |message: String| BatchError::Output {
            output: self.display(),
            message,
        };
        match self {
            BatchOutput::Dir(dir) => {
                let target = dir.join(name);
                from.as_file()
                    .sync_all()
                    .map_err(|e| fail(format!("cannot write {name}: {e}")))?;
                from.persist(&target)
                    .map_err(|e| fail(format!("cannot replace {}: {}", target.display(), e.error)))?;
                Ok(())
            }
            BatchOutput::Object(sink) => {
                let key = ObjectPath::from(format!("{}/{name}", sink.prefix()).trim_start_matches('/'));
                let store = sink.object_store().clone();
                let size = from.as_file().metadata().map(|m| m.len()).unwrap_or(0);
                let path = from.path().to_owned();
                if size <= 8 * 1024 * 1024 {
                    let bytes = tokio::fs::read(&path)
                        .await
                        .map_err(|e| fail(format!("cannot read {name}: {e}")))?;
                    store
                        .put(&key, PutPayload::from(bytes))
                        .await
                        .map_err(|e| fail(format!("cannot store {name}: {e}")))?;
                    return Ok(());
                }
                let upload = store
                    .put_multipart(&key)
                    .await
                    .map_err(|e| fail(format!("cannot store {name}: {e}")))?;
                let mut writer = WriteMultipart::new(upload);
                let mut file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| fail(format!("cannot read {name}: {e}")))?;
                let mut chunk = vec![0u8; 1 << 20];
                loop {
                    use tokio::io::AsyncReadExt;
                    let read = match file.read(&mut chunk).await {
                        Ok(read) => read,
                        Err(e) => {
                            let _ = writer.abort().await;
                            return Err(fail(format!("cannot read {name}: {e}")));
                        }
                    };
                    if read == 0 {
                        break;
                    }
                    if let Err(e) = writer.wait_for_capacity(4).await {
                        // No upload left open (its parts would be billed and never listed).
                        let _ = writer.abort().await;
                        return Err(fail(format!("cannot store {name}: {e}")));
                    }
                    writer.write(&chunk[..read]);
                }
                writer
                    .finish()
                    .await
                    .map(drop)
                    .map_err(|e| fail(format!("cannot store {name}: {e}")))
            }
        }
    }
}

/// What writing the result files found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Lines of `results.jsonl`.
    pub results: u64,
    /// Lines of `errors.jsonl`.
    pub errors: u64,
    /// Lines of `metadata.jsonl` (media).
    pub media: u64,
}

/// The OpenAI-style request id of an item (`batch_req_` and 24 hex digits), stable across runs.
fn request_id(batch_key: &str, item_id: &str) -> String {
    let digest = Sha256::digest(format!("{batch_key}\n{item_id}").as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("batch_req_{hex}")
}

/// The prompt an item was made from, as its records show it.
fn prompt_of(spec: &Value) -> String {
    let prompt = spec.get("prompt").and_then(Value::as_str);
    let messages: Vec<ChatMessage> = spec
        .get("messages")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .unwrap_or_default();
    format_prompt(prompt, &messages).unwrap_or_default()
}

/// The result and metadata lines of one item.
struct Lines {
    result: Option<Value>,
    failed: bool,
    media: Vec<Value>,
}

fn lines_of(output: &BatchOutput, batch_key: &str, row: &ItemRow) -> Lines {
    let prompt = prompt_of(&row.spec);
    let model = row
        .spec
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let parameters = row.spec.get("params").cloned().unwrap_or(Value::Object(Map::new()));
    let mut data = Vec::new();
    let mut media = Vec::new();
    for (index, record) in &row.media {
        let location = record.get("path").and_then(Value::as_str).unwrap_or_default();
        let file_name = output.relative(location);
        let mut params = parameters.clone();
        if let (Some(params), Some(seed)) = (params.as_object_mut(), record.get("seed"))
            && !seed.is_null()
        {
            params.insert("seed".into(), seed.clone());
        }
        data.push(json!({
            "url": location,
            "file_name": file_name,
            "revised_prompt": prompt,
            "index": index,
            "provider": record.get("provider"),
            "seed": record.get("seed"),
            "record": record,
        }));
        media.push(json!({
            "file_name": file_name,
            "custom_id": row.id,
            "index": index,
            "prompt": prompt,
            "model": record.get("model").cloned().unwrap_or_else(|| Value::String(model.clone())),
            "provider": record.get("provider"),
            "provider_id": record.get("provider_id"),
            "seed": record.get("seed"),
            "kind": record.get("kind"),
            "parameters": serde_json::to_string(&params).unwrap_or_default(),
        }));
    }
    let id = request_id(batch_key, &row.id);
    let result = match row.state {
        ItemState::Done => Some(json!({
            "id": id,
            "custom_id": row.id,
            "response": {
                "status_code": 200,
                "request_id": row.id,
                "body": {
                    "created": row.finished_at.map(|ms| ms / 1000),
                    "model": model,
                    "provider": row.provider,
                    "data": data,
                },
            },
            "error": null,
        })),
        ItemState::Failed => {
            let error = row.error.clone().unwrap_or(Value::Null);
            let code = row
                .error_kind
                .clone()
                .or_else(|| error.get("code").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| "failed".into());
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the item failed")
                .to_owned();
            let mut error_object = json!({ "code": code, "message": message, "line": row.line });
            if let Some(attempts) = error.get("attempts") {
                error_object["attempts"] = attempts.clone();
            }
            if !data.is_empty() {
                error_object["data"] = Value::Array(data);
            }
            // A bad line is stored under its own id; the custom_id it gave, if any, is the one shown.
            let custom_id = error
                .get("custom_id")
                .and_then(Value::as_str)
                .map_or_else(|| row.id.clone(), str::to_owned);
            Some(json!({ "id": id, "custom_id": custom_id, "response": null, "error": error_object }))
        }
        ItemState::Pending | ItemState::Running => None,
    };
    Lines {
        failed: row.state == ItemState::Failed,
        result,
        media,
    }
}

/// Rebuilds the three result files from the state (every item, in input order, streamed) and publishes
/// each atomically.
pub async fn write_outputs(
    output: &BatchOutput,
    state: &dyn BatchState,
    batch_key: &str,
) -> Result<Written, BatchError> {
    let local = |what: &str| -> Result<tempfile::NamedTempFile, BatchError> {
        let made = match output.dir() {
            Some(dir) => tempfile::Builder::new()
                .prefix(".hf-media-")
                .suffix(".jsonl.part")
                .tempfile_in(dir),
            None => tempfile::Builder::new().prefix("hf-media-").suffix(".jsonl").tempfile(),
        };
        made.map_err(|e| BatchError::Output {
            output: output.display(),
            message: format!("cannot write {what}: {e}"),
        })
    };
    let (results_file, errors_file, metadata_file) = (local(RESULTS_FILE)?, local(ERRORS_FILE)?, local(METADATA_FILE)?);
    let mut results = BufWriter::new(results_file.reopen().map_err(|e| io_error(output, e))?);
    let mut errors = BufWriter::new(errors_file.reopen().map_err(|e| io_error(output, e))?);
    let mut metadata = BufWriter::new(metadata_file.reopen().map_err(|e| io_error(output, e))?);
    let mut written = Written::default();
    let mut rows = state.scan();
    while let Some(row) = rows.next().await {
        let row = row?;
        let lines = lines_of(output, batch_key, &row);
        if let Some(result) = &lines.result {
            write_line(&mut results, result).map_err(|e| io_error(output, e))?;
            written.results += 1;
            if lines.failed {
                write_line(&mut errors, result).map_err(|e| io_error(output, e))?;
                written.errors += 1;
            }
        }
        for line in &lines.media {
            write_line(&mut metadata, line).map_err(|e| io_error(output, e))?;
            written.media += 1;
        }
    }
    drop(rows);
    for writer in [results, errors, metadata] {
        writer
            .into_inner()
            .map_err(|e| io_error(output, e.into_error()))?
            .sync_all()
            .map_err(|e| io_error(output, e))?;
    }
    output.publish(results_file, RESULTS_FILE).await?;
    output.publish(errors_file, ERRORS_FILE).await?;
    output.publish(metadata_file, METADATA_FILE).await?;
    Ok(written)
}

fn write_line(writer: &mut impl Write, line: &Value) -> std::io::Result<()> {
    serde_json::to_writer(&mut *writer, line)?;
    writer.write_all(b"\n")
}

fn io_error(output: &BatchOutput, error: std::io::Error) -> BatchError {
    BatchError::Output {
        output: output.display(),
        message: format!("cannot write the result files: {error}"),
    }
}

/// Removes what a killed process left in a folder output: the sink's temporary files and this module's
/// unpublished result files older than `older_than` (a live writer's temporary files are younger: they
/// are written to as the media arrive).
pub fn remove_leftovers(output: &BatchOutput, older_than: std::time::Duration) -> usize {
    let Some(dir) = output.dir() else { return 0 };
    let mut removed = 0;
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            let path = entry.path();
            if kind.is_dir() {
                folders.push(path);
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let temporary = name.ends_with(".part") && name.starts_with('.');
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age >= older_than);
            if kind.is_file() && temporary && old && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

#[allow(dead_code)]
fn _sink_is_object_safe(_: &dyn MediaSink) {}
