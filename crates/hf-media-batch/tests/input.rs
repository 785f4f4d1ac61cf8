#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{self, BufReader, Cursor, Read};

use hf_media::{AspectRatio, GenerateRequest, GenerationParams, MediaInput, Task};
use hf_media_batch::{
    BatchError, BatchItem, Format, LineError, ReadOptions, read_file, read_items, validate, validate_reader,
};
use serde_json::json;

fn all(
    input: &str,
    format: Format,
    defaults: &GenerateRequest,
    options: &ReadOptions,
) -> Vec<Result<BatchItem, LineError>> {
    read_items(Cursor::new(input.to_owned()), format, defaults, options).collect()
}

fn jsonl(input: &str) -> Vec<Result<BatchItem, LineError>> {
    all(
        input,
        Format::Jsonl,
        &GenerateRequest::default(),
        &ReadOptions::default(),
    )
}

#[track_caller]
fn items(input: &str) -> Vec<BatchItem> {
    jsonl(input).into_iter().map(|r| r.unwrap()).collect()
}

#[track_caller]
fn one(input: &str) -> BatchItem {
    let mut items = items(input);
    assert_eq!(items.len(), 1);
    items.remove(0)
}

/// The only bad line of `input` (its other lines must be good).
#[track_caller]
fn bad(input: &str) -> LineError {
    let mut errors: Vec<LineError> = jsonl(input).into_iter().filter_map(Result::err).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.remove(0)
}

#[track_caller]
fn bad_says(input: &str, line: usize, code: &str, words: &[&str]) {
    let error = bad(input);
    let text = error.to_string();
    assert_eq!(error.line, line, "{text}");
    assert_eq!(error.error.code(), code, "{text}");
    assert!(text.starts_with(&format!("line {line}: ")), "{text}");
    for word in words {
        assert!(text.contains(word), "`{word}` not in: {text}");
    }
}

// ---------------------------------------------------------------------------------------------------
// OpenAI batch lines

#[test]
fn openai_generation_line() {
    let item = one(
        r#"{"custom_id": "req-1", "method": "POST", "url": "/v1/images/generations", "body": {"model": "black-forest-labs/FLUX.1-dev", "prompt": "a red fox", "n": 2, "size": "1024x768", "lora_scale": 0.8, "output_format": "png"}}"#,
    );
    assert_eq!(item.id, "req-1");
    assert_eq!(item.line, 1);
    let request = &item.request;
    assert_eq!(request.model, "black-forest-labs/FLUX.1-dev");
    assert_eq!(request.prompt.as_deref(), Some("a red fox"));
    assert_eq!(request.n, 2);
    assert_eq!((request.params.width, request.params.height), (Some(1024), Some(768)));
    assert_eq!(request.params.extra.get("lora_scale"), Some(&json!(0.8)));
    assert_eq!(request.params.extra.get("output_format"), Some(&json!("png")));
    assert_eq!(request.task, Some(Task::TextToImage));
    assert!(item.ignored.is_empty());
}

#[test]
fn openai_only_keys_are_left_out_and_noted() {
    let item = one(
        r#"{"custom_id": "a", "url": "/v1/images/generations", "body": {"prompt": "x", "response_format": "b64_json", "quality": "hd", "style": "vivid", "user": "me", "size": "auto"}, "metadata": {"k": 1}}"#,
    );
    let mut ignored = item.ignored.clone();
    ignored.sort();
    assert_eq!(
        ignored,
        [
            "metadata (next to body)",
            "quality",
            "response_format",
            "size (auto)",
            "style",
            "user"
        ]
    );
    assert!(item.request.params.extra.is_empty(), "{:?}", item.request.params.extra);
    assert_eq!(item.request.params.width, None);
}

