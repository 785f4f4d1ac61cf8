//! The pace of a batch, per provider: a token bucket for the rate a user sets (`--rate fal-ai=10/s`), an
//! adaptive limit of calls in flight (additive increase on success, multiplicative decrease on a 429),
//! pauses after a 429 (its `Retry-After`, else a backoff) and a stop after a 402 (out of credits). Pauses
//! are published to the batch state and read back from it, so every worker of the batch backs off
//! together. It is the [`ProviderGate`] of the batch's generator.
//!
//! A burst of calls in flight that all answer 429 is one event, not one per call: only a 429 to a call
//! admitted after the last cut halves the limit again and lengthens the backoff (as TCP cuts its window
//! once per loss event). The other 429s of the burst may still lengthen the pause (a later
//! `Retry-After`).

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hf_media::{CallOutcome, GatePass, Held, ProviderGate};
use tokio::sync::{Notify, mpsc};

use crate::BatchError;
use crate::state::{BatchState, ProviderPause};

/// The pause after a 429 that gave no `Retry-After`: doubled for each 429 in a row, up to [`MAX_PAUSE`].
pub const FIRST_PAUSE: Duration = Duration::from_secs(2);
/// The longest pause after a 429.
pub const MAX_PAUSE: Duration = Duration::from_secs(120);
/// The reason of a pause after a 429.
pub const RATE_LIMITED: &str = "rate_limited";
/// The reason of a pause after a 402.
pub const OUT_OF_CREDITS: &str = "out_of_credits";

/// A rate a user sets for a provider: `fal-ai=10/s`, `replicate=600/min`, `together=2/1s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRate {
    /// The provider's Hub name.
    pub provider: String,
    /// How many calls per `period`.
    pub calls: NonZeroU32,
    /// The period.
    pub period: Duration,
}

impl FromStr for ProviderRate {
    type Err = BatchError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            BatchError::Usage(format!(
                "--rate `{text}`: {why}; write it like `fal-ai=10/s` or `replicate=600/min`"
            ))
        };
        let (provider, rate) = text.split_once('=').ok_or_else(|| bad("no `=`"))?;
        let provider = provider.trim();
        if provider.is_empty()
            || !provider
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad("the part before `=` must be a provider name"));
        }
        let (calls, per) = rate.trim().split_once('/').ok_or_else(|| bad("no `/`"))?;
        let calls: u32 = calls
            .trim()
            .parse()
            .map_err(|_| bad("the number of calls is not a whole number"))?;
        let calls = NonZeroU32::new(calls).ok_or_else(|| bad("the number of calls must be at least 1"))?;
        let per = per.trim();
        let digits = per.chars().take_while(char::is_ascii_digit).count();
        let (count, unit) = per.split_at(digits);
        let count: u64 = if count.is_empty() {
            1
        } else {
            count.parse().map_err(|_| bad("bad period"))?
        };
        let unit_secs = match unit {
            "ms" => None,
            "s" | "sec" | "second" => Some(1),
            "m" | "min" | "minute" => Some(60),
            "h" | "hour" => Some(3600),
            _ => return Err(bad("the period must be `ms`, `s`, `min` or `h`")),
        };
        let period = match unit_secs {
            Some(secs) => Duration::from_secs(count.saturating_mul(secs)),
            None => Duration::from_millis(count),
        };
        if period.is_zero() {
            return Err(bad("the period must be longer than zero"));
        }
        Ok(ProviderRate {
            provider: provider.to_owned(),
            calls,
            period,
        })
    }
}

impl ProviderRate {
    fn quota(&self) -> Option<Quota> {
        Quota::with_period(self.period / self.calls.get()).map(|q| q.allow_burst(self.calls))
    }
}

/// What the pace tells the runner.
#[derive(Debug, Clone, PartialEq)]
pub enum PaceNotice {
    /// `provider` answered 429: it is paused until `until`, its limit in flight lowered to `limit`.
    RateLimited {
        /// The provider.
        provider: String,
        /// How long it is paused.
        pause: Duration,
        /// Its new limit of calls in flight.
        limit: usize,
    },
    /// `provider` answered 402: it is held back for the rest of the run, for every worker.
    OutOfCredits {
        /// The provider.
        provider: String,
    },
}

