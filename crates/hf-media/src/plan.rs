//! The plan of a request, made once before any generation starts: every check (prompt, parameters,
//! `n`, concurrency, model spec, named provider, task), one Hub call (retried, inside the deadline), the
//! candidates in order, each with its ready provider context, and each generation's seed.

use std::sync::Arc;

use hf_media_mapping::{ModelMapping, ProviderMapping, Task};
use hf_media_prompt::{GenerationParams, format_prompt};
use hf_media_provider::{DynMediaProvider, ProviderContext, RetryStage};

use crate::emitter::Emitter;
use crate::generator::Inner;
use crate::mapping_source::HubFailure;
use crate::request::{MAX_GENERATIONS, ModelSpec};
use crate::selection::{Choice, select};
use crate::{Error, GenerateRequest};

/// A provider to try, with its mapping entry and the context it is called with.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub mapping: ProviderMapping,
    pub provider: DynMediaProvider,
    pub context: ProviderContext,
}

/// Everything the `n` generations of one request share.
#[derive(Debug)]
pub(crate) struct Plan {
    pub model: String,
    pub prompt: String,
    pub params: GenerationParams,
    pub candidates: Vec<Candidate>,
    /// The first generation's seed; generation `i` uses `first_seed + i` (wrapping).
    pub first_seed: u64,
    /// How many generations.
    pub total: usize,
    /// How many run at once.
    pub concurrency: usize,
}

impl Plan {
    /// The seed generation `task` sends, so that `n` generations make `n` different media and each can
    /// be made again: the request's seed plus `task`, or a random first seed.
    pub(crate) fn seed(&self, task: usize) -> u64 {
        self.first_seed.wrapping_add(u64::try_from(task).unwrap_or(u64::MAX))
    }

    /// The parameters generation `task` sends: the request's, with its own seed.
    pub(crate) fn params_for(&self, task: usize) -> GenerationParams {
        GenerationParams {
            seed: Some(self.seed(task)),
            ..self.params.clone()
        }
    }
}

/// What a request says, checked without I/O.
pub(crate) struct Checked {
    spec: ModelSpec,
    prompt: String,
    params: GenerationParams,
    total: usize,
    concurrency: usize,
}

/// Every check that needs no I/O, in the order a user fixes them.
pub(crate) fn check(request: GenerateRequest) -> Result<Checked, Error> {
    if request.n == 0 || request.n > MAX_GENERATIONS {
        return Err(Error::InvalidRequest(format!(
            "n must be between 1 and {MAX_GENERATIONS} (got {})",
            request.n
        )));
    }
    if request.concurrency == Some(0) {
        return Err(Error::InvalidRequest(
            "concurrency must be at least 1 (or unset to run all n at once)".into(),
        ));
    }
    let prompt = format_prompt(request.prompt.as_deref(), &request.messages)?;
    request.params.validate()?;
    let spec = ModelSpec::parse(&request.model)?;
    Ok(Checked {
        spec,
        prompt,
        params: request.params,
        total: request.n,
        concurrency: request.concurrency.unwrap_or(request.n).clamp(1, request.n),
    })
}

/// Makes the plan: the checks, the Hub call (unless a provider that needs none is named), the choice of
/// candidates. Warnings about left-out providers go to `emitter`.
pub(crate) async fn make(inner: &Inner, request: GenerateRequest, emitter: &Emitter) -> Result<Plan, Error> {
    let checked = check(request)?;
    let spec = &checked.spec;
    let named = match &spec.provider {
        Some(name) => Some(inner.registry.get(name).ok_or_else(|| Error::UnknownProvider {
            provider: name.clone(),
            known: inner.registry.names().map(str::to_owned).collect(),
        })?),
        None => None,
    };
    let mapping = match named {
        // A provider the Hub does not list serves the model id as it is: no Hub call.
        Some(provider) if !provider.info().needs_hub_mapping => {
            let task = provider.tasks().first().cloned().unwrap_or(Task::TextToImage);
            Arc::new(ModelMapping {
                model_id: spec.model.clone(),
                entries: vec![ProviderMapping::new(provider.name(), &spec.model, task, &spec.model)],
            })
        }
        _ => fetch_mapping(inner, &spec.model, emitter).await?,
    };
    let selection = select(
        &mapping,
        spec.provider.as_deref(),
        &inner.registry,
        &inner.provider_order,
    )?;
    for message in &selection.warnings {
        emitter.warning(message);
    }
    let candidates = selection
        .candidates
        .into_iter()
        .map(|Choice { mapping, provider }| Candidate {
            context: inner.access.context_for(provider.as_ref()),
            mapping,
            provider,
        })
        .collect();
    Ok(Plan {
        model: checked.spec.model,
        prompt: checked.prompt,
        first_seed: checked.params.seed.unwrap_or_else(|| u64::from(fastrand::u32(..))),
        params: checked.params,
        candidates,
        total: checked.total,
        concurrency: checked.concurrency,
    })
}

/// The Hub's mapping, with passing failures (408, 429, 5xx, broken connections) tried again.
async fn fetch_mapping(inner: &Inner, model: &str, emitter: &Emitter) -> Result<Arc<ModelMapping>, Error> {
    inner
        .retry
        .run(
            RetryStage::Mapping,
            |_| async { inner.mapping.mapping(model).await.map_err(HubFailure) },
            |notice, _| emitter.retry(None, notice),
        )
        .await
        .map_err(|HubFailure(error)| Error::Mapping(error))
}
