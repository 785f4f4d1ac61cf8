//! zai-org: images through Z.ai's asynchronous image API.
//!
//! 1. `POST {base}/api/paas/v4/async/images/generations` with the extra headers `Accept-Language: en-US,en`
//!    and `x-source-channel: hugging_face`, body `{"model": providerId, "prompt", …}`; `width` + `height`
//!    (both present) become `size: "WxH"`.
//! 2. The answer is `{"id", "task_status": "PROCESSING" | "SUCCESS" | "FAIL", …}`; a `SUCCESS` answer
//!    already carries `image_result[0].url`.
//! 3. Otherwise `GET {base}/api/paas/v4/async-result/{id}` (same extra headers) until `SUCCESS`
//!    (`image_result[0].url`) or `FAIL`.
//!
//! A resumed task ([`MediaProvider::resume`]) is polled at step 3, through the same code.

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::http::{self, Poll};
use crate::{
    AuthScheme, DirectApi, GenerationRequest, JobTicket, MediaOutput, MediaProvider, ProviderContext, ProviderError,
    ProviderInfo, ProviderStatus, Task, answer, provider_parameters, size_as_wxh,
};

/// The provider's Hub name.
pub const ZAI_ORG: &str = "zai-org";
/// Z.ai's own API, for calls with a `ZAI_API_KEY`.
pub const ZAI_API_URL: &str = "https://api.z.ai";
const TASKS: &[Task] = &[Task::TextToImage];
static INFO: ProviderInfo = ProviderInfo::routed_with_api(
    ZAI_ORG,
    TASKS,
    DirectApi::new(ZAI_API_URL, "ZAI_API_KEY", AuthScheme::Bearer),
);

/// The image submit route.
pub const IMAGE_ROUTE: &str = "/api/paas/v4/async/images/generations";
/// The extra headers sent on every call (submit and polls).
pub const EXTRA_HEADERS: [(&str, &str); 2] = [("accept-language", "en-US,en"), ("x-source-channel", "hugging_face")];

/// Z.ai (`zai-org`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ZaiOrg;

/// The request body.
pub fn payload(request: &GenerationRequest) -> Value {
    let mut body: Map<String, Value> = Map::new();
    body.insert("model".into(), Value::from(request.mapping.provider_id.clone()));
    body.insert("prompt".into(), Value::from(request.prompt.clone()));
    let mut params = provider_parameters(request);
    size_as_wxh(&mut params);
    body.extend(params);
    Value::Object(body)
}

/// The task id of a submit answer; it must be safe to put in a URL path.
pub fn parse_task_id(answer: &Value) -> Result<String, ProviderError> {
    match answer.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) => {
            Ok(id.to_owned())
        }
        Some(id) => Err(ProviderError::invalid_response(
            ZAI_ORG,
            format!(
                "the task id {:?} is not a plain id",
                id.chars().take(100).collect::<String>()
            ),
        )),
        None => Err(answer::missing(ZAI_ORG, answer, "task `id`")),
    }
}

/// The poll route of a task.
pub fn result_route(id: &str) -> String {
    format!("/api/paas/v4/async-result/{id}")
}

/// Reads a task (submit or result answer): done with a media URL, still running, or failed.
pub fn parse_task(answer: &Value) -> Result<Poll<MediaOutput>, ProviderError> {
    let id = answer.get("id").and_then(Value::as_str).unwrap_or("?");
    let Some(status) = answer.get("task_status").and_then(Value::as_str) else {
        return Err(answer::missing(ZAI_ORG, answer, "`task_status`"));
    };
    match status {
        "SUCCESS" => {
            let Some(url) = answer.pointer("/image_result/0/url").and_then(Value::as_str) else {
                return Err(ProviderError::invalid_response(
                    ZAI_ORG,
                    format!("task {id} succeeded without `image_result[0].url`"),
                ));
            };
            answer::media_at(ZAI_ORG, url, answer).map(Poll::Ready)
        }
        "FAIL" => Err(ProviderError::job_failed(
            ZAI_ORG,
            id,
            answer::failure_message(None, answer, "the task failed"),
        )),
        "PROCESSING" => Ok(Poll::Pending(ProviderStatus::in_progress(id))),
        // An unknown status is final: a job is never polled forever on a word nobody documented.
        other => Err(ProviderError::job_failed(
            ZAI_ORG,
            id,
            format!("the task reported an unknown status {other:?}"),
        )),
    }
}

