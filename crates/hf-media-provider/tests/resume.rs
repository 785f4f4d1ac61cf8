//! Resuming a job from its ticket (`MediaProvider::resume`): every provider that follows a job polls it and
//! fetches its media as `generate` does after its submit, never submits anything, reports the job accepted
//! with the same ticket, and refuses a ticket that is not its own (or whose paths leave its base) before
//! anything is sent. Every resumable provider against wiremock on the loopback.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hf_media_provider::providers::{
    FAL_AI, FalAi, HfInference, NOVITA, Novita, Nscale, OpenAiCompatible, REPLICATE, Replicate, TOGETHER, Together,
    WAVESPEED, WaveSpeed, ZAI_ORG, ZaiOrg,
};
use hf_media_provider::{
    AuthScheme, DynMediaProvider, GenerationParams, GenerationRequest, JobTicket, MediaBody, MediaOutput,
    MediaProvider, PollConfig, ProviderContext, ProviderError, ProviderMapping, ProviderNotice, RetryPolicy, Task,
};
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// One resumable provider's job: its ticket, where it is polled, what it answers, the media it ends with.
struct Case {
    provider: DynMediaProvider,
    name: &'static str,
    provider_id: &'static str,
    task: Task,
    /// The ticket `generate` reports for the job `submit` names.
    ticket: JobTicket,
    submit: Value,
    /// The path of the job's status requests (through the router, under `/{name}`).
    status_path: &'static str,
    /// A query parameter every status request carries (novita's task id, fal's queue selector).
    status_query: Option<(&'static str, &'static str)>,
    pending: Value,
    done: Value,
    /// fal's result request, once the job is done: its path and answer.
    result: Option<(&'static str, Value)>,
    media: &'static str,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            provider: Arc::new(FalAi),
            name: FAL_AI,
            provider_id: "fal-ai/flux/dev",
            task: Task::TextToImage,
            ticket: JobTicket::new(FAL_AI, "f1").with_data(json!({"response_path": "/fal-ai/flux/requests/f1"})),
            submit: json!({"request_id": "f1", "status": "IN_QUEUE", "queue_position": 3,
                           "response_url": "https://queue.fal.run/fal-ai/flux/requests/f1"}),
            status_path: "/fal-ai/fal-ai/flux/requests/f1/status",
            status_query: Some(("_subdomain", "queue")),
            pending: json!({"status": "IN_QUEUE", "queue_position": 1}),
            done: json!({"status": "COMPLETED"}),
            result: Some((
                "/fal-ai/fal-ai/flux/requests/f1",
                json!({"images": [{"url": "https://fal.media/f1.png", "content_type": "image/png"}], "seed": 4}),
            )),
            media: "https://fal.media/f1.png",
        },
        Case {
            provider: Arc::new(Replicate),
            name: REPLICATE,
            provider_id: "owner/name",
            task: Task::TextToImage,
            ticket: JobTicket::new(REPLICATE, "p1"),
            submit: json!({"id": "p1", "status": "starting", "output": null}),
            status_path: "/replicate/v1/predictions/p1",
            status_query: None,
            pending: json!({"id": "p1", "status": "processing", "output": null}),
            done: json!({"id": "p1", "status": "succeeded", "output": ["https://replicate.delivery/p1.png"]}),
            result: None,
            media: "https://replicate.delivery/p1.png",
        },
        Case {
            provider: Arc::new(Together),
            name: TOGETHER,
            provider_id: "Wan-AI/Wan2.2-T2V-A14B",
            task: Task::TextToVideo,
            ticket: JobTicket::new(TOGETHER, "v1"),
            submit: json!({"id": "v1", "status": "queued"}),
            status_path: "/together/v2/videos/v1",
            status_query: None,
            pending: json!({"id": "v1", "status": "in_progress"}),
            done: json!({"id": "v1", "status": "completed", "outputs": {"video_url": "https://t.ai/v1.mp4"}}),
            result: None,
            media: "https://t.ai/v1.mp4",
        },
        Case {
            provider: Arc::new(WaveSpeed),
            name: WAVESPEED,
            provider_id: "wavespeed-ai/flux-dev",
            task: Task::TextToImage,
            ticket: JobTicket::new(WAVESPEED, "w1").with_data(json!({"result_path": "/api/v3/predictions/w1/result"})),
            submit: json!({"code": 200, "data": {"id": "w1", "status": "created",
                           "urls": {"get": "https://api.wavespeed.ai/api/v3/predictions/w1/result"}}}),
            status_path: "/wavespeed/api/v3/predictions/w1/result",
            status_query: None,
            pending: json!({"code": 200, "data": {"id": "w1", "status": "processing"}}),
            done: json!({"code": 200, "data": {"id": "w1", "status": "completed", "outputs": ["https://d.ws.ai/w1.png"]}}),
            result: None,
            media: "https://d.ws.ai/w1.png",
        },
        Case {
            provider: Arc::new(ZaiOrg),
            name: ZAI_ORG,
            provider_id: "glm-image",
            task: Task::TextToImage,
            ticket: JobTicket::new(ZAI_ORG, "z1"),
            submit: json!({"id": "z1", "task_status": "PROCESSING"}),
            status_path: "/zai-org/api/paas/v4/async-result/z1",
            status_query: None,
            pending: json!({"id": "z1", "task_status": "PROCESSING"}),
            done: json!({"id": "z1", "task_status": "SUCCESS", "image_result": [{"url": "https://cdn.z.ai/z1.png"}]}),
            result: None,
            media: "https://cdn.z.ai/z1.png",
        },
        Case {
            provider: Arc::new(Novita),
            name: NOVITA,
            provider_id: "wan-t2v",
            task: Task::TextToVideo,
            ticket: JobTicket::new(NOVITA, "n1"),
            submit: json!({"task_id": "n1"}),
            status_path: "/novita/v3/async/task-result",
            status_query: Some(("task_id", "n1")),
            pending: json!({"task": {"task_id": "n1", "status": "TASK_STATUS_QUEUED"}}),
            done: json!({"task": {"task_id": "n1", "status": "TASK_STATUS_SUCCEED"},
                         "videos": [{"video_url": "https://faas.novita.ai/n1.mp4"}]}),
            result: None,
            media: "https://faas.novita.ai/n1.mp4",
        },
    ]
}

