//! Property tests (issue 6's "fuzzing") of prompt formatting, aspect ratios and parameters: a prompt is never
//! empty and only ever comes from the explicit prompt or the trailing run of user messages; aspect ratios
//! round-trip; the canonical parameter map never carries unset fields.
//!
//! Cases per property: proptest's default (256), or `PROPTEST_CASES`; `cargo xtask fuzz` runs many more.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use hf_media_prompt::{
    AspectRatio, ChatMessage, ContentPart, GenerationParams, MessageContent, PromptError, Role, format_prompt,
};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        3 => Just(Role::User),
        1 => Just(Role::Assistant),
        1 => Just(Role::System),
        1 => Just(Role::Developer),
        1 => Just(Role::Tool),
        1 => Just(Role::Other),
    ]
}

/// Text that may be blank, padded, multi-line or non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,20}",
        "[ \\t\\n]{0,4}",
        ("[ \\t\\n]{0,3}", "\\PC{1,12}", "[ \\t\\n]{0,3}").prop_map(|(a, b, c)| format!("{a}{b}{c}")),
        Just("a fox\nin the snow".to_owned()),
    ]
}

/// A content whose every non-blank text carries `marker`, so the prompt's sources can be traced.
fn content(marker: String) -> impl Strategy<Value = MessageContent> {
    let mark = move |t: String| {
        if t.trim().is_empty() {
            t
        } else {
            format!("{t} {marker}")
        }
    };
    let mark_parts = mark.clone();
    prop_oneof![
        text().prop_map(move |t| MessageContent::Text(mark(t))),
        prop::collection::vec(
            (
                prop::sample::select(&["text", "image_url", "input_audio", "TEXT"][..]),
                prop::option::of(text())
            ),
            0..4
        )
        .prop_map(move |parts| {
            MessageContent::Parts(
                parts
                    .into_iter()
                    .map(|(kind, t)| ContentPart {
                        kind: kind.to_owned(),
                        text: t.map(&mark_parts),
                        rest: Map::new(),
                    })
                    .collect(),
            )
        }),
    ]
}

fn marked_messages() -> impl Strategy<Value = Vec<ChatMessage>> {
    prop::collection::vec(role(), 0..8).prop_flat_map(|roles| {
        roles
            .into_iter()
            .enumerate()
            .map(|(i, role)| content(format!("⟦{i}⟧")).prop_map(move |content| ChatMessage { role, content }))
            .collect::<Vec<_>>()
    })
}

/// The markers `⟦i⟧` found in a text.
fn markers(text: &str) -> BTreeSet<usize> {
    text.split('⟦')
        .skip(1)
        .filter_map(|rest| rest.split_once('⟧'))
        .filter_map(|(n, _)| n.parse().ok())
        .collect()
}

/// The indices of the trailing run of user messages (after skipping trailing non-user messages).
fn trailing_run(messages: &[ChatMessage]) -> BTreeSet<usize> {
    let mut run = BTreeSet::new();
    let mut i = messages.len();
    while i > 0 && messages[i - 1].role != Role::User {
        i -= 1;
    }
    while i > 0 && messages[i - 1].role == Role::User {
        run.insert(i - 1);
        i -= 1;
    }
    run
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(&["user", "assistant", "system", "text", "image_url", "16:9", "1:1", ""][..])
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            3 => prop::sample::select(&[
                "role", "content", "type", "text", "width", "height", "aspect_ratio", "seed", "guidance_scale",
                "num_inference_steps", "num_frames", "resolution", "negative_prompt", "scheduler", "extra",
            ][..]).prop_map(str::to_owned),
            1 => "\\PC{0,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn params() -> impl Strategy<Value = GenerationParams> {
    (
        (
            prop::option::of(text()),
            prop::option::of(prop_oneof![Just(0u32), any::<u32>()]),
            prop::option::of(prop_oneof![Just(0u32), any::<u32>()]),
            prop::option::of(prop::sample::select(AspectRatio::all().collect::<Vec<_>>())),
            prop::option::of(prop_oneof![Just(0u32), 1u32..100]),
            prop::option::of(prop_oneof![
                any::<f64>(),
                Just(f64::NAN),
                Just(f64::INFINITY),
                0.0f64..20.0
            ]),
        ),
        (
            prop::option::of(any::<u64>()),
            prop::option::of(text()),
            prop::option::of(prop_oneof![Just(0u32), 1u32..200]),
            prop::option::of(prop_oneof![Just("720p".to_owned()), text()]),
            prop::collection::vec(("[a-z_]{1,10}", arb_json()), 0..3),
            prop::option::of(prop_oneof![0.0f64..=1.0, Just(1.5), Just(f64::NAN)]),
        ),
    )
        .prop_map(
            |(
                (negative_prompt, width, height, aspect_ratio, num_inference_steps, guidance_scale),
                (seed, scheduler, num_frames, resolution, extra, strength),
            )| GenerationParams {
                negative_prompt,
                width,
                height,
                aspect_ratio,
                num_inference_steps,
                guidance_scale,
                strength,
                seed,
                scheduler,
                num_frames,
                resolution,
                extra: extra.into_iter().collect(),
            },
        )
}

