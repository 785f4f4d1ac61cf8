//! `hf-media serve` run as a child process for a test, the way its users start it: the real binary, a
//! free loopback port (`--addr 127.0.0.1:0`), its own output folder and `HOME`, and no variable of the
//! test's environment that would change what it does. The address is read from the first line the
//! server prints (`hf-media serve listening on http://ADDR  (…)`); stdout and stderr are collected (to
//! show when a test fails; a test that panics while holding the server prints them); the child is killed
//! when the [`Serve`] is dropped.
//!
//! Self-contained (std and `tempfile` only), so any test file can include it:
//!
//! ```ignore
//! #[path = "support/serve.rs"]
//! mod serve;
//!
//! let server = serve::Serve::builder().args(["--emulator", "--api-key", "sk-test"]).start();
//! let models = format!("{}/v1/models", server.url());
//! ```

#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The first stdout line's start; the address follows.
const LISTENING: &str = "hf-media serve listening on http://";

/// Variables of the test's environment that would change what the server does.
const CLEARED: [&str; 25] = [
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_ENDPOINT",
    "HF_ROUTER_URL",
    "HF_MEDIA_BATCH_STATE",
    "HF_MEDIA_EMULATOR_BEHAVIOURS",
    "HF_MEDIA_API_KEYS",
    "HF_MEDIA_SIGNING_KEY",
    "HF_MEDIA_SERVE_STATE",
    "XDG_CACHE_HOME",
    "RUST_LOG",
    "FAL_KEY",
    "REPLICATE_API_TOKEN",
    "TOGETHER_API_KEY",
    "NSCALE_API_KEY",
    "WAVESPEED_API_KEY",
    "ZAI_API_KEY",
    "NOVITA_API_KEY",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_PROFILE",
    "AWS_ALLOW_HTTP",
];

/// How a server is started: `hf-media serve` plus these arguments and variables.
#[derive(Debug, Clone)]
pub struct ServeBuilder {
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    startup: Duration,
}

/// A running `hf-media serve` child process.
pub struct Serve {
    child: Child,
    addr: SocketAddr,
    output: PathBuf,
    logs: Arc<Mutex<Logs>>,
    /// Whether [`Serve::logs`] was called (a failure message showed them: no need to print them again).
    shown: AtomicBool,
    readers: Vec<JoinHandle<()>>,
    // Last: removed once the child is gone.
    home: tempfile::TempDir,
}

/// What the server printed.
#[derive(Debug, Default)]
struct Logs {
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("pid", &self.child.id())
            .field("addr", &self.addr)
            .field("output", &self.output)
            .finish_non_exhaustive()
    }
}

impl Default for ServeBuilder {
    fn default() -> Self {
        ServeBuilder {
            args: Vec::new(),
            envs: Vec::new(),
            startup: Duration::from_secs(60),
        }
    }
}

impl ServeBuilder {
    /// One more argument after `serve`.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// More arguments after `serve`. Without `--addr`, `--addr 127.0.0.1:0` is added; without `-o` /
    /// `--output`, an output folder of its own ([`Serve::output`]).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// A variable of the server's environment (set after the test's own are cleared).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// How long the server may take to print its address (default 60 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup = timeout;
        self
    }

    fn has_flag(&self, long: &str, short: Option<&str>) -> bool {
        self.args.iter().any(|arg| {
            let arg = arg.to_string_lossy();
            arg == long || arg.starts_with(&format!("{long}=")) || short.is_some_and(|s| arg == s)
        })
    }

    /// Starts the server and waits for its address. Panics, with what the server printed, when it exits
    /// or says nothing in time.
    pub fn start(self) -> Serve {
        let home = tempfile::Builder::new()
            .prefix("hf-media-serve-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot make a temporary folder for hf-media serve: {e}"));
        let mut args = vec![OsString::from("serve")];
        if !self.has_flag("--addr", None) {
            args.extend(["--addr".into(), "127.0.0.1:0".into()]);
        }
        let output = if let Some(given) = output_flag(&self.args) {
            given
        } else {
            let output = home.path().join("media");
            args.extend(["--output".into(), output.clone().into_os_string()]);
            output
        };
        args.extend(self.args.iter().cloned());

        let mut command = Command::new(env!("CARGO_BIN_EXE_hf-media"));
        for var in CLEARED {
            command.env_remove(var);
        }
        command
            .args(&args)
            .env("HOME", home.path())
            .env("HF_HOME", home.path().join("hf"))
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", env!("CARGO_BIN_EXE_hf-media")));

        let logs = Arc::new(Mutex::new(Logs::default()));
        let (first_line, address) = mpsc::channel::<String>();
        let stdout = child.stdout.take().unwrap_or_else(|| unreachable!("stdout is piped"));
        let stderr = child.stderr.take().unwrap_or_else(|| unreachable!("stderr is piped"));
        let stdout_logs = logs.clone();
        let stdout_reader = std::thread::spawn(move || {
            let mut first = Some(first_line);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lock(&stdout_logs).stdout.push_str(&format!("{line}\n"));
                if let Some(sender) = first.take() {
                    let _ = sender.send(line);
                }
            }
        });
        let stderr_logs = logs.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut stderr = stderr;
            let mut chunk = [0u8; 8192];
            loop {
                match stderr.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => lock(&stderr_logs)
                        .stderr
                        .push_str(&String::from_utf8_lossy(&chunk[..n])),
                }
            }
        });

        let mut serve = Serve {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            output,
            logs,
            shown: AtomicBool::new(false),
            readers: vec![stdout_reader, stderr_reader],
            home,
        };
        let line = match address.recv_timeout(self.startup) {
            Ok(line) => line,
            Err(_) => {
                let exited = serve.child.try_wait().ok().flatten();
                // Let the readers catch what it printed last.
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "hf-media serve {} before printing its address ({:?})\n{}",
                    match exited {
                        Some(status) => format!("exited ({status})"),
                        None => format!("said nothing for {:?}", self.startup),
                    },
                    args,
                    serve.logs()
                );
            }
        };
        serve.addr = parse_listening(&line)
            .unwrap_or_else(|| panic!("hf-media serve's first line is not `{LISTENING}ADDR  (…)`: {line:?}"));
        serve
    }
}

