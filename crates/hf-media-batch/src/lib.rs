#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod error;
mod item;
pub mod runner;
mod source;
pub mod state;
#[cfg(feature = "testing")]
pub use state::testing;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::str::FromStr;

use hf_media::GenerateRequest;
use sha2::{Digest, Sha256};

pub use error::{BatchError, DifferentBatch, LineError, REFUSED_LISTED};
pub use item::{BatchItem, MAX_CUSTOM_ID_CHARS};

use item::{Raw, build, canonical_json, digest, hex, stable_id};
use source::{CsvSource, JsonlSource, Next};

/// The input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// One JSON object a line: an OpenAI batch line or a flat row.
    Jsonl,
    /// A header, then one row a line (quoted fields may span lines).
    Csv,
}

impl Format {
    /// The format a file's extension names: `.jsonl`, `.ndjson`, `.json` are JSONL, `.csv` is CSV (any
    /// case); `None` for anything else.
    pub fn from_path(path: &Path) -> Option<Format> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }

    /// `format` when given, else the one the extension names.
    pub fn detect(path: &Path, format: Option<Format>) -> Result<Format, BatchError> {
        format
            .or_else(|| Format::from_path(path))
            .ok_or_else(|| BatchError::UnknownFormat { path: path.to_owned() })
    }
}

impl FromStr for Format {
    type Err = BatchError;

    /// `jsonl` (also `json`, `ndjson`) or `csv`, in any case.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.trim().to_ascii_lowercase().as_str() {
            "jsonl" | "json" | "ndjson" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            _ => Err(BatchError::FormatName(name.to_owned())),
        }
    }
}

/// How an input is read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadOptions {
    /// The column (CSV) or key (JSONL flat rows) holding the prompt (default `prompt`). In CSV it must be
    /// in the header (an exact match, else the one column that matches ignoring case) unless there is a
    /// `messages` column; a JSONL row without it falls back to its `prompt`.
    pub prompt_column: String,
    /// Strict mode: a bad line refuses the whole file. [`validate`] then fails with
    /// [`BatchError::Refused`] listing the first bad lines, and [`read_items`] stops after the first bad
    /// line it yields.
    pub strict: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            prompt_column: "prompt".into(),
            strict: false,
        }
    }
}

impl ReadOptions {
    /// Sets the prompt column.
    pub fn prompt_column(mut self, column: impl Into<String>) -> Self {
        self.prompt_column = column.into();
        self
    }

    /// Sets strict mode.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }
}

enum Source<R> {
    Jsonl(JsonlSource<R>),
    Csv(Box<CsvSource<R>>),
}

/// The items of an input, read one line at a time: each a [`BatchItem`] or the [`LineError`] that says
/// why its line is bad. Memory stays flat whatever the file's length (only the ids seen are kept, to find
/// duplicates).
///
/// After a fatal error (see [`LineError::is_fatal`]), or after any bad line in strict mode, it ends.
pub struct Items<R> {
    source: Source<R>,
    defaults: GenerateRequest,
    options: ReadOptions,
    /// Every id given so far, with its line.
    seen: HashMap<String, usize>,
    hasher: Sha256,
    items: usize,
    done: bool,
    /// The last model that passed its check.
    known_model: Option<String>,
}

/// Reads the items of `reader`, in `format`, each line overriding `defaults` (see the crate docs).
pub fn read_items<R: BufRead>(
    reader: R,
    format: Format,
    defaults: &GenerateRequest,
    options: &ReadOptions,
) -> Items<R> {
    let source = match format {
        Format::Jsonl => Source::Jsonl(JsonlSource::new(reader)),
        Format::Csv => Source::Csv(Box::new(CsvSource::new(reader))),
    };
    Items {
        source,
        defaults: defaults.clone(),
        options: options.clone(),
        seen: HashMap::new(),
        hasher: Sha256::new(),
        items: 0,
        done: false,
        known_model: None,
    }
}

/// Opens `path` and reads its items; the format is `format`, else the extension's.
pub fn read_file(
    path: &Path,
    format: Option<Format>,
    defaults: &GenerateRequest,
    options: &ReadOptions,
) -> Result<Items<BufReader<File>>, BatchError> {
    let format = Format::detect(path, format)?;
    let file = File::open(path).map_err(|source| BatchError::Open {
        path: path.to_owned(),
        source,
    })?;
    Ok(read_items(BufReader::new(file), format, defaults, options))
}

