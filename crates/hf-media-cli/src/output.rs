//! How events are shown: one JSON object per line (`--json`) or one human line per event.

use hf_media::{Error, GenerationEvent, RetryStage};
use serde_json::{Value, json};

/// The JSON line of an event: the library's wire form of it.
pub fn event_json(event: &GenerationEvent) -> Value {
    serde_json::to_value(event)
        .unwrap_or_else(|e| json!({"event": "error", "kind": "internal", "message": e.to_string()}))
}

/// The human line of an event, or `None` for events shown only by the progress line.
pub fn event_line(event: &GenerationEvent, total: usize) -> Option<String> {
    let tag = |task: usize| {
        if total > 1 {
            format!("[{}/{total}] ", task + 1)
        } else {
            String::new()
        }
    };
    Some(match event {
        GenerationEvent::Attempt {
            task,
            provider,
            provider_id,
        } => format!("{}→ trying {provider} ({provider_id})", tag(*task)),
        GenerationEvent::Fallback {
            task,
            provider,
            status,
            message,
        } => match status {
            Some(status) => format!("{}↷ {provider} failed with HTTP {status}: {message}", tag(*task)),
            None => format!("{}↷ {provider} failed: {message}", tag(*task)),
        },
        GenerationEvent::Retry {
            task,
            provider,
            stage,
            attempt,
            delay,
            status,
            message,
            ..
        } => {
            let what = status.map_or_else(|| message.clone(), |s| format!("HTTP {s}: {message}"));
            let who = provider.as_deref().unwrap_or("the Hub");
            let step = match stage {
                RetryStage::Request | RetryStage::Mapping => String::new(),
                other => format!(" {other}"),
            };
            format!(
                "{}⟳ {who}{step} try {attempt} failed ({what}); again in {:.1}s",
                task.map(tag).unwrap_or_default(),
                delay.as_secs_f64()
            )
        }
        GenerationEvent::Warning { task, message } => {
            format!("{}! {message}", task.map(tag).unwrap_or_default())
        }
        GenerationEvent::ProviderStatus { task, provider, status } => match status.queue_position {
            Some(position) => format!("{}… {provider}: {} (position {position})", tag(*task), status.state),
            None => format!("{}… {provider}: {}", tag(*task), status.state),
        },
        GenerationEvent::Progress { .. } => return None,
        GenerationEvent::Media(media) => format!(
            "{}✓ saved {} ({}, {}) via {} in {:.1}s",
            tag(media.task),
            media.location,
            media.mime,
            human_bytes(media.bytes),
            media.provider,
            media.elapsed.as_secs_f64()
        ),
        GenerationEvent::Error { task, error } => {
            let hint = match error {
                Error::Timeout { .. } | Error::MappingTimeout { .. } => " (raise the deadline with --timeout)",
                _ => "",
            };
            format!("{}✗ {error}{hint}", task.map(tag).unwrap_or_default())
        }
        GenerationEvent::Done {
            succeeded,
            failed,
            elapsed,
        } => format!(
            "done: {succeeded} succeeded, {failed} failed in {:.1}s",
            elapsed.as_secs_f64()
        ),
        _ => return None,
    })
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn json_lines_follow_the_contract() {
        let fallback = GenerationEvent::Fallback {
            task: 0,
            provider: "fal-ai".into(),
            status: Some(402),
            message: "credits".into(),
        };
        assert_eq!(
            event_json(&fallback),
            json!({"event": "fallback", "task": 0, "provider": "fal-ai", "status": 402, "message": "credits"})
        );
        let done = GenerationEvent::Done {
            succeeded: 2,
            failed: 0,
            elapsed: Duration::from_millis(1500),
        };
        assert_eq!(
            event_json(&done),
            json!({"event": "done", "succeeded": 2, "failed": 0, "elapsed_ms": 1500})
        );
        let error = GenerationEvent::Error {
            task: Some(1),
            error: Error::ModelNotSupported {
                model: "a/b".into(),
                provider: "fal-ai".into(),
                status: Some(404),
                message: "no".into(),
            },
        };
        let line = event_json(&error);
        assert_eq!(line["kind"], "model_not_supported");
        assert_eq!(line["status"], 404);
    }

    #[test]
    fn human_lines_are_short_and_tagged_when_n_is_above_one() {
        let attempt = GenerationEvent::Attempt {
            task: 1,
            provider: "replicate".into(),
            provider_id: "owner/model".into(),
        };
        assert_eq!(
            event_line(&attempt, 2).unwrap(),
            "[2/2] → trying replicate (owner/model)"
        );
        assert_eq!(event_line(&attempt, 1).unwrap(), "→ trying replicate (owner/model)");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12), "12 B");
    }
}
