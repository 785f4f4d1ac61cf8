//! `object_store` errors as [`SinkError`]s: retryable or not, with what to check, without
//! credentials.

use std::error::Error as StdError;

use object_store::Error;
use object_store::client::{HttpError, HttpErrorKind};

use hf_media_sink::SinkError;

use crate::Backend;

/// Longest store message kept in a [`SinkError::Backend`] (response bodies can be long).
const MAX_DETAIL: usize = 600;

/// Option keys whose values are secrets (matched as substrings of the lower-case key).
const SECRET_KEYS: &[&str] = &[
    "secret",
    "token",
    "password",
    "access_key",
    "account_key",
    "sas",
    "credential",
    "service_account_key",
    "customer_key",
];

/// Removes known secret values, and the queries of URLs (a signed URL's signature), from
/// messages.
#[derive(Default)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// Remembers the values of the secret-looking `options` (keys in lower case).
    pub(crate) fn from_options(options: &[(String, String)]) -> Self {
        let mut secrets: Vec<String> = options
            .iter()
            .filter(|(key, value)| value.len() >= 4 && SECRET_KEYS.iter().any(|s| key.contains(s)))
            .map(|(_, value)| value.clone())
            .collect();
        // Longest first, so that a secret containing another is removed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    /// `text` without secrets or URL queries, cut to a readable length.
    pub(crate) fn clean(&self, text: &str) -> String {
        let mut text = strip_url_queries(&shorten_xml_errors(text));
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "[redacted]");
            }
        }
        if text.len() > MAX_DETAIL {
            let mut end = MAX_DETAIL;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        text
    }
}

/// The text between `<tag>` and `</tag>` in `xml`.
fn xml_field<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(&xml[start..start + len])
}

/// `text` with an S3-style XML error body (`<?xml …><Error><Code>NoSuchBucket</Code><Message>…`)
/// shortened to `NoSuchBucket: The specified bucket does not exist`.
fn shorten_xml_errors(text: &str) -> String {
    let Some(end_tag) = text.find("</Error>") else {
        return text.to_owned();
    };
    let start = text[..end_tag]
        .find("<?xml")
        .or_else(|| text[..end_tag].find("<Error>"))
        .unwrap_or(end_tag);
    let body = &text[start..end_tag];
    let Some(code) = xml_field(body, "Code") else {
        return text.to_owned();
    };
    let summary = match xml_field(body, "Message") {
        Some(message) => format!("{code}: {message}"),
        None => code.to_owned(),
    };
    format!("{}{summary}{}", &text[..start], &text[end_tag + "</Error>".len()..])
}

/// `text` with the query of every `http(s)://` URL replaced by `?…`.
fn strip_url_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("http") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        if !(from.starts_with("http://") || from.starts_with("https://")) {
            out.push_str("http");
            rest = &from[4..];
            continue;
        }
        let end = from
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')'))
            .unwrap_or(from.len());
        let url = &from[..end];
        match url.split_once('?') {
            Some((base, _)) => {
                out.push_str(base);
                out.push_str("?…");
            }
            None => out.push_str(url),
        }
        rest = &from[end..];
    }
    out.push_str(rest);
    out
}

/// The name was taken: `PutMode::Create` found an object there.
pub(crate) fn is_taken(err: &Error) -> bool {
    matches!(err, Error::AlreadyExists { .. } | Error::Precondition { .. })
}

/// The store refuses attributes (the `Content-Type`): store without them.
pub(crate) fn refuses_attributes(err: &Error) -> bool {
    matches!(err, Error::NotImplemented { operation, .. } if operation.contains("attributes"))
}

/// The store refuses `PutMode::Create`: fall back to unique names alone.
pub(crate) fn refuses_create(err: &Error) -> bool {
    match err {
        Error::NotImplemented { operation, .. } => operation.contains("Create"),
        Error::NotSupported { .. } => true,
        _ => false,
    }
}

/// Whether deleting failed because a folder is there, not an object (local files: the folder of
/// `a.png/b.png` is `a.png`): there is no object of that name to delete.
pub(crate) fn is_a_folder(err: &Error) -> bool {
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(at) = source {
        if let Some(io) = at.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::IsADirectory {
                return true;
            }
        }
        source = at.source();
    }
    false
}

/// Whether a failed put or completion may still have written the object (the request may have
/// reached the store: a timeout, a broken connection, a 5xx...), so that it must be deleted to be
/// sure nothing is left.
pub(crate) fn may_have_written(err: &Error) -> bool {
    matches!(err, Error::Generic { .. } | Error::JoinError { .. })
}

/// Why a request failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// The service could not be reached, or the connection broke or timed out.
    Connection,
    /// The service is busy or failing (5xx, throttling).
    Busy,
    /// No such bucket (or container, or key).
    NotFound,
    /// The credentials were refused.
    Auth,
    /// Another lasting refusal.
    Refused,
}

