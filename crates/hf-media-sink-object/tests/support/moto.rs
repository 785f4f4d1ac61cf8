//! A real S3-compatible server for tests: moto (`pip install "moto[server]"`), started on a free
//! loopback port as a child process and stopped when the [`Moto`] value is dropped.
//!
//! The binary is `$HF_MEDIA_MOTO_SERVER` (a path), else `moto_server` on `PATH`. When neither
//! exists, starting fails the test with instructions: the S3 tests never pass silently.

use std::io::Read as _;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The variable naming the moto server binary.
pub const MOTO_VAR: &str = "HF_MEDIA_MOTO_SERVER";

const HOW_TO_GET_IT: &str = "the S3 tests need moto's S3 server. Install it with\n\n    \
    python3 -m venv .venv-moto && .venv-moto/bin/pip install \"moto[server]\"\n\nthen run the tests with \
    HF_MEDIA_MOTO_SERVER=$PWD/.venv-moto/bin/moto_server (or put moto_server on PATH); \
    .ci/moto.sh does both";

/// A running moto server.
pub struct Moto {
    /// `sh`, which runs moto and stops it when its standard input closes (also if this process
    /// dies without dropping this value).
    shell: Child,
    stdin: Option<ChildStdin>,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Where the moto server binary is, or why it was not found.
pub fn find_moto() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(MOTO_VAR) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{MOTO_VAR}={} is not a file; {HOW_TO_GET_IT}", path.display()))
        };
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("moto_server"))
            .find(|p| p.is_file())
    });
    if let Some(path) = on_path {
        return Ok(path);
    }
    // Neither: install it once into the target folder (PyPI is reachable wherever `cargo` is), so that
    // the README's test command works on a fresh machine with Python 3.
    static INSTALLED: std::sync::Mutex<Option<Result<PathBuf, String>>> = std::sync::Mutex::new(None);
    let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    installed.get_or_insert_with(install_moto).clone()
}

/// `python3 -m venv {target}/moto-venv` and `pip install "moto[server]"` into it, unless it is there.
fn install_moto() -> Result<PathBuf, String> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let venv = target.join("moto-venv");
    let server = venv.join("bin").join("moto_server");
    if server.is_file() {
        return Ok(server);
    }
    eprintln!("installing moto[server] into {} (once)", venv.display());
    let run = |command: &mut Command, what: &str| -> Result<(), String> {
        let output = command
            .output()
            .map_err(|e| format!("{what} could not run ({e}); {HOW_TO_GET_IT}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed: {}; {HOW_TO_GET_IT}",
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    };
    run(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        "python3 -m venv",
    )?;
    run(
        Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "moto[server]>=5.2,<6",
        ]),
        "pip install moto[server]",
    )?;
    if server.is_file() {
        Ok(server)
    } else {
        Err(format!(
            "moto_server is not in {} after installing it; {HOW_TO_GET_IT}",
            venv.display()
        ))
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free loopback port");
    listener.local_addr().expect("its address").port()
}

fn responds(port: u16) -> bool {
    use std::io::Write as _;
    let Ok(mut stream) = TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

impl Moto {
    /// Starts moto on a free loopback port and waits until it answers. Panics, with how to install
    /// it, when moto is not found.
    pub fn start() -> Self {
        let binary = find_moto().unwrap_or_else(|why| panic!("{why}"));
        Self::start_with(&binary)
    }

    fn start_with(binary: &Path) -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let log = dir.path().join("moto.log");
        for _attempt in 0..5 {
            let port = free_port();
            // `read` returns when our end of the pipe closes (drop, or this process dying); then moto
            // is stopped.
            let script = r#""$0" -H 127.0.0.1 -p "$1" >"$2" 2>&1 & moto=$!; read -r _; kill "$moto"; wait "$moto""#;
            let mut shell = Command::new("sh")
                .arg("-c")
                .arg(script)
                .arg(binary)
                .arg(port.to_string())
                .arg(&log)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("could not start {} through sh: {e}", binary.display()));
            let stdin = shell.stdin.take();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if responds(port) {
                    return Self {
                        shell,
                        stdin,
                        port,
                        log,
                        _dir: dir,
                    };
                }
                if let Ok(Some(_)) = shell.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // The port may have been taken meanwhile: try another one.
            stop(&mut shell, stdin);
        }
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        panic!(
            "moto ({}) did not answer on a loopback port; its log:\n{log_text}",
            binary.display()
        );
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The options an S3 client needs for this server: its endpoint, plain HTTP, dummy keys.
    pub fn options(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "moto-test-secret-key".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Creates `bucket` (moto accepts unsigned requests).
    pub async fn create_bucket(&self, bucket: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint()))
            .send()
            .await
            .expect("moto answers");
        assert!(
            response.status().is_success(),
            "creating bucket {bucket}: {}",
            response.status()
        );
    }

    /// The multipart uploads moto has open in `bucket` (`ListMultipartUploads`): their keys.
    pub async fn open_uploads(&self, bucket: &str) -> Vec<String> {
        let body = reqwest::Client::new()
            .get(format!("{}/{bucket}?uploads", self.endpoint()))
            .send()
            .await
            .expect("moto answers")
            .text()
            .await
            .expect("a body");
        body.split("<Upload>")
            .skip(1)
            .filter_map(|upload| {
                let key = upload.split_once("<Key>")?.1.split_once("</Key>")?.0;
                Some(key.to_owned())
            })
            .collect()
    }

    /// What moto logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        stop(&mut self.shell, self.stdin.take());
    }
}

/// Stops the shell running moto: closing its standard input makes it stop moto; killed if it
/// lingers.
fn stop(shell: &mut Child, stdin: Option<ChildStdin>) {
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = shell.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = shell.kill();
    let _ = shell.wait();
}
