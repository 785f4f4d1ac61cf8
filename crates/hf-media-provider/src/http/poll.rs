//! The polling loop of asynchronous providers: one status request per interval until the job is done,
//! passing failures of a status request ridden out through the one retry mechanism, all within the
//! polling deadline.

use std::future::Future;

use serde_json::Value;
use tokio::time::Instant;

use super::json::send_json_to;
use super::request::Target;
use crate::{ProviderContext, ProviderError, ProviderStatus, RetryPolicy, RetryStage};

/// What one poll found.
#[derive(Debug)]
pub enum Poll<T> {
    /// Still pending, in this state.
    Pending(ProviderStatus),
    /// Done.
    Ready(T),
}

/// The fewest tries (the first included) a status request gets, whatever the context's retry policy says:
/// the job is already paid for.
pub const MAX_POLL_FAILURES: u32 = 5;

/// The retry policy of one status request: the context's, with at least [`MAX_POLL_FAILURES`] tries, and a
/// `Retry-After` honoured up to the polling deadline (a longer wait is cut at the deadline by
/// [`RetryPolicy::run_until`]): a server that asks a running job's status request to wait two minutes
/// must not make the caller drop the job, and submit and pay for another.
fn status_policy(ctx: &ProviderContext) -> RetryPolicy {
    let policy = ctx.retry();
    RetryPolicy {
        max_attempts: policy.max_attempts.max(MAX_POLL_FAILURES),
        max_retry_after: policy.max_retry_after.max(ctx.poll().deadline),
        ..policy
    }
}

/// Runs one request of a running job (`operation`) through the status policy at [`RetryStage::Poll`]
/// within `deadline`, each retry logged (scrubbed) and reported.
async fn ride_out<T, F, Fut>(
    ctx: &ProviderContext,
    policy: &RetryPolicy,
    deadline: Instant,
    operation: F,
) -> Result<T, ProviderError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    policy
        .run_until(
            RetryStage::Poll,
            deadline,
            operation,
            |notice, error: &ProviderError| {
                tracing::info!(
                    provider = ctx.provider(),
                    error = %ctx.secrets().scrub(&error.to_string()),
                    attempt = notice.attempt,
                    "a request of a running job failed; trying again"
                );
                ctx.report_retry(notice);
            },
        )
        .await
}

/// Polls until `check` is ready: sleeps [`PollConfig::interval`](crate::PollConfig::interval) before each
/// check, reports each new pending state, and ends with [`ProviderError::Timeout`] past
/// [`PollConfig::deadline`](crate::PollConfig::deadline). `check` is given the number of the status
/// request (from 1).
///
/// A job that is already running is never given up for a passing hiccup: a transient failure of a status
/// request (429, 5xx, a broken connection, an HTTP timeout) is tried again with
/// [`RetryPolicy::run_until`] at [`RetryStage::Poll`] (at least [`MAX_POLL_FAILURES`] tries, each retry
/// reported with [`ProviderContext::report_retry`]); when the tries are used up, the last error is
/// returned (retrying the whole job is the caller's choice, since it submits and pays for a second one).
/// No wait goes past the deadline. `check` ends the loop early by returning any other error (failed jobs,
/// unknown states); what a 404 means is decided by the status request's [`Target`](super::Target)
/// (`Target::Job`: a failed job).
pub async fn poll_until<T, F, Fut>(ctx: &ProviderContext, what: &str, mut check: F) -> Result<T, ProviderError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<Poll<T>, ProviderError>>,
{
    let config = ctx.poll();
    let started = Instant::now();
    let deadline = started + config.deadline;
    let policy = status_policy(ctx);
    let mut last: Option<ProviderStatus> = None;
    let mut requests = 0;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep(config.interval.min(deadline - now)).await;
        let tick = ride_out(ctx, &policy, deadline, |_| {
            requests += 1;
            check(requests)
        });
        match tokio::time::timeout_at(deadline, tick).await {
            Err(_) => break,
            Ok(Ok(Poll::Ready(value))) => return Ok(value),
            Ok(Ok(Poll::Pending(status))) => {
                if last.as_ref() != Some(&status) {
                    ctx.report(status.clone());
                    last = Some(status);
                }
            }
            // The retries ran into the deadline: the job took too long.
            Ok(Err(e)) if e.is_retryable() && Instant::now() >= deadline => break,
            Ok(Err(e)) => return Err(e),
        }
    }
    Err(ProviderError::timeout(ctx.provider(), what, started.elapsed()))
}

