//! Runs the `conformance` suite on every sink of this crate, directly and
//! behind `Arc`, `Box` and `Arc<dyn MediaSink>`.

use std::path::Path;
use std::sync::Arc;

use hf_media_sink::conformance::{self, tiny_mp4_head, tiny_png};
use hf_media_sink::{DynMediaSink, FileSink, MediaKind, MediaLocation, MediaSink, MemorySink, sniff};

fn _obj_safe(_: &dyn MediaSink) {}

/// Every entry of `dir`, hidden temporary files included.
fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(Iterator::count).unwrap_or(0)
}

fn hidden_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn file_sink_passes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("media");
    let sink = FileSink::new(&dir);
    conformance::run_all(&sink, || entries(&dir)).await;
    let limited = FileSink::new(&dir).with_max_bytes(100);
    conformance::rejects_oversized(&limited, 100, || entries(&dir)).await;
    assert!(hidden_entries(&dir).is_empty(), "{:?}", hidden_entries(&dir));
}

#[tokio::test]
async fn file_sink_without_sidecar_passes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sink = FileSink::new(tmp.path()).with_sidecar(false);
    let stored = conformance::stores_png(&sink).await;
    assert!(stored.sidecar.is_none());
    conformance::run_all(&sink, || entries(tmp.path())).await;
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".json")), "{names:?}");
}

#[tokio::test]
async fn memory_sink_passes() {
    let sink = MemorySink::new();
    let counter = sink.clone();
    conformance::run_all(&sink, move || counter.len()).await;
    let limited = MemorySink::new().with_max_bytes(64);
    let counter = limited.clone();
    conformance::rejects_oversized(&limited, 64, move || counter.len()).await;
}

#[tokio::test]
async fn arc_box_and_dyn_forms_pass() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();

    let arc = Arc::new(FileSink::new(&dir));
    conformance::run_all(&arc, || entries(&dir)).await;

    let boxed: Box<dyn MediaSink> = Box::new(FileSink::new(&dir));
    conformance::run_all(&boxed, || entries(&dir)).await;

    let memory = MemorySink::new();
    let counter = memory.clone();
    let dynamic: DynMediaSink = Arc::new(memory);
    // As `Arc<dyn MediaSink>` itself, and as the `dyn MediaSink` inside it.
    conformance::run_all(&dynamic, || counter.len()).await;
    conformance::run_all(dynamic.as_ref(), || counter.len()).await;

    let boxed_arc: Box<DynMediaSink> = Box::new(Arc::new(MemorySink::new()));
    conformance::stores_png(&boxed_arc).await;
}

#[tokio::test]
async fn memory_ids_follow_store_order() {
    let sink = MemorySink::new();
    for expected in 0..3 {
        let stored = conformance::stores_png(&sink).await;
        assert_eq!(stored.location, MediaLocation::Memory { id: expected });
    }
    let items = sink.items();
    assert_eq!(items.len(), 3);
    assert!(items.iter().enumerate().all(|(i, m)| m.id == i));
    assert_eq!(items[2].bytes.as_ref(), tiny_png().as_slice());
}

/// CRC-32 (IEEE), to check the PNG helper really is a valid PNG.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn tiny_png_is_a_valid_png() {
    let png = tiny_png();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let mut at = 8;
    let mut kinds = Vec::new();
    while at < png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().expect("len")) as usize;
        let kind_and_data = &png[at + 4..at + 8 + len];
        let crc = u32::from_be_bytes(png[at + 8 + len..at + 12 + len].try_into().expect("crc"));
        assert_eq!(crc32(kind_and_data), crc, "bad CRC at offset {at}");
        kinds.push(String::from_utf8_lossy(&kind_and_data[..4]).into_owned());
        at += 12 + len;
    }
    assert_eq!(at, png.len());
    assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
    // 1×1, 8-bit RGBA.
    assert_eq!(&png[16..26], &[0, 0, 0, 1, 0, 0, 0, 1, 8, 6]);
    assert_eq!(sniff(&png).map(|f| f.extension), Some("png"));
}

#[test]
fn tiny_mp4_head_is_sniffed_as_mp4() {
    let head = tiny_mp4_head();
    assert_eq!(&head[4..8], b"ftyp");
    let format = sniff(&head).expect("mp4");
    assert_eq!(format.extension, "mp4");
    assert_eq!(format.kind, MediaKind::Video);
}
