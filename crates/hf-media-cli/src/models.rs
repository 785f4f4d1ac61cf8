//! `hf-media models`: the Hub's text-to-image and text-to-video models, with the providers serving them live.

use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use hf_media::Task;
use hf_media::mapping::{MappingClient, ModelMapping, ModelQuery, ProviderMapping};
use hf_media::token::find_token;
use serde_json::{Value, json};

use crate::cli::{MediaTask, ModelsArgs};

/// One output line: a model, a task, and the providers serving the model live for that task.
#[derive(Debug, Clone, PartialEq)]
struct Listed {
    model: String,
    task: Task,
    providers: Vec<ProviderMapping>,
}

impl From<MediaTask> for Task {
    fn from(task: MediaTask) -> Self {
        match task {
            MediaTask::TextToImage => Task::TextToImage,
            MediaTask::TextToVideo => Task::TextToVideo,
            MediaTask::ImageToImage => Task::ImageToImage,
            MediaTask::ImageToVideo => Task::ImageToVideo,
            MediaTask::ImageTextToImage => Task::ImageTextToImage,
            MediaTask::ImageTextToVideo => Task::ImageTextToVideo,
        }
    }
}

/// Runs `hf-media models`: exit 0 on success (even with no model), 1 when the Hub fails, 2 on a bad Hub URL.
pub async fn run(args: ModelsArgs) -> ExitCode {
    // The token is optional here: the listing is public, but a token lets the Hub apply the user's settings.
    // The emulator needs none and is never sent the user's.
    let (_emulator, hub_url, token) = if args.emulator {
        match crate::emulator::start_embedded().await {
            Ok(running) => {
                let url = running.url();
                (Some(running), url, None)
            }
            Err(message) => return crate::usage_error(message),
        }
    } else {
        (
            None,
            args.hf_endpoint.clone(),
            find_token().map(|(token, _source)| token),
        )
    };
    // The Hub's error texts are shown without the token, should the Hub echo it.
    let secrets = hf_media::Secrets::new(token.iter());
    let client = match MappingClient::builder()
        .hub_url(hub_url)
        .secret_token(token)
        .cache_ttl(Duration::ZERO)
        .build()
    {
        Ok(client) => client,
        Err(e) => return crate::usage_error(e),
    };
    let only_task: Option<Task> = args.task.map(Task::from);
    // Videos first, like the reference client (g4f).
    let tasks = match &only_task {
        Some(task) => vec![task.clone()],
        None => vec![Task::TextToVideo, Task::TextToImage],
    };
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    for task in tasks {
        let mut query = ModelQuery::new().task(task).limit(args.limit);
        if let Some(provider) = &args.provider {
            query = query.provider(provider.clone());
        }
        if let Some(search) = &args.search {
            query = query.search(search.clone());
        }
        let mut models = match client.list_models(&query).await {
            Ok(models) => models,
            Err(e) => {
                eprintln!("error: {}", secrets.scrub(&e.to_string()));
                return ExitCode::from(crate::EXIT_FAILED);
            }
        };
        models.retain(|m| seen.insert(m.model_id.clone()));
        rows.extend(listed(&models, only_task.as_ref(), args.provider.as_deref()));
    }
    let lines: Vec<String> = if args.json {
        rows.iter().map(|row| row_json(row).to_string()).collect()
    } else {
        human_lines(&rows)
    };
    if lines.is_empty() && !args.json {
        eprintln!("no model with a live text-to-image or text-to-video provider matched");
    }
    let mut out = std::io::stdout().lock();
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            return ExitCode::from(crate::EXIT_FAILED);
        }
    }
    if out.flush().is_err() {
        return ExitCode::from(crate::EXIT_FAILED);
    }
    ExitCode::SUCCESS
}

/// The rows of `models`: for each model, its live text-to-image/text-to-video entries (of `task` and
/// `provider` when given), one row per task in the order the tasks first appear; models left with no entry
/// are dropped.
fn listed(models: &[ModelMapping], task: Option<&Task>, provider: Option<&str>) -> Vec<Listed> {
    let mut rows = Vec::new();
    for model in models {
        let mut by_task: Vec<Listed> = Vec::new();
        let kept = model.live().filter(|entry| {
            // Text tasks by default; an image task when it is asked for.
            (entry.task.is_text_to_media() || task.is_some_and(|task| entry.task == *task))
                && task.is_none_or(|task| entry.task == *task)
                && provider.is_none_or(|provider| entry.provider == provider)
        });
        for entry in kept {
            match by_task.iter_mut().find(|row| row.task == entry.task) {
                Some(row) => row.providers.push(entry.clone()),
                None => by_task.push(Listed {
                    model: model.model_id.clone(),
                    task: entry.task.clone(),
                    providers: vec![entry.clone()],
                }),
            }
        }
        rows.extend(by_task);
    }
    rows
}

