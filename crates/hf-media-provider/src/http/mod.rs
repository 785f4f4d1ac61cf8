//! What every provider shares, one concern a module, all re-exported here for custom providers:
//!
//! - sending and status → error: [`send`], [`send_to`] and the [`Target`] of a request, which decides
//!   what a 404 means where the request is sent ([`Target::Model`]: the model is not served,
//!   [`Target::Job`]: the job is gone, [`Target::Media`]: the answer named a missing media);
//!   [`error_message`] and [`json_error_text`] (where providers put their error text), [`retry_after`],
//!   [`describe`] (a reqwest error without its URL);
//! - bounded JSON reading: [`read_json`], [`send_json`], [`send_json_to`], [`post_json`] (at most
//!   [`MAX_JSON_BYTES`], large answers parsed off the async workers);
//! - polling: [`poll_until`], [`poll_job`] and [`Poll`] (status requests retried through the one retry
//!   mechanism, within the polling deadline), and [`fetch_job_result`] (a finished job's result request,
//!   retried the same way);
//! - download: [`download()`] (a plain GET without credentials, or a `data:` URL decoded in place) and
//!   [`body_stream`];
//! - sanitising what answers carry: [`media_url`], [`job_id`], [`decode_base64`], [`strip_media`].

mod download;
mod error_text;
mod json;
mod poll;
mod request;
mod sanitize;

pub use download::{body_stream, download};
pub use error_text::{error_message, json_error_text, retry_after};
pub use json::{MAX_JSON_BYTES, post_json, read_json, send_json, send_json_to};
pub use poll::{MAX_POLL_FAILURES, Poll, fetch_job_result, poll_job, poll_until};
pub use request::{Target, check_status, describe, http_error, send, send_to, send_unchecked};
pub(crate) use sanitize::is_plain_id;
pub use sanitize::{decode_base64, job_id, media_url, strip_media};
