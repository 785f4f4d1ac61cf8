//! Test support (feature `testing`): a server on a free loopback port, in this process, against the
//! embedded emulator, its media in a temporary folder; [`TestServer::restart`] starts another server
//! over the same folder and emulator (a restart, or a replica taking over).

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
    /// `build`. The builder `build` is given already points at the emulator (its `emulator_url`), reads
    /// no provider key from the environment (`.provider_key(…)` adds one: it is sent to the emulator's
    /// route for that provider), and ticks progress every 100 ms. With `emulator_url` set, the library
    /// sends the emulator's stand-in token ([`EMULATOR_TOKEN`]) whatever `.token(…)` says: to send
    /// another, take `emulator_url` out of the builder's config and point `hub_url`, `router_url` and the
    /// `provider_urls` of the providers called directly at it instead.
    pub async fn start_on(
        emulator: Emulator,
        configure: impl FnOnce(&mut ServerConfig),
        build: impl FnOnce(MediaGeneratorBuilder) -> MediaGeneratorBuilder,
    ) -> Result<TestServer, ServerError> {
        let output = tempfile::tempdir().map_err(io("temporary folder"))?;
        let running = emulator
            .start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| ServerError::Config(format!("the emulator did not start: {e}")))?;
        let (addr, shutdown, task) = launch(&running.url(), output.path(), configure, build).await?;
        Ok(TestServer {
            emulator,
            running,
            addr,
            output,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// Stops the server (as [`stop`](TestServer::stop) does: the shutdown signal, then its grace period)
    /// and starts a new one over the same output folder (its media, sidecars and video job store) and the
    /// same running emulator (its jobs, and the URLs in the provider job tickets the first server
    /// recorded, stay valid), with its configuration changed by `configure` and its generator by `build`:
    /// a restart, or another replica taking over. The new server listens on another port: read
    /// [`url`](TestServer::url) again.
    pub async fn restart(
        &mut self,
        configure: impl FnOnce(&mut ServerConfig),
        build: impl FnOnce(MediaGeneratorBuilder) -> MediaGeneratorBuilder,
    ) -> Result<(), ServerError> {
        self.stop().await?;
        let (addr, shutdown, task) = launch(&self.running.url(), self.output.path(), configure, build).await?;
        self.addr = addr;
        self.shutdown = Some(shutdown);
        self.task = Some(task);
        Ok(())
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

fn io(context: &str) -> impl FnOnce(std::io::Error) -> ServerError {
    let context = context.to_owned();
    move |source| ServerError::Io { context, source }
}

/// A server over `output` against the emulator at `emulator_url`, serving on a free loopback port: its
/// address, its shutdown signal and its task.
async fn launch(
    emulator_url: &str,
    output: &Path,
    configure: impl FnOnce(&mut ServerConfig),
    build: impl FnOnce(MediaGeneratorBuilder) -> MediaGeneratorBuilder,
) -> Result<Launched, ServerError> {
    let mut config = ServerConfig::new(output);
    configure(&mut config);
    let builder = MediaGeneratorBuilder::default()
        .emulator_url(emulator_url)
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
    Ok((addr, shutdown, task))
}

type Launched = (SocketAddr, oneshot::Sender<()>, JoinHandle<Result<(), ServerError>>);

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