/// The canonical keys a set field must produce.
fn expected_keys(p: &GenerationParams) -> BTreeSet<&'static str> {
    let mut keys = BTreeSet::new();
    let has_size = p.size().is_some();
    for (key, set) in [
        ("negative_prompt", p.negative_prompt.is_some()),
        ("width", has_size || p.width.is_some()),
        ("height", has_size || p.height.is_some()),
        ("num_inference_steps", p.num_inference_steps.is_some()),
        ("guidance_scale", p.guidance_scale.is_some()),
        ("strength", p.strength.is_some()),
        ("seed", p.seed.is_some()),
        ("scheduler", p.scheduler.is_some()),
        ("num_frames", p.num_frames.is_some()),
        ("resolution", p.resolution.is_some()),
        ("aspect_ratio", p.aspect_ratio.is_some()),
    ] {
        if set {
            keys.insert(key);
        }
    }
    keys
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// A non-blank explicit prompt wins, trimmed, whatever the messages.
    #[test]
    fn explicit_prompt_wins(prompt in text(), messages in marked_messages()) {
        let result = format_prompt(Some(&prompt), &messages);
        if !prompt.trim().is_empty() {
            prop_assert_eq!(result, Ok(prompt.trim().to_owned()));
        }
    }

    /// Without an explicit prompt, the prompt is the non-blank texts of the trailing run of user messages,
    /// trimmed and joined by newlines; never empty; never text of any other message.
    #[test]
    fn prompt_comes_only_from_the_trailing_user_run(
        blank in prop::option::of("[ \\t\\n]{0,3}"),
        messages in marked_messages(),
    ) {
        let run = trailing_run(&messages);
        let run_texts: Vec<String> = run
            .iter()
            .map(|&i| messages[i].content.text().trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        match format_prompt(blank.as_deref(), &messages) {
            Ok(prompt) => {
                prop_assert!(!prompt.trim().is_empty());
                prop_assert_eq!(prompt.trim(), prompt.as_str(), "not trimmed");
                let found = markers(&prompt);
                prop_assert!(found.is_subset(&run), "{:?} has text from outside the run {:?}", prompt, run);
                prop_assert_eq!(prompt, run_texts.join("\n"));
            }
            Err(error) => {
                prop_assert_eq!(error, PromptError::Empty);
                prop_assert!(run_texts.is_empty(), "the run had text: {:?}", run_texts);
            }
        }
    }

    /// Chat messages from arbitrary JSON: a parse error or a prompt, never a panic.
    #[test]
    fn arbitrary_messages_never_panic(json in arb_json(), prompt in prop::option::of(text())) {
        let messages: Vec<ChatMessage> = match serde_json::from_value::<Vec<ChatMessage>>(json.clone()) {
            Ok(messages) => messages,
            Err(_) => match serde_json::from_value::<ChatMessage>(json) {
                Ok(message) => vec![message],
                Err(_) => return Ok(()),
            },
        };
        if let Ok(text) = format_prompt(prompt.as_deref(), &messages) {
            prop_assert!(!text.trim().is_empty());
        }
    }

    /// Any string parses to a supported ratio whose label is the trimmed input, or to an error; every
    /// ratio's label parses back to it (also padded, and through serde).
    #[test]
    fn aspect_ratios_round_trip(
        given in prop_oneof!["\\PC{0,8}", "[0-9]{1,2}:[0-9]{1,2}", "[ \\t]{0,2}(16:9|1:1|9:21)[ \\t\\n]{0,2}"],
        index in any::<prop::sample::Index>(),
        pad in "[ \\t\\n]{0,3}",
    ) {
        match given.parse::<AspectRatio>() {
            Ok(ratio) => {
                prop_assert_eq!(ratio.to_string(), given.trim());
                prop_assert!(AspectRatio::SUPPORTED.contains(&ratio.as_str()));
            }
            Err(PromptError::UnknownAspectRatio { given: g }) => prop_assert_eq!(g, given),
            Err(other) => prop_assert!(false, "{:?}", other),
        }
        let all: Vec<AspectRatio> = AspectRatio::all().collect();
        let ratio = all[index.index(all.len())];
        prop_assert_eq!(ratio.to_string().parse::<AspectRatio>(), Ok(ratio));
        prop_assert_eq!(format!("{pad}{ratio}{pad}").parse::<AspectRatio>(), Ok(ratio));
        let json = serde_json::to_value(ratio).unwrap();
        prop_assert_eq!(serde_json::from_value::<AspectRatio>(json).unwrap(), ratio);
        let (w, h) = ratio.size();
        prop_assert!(w > 0 && h > 0 && w.max(h) >= 1000 && w.max(h) <= 1040);
    }

    /// The canonical map has a key for every set field and none for an unset one (extras aside), and
    /// after `validate` no `null` value; the size comes from width × height, else the aspect ratio.
    #[test]
    fn canonical_map_has_only_set_fields(p in params()) {
        let map = p.to_canonical_map();
        let expected = expected_keys(&p);
        for key in map.keys() {
            prop_assert!(expected.contains(key.as_str()) || p.extra.contains_key(key), "unset field `{}` in {:?}", key, map);
        }
        for key in &expected {
            prop_assert!(map.contains_key(*key), "set field `{}` missing from {:?}", key, map);
        }
        for (key, value) in &p.extra {
            prop_assert_eq!(map.get(key), Some(value), "extra `{}` does not override", key);
        }
        match (p.width, p.height, p.aspect_ratio) {
            (Some(w), Some(h), _) => prop_assert_eq!(p.size(), Some((w, h))),
            (_, _, Some(r)) => prop_assert_eq!(p.size(), Some(r.size())),
            _ => prop_assert_eq!(p.size(), None),
        }
        if p.validate().is_ok() {
            for (key, value) in &map {
                prop_assert!(!value.is_null() || p.extra.contains_key(key), "`{}` is null in {:?}", key, map);
            }
        }
        let without_extra = GenerationParams { extra: Map::new(), ..p.clone() };
        let keys: BTreeSet<String> = without_extra.to_canonical_map().keys().cloned().collect();
        prop_assert_eq!(keys, expected.iter().map(|k| (*k).to_owned()).collect::<BTreeSet<_>>());
    }

    /// `validate` refuses exactly zero sizes, steps and frames, non-finite guidance and blank resolutions,
    /// and names the parameter.
    #[test]
    fn validation_names_the_bad_parameter(p in params()) {
        let bad: Vec<&str> = [
            ("width", p.width == Some(0)),
            ("height", p.height == Some(0)),
            ("num_inference_steps", p.num_inference_steps == Some(0)),
            ("num_frames", p.num_frames == Some(0)),
            ("guidance_scale", p.guidance_scale.is_some_and(|g| !g.is_finite())),
            ("strength", p.strength.is_some_and(|s| !(0.0..=1.0).contains(&s))),
            ("resolution", p.resolution.as_ref().is_some_and(|r| r.trim().is_empty())),
        ]
        .into_iter()
        .filter_map(|(name, is_bad)| is_bad.then_some(name))
        .collect();
        match p.validate() {
            Ok(()) => prop_assert!(bad.is_empty(), "{:?} accepted", bad),
            Err(PromptError::InvalidParameter { name, reason }) => {
                prop_assert!(bad.contains(&name), "{} refused, but the bad ones are {:?}", name, bad);
                prop_assert!(!reason.trim().is_empty());
                let error = PromptError::InvalidParameter { name, reason };
                let text = error.to_string();
                prop_assert!(text.contains(&format!("`{name}`")), "{}", text);
            }
            Err(other) => prop_assert!(false, "{:?}", other),
        }
    }

    /// Parameters survive a JSON round trip; arbitrary JSON parses or fails, never panics.
    #[test]
    fn params_round_trip_through_json(p in params(), json in arb_json()) {
        // JSON has no NaN or infinity (they become `null`).
        let p = GenerationParams {
            guidance_scale: p.guidance_scale.filter(|g| g.is_finite()),
            strength: p.strength.filter(|s| s.is_finite()),
            ..p
        };
        let value = serde_json::to_value(&p).unwrap();
        let back: GenerationParams = serde_json::from_value(value).unwrap();
        prop_assert_eq!(back, p);
        if let Ok(parsed) = serde_json::from_value::<GenerationParams>(json) {
            let _ = parsed.validate();
            let _ = parsed.to_canonical_map();
        }
    }
}
