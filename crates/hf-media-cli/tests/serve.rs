//! `hf-media serve` as an operator starts it: its flags checked before it listens (an open server on a
//! public address refused, bad URLs and states named), keys from the environment, and a clean exit on
//! SIGTERM.

#![allow(clippy::unwrap_used)]

#[path = "support/serve.rs"]
mod serve;

use std::process::Command;
use std::time::Duration;

use serve::Serve;

/// Runs `hf-media serve ARGS` expecting it to refuse to start: its exit code and stderr.
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let output = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_hf-media"))
        .arg("serve")
        .args(args)
        .arg("-o")
        .arg(output.path())
        .env_remove("HF_MEDIA_API_KEYS")
        .env_remove("HF_MEDIA_SERVE_STATE")
        .output()
        .unwrap();
    (run.status.code(), String::from_utf8_lossy(&run.stderr).into_owned())
}

#[test]
fn an_open_server_on_a_public_address_is_refused() {
    let (code, stderr) = refused(&["--emulator", "--addr", "0.0.0.0:0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--api-key") && stderr.contains("--allow-open"),
        "{stderr}"
    );
}

#[test]
fn bad_flags_say_what_to_give() {
    for (args, expected) in [
        (vec!["--emulator", "--public-url", "not a url"], "--public-url"),
        (vec!["--emulator", "--state", "sqlite::memory:"], "--state"),
        (vec!["--emulator", "--max-concurrent", "0"], "--max-concurrent"),
        (vec!["--emulator", "--cors-origin", "example.com"], "--cors-origin"),
        (vec!["--emulator", "--header-timeout", "0"], "--header-timeout"),
    ] {
        let (code, stderr) = refused(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn keys_come_from_the_environment_and_sigterm_ends_it_cleanly() {
    let mut server = Serve::builder()
        .args(["--emulator"])
        .env("HF_MEDIA_API_KEYS", "sk-one,sk-two")
        .start();
    assert!(server.stdout().contains("API keys required"), "{}", server.stdout());
    let models = format!("{}/models", server.api_url());
    let status = |key: Option<&str>| {
        let mut request = ureq_like_get(&models);
        if let Some(key) = key {
            request.push(format!("Authorization: Bearer {key}"));
        }
        http_status(&server, &request)
    };
    assert_eq!(status(None), 401);
    assert_eq!(status(Some("sk-three")), 401);
    assert_eq!(status(Some("sk-two")), 200);
    let exit = server.terminate(Duration::from_secs(20)).expect("it exits on SIGTERM");
    assert_eq!(exit.code(), Some(0), "{}", server.logs());
    assert!(server.stderr().contains("shutting down"), "{}", server.stderr());
}

/// The request lines of a GET of `url` (path only; the host is the server's).
fn ureq_like_get(url: &str) -> Vec<String> {
    let path = url.splitn(4, '/').nth(3).map_or("/".to_owned(), |p| format!("/{p}"));
    vec![format!("GET {path} HTTP/1.1"), "Connection: close".into()]
}

/// Sends `lines` to the server over a plain TCP connection and reads the status code.
fn http_status(server: &Serve, lines: &[String]) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut request = lines[0].clone();
    request.push_str(&format!("\r\nHost: {}", server.addr()));
    for line in &lines[1..] {
        request.push_str("\r\n");
        request.push_str(line);
    }
    request.push_str("\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}
