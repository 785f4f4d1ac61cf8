//! `GET /v1/models` and `GET /v1/models/{id}`: the models this server can make media with. The list is
//! the Hub's text-to-image, text-to-video, image-to-image and image-to-video models with a live provider
//! (the emulator's catalogue under `--emulator`), asked once and kept for [`ServerConfig::models_ttl`]
//! (concurrent first requests wait for one Hub listing; failures are not kept); a model outside the list is looked up on its own (the
//! SDK percent-encodes the `/` of an HF id: `black-forest-labs%2FFLUX.1-schnell`).
//!
//! [`ServerConfig::models_ttl`]: crate::ServerConfig::models_ttl

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use hf_media::mapping::{ModelMapping, ModelQuery};
use hf_media::{ModelSpec, Task};
use serde_json::{Value, json};

use crate::{App, ServerError};

/// The tasks whose models are served.
const TASKS: [Task; 4] = [
    Task::TextToImage,
    Task::TextToVideo,
    Task::ImageToImage,
    Task::ImageToVideo,
];
/// The most models listed per task.
const PER_TASK: usize = 200;

/// The cached list.
pub(crate) struct ModelCatalogue {
    cache: moka::future::Cache<(), Arc<Vec<Value>>>,
    fetching: tokio::sync::Mutex<()>,
}

impl ModelCatalogue {
    pub fn new(ttl: Duration) -> Self {
        ModelCatalogue {
            cache: moka::future::Cache::builder()
                .max_capacity(1)
                .time_to_live(ttl.max(Duration::from_millis(1)))
                .build(),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    async fn list(&self, app: &App) -> Result<Arc<Vec<Value>>, ServerError> {
        if let Some(models) = self.cache.get(&()).await {
            return Ok(models);
        }
        // One Hub listing at a time: a burst of first requests waits for the first one's answer.
        let _guard = self.fetching.lock().await;
        if let Some(models) = self.cache.get(&()).await {
            return Ok(models);
        }
        let models = Arc::new(fetch(app).await?);
        self.cache.insert((), models.clone()).await;
        Ok(models)
    }
}

/// The Model object of `mapping`, or `None` when no live provider serves it for a media task.
fn model_object(mapping: &ModelMapping) -> Option<Value> {
    let mut tasks: Vec<&str> = Vec::new();
    let mut providers: Vec<&str> = Vec::new();
    for entry in mapping.live().filter(|entry| entry.task.output().is_some()) {
        if !tasks.contains(&entry.task.as_str()) {
            tasks.push(entry.task.as_str());
        }
        if !providers.contains(&entry.provider.as_str()) {
            providers.push(entry.provider.as_str());
        }
    }
    if tasks.is_empty() {
        return None;
    }
    let owner = mapping.model_id.split_once('/').map_or("huggingface", |(org, _)| org);
    Some(json!({
        "id": mapping.model_id,
        "object": "model",
        "created": 0,
        "owned_by": owner,
        "tasks": tasks,
        "providers": providers,
    }))
}

async fn fetch(app: &App) -> Result<Vec<Value>, ServerError> {
    let client = app.generator.mapping_client();
    let mut models: Vec<Value> = Vec::new();
    for task in TASKS {
        let found = client
            .list_models(&ModelQuery::new().task(task).limit(PER_TASK))
            .await
            .map_err(|e| ServerError::Generation(hf_media::Error::Mapping(e).scrubbed(app.generator.secrets())))?;
        for mapping in &found {
            if models.iter().any(|m| m["id"] == mapping.model_id.as_str()) {
                continue;
            }
            if let Some(model) = model_object(mapping) {
                models.push(model);
            }
        }
    }
    Ok(models)
}

/// `GET /v1/models`.
pub(crate) async fn list(State(app): State<Arc<App>>) -> Result<Response, ServerError> {
    let models = app.models.list(&app).await?;
    Ok(axum::Json(json!({ "object": "list", "data": &*models })).into_response())
}

/// `GET /v1/models/{*id}`.
pub(crate) async fn retrieve(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response, ServerError> {
    let id = id.trim_matches('/');
    let spec = ModelSpec::parse(id).map_err(|e| ServerError::NotFound {
        message: format!("no model `{id}`: {e}"),
        param: Some("model".into()),
    })?;
    if let Ok(models) = app.models.list(&app).await
        && let Some(model) = models.iter().find(|m| m["id"] == spec.model.as_str())
    {
        return Ok(axum::Json(model.clone()).into_response());
    }
    let mapping = app
        .generator
        .mapping_client()
        .mapping(&spec.model)
        .await
        .map_err(|e| ServerError::Generation(hf_media::Error::Mapping(e).scrubbed(app.generator.secrets())))?;
    match model_object(&mapping) {
        Some(model) => Ok(axum::Json(model).into_response()),
        None => Err(ServerError::NotFound {
            message: format!("`{}` has no live provider for images or videos", spec.model),
            param: Some("model".into()),
        }),
    }
}
