//! One module per Hugging Face inference provider. Everything provider-specific (routes, payload
//! renames, headers, answer shapes, polling) lives in that provider's module.

pub mod fal_ai;
pub mod hf_inference;
pub mod novita;
pub mod nscale;
pub mod openai_compatible;
pub mod replicate;
pub mod together;
pub mod wavespeed;
pub mod zai_org;

pub use fal_ai::FalAi;
pub use hf_inference::HfInference;
pub use novita::Novita;
pub use nscale::Nscale;
pub use openai_compatible::{OpenAiCompatible, ResponseFormat};
pub use replicate::Replicate;
pub use together::Together;
pub use wavespeed::WaveSpeed;
pub use zai_org::ZaiOrg;

/// `{hub}/{model}/resolve/main/{path}`: where a LoRA adapter's weights are downloaded from.
fn lora_weights_url(hub: &url::Url, model: &str, path: &str) -> String {
    format!("{}/{model}/resolve/main/{path}", hub.as_str().trim_end_matches('/'))
}
