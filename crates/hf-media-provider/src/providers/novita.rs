//! novita: videos through Novita's asynchronous task API (the protocol of the js client).
//!
//! 1. `POST {base}/v3/async/{providerId}` with `{"prompt", …}`; `num_inference_steps` is renamed `steps`,
//!    every other parameter passes unchanged.
//! 2. The answer is `{"task_id": "…"}`.
//! 3. `GET {base}/v3/async/task-result?task_id={id}` (same headers) until `task.status` is
//!    `TASK_STATUS_SUCCEED` (the media URL is `videos[0].video_url`, or `video.video_url`) or
//!    `TASK_STATUS_FAILED` (`task.reason`). `TASK_STATUS_QUEUED` reads as `queued`, `TASK_STATUS_PROCESSING` as
//!    `in_progress`; any other status is still pending and reported under its own name, lower-cased and
//!    without the `TASK_STATUS_` prefix (`TASK_STATUS_PAUSED` → `paused`).
//!
//! A resumed task ([`MediaProvider::resume`]) is polled at step 3, through the same code.
//!
//! The python client's synchronous route (`/v3/hf/{providerId}`) is not used.

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::http::{self, Poll};
use crate::{
    AuthScheme, DirectApi, GenerationRequest, JobTicket, MediaOutput, MediaProvider, ProviderContext, ProviderError,
    ProviderInfo, ProviderStatus, Task, answer, provider_parameters,
};

/// The provider's Hub name.
pub const NOVITA: &str = "novita";
/// Novita's own API, for calls with a `NOVITA_API_KEY`.
pub const NOVITA_API_URL: &str = "https://api.novita.ai";
const TASKS: &[Task] = &[Task::TextToVideo];
static INFO: ProviderInfo = ProviderInfo::routed_with_api(
    NOVITA,
    TASKS,
    DirectApi::new(NOVITA_API_URL, "NOVITA_API_KEY", AuthScheme::Bearer),
);

/// The task-result route (the task id goes in the `task_id` query parameter).
pub const TASK_RESULT_ROUTE: &str = "/v3/async/task-result";
/// `task.status` of a finished task.
pub const STATUS_SUCCEED: &str = "TASK_STATUS_SUCCEED";
/// `task.status` of a failed task.
pub const STATUS_FAILED: &str = "TASK_STATUS_FAILED";
/// `task.status` of a task waiting in the queue.
pub const STATUS_QUEUED: &str = "TASK_STATUS_QUEUED";
/// `task.status` of a running task.
pub const STATUS_PROCESSING: &str = "TASK_STATUS_PROCESSING";

/// Novita AI (`novita`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Novita;

/// The submit route.
pub fn route(request: &GenerationRequest) -> String {
    format!("/v3/async/{}", request.mapping.provider_id)
}

/// The request body.
pub fn payload(request: &GenerationRequest) -> Value {
    let mut body: Map<String, Value> = Map::new();
    body.insert("prompt".into(), Value::from(request.prompt.clone()));
    let mut params = provider_parameters(request);
    if let Some(steps) = params.remove("num_inference_steps") {
        params.insert("steps".into(), steps);
    }
    body.extend(params);
    Value::Object(body)
}

/// The task id of a submit answer.
pub fn parse_task_id(answer: &Value) -> Result<String, ProviderError> {
    match answer.get("task_id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => Ok(id.to_owned()),
        _ => Err(answer::missing(NOVITA, answer, "`task_id`")),
    }
}

/// The poll route of a task, its id percent-encoded.
pub fn task_result_route(task_id: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("task_id", task_id)
        .finish();
    format!("{TASK_RESULT_ROUTE}?{query}")
}