#[test]
fn openai_video_and_edit_lines_set_the_task() {
    let items = items(concat!(
        r#"{"custom_id": "v", "method": "POST", "url": "/v1/videos", "body": {"prompt": "waves", "num_frames": 81, "seconds": 4}}"#,
        "\n",
        r#"{"custom_id": "v2", "method": "post", "url": "/v1/videos/", "body": {"prompt": "waves", "image": "https://x.test/a.png"}}"#,
        "\n",
        r#"{"custom_id": "e", "method": "POST", "url": "/v1/images/edits", "body": {"prompt": "snow", "image": ["a.png", "b.png"]}}"#,
        "\n",
        r#"{"custom_id": "t", "url": "/v1/images/generations", "body": {"prompt": "x", "task": "image-text-to-image"}}"#,
        "\n",
        // Together style: no method, no url.
        r#"{"custom_id": "together", "body": {"prompt": "y"}}"#,
    ));
    assert_eq!(items[0].request.task, Some(Task::TextToVideo));
    assert_eq!(items[0].request.params.num_frames, Some(81));
    assert_eq!(items[0].request.params.extra.get("seconds"), Some(&json!(4)));
    assert_eq!(items[1].request.task, Some(Task::ImageToVideo));
    assert_eq!(items[1].request.images, [MediaInput::url("https://x.test/a.png")]);
    assert_eq!(items[2].request.task, Some(Task::ImageToImage));
    assert_eq!(
        items[2].request.images,
        [MediaInput::path("a.png"), MediaInput::path("b.png")]
    );
    assert_eq!(
        items[3].request.task,
        Some(Task::ImageTextToImage),
        "the body's task wins"
    );
    assert_eq!(items[4].request.task, None);
    assert_eq!(items[4].id, "together");
}