impl Case {
    fn request(&self) -> GenerationRequest {
        GenerationRequest {
            mapping: ProviderMapping::new(self.name, self.provider_id, self.task.clone(), "org/model"),
            prompt: "a fox".into(),
            params: GenerationParams::default(),
            images: Vec::new(),
        }
    }

    /// A status request of this job (with its query parameter, if any).
    fn status_mock(&self) -> wiremock::MockBuilder {
        let mock = Mock::given(method("GET")).and(path(self.status_path));
        match self.status_query {
            Some((name, value)) => mock.and(query_param(name, value)),
            None => mock,
        }
    }

    /// The job on `server`: pending once, then done (and fal's result); every POST (a submit) answers the
    /// submit answer and is expected `submits` times.
    async fn mount(&self, server: &MockServer, submits: u64) {
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(201).set_body_json(self.submit.clone()))
            .expect(submits)
            .named("submit")
            .mount(server)
            .await;
        self.status_mock()
            .respond_with(ResponseTemplate::new(200).set_body_json(self.pending.clone()))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(server)
            .await;
        self.status_mock()
            .respond_with(ResponseTemplate::new(200).set_body_json(self.done.clone()))
            .with_priority(2)
            .mount(server)
            .await;
        if let Some((result_path, answer)) = &self.result {
            let mut result = Mock::given(method("GET")).and(path(*result_path));
            if let Some((name, value)) = self.status_query {
                result = result.and(query_param(name, value));
            }
            result
                .respond_with(ResponseTemplate::new(200).set_body_json(answer.clone()))
                .mount(server)
                .await;
        }
    }
}

type Notices = Arc<Mutex<Vec<ProviderNotice>>>;

/// A fresh routed context on `server` (its own HTTP client, as another process would have), and what it
/// reported.
fn context(server: &MockServer, name: &str) -> (ProviderContext, Notices) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&notices);
    let ctx = ProviderContext::routed(
        reqwest::Client::new(),
        &Url::parse(&server.uri()).unwrap(),
        name,
        Some("hf_test".to_owned().into()),
    )
    .with_poll(PollConfig {
        interval: Duration::from_millis(5),
        deadline: Duration::from_secs(5),
    })
    .with_retry(RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(10),
        max_retry_after: Duration::from_secs(1),
    })
    .with_reporter(Arc::new(move |notice| seen.lock().unwrap().push(notice)));
    (ctx, notices)
}