/// A request with this context's authorization and zai's extra headers.
fn zai_request(ctx: &ProviderContext, method: reqwest::Method, url: url::Url) -> reqwest::RequestBuilder {
    EXTRA_HEADERS
        .iter()
        .fold(ctx.request(method, url), |builder, (name, value)| {
            builder.header(*name, *value)
        })
}

#[async_trait]
impl MediaProvider for ZaiOrg {
    fn info(&self) -> &ProviderInfo {
        &INFO
    }

    async fn generate(&self, ctx: &ProviderContext, request: GenerationRequest) -> Result<MediaOutput, ProviderError> {
        let url = ctx.url(IMAGE_ROUTE)?;
        let submit = zai_request(ctx, reqwest::Method::POST, url).json(&payload(&request));
        let answer = http::send_json(ctx, submit).await?;
        // A submit answer without a status is still polled when it names the task.
        let status = match answer::submitted(parse_task(&answer))? {
            Some(Poll::Ready(output)) => return Ok(output),
            Some(Poll::Pending(status)) => Some(status),
            None => None,
        };
        let id = parse_task_id(&answer)?;
        if let Some(status) = status {
            ctx.report(status);
        }
        wait(ctx, &JobTicket::new(ZAI_ORG, id)).await
    }

    /// Polls the task at `async-result/{id}` (with the extra headers), as [`MediaProvider::generate`] does
    /// after its submit.
    async fn resume(
        &self,
        ctx: &ProviderContext,
        _request: GenerationRequest,
        job: JobTicket,
    ) -> Result<MediaOutput, ProviderError> {
        job.path_id(self.name())?;
        wait(ctx, &job).await
    }
}

/// Follows an accepted task to its media: `GET async-result/{id}` until `SUCCESS` (or `FAIL`).
async fn wait(ctx: &ProviderContext, ticket: &JobTicket) -> Result<MediaOutput, ProviderError> {
    let id = ticket.job_id.as_str();
    let poll_url = ctx.url(&result_route(id))?;
    http::poll_job(
        ctx,
        ticket,
        &format!("waiting for zai-org task {id}"),
        || zai_request(ctx, reqwest::Method::GET, poll_url.clone()),
        parse_task,
    )
    .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{GenerationParams, MediaBody, ProviderMapping};

    fn request(params: GenerationParams) -> GenerationRequest {
        GenerationRequest {
            mapping: ProviderMapping::new(ZAI_ORG, "glm-image", Task::TextToImage, "zai-org/GLM-Image"),
            prompt: "a fox".into(),
            params,
            images: Vec::new(),
        }
    }

    #[test]
    fn width_and_height_become_size() {
        let params = GenerationParams {
            width: Some(1280),
            height: Some(1280),
            num_inference_steps: Some(30),
            ..Default::default()
        };
        assert_eq!(
            payload(&request(params)),
            json!({"model": "glm-image", "prompt": "a fox", "size": "1280x1280", "num_inference_steps": 30})
        );
        assert_eq!(result_route("t1"), "/api/paas/v4/async-result/t1");
    }

    #[test]
    fn success_pending_failed_and_malformed_tasks() {
        let done = parse_task(&json!({"id": "t1", "task_status": "SUCCESS",
            "image_result": [{"url": "https://cdn.z.ai/x.png"}]}));
        assert!(matches!(
            done,
            Ok(Poll::Ready(MediaOutput {
                body: MediaBody::Url(ref url),
                ..
            })) if url.as_str() == "https://cdn.z.ai/x.png"
        ));
        assert!(matches!(
            parse_task(&json!({"id": "t1", "task_status": "PROCESSING"})),
            Ok(Poll::Pending(ProviderStatus { ref state, ref job_id, .. }))
                if state == "in_progress" && job_id.as_deref() == Some("t1")
        ));
        assert!(matches!(
            parse_task(&json!({"id": "t1", "task_status": "FAIL"})),
            Err(ProviderError::JobFailed { ref job_id, .. }) if job_id == "t1"
        ));
        assert!(matches!(
            parse_task(&json!({"id": "t1", "task_status": "SUCCESS", "image_result": []})),
            Err(ProviderError::InvalidResponse { .. })
        ));
        assert!(matches!(
            parse_task(&json!({"error": {"message": "bad"}})),
            Err(ProviderError::InvalidResponse { ref reason, .. }) if reason.contains("bad")
        ));
        assert_eq!(parse_task_id(&json!({"id": "t-1_2"})).unwrap(), "t-1_2");
        assert!(parse_task_id(&json!({"id": "../x"})).is_err());
        assert!(parse_task_id(&json!({})).is_err());
    }
}
