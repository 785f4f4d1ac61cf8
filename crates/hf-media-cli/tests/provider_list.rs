//! The list of built-in providers lives in one place, `ProviderRegistry::with_defaults()`. Everything
//! else that names them is checked against it here: the emulator's providers, the key variables the
//! CLI's help names, and `hf-media providers --json` (which the bench reads to know which key variables
//! to clear).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Command;

use hf_media::ProviderRegistry;
use serde_json::Value;

fn registry_names() -> BTreeSet<String> {
    ProviderRegistry::with_defaults().names().map(str::to_owned).collect()
}

fn registry_key_vars() -> BTreeSet<String> {
    ProviderRegistry::with_defaults()
        .iter()
        .filter_map(|p| p.info().key_env())
        .map(str::to_owned)
        .collect()
}

fn run(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_hf-media"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_emulator_speaks_for_every_registered_provider_and_no_other() {
    let emulated: BTreeSet<String> = hf_media_emulator::PROVIDERS.iter().map(|p| (*p).to_owned()).collect();
    assert_eq!(emulated, registry_names());
}

#[test]
fn the_help_names_every_provider_key_variable_and_no_other() {
    let help = run(&["generate", "--help"]);
    let paragraph = help
        .split("--provider-key")
        .nth(1)
        .and_then(|rest| rest.split("\n  -").next().map(str::to_owned))
        .unwrap_or_else(|| panic!("no --provider-key in the help:\n{help}"));
    let named: BTreeSet<String> = paragraph
        .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
        .filter(|word| word.ends_with("_KEY") || word.ends_with("_TOKEN"))
        .map(str::to_owned)
        .collect();
    assert_eq!(named, registry_key_vars(), "the --provider-key help:\n{paragraph}");
}

#[test]
fn providers_json_is_the_registry_the_bench_reads() {
    let lines: Vec<Value> = run(&["providers", "--json"])
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let names: BTreeSet<String> = lines
        .iter()
        .map(|l| l["provider"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, registry_names());
    let vars: BTreeSet<String> = lines
        .iter()
        .filter_map(|l| l["key_env"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(vars, registry_key_vars());
    let registry = ProviderRegistry::with_defaults();
    for line in &lines {
        let provider = registry.get(line["provider"].as_str().unwrap()).unwrap();
        let tasks: Vec<&str> = provider.tasks().iter().map(|t| t.as_str()).collect();
        assert_eq!(line["tasks"], serde_json::json!(tasks));
    }
}