fn accepted(notices: &Notices) -> Vec<JobTicket> {
    notices
        .lock()
        .unwrap()
        .iter()
        .filter_map(|n| match n {
            ProviderNotice::Accepted { job } => Some(job.clone()),
            _ => None,
        })
        .collect()
}

fn url_of(output: &MediaOutput) -> &str {
    match &output.body {
        MediaBody::Url(url) => url.as_str(),
        other => panic!("expected a URL, got {other:?}"),
    }
}

async fn posts(server: &MockServer) -> usize {
    let requests = server.received_requests().await.unwrap();
    requests.iter().filter(|r| r.method.as_str() == "POST").count()
}

#[tokio::test]
async fn a_resumed_job_is_polled_to_its_media_and_nothing_is_submitted() {
    for case in cases() {
        let server = MockServer::start().await;
        case.mount(&server, 0).await;
        let (ctx, notices) = context(&server, case.name);
        let output = case
            .provider
            .resume(&ctx, case.request(), case.ticket.clone())
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
        assert_eq!(url_of(&output), case.media, "{}", case.name);
        assert_eq!(
            accepted(&notices),
            std::slice::from_ref(&case.ticket),
            "{}: accepted again, same ticket",
            case.name
        );
        let pending = notices
            .lock()
            .unwrap()
            .iter()
            .filter(
                |n| matches!(n, ProviderNotice::Status(s) if s.job_id.as_deref() == Some(case.ticket.job_id.as_str())),
            )
            .count();
        assert_eq!(pending, 1, "{}: the pending state is reported once", case.name);
        let polls = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == case.status_path)
            .count();
        assert_eq!(polls, 2, "{}: pending, then done", case.name);
        assert_eq!(posts(&server).await, 0, "{}: nothing is submitted", case.name);
        server.verify().await;
    }
}

/// Both zai extra headers, compared whole (wiremock's `header` matcher splits values on commas).
fn zai_headers(request: &Request) -> bool {
    let value = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
    value("accept-language") == Some("en-US,en") && value("x-source-channel") == Some("hugging_face")
}

#[tokio::test]
async fn zai_org_resumes_with_its_extra_headers() {
    let case = cases().into_iter().find(|c| c.name == ZAI_ORG).unwrap();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(case.status_path))
        .and(zai_headers)
        .and(header("authorization", "Bearer hf_test"))
        .respond_with(ResponseTemplate::new(200).set_body_json(case.done.clone()))
        .expect(1)
        .mount(&server)
        .await;
    let (ctx, _) = context(&server, ZAI_ORG);
    let output = ZaiOrg.resume(&ctx, case.request(), case.ticket.clone()).await.unwrap();
    assert_eq!(url_of(&output), case.media);
}

#[tokio::test]
async fn a_direct_fal_resume_polls_without_the_routers_queue_query() {
    let case = cases().into_iter().find(|c| c.name == FAL_AI).unwrap();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/flux/requests/f1/status"))
        .and(query_param_is_missing("_subdomain"))
        .and(header("authorization", "Key fal_test"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETED"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/flux/requests/f1"))
        .and(query_param_is_missing("_subdomain"))
        .respond_with(ResponseTemplate::new(200).set_body_json(case.result.clone().unwrap().1))
        .expect(1)
        .mount(&server)
        .await;
    let ctx = ProviderContext::direct(
        reqwest::Client::new(),
        Url::parse(&server.uri()).unwrap(),
        FAL_AI,
        Some("fal_test".to_owned().into()),
        AuthScheme::Key,
    )
    .with_poll(PollConfig {
        interval: Duration::from_millis(5),
        deadline: Duration::from_secs(5),
    });
    let output = FalAi.resume(&ctx, case.request(), case.ticket.clone()).await.unwrap();
    assert_eq!(url_of(&output), case.media);
    assert_eq!(output.mime.as_deref(), Some("image/png"));
    assert_eq!(output.seed, Some(4));
}

