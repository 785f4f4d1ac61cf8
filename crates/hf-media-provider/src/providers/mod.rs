//! One module per Hugging Face inference provider. Everything provider-specific (routes, payload
//! renames, headers, answer shapes, polling) lives in that provider's module, private to this crate:
//! what a user needs is re-exported here (the providers, their Hub names, their own APIs' URLs).

mod fal_ai;
mod hf_inference;
mod novita;
mod nscale;
mod openai_compatible;
mod replicate;
mod together;
mod wavespeed;
mod zai_org;

pub use fal_ai::{FAL_AI, FAL_QUEUE_URL, FalAi};
pub use hf_inference::{HF_INFERENCE, HfInference};
pub use novita::{NOVITA, NOVITA_API_URL, Novita};
pub use nscale::{NSCALE, NSCALE_API_URL, Nscale};
pub use openai_compatible::{OpenAiCompatible, ResponseFormat};
pub use replicate::{REPLICATE, REPLICATE_API_URL, Replicate};
pub use together::{TOGETHER, TOGETHER_API_URL, Together};
pub use wavespeed::{WAVESPEED, WAVESPEED_API_URL, WaveSpeed};
pub use zai_org::{ZAI_API_URL, ZAI_ORG, ZaiOrg};

/// The providers' protocol pieces (routes, payloads, answer parsers), for this crate's tests.
#[cfg(feature = "testing")]
pub(crate) mod testing {
    pub mod fal_ai {
        //! fal-ai's protocol pieces.
        pub use crate::providers::fal_ai::{
            FAL_AI, QueuedJob, image_fields, parse_result, parse_status, parse_submit, payload, route,
        };
    }
    pub mod hf_inference {
        //! hf-inference's protocol pieces.
        pub use crate::providers::hf_inference::{
            HF_INFERENCE, IMAGE_LEFT_OUT, RequestBody, loading_estimate, parse_json_answer, payload, request_body,
            route,
        };
    }
    pub mod novita {
        //! novita's protocol pieces.
        pub use crate::providers::novita::{
            NOVITA, STATUS_FAILED, STATUS_PROCESSING, STATUS_QUEUED, STATUS_SUCCEED, TASK_RESULT_ROUTE, parse_task_id,
            parse_task_result, payload, route, task_result_route,
        };
    }
    pub mod nscale {
        //! nscale's protocol pieces.
        pub use crate::openai_images::IMAGE_ROUTE;
        pub use crate::providers::nscale::{LEFT_OUT, NSCALE, payload};

        /// Reads nscale's image answer (the OpenAI images shape).
        pub fn parse_image(answer: &serde_json::Value) -> Result<crate::MediaOutput, crate::ProviderError> {
            crate::openai_images::images_api_answer(NSCALE, answer)
        }
    }
    pub mod openai_compatible {
        //! The OpenAI-compatible provider's protocol pieces.
        pub use crate::openai_images::{EDIT_ROUTE, IMAGE_ROUTE};
        pub use crate::providers::openai_compatible::{edit_fields, edit_form, edit_image_field, payload};
    }
    pub mod replicate {
        //! replicate's protocol pieces.
        pub use crate::providers::replicate::{REPLICATE, image_inputs, parse_prediction, payload, route};
    }
    pub mod together {
        //! together's protocol pieces.
        pub use crate::openai_images::IMAGE_ROUTE;
        pub use crate::providers::together::{
            FRAME_IMAGE_LIMIT, TOGETHER, VIDEO_LEFT_OUT, VIDEO_ROUTE, check_frame_images, is_flux1_kontext,
            parse_video_job, payload,
        };

        /// Reads together's image answer (the OpenAI images shape).
        pub fn parse_image(answer: &serde_json::Value) -> Result<crate::MediaOutput, crate::ProviderError> {
            crate::openai_images::images_api_answer(TOGETHER, answer)
        }
    }
    pub mod wavespeed {
        //! wavespeed's protocol pieces.
        pub use crate::providers::wavespeed::{
            PredictionJob, WAVESPEED, image_fields, parse_result, parse_submit, payload, route,
        };
    }
    pub mod zai_org {
        //! zai-org's protocol pieces.
        pub use crate::providers::zai_org::{
            EXTRA_HEADERS, IMAGE_ROUTE, ZAI_ORG, parse_task, parse_task_id, payload, result_route,
        };
    }
}

/// `{hub}/{model}/resolve/main/{path}`: where a LoRA adapter's weights are downloaded from.
fn lora_weights_url(hub: &url::Url, model: &str, path: &str) -> String {
    format!("{}/{model}/resolve/main/{path}", hub.as_str().trim_end_matches('/'))
}

/// Input images and requests for the providers' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use bytes::Bytes;

    use crate::{GenerationParams, GenerationRequest, ImageOrigin, InputImage, ProviderMapping, Task};

    /// A small local PNG-typed image whose bytes end with `tag` (so images differ).
    pub fn png(tag: u8) -> InputImage {
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        bytes.push(tag);
        InputImage::new(Bytes::from(bytes), "image/png", ImageOrigin::File("in.png".into()))
    }

    /// An image the caller gave as an `http(s)` URL.
    pub fn remote(url: &str) -> InputImage {
        let url = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        InputImage::new(Bytes::from_static(b"\xff\xd8\xff"), "image/jpeg", ImageOrigin::Url(url))
    }

    /// A request of `provider` for `task` on `provider_id`, with `images` and `params`.
    pub fn request(
        provider: &str,
        provider_id: &str,
        task: Task,
        images: Vec<InputImage>,
        params: GenerationParams,
    ) -> GenerationRequest {
        GenerationRequest {
            mapping: ProviderMapping::new(provider, provider_id, task, "org/model"),
            prompt: "make it snow".into(),
            params,
            images,
        }
    }
}
