use thiserror::Error;

/// What can go wrong in the emulator itself.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// The address could not be bound.
    #[error("could not listen on {addr}: {source} (is the port in use? use port 0 to pick a free one)")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Media could not be rendered (a size out of range, an encoder failure).
    #[error("could not render media: {0}")]
    Media(String),
    /// A behaviour or fault setting is invalid.
    #[error("invalid emulator setting: {0}")]
    Config(String),
}
