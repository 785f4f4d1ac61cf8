//! Which providers a generation tries, in which order. Pure: no I/O.

use hf_media_mapping::{ImageInput, MappingStatus, ModelMapping, ProviderMapping, Task};
use hf_media_provider::{DynMediaProvider, ProviderRegistry};

use crate::Error;

/// A provider to try, with its mapping entry.
#[derive(Debug, Clone)]
pub(crate) struct Choice {
    pub mapping: ProviderMapping,
    pub provider: DynMediaProvider,
}

/// The candidates and the warnings about entries that were left out.
#[derive(Debug)]
pub(crate) struct Selection {
    pub candidates: Vec<Choice>,
    pub warnings: Vec<String>,
}

/// What a request without input images may run: text-to-image, text-to-video, and the image-text tasks
/// (whose image is optional).
pub(crate) const TEXT_TASKS: &[Task] = &[
    Task::TextToImage,
    Task::TextToVideo,
    Task::ImageTextToImage,
    Task::ImageTextToVideo,
];

/// `a`, `a or b`, `a, b or c`.
pub(crate) fn describe_tasks(tasks: &[Task]) -> String {
    let names: Vec<&str> = tasks.iter().map(Task::as_str).collect();
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The Hub's entries for the model with their tasks: `fal-ai (text-to-image), replicate (image-to-image)`.
pub(crate) fn listed(mapping: &ModelMapping) -> String {
    if mapping.entries.is_empty() {
        return "the Hub lists no inference provider for this model".to_owned();
    }
    let entries: Vec<String> = mapping
        .entries
        .iter()
        .map(|e| format!("{} ({}, {})", e.provider, e.task, e.status))
        .collect();
    format!("the Hub lists {}", entries.join(", "))
}

/// Chooses the providers to try for one of the `wanted` tasks.
///
/// - A named provider is the only candidate, whatever its status (a warning says when it is not live).
/// - Otherwise the live entries whose task is wanted, in the Hub's order, moved by `preferred` (named
///   providers first, in that order); entries of other tasks, and providers the registry does not know or
///   that do not serve the entry's task, are left out with a warning.
pub(crate) fn select(
    mapping: &ModelMapping,
    named: Option<&str>,
    registry: &ProviderRegistry,
    preferred: &[String],
    wanted: &[Task],
) -> Result<Selection, Error> {
    let mut warnings = Vec::new();
    if let Some(name) = named {
        let provider = registry.get(name).ok_or_else(|| Error::UnknownProvider {
            provider: name.to_owned(),
            known: registry.names().map(str::to_owned).collect(),
        })?;
        // The provider's entry for a wanted task, else its first (a list-form mapping may hold several).
        let entry = mapping
            .entries
            .iter()
            .find(|e| e.provider == name && wanted.contains(&e.task))
            .or_else(|| mapping.get(name));
        let Some(entry) = entry else {
            let served: Vec<&str> = mapping.entries.iter().map(|e| e.provider.as_str()).collect();
            return Err(Error::ModelNotSupported {
                model: mapping.model_id.clone(),
                provider: name.to_owned(),
                status: None,
                message: if served.is_empty() {
                    "the Hub lists no inference provider for this model".to_owned()
                } else {
                    format!("the Hub lists it only with {}", served.join(", "))
                },
            });
        };
        if !wanted.contains(&entry.task) || !provider.info().serves(&entry.task) {
            let supports = describe_tasks(provider.tasks());
            return Err(Error::NoProvider {
                model: mapping.model_id.clone(),
                reason: if provider.info().serves(&entry.task) {
                    if wanted.iter().all(Task::takes_images) && !entry.task.takes_images() {
                        format!(
                            "{name} takes no input image for it: the Hub lists it with {name} for {} only \
                             (hf-media's {name} supports {supports})",
                            entry.task
                        )
                    } else {
                        format!("{name} serves it for {}, not {}", entry.task, describe_tasks(wanted))
                    }
                } else {
                    format!(
                        "{name} serves it for {}, which hf-media cannot make through {name} (it supports {supports})",
                        entry.task
                    )
                },
            });
        }
        if entry.status != MappingStatus::Live {
            warnings.push(status_warning(entry));
        }
        return Ok(Selection {
            candidates: vec![Choice {
                mapping: entry.clone(),
                provider: provider.clone(),
            }],
            warnings,
        });
    }

    let mut candidates = Vec::new();
    // Why entries that could serve were left out (not live, not registered, not served in hf-media).
    let mut skipped = Vec::new();
    let mut not_live = false;
    for entry in &mapping.entries {
        let name = entry.provider.as_str();
        if entry.status != MappingStatus::Live {
            skipped.push(format!("{name} is {}", entry.status));
            not_live = true;
            continue;
        }
        if !wanted.contains(&entry.task) {
            warnings.push(format!(
                "skipping {name}: it serves it for {}, not {}",
                entry.task,
                describe_tasks(wanted)
            ));
            continue;
        }
        let Some(provider) = registry.get(name) else {
            warnings.push(format!("skipping {name}: it is not registered in hf-media"));
            skipped.push(format!("{name} is not a registered provider"));
            continue;
        };
        if !provider.info().serves(&entry.task) {
            let why = format!("{name} does not do {} in hf-media", entry.task);
            warnings.push(format!("skipping {why}"));
            skipped.push(why);
            continue;
        }
        candidates.push(Choice {
            mapping: entry.clone(),
            provider: provider.clone(),
        });
    }
    if candidates.is_empty() {
        return Err(Error::NoProvider {
            model: mapping.model_id.clone(),
            reason: no_provider_reason(mapping, wanted, &skipped, not_live),
        });
    }
    candidates.sort_by_key(|c| {
        preferred
            .iter()
            .position(|p| *p == c.mapping.provider)
            .unwrap_or(preferred.len())
    });
    Ok(Selection { candidates, warnings })
}

/// Why nothing serves `wanted`: what the Hub lists, why usable-looking entries were left out, and what to
/// do.
pub(crate) fn no_provider_reason(
    mapping: &ModelMapping,
    wanted: &[Task],
    skipped: &[String],
    not_live: bool,
) -> String {
    if mapping.entries.is_empty() {
        return "the Hub lists no inference provider for this model".to_owned();
    }
    let mut reason = format!(
        "no provider serves {} for it; {}",
        describe_tasks(wanted),
        listed(mapping)
    );
    if !skipped.is_empty() {
        reason.push_str(&format!(" ({})", skipped.join("; ")));
    }
    if not_live {
        reason.push_str("; name a provider with `model:provider` to use a non-live one");
    }
    let asked_for_images = wanted.iter().any(Task::takes_images);
    if !asked_for_images
        && mapping
            .entries
            .iter()
            .any(|e| e.task.image_input() == ImageInput::Required)
    {
        reason.push_str("; it edits or animates images: give it an input image");
    }
    reason
}

fn status_warning(entry: &ProviderMapping) -> String {
    match entry.status {
        MappingStatus::Staging => format!(
            "{} serves this model in staging: meant for test purposes only",
            entry.provider
        ),
        MappingStatus::Error => format!(
            "the latest automated health check of {} for this model did not complete successfully",
            entry.provider
        ),
        _ => format!("{} lists this model with status `{}`", entry.provider, entry.status),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn mapping() -> ModelMapping {
        let field = json!({
            "lumalabs": {"status": "live", "providerId": "n", "task": "text-to-video"},
            "replicate": {"status": "live", "providerId": "r", "task": "text-to-image"},
            "together": {"status": "staging", "providerId": "t", "task": "text-to-image"},
            "nebius": {"status": "live", "providerId": "x", "task": "text-to-image"},
            "fal-ai": {"status": "live", "providerId": "f", "task": "text-to-image"},
            "hf-inference": {"status": "live", "providerId": "h", "task": "conversational"}
        });
        ModelMapping::from_hub_field("org/model", Some(&field)).unwrap()
    }

    fn names(selection: &Selection) -> Vec<&str> {
        selection
            .candidates
            .iter()
            .map(|c| c.mapping.provider.as_str())
            .collect()
    }

    #[test]
    fn live_entries_in_hub_order_with_warnings_for_the_rest() {
        let s = select(&mapping(), None, &ProviderRegistry::with_defaults(), &[], TEXT_TASKS).unwrap();
        assert_eq!(names(&s), ["replicate", "fal-ai"]);
        let warnings = s.warnings.join("\n");
        assert!(
            warnings.contains("nebius") && warnings.contains("hf-inference") && warnings.contains("lumalabs"),
            "{warnings}"
        );
        assert!(
            !warnings.contains("together"),
            "staging entries are skipped quietly: {warnings}"
        );
    }

    #[test]
    fn preferred_providers_come_first() {
        let s = select(
            &mapping(),
            None,
            &ProviderRegistry::with_defaults(),
            &["fal-ai".into()],
            TEXT_TASKS,
        )
        .unwrap();
        assert_eq!(names(&s), ["fal-ai", "replicate"]);
    }

    #[test]
    fn a_named_provider_is_the_only_candidate_even_in_staging() {
        let s = select(
            &mapping(),
            Some("together"),
            &ProviderRegistry::with_defaults(),
            &[],
            TEXT_TASKS,
        )
        .unwrap();
        assert_eq!(names(&s), ["together"]);
        assert!(s.warnings[0].contains("staging"));
    }

    #[test]
    fn named_provider_errors() {
        let registry = ProviderRegistry::with_defaults();
        assert!(matches!(
            select(&mapping(), Some("acme"), &registry, &[], TEXT_TASKS),
            Err(Error::UnknownProvider { .. })
        ));
        let mut only_image = mapping();
        only_image.entries.retain(|e| e.provider != "fal-ai");
        match select(&only_image, Some("fal-ai"), &registry, &[], TEXT_TASKS) {
            Err(Error::ModelNotSupported { provider, message, .. }) => {
                assert_eq!(provider, "fal-ai");
                assert!(message.contains("replicate"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            select(&mapping(), Some("hf-inference"), &registry, &[], TEXT_TASKS),
            Err(Error::NoProvider { .. })
        ));
    }

    #[test]
    fn nothing_usable_is_no_provider_saying_why() {
        let mut m = mapping();
        m.entries.retain(|e| e.provider == "together" || e.provider == "nebius");
        match select(&m, None, &ProviderRegistry::with_defaults(), &[], TEXT_TASKS) {
            Err(Error::NoProvider { reason, .. }) => {
                assert!(
                    reason.contains("together is staging") && reason.contains("nebius"),
                    "{reason}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        let empty = ModelMapping::from_hub_field("a/b", None).unwrap();
        assert!(matches!(
            select(&empty, None, &ProviderRegistry::with_defaults(), &[], TEXT_TASKS),
            Err(Error::NoProvider { .. })
        ));
    }
}
