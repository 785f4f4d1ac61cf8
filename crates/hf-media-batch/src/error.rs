use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;

/// How many bad lines a strict refusal lists.
pub const REFUSED_LISTED: usize = 10;

/// Everything that can be wrong with a batch input: the file as a whole, or one of its lines (then wrapped
/// in a [`LineError`] that says which line).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The input file could not be opened.
    #[error("{}: cannot be opened ({source})", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The format could not be told from the file's extension.
    #[error(
        "{}: cannot tell the input format from the extension: name it .jsonl, .ndjson, .json or .csv, or give the format (jsonl or csv)",
        path.display()
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// A format name that is neither `jsonl` nor `csv`.
    #[error("unknown input format `{0}`: use jsonl (also json, ndjson) or csv")]
    FormatName(String),
    /// Strict mode: the file has bad lines, so none of it runs.
    #[error("{total} bad line(s), so nothing runs (strict mode):{}", list(bad, *total))]
    Refused {
        /// The first bad lines (at most [`REFUSED_LISTED`]).
        bad: Vec<LineError>,
        /// How many lines are bad in all.
        total: usize,
    },
    /// The file could not be read to its end (an I/O error, or a CSV header that cannot be read or has no
    /// prompt column):
    /// nothing after this line was read.
    #[error("{0}; the rest of the file was not read")]
    Unreadable(Box<LineError>),

    /// Reading the file failed part way (fatal: the reader stops).
    #[error("the file could not be read: {0}")]
    Read(#[source] io::Error),
    /// The line is not UTF-8 text.
    #[error("the line is not UTF-8 text")]
    NotUtf8,
    /// The line is not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The line is JSON but not an object.
    #[error("expected a JSON object (`{{\"prompt\": …}}` or an OpenAI batch line), got {0}")]
    NotAnObject(&'static str),
    /// A CSV row the CSV reader refused (wrong number of fields, …).
    #[error("bad CSV row: {0}")]
    Csv(String),
    /// The CSV header cannot be read (fatal).
    #[error("the CSV header cannot be read: {0}")]
    Header(String),
    /// The CSV header names neither the prompt column nor a `messages` column (fatal).
    #[error("the CSV header has no `{column}` column (its columns: {}); pick one with --prompt-column", columns.join(", "))]
    NoPromptColumn {
        /// The prompt column asked for.
        column: String,
        /// The header's columns.
        columns: Vec<String>,
    },
    /// Neither a prompt nor chat messages that end with a user message (after the defaults).
    #[error("no prompt: give `prompt` (or the prompt column), or `messages` ending with a user message")]
    NoPrompt,
    /// The model is not `org/name`, `org/name:provider` or an alias.
    #[error("invalid model `{model}`: {reason}")]
    Model {
        /// The model as written.
        model: String,
        /// What is wrong.
        reason: String,
    },
    /// A `custom_id` already used by an earlier line.
    #[error("duplicate custom_id `{id}` (already used on line {first})")]
    DuplicateId {
        /// The id.
        id: String,
        /// The line that used it first.
        first: usize,
    },
    /// A generation parameter with a value no provider can use.
    #[error("invalid parameter `{name}`: {reason}")]
    Parameter {
        /// The parameter.
        name: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// Another field of the line (`custom_id`, `n`, `image`, `url`, …) is wrong.
    #[error("invalid `{field}`: {reason}")]
    Field {
        /// The field.
        field: String,
        /// What is wrong and what is expected.
        reason: String,
    },

    /// A state location (`--state`) that is neither `sqlite:PATH` nor a PostgreSQL URL.
    #[error("invalid state location `{given}`: {reason}")]
    StateLocation {
        /// The location as given (a password shown as `***`).
        given: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// The state database failed (cannot be reached, refused a statement, …).
    #[error("batch state {location}: {action} failed: {source}")]
    State {
        /// The state (a password shown as `***`).
        location: String,
        /// What was being done.
        action: &'static str,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// The state's schema could not be brought up to date.
    #[error(
        "batch state {location}: the schema could not be brought up to date: {source}{}",
        migrate_hint(source)
    )]
    StateMigrate {
        /// The state (a password shown as `***`).
        location: String,
        /// Why.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// The state holds something this version cannot read.
    #[error("batch state {location}: unreadable data: {reason}")]
    StateData {
        /// The state (a password shown as `***`).
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// The state already holds a batch for this output, made from other items.
    #[error("{0}")]
    DifferentBatch(Box<DifferentBatch>),
    /// A state handle was used before `open_batch`.
    #[error("the batch state was used before open_batch named the batch")]
    NoBatch,
    /// A state handle serves one batch: `open_batch` was called again with another key.
    #[error("this batch state handle serves the batch of `{open}`; open another one for `{asked}`")]
    OtherBatch {
        /// The key it serves.
        open: String,
        /// The key asked for.
        asked: String,
    },

    /// [`BatchState::append_item`](crate::state::BatchState::append_item) was given an id the batch
    /// already holds: nothing was stored.
    #[error("the batch already holds an item `{id}`: nothing was stored")]
    DuplicateItem {
        /// The id.
        id: String,
    },
    /// The batch holds no item of this id (the `after` of
    /// [`BatchState::items_page`](crate::state::BatchState::items_page)).
    #[error("the batch holds no item `{id}`")]
    UnknownItem {
        /// The id.
        id: String,
    },

    /// A batch setting (flag) that cannot work.
    #[error("{0}")]
    Usage(String),
    /// The output (folder or object-store prefix) cannot be written.
    #[error("output {output}: {message}")]
    Output {
        /// The output.
        output: String,
        /// What went wrong and what to check.
        message: String,
    },
    /// The generator could not be built or run (a missing token, a bad setting).
    #[error("{0}")]
    Generator(String),
    /// `batch status` found no state for the output.
    #[error(
        "no batch state for {output} at {state}: run `hf-media batch INPUT -o {output}` first, or give the state with --state"
    )]
    NoState {
        /// The output.
        output: String,
        /// Where the state was looked for.
        state: String,
    },
    /// The state holds no batch for this output.
    #[error("the state {location} holds no batch for the output {key}: check -o (and --state)")]
    UnknownBatch {
        /// The state (a password shown as `***`).
        location: String,
        /// The output asked for.
        key: String,
    },
}

/// The details of [`BatchError::DifferentBatch`].
#[derive(Debug)]
pub struct DifferentBatch {
    /// The state (a password shown as `***`).
    pub location: String,
    /// The output location both runs write to.
    pub key: String,
    /// The input of the stored batch.
    pub stored_input: String,
    /// The fingerprint of the stored batch's items.
    pub stored_fingerprint: String,
    /// The input of this run.
    pub input: String,
    /// The fingerprint of this run's items.
    pub fingerprint: String,
}

impl std::fmt::Display for DifferentBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |s: &str| s.chars().take(12).collect::<String>();
        write!(
            f,
            "the state {} already holds a batch for the output {} made from {} (items {}…), and {} has other \
             items (items {}…): to resume that batch run it with {} again; to start a new one, write to another \
             output (-o) or use another state (--state)",
            self.location,
            self.key,
            self.stored_input,
            short(&self.stored_fingerprint),
            self.input,
            short(&self.fingerprint),
            self.stored_input,
        )
    }
}

