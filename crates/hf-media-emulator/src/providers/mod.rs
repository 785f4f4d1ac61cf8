//! One module per emulated provider, each speaking that provider's protocol under `/{provider}`.

// Handlers' helpers return the provider's ready error answer, as `support`'s do.
#![allow(clippy::result_large_err)]

mod fal_ai;
mod hf_inference;
mod novita;
mod nscale;
mod replicate;
mod together;
mod wavespeed;
mod zai_org;

use axum::Router;

use crate::support::Shared;

/// Every provider's routes with the prefix they are served under.
pub(crate) fn routes() -> Vec<(&'static str, Router<Shared>)> {
    vec![
        ("/fal-ai", fal_ai::routes()),
        ("/hf-inference", hf_inference::routes()),
        ("/novita", novita::routes()),
        ("/nscale", nscale::routes()),
        ("/replicate", replicate::routes()),
        ("/together", together::routes()),
        ("/wavespeed", wavespeed::routes()),
        ("/zai-org", zai_org::routes()),
    ]
}

/// What the providers' tests share: a served emulator and an HTTP client.
#[cfg(test)]
pub(crate) mod test_support {
    use serde_json::Value;

    use crate::{Emulator, RunningEmulator};

    /// An emulator served on a free local port, with the handle that scripts its behaviour.
    pub(crate) async fn serve_scripted() -> (Emulator, RunningEmulator) {
        let emulator = Emulator::new();
        let running = emulator.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        (emulator, running)
    }

    /// An emulator served on a free local port.
    pub(crate) async fn serve() -> RunningEmulator {
        serve_scripted().await.1
    }

    pub(crate) fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    /// Sends `request` until the status at JSON pointer `status` of the answer reads `done` (fewer than 5
    /// polls); returns the statuses seen and the last answer.
    pub(crate) async fn poll_until(
        request: impl Fn() -> reqwest::RequestBuilder,
        status: &str,
        done: &str,
    ) -> (Vec<String>, Value) {
        let mut statuses = Vec::new();
        loop {
            let body: Value = request().send().await.unwrap().json().await.unwrap();
            statuses.push(body.pointer(status).unwrap().as_str().unwrap().to_owned());
            if body.pointer(status).unwrap() == done {
                return (statuses, body);
            }
            assert!(statuses.len() < 5, "{statuses:?}");
        }
    }
}
