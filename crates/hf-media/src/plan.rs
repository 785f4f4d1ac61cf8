//! The plan of a request, made once before any generation starts: every check (prompt, parameters,
//! `n`, concurrency, model spec, named provider, task), one Hub call (retried, inside the deadline), the
//! candidates in order, each with its ready provider context, and each generation's seed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hf_media_mapping::{ImageInput, ModelMapping, ProviderMapping, Task};
use hf_media_prompt::{GenerationParams, chat_images, format_prompt};
use hf_media_provider::{DynMediaProvider, InputImage, ProviderContext, RetryStage};

use crate::emitter::Emitter;
use crate::generator::Inner;
use crate::input::{self, MediaInput};
use crate::mapping_source::HubFailure;
use crate::request::{MAX_GENERATIONS, ModelSpec};
use crate::selection::{Choice, Selection, TEXT_TASKS, no_provider_reason, select};
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
    /// How long making the plan took (the Hub call): part of every generation's deadline.
    pub planning: Duration,
    /// The input images, read once and shared by every generation and fallback.
    pub images: Vec<InputImage>,
}

impl Plan {
    /// The seed generation `task` sends, so that `n` generations make `n` different media and each can
    /// be made again: the request's seed plus `task`, or a random first seed.
    pub(crate) fn seed(&self, task: usize) -> u64 {
        self.first_seed.wrapping_add(u64::try_from(task).unwrap_or(u64::MAX))
    }

