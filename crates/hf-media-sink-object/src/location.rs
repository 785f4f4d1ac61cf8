//! Storage URLs: which service, which environment variables, and the URIs of objects.

use object_store::path::Path;
use url::Url;

use hf_media_sink::SinkError;

/// The URL forms [`ObjectSink::from_url`](crate::ObjectSink::from_url) accepts, for messages.
const ACCEPTED: &str = "expected s3://bucket/prefix, gs://bucket/prefix, az://container/prefix, \
                        file:///absolute/folder or memory:///prefix";

/// The kind of service an [`ObjectSink`](crate::ObjectSink) writes to: decides which environment
/// variables configure it and what its error messages tell to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// Amazon S3 or an S3-compatible server (`s3://`, `s3a://`).
    S3,
    /// Google Cloud Storage (`gs://`).
    Gcs,
    /// Azure Blob Storage (`az://`, `azure://`, `abfs://`, `abfss://`, `adl://`).
    Azure,
    /// Local files (`file://`).
    Local,
    /// An in-memory store (`memory://`).
    Memory,
    /// Anything else (a store given to [`ObjectSink::new`](crate::ObjectSink::new) with another URI).
    Other,
}

impl Backend {
    /// The backend a URL scheme names, if any.
    fn of_scheme(scheme: &str) -> Self {
        match scheme.to_ascii_lowercase().as_str() {
            "s3" | "s3a" => Self::S3,
            "gs" => Self::Gcs,
            "az" | "azure" | "abfs" | "abfss" | "adl" => Self::Azure,
            "file" => Self::Local,
            "memory" => Self::Memory,
            _ => Self::Other,
        }
    }

    /// The backend of a URI such as `s3://bucket`.
    pub(crate) fn of_uri(uri: &str) -> Self {
        uri.split_once("://")
            .map_or(Self::Other, |(scheme, _)| Self::of_scheme(scheme))
    }

    /// Prefix of the environment variables configuring it.
    fn env_prefix(self) -> Option<&'static str> {
        match self {
            Self::S3 => Some("AWS_"),
            Self::Gcs => Some("GOOGLE_"),
            Self::Azure => Some("AZURE_"),
            Self::Local | Self::Memory | Self::Other => None,
        }
    }

    /// What to check when the store cannot even be set up.
    pub(crate) fn config_hint(self) -> &'static str {
        match self {
            Self::S3 => {
                "check the URL (s3://bucket/prefix) and the AWS_* variables (AWS_REGION, AWS_ENDPOINT_URL, \
                 AWS_ALLOW_HTTP=true for a plain http:// endpoint)"
            }
            Self::Gcs => "check the URL (gs://bucket/prefix) and the GOOGLE_* variables (GOOGLE_SERVICE_ACCOUNT...)",
            Self::Azure => {
                "check the URL (az://container/prefix) and the AZURE_* variables (AZURE_STORAGE_ACCOUNT_NAME...)"
            }
            Self::Local => "check the URL (file:///absolute/folder)",
            Self::Memory | Self::Other => "check the URL",
        }
    }

    /// What to check when the credentials were refused.
    pub(crate) fn credentials_hint(self) -> &'static str {
        match self {
            Self::S3 => {
                "check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and that they \
                 may write to the bucket"
            }
            Self::Gcs => {
                "check the credentials (GOOGLE_SERVICE_ACCOUNT, GOOGLE_APPLICATION_CREDENTIALS) and that they may \
                 write to the bucket"
            }
            Self::Azure => {
                "check the credentials (AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_KEY or AZURE_CLIENT_ID...) and \
                 that they may write to the container"
            }
            Self::Local => "check that the folder is writable",
            Self::Memory | Self::Other => "check the store's credentials",
        }
    }

    /// What to check when the bucket (or a key) was not found.
    pub(crate) fn not_found_hint(self) -> &'static str {
        match self {
            Self::S3 => {
                "check that the bucket exists, and the region (AWS_REGION) and endpoint (AWS_ENDPOINT_URL) it is \
                 served from"
            }
            Self::Gcs => "check that the bucket exists",
            Self::Azure => "check that the container and the storage account (AZURE_STORAGE_ACCOUNT_NAME) exist",
            Self::Local => "check that the folder exists",
            Self::Memory | Self::Other => "check that the bucket exists",
        }
    }

    /// What to check when the service could not be reached.
    pub(crate) fn connection_hint(self) -> &'static str {
        match self {
            Self::S3 => {
                "check that the endpoint is reachable (AWS_ENDPOINT_URL, or the region's endpoint from AWS_REGION); \
                 a plain http:// endpoint also needs AWS_ALLOW_HTTP=true"
            }
            Self::Gcs => "check the network connection to Google Cloud Storage",
            Self::Azure => "check the network connection to the storage account",
            Self::Local => "check the disk",
            Self::Memory | Self::Other => "check the connection to the store",
        }
    }
}

