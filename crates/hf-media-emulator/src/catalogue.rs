//! The built-in catalogue: real Hub model ids with the real provider ids each provider serves them under.

use serde_json::{Map, Value, json};

/// One provider serving a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueEntry {
    /// The provider's Hub name.
    pub provider: &'static str,
    /// The model's id on the provider.
    pub provider_id: &'static str,
    /// `live`, `staging` or `error`.
    pub status: &'static str,
    /// The task the provider serves it for: `text-to-image`, `text-to-video`, `image-to-image`,
    /// `image-to-video`, `image-text-to-image` or `image-text-to-video` (the image optional in the last
    /// two).
    pub task: &'static str,
    /// `(adapter, adapterWeightsPath)` for LoRA entries.
    pub adapter: Option<(&'static str, &'static str)>,
}

/// A model of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueModel {
    /// The Hub model id.
    pub id: &'static str,
    /// The model's pipeline tag.
    pub pipeline_tag: &'static str,
    /// Its providers, in the Hub's order.
    pub entries: Vec<CatalogueEntry>,
}

const fn live(provider: &'static str, provider_id: &'static str, task: &'static str) -> CatalogueEntry {
    CatalogueEntry {
        provider,
        provider_id,
        status: "live",
        task,
        adapter: None,
    }
}

const IMAGE: &str = "text-to-image";
const VIDEO: &str = "text-to-video";
const EDIT: &str = "image-to-image";
const ANIMATE: &str = "image-to-video";
const EDIT_OR_IMAGE: &str = "image-text-to-image";
const ANIMATE_OR_VIDEO: &str = "image-text-to-video";

