//! Finding the user's Hugging Face token where the `hf` CLI keeps it.

use std::path::PathBuf;

use secrecy::SecretString;

/// Where a token was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// An environment variable (`HF_TOKEN` or `HUGGING_FACE_HUB_TOKEN`).
    Env(&'static str),
    /// A token file (`$HF_TOKEN_PATH`, or `$HF_HOME/token`).
    File(PathBuf),
}

/// Where to create a token.
pub const TOKEN_SETTINGS_URL: &str = "https://huggingface.co/settings/tokens";

/// Finds the token in the process environment: `HF_TOKEN`, else `HUGGING_FACE_HUB_TOKEN`, else the file
/// `$HF_TOKEN_PATH`, else `$HF_HOME/token` (`HF_HOME` defaults to `~/.cache/huggingface`).
pub fn find_token() -> Option<(SecretString, TokenSource)> {
    find_token_with(
        |name| std::env::var(name).ok(),
        |path| std::fs::read_to_string(path).ok(),
    )
}

/// [`find_token`] with the environment and the file system given as functions (for tests).
pub fn find_token_with(
    env: impl Fn(&str) -> Option<String>,
    read: impl Fn(&std::path::Path) -> Option<String>,
) -> Option<(SecretString, TokenSource)> {
    let clean = |s: String| {
        let t = s.trim().to_owned();
        (!t.is_empty()).then_some(t)
    };
    for name in ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"] {
        if let Some(token) = env(name).and_then(clean) {
            return Some((SecretString::from(token), TokenSource::Env(name)));
        }
    }
    let path = match env("HF_TOKEN_PATH").and_then(clean) {
        Some(path) => PathBuf::from(path),
        None => {
            let home = match env("HF_HOME").and_then(clean) {
                Some(home) => PathBuf::from(home),
                None => {
                    let base = env("XDG_CACHE_HOME")
                        .and_then(clean)
                        .map(PathBuf::from)
                        .or_else(|| env("HOME").and_then(clean).map(|h| PathBuf::from(h).join(".cache")))?;
                    base.join("huggingface")
                }
            };
            home.join("token")
        }
    };
    let token = read(&path).and_then(clean)?;
    Some((SecretString::from(token), TokenSource::File(path)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use secrecy::ExposeSecret;

    use super::*;

    fn find(env: &[(&str, &str)], files: &[(&str, &str)]) -> Option<(String, TokenSource)> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let files: HashMap<PathBuf, String> = files.iter().map(|(k, v)| (PathBuf::from(k), v.to_string())).collect();
        find_token_with(|n| env.get(n).cloned(), |p: &Path| files.get(p).cloned())
            .map(|(t, s)| (t.expose_secret().to_owned(), s))
    }

    #[test]
    fn precedence_is_hf_token_then_legacy_variable_then_files() {
        let files = [("/h/.cache/huggingface/token", "hf_file\n")];
        assert_eq!(
            find(
                &[("HF_TOKEN", "hf_a"), ("HUGGING_FACE_HUB_TOKEN", "hf_b"), ("HOME", "/h")],
                &files
            ),
            Some(("hf_a".into(), TokenSource::Env("HF_TOKEN")))
        );
        assert_eq!(
            find(
                &[("HF_TOKEN", "  "), ("HUGGING_FACE_HUB_TOKEN", "hf_b"), ("HOME", "/h")],
                &files
            ),
            Some(("hf_b".into(), TokenSource::Env("HUGGING_FACE_HUB_TOKEN")))
        );
        assert_eq!(
            find(&[("HOME", "/h")], &files),
            Some((
                "hf_file".into(),
                TokenSource::File("/h/.cache/huggingface/token".into())
            ))
        );
    }

    #[test]
    fn hf_home_and_token_path_move_the_file() {
        let files = [("/custom/token", "hf_c"), ("/tp", "hf_p")];
        assert_eq!(
            find(&[("HF_HOME", "/custom")], &files).map(|t| t.0),
            Some("hf_c".into())
        );
        assert_eq!(
            find(&[("HF_HOME", "/custom"), ("HF_TOKEN_PATH", "/tp")], &files).map(|t| t.0),
            Some("hf_p".into())
        );
        assert_eq!(find(&[("HOME", "/nobody")], &files), None);
    }
}