/// What an error chain says about its cause.
fn cause_of(source: &(dyn StdError + 'static)) -> Cause {
    let mut current: Option<&(dyn StdError + 'static)> = Some(source);
    while let Some(err) = current {
        if let Some(http) = err.downcast_ref::<HttpError>() {
            return match http.kind() {
                HttpErrorKind::Connect
                | HttpErrorKind::Request
                | HttpErrorKind::Timeout
                | HttpErrorKind::Interrupted => Cause::Connection,
                // A response cut short.
                HttpErrorKind::Decode => Cause::Busy,
                _ => Cause::Refused,
            };
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind;
            if matches!(
                io.kind(),
                ErrorKind::TimedOut
                    | ErrorKind::Interrupted
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::ConnectionRefused
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof
            ) {
                return Cause::Connection;
            }
        }
        current = err.source();
    }
    cause_of_text(&source.to_string())
}

/// What an error's text says: an HTTP status (`status code: 503 ...`) or an S3 error code.
fn cause_of_text(text: &str) -> Cause {
    const BUSY_CODES: &[&str] = &[
        "SlowDown",
        "Throttl",
        "TooManyRequests",
        "RequestLimitExceeded",
        "InternalError",
        "ServiceUnavailable",
        "ServerBusy",
        "RequestTimeout",
        "OperationTimedOut",
    ];
    const NOT_FOUND_CODES: &[&str] = &["NoSuchBucket", "ContainerNotFound", "NoSuchKey"];
    const AUTH_CODES: &[&str] = &[
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "AuthenticationFailed",
        "AuthorizationFailure",
    ];
    if let Some(at) = text.find("status code: ") {
        let digits: String = text[at + "status code: ".len()..].chars().take(3).collect();
        if let Ok(status) = digits.parse::<u16>() {
            return match status {
                408 | 429 | 500..=599 => Cause::Busy,
                401 | 403 => Cause::Auth,
                404 => Cause::NotFound,
                _ => Cause::Refused,
            };
        }
    }
    if BUSY_CODES.iter().any(|code| text.contains(code)) {
        Cause::Busy
    } else if NOT_FOUND_CODES.iter().any(|code| text.contains(code)) {
        Cause::NotFound
    } else if AUTH_CODES.iter().any(|code| text.contains(code)) {
        Cause::Auth
    } else {
        Cause::Refused
    }
}

/// A [`SinkError::Backend`] for `err`, met while `doing` something to `uri`: retryable for 5xx,
/// throttling, timeouts and connection errors; not for refused credentials, a missing bucket, a
/// taken name or a refused request. The message says what to check, without credentials.
pub(crate) fn backend_error(backend: Backend, doing: &str, uri: &str, err: &Error, redactor: &Redactor) -> SinkError {
    let (retryable, hint) = match err {
        Error::NotFound { .. } => (false, backend.not_found_hint()),
        Error::PermissionDenied { .. } | Error::Unauthenticated { .. } => (false, backend.credentials_hint()),
        Error::AlreadyExists { .. } | Error::Precondition { .. } => (
            false,
            "the name was taken by another writer although it holds a random part; store the media again",
        ),
        Error::NotSupported { .. } | Error::NotImplemented { .. } => (
            false,
            "the store does not support this operation; use another kind of store",
        ),
        Error::InvalidPath { .. } => (false, "check the prefix of the storage URL"),
        Error::UnknownConfigurationKey { .. } => (false, backend.config_hint()),
        Error::Generic { source, .. } => match cause_of(source.as_ref()) {
            Cause::Connection => (true, backend.connection_hint()),
            Cause::Busy => (
                true,
                "the store is busy, throttling or failing; storing again later may succeed",
            ),
            Cause::NotFound => (false, backend.not_found_hint()),
            Cause::Auth => (false, backend.credentials_hint()),
            Cause::Refused => (false, backend.config_hint()),
        },
        // A part task that panicked or was cancelled.
        Error::JoinError { .. } => (false, "an upload task failed"),
        _ => (false, backend.config_hint()),
    };
    let detail = redactor.clean(&err.to_string());
    SinkError::backend(format!("{doing} {uri} failed: {detail}; {hint}"), retryable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(source: impl StdError + Send + Sync + 'static) -> Error {
        Error::Generic {
            store: "S3",
            source: Box::new(source),
        }
    }

    fn text(message: &str) -> Error {
        Error::Generic {
            store: "S3",
            source: message.to_owned().into(),
        }
    }

    fn retryable(err: &Error) -> bool {
        backend_error(Backend::S3, "storing", "s3://b/k", err, &Redactor::default()).is_retryable()
    }

    #[test]
    fn statuses_and_codes() {
        assert!(retryable(&text(
            "Error performing PUT http://x/b/k in 1s - Server returned non-2xx status code: 503 Service Unavailable: "
        )));
        assert!(retryable(&text(
            "Server returned non-2xx status code: 500 Internal Server Error"
        )));
        assert!(retryable(&text(
            "Server returned non-2xx status code: 429 Too Many Requests"
        )));
        assert!(!retryable(&text(
            "Server returned non-2xx status code: 400 Bad Request: <Code>EntityTooSmall</Code>"
        )));
        assert!(retryable(&text(
            "Server returned error response: <Error><Code>SlowDown</Code></Error>"
        )));
        assert!(retryable(&text(
            "Server returned error response: <Error><Code>InternalError</Code></Error>"
        )));
        assert!(!retryable(&text("something odd")));
        let message =
            |err: &Error| backend_error(Backend::S3, "listing", "s3://b/p", err, &Redactor::default()).to_string();
        let missing = text("Server returned non-2xx status code: 404 Not Found: <Code>NoSuchBucket</Code>");
        assert!(!retryable(&missing));
        assert!(
            message(&missing).contains("check that the bucket exists"),
            "{}",
            message(&missing)
        );
        let denied = text("Server returned non-2xx status code: 403 Forbidden: <Code>SignatureDoesNotMatch</Code>");
        assert!(!retryable(&denied));
        assert!(
            message(&denied).contains("AWS_SECRET_ACCESS_KEY"),
            "{}",
            message(&denied)
        );
        let denied = text("Server returned error response: <Code>AccessDenied</Code>");
        assert!(message(&denied).contains("AWS_ACCESS_KEY_ID"), "{}", message(&denied));
    }

    #[test]
    fn transport_errors_are_retryable() {
        let connect = HttpError::new(HttpErrorKind::Connect, std::io::Error::other("connection refused"));
        assert!(retryable(&generic(connect)));
        let timeout = HttpError::new(HttpErrorKind::Timeout, std::io::Error::other("timed out"));
        assert!(retryable(&generic(timeout)));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(retryable(&generic(io)));
        let disk = std::io::Error::other("No space left on device");
        assert!(!retryable(&generic(disk)));
    }

    #[test]
    fn refusals_are_not_retryable_and_say_what_to_check() {
        let source = || -> Box<dyn StdError + Send + Sync> { "x".into() };
        let cases = [
            (
                Error::PermissionDenied {
                    path: "k".into(),
                    source: source(),
                },
                "AWS_SECRET_ACCESS_KEY",
            ),
            (
                Error::Unauthenticated {
                    path: "k".into(),
                    source: source(),
                },
                "AWS_ACCESS_KEY_ID",
            ),
            (
                Error::NotFound {
                    path: "k".into(),
                    source: source(),
                },
                "bucket exists",
            ),
            (
                Error::Precondition {
                    path: "k".into(),
                    source: source(),
                },
                "taken",
            ),
        ];
        for (err, hint) in cases {
            let sink_error = backend_error(Backend::S3, "storing", "s3://b/k", &err, &Redactor::default());
            assert!(!sink_error.is_retryable(), "{sink_error}");
            let message = sink_error.to_string();
            assert!(message.contains(hint), "{message}");
            assert!(message.contains("storing s3://b/k failed"), "{message}");
        }
    }

    #[test]
    fn secrets_and_queries_never_show() {
        let options = vec![
            ("aws_secret_access_key".to_owned(), "wJalrXUtnFEMI-secret".to_owned()),
            ("aws_session_token".to_owned(), "FwoGZXIvYXdzE-token".to_owned()),
            ("aws_region".to_owned(), "us-east-1".to_owned()),
        ];
        let redactor = Redactor::from_options(&options);
        let err = text(
            "Error performing PUT https://b.s3.amazonaws.com/k?X-Amz-Signature=abcdef&uploadId=1 - \
             echo wJalrXUtnFEMI-secret and FwoGZXIvYXdzE-token in us-east-1",
        );
        let message = backend_error(Backend::S3, "storing", "s3://b/k", &err, &redactor).to_string();
        assert!(!message.contains("wJalrXUtnFEMI-secret"), "{message}");
        assert!(!message.contains("FwoGZXIvYXdzE-token"), "{message}");
        assert!(!message.contains("X-Amz-Signature"), "{message}");
        assert!(message.contains("https://b.s3.amazonaws.com/k?…"), "{message}");
        assert!(message.contains("us-east-1"), "not a secret: {message}");
    }

    #[test]
    fn long_details_are_cut() {
        let err = text(&"é".repeat(2000));
        let message = backend_error(Backend::S3, "storing", "s3://b/k", &err, &Redactor::default()).to_string();
        assert!(message.len() < 1000, "{}", message.len());
    }

    #[test]
    fn xml_error_bodies_are_shortened() {
        let text = "404 Not Found: <?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Error><Code>NoSuchBucket</Code>\
                    <Message>The specified bucket does not exist</Message><RequestId>x</RequestId></Error> (end)";
        assert_eq!(
            shorten_xml_errors(text),
            "404 Not Found: NoSuchBucket: The specified bucket does not exist (end)"
        );
        assert_eq!(shorten_xml_errors("no xml"), "no xml");
        assert_eq!(shorten_xml_errors("<Error><Code>SlowDown</Code></Error>"), "SlowDown");
        assert_eq!(shorten_xml_errors("odd </Error>"), "odd </Error>");
    }

    #[test]
    fn url_queries_are_stripped_anywhere() {
        assert_eq!(strip_url_queries("a http://h/p?x=1 b"), "a http://h/p?… b");
        assert_eq!(strip_url_queries("httpd https://h/p"), "httpd https://h/p");
        assert_eq!(strip_url_queries("<u>https://h/?s=1</u>"), "<u>https://h/?…</u>");
    }
}
