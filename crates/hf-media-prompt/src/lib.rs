#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod aspect;
mod error;
mod message;
mod params;

pub use aspect::AspectRatio;
pub use error::PromptError;
pub use message::{ChatMessage, ContentPart, MessageContent, Role, chat_images, format_prompt};
pub use params::GenerationParams;
