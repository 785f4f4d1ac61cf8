//! The Python of the tests that check hf-media with the tools its users have: Hugging Face `datasets`
//! (a batch's output loaded as a dataset), the official `openai` client (against `hf-media serve`),
//! Playwright (the gallery in a browser), and Pillow.
//!
//! `$HF_MEDIA_PYTHON` (a path) when set, else `target/py-venv/bin/python`, made once with `python3 -m
//! venv` and `pip install` of [`PACKAGES`] when it is missing (`.ci/python.sh` does the same before the
//! tests). A lock file keeps parallel tests, and parallel test processes, from installing it twice at
//! once. When none can be had, the test fails with instructions: it never passes silently.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// The variable naming the Python to use.
pub const PYTHON_VAR: &str = "HF_MEDIA_PYTHON";

/// What the tests install (pip requirements), and what they import.
pub const PACKAGES: [&str; 4] = ["datasets>=3", "pillow", "openai>=2.8", "playwright>=1.40"];
const IMPORTS: &str = "import datasets, PIL, openai, playwright";

const HOW_TO_GET_IT: &str = "these tests need a Python with the `datasets`, `pillow`, `openai` and `playwright` \
    packages. Run `source .ci/python.sh` (it makes target/py-venv and exports HF_MEDIA_PYTHON), or set \
    HF_MEDIA_PYTHON to a python that has them (python3 -m venv v && v/bin/pip install datasets pillow openai \
    playwright)";

/// How long a lock holder may take to install before its lock is taken as stale.
const STALE_LOCK: Duration = Duration::from_secs(20 * 60);

/// The Python to run, with every one of [`PACKAGES`] importable. Panics, saying how to get one, when there is
/// none and it cannot be installed.
pub fn python() -> PathBuf {
    static FOUND: std::sync::Mutex<Option<Result<PathBuf, String>>> = std::sync::Mutex::new(None);
    let mut found = FOUND.lock().unwrap_or_else(|p| p.into_inner());
    found
        .get_or_insert_with(find)
        .clone()
        .unwrap_or_else(|why| panic!("{why}"))
}

fn find() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(PYTHON_VAR) {
        let path = PathBuf::from(path);
        return match importable(&path) {
            Ok(()) => Ok(path),
            Err(why) => Err(format!("{PYTHON_VAR}={}: {why}; {HOW_TO_GET_IT}", path.display())),
        };
    }
    let venv = target_dir().join("py-venv");
    let python = venv.join("bin").join("python");
    if importable(&python).is_ok() {
        return Ok(python);
    }
    let _lock = Lock::take(&venv.with_extension("lock"))?;
    // Another process may have installed it while this one waited.
    if importable(&python).is_ok() {
        return Ok(python);
    }
    eprintln!("installing {} into {} (once)", PACKAGES.join(" "), venv.display());
    if !python.is_file() {
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "python3 -m venv",
        )?;
    }
    run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(PACKAGES),
        "pip install",
    )?;
    importable(&python)
        .map(|()| python.clone())
        .map_err(|why| format!("{} after installing: {why}; {HOW_TO_GET_IT}", python.display()))
}

/// Whether `python` runs and imports every package.
fn importable(python: &Path) -> Result<(), String> {
    if !python.is_file() {
        return Err("no such file".into());
    }
    let output = Command::new(python)
        .args(["-c", IMPORTS])
        .output()
        .map_err(|e| format!("cannot run it ({e})"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{IMPORTS}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The cargo target folder the test binary runs from.
fn target_dir() -> PathBuf {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_hf-media"));
    binary
        .parent()
        .and_then(Path::parent)
        .map(Path::to_owned)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
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
}

/// A lock file made with `create_new` (one process wins), holding its owner's pid; removed when dropped.
/// A lock whose owner is gone, or older than [`STALE_LOCK`], is taken over.
struct Lock(PathBuf);

impl Lock {
    fn take(path: &Path) -> Result<Lock, String> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let deadline = Instant::now() + STALE_LOCK + Duration::from_secs(60);
        loop {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut file) => {
                    use std::io::Write as _;
                    let _ = write!(file, "{}", std::process::id());
                    return Ok(Lock(path.to_owned()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if stale(path) {
                        let _ = std::fs::remove_file(path);
                        continue;
                    }
                    if Instant::now() > deadline {
                        return Err(format!("{} is still locked; remove it if no test runs", path.display()));
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => return Err(format!("cannot create the lock {}: {e}", path.display())),
            }
        }
    }
}

/// Whether the lock at `path` was left by a process that is gone, or is too old to be live.
fn stale(path: &Path) -> bool {
    let owner_gone = std::fs::read_to_string(path)
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| Path::new("/proc").is_dir() && !Path::new(&format!("/proc/{pid}")).exists());
    let old = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
        .is_some_and(|age| age > STALE_LOCK);
    owner_gone || old
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
