//! Who holds an item: the worker's id, host and process, and whether a process of this host is alive.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// A worker: what holds the items it claimed. One per process is usual ([`WorkerId::current`]); a
/// process may run several.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkerId {
    /// Unique: `{host}/{pid}/{random}` for [`WorkerId::current`].
    pub id: String,
    /// The host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// The PID namespace the pid means something in (Linux: the `/proc/self/ns/pid` link, such as
    /// `pid:[4026531836]`); `None` elsewhere. Another worker's process is judged gone only when its host
    /// and namespace are this worker's and `/proc/{pid}` does not exist; without a namespace only the
    /// lease's expiry frees its items. (Two containers may share a host name, not a PID namespace.)
    pub pid_namespace: Option<String>,
}

impl WorkerId {
    /// This process, with a fresh random part.
    pub fn current() -> WorkerId {
        let host = host_name();
        let pid = std::process::id();
        WorkerId {
            id: format!("{host}/{pid}/{:08x}", fastrand::u32(..)),
            host,
            pid,
            pid_namespace: pid_namespace(),
        }
    }

    /// Whether the process `pid` of a worker on `host` in namespace `namespace` is known to be gone: it is
    /// on this worker's host and namespace and `/proc/{pid}` does not exist. `false` whenever unsure.
    pub(crate) fn sees_gone(&self, host: &str, namespace: Option<&str>, pid: i64) -> bool {
        let Some(mine) = self.pid_namespace.as_deref() else {
            return false;
        };
        if host != self.host || namespace != Some(mine) || pid <= 0 {
            return false;
        }
        !process_exists(pid)
    }
}

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id)
    }
}

/// Whether process `pid` exists (Linux: `/proc/{pid}`; elsewhere assumed).
fn process_exists(pid: i64) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// The PID namespace of this process (Linux only).
fn pid_namespace() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    link.to_str().map(str::to_owned)
}

/// The host name: the kernel's (Linux), `$HOSTNAME`, or what `hostname` prints; `localhost` if none.
fn host_name() -> String {
    let clean = |s: String| {
        let s = s.trim().to_owned();
        (!s.is_empty() && !s.contains('/')).then_some(s)
    };
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(clean)
        .or_else(|| std::env::var("HOSTNAME").ok().and_then(clean))
        .or_else(|| {
            std::process::Command::new("hostname")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .and_then(clean)
        })
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_worker() {
        let a = WorkerId::current();
        let b = WorkerId::current();
        assert_ne!(a.id, b.id);
        assert_eq!(a.pid, std::process::id());
        assert!(a.id.starts_with(&format!("{}/{}/", a.host, a.pid)), "{}", a.id);
        let ns = a.pid_namespace.clone();
        assert!(!a.sees_gone(&a.host, ns.as_deref(), i64::from(a.pid)));
        assert!(!a.sees_gone("elsewhere", ns.as_deref(), 999_999_999));
        if cfg!(target_os = "linux") {
            assert!(a.sees_gone(&a.host, ns.as_deref(), 999_999_999));
            assert!(!a.sees_gone(&a.host, Some("pid:[1]"), 999_999_999));
        }
    }
}
