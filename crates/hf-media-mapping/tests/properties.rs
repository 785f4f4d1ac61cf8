//! Property tests (issue 6's "fuzzing") of the Hub mapping parser and model-id validation: both forms of
//! `inferenceProviderMapping` parse to the same entries in the same order, arbitrary JSON never panics, and
//! no model id that could escape a URL path or a folder is accepted.
//!
//! Cases per property: proptest's default (256), or `PROPTEST_CASES`; `cargo xtask fuzz` runs many more.
#![allow(clippy::unwrap_used)]

use hf_media_mapping::{MappingError, MappingStatus, ModelMapping, ProviderMapping, Task, validate_model_id};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Keys the mapping parser reads, so that arbitrary JSON often hits them.
const KEYS: &[&str] = &[
    "provider",
    "providerId",
    "status",
    "task",
    "adapter",
    "adapterWeightsPath",
    "hfModelId",
    "type",
    "isModelAuthor",
    "fal-ai",
    "replicate",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(&["live", "staging", "error", "text-to-image", "text-to-video", "lora", ""][..])
            .prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        let key = prop_oneof![3 => prop::sample::select(KEYS).prop_map(str::to_owned), 1 => "\\PC{0,10}"];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// One valid entry, without its `provider` (the key of the object form).
fn valid_entry() -> impl Strategy<Value = Map<String, Value>> {
    (
        "\\PC{1,30}",
        prop::sample::select(&["live", "staging", "error", "paused", "Live"][..]),
        prop::sample::select(&["text-to-image", "text-to-video", "conversational", "image-to-image", ""][..]),
        prop::option::of(prop::sample::select(&["lora", "other"][..])),
        prop::option::of("\\PC{0,20}"),
        prop::collection::vec(("x[A-Za-z_]{0,8}|type|isModelAuthor", arb_json()), 0..3),
    )
        .prop_map(|(provider_id, status, task, adapter, weights, extra)| {
            let mut entry = Map::new();
            entry.insert("providerId".into(), json!(provider_id));
            entry.insert("status".into(), json!(status));
            entry.insert("task".into(), json!(task));
            if let Some(adapter) = adapter {
                entry.insert("adapter".into(), json!(adapter));
            }
            if let Some(weights) = weights {
                entry.insert("adapterWeightsPath".into(), json!(weights));
            }
            for (k, v) in extra {
                entry.insert(k, v);
            }
            entry
        })
}

/// Entries of distinct providers, in a random order.
fn valid_entries() -> impl Strategy<Value = Vec<(String, Map<String, Value>)>> {
    prop::collection::vec(("[a-z][a-z0-9-]{0,12}|\\PC{1,8}", valid_entry()), 0..6).prop_map(|entries| {
        let mut seen = std::collections::HashSet::new();
        entries.into_iter().filter(|(p, _)| seen.insert(p.clone())).collect()
    })
}

fn model_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9_-]{0,15}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,15})?"
}