    /// The input images a candidate is sent: all of them when its task takes images, else none.
    pub(crate) fn images_for(&self, candidate: &Candidate) -> Vec<InputImage> {
        if candidate.mapping.task.takes_images() {
            self.images.clone()
        } else {
            Vec::new()
        }
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
    /// The input images: the request's, else the image parts of the chat (when the prompt is the chat's).
    inputs: Vec<MediaInput>,
    /// Whether `inputs` came from the chat (left out, with a warning, when no provider takes them).
    from_chat: bool,
    task: Option<Task>,
    /// What the checks left out, for the user to know.
    warnings: Vec<String>,
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
    let mut params = request.params;
    params.validate()?;
    // A seed given as an extra parameter (`--param seed=5`) is the request's seed: it would otherwise
    // override every generation's own seed.
    if let Some(extra) = params.extra.remove("seed") {
        params.seed = Some(extra.as_u64().ok_or_else(|| {
            Error::InvalidRequest(format!("the seed must be a whole number of 0 or more (got {extra})"))
        })?);
    }
    let spec = ModelSpec::parse(&request.model)?;
    let explicit_prompt = request.prompt.as_deref().is_some_and(|p| !p.trim().is_empty());
    let mut warnings = Vec::new();
    let chat = chat_images(&request.messages);
    let in_chat = chat.len();
    let (mut inputs, mut from_chat) = if !request.images.is_empty() || explicit_prompt {
        if in_chat > 0 {
            let winner = if request.images.is_empty() { "prompt" } else { "images" };
            warnings.push(format!(
                "the chat's {in_chat} image(s) are not used: the request's own {winner} win"
            ));
        }
        (request.images, false)
    } else {
        let chat: Vec<MediaInput> = chat.iter().map(|url| MediaInput::parse(url)).collect();
        // A chat's image is a URL (http or data), never a path on this machine.
        if let Some(path) = chat.iter().find(|input| matches!(input, MediaInput::Path(_))) {
            return Err(Error::InvalidRequest(format!(
                "the chat's image `{path}` is not an http(s) or data: URL"
            )));
        }
        let from_chat = !chat.is_empty();
        (chat, from_chat)
    };
    if let Some(task) = &request.task {
        if task.output().is_none() {
            return Err(Error::InvalidRequest(format!(
                "`{task}` is not a task that makes media: use text-to-image, text-to-video, image-to-image, \
                 image-to-video, image-text-to-image or image-text-to-video"
            )));
        }
        if !inputs.is_empty() && !task.takes_images() {
            if !from_chat {
                return Err(Error::InvalidRequest(format!(
                    "{task} takes no input image: drop the image, or ask for image-to-image or image-to-video"
                )));
            }
            warnings.push(format!(
                "the chat's {} image(s) are left out: {task} takes no input image",
                inputs.len()
            ));
            inputs.clear();
            from_chat = false;
        }
        if inputs.is_empty() && task.image_input() == ImageInput::Required {
            return Err(Error::InvalidRequest(format!(
                "{task} needs an input image: give one (an image file, an http(s) URL or a data: URL)"
            )));
        }
    }
    Ok(Checked {
        spec,
        prompt,
        params,
        total: request.n,
        concurrency: request.concurrency.unwrap_or(request.n).clamp(1, request.n),
        inputs,
        from_chat,
        task: request.task,
        warnings,
    })
}

/// The tasks a request may run, as alternatives tried in order: with images, an edit first and an
/// animation when the model serves only that; without, the text tasks (and the image-text tasks, whose
/// image is optional). A requested task narrows it to that task (and its image-text sibling).
fn alternatives(requested: Option<&Task>, with_images: bool) -> Vec<Vec<Task>> {
    match requested {
        Some(task) => {
            let sibling = match task {
                Task::ImageToImage | Task::TextToImage => Some(Task::ImageTextToImage),
                Task::ImageToVideo | Task::TextToVideo => Some(Task::ImageTextToVideo),
                _ => None,
            };
            vec![std::iter::once(task.clone()).chain(sibling).collect()]
        }
        None if with_images => vec![
            vec![Task::ImageToImage, Task::ImageTextToImage],
            vec![Task::ImageToVideo, Task::ImageTextToVideo],
        ],
        None => vec![TEXT_TASKS.to_vec()],
    }
}

/// The first alternative that has candidates; else the error that says why none has, naming every task
/// asked for.
fn choose(
    inner: &Inner,
    mapping: &ModelMapping,
    named: Option<&str>,
    alternatives: &[Vec<Task>],
) -> Result<Selection, Error> {
    let mut first_error = None;
    for wanted in alternatives {
        match select(mapping, named, &inner.registry, &inner.provider_order, wanted) {
            Ok(selection) => return Ok(selection),
            Err(error @ (Error::UnknownProvider { .. } | Error::ModelNotSupported { .. })) => return Err(error),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    let all: Vec<Task> = alternatives.iter().flatten().cloned().collect();
    Err(match first_error {
        // Several alternatives: one sentence about all of them.
        Some(Error::NoProvider { model, .. }) if alternatives.len() > 1 && named.is_none() => Error::NoProvider {
            model,
            reason: no_provider_reason(mapping, &all, &[], false),
        },
        Some(error) => error,
        None => Error::NoProvider {
            model: mapping.model_id.clone(),
            reason: no_provider_reason(mapping, &all, &[], false),
        },
    })
}

/// Makes the plan: the checks, the Hub call (unless a provider that needs none is named), the choice of
/// candidates. Warnings about left-out providers go to `emitter`.
pub(crate) async fn make(inner: &Inner, request: GenerateRequest, emitter: &Emitter) -> Result<Plan, Error> {
    let started = Instant::now();
    let checked = check(request)?;
    for message in &checked.warnings {
        emitter.warning(message);
    }
    let spec = &checked.spec;
    let named = match &spec.provider {
        Some(name) => Some(inner.registry.get(name).ok_or_else(|| Error::UnknownProvider {
            provider: name.clone(),
            known: inner.registry.names().map(str::to_owned).collect(),
        })?),
        None => None,
    };
    let mut with_images = !checked.inputs.is_empty();
    // The caller's own images are read before anything else is asked (a missing file is a usage error,
    // whatever the Hub says); a chat's are read only once a provider will take them.
    let policy = input::InputPolicy {
        http: &inner.access.http,
        limit: inner.max_input_bytes,
        request_timeout: inner.access.request_timeout,
        retry: inner.retry,
        allow_local: inner.allow_local_inputs,
        offline: inner.emulator.as_ref(),
    };
    let own_images = if with_images && !checked.from_chat {
        Some(input::load_all(&checked.inputs, false, &policy).await?)
    } else {
        None
    };
    let mapping = match named {
        // A provider the Hub does not list serves the model id as it is, for the first task asked for
        // that it serves: no Hub call.
        Some(provider) if !provider.info().needs_hub_mapping => {
            let asked = alternatives(checked.task.as_ref(), with_images);
            let task = asked
                .iter()
                .flatten()
                .find(|task| provider.info().serves(task))
                .or_else(|| provider.tasks().first())
                .cloned()
                .unwrap_or(Task::TextToImage);
            Arc::new(ModelMapping {
                model_id: spec.model.clone(),
                entries: vec![ProviderMapping::new(provider.name(), &spec.model, task, &spec.model)],
            })
        }
        _ => fetch_mapping(inner, &spec.model, emitter).await?,
    };
    let named = spec.provider.as_deref();
    let selection = match choose(
        inner,
        &mapping,
        named,
        &alternatives(checked.task.as_ref(), with_images),
    ) {
        // Chat apps send pictures along with the conversation: when nothing takes them, the text alone
        // makes the media.
        Err(Error::NoProvider { reason, .. }) if checked.from_chat && checked.task.is_none() => {
            emitter.warning(format!(
                "the chat's {} image(s) are left out: no provider takes an input image for `{}` ({reason})",
                checked.inputs.len(),
                spec.model
            ));
            with_images = false;
            choose(inner, &mapping, named, &alternatives(None, false))?
        }
        other => other?,
    };
    for message in &selection.warnings {
        emitter.warning(message);
    }
    let images = match own_images {
        Some(images) => images,
        None if with_images => input::load_all(&checked.inputs, true, &policy).await?,
        None => Vec::new(),
    };
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
        first_seed: checked.params.seed.unwrap_or_else(random_first_seed),
        params: checked.params,
        candidates,
        total: checked.total,
        concurrency: checked.concurrency,
        planning: started.elapsed(),
        images,
    })
}

/// A random first seed, low enough that every generation's seed (first + task) fits the signed 32-bit
/// seeds some providers take.
fn random_first_seed() -> u64 {
    let max = u64::try_from(i32::MAX).unwrap_or(u64::MAX) - u64::try_from(MAX_GENERATIONS).unwrap_or(0);
    fastrand::u64(0..=max)
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
