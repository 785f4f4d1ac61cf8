//! The pace of a batch, per provider: a token bucket for the rate a user sets (`--rate fal-ai=10/s`), an
//! adaptive limit of calls in flight (additive increase on success, multiplicative decrease on a 429),
//! pauses after a 429 (its `Retry-After`, else a backoff) and a stop after a 402 (out of credits). Pauses
//! are published to the batch state and read back from it, so every worker of the batch backs off
//! together. It is the [`ProviderGate`] of the batch's generator.

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
        let bad = |why: &str| BatchError::Usage(format!("--rate `{text}`: {why}; write it like `fal-ai=10/s` or `replicate=600/min`"));
        let (provider, rate) = text.split_once('=').ok_or_else(|| bad("no `=`"))?;
        let provider = provider.trim();
        if provider.is_empty() || !provider.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(bad("the part before `=` must be a provider name"));
        }
        let (calls, per) = rate.trim().split_once('/').ok_or_else(|| bad("no `/`"))?;
        let calls: u32 = calls.trim().parse().map_err(|_| bad("the number of calls is not a whole number"))?;
        let calls = NonZeroU32::new(calls).ok_or_else(|| bad("the number of calls must be at least 1"))?;
        let per = per.trim();
        let digits = per.chars().take_while(char::is_ascii_digit).count();
        let (count, unit) = per.split_at(digits);
        let count: u64 = if count.is_empty() { 1 } else { count.parse().map_err(|_| bad("bad period"))? };
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
    /// 429s in a row, for the backoff without `Retry-After`.
    strikes: u32,
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
            me: me.clone(),
        })
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
        loop {
            let (changed, wait) = self.with_lane(provider, |lane| {
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
                        return Ok((lane.changed.clone(), Some(until)));
                    }
                    lane.paused_until = None;
                }
                if lane.in_flight < (lane.limit.floor() as usize).max(1) {
                    lane.in_flight += 1;
                    return Ok((lane.changed.clone(), None));
                }
                Ok((lane.changed.clone(), Some(now + Duration::from_secs(3600))))
            })?;
            let Some(until) = wait else { return Ok(()) };
            let notified = changed.notified();
            tokio::pin!(notified);
            // Register before checking again would be tighter; a changed lane is also re-read after the
            // timeout, so a missed wake-up costs at most the pause.
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(until)) => {}
            }
        }
    }

    /// Ends one call of `provider`.
    fn finish(&self, provider: &str, outcome: CallOutcome) {
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
                    lane.strikes = lane.strikes.saturating_add(1);
                    // Multiplicative decrease.
                    lane.limit = (lane.limit / 2.0).max(1.0);
                    let backoff = FIRST_PAUSE
                        .saturating_mul(1 << lane.strikes.saturating_sub(1).min(10))
                        .min(MAX_PAUSE);
                    let pause = retry_after.unwrap_or(backoff).min(MAX_PAUSE);
                    let until = Instant::now() + pause;
                    if lane.paused_until.is_none_or(|own| own < until) {
                        lane.paused_until = Some(until);
                    }
                    let limit = lane.limit.floor() as usize;
                    publish = Some(ProviderPause {
                        provider: provider.to_owned(),
                        until_unix_ms: now_unix_ms().saturating_add(i64::try_from(pause.as_millis()).unwrap_or(i64::MAX)),
                        reason: RATE_LIMITED.to_owned(),
                        concurrency_hint: u32::try_from(limit).ok(),
                    });
                    notice = Some(PaceNotice::RateLimited {
                        provider: provider.to_owned(),
                        pause,
                        limit,
                    });
                }
                CallOutcome::OutOfCredits => {
                    if !lane.out_of_credits {
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
        let pass = GatePass::new(move |outcome| {
            if let Some(pace) = me {
                pace.finish(&name, outcome);
            }
        });
        // The token bucket, waited on outside the lock.
        let limiter = self.with_lane(provider, |lane| lane.limiter.clone());
        if let Some(limiter) = limiter {
            limiter.until_ready().await;
        }
        Ok(pass)
    }
}