/// Strings that look like model ids, with every kind of thing that must be refused.
fn near_model_id() -> impl Strategy<Value = String> {
    prop_oneof![
        model_id(),
        "[A-Za-z0-9./_ \\t\\n-]{0,12}",
        (
            model_id(),
            prop::sample::select(
                &[
                    "..", "/", " ", "\t", "\n", "//", "/..", "../", "\\", "%2e%2e", "\u{a0}", "é"
                ][..]
            ),
            any::<prop::sample::Index>()
        )
            .prop_map(|(id, bad, at)| {
                let mut positions: Vec<usize> = id.char_indices().map(|(i, _)| i).collect();
                positions.push(id.len());
                let mut id = id;
                id.insert_str(positions[at.index(positions.len())], bad);
                id
            }),
        "\\PC{0,30}",
        "[a-z]{190,210}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// Any JSON: a mapping or an error that says what is wrong; never a panic.
    #[test]
    fn arbitrary_fields_never_panic(field in arb_json(), model in model_id()) {
        match ModelMapping::from_hub_field(&model, Some(&field)) {
            Ok(mapping) => {
                prop_assert_eq!(&mapping.model_id, &model);
                for entry in &mapping.entries {
                    prop_assert_eq!(&entry.hf_model_id, &model);
                }
            }
            Err(message) => prop_assert!(!message.trim().is_empty()),
        }
    }

    /// The object form (keyed by provider) and the list form (with `provider`) give the same entries, in the
    /// Hub's order, with every field and extra kept.
    #[test]
    fn both_forms_parse_to_the_same_entries(entries in valid_entries(), model in model_id()) {
        let object: Map<String, Value> =
            entries.iter().map(|(p, e)| (p.clone(), Value::Object(e.clone()))).collect();
        let list: Vec<Value> = entries
            .iter()
            .map(|(p, e)| {
                let mut e = e.clone();
                e.insert("provider".into(), json!(p));
                Value::Object(e)
            })
            .collect();
        let from_object = ModelMapping::from_hub_field(&model, Some(&Value::Object(object))).unwrap();
        let from_list = ModelMapping::from_hub_field(&model, Some(&Value::Array(list))).unwrap();
        prop_assert_eq!(&from_object, &from_list);
        prop_assert_eq!(from_object.entries.len(), entries.len());
        for (parsed, (provider, entry)) in from_object.entries.iter().zip(&entries) {
            prop_assert_eq!(&parsed.provider, provider);
            prop_assert_eq!(parsed.provider_id.as_str(), entry["providerId"].as_str().unwrap());
            prop_assert_eq!(parsed.status.as_str(), entry["status"].as_str().unwrap());
            prop_assert_eq!(parsed.task.as_str(), entry["task"].as_str().unwrap());
            prop_assert_eq!(parsed.adapter.as_deref(), entry.get("adapter").and_then(Value::as_str));
            prop_assert_eq!(
                parsed.adapter_weights_path.as_deref(),
                entry.get("adapterWeightsPath").and_then(Value::as_str)
            );
            prop_assert_eq!(&parsed.hf_model_id, &model);
            for (k, v) in entry.iter().filter(|(k, _)| k.starts_with('x') || *k == "type" || *k == "isModelAuthor") {
                prop_assert_eq!(parsed.extra.get(k), Some(v), "extra field {} lost", k);
            }
            prop_assert_eq!(parsed.status == MappingStatus::Live, entry["status"] == "live");
        }
        let live: Vec<&ProviderMapping> = from_object.live().collect();
        prop_assert!(live.iter().all(|e| e.status == MappingStatus::Live));
        // An entry serialises back to the list form, and parses again to itself.
        let again: Vec<Value> = from_list.entries.iter().map(|e| serde_json::to_value(e).unwrap()).collect();
        let reparsed = ModelMapping::from_hub_field(&model, Some(&Value::Array(again))).unwrap();
        prop_assert_eq!(reparsed, from_list);
    }

    /// An entry with a field of the wrong type is an error naming the provider, never a panic.
    #[test]
    fn wrong_types_are_errors_naming_the_provider(
        provider in "[a-z][a-z0-9-]{0,12}|\\PC{1,8}",
        entry in valid_entry(),
        field in prop::sample::select(&["providerId", "status", "task", "adapter", "adapterWeightsPath"][..]),
        bad in prop_oneof![any::<i64>().prop_map(Value::from), any::<bool>().prop_map(Value::from), Just(json!([])), Just(json!({}))],
    ) {
        let mut entry = entry;
        entry.insert(field.into(), bad);
        let object = json!({ provider.clone(): entry });
        let message = ModelMapping::from_hub_field("a/b", Some(&object)).unwrap_err();
        prop_assert!(message.contains(&provider), "{} does not name {}", message, provider);
    }

    /// A valid id is accepted; an accepted id never has `..`, a `/` at either end, whitespace, more than one
    /// `/`, or more than 200 characters.
    #[test]
    fn model_ids_never_escape(id in near_model_id()) {
        match validate_model_id(&id) {
            Ok(()) => {
                prop_assert!(!id.is_empty() && id.len() <= 200);
                prop_assert!(!id.contains(".."), "{:?}", id);
                prop_assert!(!id.starts_with('/') && !id.ends_with('/'), "{:?}", id);
                prop_assert!(!id.chars().any(char::is_whitespace), "{:?}", id);
                prop_assert!(id.matches('/').count() <= 1, "{:?}", id);
                prop_assert!(id.split('/').all(|s| s != "." && !s.is_empty()), "{:?}", id);
                prop_assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)), "{:?}", id);
            }
            Err(error) => {
                prop_assert!(matches!(error, MappingError::InvalidModelId { .. }), "{:?}", error);
                prop_assert!(error.to_string().contains("is not a valid model id"));
            }
        }
    }

    /// Every plain `name` or `org/name` id is accepted.
    #[test]
    fn plain_model_ids_are_accepted(id in model_id()) {
        let id = id.split('.').filter(|s| !s.is_empty()).collect::<Vec<_>>().join(".");
        prop_assume!(!id.is_empty() && !id.starts_with('/') && !id.ends_with('/'));
        prop_assert_eq!(validate_model_id(&id), Ok(()));
    }

    /// Task and status names survive a round trip through their enums.
    #[test]
    fn task_and_status_names_round_trip(name in "\\PC{0,20}") {
        prop_assert_eq!(String::from(Task::from(name.clone())), name.clone());
        prop_assert_eq!(String::from(MappingStatus::from(name.clone())), name);
    }
}
