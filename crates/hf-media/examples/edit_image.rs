//! Editing and animating your own picture, offline: the embedded emulator plays the Hub and the
//! providers (their real image-to-image and image-to-video protocols), and its outputs are made from the
//! input, so you can see that your picture was used.
//!
//! ```sh
//! cargo run -p hf-media --example edit_image            # writes ./generated_media/…png and …mp4
//! cargo run -p hf-media --example edit_image -- cat.png # your own picture
//! ```
//! Against the real service, drop the emulator and give a token: `MediaGenerator::builder().token(…)`.

use std::path::PathBuf;

use futures::StreamExt;
use hf_media::{GenerateRequest, GenerationEvent, MediaGenerator, MediaInput, Task};
use hf_media_emulator::Emulator;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let picture = match std::env::args().nth(1) {
        Some(path) => PathBuf::from(path),
        None => {
            // A picture to edit: an orange disc on blue.
            let path = std::env::temp_dir().join("hf-media-example-input.png");
            image::RgbImage::from_fn(320, 240, |x, y| {
                let (dx, dy) = (i64::from(x) - 160, i64::from(y) - 120);
                if dx * dx + dy * dy < 80 * 80 {
                    image::Rgb([240, 130, 30])
                } else {
                    image::Rgb([30, 60, 200])
                }
            })
            .save(&path)?;
            path
        }
    };

    let emulator = Emulator::new().start(([127, 0, 0, 1], 0).into()).await?;
    let generator = MediaGenerator::builder().emulator_url(emulator.url()).build()?;

    // An edit: the providers serving FLUX.1 Kontext for image-to-image are tried in the Hub's order.
    let edit = GenerateRequest::new("make it wear a golden crown")
        .model("black-forest-labs/FLUX.1-Kontext-dev")
        .image(MediaInput::path(&picture));
    // An animation of the same picture.
    let animation = GenerateRequest::new("it starts rolling")
        .model("Wan-AI/Wan2.2-I2V-A14B")
        .task(Task::ImageToVideo)
        .image(MediaInput::path(&picture));

    for request in [edit, animation] {
        let mut events = generator.generate(request);
        while let Some(event) = events.next().await {
            match event {
                GenerationEvent::Attempt {
                    provider, provider_id, ..
                } => println!("→ {provider} ({provider_id})"),
                GenerationEvent::Media(media) => println!(
                    "✓ {} ({}, {} bytes) from {} input(s)",
                    media.location,
                    media.mime,
                    media.bytes,
                    media.inputs.len()
                ),
                GenerationEvent::Error { error, .. } => eprintln!("✗ {error}"),
                _ => {}
            }
        }
    }
    Ok(())
}
