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
