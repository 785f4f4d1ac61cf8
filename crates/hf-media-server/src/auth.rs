//! Who may call the API: `Authorization: Bearer KEY` (or `x-api-key: KEY`) checked in constant time
//! against the configured keys, and the per-client rate limit (per key, or per address on an open
//! server). CORS preflights never reach this: the CORS layer answers them first.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{App, ServerConfig, ServerError};

/// The address of the client of a connection (set by the listener on every request).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub SocketAddr);

/// Who a request comes from, for the rate limit: a key (by its index, never the key) or an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Caller {
    Key(usize),
    Address(IpAddr),
}

/// The configured keys (their SHA-256 only) and the rate limiter.
pub(crate) struct ApiKeys {
    digests: Vec<[u8; 32]>,
    limiter: Option<(Arc<DefaultKeyedRateLimiter<Caller>>, u32)>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("keys", &self.digests.len())
            .finish_non_exhaustive()
    }
}

fn digest(text: &[u8]) -> [u8; 32] {
    Sha256::digest(text).into()
}

impl ApiKeys {
    pub fn new(config: &ServerConfig) -> Self {
        let limiter = config.rate_per_minute.and_then(NonZeroU32::new).map(|per_minute| {
            (
                Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute))),
                per_minute.get(),
            )
        });
        ApiKeys {
            digests: config
                .api_keys
                .iter()
                .map(|key| digest(key.expose().as_bytes()))
                .collect(),
            limiter,
        }
    }

    /// Whether any key is configured.
    pub fn required(&self) -> bool {
        !self.digests.is_empty()
    }

    /// The index of the key `given` is, comparing with every key in constant time (the time does not
    /// tell which key, nor how much of one, matched).
    fn find(&self, given: &str) -> Option<usize> {
        let given = digest(given.as_bytes());
        let mut found = None;
        for (index, key) in self.digests.iter().enumerate() {
            if bool::from(key.ct_eq(&given)) && found.is_none() {
                found = Some(index);
            }
        }
        found
    }

    /// Checks the request's key; the caller it identifies.
    fn caller(&self, headers: &HeaderMap, address: Option<IpAddr>) -> Result<Caller, ServerError> {
        if !self.required() {
            return Ok(address.map_or(Caller::Key(0), Caller::Address));
        }
        let Some(given) = presented_key(headers) else {
            return Err(ServerError::Unauthorized(
                "no API key: send `Authorization: Bearer KEY` with one of this server's keys".into(),
            ));
        };
        self.find(given).map(Caller::Key).ok_or_else(|| {
            ServerError::Unauthorized(
                "the API key is not one of this server's keys: check the key given to the client".into(),
            )
        })
    }

    /// Counts the request against the caller's rate limit.
    fn count(&self, caller: &Caller) -> Result<(), ServerError> {
        let Some((limiter, per_minute)) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(caller).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ServerError::RateLimited {
                per_minute: *per_minute,
                retry_after: wait.max(Duration::from_secs(1)),
            }
        })
    }
}

/// The key a request presents: the Bearer credential, else `x-api-key`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        let (scheme, credential) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") && !credential.trim().is_empty() {
            return Some(credential.trim());
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|key| !key.is_empty())
}

/// The middleware on every `/v1` route (and the gallery's listing): the key, then the rate limit.
pub(crate) async fn require_key(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if request.method() == Method::OPTIONS {
        return next.run(request).await;
    }
    let address = request.extensions().get::<ClientAddr>().map(|a| a.0.ip());
    let checked = app
        .keys
        .caller(request.headers(), address)
        .and_then(|caller| app.keys.count(&caller));
    match checked {
        Ok(()) => next.run(request).await,
        Err(error) => {
            app.metrics.refused(error.code());
            error.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use hf_media::Secret;

    fn keys(keys: &[&str], rate: Option<u32>) -> ApiKeys {
        let mut config = ServerConfig::new("out");
        config.api_keys = keys.iter().map(|k| Secret::new(*k)).collect();
        config.rate_per_minute = rate;
        ApiKeys::new(&config)
    }

    fn bearer(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn keys_are_matched_whole() {
        let keys = keys(&["sk-one", "sk-two"], None);
        assert_eq!(keys.caller(&bearer("Bearer sk-two"), None).unwrap(), Caller::Key(1));
        assert_eq!(keys.caller(&bearer("bearer  sk-one "), None).unwrap(), Caller::Key(0));
        for wrong in ["Bearer sk-on", "Bearer sk-one2", "Basic sk-one", "Bearer ", "sk-one"] {
            let error = keys.caller(&bearer(wrong), None).unwrap_err();
            assert!(matches!(error, ServerError::Unauthorized(_)), "{wrong}");
            assert!(!error.to_string().contains("sk-"), "the keys are never shown");
        }
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("sk-one"));
        assert_eq!(keys.caller(&headers, None).unwrap(), Caller::Key(0));
        assert!(
            keys.caller(&HeaderMap::new(), None)
                .unwrap_err()
                .to_string()
                .contains("Bearer")
        );
    }

    #[test]
    fn an_open_server_limits_by_address() {
        let keys = keys(&[], Some(2));
        let address: IpAddr = "10.0.0.1".parse().unwrap();
        let caller = keys.caller(&HeaderMap::new(), Some(address)).unwrap();
        assert_eq!(caller, Caller::Address(address));
        keys.count(&caller).unwrap();
        keys.count(&caller).unwrap();
        let limited = keys.count(&caller).unwrap_err();
        assert!(
            matches!(limited, ServerError::RateLimited { per_minute: 2, .. }),
            "{limited:?}"
        );
        assert!(limited.retry_after().unwrap() >= Duration::from_secs(1));
        keys.count(&Caller::Address("10.0.0.2".parse().unwrap())).unwrap();
    }

    #[test]
    fn debug_shows_no_key() {
        let keys = keys(&["sk-secret"], None);
        assert!(!format!("{keys:?}").contains("sk-secret"));
    }
}
