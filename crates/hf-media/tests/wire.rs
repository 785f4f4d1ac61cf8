//! The wire contract: the JSON form of every event kind (what `hf-media generate --json` prints, and what
//! a server streams), of the error object inside events, and of a request.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use hf_media::sink::InputRecord;
use hf_media::{
    Error, ErrorInfo, GenerateRequest, GeneratedMedia, GenerationEvent, GenerationParams, JobTicket, MediaKind,
    MediaLocation, ProviderAttempt, ProviderStatus, RetryStage,
};
use serde_json::{Value, json};

fn media() -> GeneratedMedia {
    GeneratedMedia {
        task: 1,
        provider: "fal-ai".into(),
        provider_id: "fal-ai/flux/dev".into(),
        model: "black-forest-labs/FLUX.1-dev".into(),
        kind: MediaKind::Image,
        mime: "image/png".into(),
        location: MediaLocation::File(PathBuf::from("out/1764547200_a_fox_abc123.png")),
        bytes: 1234,
        sidecar: Some(MediaLocation::File(PathBuf::from("out/1764547200_a_fox_abc123.json"))),
        seed: Some(42),
        source_url: Some("https://v3.fal.media/files/x.png".into()),
        provider_response: Some(json!({"seed": 42, "timings": {"inference": 0.3}})),
        inputs: Vec::new(),
        elapsed: Duration::from_millis(2500),
    }
}

fn every_event() -> Vec<GenerationEvent> {
    vec![
        GenerationEvent::Attempt {
            task: 0,
            provider: "fal-ai".into(),
            provider_id: "fal-ai/flux/dev".into(),
        },
        GenerationEvent::Retry {
            task: Some(0),
            provider: Some("fal-ai".into()),
            stage: RetryStage::Request,
            attempt: 1,
            delay: Duration::from_millis(480),
            status: Some(503),
            message: "busy".into(),
        },
        GenerationEvent::Retry {
            task: None,
            provider: None,
            stage: RetryStage::Mapping,
            attempt: 1,
            delay: Duration::from_millis(250),
            status: Some(502),
            message: "the Hub answered HTTP 502".into(),
        },
        GenerationEvent::Fallback {
            task: 0,
            provider: "fal-ai".into(),
            status: Some(402),
            message: "You have exceeded your monthly included credits".into(),
        },
        GenerationEvent::Warning {
            task: None,
            message: "skipping nebius: it is not registered in hf-media".into(),
        },
        GenerationEvent::Accepted {
            task: 0,
            provider: "fal-ai".into(),
            job: JobTicket::new("fal-ai", "req-1").with_data(json!({
                "status_url": "/fal-ai/flux/requests/req-1/status",
                "response_url": "/fal-ai/flux/requests/req-1"
            })),
        },
        GenerationEvent::Accepted {
            task: 1,
            provider: "replicate".into(),
            job: JobTicket::new("replicate", "pred-9"),
        },
        GenerationEvent::ProviderStatus {
            task: 0,
            provider: "fal-ai".into(),
            status: ProviderStatus {
                job_id: Some("req-1".into()),
                state: "queued".into(),
                queue_position: Some(3),
            },
        },
        GenerationEvent::Progress {
            elapsed: Duration::from_millis(1500),
            done: 1,
            total: 2,
        },
        GenerationEvent::Media(Box::new(media())),
        GenerationEvent::Media(Box::new(GeneratedMedia {
            task: 0,
            inputs: vec![InputRecord {
                source: "cat.png".into(),
                sha256: "ab".repeat(32),
                bytes: 1024,
                mime: "image/png".into(),
            }],
            ..media()
        })),
        GenerationEvent::Error {
            task: Some(1),
            error: Error::AllProvidersFailed {
                model: "m/x".into(),
                attempts: vec![ProviderAttempt {
                    provider: "fal-ai".into(),
                    status: Some(402),
                    kind: "http",
                    message: "credits".into(),
                }],
            },
        },
        GenerationEvent::Error {
            task: None,
            error: Error::ModelNotSupported {
                model: "m/x".into(),
                provider: "replicate".into(),
                status: Some(404),
                message: "not found".into(),
            },
        },
        GenerationEvent::Error {
            task: Some(0),
            error: Error::Timeout {
                after: Duration::from_secs(2),
                attempts: Vec::new(),
            },
        },
        GenerationEvent::Done {
            succeeded: 1,
            failed: 1,
            elapsed: Duration::from_millis(3000),
        },
    ]
}

#[test]
fn every_event_kind_has_its_json_line() {
    let lines: Vec<Value> = every_event().iter().map(|e| serde_json::to_value(e).unwrap()).collect();
    let names: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "attempt",
            "retry",
            "retry",
            "fallback",
            "warning",
            "accepted",
            "accepted",
            "provider_status",
            "progress",
            "media",
            "media",
            "error",
            "error",
            "error",
            "done"
        ]
    );
    insta::assert_json_snapshot!("every_event_kind", lines);
}

#[test]
fn an_accepted_jobs_ticket_reads_back_from_its_line() {
    for event in every_event() {
        if let GenerationEvent::Accepted { job, .. } = &event {
            let line = serde_json::to_value(&event).unwrap();
            let back: JobTicket = serde_json::from_value(line["job"].clone()).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(&back, job);
        }
    }
}

#[test]
fn the_error_object_reads_back() {
    for event in every_event() {
        if let GenerationEvent::Error { error, .. } = &event {
            let info = ErrorInfo::from(error);
            let line = serde_json::to_value(&event).unwrap();
            let back: ErrorInfo = serde_json::from_value(line.clone()).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(back, info);
        }
    }
}

#[test]
fn requests_round_trip_and_bad_fields_are_named() {
    let request = GenerateRequest::new("a fox")
        .model("flux-schnell")
        .n(4)
        .concurrency(2)
        .params(GenerationParams {
            seed: Some(7),
            width: Some(512),
            ..Default::default()
        });
    let wire = serde_json::to_value(&request).unwrap();
    assert_eq!(
        wire,
        json!({"model": "flux-schnell", "prompt": "a fox", "params": {"width": 512, "seed": 7}, "n": 4, "concurrency": 2})
    );
    let back: GenerateRequest = serde_json::from_value(wire).unwrap();
    assert_eq!(back, request);
    let minimal: GenerateRequest = serde_json::from_str(r#"{"prompt": "a fox"}"#).unwrap();
    assert_eq!(minimal, GenerateRequest::new("a fox"));
    let err = serde_json::from_str::<GenerateRequest>(r#"{"prompt": "a", "nn": 2}"#).unwrap_err();
    assert!(err.to_string().contains("nn"), "{err}");
}