#[test]
fn bad_openai_lines() {
    bad_says(
        r#"{"custom_id": "a", "method": "GET", "url": "/v1/images/generations", "body": {"prompt": "x"}}"#,
        1,
        "invalid_field",
        &["`method`", "POST"],
    );
    bad_says(
        r#"{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"prompt": "x"}}"#,
        1,
        "invalid_field",
        &["`url`", "/v1/images/generations", "/v1/chat/completions"],
    );
    bad_says(
        r#"{"custom_id": "a", "body": "x"}"#,
        1,
        "invalid_field",
        &["`body`", "an object"],
    );
    bad_says(
        r#"{"url": "/v1/images/generations", "method": "POST"}"#,
        1,
        "invalid_field",
        &["`body`"],
    );
    bad_says(
        r#"{"body": {"prompt": "x", "custom_id": "in"}}"#,
        1,
        "invalid_field",
        &["`custom_id`", "next to `body`"],
    );
    bad_says(
        r#"{"custom_id": "a", "url": "/v1/images/edits", "body": {"prompt": "x"}}"#,
        1,
        "invalid_field",
        &["image-to-image needs an input image"],
    );
    bad_says(
        r#"{"custom_id": "a", "url": "/v1/images/generations", "body": {"prompt": "x", "model": "gpt image 1"}}"#,
        1,
        "invalid_model",
        &["`gpt image 1`"],
    );
    let error = bad(r#"{"custom_id": "mine", "url": "/v1/images/generations", "body": {"n": 1}}"#);
    assert_eq!(error.custom_id.as_deref(), Some("mine"));
    assert!(matches!(error.error, BatchError::NoPrompt));
}

// ---------------------------------------------------------------------------------------------------
// Flat rows

#[test]
fn flat_rows_take_every_field() {
    let items = items(concat!(
        r#"{"prompt": "a lighthouse", "custom_id": "l", "model": "flux:fal-ai", "n": 3, "concurrency": 2, "seed": 42, "negative_prompt": "blur", "width": 768, "height": 1344, "num_inference_steps": 4, "guidance_scale": 3.5, "scheduler": "euler", "resolution": "720p", "num_frames": 49, "aspect_ratio": "16:9", "lora_scale": 0.8}"#,
        "\n",
        r#"{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "an owl"}], "task": "text-to-image"}"#,
        "\n",
        r#"{"prompt": "paint it", "image": "https://x.test/a.png", "strength": 0.5}"#,
        "\n",
        r#"{"prompt": "combine", "images": ["a.png", "data:image/png;base64,AA"]}"#,
        "\n",
        r#"{"prompt": "p", "size": "640x480", "params": {"seed": 9, "extra": {"style": "anime"}, "foo": true}, "extra": {"bar": [1]}}"#,
        "\n",
        r#"{"custom_id": 17, "prompt": "numeric id"}"#,
    ));
    let p = &items[0].request;
    assert_eq!(items[0].id, "l");
    assert_eq!((p.model.as_str(), p.n, p.concurrency), ("flux:fal-ai", 3, Some(2)));
    assert_eq!(
        p.params,
        GenerationParams {
            negative_prompt: Some("blur".into()),
            width: Some(768),
            height: Some(1344),
            aspect_ratio: Some(AspectRatio::WIDESCREEN),
            num_inference_steps: Some(4),
            guidance_scale: Some(3.5),
            seed: Some(42),
            scheduler: Some("euler".into()),
            num_frames: Some(49),
            resolution: Some("720p".into()),
            extra: json!({"lora_scale": 0.8}).as_object().unwrap().clone(),
            ..Default::default()
        }
    );
    assert_eq!(items[1].request.prompt, None);
    assert_eq!(items[1].request.messages.len(), 2);
    assert_eq!(items[1].request.task, Some(Task::TextToImage));
    assert_eq!(items[2].request.images, [MediaInput::url("https://x.test/a.png")]);
    assert_eq!(items[2].request.params.strength, Some(0.5));
    assert_eq!(items[3].request.images.len(), 2);
    assert!(matches!(items[3].request.images[1], MediaInput::DataUrl(_)));
    let p = &items[4].request.params;
    assert_eq!((p.width, p.height, p.seed), (Some(640), Some(480), Some(9)));
    assert_eq!(
        serde_json::Value::Object(p.extra.clone()),
        json!({"style": "anime", "foo": true, "bar": [1]})
    );
    assert_eq!(items[5].id, "17");
    // A flat row is the GenerateRequest JSON form too.
    let request = GenerateRequest::new("round trip").model("flux").n(2);
    let line = serde_json::to_string(&request).unwrap();
    assert_eq!(one(&line).request, request);
}

#[test]
fn explicit_width_and_height_win_over_size() {
    let item = one(r#"{"prompt": "p", "size": "640x480", "width": 800}"#);
    assert_eq!(
        (item.request.params.width, item.request.params.height),
        (Some(800), Some(480))
    );
}

#[test]
fn each_bad_line_kind_names_its_line_and_reason() {
    let good = r#"{"prompt": "fine"}"#;
    // Blank lines count: the bad line is line 3.
    bad_says(&format!("{good}\n\n{{not json\n"), 3, "invalid_json", &["not JSON"]);
    bad_says(
        &format!("{good}\n[1, 2]\n"),
        2,
        "invalid_json",
        &["expected a JSON object", "an array"],
    );
    bad_says(&format!("{good}\n\"text\"\n"), 2, "invalid_json", &["a string"]);
    bad_says(
        &format!("{good}\n{{\"seed\": 1}}\n"),
        2,
        "missing_prompt",
        &["no prompt"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"   \"}}\n"),
        2,
        "missing_prompt",
        &["no prompt"],
    );
    bad_says(
        &format!("{good}\n{{\"messages\": [{{\"role\": \"assistant\", \"content\": \"hi\"}}]}}\n"),
        2,
        "missing_prompt",
        &["no prompt"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"model\": \"not a model\"}}\n"),
        2,
        "invalid_model",
        &["invalid model `not a model`"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"model\": \"org/name:\"}}\n"),
        2,
        "invalid_model",
        &["provider name"],
    );
    bad_says(
        &format!("{{\"custom_id\": \"a\", \"prompt\": \"x\"}}\n{good}\n{{\"custom_id\": \"a\", \"prompt\": \"y\"}}\n"),
        3,
        "duplicate_custom_id",
        &["duplicate custom_id `a`", "line 1"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"width\": 0}}"),
        2,
        "invalid_parameter",
        &["`width`", "greater than zero"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"strength\": 1.5}}"),
        2,
        "invalid_parameter",
        &["`strength`", "between 0 and 1"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"width\": \"wide\"}}"),
        2,
        "invalid_parameter",
        &["`width`", "whole number", "\"wide\""],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"seed\": -1}}"),
        2,
        "invalid_parameter",
        &["`seed`", "-1"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"guidance_scale\": \"high\"}}"),
        2,
        "invalid_parameter",
        &["`guidance_scale`", "a number"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"aspect_ratio\": \"7:3\"}}"),
        2,
        "invalid_parameter",
        &["aspect ratio `7:3`"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"resolution\": \" \"}}"),
        2,
        "invalid_parameter",
        &["`resolution`"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"size\": \"big\"}}"),
        2,
        "invalid_parameter",
        &["`size`", "WIDTHxHEIGHT"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"extra\": {{\"seed\": \"s\"}}}}"),
        2,
        "invalid_parameter",
        &["`seed`"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"n\": 0}}"),
        2,
        "invalid_field",
        &["`n`", "from 1 to 4096"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"n\": 5000}}"),
        2,
        "invalid_field",
        &["`n`"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"concurrency\": 0}}"),
        2,
        "invalid_field",
        &["`concurrency`"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": 5}}"),
        2,
        "invalid_field",
        &["`prompt`", "a string"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"messages\": \"hi\"}}"),
        2,
        "invalid_field",
        &["`messages`"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"image\": 3}}"),
        2,
        "invalid_field",
        &["`image`"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"image\": \"\"}}"),
        2,
        "invalid_field",
        &["`image`", "empty"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"image\": \"ftp://h/a.png\"}}"),
        2,
        "invalid_field",
        &["only http(s)"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"image\": \"a.png\", \"images\": [\"b.png\"]}}"),
        2,
        "invalid_field",
        &["not both"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"task\": \"image-to-text\"}}"),
        2,
        "invalid_field",
        &["`task`", "not a task that makes media"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"task\": \"text-to-image\", \"image\": \"a.png\"}}"),
        2,
        "invalid_field",
        &["takes no input image"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"task\": \"image-to-video\"}}"),
        2,
        "invalid_field",
        &["needs an input image"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"params\": 3}}"),
        2,
        "invalid_field",
        &["`params`"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"custom_id\": \"\"}}"),
        2,
        "invalid_field",
        &["`custom_id`", "empty"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"custom_id\": [1]}}"),
        2,
        "invalid_field",
        &["`custom_id`", "a string"],
    );
    bad_says(
        &format!("{good}\n{{\"prompt\": \"x\", \"custom_id\": \"a\\tb\"}}"),
        2,
        "invalid_field",
        &["control"],
    );

    let mut bytes = format!("{good}\n").into_bytes();
    bytes.extend_from_slice(b"{\"prompt\": \"\xff\"}\n");
    bytes.extend_from_slice(good.as_bytes());
    let results: Vec<_> = read_items(
        Cursor::new(bytes),
        Format::Jsonl,
        &GenerateRequest::default(),
        &ReadOptions::default(),
    )
    .collect();
    assert_eq!(results.len(), 3);
    let error = results[1].as_ref().unwrap_err();
    assert_eq!((error.line, error.error.code()), (2, "invalid_json"));
    assert!(error.to_string().contains("not UTF-8"), "{error}");
    assert!(results[2].is_ok());
}

#[test]
fn bad_lines_are_returned_and_the_rest_reads() {
    let input =
        "{\"prompt\": \"a\"}\nnope\n{\"prompt\": \"b\"}\n{\"prompt\": \"c\", \"width\": 0}\n{\"prompt\": \"d\"}\n";
    let results = jsonl(input);
    let lines: Vec<(usize, bool)> = results
        .iter()
        .map(|r| match r {
            Ok(item) => (item.line, true),
            Err(e) => (e.line, false),
        })
        .collect();
    assert_eq!(lines, [(1, true), (2, false), (3, true), (4, false), (5, true)]);

    let summary = validate_reader(
        Cursor::new(input),
        Format::Jsonl,
        &GenerateRequest::default(),
        &ReadOptions::default(),
    )
    .unwrap();
    assert_eq!(summary.items, 3);
    assert_eq!(summary.bad.iter().map(|e| e.line).collect::<Vec<_>>(), [2, 4]);
    assert_eq!(summary.fingerprint.len(), 64);
}

// ---------------------------------------------------------------------------------------------------
// Strict mode

#[test]
fn strict_mode_refuses_the_whole_file() {
    let mut input = String::from("{\"prompt\": \"ok\"}\n");
    for _ in 0..12 {
        input.push_str("{\"seed\": 1}\n");
    }
    let strict = ReadOptions::default().strict(true);
    let err = validate_reader(Cursor::new(&input), Format::Jsonl, &GenerateRequest::default(), &strict).unwrap_err();
    let BatchError::Refused { bad, total } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*total, 12);
    assert_eq!(bad.len(), hf_media_batch::REFUSED_LISTED);
    assert_eq!(bad[0].line, 2);
    let text = err.to_string();
    assert!(text.contains("12 bad line(s)") && text.contains("strict"), "{text}");
    assert!(
        text.contains("line 2: no prompt") && text.contains("line 11: no prompt"),
        "{text}"
    );
    assert!(text.contains("and 2 more"), "{text}");
    assert_eq!(err.code(), "refused");

    // The iterator stops after the first bad line.
    let results = all(&input, Format::Jsonl, &GenerateRequest::default(), &strict);
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok() && results[1].is_err());

    // A good file passes strict mode.
    let summary = validate_reader(
        Cursor::new("{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n"),
        Format::Jsonl,
        &GenerateRequest::default(),
        &strict,
    )
    .unwrap();
    assert_eq!((summary.items, summary.bad.len()), (2, 0));
}

