//! What an HTTP 404 means is decided where each request is sent: on a submit route the model is not
//! served, on a job's own URL the job is gone, and passing failures of a job's status requests are ridden
//! out (and reported) without giving the job up. Every asynchronous provider against wiremock.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hf_media_provider::providers::{FalAi, HfInference, Novita, Nscale, Replicate, Together, WaveSpeed, ZaiOrg};
use hf_media_provider::{
    DynMediaProvider, GenerationParams, GenerationRequest, MediaBody, MediaProvider, PollConfig, ProviderContext,
    ProviderError, ProviderMapping, ProviderNotice, RetryPolicy, RetryStage, Task,
};
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// One asynchronous provider's job: how it is submitted, where it is polled, what it answers when done.
struct Job {
    provider: DynMediaProvider,
    name: &'static str,
    provider_id: &'static str,
    task: Task,
    submit: Value,
    /// The path of the job's status requests.
    status_path: &'static str,
    job_id: &'static str,
    done: Value,
}

fn jobs() -> Vec<Job> {
    vec![
        Job {
            provider: Arc::new(FalAi),
            name: "fal-ai",
            provider_id: "fal-ai/flux/dev",
            task: Task::TextToImage,
            submit: json!({"request_id": "f1", "status": "IN_QUEUE",
                           "response_url": "https://queue.fal.run/fal-ai/flux/requests/f1"}),
            status_path: "/fal-ai/fal-ai/flux/requests/f1/status",
            job_id: "f1",
            done: json!({"status": "COMPLETED"}),
        },
        Job {
            provider: Arc::new(Replicate),
            name: "replicate",
            provider_id: "owner/name",
            task: Task::TextToImage,
            submit: json!({"id": "p1", "status": "starting", "output": null}),
            status_path: "/replicate/v1/predictions/p1",
            job_id: "p1",
            done: json!({"id": "p1", "status": "succeeded", "output": ["https://replicate.delivery/p1.png"]}),
        },
        Job {
            provider: Arc::new(Together),
            name: "together",
            provider_id: "Wan-AI/Wan2.2-T2V-A14B",
            task: Task::TextToVideo,
            submit: json!({"id": "v1", "status": "queued"}),
            status_path: "/together/v2/videos/v1",
            job_id: "v1",
            done: json!({"id": "v1", "status": "completed", "outputs": {"video_url": "https://t.ai/v1.mp4"}}),
        },
        Job {
            provider: Arc::new(WaveSpeed),
            name: "wavespeed",
            provider_id: "wavespeed-ai/flux-dev",
            task: Task::TextToImage,
            submit: json!({"code": 200, "data": {"id": "w1", "status": "created",
                           "urls": {"get": "https://api.wavespeed.ai/api/v3/predictions/w1/result"}}}),
            status_path: "/wavespeed/api/v3/predictions/w1/result",
            job_id: "w1",
            done: json!({"code": 200, "data": {"id": "w1", "status": "completed", "outputs": ["https://d.ws.ai/w1"]}}),
        },
        Job {
            provider: Arc::new(ZaiOrg),
            name: "zai-org",
            provider_id: "glm-image",
            task: Task::TextToImage,
            submit: json!({"id": "z1", "task_status": "PROCESSING"}),
            status_path: "/zai-org/api/paas/v4/async-result/z1",
            job_id: "z1",
            done: json!({"id": "z1", "task_status": "SUCCESS", "image_result": [{"url": "https://cdn.z.ai/z1.png"}]}),
        },
        Job {
            provider: Arc::new(Novita),
            name: "novita",
            provider_id: "wan-t2v",
            task: Task::TextToVideo,
            submit: json!({"task_id": "n1"}),
            status_path: "/novita/v3/async/task-result",
            job_id: "n1",
            done: json!({"task": {"task_id": "n1", "status": "TASK_STATUS_SUCCEED"},
                         "videos": [{"video_url": "https://faas.novita.ai/n1.mp4"}]}),
        },
    ]
}

fn request(name: &str, provider_id: &str, task: Task) -> GenerationRequest {
    GenerationRequest {
        mapping: ProviderMapping::new(name, provider_id, task, "org/model"),
        prompt: "a fox".into(),
        params: GenerationParams::default(),
        images: Vec::new(),
    }
}

fn context(server: &MockServer, name: &str, retry: RetryPolicy) -> (ProviderContext, Arc<Mutex<Vec<ProviderNotice>>>) {
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
    .with_retry(retry)
    .with_reporter(Arc::new(move |notice| seen.lock().unwrap().push(notice)));
    (ctx, notices)
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(10),
        max_retry_after: Duration::from_secs(1),
    }
}

