//! The two readers: JSONL lines and CSV rows, each to a [`Raw`] line, one at a time.

use std::io::{BufRead, ErrorKind};

use serde_json::{Number, Value};

use crate::BatchError;
use crate::item::{self, Endpoint, JSON_FIELDS, Raw, TEXT_FIELDS};

/// What a reader yields: a line, taken apart, or why it could not be.
pub(crate) type Next = Option<Result<(usize, Raw), (usize, Option<String>, BatchError)>>;

const BOM: char = '\u{feff}';

/// JSONL: one JSON object a line, blank lines skipped.
pub(crate) struct JsonlSource<R> {
    reader: R,
    line: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> JsonlSource<R> {
    pub(crate) fn new(reader: R) -> Self {
        JsonlSource {
            reader,
            line: 0,
            buf: Vec::new(),
        }
    }

    pub(crate) fn next(&mut self, prompt_column: &str) -> Next {
        loop {
            self.buf.clear();
            let read = match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(read) => read,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err((self.line + 1, None, BatchError::Read(e)))),
            };
            if read == 0 {
                return None;
            }
            self.line += 1;
            let line = self.line;
            let Ok(text) = std::str::from_utf8(&self.buf) else {
                return Some(Err((line, None, BatchError::NotUtf8)));
            };
            let text = if line == 1 { text.trim_start_matches(BOM) } else { text };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            return Some(
                jsonl_line(text, prompt_column)
                    .map(|raw| (line, raw))
                    .map_err(|(id, e)| (line, id, e)),
            );
        }
    }
}

/// One JSONL line: an OpenAI batch line (`custom_id`, `method`, `url`, `body`) or a flat row.
fn jsonl_line(text: &str, prompt_column: &str) -> Result<Raw, (Option<String>, BatchError)> {
    let value: Value = serde_json::from_str(text).map_err(|e| (None, BatchError::NotJson(e.to_string())))?;
    let Value::Object(mut object) = value else {
        return Err((None, BatchError::NotAnObject(item::json_type(&value))));
    };
    let custom_id = match object.remove("custom_id") {
        Some(value) => item::custom_id(&value).map_err(|e| (None, e))?,
        None => None,
    };
    let fail = |e| (custom_id.clone(), e);
    if !(object.contains_key("body") || object.contains_key("url") || object.contains_key("method")) {
        let mut raw = Raw {
            custom_id: custom_id.clone(),
            fields: object,
            ..Raw::default()
        };
        rename_prompt(&mut raw, prompt_column);
        return Ok(raw);
    }
    let mut raw = Raw {
        custom_id: custom_id.clone(),
        openai: true,
        ..Raw::default()
    };
    for (key, value) in object {
        match key.as_str() {
            "method" => match value.as_str() {
                Some(method) if method.trim().eq_ignore_ascii_case("POST") => {}
                _ => return Err(fail(BatchError::field("method", "must be \"POST\""))),
            },
            "url" => {
                let endpoint = value.as_str().and_then(Endpoint::parse).ok_or_else(|| {
                    fail(BatchError::field(
                        "url",
                        format!("must be {}, got {}", Endpoint::ACCEPTED, short(&value)),
                    ))
                })?;
                raw.endpoint = Some(endpoint);
            }
            "body" => match value {
                Value::Object(body) => raw.fields = body,
                other => {
                    return Err(fail(BatchError::field(
                        "body",
                        format!("must be an object, got {}", item::json_type(&other)),
                    )));
                }
            },
            _ => raw.ignored.push(format!("{key} (next to body)")),
        }
    }
    if raw.fields.is_empty() && raw.endpoint.is_some() {
        return Err(fail(BatchError::field(
            "body",
            "an OpenAI batch line needs a `body` object with the prompt",
        )));
    }
    Ok(raw)
}

fn short(value: &Value) -> String {
    match value {
        Value::String(text) if text.chars().count() <= 60 => format!("{text:?}"),
        other => item::json_type(other).to_owned(),
    }
}

/// A JSONL row with the prompt column (other than `prompt`): its field becomes the prompt, and a `prompt`
/// field beside it is left out (noted). A row without the column keeps its `prompt`.
fn rename_prompt(raw: &mut Raw, prompt_column: &str) {
    if prompt_column == "prompt" {
        return;
    }
    if let Some(prompt) = raw.fields.remove(prompt_column) {
        if raw.fields.remove("prompt").is_some() {
            raw.ignored
                .push(format!("prompt (the prompt column is `{prompt_column}`)"));
        }
        raw.fields.insert("prompt".into(), prompt);
    }
}

/// CSV: a header, then one row a record.
pub(crate) struct CsvSource<R> {
    reader: csv::Reader<R>,
    /// The columns' names (trimmed), once the header is read; the prompt column renamed `prompt`.
    columns: Option<Vec<String>>,
    record: csv::StringRecord,
    /// The header's own name of the prompt column, when it is not `prompt`.
    prompt_column: Option<String>,
    /// The header could not be read: nothing more is.
    failed: bool,
}

impl<R: BufRead> CsvSource<R> {
    pub(crate) fn new(reader: R) -> Self {
        let reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(reader);
        CsvSource {
            reader,
            columns: None,
            record: csv::StringRecord::new(),
            prompt_column: None,
            failed: false,
        }
    }