/// The models the emulator knows.
pub fn builtin() -> Vec<CatalogueModel> {
    vec![
        CatalogueModel {
            id: "black-forest-labs/FLUX.1-schnell",
            pipeline_tag: IMAGE,
            entries: vec![
                live("fal-ai", "fal-ai/flux/schnell", IMAGE),
                live("together", "black-forest-labs/FLUX.1-schnell", IMAGE),
                live("hf-inference", "black-forest-labs/FLUX.1-schnell", IMAGE),
                live("replicate", "black-forest-labs/flux-schnell", IMAGE),
                live("nscale", "black-forest-labs/FLUX.1-schnell", IMAGE),
                live("wavespeed", "wavespeed-ai/flux-schnell", IMAGE),
            ],
        },
        CatalogueModel {
            id: "black-forest-labs/FLUX.1-dev",
            pipeline_tag: IMAGE,
            entries: vec![
                live("fal-ai", "fal-ai/flux/dev", IMAGE),
                live("replicate", "black-forest-labs/flux-dev", IMAGE),
                live("hf-inference", "black-forest-labs/FLUX.1-dev", IMAGE),
                live("wavespeed", "wavespeed-ai/flux-dev", IMAGE),
                CatalogueEntry {
                    status: "staging",
                    ..live("together", "black-forest-labs/FLUX.1-dev", IMAGE)
                },
            ],
        },
        CatalogueModel {
            id: "stabilityai/stable-diffusion-xl-base-1.0",
            pipeline_tag: IMAGE,
            entries: vec![
                live("hf-inference", "stabilityai/stable-diffusion-xl-base-1.0", IMAGE),
                live("nscale", "stabilityai/stable-diffusion-xl-base-1.0", IMAGE),
                live(
                    "replicate",
                    "stability-ai/sdxl:7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc",
                    IMAGE,
                ),
            ],
        },
        CatalogueModel {
            id: "stabilityai/stable-diffusion-3.5-large",
            pipeline_tag: IMAGE,
            entries: vec![
                live("fal-ai", "fal-ai/stable-diffusion-v35-large", IMAGE),
                live("replicate", "stability-ai/stable-diffusion-3.5-large", IMAGE),
                live("hf-inference", "stabilityai/stable-diffusion-3.5-large", IMAGE),
            ],
        },
        CatalogueModel {
            id: "stabilityai/sdxl-turbo",
            pipeline_tag: IMAGE,
            entries: vec![live("hf-inference", "stabilityai/sdxl-turbo", IMAGE)],
        },
        CatalogueModel {
            id: "zai-org/CogView4-6B",
            pipeline_tag: IMAGE,
            entries: vec![live("zai-org", "cogview-4-250304", IMAGE)],
        },
        CatalogueModel {
            id: "Qwen/Qwen-Image",
            pipeline_tag: IMAGE,
            entries: vec![
                live("fal-ai", "fal-ai/qwen-image", IMAGE),
                live("replicate", "qwen/qwen-image", IMAGE),
                live("wavespeed", "wavespeed-ai/qwen-image/text-to-image", IMAGE),
            ],
        },
        CatalogueModel {
            id: "strangerzonehf/Flux-Super-Realism-LoRA",
            pipeline_tag: IMAGE,
            entries: vec![
                CatalogueEntry {
                    adapter: Some(("lora", "super-realism.safetensors")),
                    ..live("fal-ai", "fal-ai/flux-lora", IMAGE)
                },
                CatalogueEntry {
                    adapter: Some(("lora", "super-realism.safetensors")),
                    ..live("replicate", "black-forest-labs/flux-dev-lora", IMAGE)
                },
            ],
        },
        CatalogueModel {
            id: "Wan-AI/Wan2.1-T2V-14B",
            pipeline_tag: VIDEO,
            entries: vec![
                live("fal-ai", "fal-ai/wan-t2v", VIDEO),
                live("replicate", "wavespeedai/wan-2.1-t2v-480p", VIDEO),
                live("novita", "wan-t2v", VIDEO),
                live("wavespeed", "wavespeed-ai/wan-2.1/t2v-480p", VIDEO),
                live("together", "Wan-AI/Wan2.1-T2V-14B", VIDEO),
            ],
        },
        CatalogueModel {
            id: "Wan-AI/Wan2.2-T2V-A14B",
            pipeline_tag: VIDEO,
            entries: vec![
                live("fal-ai", "fal-ai/wan/v2.2-a14b/text-to-video", VIDEO),
                live("together", "Wan-AI/Wan2.2-T2V-A14B", VIDEO),
                live("novita", "wan-2.2-t2v", VIDEO),
            ],
        },
        CatalogueModel {
            id: "tencent/HunyuanVideo",
            pipeline_tag: VIDEO,
            entries: vec![
                live("fal-ai", "fal-ai/hunyuan-video", VIDEO),
                live("novita", "hunyuan-video-fast", VIDEO),
            ],
        },
        CatalogueModel {
            id: "Lightricks/LTX-Video",
            pipeline_tag: VIDEO,
            entries: vec![
                // The image is optional: a prompt alone makes a text-to-video.
                live("fal-ai", "fal-ai/ltx-video/image-to-video", ANIMATE_OR_VIDEO),
                live("replicate", "lightricks/ltx-video", VIDEO),
                CatalogueEntry {
                    status: "error",
                    ..live("wavespeed", "wavespeed-ai/ltx-video", VIDEO)
                },
            ],
        },
        // Models that take input images. They come last so that the first model of each provider stays a
        // text-to-image or text-to-video one.
        CatalogueModel {
            id: "black-forest-labs/FLUX.1-Kontext-dev",
            pipeline_tag: EDIT,
            entries: vec![
                live("fal-ai", "fal-ai/flux-kontext/dev", EDIT),
                live("replicate", "black-forest-labs/flux-kontext-dev", EDIT),
                live("together", "black-forest-labs/FLUX.1-kontext-dev", EDIT),
            ],
        },
        CatalogueModel {
            id: "Qwen/Qwen-Image-Edit-2509",
            pipeline_tag: EDIT,
            entries: vec![
                live("fal-ai", "fal-ai/qwen-image-edit-plus", EDIT),
                live("wavespeed", "wavespeed-ai/qwen-image/edit-plus", EDIT),
                live("replicate", "qwen/qwen-image-edit-plus", EDIT),
            ],
        },
        CatalogueModel {
            id: "black-forest-labs/FLUX.2-dev",
            pipeline_tag: EDIT_OR_IMAGE,
            entries: vec![
                live("fal-ai", "fal-ai/flux-2/edit", EDIT_OR_IMAGE),
                live("wavespeed", "wavespeed-ai/flux-2-dev/edit", EDIT_OR_IMAGE),
            ],
        },
        CatalogueModel {
            id: "Wan-AI/Wan2.2-I2V-A14B",
            pipeline_tag: ANIMATE,
            entries: vec![
                live("fal-ai", "fal-ai/wan/v2.2-a14b/image-to-video", ANIMATE),
                live("together", "Wan-AI/Wan2.2-I2V-A14B", ANIMATE),
                live("wavespeed", "wavespeed-ai/wan-2.2/i2v-480p", ANIMATE),
            ],
        },
        CatalogueModel {
            id: "timbrooks/instruct-pix2pix",
            pipeline_tag: EDIT,
            entries: vec![live("hf-inference", "timbrooks/instruct-pix2pix", EDIT)],
        },
    ]
}

