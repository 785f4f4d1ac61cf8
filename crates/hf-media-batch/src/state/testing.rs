//! Test support (feature `testing`): a throwaway PostgreSQL cluster.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// How to get PostgreSQL's server binaries, for the error when they are missing.
const INSTALL: &str = "PostgreSQL's server binaries (initdb, pg_ctl) were not found in PATH nor in \
                       /usr/lib/postgresql/*/bin: install them (Debian/Ubuntu: `apt-get install postgresql`; \
                       macOS: `brew install postgresql`), or put their folder in PATH";

/// A throwaway PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 on a free port, with
/// one database made; stopped and removed on drop.
///
/// Runs PostgreSQL's own `initdb` and `pg_ctl` (from `PATH`, else the highest version in
/// `/usr/lib/postgresql/*/bin`); as the `postgres` system user when this process is root (PostgreSQL
/// refuses to run as root). Authentication is `trust`: for tests only.
#[derive(Debug)]
pub struct TempPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    database: String,
    /// Whether the commands run as the `postgres` user.
    as_postgres: bool,
}

impl TempPostgres {
    /// Makes and starts a cluster, and a database `hf_media_test`. The error says what failed (and, when
    /// the binaries are missing, how to install them).
    pub fn start() -> Result<TempPostgres, String> {
        let bin = find_bin().ok_or_else(|| INSTALL.to_owned())?;
        let dir = tempfile::Builder::new()
            .prefix("hf-media-pg-")
            .tempdir()
            .map_err(|e| format!("cannot make a temporary folder: {e}"))?;
        let root = fs::metadata(dir.path()).map_err(|e| e.to_string())?.uid() == 0;
        if root {
            let (uid, gid) = postgres_user()?;
            chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("cannot give {} to the postgres user: {e}", dir.path().display()))?;
        }
        let mut cluster = TempPostgres {
            bin,
            dir,
            port: 0,
            database: "hf_media_test".into(),
            as_postgres: root,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        // A port picked now may be taken by the time the server binds it: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            cluster.port = free_port()?;
            let options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
                 -c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB",
                cluster.port,
                cluster.dir.path().display()
            );
            let log = cluster.dir.path().join("server.log");
            let log = log.to_string_lossy();
            match cluster.run(
                "pg_ctl",
                &["-D", &data, "-o", &options, "-l", &log, "-w", "-t", "60", "start"],
            ) {
                Ok(()) => {
                    let port = cluster.port.to_string();
                    let database = cluster.database.clone();
                    cluster.run(
                        "createdb",
                        &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", &database],
                    )?;
                    return Ok(cluster);
                }
                Err(error) => {
                    let log = fs::read_to_string(cluster.dir.path().join("server.log")).unwrap_or_default();
                    last = format!("{error}\nserver log:\n{log}");
                }
            }
        }
        Err(last)
    }

    /// The URL of its database: `postgres://postgres@127.0.0.1:PORT/hf_media_test`.
    pub fn url(&self) -> String {
        self.url_of(&self.database)
    }

    /// The URL of another database of the cluster.
    pub fn url_of(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Makes another database; returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String, String> {
        let port = self.port.to_string();
        self.run("createdb", &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", name])?;
        Ok(self.url_of(name))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_string_lossy().into_owned()
    }

    /// Runs one of PostgreSQL's programs (as the `postgres` user when root).
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        command.args(args).current_dir(self.dir.path());
        let output = command
            .output()
            .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
        check(program, &output)
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        if self.port != 0 {
            let data = self.data();
            let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        }
    }
}

fn check(program: &str, output: &Output) -> Result<(), String> {
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{program} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// The folder holding `initdb` and `pg_ctl`: in `PATH`, else the highest version under
/// `/usr/lib/postgresql`.
fn find_bin() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_both(&dir) {
                // A PATH entry may hold symbolic links (Debian's /usr/local/bin ones): use the real folder, where
                // createdb and the server are too.
                let real = fs::canonicalize(dir.join("initdb")).ok();
                let real = real.as_deref().and_then(Path::parent).filter(|d| has_both(d));
                return Some(real.map_or(dir.clone(), Path::to_owned));
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The uid and gid of the `postgres` system user.
fn postgres_user() -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Option<u32> {
        let output = Command::new("id").args([flag, "postgres"]).output().ok()?;
        if !output.status.success() {
            return None;
        }
        String::from_utf8(output.stdout).ok()?.trim().parse().ok()
    };
    match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) => Ok((uid, gid)),
        _ => Err(
            "running as root, and PostgreSQL refuses to: a `postgres` system user is needed to run it as \
                  (installing the postgresql package makes one; or run the tests as another user)"
                .to_owned(),
        ),
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}