// ---------------------------------------------------------------------------------------------------
// Ids and fingerprints

fn ids_and_fingerprint(input: &str, defaults: &GenerateRequest) -> (Vec<String>, String) {
    let mut reader = read_items(
        Cursor::new(input.to_owned()),
        Format::Jsonl,
        defaults,
        &ReadOptions::default(),
    );
    let ids = reader.by_ref().map(|r| r.unwrap().id).collect();
    (ids, reader.fingerprint())
}

#[test]
fn ids_are_stable_and_change_only_with_their_line() {
    let defaults = GenerateRequest::default();
    let input = "{\"prompt\": \"a\"}\n{\"prompt\": \"b\", \"seed\": 1}\n{\"custom_id\": \"c\", \"prompt\": \"c\"}\n{\"prompt\": \"a\"}\n";
    let (ids, fingerprint) = ids_and_fingerprint(input, &defaults);
    assert_eq!(
        ids_and_fingerprint(input, &defaults),
        (ids.clone(), fingerprint.clone())
    );
    assert!(ids[0].starts_with("line-000001-") && ids[0].len() == 24, "{}", ids[0]);
    assert!(ids[0]["line-000001-".len()..].chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(ids[2], "c");
    assert_ne!(ids[0], ids[3], "the same prompt on another line is another item");
    assert_eq!(ids[0][12..], ids[3][12..], "same content, same hash");

    let changed = input.replace("\"seed\": 1", "\"seed\": 2");
    let (changed_ids, changed_fingerprint) = ids_and_fingerprint(&changed, &defaults);
    assert_eq!(changed_ids[0], ids[0]);
    assert_ne!(changed_ids[1], ids[1]);
    assert_eq!(changed_ids[2..], ids[2..]);
    assert_ne!(changed_fingerprint, fingerprint);

    // A changed line with a custom id keeps its id but changes the fingerprint.
    let (same_ids, other) = ids_and_fingerprint(&input.replace("\"prompt\": \"c\"", "\"prompt\": \"C\""), &defaults);
    assert_eq!(same_ids, ids);
    assert_ne!(other, fingerprint);

    // Key order and spacing do not matter: the canonical JSON is hashed.
    let reordered = input.replace("{\"prompt\": \"b\", \"seed\": 1}", "{ \"seed\":1,\"prompt\":\"b\" }");
    assert_eq!(
        ids_and_fingerprint(&reordered, &defaults),
        (ids.clone(), fingerprint.clone())
    );

    // The item is the request as it runs: other defaults, other ids.
    let (flux_ids, _) = ids_and_fingerprint(input, &GenerateRequest::default().model("flux"));
    assert_ne!(flux_ids[0], ids[0]);

    // validate and the iterator agree.
    let summary = validate_reader(Cursor::new(input), Format::Jsonl, &defaults, &ReadOptions::default()).unwrap();
    assert_eq!(summary.fingerprint, fingerprint);
    // Bad lines do not count in the fingerprint; lines after them keep their ids.
    let (with_bad, with_bad_fingerprint) = {
        let input = input.replacen("{\"prompt\": \"a\"}\n", "{\"prompt\": \"a\"}\nnot json\n", 1);
        let mut reader = read_items(Cursor::new(input), Format::Jsonl, &defaults, &ReadOptions::default());
        let ids: Vec<String> = reader.by_ref().filter_map(Result::ok).map(|i| i.id).collect();
        (ids, reader.fingerprint())
    };
    assert_eq!(with_bad[0], ids[0]);
    assert!(with_bad[1].starts_with("line-000003-"));
    assert_ne!(with_bad_fingerprint, fingerprint);
}

#[test]
fn duplicates_are_found_among_custom_and_made_ids() {
    let first = one("{\"prompt\": \"x\"}").id;
    // A custom id equal to an earlier made id is a duplicate.
    let input = format!("{{\"prompt\": \"x\"}}\n{{\"custom_id\": \"{first}\", \"prompt\": \"y\"}}\n");
    let error = bad(&input);
    assert_eq!(error.line, 2);
    assert!(
        matches!(&error.error, BatchError::DuplicateId { first: 1, .. }),
        "{error}"
    );

    // A bad line still takes its custom id.
    let input = "{\"custom_id\": \"k\", \"seed\": 1}\n{\"custom_id\": \"k\", \"prompt\": \"ok\"}\n";
    let results = jsonl(input);
    assert!(matches!(results[0].as_ref().unwrap_err().error, BatchError::NoPrompt));
    let error = results[1].as_ref().unwrap_err();
    assert!(
        matches!(error.error, BatchError::DuplicateId { first: 1, .. }),
        "{error}"
    );
    assert_eq!(error.custom_id.as_deref(), Some("k"));

    // OpenAI lines and flat rows share the ids.
    let input = "{\"custom_id\": \"z\", \"body\": {\"prompt\": \"a\"}}\n{\"custom_id\": \"z\", \"prompt\": \"b\"}\n";
    assert_eq!(bad(input).line, 2);
}

// ---------------------------------------------------------------------------------------------------
// Defaults

#[test]
fn defaults_are_overridden_field_by_field() {
    let mut defaults = GenerateRequest::default().model("flux").n(2);
    defaults.params = GenerationParams {
        seed: Some(1),
        width: Some(512),
        negative_prompt: Some("blurry".into()),
        extra: json!({"lora_scale": 0.5, "keep": true}).as_object().unwrap().clone(),
        ..Default::default()
    };
    defaults.images = vec![MediaInput::path("default.png")];
    defaults.prompt = Some("default prompt".into());
    let input = concat!(
        "{\"seed\": 7}\n",
        "{\"prompt\": \"mine\", \"model\": \"sdxl-turbo\", \"n\": 1, \"width\": 1024, \"lora_scale\": 0.9}\n",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"chat\"}], \"image\": \"mine.png\", \"seed\": null}\n",
        "{\"custom_id\": \"o\", \"url\": \"/v1/images/generations\", \"body\": {\"prompt\": \"openai\", \"size\": \"256x128\"}}\n",
    );
    let items: Vec<BatchItem> = all(input, Format::Jsonl, &defaults, &ReadOptions::default())
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let r = &items[0].request;
    assert_eq!(
        (r.model.as_str(), r.n, r.prompt.as_deref()),
        ("flux", 2, Some("default prompt"))
    );
    assert_eq!((r.params.seed, r.params.width), (Some(7), Some(512)));
    assert_eq!(r.params.negative_prompt.as_deref(), Some("blurry"));
    assert_eq!(r.images, [MediaInput::path("default.png")]);
    let r = &items[1].request;
    assert_eq!(
        (r.model.as_str(), r.n, r.prompt.as_deref()),
        ("sdxl-turbo", 1, Some("mine"))
    );
    assert_eq!((r.params.seed, r.params.width), (Some(1), Some(1024)));
    assert_eq!(
        serde_json::Value::Object(r.params.extra.clone()),
        json!({"lora_scale": 0.9, "keep": true})
    );
    let r = &items[2].request;
    assert_eq!(r.prompt, None, "the line's messages replace the default prompt");
    assert_eq!(r.messages.len(), 1);
    assert_eq!(r.images, [MediaInput::path("mine.png")]);
    assert_eq!(r.params.seed, Some(1), "null leaves the default");
    let r = &items[3].request;
    assert_eq!((r.params.width, r.params.height), (Some(256), Some(128)));
    assert_eq!(r.task, Some(Task::ImageToImage), "the default image makes it an edit");

    // A default that is wrong is reported on each line.
    let defaults = GenerateRequest::default().model("not a model");
    let results = all(
        "{\"prompt\": \"a\"}\n",
        Format::Jsonl,
        &defaults,
        &ReadOptions::default(),
    );
    assert_eq!(results[0].as_ref().unwrap_err().error.code(), "invalid_model");
}

// ---------------------------------------------------------------------------------------------------
// CSV

fn csv(input: &str, options: &ReadOptions) -> Vec<Result<BatchItem, LineError>> {
    all(input, Format::Csv, &GenerateRequest::default(), options)
}

#[test]
fn csv_with_a_custom_prompt_column() {
    let input = "custom_id,caption,seed,width,height,negative_prompt,model,lora_scale,style,prompt\n\
                 a1,\"a cabin, snow\",1,1024,768,blurry,flux,0.8,anime,ignored\n\
                 ,a desert,2,,,,,,,\n\
                 a3,\"two\nlines\",3,,,123,,-2,1e3,\n";
    let options = ReadOptions::default().prompt_column("caption");
    let items: Vec<BatchItem> = csv(input, &options).into_iter().map(Result::unwrap).collect();
    assert_eq!(items.len(), 3);
    let a1 = &items[0];
    assert_eq!((a1.id.as_str(), a1.line), ("a1", 2));
    assert_eq!(a1.request.prompt.as_deref(), Some("a cabin, snow"));
    assert_eq!(a1.request.model, "flux");
    let p = &a1.request.params;
    assert_eq!((p.seed, p.width, p.height), (Some(1), Some(1024), Some(768)));
    assert_eq!(p.negative_prompt.as_deref(), Some("blurry"));
    assert_eq!(
        serde_json::Value::Object(p.extra.clone()),
        json!({"lora_scale": 0.8, "style": "anime"})
    );
    assert_eq!(a1.ignored, ["prompt (the prompt column is `caption`)"]);
    let a2 = &items[1];
    assert!(a2.id.starts_with("line-000003-"), "{}", a2.id);
    assert_eq!(a2.request.params.width, None);
    assert!(a2.request.params.extra.is_empty());
    assert!(a2.ignored.is_empty());
    let a3 = &items[2];
    assert_eq!((a3.line, a3.request.prompt.as_deref()), (4, Some("two\nlines")));
    assert_eq!(
        a3.request.params.negative_prompt.as_deref(),
        Some("123"),
        "text fields stay text"
    );
    assert_eq!(a3.request.params.extra.get("lora_scale"), Some(&json!(-2)));
    assert_eq!(a3.request.params.extra.get("style"), Some(&json!(1000.0)));
}

#[test]
fn csv_columns_and_bad_rows() {
    // `Prompt` matches `prompt` ignoring case; JSON columns; image lists.
    let input = "Prompt,messages,image,params,n\n\
                 hello,,a.png,\"{\"\"num_inference_steps\"\": 4}\",2\n\
                 ,\"[{\"\"role\"\":\"\"user\"\",\"\"content\"\":\"\"chat\"\"}]\",\"[\"\"a.png\"\",\"\"b.png\"\"]\",,\n";
    let items: Vec<BatchItem> = csv(input, &ReadOptions::default())
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(items[0].request.prompt.as_deref(), Some("hello"));
    assert_eq!(items[0].request.images, [MediaInput::path("a.png")]);
    assert_eq!(items[0].request.params.num_inference_steps, Some(4));
    assert_eq!(items[0].request.n, 2);
    assert_eq!(items[1].request.messages.len(), 1);
    assert_eq!(items[1].request.images.len(), 2);

    // Bad rows name their line; the rest reads.
    let input = "prompt,width,seed,custom_id\n\
                 ok,512,1,a\n\
                 short,1\n\
                 wide,abc,2,b\n\
                 ,,,c\n\
                 neg,,-5,d\n\
                 dup,,,a\n\
                 fine,,,\n";
    let results = csv(input, &ReadOptions::default());
    let summary: Vec<(usize, Result<&str, String>)> = results
        .iter()
        .map(|r| match r {
            Ok(item) => (item.line, Ok(item.id.as_str())),
            Err(e) => (e.line, Err(e.to_string())),
        })
        .collect();
    assert_eq!(summary.len(), 7, "{summary:?}");
    assert_eq!(summary[0], (2, Ok("a")));
    let expect_err = |i: usize, line: usize, words: &[&str]| {
        let (l, r) = &summary[i];
        let text = r.as_ref().unwrap_err();
        assert_eq!(*l, line, "{text}");
        for word in words {
            assert!(text.contains(word), "`{word}` not in {text}");
        }
    };
    expect_err(1, 3, &["bad CSV row", "2 field(s)", "header has 4"]);
    expect_err(2, 4, &["`width`", "\"abc\""]);
    expect_err(3, 5, &["no prompt"]);
    expect_err(4, 6, &["`seed`", "-5"]);
    expect_err(5, 7, &["duplicate custom_id `a`", "line 2"]);
    assert!(summary[6].1.is_ok());
    let wide = results[2].as_ref().unwrap_err();
    assert_eq!(wide.custom_id.as_deref(), Some("b"));
}

#[test]
fn csv_without_the_prompt_column_is_unreadable() {
    let input = "text,seed\nhello,1\n";
    let results = csv(input, &ReadOptions::default().prompt_column("caption"));
    assert_eq!(results.len(), 1);
    let error = results[0].as_ref().unwrap_err();
    assert!(error.is_fatal());
    assert_eq!(error.line, 1);
    let text = error.to_string();
    assert!(text.contains("`caption`") && text.contains("text, seed"), "{text}");
    let err = validate_reader(
        Cursor::new(input),
        Format::Csv,
        &GenerateRequest::default(),
        &ReadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, BatchError::Unreadable(_)), "{err:?}");
    assert!(err.to_string().contains("the rest of the file was not read"), "{err}");

    // An empty file has no items and no errors; a BOM is not part of the first column.
    assert!(csv("", &ReadOptions::default()).is_empty());
    let items = csv("\u{feff}prompt\nhi\n", &ReadOptions::default());
    assert_eq!(items[0].as_ref().unwrap().request.prompt.as_deref(), Some("hi"));
    let items = jsonl("\u{feff}{\"prompt\": \"hi\"}\n");
    assert!(items[0].is_ok());
}