fn migrate_hint(error: &sqlx::migrate::MigrateError) -> &'static str {
    match error {
        sqlx::migrate::MigrateError::VersionMissing(_) => {
            " (the state was made or upgraded by a newer hf-media: use that version)"
        }
        sqlx::migrate::MigrateError::VersionMismatch(_) => {
            " (a migration applied to the state differs from this version's: was it made by a development build?)"
        }
        _ => "",
    }
}

impl BatchError {
    /// A short stable code, for the `error.code` of an error file line.
    pub fn code(&self) -> &'static str {
        match self {
            BatchError::Open { .. } | BatchError::Read(_) | BatchError::Unreadable(_) => "unreadable",
            BatchError::UnknownFormat { .. } | BatchError::FormatName(_) => "unknown_format",
            BatchError::Refused { .. } => "refused",
            BatchError::NotUtf8 | BatchError::NotJson(_) | BatchError::NotAnObject(_) => "invalid_json",
            BatchError::Csv(_) | BatchError::Header(_) | BatchError::NoPromptColumn { .. } => "invalid_csv",
            BatchError::NoPrompt => "missing_prompt",
            BatchError::Model { .. } => "invalid_model",
            BatchError::DuplicateId { .. } => "duplicate_custom_id",
            BatchError::Parameter { .. } => "invalid_parameter",
            BatchError::Field { .. } => "invalid_field",
            BatchError::StateLocation { .. } => "invalid_state_location",
            BatchError::State { .. } | BatchError::StateMigrate { .. } | BatchError::StateData { .. } => "state",
            BatchError::DifferentBatch(_) => "different_batch",
            BatchError::NoBatch | BatchError::OtherBatch { .. } => "state_use",
            BatchError::DuplicateItem { .. } => "duplicate_item",
            BatchError::UnknownItem { .. } => "unknown_item",
            BatchError::Usage(_) => "usage",
            BatchError::Output { .. } => "output",
            BatchError::Generator(_) => "generator",
            BatchError::NoState { .. } | BatchError::UnknownBatch { .. } => "no_state",
        }
    }

    /// Whether the error is the user's to fix before running again (a flag, the input, the output, the
    /// state location): the CLI exits with its usage code.
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            BatchError::State { .. }
                | BatchError::StateMigrate { .. }
                | BatchError::StateData { .. }
                | BatchError::Read(_)
        )
    }

    /// Whether the reader stops here: nothing after it can be read.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            BatchError::Read(_) | BatchError::Header(_) | BatchError::NoPromptColumn { .. }
        )
    }

    pub(crate) fn field(field: &str, reason: impl Into<String>) -> Self {
        BatchError::Field {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn parameter(name: &str, reason: impl Into<String>) -> Self {
        BatchError::Parameter {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A bad line: its number (1-based, as an editor shows it; for CSV the line where the row starts), its
/// `custom_id` when it was read, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {error}")]
pub struct LineError {
    /// The line number, from 1.
    pub line: usize,
    /// The line's `custom_id`, when it has one and it could be read.
    pub custom_id: Option<String>,
    /// What is wrong.
    #[source]
    pub error: BatchError,
}

impl LineError {
    /// Whether the reader stopped at this line (see [`BatchError::is_fatal`]).
    pub fn is_fatal(&self) -> bool {
        self.error.is_fatal()
    }
}

fn list(bad: &[LineError], total: usize) -> String {
    let mut text = String::new();
    for error in bad {
        let _ = write!(text, "\n  {error}");
    }
    if total > bad.len() {
        let _ = write!(text, "\n  … and {} more", total - bad.len());
    }
    text
}
