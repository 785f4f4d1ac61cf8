use thiserror::Error;

/// Everything that can be wrong with a prompt or its parameters.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum PromptError {
    /// Neither an explicit prompt nor a trailing user message with text was given.
    #[error("the prompt is empty: pass a prompt, or chat messages that end with a user message containing text")]
    Empty,
    /// The aspect ratio is not one of the supported ones.
    #[error("unknown aspect ratio `{given}`: use one of {}", crate::AspectRatio::SUPPORTED.join(", "))]
    UnknownAspectRatio {
        /// What the caller gave.
        given: String,
    },
    /// A parameter has a value no provider can use.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter's name, as the CLI and the canonical map spell it.
        name: &'static str,
        /// What is wrong and what is expected instead.
        reason: String,
    },
}