#[test]
fn jsonl_rows_take_the_prompt_column_too() {
    let options = ReadOptions::default().prompt_column("caption");
    let results = all(
        "{\"caption\": \"c\", \"prompt\": \"p\"}\n{\"prompt\": \"only prompt\"}\n",
        Format::Jsonl,
        &GenerateRequest::default(),
        &options,
    );
    let first = results[0].as_ref().unwrap();
    assert_eq!(first.request.prompt.as_deref(), Some("c"));
    assert_eq!(first.ignored, ["prompt (the prompt column is `caption`)"]);
    assert_eq!(
        results[1].as_ref().unwrap().request.prompt.as_deref(),
        Some("only prompt")
    );
}

// ---------------------------------------------------------------------------------------------------
// Files, formats, read errors

#[test]
fn formats_come_from_the_extension_or_are_given() {
    use std::path::Path;
    assert_eq!(Format::from_path(Path::new("a.jsonl")), Some(Format::Jsonl));
    assert_eq!(Format::from_path(Path::new("a.NDJSON")), Some(Format::Jsonl));
    assert_eq!(Format::from_path(Path::new("a.json")), Some(Format::Jsonl));
    assert_eq!(Format::from_path(Path::new("dir/a.Csv")), Some(Format::Csv));
    assert_eq!(Format::from_path(Path::new("a.txt")), None);
    assert_eq!(Format::from_path(Path::new("noext")), None);
    assert_eq!("CSV".parse::<Format>().unwrap(), Format::Csv);
    assert_eq!("jsonl".parse::<Format>().unwrap(), Format::Jsonl);
    assert!(
        "parquet"
            .parse::<Format>()
            .unwrap_err()
            .to_string()
            .contains("`parquet`")
    );
    let err = Format::detect(Path::new("prompts.txt"), None).unwrap_err();
    assert!(err.to_string().contains("prompts.txt"), "{err}");
    assert_eq!(
        Format::detect(Path::new("prompts.txt"), Some(Format::Csv)).unwrap(),
        Format::Csv
    );

    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("in.csv");
    std::fs::write(&csv_path, "prompt,seed\na,1\nb,2\n").unwrap();
    let summary = validate(&csv_path, None, &GenerateRequest::default(), &ReadOptions::default()).unwrap();
    assert_eq!((summary.items, summary.bad.len()), (2, 0));
    let ids: Vec<String> = read_file(&csv_path, None, &GenerateRequest::default(), &ReadOptions::default())
        .unwrap()
        .map(|r| r.unwrap().id)
        .collect();
    assert_eq!(ids.len(), 2);
    // The same prompts as JSONL on the same lines: the same items, the same ids.
    let txt = dir.path().join("in.txt");
    std::fs::write(
        &txt,
        "\n{\"prompt\": \"a\", \"seed\": 1}\n{\"seed\": 2, \"prompt\": \"b\"}\n",
    )
    .unwrap();
    let jsonl = validate(
        &txt,
        Some(Format::Jsonl),
        &GenerateRequest::default(),
        &ReadOptions::default(),
    )
    .unwrap();
    assert_eq!(jsonl.fingerprint, summary.fingerprint);
    assert!(validate(&txt, None, &GenerateRequest::default(), &ReadOptions::default()).is_err());
    let err = validate(
        &dir.path().join("missing.jsonl"),
        None,
        &GenerateRequest::default(),
        &ReadOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, BatchError::Open { .. }) && err.to_string().contains("missing.jsonl"),
        "{err}"
    );
}

/// Gives `good` bytes, then fails.
struct Failing {
    good: Cursor<Vec<u8>>,
}

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.good.read(buf)? {
            0 => Err(io::Error::other("disk on fire")),
            n => Ok(n),
        }
    }
}

#[test]
fn a_read_error_stops_the_reader() {
    for format in [Format::Jsonl, Format::Csv] {
        let good = match format {
            Format::Jsonl => "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n",
            Format::Csv => "prompt\na\nb\n",
        };
        let reader = || {
            BufReader::new(Failing {
                good: Cursor::new(good.as_bytes().to_vec()),
            })
        };
        let results: Vec<_> =
            read_items(reader(), format, &GenerateRequest::default(), &ReadOptions::default()).collect();
        assert_eq!(results.len(), 3, "{format:?}: {results:?}");
        let error = results[2].as_ref().unwrap_err();
        assert!(
            error.is_fatal() && error.to_string().contains("disk on fire"),
            "{error}"
        );
        let err = validate_reader(reader(), format, &GenerateRequest::default(), &ReadOptions::default()).unwrap_err();
        assert_eq!(err.code(), "unreadable");
    }
}