/// One provider's pace.
struct Lane {
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    /// The adaptive limit of calls in flight (a float so that it grows by 1 per "window" of successes).
    limit: f64,
    in_flight: usize,
    paused_until: Option<Instant>,
    /// 429 events in a row (bursts, see the module docs), for the backoff without `Retry-After`.
    strikes: u32,
    /// When the limit was last cut for a 429: a 429 to a call admitted before then is of the same burst.
    last_cut: Option<Instant>,
    out_of_credits: bool,
    changed: Arc<Notify>,
}

/// The pace of one batch run (see the module docs). Cheap to share: [`Pace::gate`] gives the generator's
/// gate.
pub struct Pace {
    ceiling: usize,
    rates: HashMap<String, ProviderRate>,
    lanes: Mutex<HashMap<String, Lane>>,
    state: Option<Arc<dyn BatchState>>,
    notices: Option<mpsc::UnboundedSender<PaceNotice>>,
    /// No call is admitted any more ([`Pace::close`]).
    closed: std::sync::atomic::AtomicBool,
    me: Weak<Pace>,
}

impl fmt::Debug for Pace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pace")
            .field("ceiling", &self.ceiling)
            .field("rates", &self.rates)
            .finish_non_exhaustive()
    }
}

fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

impl Pace {
    /// A pace with at most `ceiling` calls in flight per provider (the batch's concurrency), the user's
    /// `rates`, publishing its pauses to `state` (when given) and its notices to `notices`.
    pub fn new(
        ceiling: usize,
        rates: Vec<ProviderRate>,
        state: Option<Arc<dyn BatchState>>,
        notices: Option<mpsc::UnboundedSender<PaceNotice>>,
    ) -> Arc<Pace> {
        Arc::new_cyclic(|me| Pace {
            ceiling: ceiling.max(1),
            rates: rates.into_iter().map(|rate| (rate.provider.clone(), rate)).collect(),
            lanes: Mutex::new(HashMap::new()),
            state,
            notices,
            closed: std::sync::atomic::AtomicBool::new(false),
            me: me.clone(),
        })
    }

    /// Admits no call any more: every waiting and later call is held back. The runner closes the pace
    /// before it leaves its running items (a stop, the end of the grace): the slots their cancelled calls
    /// give back must not let a waiting generation submit a new, paid job that is abandoned at once.
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        for lane in self.lanes().values() {
            lane.changed.notify_waiters();
        }
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lane>> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with_lane<T>(&self, provider: &str, f: impl FnOnce(&mut Lane) -> T) -> T {
        let mut lanes = self.lanes();
        let lane = lanes.entry(provider.to_owned()).or_insert_with(|| Lane {
            limiter: self
                .rates
                .get(provider)
                .and_then(ProviderRate::quota)
                .map(|quota| Arc::new(RateLimiter::direct(quota))),
            limit: self.ceiling as f64,
            in_flight: 0,
            paused_until: None,
            strikes: 0,
            last_cut: None,
            out_of_credits: false,
            changed: Arc::new(Notify::new()),
        });
        f(lane)
    }

    /// The limit of calls in flight `provider` has now.
    pub fn limit(&self, provider: &str) -> usize {
        self.with_lane(provider, |lane| lane.limit.floor() as usize)
    }

    /// Whether `provider` is held back for credits.
    pub fn is_out_of_credits(&self, provider: &str) -> bool {
        self.with_lane(provider, |lane| lane.out_of_credits)
    }