impl CatalogueEntry {
    /// The entry's fields as the Hub writes them (without `provider`).
    pub fn to_json(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("status".into(), json!(self.status));
        map.insert("providerId".into(), json!(self.provider_id));
        map.insert("task".into(), json!(self.task));
        map.insert("type".into(), json!("single-model"));
        if let Some((adapter, path)) = self.adapter {
            map.insert("adapter".into(), json!(adapter));
            map.insert("adapterWeightsPath".into(), json!(path));
        }
        map
    }
}

impl CatalogueModel {
    /// The mapping in the model-info form: an object keyed by provider, in the Hub's order.
    pub fn mapping_by_provider(&self) -> Value {
        let mut map = Map::new();
        for entry in &self.entries {
            map.insert(entry.provider.to_owned(), Value::Object(entry.to_json()));
        }
        Value::Object(map)
    }

    /// The mapping in the listing form: a list of entries with a `provider` field.
    pub fn mapping_list(&self) -> Value {
        Value::Array(
            self.entries
                .iter()
                .map(|entry| {
                    let mut map = entry.to_json();
                    map.insert("provider".into(), json!(entry.provider));
                    Value::Object(map)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_of_the_project_has_a_live_image_or_video_model() {
        let catalogue = builtin();
        for provider in [
            "fal-ai",
            "hf-inference",
            "replicate",
            "together",
            "nscale",
            "wavespeed",
            "zai-org",
            "novita",
        ] {
            let tasks: Vec<&str> = catalogue
                .iter()
                .flat_map(|m| &m.entries)
                .filter(|e| e.provider == provider && e.status == "live")
                .map(|e| e.task)
                .collect();
            assert!(!tasks.is_empty(), "{provider} serves nothing");
        }
        let ids: std::collections::HashSet<_> = catalogue.iter().map(|m| m.id).collect();
        assert_eq!(ids.len(), catalogue.len(), "model ids are unique");
    }

    #[test]
    fn image_input_models_are_mapped_for_their_tasks() {
        let catalogue = builtin();
        let task_of = |provider: &str, provider_id: &str| {
            catalogue
                .iter()
                .flat_map(|m| &m.entries)
                .find(|e| e.provider == provider && e.provider_id == provider_id)
                .map(|e| e.task)
        };
        assert_eq!(task_of("fal-ai", "fal-ai/flux-kontext/dev"), Some(EDIT));
        assert_eq!(task_of("together", "black-forest-labs/FLUX.1-kontext-dev"), Some(EDIT));
        assert_eq!(task_of("wavespeed", "wavespeed-ai/qwen-image/edit-plus"), Some(EDIT));
        assert_eq!(task_of("fal-ai", "fal-ai/flux-2/edit"), Some(EDIT_OR_IMAGE));
        assert_eq!(task_of("together", "Wan-AI/Wan2.2-I2V-A14B"), Some(ANIMATE));
        assert_eq!(
            task_of("fal-ai", "fal-ai/ltx-video/image-to-video"),
            Some(ANIMATE_OR_VIDEO)
        );
        assert_eq!(task_of("hf-inference", "timbrooks/instruct-pix2pix"), Some(EDIT));
        // Every provider's first model is still a text one (the CLI's offline tour relies on it).
        for provider in crate::PROVIDERS {
            let first = catalogue
                .iter()
                .flat_map(|m| &m.entries)
                .find(|e| e.provider == provider && e.status == "live")
                .unwrap();
            assert!(first.task.starts_with("text-to-"), "{provider}: {first:?}");
        }
        // One entry per provider and model (the model-info form is keyed by provider).
        for model in &catalogue {
            let providers: std::collections::HashSet<_> = model.entries.iter().map(|e| e.provider).collect();
            assert_eq!(providers.len(), model.entries.len(), "{}", model.id);
        }
    }

    #[test]
    fn both_mapping_forms_keep_the_order() {
        let model = &builtin()[0];
        let by_provider = model.mapping_by_provider();
        let keys: Vec<&String> = by_provider.as_object().unwrap().keys().collect();
        assert_eq!(keys[0], "fal-ai");
        assert_eq!(model.mapping_list()[0]["provider"], "fal-ai");
    }
}