/// Reads a task-result answer: done with the video URL, still pending, or failed. `task_id` names the job
/// when the answer does not (`task.task_id`).
pub fn parse_task_result(task_id: &str, answer: &Value) -> Result<Poll<MediaOutput>, ProviderError> {
    let task = answer.get("task");
    let id = task
        .and_then(|t| t.get("task_id"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(task_id);
    let Some(status) = task.and_then(|t| t.get("status")).and_then(Value::as_str) else {
        return Err(answer::missing(NOVITA, answer, "`task.status`"));
    };
    match status {
        STATUS_SUCCEED => {
            let url = answer
                .pointer("/videos/0/video_url")
                .or_else(|| answer.pointer("/video/video_url"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    ProviderError::invalid_response(
                        NOVITA,
                        format!("task {id} succeeded without `videos[0].video_url`"),
                    )
                })?;
            answer::media_at(NOVITA, url, answer).map(Poll::Ready)
        }
        STATUS_FAILED => {
            let message = answer::failure_message(task.and_then(|t| t.get("reason")), answer, "the task failed");
            Err(ProviderError::job_failed(NOVITA, id, message))
        }
        STATUS_QUEUED => Ok(Poll::Pending(ProviderStatus::queued(id))),
        STATUS_PROCESSING => Ok(Poll::Pending(ProviderStatus::in_progress(id))),
        // An unknown status is final: a job is never polled forever on a word nobody documented.
        other => Err(ProviderError::job_failed(
            NOVITA,
            id,
            format!("the task reported an unknown status {other:?}"),
        )),
    }
}

#[async_trait]
impl MediaProvider for Novita {
    fn info(&self) -> &ProviderInfo {
        &INFO
    }

    async fn generate(&self, ctx: &ProviderContext, request: GenerationRequest) -> Result<MediaOutput, ProviderError> {
        let answer = http::post_json(ctx, &route(&request), &payload(&request)).await?;
        let id = parse_task_id(&answer)?;
        // The submit answer has no status: the first poll reports the task's state.
        wait(ctx, &JobTicket::new(NOVITA, id)).await
    }

    /// Polls the task at `task-result?task_id={id}`, as [`MediaProvider::generate`] does after its submit.
    /// The id goes percent-encoded into the query, so any non-empty id of a novita ticket is taken.
    async fn resume(
        &self,
        ctx: &ProviderContext,
        _request: GenerationRequest,
        job: JobTicket,
    ) -> Result<MediaOutput, ProviderError> {
        job.id_for(self.name())?;
        wait(ctx, &job).await
    }
}

/// Follows an accepted task to its media: `GET task-result?task_id={id}` until it succeeded (or failed).
async fn wait(ctx: &ProviderContext, ticket: &JobTicket) -> Result<MediaOutput, ProviderError> {
    let id = ticket.job_id.as_str();
    let poll_url = ctx.url(&task_result_route(id))?;
    http::poll_job(
        ctx,
        ticket,
        &format!("waiting for novita task {id}"),
        || ctx.request(reqwest::Method::GET, poll_url.clone()),
        |answer| parse_task_result(id, answer),
    )
    .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{GenerationParams, MediaBody, ProviderMapping};

    fn request() -> GenerationRequest {
        GenerationRequest {
            mapping: ProviderMapping::new(NOVITA, "wan-t2v", Task::TextToVideo, "Wan-AI/Wan2.1-T2V-14B"),
            prompt: "a fox running".into(),
            params: GenerationParams {
                num_inference_steps: Some(20),
                seed: Some(7),
                ..Default::default()
            },
            images: Vec::new(),
        }
    }

    #[test]
    fn steps_are_renamed_and_the_rest_passes_unchanged() {
        let req = request();
        assert_eq!(route(&req), "/v3/async/wan-t2v");
        assert_eq!(
            payload(&req),
            json!({"prompt": "a fox running", "seed": 7, "aspect_ratio": "16:9", "resolution": "480p", "steps": 20})
        );
    }

    #[test]
    fn task_ids_are_read_and_encoded() {
        assert_eq!(parse_task_id(&json!({"task_id": "t-1"})).unwrap(), "t-1");
        assert!(matches!(
            parse_task_id(&json!({"message": "no credits"})),
            Err(ProviderError::InvalidResponse { ref reason, .. }) if reason.contains("no credits")
        ));
        assert!(parse_task_id(&json!({"task_id": ""})).is_err());
        assert_eq!(task_result_route("abc-1"), "/v3/async/task-result?task_id=abc-1");
        assert_eq!(
            task_result_route("a&b=c/../d"),
            "/v3/async/task-result?task_id=a%26b%3Dc%2F..%2Fd"
        );
    }

    #[test]
    fn succeeded_pending_failed_and_malformed_results() {
        let done = parse_task_result(
            "t1",
            &json!({"task": {"task_id": "t1", "status": "TASK_STATUS_SUCCEED"},
                    "videos": [{"video_url": "https://faas.novita.ai/t1.mp4", "video_type": "mp4"}]}),
        );
        assert!(matches!(
            done,
            Ok(Poll::Ready(MediaOutput { body: MediaBody::Url(ref url), .. }))
                if url.as_str() == "https://faas.novita.ai/t1.mp4"
        ));
        let fallback = parse_task_result(
            "t1",
            &json!({"task": {"status": "TASK_STATUS_SUCCEED"}, "video": {"video_url": "https://n.ai/v.mp4"}}),
        );
        assert!(matches!(fallback, Ok(Poll::Ready(_))));
        for status in ["TASK_STATUS_PAUSED", "WARMING", ""] {
            assert!(
                matches!(
                    parse_task_result("t1", &json!({"task": {"status": status}})),
                    Err(ProviderError::JobFailed { ref message, .. }) if message.contains("unknown status")
                ),
                "an unknown status is final: {status:?}"
            );
        }
        for (status, state) in [
            ("TASK_STATUS_QUEUED", "queued"),
            ("TASK_STATUS_PROCESSING", "in_progress"),
        ] {
            assert!(
                matches!(
                    parse_task_result("t1", &json!({"task": {"status": status, "progress_percent": 30}})),
                    Ok(Poll::Pending(ProviderStatus { state: ref s, ref job_id, .. }))
                        if s == state && job_id.as_deref() == Some("t1")
                ),
                "{status}"
            );
        }
        let err = parse_task_result(
            "t1",
            &json!({"task": {"task_id": "t1", "status": "TASK_STATUS_FAILED", "reason": "NSFW"}}),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "novita reported that job t1 failed: NSFW");
        assert!(matches!(
            parse_task_result("t1", &json!({"task": {"status": "TASK_STATUS_FAILED", "reason": ""}})),
            Err(ProviderError::JobFailed { ref message, .. }) if message == "the task failed"
        ));
        assert!(matches!(
            parse_task_result("t1", &json!({"task": {"status": "TASK_STATUS_SUCCEED"}, "videos": []})),
            Err(ProviderError::InvalidResponse { .. })
        ));
        assert!(matches!(
            parse_task_result("t1", &json!({"error": {"message": "task not found"}})),
            Err(ProviderError::InvalidResponse { ref reason, .. }) if reason.contains("task not found")
        ));
    }
}
