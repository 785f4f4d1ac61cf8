//! Test support (feature `testing`): a server on a free loopback port, in this process, against the
//! embedded emulator, its media in a temporary folder.

use std::net::SocketAddr;
use std::path::Path;

use hf_media::{EMULATOR_TOKEN, MediaGeneratorBuilder};
use hf_media_emulator::{Emulator, RunningEmulator};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{Server, ServerConfig, ServerError};

/// A running server and the emulator it talks to; both stop when it is dropped (or at [`stop`]).
///
/// [`stop`]: TestServer::stop
pub struct TestServer {
    /// The emulator (set behaviours on it, read its stats).
    pub emulator: Emulator,
    running: RunningEmulator,
    addr: SocketAddr,
    output: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// Starts a server with the defaults.
    pub async fn start() -> Result<TestServer, ServerError> {
        TestServer::start_with(|_| {}).await
    }

    /// Starts a server whose configuration `configure` changes first (its `output` is the temporary
    /// folder: leave it).
    pub async fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> Result<TestServer, ServerError> {
        TestServer::start_on(Emulator::new(), configure, |builder| builder).await
    }

    /// Starts a server on `emulator`, with its configuration changed by `configure` and its generator by
    /// `build`.
    pub async fn start_on(
        emulator: Emulator,
        configure: impl FnOnce(&mut ServerConfig),
        build: impl FnOnce(MediaGeneratorBuilder) -> MediaGeneratorBuilder,
    ) -> Result<TestServer, ServerError> {
        let io = |context: &str| {
            let context = context.to_owned();
            move |source| ServerError::Io { context, source }
        };
        let output = tempfile::tempdir().map_err(io("temporary folder"))?;
        let running = emulator
            .start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| ServerError::Config(format!("the emulator did not start: {e}")))?;
        let mut config = ServerConfig::new(output.path());
        configure(&mut config);
        let builder = MediaGeneratorBuilder::default()
            .emulator_url(running.url())
            .token(EMULATOR_TOKEN)
            .provider_keys_from_env(false)
            .progress_interval(std::time::Duration::from_millis(100));
        let server = Server::new(build(builder), config).await?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(io("bind"))?;
        let addr = listener.local_addr().map_err(io("local address"))?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        }));
        Ok(TestServer {
            emulator,
            running,
            addr,
            output,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The emulator's URL.
    pub fn emulator_url(&self) -> String {
        self.running.url()
    }

    /// The media folder.
    pub fn output(&self) -> &Path {
        self.output.path()
    }

    /// Sends the shutdown signal and waits for the server to end (its grace period included).
    pub async fn stop(&mut self) -> Result<(), ServerError> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| ServerError::Internal(format!("the server task failed: {e}")))?,
            None => Ok(()),
        }
    }

    /// Sends the shutdown signal and returns at once.
    pub fn signal_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