impl<R> Items<R> {
    /// The fingerprint of the items read so far (the whole file's once the iterator has ended): the
    /// sha256, in hex, over each item's id and the sha256 of its canonical JSON, in order. Bad lines do
    /// not count.
    pub fn fingerprint(&self) -> String {
        hex(&self.hasher.clone().finalize())
    }

    /// How many items were read so far.
    pub fn items(&self) -> usize {
        self.items
    }

    fn item(&mut self, line: usize, raw: Raw) -> Result<BatchItem, LineError> {
        let custom_id = raw.custom_id.clone();
        let fail = |error| LineError {
            line,
            custom_id: custom_id.clone(),
            error,
        };
        // A custom id is taken even by a bad line, so that the error file and the results never share one.
        if let Some(id) = &custom_id {
            self.claim(id, line).map_err(fail)?;
        }
        let (request, ignored) = build(raw, &self.defaults, &mut self.known_model).map_err(fail)?;
        let digest = digest(&canonical_json(&request));
        let id = match &custom_id {
            Some(id) => id.clone(),
            None => {
                let id = stable_id(line, &digest);
                self.claim(&id, line).map_err(fail)?;
                id
            }
        };
        // An id holds no newline, and the digest is 32 bytes: the sequence reads one way only.
        self.hasher.update(id.as_bytes());
        self.hasher.update(b"\n");
        self.hasher.update(digest);
        self.items += 1;
        Ok(BatchItem {
            id,
            line,
            request,
            ignored,
        })
    }

    fn claim(&mut self, id: &str, line: usize) -> Result<(), BatchError> {
        if let Some(&first) = self.seen.get(id) {
            return Err(BatchError::DuplicateId {
                id: id.to_owned(),
                first,
            });
        }
        self.seen.insert(id.to_owned(), line);
        Ok(())
    }
}

impl<R: BufRead> Iterator for Items<R> {
    type Item = Result<BatchItem, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let column = self.options.prompt_column.as_str();
        let next: Next = match &mut self.source {
            Source::Jsonl(source) => source.next(column),
            Source::Csv(source) => source.next(column),
        };
        let result = match next {
            None => {
                self.done = true;
                return None;
            }
            Some(Ok((line, raw))) => self.item(line, raw),
            Some(Err((line, custom_id, error))) => Err(LineError { line, custom_id, error }),
        };
        if let Err(error) = &result
            && (error.is_fatal() || self.options.strict)
        {
            self.done = true;
        }
        Some(result)
    }
}

/// What checking a whole input found.
#[derive(Debug)]
pub struct Summary {
    /// How many good items it has (read them with [`read_items`] or [`read_file`]: the same ids come
    /// back).
    pub items: usize,
    /// Its bad lines, in order.
    pub bad: Vec<LineError>,
    /// The fingerprint of its items (see [`Items::fingerprint`]).
    pub fingerprint: String,
}

/// Checks every line of `path` (format `format`, else the extension's) without keeping the items.
///
/// Fails when the file cannot be opened or read to its end ([`BatchError::Unreadable`]), and in strict
/// mode when a line is bad ([`BatchError::Refused`]); otherwise the bad lines are in the summary.
pub fn validate(
    path: &Path,
    format: Option<Format>,
    defaults: &GenerateRequest,
    options: &ReadOptions,
) -> Result<Summary, BatchError> {
    let format = Format::detect(path, format)?;
    let file = File::open(path).map_err(|source| BatchError::Open {
        path: path.to_owned(),
        source,
    })?;
    validate_reader(BufReader::new(file), format, defaults, options)
}

/// [`validate`] over any reader.
pub fn validate_reader<R: BufRead>(
    reader: R,
    format: Format,
    defaults: &GenerateRequest,
    options: &ReadOptions,
) -> Result<Summary, BatchError> {
    let all = ReadOptions {
        strict: false,
        ..options.clone()
    };
    let mut items = read_items(reader, format, defaults, &all);
    let mut bad = Vec::new();
    let mut total = 0;
    for result in items.by_ref() {
        match result {
            Ok(_) => {}
            Err(error) if error.is_fatal() => return Err(BatchError::Unreadable(Box::new(error))),
            Err(error) => {
                total += 1;
                // Strict mode lists only the first few: the file is refused anyway.
                if !options.strict || bad.len() < REFUSED_LISTED {
                    bad.push(error);
                }
            }
        }
    }
    if options.strict && total > 0 {
        return Err(BatchError::Refused { bad, total });
    }
    Ok(Summary {
        items: items.items(),
        bad,
        fingerprint: items.fingerprint(),
    })
}