    fn header(&mut self, prompt_column: &str) -> Result<Option<Vec<String>>, BatchError> {
        let header = self.reader.headers().map_err(|e| match csv_error(e) {
            BatchError::Read(e) => BatchError::Read(e),
            BatchError::NotUtf8 => BatchError::Header("it is not UTF-8 text".into()),
            other => BatchError::Header(other.to_string()),
        })?;
        let names: Vec<String> = header
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let name = if i == 0 { name.trim_start_matches(BOM) } else { name };
                name.trim().to_owned()
            })
            .collect();
        if names.iter().all(String::is_empty) {
            return Ok(None);
        }
        let exact = names.iter().position(|name| name == prompt_column);
        let found = exact.or_else(|| {
            let mut loose = names
                .iter()
                .enumerate()
                .filter(|(_, name)| name.eq_ignore_ascii_case(prompt_column));
            match (loose.next(), loose.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        });
        let Some(index) = found else {
            if names.iter().any(|name| name == "messages") {
                return Ok(Some(names));
            }
            return Err(BatchError::NoPromptColumn {
                column: prompt_column.to_owned(),
                columns: names,
            });
        };
        if names[index] != "prompt" {
            self.prompt_column = Some(names[index].clone());
        }
        Ok(Some(names))
    }

    pub(crate) fn next(&mut self, prompt_column: &str) -> Next {
        if self.failed {
            return None;
        }
        if self.columns.is_none() {
            match self.header(prompt_column) {
                Ok(Some(names)) => self.columns = Some(names),
                Ok(None) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err((1, None, e)));
                }
            }
        }
        let columns = self.columns.as_ref()?;
        let result = self.reader.read_record(&mut self.record);
        let line = self
            .record
            .position()
            .map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX));
        match result {
            Ok(false) => None,
            Ok(true) => Some(
                csv_row(columns, self.prompt_column.as_deref(), &self.record)
                    .map(|raw| (line, raw))
                    .map_err(|(id, e)| (line, id, e)),
            ),
            Err(e) => {
                let line = match e.position() {
                    Some(p) => usize::try_from(p.line()).unwrap_or(usize::MAX),
                    None => line,
                };
                Some(Err((line, None, csv_error(e))))
            }
        }
    }
}

fn csv_error(e: csv::Error) -> BatchError {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => BatchError::Read(e),
        csv::ErrorKind::Utf8 { .. } => BatchError::NotUtf8,
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            BatchError::Csv(format!("{len} field(s) where the header has {expected_len}"))
        }
        other => BatchError::Csv(format!("{other:?}")),
    }
}

/// One CSV row: empty cells are unset, text fields stay text, JSON fields are parsed, any other cell is
/// a number when it reads as one, else text.
fn csv_row(
    columns: &[String],
    prompt_column: Option<&str>,
    record: &csv::StringRecord,
) -> Result<Raw, (Option<String>, BatchError)> {
    let mut raw = Raw::default();
    if let Some(cell) = columns
        .iter()
        .position(|name| name == "custom_id")
        .and_then(|i| record.get(i))
        .filter(|cell| !cell.trim().is_empty())
    {
        raw.custom_id = item::custom_id(&Value::from(cell)).map_err(|e| (None, e))?;
    }
    for (name, cell) in columns.iter().zip(record.iter()) {
        if name.is_empty() || name == "custom_id" || cell.trim().is_empty() {
            continue;
        }
        let key = match prompt_column {
            Some(column) if column == name => "prompt",
            // A column literally called `prompt` beside the chosen prompt column is left out.
            Some(column) if name == "prompt" => {
                raw.ignored.push(format!("prompt (the prompt column is `{column}`)"));
                continue;
            }
            _ => name.as_str(),
        };
        let value = cell_value(key, cell).map_err(|e| (raw.custom_id.clone(), e))?;
        raw.fields.insert(key.to_owned(), value);
    }
    Ok(raw)
}

fn cell_value(key: &str, cell: &str) -> Result<Value, BatchError> {
    if JSON_FIELDS.contains(&key) {
        return serde_json::from_str(cell).map_err(|e| BatchError::field(key, format!("must be JSON: {e}")));
    }
    if (key == "image" || key == "images") && cell.trim_start().starts_with('[') {
        return serde_json::from_str(cell)
            .map_err(|e| BatchError::field(key, format!("a list of images must be a JSON array: {e}")));
    }
    if TEXT_FIELDS.contains(&key) || key == "aspect_ratio" {
        return Ok(Value::from(cell));
    }
    Ok(number(cell.trim()).unwrap_or_else(|| Value::from(cell)))
}

/// A cell as a JSON number, when it reads as a finite one.
fn number(text: &str) -> Option<Value> {
    if let Ok(n) = text.parse::<u64>() {
        return Some(Value::from(n));
    }
    if let Ok(n) = text.parse::<i64>() {
        return Some(Value::from(n));
    }
    let looks_numeric = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
    if !looks_numeric {
        return None;
    }
    text.parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number("42"), Some(Value::from(42u64)));
        assert_eq!(number("-3"), Some(Value::from(-3i64)));
        assert_eq!(number("2.5"), Some(Value::from(2.5)));
        for text in ["nan", "inf", "infinity", "abc", "1.2.3", "", "0x10"] {
            assert_eq!(number(text), None, "{text}");
        }
    }
}
