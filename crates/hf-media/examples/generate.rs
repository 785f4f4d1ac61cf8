//! One image from the real Hugging Face service, with every event printed.
//!
//! ```sh
//! HF_TOKEN=hf_... cargo run -p hf-media --example generate -- "a lighthouse at dawn"
//! ```
//! (`HF_ENDPOINT` and `HF_ROUTER_URL` point it at another Hub and router.)

use futures::StreamExt;
use hf_media::{GenerateRequest, GenerationEvent};

#[tokio::main]
async fn main() -> Result<(), hf_media::Error> {
    let prompt = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "A beautiful sunset over the mountains".into());
    let generator = hf_media::MediaGeneratorBuilder::from_env().build()?;
    let mut events = generator.generate(GenerateRequest::new(prompt));
    while let Some(event) = events.next().await {
        match event {
            GenerationEvent::Media(media) => println!("saved {} via {}", media.location, media.provider),
            GenerationEvent::Progress { .. } => {}
            other => println!("{other:?}"),
        }
    }
    Ok(())
}