/// A URL [`ObjectSink::from_url`](crate::ObjectSink::from_url) can serve.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// The URL itself.
    pub(crate) url: Url,
    /// The URL as messages show it: no password, no query.
    pub(crate) shown: String,
    /// URI of the store's root (`s3://bucket`, `file://`...).
    pub(crate) uri_base: String,
    /// The service.
    pub(crate) backend: Backend,
}

fn refused(why: String) -> SinkError {
    SinkError::backend(format!("{why}; {ACCEPTED}"), false)
}

/// The URL without password, query or fragment.
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// Parses and checks a storage URL.
pub(crate) fn parse(raw: &str) -> Result<Parsed, SinkError> {
    let url = Url::parse(raw).map_err(|e| {
        // An unparsable URL is only echoed when it cannot hold a `user:password@`.
        if raw.contains('@') {
            refused(format!("the storage URL is not a valid URL ({e})"))
        } else {
            refused(format!("the storage URL `{raw}` is not a valid URL ({e})"))
        }
    })?;
    let shown = shown(&url);
    let scheme = url.scheme().to_ascii_lowercase();
    let backend = Backend::of_scheme(&scheme);
    let host = url.host_str().filter(|h| !h.is_empty());
    let uri_base = match backend {
        Backend::S3 | Backend::Gcs | Backend::Azure => {
            let Some(host) = host else {
                return Err(refused(format!("the storage URL {shown} names no bucket or container")));
            };
            if backend == Backend::Gcs && !cfg!(feature = "gcp") {
                return Err(refused(format!(
                    "{shown}: gs:// URLs need the `gcp` feature of hf-media-sink-object"
                )));
            }
            if backend == Backend::Azure && !cfg!(feature = "azure") {
                return Err(refused(format!(
                    "{shown}: Azure URLs need the `azure` feature of hf-media-sink-object"
                )));
            }
            // `abfss://container@account.dfs.core.windows.net/...`: the user part is the container.
            let user = match url.username() {
                "" => String::new(),
                user => format!("{user}@"),
            };
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{scheme}://{user}{host}{port}")
        }
        Backend::Local => {
            if host.is_some() {
                return Err(refused(format!(
                    "{shown}: a file URL names a local folder and no host (three slashes: file:///abs/path)"
                )));
            }
            "file://".to_owned()
        }
        Backend::Memory => {
            if host.is_some() {
                return Err(refused(format!("{shown}: a memory URL has no host (memory:///prefix)")));
            }
            "memory://".to_owned()
        }
        Backend::Other => {
            return Err(refused(format!(
                "the storage URL {shown} has an unsupported scheme `{scheme}` (for an S3-compatible server, use \
                 s3://bucket/prefix with AWS_ENDPOINT_URL)"
            )));
        }
    };
    Ok(Parsed {
        url,
        shown,
        uri_base,
        backend,
    })
}

