//! Video jobs (being written).

use std::sync::Arc;

use axum::Router;
use hf_media::MediaGenerator;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::{App, ServerConfig, ServerError};

pub(crate) struct VideoJobs {}

impl VideoJobs {
    pub async fn open(
        _config: &ServerConfig,
        _generator: MediaGenerator,
        _metrics: Metrics,
        _stop: CancellationToken,
    ) -> Result<VideoJobs, ServerError> {
        Ok(VideoJobs {})
    }

    pub fn start_workers(&self) {}

    pub async fn stop(&self) {}
}

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
}