/// The `--json` line of a row.
fn row_json(row: &Listed) -> Value {
    let providers: Vec<Value> = row
        .providers
        .iter()
        .map(|p| json!({"provider": p.provider, "provider_id": p.provider_id, "task": p.task}))
        .collect();
    json!({"model": row.model, "task": row.task, "providers": providers})
}

/// The human lines: `{model}  {task}  {provider, provider}`, the first two columns aligned.
fn human_lines(rows: &[Listed]) -> Vec<String> {
    let model_width = rows.iter().map(|r| r.model.chars().count()).max().unwrap_or(0);
    let task_width = rows.iter().map(|r| r.task.as_str().chars().count()).max().unwrap_or(0);
    rows.iter()
        .map(|row| {
            let providers: Vec<&str> = row.providers.iter().map(|p| p.provider.as_str()).collect();
            format!(
                "{:<model_width$}  {:<task_width$}  {}",
                row.model,
                row.task.as_str(),
                providers.join(", ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use hf_media::mapping::MappingStatus;

    use super::*;

    fn entry(model: &str, provider: &str, status: MappingStatus, task: Task) -> ProviderMapping {
        let mut entry = ProviderMapping::new(provider, format!("{provider}-id"), task, model);
        entry.status = status;
        entry
    }

    fn mapping(model: &str, entries: Vec<ProviderMapping>) -> ModelMapping {
        ModelMapping {
            model_id: model.into(),
            entries,
        }
    }

    fn models() -> Vec<ModelMapping> {
        vec![
            mapping(
                "a/video",
                vec![
                    entry("a/video", "fal-ai", MappingStatus::Live, Task::TextToVideo),
                    entry("a/video", "novita", MappingStatus::Error, Task::TextToVideo),
                    entry("a/video", "replicate", MappingStatus::Live, Task::TextToVideo),
                ],
            ),
            mapping(
                "b/mixed",
                vec![
                    entry("b/mixed", "together", MappingStatus::Live, Task::TextToImage),
                    entry(
                        "b/mixed",
                        "fal-ai",
                        MappingStatus::Live,
                        Task::Other("image-to-image".into()),
                    ),
                    entry("b/mixed", "wavespeed", MappingStatus::Live, Task::TextToVideo),
                ],
            ),
            mapping(
                "c/staging-only",
                vec![entry(
                    "c/staging-only",
                    "fal-ai",
                    MappingStatus::Staging,
                    Task::TextToImage,
                )],
            ),
        ]
    }

    fn summary(rows: &[Listed]) -> Vec<(String, String, Vec<String>)> {
        rows.iter()
            .map(|r| {
                (
                    r.model.clone(),
                    r.task.to_string(),
                    r.providers.iter().map(|p| p.provider.clone()).collect(),
                )
            })
            .collect()
    }

    fn row(model: &str, task: &str, providers: &[&str]) -> (String, String, Vec<String>) {
        (
            model.into(),
            task.into(),
            providers.iter().map(|p| p.to_string()).collect(),
        )
    }

    #[test]
    fn keeps_live_text_to_media_entries_grouped_by_task() {
        assert_eq!(
            summary(&listed(&models(), None, None)),
            [
                row("a/video", "text-to-video", &["fal-ai", "replicate"]),
                row("b/mixed", "text-to-image", &["together"]),
                row("b/mixed", "text-to-video", &["wavespeed"]),
            ]
        );
    }

    #[test]
    fn task_and_provider_filters_apply_to_entries() {
        assert_eq!(
            summary(&listed(&models(), Some(&Task::TextToImage), None)),
            [row("b/mixed", "text-to-image", &["together"])]
        );
        assert_eq!(
            summary(&listed(&models(), None, Some("fal-ai"))),
            [row("a/video", "text-to-video", &["fal-ai"])]
        );
        assert!(listed(&models(), Some(&Task::TextToImage), Some("replicate")).is_empty());
    }

    #[test]
    fn human_lines_are_aligned_and_json_lines_follow_the_contract() {
        let rows = listed(&models(), None, None);
        assert_eq!(
            human_lines(&rows),
            [
                "a/video  text-to-video  fal-ai, replicate",
                "b/mixed  text-to-image  together",
                "b/mixed  text-to-video  wavespeed",
            ]
        );
        assert_eq!(
            row_json(&rows[0]),
            json!({"model": "a/video", "task": "text-to-video", "providers": [
                {"provider": "fal-ai", "provider_id": "fal-ai-id", "task": "text-to-video"},
                {"provider": "replicate", "provider_id": "replicate-id", "task": "text-to-video"}
            ]})
        );
        assert!(human_lines(&[]).is_empty());
    }
}
