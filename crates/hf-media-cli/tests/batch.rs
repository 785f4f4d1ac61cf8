//! `hf-media batch` end to end: the real binary against an emulator served by the test process (its
//! request counts tell what was submitted), into folders and into moto's S3, then the output read the way
//! its users read it (the `datasets` library included).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use hf_media_batch::runner::{MAX_FILES_PER_FOLDER, folder, items_per_folder, media_key};
use serde_json::{Value, json};
use support::{Run, Served, command, files_under, jsonl, parse_jsonl, red_blue_png, run};

/// The model of lines that name none: a provider that answers with the media at once (the emulator
/// renders 64×64 images in no time).
const MODEL: &str = "black-forest-labs/FLUX.1-schnell:together";
/// The same model at a provider that queues jobs (submit, then polls every 500 ms): its tickets are
/// stored.
const QUEUED_MODEL: &str = "black-forest-labs/FLUX.1-schnell:fal-ai";
/// A model that edits an input image.
const EDIT_MODEL: &str = "black-forest-labs/FLUX.1-Kontext-dev";
/// The result files.
const RESULT_FILES: [&str; 3] = ["results.jsonl", "errors.jsonl", "metadata.jsonl"];

/// What one input item should give.
#[derive(Debug, Clone)]
struct Expected {
    /// Its `custom_id`, when the line has one.
    custom_id: Option<String>,
    /// Its line number (from 1).
    line: usize,
    n: usize,
    /// The media's width and height.
    size: (u32, u32),
}

/// `hf-media batch INPUT -o OUT -m MODEL --width 64 --height 64 --concurrency 16 [extra…]` against
/// `served` with `token` (`extra` may give its own `-m` and `--concurrency`).
fn batch_command(
    home: &Path,
    served: &Served,
    token: &str,
    input: &Path,
    out: &str,
    extra: &[&str],
) -> tokio::process::Command {
    let mut cmd = command(home);
    cmd.arg("batch").arg(input).args(["-o", out]);
    if !extra.contains(&"-m") {
        cmd.args(["-m", MODEL]);
    }
    if !extra.contains(&"--concurrency") {
        cmd.args(["--concurrency", "16"]);
    }
    cmd.args(["--width", "64", "--height", "64"]);
    cmd.args(extra);
    served.point(&mut cmd, token);
    cmd
}