/// The folder given with `-o DIR`, `--output DIR` or `--output=DIR`.
fn output_flag(args: &[OsString]) -> Option<PathBuf> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "-o" || text == "--output" {
            return args.next().map(PathBuf::from);
        }
        if let Some(value) = text.strip_prefix("--output=") {
            return Some(PathBuf::from(value));
        }
    }
    None
}

/// The address in `hf-media serve listening on http://ADDR  (…)`.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    line.trim()
        .strip_prefix(LISTENING)?
        .split_whitespace()
        .next()?
        .trim_end_matches('/')
        .parse()
        .ok()
}

fn lock(logs: &Mutex<Logs>) -> std::sync::MutexGuard<'_, Logs> {
    logs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Serve {
    /// How a server is started.
    pub fn builder() -> ServeBuilder {
        ServeBuilder::default()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADDR/v1`: an OpenAI client's `base_url`.
    pub fn api_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Where its media are stored.
    pub fn output(&self) -> &Path {
        &self.output
    }

    /// Its `HOME` (a temporary folder, removed with the server).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// A folder of its own for the test's files (removed with the server).
    pub fn scratch(&self) -> PathBuf {
        let scratch = self.home.path().join("scratch");
        let _ = std::fs::create_dir_all(&scratch);
        scratch
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        lock(&self.logs).stderr.clone()
    }

    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        lock(&self.logs).stdout.clone()
    }

    /// Both, labelled, to show with a failure. (A server dropped while its thread panics prints them
    /// on stderr unless they were asked for.)
    pub fn logs(&self) -> String {
        self.shown.store(true, Ordering::Relaxed);
        let logs = lock(&self.logs);
        format!(
            "--- hf-media serve stdout ---\n{}--- hf-media serve stderr ---\n{}--- end of hf-media serve output ---",
            logs.stdout, logs.stderr
        )
    }

    /// Whether the child still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits up to `timeout` for the child to exit; its exit status, or `None` if it
    /// still runs.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        if std::thread::panicking() && !self.shown.load(Ordering::Relaxed) {
            eprintln!("{}", self.logs());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_read_from_the_first_line() {
        assert_eq!(
            parse_listening("hf-media serve listening on http://127.0.0.1:41234  (API keys required)"),
            Some(SocketAddr::from(([127, 0, 0, 1], 41234)))
        );
        assert_eq!(
            parse_listening("hf-media serve listening on http://[::1]:80  (open (no API key))"),
            "[::1]:80".parse().ok()
        );
        assert_eq!(parse_listening("something else"), None);
        assert_eq!(
            output_flag(&["--emulator".into(), "-o".into(), "x".into()]),
            Some(PathBuf::from("x"))
        );
        assert_eq!(output_flag(&["--output=y".into()]), Some(PathBuf::from("y")));
        assert_eq!(output_flag(&["--emulator".into()]), None);
    }
}