/// Answers every POST with the job's submit answer, and fal's result URL with an image.
async fn mount_submit(server: &MockServer, job: &Job) {
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(job.submit.clone()))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/fal-ai/flux/requests/f1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"images": [{"url": "https://fal.media/f1.png"}]})),
        )
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_404_on_a_jobs_own_url_is_a_failed_job_not_an_unsupported_model() {
    for job in jobs() {
        let server = MockServer::start().await;
        mount_submit(&server, &job).await;
        Mock::given(method("GET"))
            .and(path(job.status_path))
            .respond_with(ResponseTemplate::new(404).set_body_json(json!({"detail": "Request not found"})))
            .expect(1)
            .mount(&server)
            .await;
        let (ctx, notices) = context(&server, job.name, fast_retry());
        let err = job
            .provider
            .generate(&ctx, request(job.name, job.provider_id, job.task.clone()))
            .await
            .unwrap_err();
        assert!(!err.is_model_not_supported(), "{}: {err:?}", job.name);
        match &err {
            ProviderError::JobFailed {
                provider,
                job_id,
                message,
            } => {
                assert_eq!((provider.as_str(), job_id.as_str()), (job.name, job.job_id));
                if job.name == "replicate" {
                    assert!(message.contains("wait window"), "{message}");
                } else {
                    assert!(
                        message.contains("the job is gone") && message.contains("Request not found"),
                        "{message}"
                    );
                }
            }
            other => panic!("{}: unexpected {other:?}", job.name),
        }
        assert!(
            !notices
                .lock()
                .unwrap()
                .iter()
                .any(|n| matches!(n, ProviderNotice::Retry(_))),
            "{}: a gone job is not tried again",
            job.name
        );
    }
}

#[tokio::test]
async fn passing_failures_of_status_requests_are_ridden_out_and_reported() {
    for job in jobs() {
        let server = MockServer::start().await;
        mount_submit(&server, &job).await;
        Mock::given(method("GET"))
            .and(path(job.status_path))
            .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway"))
            .up_to_n_times(2)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(job.status_path))
            .respond_with(ResponseTemplate::new(200).set_body_json(job.done.clone()))
            .with_priority(2)
            .mount(&server)
            .await;
        // Retries off for the caller: a status request still gets its tries (the job is paid for).
        let (ctx, notices) = context(&server, job.name, fast_retry().with_max_attempts(1));
        let output = job
            .provider
            .generate(&ctx, request(job.name, job.provider_id, job.task.clone()))
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", job.name));
        assert!(matches!(output.body, MediaBody::Url(_)), "{}", job.name);
        let retries: Vec<_> = notices
            .lock()
            .unwrap()
            .iter()
            .filter_map(|n| match n {
                ProviderNotice::Retry(r) => Some((r.stage, r.attempt, r.status)),
                _ => None,
            })
            .collect();
        assert_eq!(
            retries,
            [(RetryStage::Poll, 1, Some(502)), (RetryStage::Poll, 2, Some(502))],
            "{}",
            job.name
        );
        let submits = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.method.as_str() == "POST")
            .count();
        assert_eq!(submits, 1, "{}: the job is never submitted twice", job.name);
    }
}

#[tokio::test]
async fn a_status_request_that_keeps_failing_gives_its_last_error_to_the_caller() {
    for job in jobs() {
        let server = MockServer::start().await;
        mount_submit(&server, &job).await;
        Mock::given(method("GET"))
            .and(path(job.status_path))
            .respond_with(ResponseTemplate::new(503).set_body_string("unavailable"))
            .mount(&server)
            .await;
        let (ctx, _) = context(&server, job.name, fast_retry());
        let err = job
            .provider
            .generate(&ctx, request(job.name, job.provider_id, job.task.clone()))
            .await
            .unwrap_err();
        assert!(err.is_retryable() && err.status() == Some(503), "{}: {err:?}", job.name);
        let polls = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == job.status_path)
            .count();
        assert_eq!(polls, 5, "{}: at least MAX_POLL_FAILURES tries", job.name);
    }
}

#[tokio::test]
async fn a_404_on_a_submit_route_is_an_unsupported_model() {
    let mut providers: Vec<(DynMediaProvider, &str, &str, Task)> = jobs()
        .into_iter()
        .map(|job| (job.provider, job.name, job.provider_id, job.task))
        .collect();
    providers.push((Arc::new(HfInference), "hf-inference", "org/model", Task::TextToImage));
    providers.push((Arc::new(Nscale), "nscale", "org/model", Task::TextToImage));
    providers.push((Arc::new(Together), "together", "org/model", Task::TextToImage));
    for (provider, name, provider_id, task) in providers {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(404).set_body_raw("404: Not Found", "text/plain"))
            .expect(1)
            .mount(&server)
            .await;
        let (ctx, _) = context(&server, name, fast_retry());
        let err = provider
            .generate(&ctx, request(name, provider_id, task))
            .await
            .unwrap_err();
        assert!(err.is_model_not_supported(), "{name}: {err:?}");
        assert_eq!(err.message(), "404: Not Found", "{name}");
    }
}

#[tokio::test]
async fn a_404_on_fals_result_url_is_a_failed_job() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"request_id": "f2",
            "response_url": "https://queue.fal.run/fal-ai/flux/requests/f2"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/fal-ai/flux/requests/f2/status"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETED"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/fal-ai/flux/requests/f2"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"detail": "expired"})))
        .expect(1)
        .mount(&server)
        .await;
    let (ctx, _) = context(&server, "fal-ai", fast_retry());
    let err = FalAi
        .generate(&ctx, request("fal-ai", "fal-ai/flux/dev", Task::TextToImage))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::job_failed("fal-ai", "f2", "the job is gone (HTTP 404: expired)")
    );
}

#[tokio::test]
async fn replicate_says_a_405_on_its_poll_route_is_an_unpollable_prediction() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "p9", "status": "processing"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(405))
        .expect(1)
        .mount(&server)
        .await;
    let (ctx, _) = context(&server, "replicate", fast_retry());
    let err = Replicate
        .generate(&ctx, request("replicate", "owner/name", Task::TextToImage))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::JobFailed { ref job_id, ref message, .. }
            if job_id == "p9" && message.contains("REPLICATE_API_TOKEN")),
        "{err:?}"
    );
}