    /// The providers held back for credits.
    pub fn out_of_credits(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .lanes()
            .iter()
            .filter(|(_, lane)| lane.out_of_credits)
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// Takes in the pauses other workers published (and this one, harmlessly): a pause later than the
    /// lane's own wins; an out-of-credits pause holds the provider back.
    pub fn apply(&self, pauses: &[ProviderPause]) {
        let now_ms = now_unix_ms();
        for pause in pauses {
            self.with_lane(&pause.provider, |lane| {
                if pause.reason == OUT_OF_CREDITS {
                    if !lane.out_of_credits {
                        lane.out_of_credits = true;
                        lane.changed.notify_waiters();
                    }
                    return;
                }
                let left = u64::try_from(pause.until_unix_ms.saturating_sub(now_ms)).unwrap_or(0);
                if left == 0 {
                    return;
                }
                let until = Instant::now() + Duration::from_millis(left);
                if lane.paused_until.is_none_or(|own| own < until) {
                    lane.paused_until = Some(until);
                }
                if let Some(hint) = pause.concurrency_hint {
                    lane.limit = lane.limit.min(f64::from(hint.max(1)));
                }
            });
        }
    }

    /// Reads the batch's pauses from the state every `every`, until the pace is dropped.
    pub fn follow_state(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(pace) = me.upgrade() else { return };
                let Some(state) = pace.state.clone() else { return };
                match state.provider_pauses().await {
                    Ok(pauses) => pace.apply(&pauses),
                    Err(error) => tracing::warn!(%error, "could not read the batch's provider pauses"),
                }
            }
        })
    }

    /// Waits until `provider` may be called: not paused, under its limit in flight, a token in its bucket.
    async fn wait_turn(&self, provider: &str) -> Result<(), Held> {
        let changed = self.with_lane(provider, |lane| lane.changed.clone());
        loop {
            // Registered before the lane is read: a slot given back between the check and the wait wakes it
            // (`notify_waiters` reaches every `Notified` made before it, polled or not). Made after the check,
            // a wake-up could be missed, and a waiter held by the limit in flight would sleep for an hour.
            let notified = changed.notified();
            tokio::pin!(notified);
            let wait = self.with_lane(provider, |lane| {
                if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(Held {
                        status: None,
                        reason: "the batch is stopping: no new call is made".to_owned(),
                    });
                }
                if lane.out_of_credits {
                    return Err(Held {
                        status: Some(402),
                        reason: format!(
                            "{provider} is out of credits (HTTP 402) and held back for the rest of this batch run; \
                             top up the account, then run the same command again"
                        ),
                    });
                }
                let now = Instant::now();
                if let Some(until) = lane.paused_until {
                    if until > now {
                        return Ok(Some(until));
                    }
                    lane.paused_until = None;
                }
                if lane.in_flight < (lane.limit.floor() as usize).max(1) {
                    lane.in_flight += 1;
                    return Ok(None);
                }
                Ok(Some(now + Duration::from_secs(3600)))
            })?;
            let Some(until) = wait else { return Ok(()) };
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(until)) => {}
            }
        }
    }

    /// Ends one call of `provider`, admitted at `admitted`.
    fn finish(&self, provider: &str, outcome: CallOutcome, admitted: Instant) {
        let mut publish = None;
        let mut notice = None;
        self.with_lane(provider, |lane| {
            lane.in_flight = lane.in_flight.saturating_sub(1);
            match outcome {
                CallOutcome::Succeeded => {
                    lane.strikes = 0;
                    // Additive increase: +1 per `limit` successes.
                    lane.limit = (lane.limit + 1.0 / lane.limit.max(1.0)).min(self.ceiling as f64);
                }
                CallOutcome::RateLimited { retry_after } => {
                    let now = Instant::now();
                    // A call sent before the last cut is of the burst that caused it: cut once per burst.
                    let new_event = lane.last_cut.is_none_or(|cut| admitted > cut);
                    if new_event {
                        lane.strikes = lane.strikes.saturating_add(1);
                        // Multiplicative decrease.
                        lane.limit = (lane.limit / 2.0).max(1.0);
                        lane.last_cut = Some(now);
                    }
                    let backoff = FIRST_PAUSE
                        .saturating_mul(1 << lane.strikes.saturating_sub(1).min(10))
                        .min(MAX_PAUSE);
                    let pause = retry_after.unwrap_or(backoff).min(MAX_PAUSE);
                    let until = now + pause;
                    let longer = lane.paused_until.is_none_or(|own| own < until);
                    if longer {
                        lane.paused_until = Some(until);
                    }
                    if !new_event && !longer {
                        lane.changed.notify_waiters();
                        return;
                    }
                    let limit = lane.limit.floor() as usize;
                    publish = Some(ProviderPause {
                        provider: provider.to_owned(),
                        until_unix_ms: now_unix_ms()
                            .saturating_add(i64::try_from(pause.as_millis()).unwrap_or(i64::MAX)),
                        reason: RATE_LIMITED.to_owned(),
                        concurrency_hint: u32::try_from(limit).ok(),
                    });
                    notice = Some(PaceNotice::RateLimited {
                        provider: provider.to_owned(),
                        pause,
                        limit,
                    });
                }
                // A second 402 (a call in flight at the first) says nothing new.
                CallOutcome::OutOfCredits if !lane.out_of_credits => {
                    lane.out_of_credits = true;
                    publish = Some(ProviderPause {
                        provider: provider.to_owned(),
                        until_unix_ms: i64::MAX,
                        reason: OUT_OF_CREDITS.to_owned(),
                        concurrency_hint: None,
                    });
                    notice = Some(PaceNotice::OutOfCredits {
                        provider: provider.to_owned(),
                    });
                }
                _ => {}
            }
            lane.changed.notify_waiters();
        });
        if let Some(notice) = notice
            && let Some(notices) = &self.notices
        {
            let _ = notices.send(notice);
        }
        if let (Some(pause), Some(state)) = (publish, self.state.clone()) {
            tokio::spawn(async move {
                if let Err(error) = state.pause_provider(&pause).await {
                    tracing::warn!(%error, provider = %pause.provider, "could not share a provider pause with the batch");
                }
            });
        }
    }
}