/// Whether `id` is a stable id made from line `line` (`line-000042-<12 hex digits>`).
fn is_stable_id(id: &str, line: usize) -> bool {
    let prefix = format!("line-{line:06}-");
    id.strip_prefix(&prefix)
        .is_some_and(|hash| hash.len() == 12 && hash.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The checks every finished folder batch passes: the result files against the inputs, the media on
/// disk (each decoded with `decode`, else its size read from its header), nothing else in the folder.
/// Returns the results by `custom_id`.
fn check_folder_output(out: &Path, expected: &[Expected], decode: bool) -> BTreeMap<String, Value> {
    let results = jsonl(&out.join("results.jsonl"));
    assert_eq!(results.len(), expected.len(), "one results line per input item");
    assert_eq!(
        std::fs::read(out.join("errors.jsonl")).unwrap(),
        b"",
        "no item failed: errors.jsonl is empty"
    );
    let mut by_id = BTreeMap::new();
    let mut media_files = BTreeSet::new();
    let mut media_of_results = BTreeSet::new();
    // Lines are in input order: the join by custom_id is checked line by line.
    for (result, item) in results.iter().zip(expected) {
        let id = result["custom_id"].as_str().unwrap().to_owned();
        match &item.custom_id {
            Some(custom_id) => assert_eq!(&id, custom_id, "line {}", item.line),
            None => assert!(
                is_stable_id(&id, item.line),
                "line {}: {id} is not its stable id",
                item.line
            ),
        }
        assert!(result["id"].as_str().unwrap().starts_with("batch_req_"), "{result}");
        assert_eq!(result["error"], Value::Null, "{result}");
        assert_eq!(result["response"]["status_code"], 200, "{result}");
        let data = result["response"]["body"]["data"].as_array().unwrap();
        assert_eq!(data.len(), item.n, "{id}: n media listed");
        for (index, media) in data.iter().enumerate() {
            assert_eq!(media["index"], index, "{id}");
            let file_name = media["file_name"].as_str().unwrap();
            assert!(!file_name.starts_with('/') && !file_name.contains(".."), "{file_name}");
            let path = out.join(file_name);
            let size = if decode {
                let image = image::open(&path).unwrap_or_else(|e| panic!("{id}: {file_name}: {e}"));
                (image.width(), image.height())
            } else {
                image::image_dimensions(&path).unwrap_or_else(|e| panic!("{id}: {file_name}: {e}"))
            };
            assert_eq!(size, item.size, "{id}: {file_name}");
            assert!(media["seed"].is_u64(), "{id}: a fixed seed is recorded: {media}");
            assert!(media_files.insert(file_name.to_owned()), "{file_name} is listed once");
            media_of_results.insert((id.clone(), index as u64));
        }
        assert!(
            by_id.insert(id.clone(), result.clone()).is_none(),
            "custom_id {id} is listed once"
        );
    }

    let metadata = jsonl(&out.join("metadata.jsonl"));
    assert_eq!(metadata.len(), media_files.len(), "one metadata line per media");
    let mut media_of_metadata = BTreeSet::new();
    for row in &metadata {
        let file_name = row["file_name"].as_str().unwrap();
        assert!(media_files.contains(file_name), "metadata names a listed media: {row}");
        assert!(row["prompt"].as_str().is_some_and(|p| !p.is_empty()), "{row}");
        assert!(row["seed"].is_u64(), "{row}");
        assert!(row["parameters"].is_string(), "parameters is a JSON string: {row}");
        media_of_metadata.insert((
            row["custom_id"].as_str().unwrap().to_owned(),
            row["index"].as_u64().unwrap(),
        ));
    }
    assert_eq!(media_of_metadata, media_of_results);

    // Nothing in the folder but the media, the result files and the state (no temporaries).
    for file in files_under(out) {
        let known =
            RESULT_FILES.contains(&file.as_str()) || media_files.contains(&file) || file.starts_with(".hf-media/");
        assert!(known, "{} holds a file that is not the batch's: {file}", out.display());
    }
    // Folders of at most 10,000 files.
    let mut per_folder: HashMap<String, u64> = HashMap::new();
    for file in &media_files {
        let (sub_folder, _) = file.rsplit_once('/').expect("media are in sub-folders");
        *per_folder.entry(sub_folder.to_owned()).or_default() += 1;
    }
    assert!(
        per_folder.values().all(|&count| count <= MAX_FILES_PER_FOLDER),
        "{per_folder:?}"
    );
    by_id
}

/// The stdout of a `--json` run: every line an event; the last one `finished`. Returns them.
fn check_events(run: &Run) -> Vec<Value> {
    let events = run.events();
    assert!(!events.is_empty(), "no events; stderr: {}", run.stderr);
    for event in &events {
        assert!(event["event"].is_string(), "an event has an `event` field: {event}");
    }
    assert_eq!(events[0]["event"], "started", "{}", events[0]);
    let last = events.last().unwrap();
    assert_eq!(last["event"], "finished", "the last event: {last}");
    assert_eq!(
        events.iter().filter(|e| e["event"] == "finished").count(),
        1,
        "one finished event"
    );
    events
}

fn summary_counts(finished: &Value) -> (u64, u64, u64, u64, u64) {
    let progress = &finished["progress"];
    (
        progress["total"].as_u64().unwrap(),
        progress["done"].as_u64().unwrap(),
        progress["failed"].as_u64().unwrap(),
        finished["results"].as_u64().unwrap(),
        finished["media"].as_u64().unwrap(),
    )
}

fn read_results(out: &Path) -> Vec<Vec<u8>> {
    RESULT_FILES
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_of_300_items_runs_every_item_once_and_a_second_run_submits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start().await;
    let local_input = dir.path().join("red-blue.png");
    std::fs::write(&local_input, red_blue_png(64, 48)).unwrap();
    let hosted = format!(
        "{}{}",
        served.url(),
        served
            .emulator
            .host_input("red-blue.png", red_blue_png(64, 48))
            .unwrap()
    );

    let mut lines = Vec::new();
    let mut expected = Vec::new();
    for i in 0..300usize {
        let line = i + 1;
        let (text, custom_id, n, size) = if i % 50 == 7 {
            // An edit of an input image: a local file, or one the emulator hosts.
            let image = if i % 100 == 7 {
                local_input.display().to_string()
            } else {
                hosted.clone()
            };
            let id = format!("edit-{i}");
            let text = json!({"custom_id": id, "prompt": "make it snow", "model": EDIT_MODEL, "image": image, "width": 48, "height": 48});
            (text, Some(id), 1, (48, 48))
        } else {
            match i % 6 {
                0 => {
                    let id = format!("oa-{i}");
                    let body = json!({"model": QUEUED_MODEL, "prompt": format!("a fox, take {i}"), "n": 2, "size": "64x48", "quality": "hd"});
                    let text =
                        json!({"custom_id": id, "method": "POST", "url": "/v1/images/generations", "body": body});
                    (text, Some(id), 2, (64, 48))
                }
                1 => {
                    let id = format!("row-{i}");
                    (
                        json!({"custom_id": id, "prompt": format!("a lighthouse {i}"), "width": 48, "height": 64}),
                        Some(id),
                        1,
                        (48, 64),
                    )
                }
                2 => (json!({"prompt": format!("an owl {i}")}), None, 1, (64, 64)),
                3 => (
                    json!({"messages": [{"role": "user", "content": format!("a watercolor heron {i}")}]}),
                    None,
                    1,
                    (64, 64),
                ),
                4 => (
                    json!({"prompt": format!("a bridge {i}"), "seed": i, "n": 2}),
                    None,
                    2,
                    (64, 64),
                ),
                _ => {
                    // An id that is not a safe file name.
                    let id = format!("odd/id {i}?");
                    (
                        json!({"custom_id": id, "prompt": format!("a cabin {i}")}),
                        Some(id),
                        1,
                        (64, 64),
                    )
                }
            }
        };
        lines.push(text.to_string());
        expected.push(Expected {
            custom_id,
            line,
            n,
            size,
        });
    }
    let input = dir.path().join("prompts.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("dataset");
    let out_arg = out.to_str().unwrap();
    let total_media: usize = expected.iter().map(|e| e.n).sum();

    let first = run(batch_command(
        dir.path(),
        &served,
        "hf_emulator",
        &input,
        out_arg,
        &["--json"],
    ))
    .await;
    first.expect_code(0);
    let events = check_events(&first);
    let (total, done, failed, results, media) = summary_counts(events.last().unwrap());
    assert_eq!(
        (total, done, failed, results, media),
        (300, 300, 0, 300, total_media as u64)
    );
    let by_provider = &events.last().unwrap()["done_by_provider"];
    assert_eq!(
        by_provider["fal-ai"], 56,
        "the OpenAI lines and the edits: {by_provider}"
    );
    assert_eq!(by_provider["together"], 244, "{by_provider}");
    let started = &events[0];
    assert_eq!(started["resumed"], false);
    assert_eq!(started["total"], 300);
    // Every item done once.
    let mut done_ids: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "item_done")
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    done_ids.sort_unstable();
    let before = done_ids.len();
    done_ids.dedup();
    assert_eq!((before, done_ids.len()), (300, 300), "each item is done once");
    assert!(
        events
            .iter()
            .all(|e| e["event"] != "item_failed" && e["event"] != "bad_line")
    );
    // One submit per generation, none twice.
    let stats = served.emulator.stats();
    assert_eq!(support::submits(&stats), total_media as u64, "{stats:?}");

    let by_id = check_folder_output(&out, &expected, true);
    for item in expected
        .iter()
        .filter(|e| e.custom_id.as_deref().is_some_and(|id| id.starts_with("edit-")))
    {
        let id = item.custom_id.as_deref().unwrap();
        let record = &by_id[id]["response"]["body"]["data"][0]["record"];
        assert_eq!(
            record["inputs"].as_array().map(Vec::len),
            Some(1),
            "{id}: the edit names its input: {record}"
        );
    }
    let files_before = read_results(&out);

    // Again: everything is done, nothing is submitted, the files come back byte for byte.
    let second = run(batch_command(
        dir.path(),
        &served,
        "hf_emulator",
        &input,
        out_arg,
        &["--json"],
    ))
    .await;
    second.expect_code(0);
    let events = check_events(&second);
    assert_eq!(events[0]["resumed"], true, "{}", events[0]);
    assert_eq!(events[0]["finished"], 300, "{}", events[0]);
    let finished = events.last().unwrap();
    assert_eq!(finished["progress"]["finished_this_run"], 0, "{finished}");
    assert_eq!(
        support::submits(&served.emulator.stats()),
        total_media as u64,
        "nothing is submitted again"
    );
    assert_eq!(read_results(&out), files_before, "the result files are the same bytes");
    check_folder_output(&out, &expected, false);
    eprintln!(
        "300 items, {total_media} media: {:?}, then {:?}",
        first.elapsed, second.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_batch_joins_its_results_to_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start().await;
    let mut csv = String::from("custom_id,caption,seed,width,height,n,lora_scale\n");
    let mut expected = Vec::new();
    for i in 0..60usize {
        // The header is line 1; a quoted caption that spans two lines moves every later row down one.
        let line = i + 2 + usize::from(i > 10);
        let custom_id = (i % 3 != 0).then(|| format!("csv-{i}"));
        let caption = if i == 10 {
            "\"a fox,\nin the snow\"".to_owned()
        } else {
            format!("a red fox {i}")
        };
        let (size, n) = if i % 4 == 0 { ((48, 64), 2) } else { ((64, 64), 1) };
        let (width, height) = if i % 4 == 0 { ("48", "64") } else { ("", "") };
        let n_cell = if n == 2 { "2" } else { "" };
        csv.push_str(&format!(
            "{},{caption},{i},{width},{height},{n_cell},0.8\n",
            custom_id.clone().unwrap_or_default()
        ));
        expected.push(Expected {
            custom_id,
            line,
            n,
            size,
        });
    }
    let input = dir.path().join("prompts.csv");
    std::fs::write(&input, csv).unwrap();
    let out = dir.path().join("csv-out");
    let run = run(batch_command(
        dir.path(),
        &served,
        "hf_emulator",
        &input,
        out.to_str().unwrap(),
        &["--json", "--prompt-column", "caption"],
    ))
    .await;
    run.expect_code(0);
    check_events(&run);
    let by_id = check_folder_output(&out, &expected, true);
    // The seed column is the media's seed; unknown columns are provider parameters.
    let first = &by_id["csv-1"]["response"]["body"]["data"][0];
    assert_eq!(first["seed"], 1, "{first}");
    let metadata = jsonl(&out.join("metadata.jsonl"));
    let row = metadata.iter().find(|r| r["custom_id"] == "csv-1").unwrap();
    let parameters: Value = serde_json::from_str(row["parameters"].as_str().unwrap()).unwrap();
    assert_eq!(parameters["seed"], 1, "{parameters}");
    assert_eq!(row["prompt"], "a red fox 1");
    let multi_line = metadata.iter().find(|r| r["custom_id"] == "csv-10").unwrap();
    assert_eq!(multi_line["prompt"], "a fox,\nin the snow");
}

#[test]
fn folders_hold_at_most_ten_thousand_files_whatever_n() {
    for max_n in [1u64, 2, 3, 7, 64, 4096] {
        let per_folder = items_per_folder(max_n);
        // Enough items for several folders, each making max_n media.
        let items = per_folder * 3 + 1;
        let mut files: HashMap<String, u64> = HashMap::new();
        let mut keys = BTreeSet::new();
        for position in 0..items {
            let key = media_key(&format!("item-{position}"), position, per_folder);
            assert_eq!(key.split('/').next().unwrap(), folder(position, per_folder));
            assert!(keys.insert(key.clone()), "{key}");
            *files.entry(folder(position, per_folder)).or_default() += max_n;
        }
        assert_eq!(files.len(), 4, "max_n {max_n}: {files:?}");
        assert!(
            files.values().all(|&count| count <= MAX_FILES_PER_FOLDER),
            "max_n {max_n}: {files:?}"
        );
        assert!(
            files.values().any(|&count| count > MAX_FILES_PER_FOLDER - max_n),
            "max_n {max_n}: folders are filled, not left half empty: {files:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_loads_with_the_datasets_library() {
    let python = support::python::python();
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start().await;
    let mut lines = Vec::new();
    let mut media = 0;
    for i in 0..12 {
        let n = if i % 3 == 0 { 2 } else { 1 };
        media += n;
        let line = if i % 2 == 0 {
            json!({"custom_id": format!("ds-{i}"), "prompt": format!("a heron {i}"), "n": n, "seed": 100 + i})
        } else {
            json!({"prompt": format!("a heron {i}"), "n": n, "width": 48, "height": 64})
        };
        lines.push(line.to_string());
    }
    let input = dir.path().join("prompts.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = dir.path().join("ds");
    run(batch_command(
        dir.path(),
        &served,
        "hf_emulator",
        &input,
        out.to_str().unwrap(),
        &["--json"],
    ))
    .await
    .expect_code(0);

    let script = r#"
import json, sys
import datasets
ds = datasets.load_dataset("imagefolder", data_dir=sys.argv[1], split="train")
rows = []
for row in ds:
    image = row["image"]
    image.load()
    rows.append({"custom_id": row["custom_id"], "index": row["index"], "prompt": row["prompt"],
                 "seed": row["seed"], "size": list(image.size), "parameters": json.loads(row["parameters"])})
print(json.dumps({"columns": ds.column_names, "rows": rows}))
"#;
    let cache = dir.path().join("py-cache");
    let output = tokio::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&out)
        .env("HF_HOME", &cache)
        .env("HF_DATASETS_CACHE", cache.join("datasets"))
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_DATASETS_OFFLINE", "1")
        .env_remove("HF_TOKEN")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "datasets.load_dataset(\"imagefolder\", data_dir=…) failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let loaded: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let columns: BTreeSet<&str> = loaded["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for column in [
        "image",
        "prompt",
        "custom_id",
        "seed",
        "index",
        "model",
        "provider",
        "parameters",
    ] {
        assert!(columns.contains(column), "column {column}: {columns:?}");
    }
    let rows = loaded["rows"].as_array().unwrap();
    assert_eq!(rows.len(), media, "one row per media");
    let metadata = jsonl(&out.join("metadata.jsonl"));
    let mut from_python: Vec<(String, u64, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["custom_id"].as_str().unwrap().to_owned(),
                r["index"].as_u64().unwrap(),
                r["seed"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut from_file: Vec<(String, u64, u64)> = metadata
        .iter()
        .map(|r| {
            (
                r["custom_id"].as_str().unwrap().to_owned(),
                r["index"].as_u64().unwrap(),
                r["seed"].as_u64().unwrap(),
            )
        })
        .collect();
    from_python.sort();
    from_file.sort();
    assert_eq!(from_python, from_file);
    for row in rows {
        let id = row["custom_id"].as_str().unwrap();
        let size = if id.starts_with("ds-") {
            json!([64, 64])
        } else {
            json!([48, 64])
        };
        assert_eq!(row["size"], size, "{row}");
        assert!(row["prompt"].as_str().unwrap().starts_with("a heron"), "{row}");
        // Generation `index` of an item with seed `s` uses `s + index`.
        if let Some(i) = id.strip_prefix("ds-") {
            let seed = 100 + i.parse::<u64>().unwrap() + row["index"].as_u64().unwrap();
            assert_eq!(row["seed"], seed, "{row}");
        }
    }
}

/// A file with one bad line of each kind, between good ones: (text, the bad lines' numbers). A duplicate
/// `custom_id` has its own tests below.
fn bad_input() -> (String, Vec<u64>) {
    let lines = [
        json!({"custom_id": "good-1", "prompt": "a red fox"}).to_string(),
        "{not json".to_owned(),
        json!({"custom_id": "no-prompt", "seed": 3}).to_string(),
        json!({"prompt": "a cat", "model": "not a model!"}).to_string(),
        json!({"prompt": "a dog", "width": "wide"}).to_string(),
        json!({"prompt": "a good owl"}).to_string(),
        json!({"custom_id": "good-3", "method": "POST", "url": "/v1/images/generations", "body": {"prompt": "a bird", "size": "64x64"}})
            .to_string(),
    ];
    (lines.join("\n") + "\n", vec![2, 3, 4, 5])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_fail_alone_strict_mode_refuses_the_file_and_another_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start().await;
    let (text, bad) = bad_input();
    let input = dir.path().join("mixed.jsonl");
    std::fs::write(&input, text).unwrap();

    // Strict: refused whole, before anything is sent or written.
    let strict_out = dir.path().join("strict");
    let strict = run(batch_command(
        dir.path(),
        &served,
        "hf_emulator",
        &input,
        strict_out.to_str().unwrap(),
        &["--strict"],
    ))
    .await;
    strict.expect_code(2);
    assert!(strict.stderr.contains("strict"), "{}", strict.stderr);
    assert!(
        strict.stderr.contains("line 2"),
        "the first bad line is named: {}",
        strict.stderr
    );
    assert_eq!(
        served.submits(),
        0,
        "nothing is submitted: {:?}",
        served.emulator.stats()
    );
    if strict_out.exists() {
        let files = files_under(&strict_out);
        assert!(
            files.iter().all(|f| f.starts_with(".hf-media/")),
            "only the state, if anything: {files:?}"
        );
    }

    // Not strict: the bad lines fail, the good ones are done.
    let out = dir.path().join("out");
    let out_arg = out.to_str().unwrap();
    let lenient = run(batch_command(dir.path(), &served, "hf_emulator", &input, out_arg, &[])).await;
    lenient.expect_code(1);
    for line in &bad {
        assert!(
            lenient.stderr.contains(&format!("line {line}: ")),
            "line {line} is reported: {}",
            lenient.stderr
        );
    }
    assert_eq!(
        served.submits(),
        3,
        "the three good items: {:?}",
        served.emulator.stats()
    );
    let errors = jsonl(&out.join("errors.jsonl"));
    let error_lines: Vec<u64> = errors.iter().map(|e| e["error"]["line"].as_u64().unwrap()).collect();
    assert_eq!(error_lines, bad, "{errors:#?}");
    for error in &errors {
        assert_eq!(error["response"], Value::Null, "{error}");
        assert_eq!(error["error"]["code"], "invalid_line", "{error}");
        assert!(
            error["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{error}"
        );
    }
    let messages: Vec<&str> = errors.iter().map(|e| e["error"]["message"].as_str().unwrap()).collect();
    for (needle, message) in ["not JSON", "no prompt", "invalid model", "invalid parameter"]
        .iter()
        .zip(&messages)
    {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    let results = jsonl(&out.join("results.jsonl"));
    assert_eq!(results.len(), 7, "one line per input item: {results:#?}");
    let done: Vec<&Value> = results.iter().filter(|r| r["error"].is_null()).collect();
    assert_eq!(done.len(), 3);
    assert_eq!(done[0]["custom_id"], "good-1");
    assert_eq!(
        done[0]["response"]["body"]["data"][0]["revised_prompt"], "a red fox",
        "the first good-1 is kept"
    );
    assert!(is_stable_id(done[1]["custom_id"].as_str().unwrap(), 6), "{}", done[1]);
    assert_eq!(done[2]["custom_id"], "good-3");
    let ids: BTreeSet<&str> = results.iter().map(|r| r["custom_id"].as_str().unwrap()).collect();
    assert_eq!(
        ids.len(),
        results.len(),
        "every results line has its own custom_id: {ids:?}"
    );
    assert_eq!(jsonl(&out.join("metadata.jsonl")).len(), 3);

    // `batch status`: the counts, as text and as JSON.
    let mut status = command(dir.path());
    status.args(["batch", "status", "-o", out_arg]);
    let status = run(status).await;
    status.expect_code(0);
    assert!(
        status
            .stdout
            .contains("7 items: 3 done, 4 failed, 0 running, 0 pending"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("failed (invalid_line): 4"), "{}", status.stdout);
    let mut status_json = command(dir.path());
    status_json.args(["batch", "status", "-o", out_arg, "--json"]);
    let status_json = run(status_json).await;
    status_json.expect_code(0);
    let parsed: Value = serde_json::from_str(status_json.stdout.trim()).unwrap();
    let progress = &parsed["progress"];
    assert_eq!(
        (
            &progress["total"],
            &progress["done"],
            &progress["failed"],
            &progress["running"],
            &progress["pending"]
        ),
        (&json!(7), &json!(3), &json!(4), &json!(0), &json!(0)),
        "{parsed}"
    );
    assert_eq!(parsed["failed_by_kind"], json!({"invalid_line": 4}), "{parsed}");
    assert_eq!(
        parsed["done_by_provider"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        3
    );

    // Another file against the same output: refused, saying how to start a new batch.
    let other = dir.path().join("other.jsonl");
    std::fs::write(&other, json!({"prompt": "something else"}).to_string()).unwrap();
    let refused = run(batch_command(dir.path(), &served, "hf_emulator", &other, out_arg, &[])).await;
    refused.expect_code(2);
    assert!(refused.stderr.contains("already holds a batch"), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("-o") && refused.stderr.contains("--state"),
        "{}",
        refused.stderr
    );
    assert_eq!(served.submits(), 3, "nothing more is submitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_custom_id_fails_alone_and_the_rest_runs() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start().await;
    let lines = [
        json!({"custom_id": "fox", "prompt": "a red fox"}).to_string(),
        json!({"custom_id": "fox", "prompt": "a second fox"}).to_string(),
        json!({"prompt": "a good owl"}).to_string(),
    ];
    let input = dir.path().join("dup.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = dir.path().join("out");
    let run = run(batch_command(
        dir.path(),
        &served,
        "hf_emulator",
        &input,
        out.to_str().unwrap(),
        &[],
    ))
    .await;
    run.expect_code(1);
    assert!(
        run.stderr.contains("line 2: duplicate custom_id `fox`"),
        "{}",
        run.stderr
    );
    assert_eq!(served.submits(), 2, "the two good items run");
    let results = jsonl(&out.join("results.jsonl"));
    assert_eq!(results.len(), 3, "one line per input item: {results:#?}");
    assert_eq!(results[0]["custom_id"], "fox");
    assert_eq!(results[0]["response"]["body"]["data"][0]["revised_prompt"], "a red fox");
    let errors = jsonl(&out.join("errors.jsonl"));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["error"]["line"], 2);
    assert_eq!(errors[0]["error"]["code"], "invalid_line");
    let ids: BTreeSet<&str> = results.iter().map(|r| r["custom_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "the results still join 1:1 by custom_id: {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_names_every_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start().await;
    let (text, bad) = bad_input();
    let input = dir.path().join("mixed.jsonl");
    std::fs::write(&input, text).unwrap();
    let out = dir.path().join("strict");
    let strict = run(batch_command(
        dir.path(),
        &served,
        "hf_emulator",
        &input,
        out.to_str().unwrap(),
        &["--strict"],
    ))
    .await;
    strict.expect_code(2);
    assert!(
        strict.stderr.contains(&format!("{} bad line(s)", bad.len())),
        "{}",
        strict.stderr
    );
    for line in bad {
        assert!(
            strict.stderr.contains(&format!("  line {line}: ")),
            "line {line} is listed: {}",
            strict.stderr
        );
    }
}

#[tokio::test]
async fn status_of_an_output_without_a_batch_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("nothing-here");
    std::fs::create_dir_all(&empty).unwrap();
    for json in [false, true] {
        let mut cmd = command(dir.path());
        cmd.args(["batch", "status", "-o", empty.to_str().unwrap()]);
        if json {
            cmd.arg("--json");
        }
        let status = run(cmd).await;
        status.expect_code(2);
        assert!(status.stderr.contains("no batch state"), "{}", status.stderr);
        assert!(
            status.stderr.contains("hf-media batch INPUT -o"),
            "says what to do: {}",
            status.stderr
        );
        assert!(!empty.join(".hf-media").exists(), "status creates no state");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_into_s3_publishes_complete_objects_and_keeps_its_state_in_the_cache() {
    let moto = support::moto::Moto::start();
    moto.create_bucket("media").await;
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start().await;
    let mut lines = Vec::new();
    let mut expected_media = 0;
    for i in 0..50 {
        let n = if i % 5 == 0 { 2 } else { 1 };
        expected_media += n;
        let mut line = if i % 2 == 0 {
            json!({"custom_id": format!("s3-{i}"), "prompt": format!("a fox {i}"), "n": n})
        } else {
            json!({"prompt": format!("a fox {i}"), "n": n})
        };
        if n == 2 {
            line["model"] = json!(QUEUED_MODEL);
        }
        lines.push(line.to_string());
    }
    let input = dir.path().join("prompts.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let aws_secret = "aws_secret_canary_3b9f2c7d1e";
    let batch = |json: bool| {
        let extra: &[&str] = if json { &["--json"] } else { &[] };
        let mut cmd = batch_command(dir.path(), &served, "hf_emulator", &input, "s3://media/fox/run", extra);
        for (key, value) in moto.options() {
            cmd.env(key, value);
        }
        cmd.env("AWS_SECRET_ACCESS_KEY", aws_secret);
        cmd
    };

    let first = run(batch(false)).await;
    first.expect_code(0);
    let states: Vec<_> = std::fs::read_dir(dir.path().join(".cache/hf-media/batches"))
        .expect("the state is in ~/.cache/hf-media/batches")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sqlite"))
        .collect();
    assert_eq!(states.len(), 1, "{states:?}");
    let state = &states[0];
    let start_line = first.stderr.lines().next().unwrap_or_default();
    assert!(
        start_line.contains("state: sqlite:") && start_line.contains(&state.display().to_string()),
        "the state's path is printed at start: {}",
        first.stderr
    );
    assert_eq!(served.submits(), expected_media);

    let bucket = Bucket::new(&moto, "media");
    let keys = bucket.keys("fox/run").await;
    let results = bucket.jsonl("fox/run/results.jsonl").await;
    let metadata = bucket.jsonl("fox/run/metadata.jsonl").await;
    assert_eq!(results.len(), 50);
    assert_eq!(metadata.len() as u64, expected_media);
    assert!(keys.contains("fox/run/errors.jsonl"), "{keys:?}");
    let mut media_keys = BTreeSet::new();
    for row in &metadata {
        let file_name = row["file_name"].as_str().unwrap();
        assert!(
            !file_name.contains("://") && !file_name.starts_with('/'),
            "relative: {file_name}"
        );
        let key = format!("fox/run/{file_name}");
        assert!(keys.contains(&key), "{key} is in the bucket: {keys:?}");
        let bytes = bucket.get(&key).await;
        let image = image::load_from_memory(&bytes).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!((image.width(), image.height()), (64, 64), "{key}");
        media_keys.insert(key);
    }
    // Nothing but the media and the result files: no temporary objects, no open uploads.
    let mut known = media_keys.clone();
    known.extend(RESULT_FILES.iter().map(|f| format!("fox/run/{f}")));
    assert_eq!(keys, known);
    assert!(moto.open_uploads("media").await.is_empty());
    for result in &results {
        for media in result["response"]["body"]["data"].as_array().unwrap() {
            assert!(
                media_keys.contains(&format!("fox/run/{}", media["file_name"].as_str().unwrap())),
                "{media}"
            );
            assert!(
                media["url"].as_str().unwrap().starts_with("s3://media/fox/run/"),
                "{media}"
            );
        }
    }

    // Again: nothing submitted, the same results.
    let before = bucket.get("fox/run/results.jsonl").await;
    let second = run(batch(true)).await;
    second.expect_code(0);
    let events = check_events(&second);
    assert_eq!(events[0]["resumed"], true);
    assert_eq!(events[0]["state"], format!("sqlite:{}", state.display()));
    assert_eq!(served.submits(), expected_media, "nothing is submitted again");
    let after = bucket.get("fox/run/results.jsonl").await;
    assert_eq!(before, after);

    // The AWS secret is nowhere: not in what was printed, the result files or the state.
    let mut seen = vec![first.stdout, first.stderr, second.stdout, second.stderr];
    seen.push(String::from_utf8_lossy(&before).into_owned());
    seen.push(String::from_utf8_lossy(&bucket.get("fox/run/metadata.jsonl").await).into_owned());
    for (i, text) in seen.iter().enumerate() {
        assert!(!text.contains(aws_secret), "output {i} holds the AWS secret");
    }
    assert_no_secret_in_state(state, aws_secret);
}

/// A moto bucket, read the way the batch wrote it (signed requests, through `object_store`).
struct Bucket(std::sync::Arc<dyn hf_media_sink_object::object_store::ObjectStore>);

impl Bucket {
    fn new(moto: &support::moto::Moto, bucket: &str) -> Bucket {
        let sink = hf_media_sink_object::ObjectSink::from_url_opts(&format!("s3://{bucket}"), moto.options()).unwrap();
        Bucket(sink.object_store().clone())
    }

    /// The keys under `prefix`.
    async fn keys(&self, prefix: &str) -> BTreeSet<String> {
        use futures::TryStreamExt as _;
        let prefix = hf_media_sink_object::object_store::path::Path::from(prefix);
        let listed: Vec<_> = self.0.list(Some(&prefix)).try_collect().await.unwrap();
        listed.into_iter().map(|meta| meta.location.to_string()).collect()
    }

    async fn get(&self, key: &str) -> Vec<u8> {
        use hf_media_sink_object::object_store::ObjectStoreExt as _;
        let path = hf_media_sink_object::object_store::path::Path::from(key);
        let found = self.0.get(&path).await.unwrap_or_else(|e| panic!("{key}: {e}"));
        found.bytes().await.unwrap().to_vec()
    }

    async fn jsonl(&self, key: &str) -> Vec<Value> {
        parse_jsonl(&String::from_utf8(self.get(key).await).unwrap())
    }
}

/// The state's database file and its journals hold no trace of `secret`.
fn assert_no_secret_in_state(state: &Path, secret: &str) {
    let name = state.file_name().unwrap().to_string_lossy().into_owned();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let path = state.with_file_name(format!("{name}{suffix}"));
        if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds the secret",
                path.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_never_written_or_printed() {
    // The emulator has no behaviour that echoes request headers back, so this checks what hf-media itself
    // prints and stores, on the success path and on a provider's authorization error.
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start().await;
    served.emulator.set_behaviour(
        "replicate",
        hf_media_emulator::ProviderBehaviour::default().with_fault(hf_media_emulator::FaultRule::always(
            hf_media_emulator::Fault::Status {
                status: 401,
                body: None,
            },
        )),
    );
    let token = "hf_secret_canary_5d1e8a0b7c";
    let mut lines: Vec<String> = (0..8)
        .map(|i| json!({"prompt": format!("a fox {i}")}).to_string())
        .collect();
    lines.push(json!({"custom_id": "denied", "prompt": "a fox", "model": format!("{MODEL}:replicate")}).to_string());
    let input = dir.path().join("prompts.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = dir.path().join("out");
    let mut outputs = Vec::new();
    for json in [true, false] {
        let extra: &[&str] = if json { &["--json", "-v"] } else { &["-v"] };
        let run = run(batch_command(
            dir.path(),
            &served,
            token,
            &input,
            out.to_str().unwrap(),
            extra,
        ))
        .await;
        run.expect_code(1);
        outputs.push(run.stdout);
        outputs.push(run.stderr);
    }
    let errors = jsonl(&out.join("errors.jsonl"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["custom_id"], "denied");
    for file in RESULT_FILES {
        outputs.push(std::fs::read_to_string(out.join(file)).unwrap());
    }
    for (i, text) in outputs.iter().enumerate() {
        assert!(!text.contains(token), "output {i} holds the token:\n{text}");
    }
    assert_no_secret_in_state(&out.join(".hf-media/batch-state.sqlite"), token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_like_ctrl_c_writes_the_results_and_the_next_run_resumes_the_jobs() {
    use tokio::io::AsyncBufReadExt as _;
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start().await;
    // Jobs stay pending for 1.5 s: the stop comes while they run.
    served.emulator.set_behaviour(
        "fal-ai",
        hf_media_emulator::ProviderBehaviour::default()
            .with_pending_polls(0)
            .with_latency(std::time::Duration::from_millis(1500)),
    );
    let lines: Vec<String> = (0..20)
        .map(|i| json!({"prompt": format!("a fox {i}")}).to_string())
        .collect();
    let input = dir.path().join("prompts.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = dir.path().join("out");
    let out_arg = out.to_str().unwrap();
    let mut cmd = batch_command(
        dir.path(),
        &served,
        "hf_emulator",
        &input,
        out_arg,
        &["--json", "-m", QUEUED_MODEL, "--concurrency", "4", "--grace", "0.2"],
    );
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id().unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = stdout.next_line().await.unwrap().unwrap();
    assert!(first.contains(r#""event":"started""#), "{first}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while served.submits() < 4 {
        assert!(std::time::Instant::now() < deadline, "no job was submitted");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut events = Vec::new();
    while let Some(line) = tokio::time::timeout(std::time::Duration::from_secs(10), stdout.next_line())
        .await
        .expect("the batch stops within 10 s of SIGTERM")
        .unwrap()
    {
        events.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(143), "{events:#?}");
    assert!(events.iter().any(|e| e["event"] == "stopping"), "{events:#?}");
    let finished = events.last().unwrap();
    assert_eq!(finished["event"], "finished", "{finished}");
    assert_eq!(finished["stopped"]["reason"], "asked", "{finished}");
    let done = finished["progress"]["done"].as_u64().unwrap();
    assert!(done < 20, "stopped before the end: {finished}");
    // The result files are written at the stop: the done items alone.
    assert_eq!(jsonl(&out.join("results.jsonl")).len() as u64, done);
    let submitted = served.submits();

    // The next run finishes the batch; the jobs running at the stop are polled, not submitted again.
    let again = run(batch_command(
        dir.path(),
        &served,
        "hf_emulator",
        &input,
        out_arg,
        &["--json", "-m", QUEUED_MODEL],
    ))
    .await;
    again.expect_code(0);
    let events = check_events(&again);
    assert_eq!(events.last().unwrap()["progress"]["done"], 20);
    let resumed: u64 = events
        .iter()
        .filter(|e| e["event"] == "item_done")
        .map(|e| e["resumed_jobs"].as_u64().unwrap())
        .sum();
    assert!(resumed >= 1, "the released items' jobs are resumed: {events:#?}");
    assert_eq!(
        served.submits(),
        20,
        "each job is submitted once ({submitted} before the stop)"
    );
    assert_eq!(jsonl(&out.join("results.jsonl")).len(), 20);
}
