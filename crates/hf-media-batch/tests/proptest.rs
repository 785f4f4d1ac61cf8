#![allow(clippy::unwrap_used, missing_docs)]

//! Arbitrary input never panics: every line is an item or a line error.

use std::io::Cursor;

use hf_media::GenerateRequest;
use hf_media_batch::{Format, ReadOptions, read_items, validate_reader};
use proptest::prelude::*;
use serde_json::{Map, Value};

const KEYS: &[&str] = &[
    "prompt",
    "messages",
    "custom_id",
    "model",
    "n",
    "concurrency",
    "seed",
    "image",
    "images",
    "task",
    "params",
    "extra",
    "size",
    "width",
    "height",
    "aspect_ratio",
    "strength",
    "guidance_scale",
    "num_inference_steps",
    "negative_prompt",
    "num_frames",
    "resolution",
    "scheduler",
    "method",
    "url",
    "body",
    "response_format",
    "quality",
    "style",
    "user",
    "caption",
    "other",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop_oneof![
            Just("1024x768".to_owned()),
            Just("/v1/images/generations".to_owned()),
            Just("/v1/images/edits".to_owned()),
            Just("/v1/videos".to_owned()),
            Just("POST".to_owned()),
            Just("flux:fal-ai".to_owned()),
            Just("image-to-video".to_owned()),
            Just("16:9".to_owned()),
            Just("https://x.test/a.png".to_owned()),
            Just("user".to_owned()),
            ".{0,12}",
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(KEYS), json_value()), 0..8).prop_map(|entries| {
        let map: Map<String, Value> = entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        Value::Object(map).to_string()
    })
}

fn check(input: Vec<u8>, format: Format, strict: bool) {
    let options = ReadOptions::default().strict(strict).prompt_column("caption");
    let defaults = GenerateRequest::default();
    let mut count = 0;
    for result in read_items(Cursor::new(&input), format, &defaults, &options) {
        count += 1;
        match result {
            Ok(item) => assert!(!item.id.is_empty()),
            Err(error) => assert!(!error.to_string().is_empty()),
        }
        assert!(count <= input.len() + 1);
    }
    let _ = validate_reader(Cursor::new(&input), format, &defaults, &options);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..400), strict: bool) {
        check(input.clone(), Format::Jsonl, strict);
        check(input, Format::Csv, strict);
    }

    #[test]
    fn arbitrary_text_lines_never_panic(lines in prop::collection::vec(".{0,60}", 0..8)) {
        let input = lines.join("\n").into_bytes();
        check(input.clone(), Format::Jsonl, false);
        check(input, Format::Csv, false);
    }

    #[test]
    fn arbitrary_json_lines_never_panic(lines in prop::collection::vec(object(), 0..8)) {
        check(lines.join("\n").into_bytes(), Format::Jsonl, false);
    }

    #[test]
    fn arbitrary_openai_lines_never_panic(bodies in prop::collection::vec(object(), 1..6), url in prop::sample::select(vec!["/v1/images/generations", "/v1/images/edits", "/v1/videos", "/v2/x"])) {
        let lines: Vec<String> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| format!("{{\"custom_id\": \"r{i}\", \"method\": \"POST\", \"url\": \"{url}\", \"body\": {body}}}"))
            .collect();
        check(lines.join("\n").into_bytes(), Format::Jsonl, false);
    }

    #[test]
    fn arbitrary_csv_cells_never_panic(
        header in prop::collection::vec(prop::sample::select(KEYS), 1..6),
        rows in prop::collection::vec(prop::collection::vec("[a-z0-9 ,.\"\\[\\]{}:-]{0,10}", 1..6), 0..5),
    ) {
        let mut input = header.join(",");
        for row in rows {
            input.push('\n');
            input.push_str(&row.join(","));
        }
        check(input.into_bytes(), Format::Csv, false);
    }
}
