#![allow(clippy::unwrap_used, missing_docs)]

//! Large inputs stream: the reader is never far ahead of the items handed out.

use std::cell::Cell;
use std::io::{BufReader, Read};
use std::rc::Rc;

use hf_media::GenerateRequest;
use hf_media_batch::{Format, ReadOptions, read_items, validate_reader};

/// Makes `total` lines on demand, counting how many it has handed out.
struct Generated {
    format: Format,
    next: usize,
    total: usize,
    pending: Vec<u8>,
    at: usize,
    produced: Rc<Cell<usize>>,
}

impl Generated {
    fn new(format: Format, total: usize) -> (Self, Rc<Cell<usize>>) {
        let produced = Rc::new(Cell::new(0));
        let header = match format {
            Format::Jsonl => Vec::new(),
            Format::Csv => b"prompt,seed,width,lora_scale\n".to_vec(),
        };
        let generated = Generated {
            format,
            next: 0,
            total,
            pending: header,
            at: 0,
            produced: produced.clone(),
        };
        (generated, produced)
    }
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.pending.len() {
            if self.next == self.total {
                return Ok(0);
            }
            let i = self.next;
            self.next += 1;
            self.produced.set(self.next);
            self.pending = match self.format {
                Format::Jsonl => format!("{{\"prompt\": \"item {i}\", \"seed\": {i}, \"width\": 512}}\n"),
                Format::Csv => format!("item {i},{i},512,0.5\n"),
            }
            .into_bytes();
            self.at = 0;
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[track_caller]
fn streams(format: Format, total: usize) {
    let (source, produced) = Generated::new(format, total);
    let defaults = GenerateRequest::default().model("flux");
    let mut items = read_items(BufReader::new(source), format, &defaults, &ReadOptions::default());
    let mut count = 0;
    let mut ahead = 0;
    for item in items.by_ref() {
        let item = item.unwrap();
        count += 1;
        assert_eq!(item.request.params.seed, Some(u64::try_from(count - 1).unwrap()));
        // Lines read but not yet handed out: a buffer's worth at most, never the file.
        ahead = ahead.max(produced.get() - count);
        assert!(
            produced.get() - count < 2_000,
            "{} lines read for {count} items",
            produced.get()
        );
    }
    assert_eq!(count, total);
    assert_eq!(items.items(), total);
    assert!(ahead < 2_000, "{ahead}");
}

#[test]
fn a_hundred_thousand_jsonl_lines_stream() {
    streams(Format::Jsonl, 100_000);
}

#[test]
fn csv_rows_stream() {
    streams(Format::Csv, 20_000);
}

#[test]
fn validate_streams_too() {
    let (source, _) = Generated::new(Format::Jsonl, 10_000);
    let summary = validate_reader(
        BufReader::new(source),
        Format::Jsonl,
        &GenerateRequest::default(),
        &ReadOptions::default(),
    )
    .unwrap();
    assert_eq!((summary.items, summary.bad.len()), (10_000, 0));
}