/// The variables of `env` that configure the service `url` names: `AWS_*` for `s3://`, `GOOGLE_*`
/// for `gs://`, `AZURE_*` for Azure; none for local files and memory.
pub(crate) fn env_options(url: &str, env: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    let Some(prefix) = Backend::of_scheme(scheme).env_prefix() else {
        return Vec::new();
    };
    env.into_iter()
        .filter(|(key, _)| key.to_ascii_uppercase().starts_with(prefix))
        .collect()
}

/// A root URI without its trailing slash (`s3://bucket/` → `s3://bucket`), except right after the
/// scheme (`file://`, `memory://`).
pub(crate) fn normalize_base(mut base: String) -> String {
    if base.ends_with('/') && !base.ends_with("://") {
        base.pop();
    }
    base
}

/// The URI of `key` under the root URI `base`.
pub(crate) fn join_uri(base: &str, key: &Path) -> String {
    format!("{base}/{key}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn only_the_services_variables_are_read() {
        let vars = env(&[
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("GOOGLE_SERVICE_ACCOUNT", "g"),
            ("AZURE_STORAGE_ACCOUNT_NAME", "z"),
            ("ENDPOINT", "http://not-for-us"),
            ("REGION", "nowhere"),
        ]);
        let s3 = env_options("s3://b/p", vars.clone());
        assert_eq!(
            s3,
            env(&[("AWS_ACCESS_KEY_ID", "a"), ("AWS_ENDPOINT_URL", "http://127.0.0.1:1")])
        );
        assert_eq!(env_options("s3a://b/p", vars.clone()).len(), 2);
        assert_eq!(
            env_options("gs://b/p", vars.clone()),
            env(&[("GOOGLE_SERVICE_ACCOUNT", "g")])
        );
        assert_eq!(
            env_options("az://c/p", vars.clone()),
            env(&[("AZURE_STORAGE_ACCOUNT_NAME", "z")])
        );
        assert!(env_options("file:///tmp/x", vars.clone()).is_empty());
        assert!(env_options("nonsense", vars).is_empty());
    }

    #[test]
    fn bases() {
        assert_eq!(parse("s3://bucket/a/b").unwrap().uri_base, "s3://bucket");
        assert_eq!(parse("S3A://bucket").unwrap().uri_base, "s3a://bucket");
        assert_eq!(parse("file:///tmp/x").unwrap().uri_base, "file://");
        assert_eq!(parse("memory:///x").unwrap().uri_base, "memory://");
        assert_eq!(parse("s3://bucket/a").unwrap().backend, Backend::S3);
        #[cfg(feature = "gcp")]
        assert_eq!(parse("gs://bucket/a").unwrap().uri_base, "gs://bucket");
        #[cfg(feature = "azure")]
        assert_eq!(
            parse("abfss://container@account.dfs.core.windows.net/p")
                .unwrap()
                .uri_base,
            "abfss://container@account.dfs.core.windows.net"
        );
    }

    #[test]
    fn shown_urls_drop_passwords_and_queries() {
        let parsed = parse("s3://user:secret-pass@bucket/p?token=abc").unwrap();
        assert!(!parsed.shown.contains("secret-pass"), "{}", parsed.shown);
        assert!(!parsed.shown.contains("abc"), "{}", parsed.shown);
        assert!(!parsed.uri_base.contains("secret-pass"));
        let err = parse("ftp://user:secret-pass@host/x").unwrap_err();
        assert!(!err.to_string().contains("secret-pass"), "{err}");
        let err = parse("::user:secret-pass@").unwrap_err();
        assert!(!err.to_string().contains("secret-pass"), "{err}");
    }

    #[test]
    fn base_normalization_and_join() {
        assert_eq!(normalize_base("s3://b/".into()), "s3://b");
        assert_eq!(normalize_base("file://".into()), "file://");
        assert_eq!(join_uri("file://", &Path::from("tmp/a.png")), "file:///tmp/a.png");
        assert_eq!(join_uri("s3://b", &Path::from("m/a.png")), "s3://b/m/a.png");
        assert_eq!(Backend::of_uri("gs://b"), Backend::Gcs);
        assert_eq!(Backend::of_uri("whatever"), Backend::Other);
    }
}