#[tokio::test]
async fn resuming_a_job_that_is_gone_is_a_failed_job_not_an_unsupported_model() {
    for case in cases() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(201).set_body_json(case.submit.clone()))
            .expect(0)
            .mount(&server)
            .await;
        case.status_mock()
            .respond_with(ResponseTemplate::new(404).set_body_json(json!({"detail": "Request not found"})))
            .expect(1)
            .mount(&server)
            .await;
        let (ctx, notices) = context(&server, case.name);
        let err = case
            .provider
            .resume(&ctx, case.request(), case.ticket.clone())
            .await
            .unwrap_err();
        assert!(!err.is_model_not_supported(), "{}: {err:?}", case.name);
        assert!(
            matches!(err, ProviderError::JobFailed { ref provider, ref job_id, .. }
                if provider == case.name && job_id == &case.ticket.job_id),
            "{}: {err:?}",
            case.name
        );
        assert!(
            !notices
                .lock()
                .unwrap()
                .iter()
                .any(|n| matches!(n, ProviderNotice::Retry(_))),
            "{}: a gone job is not tried again",
            case.name
        );
        server.verify().await;
    }
}

/// Resumes `ticket` with `case`'s provider against `server`, which has no mock: the error, after checking
/// that nothing was ever sent there and nothing reported accepted.
async fn refused(server: &MockServer, case: &Case, ticket: JobTicket) -> ProviderError {
    let (ctx, notices) = context(server, case.name);
    let err = case
        .provider
        .resume(&ctx, case.request(), ticket.clone())
        .await
        .expect_err(&format!("{}: {ticket:?} is refused", case.name));
    assert!(
        server.received_requests().await.unwrap().is_empty(),
        "{}: nothing is sent for {ticket:?}",
        case.name
    );
    assert!(accepted(&notices).is_empty(), "{}: {ticket:?}", case.name);
    err
}

/// Drops `server` after giving the runtime a turn: a refused resume never waits on I/O, so the task's
/// cooperative budget runs out, and wiremock's drop (a blocking `verify`) would then wait forever on a
/// lock whose wake-up the blocked runtime can never deliver.
async fn close(server: MockServer) {
    tokio::task::yield_now().await;
    drop(server);
}

fn is_invalid_request(err: &ProviderError, provider: &str) -> bool {
    matches!(err, ProviderError::InvalidRequest { provider: p, .. } if p == provider)
}

#[tokio::test]
async fn a_ticket_of_another_provider_or_without_a_plain_id_is_refused_before_anything_is_sent() {
    let server = MockServer::start().await;
    for case in cases() {
        let mut other = case.ticket.clone();
        other.provider = if case.name == REPLICATE { FAL_AI } else { REPLICATE }.to_owned();
        let err = refused(&server, &case, other.clone()).await;
        assert!(is_invalid_request(&err, case.name), "{}: {err:?}", case.name);
        assert!(
            err.to_string().contains(&other.provider) && err.to_string().contains("cannot be resumed"),
            "{}: {err}",
            case.name
        );

        let mut empty = case.ticket.clone();
        empty.job_id = String::new();
        let err = refused(&server, &case, empty).await;
        assert!(is_invalid_request(&err, case.name), "{}: {err:?}", case.name);

        // The id of every provider but novita (percent-encoded into a query) goes into a URL path.
        if case.name != NOVITA {
            for bad in ["../../admin", "a/b", "a?b=c", "a b"] {
                let mut ticket = case.ticket.clone();
                ticket.job_id = bad.to_owned();
                let err = refused(&server, &case, ticket).await;
                assert!(is_invalid_request(&err, case.name), "{} {bad:?}: {err:?}", case.name);
            }
        }
    }
    close(server).await;
}

#[tokio::test]
async fn a_malicious_relative_path_is_refused_before_anything_is_sent() {
    let all = cases();
    let fal = all.iter().find(|c| c.name == FAL_AI).unwrap();
    let wavespeed = all.iter().find(|c| c.name == WAVESPEED).unwrap();
    let bad_paths = [
        json!("https://evil.example/steal"),
        json!("//evil.example/steal"),
        json!("fal-ai/flux/requests/f1"),
        json!("/fal-ai/../../admin"),
        json!("/fal-ai/%2e%2e/admin"),
        json!("/fal-ai/flux/requests/f1?x=1"),
        json!("/fal-ai/flux/requests/f1#x"),
        json!("/fal-ai\\flux"),
        json!("/fal-ai/http://evil.example"),
        json!(["/fal-ai/flux/requests/f1"]),
    ];
    let server = MockServer::start().await;
    for (case, key) in [(fal, "response_path"), (wavespeed, "result_path")] {
        for bad in &bad_paths {
            let ticket = JobTicket::new(case.name, case.ticket.job_id.clone()).with_data(json!({ key: bad }));
            let err = refused(&server, case, ticket).await;
            assert!(
                is_invalid_request(&err, case.name) && err.to_string().contains(&format!("data.{key}")),
                "{} {bad}: {err:?}",
                case.name
            );
        }
    }
    // fal cannot guess where a job's result is: a ticket without a response path is refused.
    let err = refused(&server, fal, JobTicket::new(FAL_AI, "f1")).await;
    assert!(
        is_invalid_request(&err, FAL_AI) && err.to_string().contains("has no `data.response_path`"),
        "{err:?}"
    );
    close(server).await;
}

