//! Serves the API offline against the embedded emulator, asks it for an image the way an OpenAI client
//! does, prints where the image is, and shuts down.
//!
//! ```sh
//! cargo run -p hf-media-server --example serve
//! ```

use std::net::SocketAddr;

use hf_media::MediaGeneratorBuilder;
use hf_media_emulator::Emulator;
use hf_media_server::{Server, ServerConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let emulator = Emulator::new().start(loopback).await?;
    let output = tempfile::tempdir()?;
    let mut config = ServerConfig::new(output.path());
    config.api_keys = vec![hf_media::Secret::new("sk-example")];
    let server = Server::new(MediaGeneratorBuilder::default().emulator_url(emulator.url()), config).await?;
    let listener = tokio::net::TcpListener::bind(loopback).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));

    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/v1/images/generations"))
        .bearer_auth("sk-example")
        .json(
            &serde_json::json!({"model": "black-forest-labs/FLUX.1-schnell", "prompt": "a red fox", "size": "512x512"}),
        )
        .send()
        .await?
        .json()
        .await?;
    println!("made by {}: {}", answer["provider"], answer["data"][0]["url"]);

    let _ = stop.send(());
    serving.await??;
    Ok(())
}