/// The common case of [`poll_until`]: each status request is `request()`, sent to the own URL of job
/// `job_id` ([`Target::Job`]: a 404 means the job is gone), and its JSON answer is read with `read`. The
/// job is first reported accepted ([`ProviderContext::report_accepted`]): from then on it is never
/// submitted again.
pub async fn poll_job<T>(
    ctx: &ProviderContext,
    job: &crate::JobTicket,
    what: &str,
    request: impl Fn() -> reqwest::RequestBuilder,
    read: impl Fn(&Value) -> Result<Poll<T>, ProviderError>,
) -> Result<T, ProviderError> {
    ctx.report_accepted(job);
    let job_id = job.job_id.as_str();
    let (request, read) = (&request, &read);
    poll_until(ctx, what, |_| async move {
        read(&send_json_to(ctx, Target::Job(job_id), request()).await?)
    })
    .await
}

/// Sends a request of job `job_id` that is not a status request but still the job's own (fal's result
/// GET once the job is done), to the job's URL ([`Target::Job`]: a 404 means the job is gone), and reads
/// its JSON answer. Its passing failures are ridden out as a status request's are (the same policy, at
/// [`RetryStage::Poll`], each retry reported with [`ProviderContext::report_retry`]), within the polling
/// deadline from now: the job is paid for, and failing here would make the caller submit another.
/// Retries that run into the deadline end with [`ProviderError::Timeout`] about `what`.
pub async fn fetch_job_result(
    ctx: &ProviderContext,
    job_id: &str,
    what: &str,
    request: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Value, ProviderError> {
    let started = Instant::now();
    let deadline = started + ctx.poll().deadline;
    let (request, policy) = (&request, status_policy(ctx));
    let fetch = ride_out(ctx, &policy, deadline, |_| async move {
        send_json_to(ctx, Target::Job(job_id), request()).await
    });
    match tokio::time::timeout_at(deadline, fetch).await {
        Ok(Err(e)) if e.is_retryable() && Instant::now() >= deadline => {
            Err(ProviderError::timeout(ctx.provider(), what, started.elapsed()))
        }
        Ok(answer) => answer,
        Err(_) => Err(ProviderError::timeout(ctx.provider(), what, started.elapsed())),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use url::Url;

    use super::*;
    use crate::{PollConfig, ProviderNotice, RetryNotice, Secrets};

    fn http(status: u16, retry_after: Option<Duration>) -> ProviderError {
        ProviderError::http("p", status, "echo hf_canary_secret", retry_after)
    }

    /// A context with fast polling and retries, and what it reported.
    fn context(deadline: Duration, retry: RetryPolicy) -> (ProviderContext, Arc<Mutex<Vec<ProviderNotice>>>) {
        let notices = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&notices);
        let router = Url::parse("http://127.0.0.1:9").unwrap();
        let ctx = ProviderContext::routed(reqwest::Client::new(), &router, "p", None)
            .with_poll(PollConfig {
                interval: Duration::from_millis(100),
                deadline,
            })
            .with_retry(retry)
            .with_secrets(Secrets::new([&"hf_canary_secret".to_owned().into()]))
            .with_reporter(Arc::new(move |notice| seen.lock().unwrap().push(notice)));
        (ctx, notices)
    }

    fn fast_retry(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
            max_retry_after: Duration::from_secs(60),
        }
    }

    fn retries(notices: &[ProviderNotice]) -> Vec<RetryNotice> {
        notices
            .iter()
            .filter_map(|n| match n {
                ProviderNotice::Retry(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    fn statuses(notices: &[ProviderNotice]) -> Vec<String> {
        notices
            .iter()
            .filter_map(|n| match n {
                ProviderNotice::Status(s) => Some(s.state.clone()),
                _ => None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn passing_failures_of_a_status_request_are_retried_and_reported() {
        let (ctx, notices) = context(Duration::from_secs(60), RetryPolicy::none());
        let mut answers = vec![
            Ok(Poll::Pending(ProviderStatus::queued("j"))),
            Err(http(500, None)),
            Err(http(429, Some(Duration::from_secs(1)))),
            Ok(Poll::Pending(ProviderStatus::queued("j"))),
            Ok(Poll::Pending(ProviderStatus::in_progress("j"))),
            Ok(Poll::Ready(7)),
        ]
        .into_iter();
        let mut seen = Vec::new();
        let value = poll_until(&ctx, "waiting", |n| {
            seen.push(n);
            let answer = answers.next().unwrap();
            async move { answer }
        })
        .await
        .unwrap();
        assert_eq!(value, 7);
        assert_eq!(seen, [1, 2, 3, 4, 5, 6], "every status request is numbered");
        let notices = notices.lock().unwrap();
        let retries = retries(&notices);
        let tries: Vec<_> = retries.iter().map(|r| (r.stage, r.attempt, r.status)).collect();
        assert_eq!(
            tries,
            [(RetryStage::Poll, 1, Some(500)), (RetryStage::Poll, 2, Some(429))],
            "at least MAX_POLL_FAILURES tries even with retries off"
        );
        assert_eq!(retries[1].delay, Duration::from_secs(1), "Retry-After is the wait");
        assert_eq!(statuses(&notices), ["queued", "in_progress"], "each new state once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_status_request_that_keeps_failing_ends_with_its_last_error() {
        let (ctx, notices) = context(Duration::from_secs(60), fast_retry(3));
        let mut calls = 0;
        let err = poll_until::<(), _, _>(&ctx, "waiting", |_| {
            calls += 1;
            async { Err(http(503, None)) }
        })
        .await
        .unwrap_err();
        assert_eq!(err.status(), Some(503));
        assert_eq!(calls, MAX_POLL_FAILURES, "the tries of one status request");
        assert_eq!(retries(&notices.lock().unwrap()).len(), 4);

        let (ctx, _) = context(Duration::from_secs(60), fast_retry(8));
        let mut calls = 0;
        let _ = poll_until::<(), _, _>(&ctx, "waiting", |_| {
            calls += 1;
            async { Err(http(502, None)) }
        })
        .await;
        assert_eq!(calls, 8, "a policy with more tries gets them all");
    }

    #[tokio::test(start_paused = true)]
    async fn final_errors_end_the_loop_at_once() {
        let (ctx, notices) = context(Duration::from_secs(60), fast_retry(3));
        let err = poll_until::<(), _, _>(&ctx, "waiting", |_| async {
            Err(ProviderError::job_failed("p", "j", "the job is gone"))
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind(), "job_failed");
        assert!(retries(&notices.lock().unwrap()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_bounds_pending_jobs_retry_waits_and_hanging_requests() {
        let (ctx, _) = context(Duration::from_secs(2), fast_retry(3));
        let started = Instant::now();
        let err = poll_until::<(), _, _>(&ctx, "waiting for job j", |_| async {
            Ok(Poll::Pending(ProviderStatus::queued("j")))
        })
        .await
        .unwrap_err();
        assert!(
            matches!(err, ProviderError::Timeout { ref what, .. } if what == "waiting for job j"),
            "{err:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(2));

        // A server asking to wait far past the deadline: the wait is cut at the deadline, then a timeout.
        let (ctx, notices) = context(Duration::from_secs(2), fast_retry(3));
        let started = Instant::now();
        let err = poll_until::<(), _, _>(&ctx, "waiting", |_| async {
            Err(http(429, Some(Duration::from_secs(30))))
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind(), "timeout", "{err:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(2), "no wait past the deadline");
        assert!(
            retries(&notices.lock().unwrap()).is_empty(),
            "a cut wait is not a retry"
        );

        let (ctx, _) = context(Duration::from_secs(2), fast_retry(3));
        let started = Instant::now();
        let err = poll_until::<(), _, _>(&ctx, "waiting", |_| std::future::pending())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "timeout");
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_retry_after_on_a_status_request_is_waited_for_within_the_deadline() {
        // The caller's policy honours at most 60 s of Retry-After; a running job's status request waits
        // longer, up to the polling deadline, rather than give the (paid) job up.
        let (ctx, notices) = context(Duration::from_secs(600), fast_retry(3));
        let mut answers = vec![Err(http(429, Some(Duration::from_secs(120)))), Ok(Poll::Ready(1))].into_iter();
        let started = Instant::now();
        let value = poll_until(&ctx, "waiting", |_| {
            let answer = answers.next().unwrap();
            async move { answer }
        })
        .await
        .unwrap();
        assert_eq!(value, 1);
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(120) + Duration::from_millis(100),
            "one interval, then the asked-for wait"
        );
        let retries = retries(&notices.lock().unwrap());
        assert_eq!(retries.len(), 1);
        assert_eq!(
            (retries[0].stage, retries[0].delay),
            (RetryStage::Poll, Duration::from_secs(120))
        );
    }

    // Real time: paused time would jump to the deadline while a request is on the wire.
    #[tokio::test]
    async fn job_results_ride_out_passing_failures_within_the_deadline() {
        let server = wiremock::MockServer::start().await;
        let (ctx, notices) = context(Duration::from_secs(60), fast_retry(1));
        let url = Url::parse(&format!("{}/result", server.uri())).unwrap();
        wiremock::Mock::given(wiremock::matchers::method("GET"))
            .respond_with(wiremock::ResponseTemplate::new(502).set_body_string("bad gateway"))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        wiremock::Mock::given(wiremock::matchers::method("GET"))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({"ok": 1})))
            .with_priority(2)
            .mount(&server)
            .await;
        let answer = fetch_job_result(&ctx, "j", "fetching the result of j", || {
            ctx.request(reqwest::Method::GET, url.clone())
        })
        .await
        .unwrap();
        assert_eq!(answer["ok"], 1);
        let tries: Vec<_> = retries(&notices.lock().unwrap())
            .iter()
            .map(|r| (r.stage, r.attempt, r.status))
            .collect();
        assert_eq!(tries, [(RetryStage::Poll, 1, Some(502))]);

        // A result that keeps failing past the deadline is a timeout; a gone job is a failed one at once.
        let (ctx, _) = context(Duration::from_millis(300), fast_retry(1));
        server.reset().await;
        wiremock::Mock::given(wiremock::matchers::method("GET"))
            .respond_with(wiremock::ResponseTemplate::new(503).insert_header("retry-after", "5"))
            .mount(&server)
            .await;
        let err = fetch_job_result(&ctx, "j", "fetching the result of j", || {
            ctx.request(reqwest::Method::GET, url.clone())
        })
        .await
        .unwrap_err();
        assert!(
            matches!(err, ProviderError::Timeout { ref what, .. } if what == "fetching the result of j"),
            "{err:?}"
        );
        server.reset().await;
        wiremock::Mock::given(wiremock::matchers::method("GET"))
            .respond_with(wiremock::ResponseTemplate::new(404))
            .mount(&server)
            .await;
        let err = fetch_job_result(&ctx, "j", "fetching", || ctx.request(reqwest::Method::GET, url.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "job_failed");
    }

    #[tokio::test(start_paused = true)]
    async fn retried_failures_are_logged_and_reported_without_secrets() {
        let (ctx, notices) = context(Duration::from_secs(60), fast_retry(3));
        let mut answers = vec![Err(http(500, None)), Ok(Poll::Ready(()))].into_iter();
        poll_until(&ctx, "waiting", |_| {
            let answer = answers.next().unwrap();
            async move { answer }
        })
        .await
        .unwrap();
        let notices = notices.lock().unwrap();
        let retries = retries(&notices);
        assert_eq!(retries.len(), 1);
        assert_eq!(retries[0].message, "echo [redacted]");
    }
}