#[tokio::test]
async fn a_wavespeed_ticket_without_a_result_path_is_polled_at_the_documented_route() {
    let case = cases().into_iter().find(|c| c.name == WAVESPEED).unwrap();
    let server = MockServer::start().await;
    case.mount(&server, 0).await;
    let (ctx, notices) = context(&server, WAVESPEED);
    let ticket = JobTicket::new(WAVESPEED, "w1");
    let output = WaveSpeed.resume(&ctx, case.request(), ticket.clone()).await.unwrap();
    assert_eq!(url_of(&output), case.media);
    assert_eq!(accepted(&notices), [ticket]);
}

#[tokio::test]
async fn providers_that_answer_at_once_have_no_job_to_resume() {
    let openai: DynMediaProvider = Arc::new(OpenAiCompatible::new(
        "my-images",
        Url::parse("http://127.0.0.1:9").unwrap(),
    ));
    let providers: Vec<(DynMediaProvider, &str, Task)> = vec![
        (Arc::new(HfInference), "hf-inference", Task::TextToImage),
        (Arc::new(Nscale), "nscale", Task::TextToImage),
        (openai, "my-images", Task::TextToImage),
        (Arc::new(Together), TOGETHER, Task::TextToImage),
        (Arc::new(Together), TOGETHER, Task::ImageToImage),
    ];
    let server = MockServer::start().await;
    for (provider, name, task) in providers {
        let (ctx, notices) = context(&server, name);
        let request = GenerationRequest {
            mapping: ProviderMapping::new(name, "org/model", task.clone(), "org/model"),
            prompt: "a fox".into(),
            params: GenerationParams::default(),
            images: Vec::new(),
        };
        let err = provider
            .resume(&ctx, request, JobTicket::new(name, "j1"))
            .await
            .unwrap_err();
        assert!(
            is_invalid_request(&err, name) && err.to_string().contains("cannot be resumed"),
            "{name} {task}: {err:?}"
        );
        assert!(server.received_requests().await.unwrap().is_empty(), "{name} {task}");
        assert!(accepted(&notices).is_empty(), "{name} {task}");
    }
    close(server).await;
}

/// The batch's way: `generate` until the job is accepted, then the process dies; the ticket is kept as
/// JSON; another process (a fresh client and context) resumes it and gets the job's media, and the job was
/// submitted once in all.
#[tokio::test]
async fn a_ticket_from_generate_kept_as_json_resumes_on_a_fresh_context() {
    for case in cases() {
        let server = MockServer::start().await;
        case.mount(&server, 1).await;

        let (tickets, mut accepted_jobs) = tokio::sync::mpsc::unbounded_channel();
        let ctx = context(&server, case.name).0.with_reporter(Arc::new(move |notice| {
            if let ProviderNotice::Accepted { job } = notice {
                let _ = tickets.send(job);
            }
        }));
        let request = case.request();
        let generate = case.provider.generate(&ctx, request.clone());
        // The first process dies as soon as the job is accepted: its future is dropped.
        let ticket = tokio::select! {
            ticket = accepted_jobs.recv() => ticket.unwrap(),
            output = generate => panic!("{}: generate ended before it was stopped: {output:?}", case.name),
        };
        assert_eq!(ticket, case.ticket, "{}: the ticket generate reports", case.name);
        let stored = serde_json::to_string(&ticket).unwrap();
        assert!(!stored.contains("hf_test"), "{}: no secret in {stored}", case.name);

        let kept: JobTicket = serde_json::from_str(&stored).unwrap();
        let (fresh, notices) = context(&server, case.name);
        let output = case
            .provider
            .resume(&fresh, request, kept)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
        assert_eq!(url_of(&output), case.media, "{}", case.name);
        assert_eq!(accepted(&notices), [ticket], "{}", case.name);
        assert_eq!(posts(&server).await, 1, "{}: submitted once in all", case.name);
        server.verify().await;
    }
}