#[async_trait]
impl ProviderGate for Pace {
    async fn admit(&self, provider: &str) -> Result<GatePass, Held> {
        self.wait_turn(provider).await?;
        // From here on the call holds a slot; the pass gives it back whatever happens.
        let me = self.me.upgrade();
        let name = provider.to_owned();
        let admitted = Arc::new(Mutex::new(Instant::now()));
        let sent = admitted.clone();
        let pass = GatePass::new(move |outcome| {
            if let Some(pace) = me {
                let admitted = *sent.lock().unwrap_or_else(|p| p.into_inner());
                pace.finish(&name, outcome, admitted);
            }
        });
        // The token bucket, waited on outside the lock.
        let limiter = self.with_lane(provider, |lane| lane.limiter.clone());
        if let Some(limiter) = limiter {
            limiter.until_ready().await;
        }
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Held {
                status: None,
                reason: "the batch is stopping: no new call is made".to_owned(),
            });
        }
        // The call goes out now: a 429 to it is a new event if the limit was cut before this.
        *admitted.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(pass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "fal-ai";

    fn pace(ceiling: usize) -> (Arc<Pace>, mpsc::UnboundedReceiver<PaceNotice>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Pace::new(ceiling, Vec::new(), None, Some(tx)), rx)
    }

    fn notices(rx: &mut mpsc::UnboundedReceiver<PaceNotice>) -> Vec<PaceNotice> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    fn limited(retry_after: Option<Duration>) -> CallOutcome {
        CallOutcome::RateLimited { retry_after }
    }

    /// A 429 to a call admitted now (after every earlier cut): a new event.
    fn rate_limited(pace: &Pace, retry_after: Option<Duration>) {
        pace.finish(P, limited(retry_after), Instant::now());
    }

    #[tokio::test]
    async fn a_429_halves_the_limit_down_to_one() {
        let (pace, mut rx) = pace(8);
        assert_eq!(pace.limit(P), 8);
        for expected in [4, 2, 1, 1] {
            let pass = pace.admit(P).await.unwrap();
            pass.finish(limited(Some(Duration::from_millis(1))));
            assert_eq!(pace.limit(P), expected);
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        let limits: Vec<usize> = notices(&mut rx)
            .into_iter()
            .map(|n| match n {
                PaceNotice::RateLimited { limit, .. } => limit,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(limits, [4, 2, 1, 1]);
    }

    #[tokio::test]
    async fn successes_raise_the_limit_by_one_per_window_up_to_the_ceiling() {
        let (pace, _rx) = pace(4);
        for _ in 0..3 {
            rate_limited(&pace, Some(Duration::from_millis(1)));
        }
        assert_eq!(pace.limit(P), 1);
        tokio::time::sleep(Duration::from_millis(3)).await;
        let succeed = |times: usize| {
            for _ in 0..times {
                pace.finish(P, CallOutcome::Succeeded, Instant::now());
            }
            pace.limit(P)
        };
        // 1 → 2 after one success; 2 → 2.5 → 2.9 → 3.24: one more per `limit` successes.
        assert_eq!(succeed(1), 2);
        assert_eq!(succeed(2), 2);
        assert_eq!(succeed(1), 3);
        assert_eq!(succeed(100), 4, "never above the ceiling");
        // Failures and cancelled calls leave it as it is.
        pace.finish(P, CallOutcome::Failed { status: Some(500) }, Instant::now());
        pace.finish(P, CallOutcome::Cancelled, Instant::now());
        assert_eq!(pace.limit(P), 4);
    }

    #[tokio::test]
    async fn the_backoff_without_retry_after_doubles_per_429_in_a_row_and_a_success_resets_it() {
        let (pace, mut rx) = pace(16);
        let pauses = |rx: &mut mpsc::UnboundedReceiver<PaceNotice>| -> Vec<Duration> {
            notices(rx)
                .into_iter()
                .filter_map(|n| match n {
                    PaceNotice::RateLimited { pause, .. } => Some(pause),
                    PaceNotice::OutOfCredits { .. } => None,
                })
                .collect()
        };
        for _ in 0..3 {
            rate_limited(&pace, None);
        }
        let secs = |s: u64| Duration::from_secs(s);
        assert_eq!(pauses(&mut rx), [secs(2), secs(4), secs(8)]);
        for _ in 0..10 {
            rate_limited(&pace, None);
        }
        assert_eq!(pauses(&mut rx).last(), Some(&MAX_PAUSE), "capped");
        pace.finish(P, CallOutcome::Succeeded, Instant::now());
        rate_limited(&pace, None);
        assert_eq!(pauses(&mut rx), [FIRST_PAUSE]);
        // A Retry-After wins over the backoff, up to the longest pause.
        rate_limited(&pace, Some(Duration::from_millis(1_500)));
        rate_limited(&pace, Some(Duration::from_secs(3_600)));
        assert_eq!(pauses(&mut rx), [Duration::from_millis(1_500), MAX_PAUSE]);
    }

    #[tokio::test]
    async fn the_429s_of_one_burst_cut_the_limit_and_lengthen_the_backoff_once() {
        let (pace, mut rx) = pace(8);
        let mut passes = Vec::new();
        for _ in 0..6 {
            passes.push(pace.admit(P).await.unwrap());
        }
        // All six were sent before any answer: one event, however many 429s it brings.
        for pass in passes {
            pass.finish(limited(None));
        }
        assert_eq!(pace.limit(P), 4);
        for notice in notices(&mut rx) {
            assert_eq!(
                notice,
                PaceNotice::RateLimited {
                    provider: P.into(),
                    pause: FIRST_PAUSE,
                    limit: 4
                }
            );
        }
        // A call sent after the cut that still meets a 429 is a new event.
        rate_limited(&pace, None);
        assert_eq!(pace.limit(P), 2);
        assert!(matches!(
            notices(&mut rx).as_slice(),
            [PaceNotice::RateLimited { pause, limit: 2, .. }] if *pause == 2 * FIRST_PAUSE
        ));
    }

    #[tokio::test]
    async fn a_pause_holds_calls_for_its_retry_after() {
        let (pace, _rx) = pace(4);
        let pass = pace.admit(P).await.unwrap();
        pass.finish(limited(Some(Duration::from_millis(300))));
        let started = Instant::now();
        let pass = pace.admit(P).await.unwrap();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(280), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        drop(pass);
        // Other providers are not paused.
        let started = Instant::now();
        pace.admit("replicate").await.unwrap().finish(CallOutcome::Succeeded);
        assert!(started.elapsed() < Duration::from_millis(100));
    }

    #[tokio::test]
    async fn out_of_credits_holds_the_provider_back_with_a_402() {
        let (pace, mut rx) = pace(4);
        pace.admit(P).await.unwrap().finish(CallOutcome::OutOfCredits);
        let held = pace.admit(P).await.unwrap_err();
        assert_eq!(held.status, Some(402));
        assert!(held.reason.contains("fal-ai is out of credits"), "{}", held.reason);
        assert!(held.reason.contains("run the same command again"), "{}", held.reason);
        assert!(pace.is_out_of_credits(P));
        assert!(!pace.is_out_of_credits("replicate"));
        // A second 402 (a call in flight at the first) says nothing new.
        pace.finish(P, CallOutcome::OutOfCredits, Instant::now());
        assert_eq!(notices(&mut rx), [PaceNotice::OutOfCredits { provider: P.into() }]);
        pace.admit("replicate").await.unwrap().finish(CallOutcome::OutOfCredits);
        assert_eq!(pace.out_of_credits(), ["fal-ai", "replicate"]);
    }

    #[tokio::test]
    async fn pauses_from_other_workers_are_applied() {
        let (pace, _rx) = pace(8);
        let now = now_unix_ms();
        pace.apply(&[
            ProviderPause {
                provider: P.into(),
                until_unix_ms: now + 250,
                reason: RATE_LIMITED.into(),
                concurrency_hint: Some(2),
            },
            ProviderPause {
                provider: "replicate".into(),
                until_unix_ms: now - 10_000,
                reason: RATE_LIMITED.into(),
                concurrency_hint: Some(1),
            },
            ProviderPause {
                provider: "together".into(),
                until_unix_ms: i64::MAX,
                reason: OUT_OF_CREDITS.into(),
                concurrency_hint: None,
            },
        ]);
        assert_eq!(pace.limit(P), 2);
        assert_eq!(pace.limit("replicate"), 8, "an ended pause changes nothing");
        assert_eq!(pace.admit("together").await.unwrap_err().status, Some(402));
        let started = Instant::now();
        pace.admit(P).await.unwrap().finish(CallOutcome::Succeeded);
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn calls_in_flight_wait_for_a_slot_and_are_woken_when_one_is_given_back() {
        let (pace, _rx) = pace(2);
        let first = pace.admit(P).await.unwrap();
        let second = pace.admit(P).await.unwrap();
        let waiting = {
            let pace = pace.clone();
            tokio::spawn(async move { pace.admit(P).await.map(|pass| pass.finish(CallOutcome::Succeeded)) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a third call went past a limit of two");
        first.finish(CallOutcome::Succeeded);
        tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .expect("the waiting call was not woken")
            .unwrap()
            .unwrap();
        // A dropped pass gives its slot back too.
        drop(second);
        for _ in 0..10 {
            let (a, b) = (pace.admit(P).await.unwrap(), pace.admit(P).await.unwrap());
            drop((a, b));
        }
    }

    #[tokio::test]
    async fn a_closed_pace_admits_nothing_not_even_a_waiting_call_given_a_freed_slot() {
        let (pace, _rx) = pace(1);
        let running = pace.admit(P).await.unwrap();
        let waiting = {
            let pace = pace.clone();
            tokio::spawn(async move { pace.admit(P).await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        pace.close();
        // The running call is cancelled (the stop): its slot must not start the waiting one.
        drop(running);
        let held = tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .expect("the waiting call was not woken")
            .unwrap()
            .unwrap_err();
        assert_eq!(held.status, None);
        assert!(held.reason.contains("stopping"), "{}", held.reason);
        assert!(pace.admit("replicate").await.is_err());
    }

    #[tokio::test]
    async fn a_rate_spaces_the_calls_after_its_burst() {
        let rate: ProviderRate = "fal-ai=2/100ms".parse().unwrap();
        let pace = Pace::new(8, vec![rate], None, None);
        let started = Instant::now();
        for _ in 0..6 {
            pace.admit(P).await.unwrap().finish(CallOutcome::Succeeded);
        }
        // A burst of two, then one call per 50 ms.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(180), "{took:?}");
        assert!(took < Duration::from_secs(1), "{took:?}");
        let started = Instant::now();
        pace.admit("replicate").await.unwrap().finish(CallOutcome::Succeeded);
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "a rate of fal-ai slowed replicate"
        );
    }

    #[test]
    fn rates_parse() {
        let parse = |s: &str| s.parse::<ProviderRate>();
        let rate = |provider: &str, calls: u32, period: Duration| ProviderRate {
            provider: provider.into(),
            calls: NonZeroU32::new(calls).unwrap(),
            period,
        };
        assert_eq!(
            parse("fal-ai=10/s").unwrap(),
            rate("fal-ai", 10, Duration::from_secs(1))
        );
        assert_eq!(
            parse("replicate=600/min").unwrap(),
            rate("replicate", 600, Duration::from_secs(60))
        );
        assert_eq!(
            parse(" together = 2/1s ").unwrap(),
            rate("together", 2, Duration::from_secs(1))
        );
        assert_eq!(
            parse("zai_org=5/250ms").unwrap(),
            rate("zai_org", 5, Duration::from_millis(250))
        );
        assert_eq!(parse("x=1/2h").unwrap(), rate("x", 1, Duration::from_secs(7_200)));
        assert_eq!(parse("x=3/10minute").unwrap(), rate("x", 3, Duration::from_secs(600)));
        for (bad, why) in [
            ("fal-ai", "no `=`"),
            ("=10/s", "must be a provider name"),
            ("fal ai=10/s", "must be a provider name"),
            ("fal-ai=10", "no `/`"),
            ("fal-ai=ten/s", "not a whole number"),
            ("fal-ai=-1/s", "not a whole number"),
            ("fal-ai=0/s", "at least 1"),
            ("fal-ai=1/day", "`ms`, `s`, `min` or `h`"),
            ("fal-ai=1/0s", "longer than zero"),
        ] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.contains(why), "{bad}: {error}");
            assert!(error.contains(&format!("`{bad}`")), "{bad}: {error}");
            assert!(error.contains("fal-ai=10/s"), "{bad}: {error}");
        }
    }
}
