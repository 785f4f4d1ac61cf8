//! The connection loop: HTTP/1.1 and HTTP/2 (cleartext, `h2c` prior knowledge) on one port, a deadline
//! on each request's headers (a slow client cannot hold a connection open forever), the client address
//! on every request, and the shutdown: stop accepting, let in-flight requests finish within the grace
//! period, then cancel what is left.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::auth::ClientAddr;
use crate::{ServerConfig, ServerError};

/// How long cancelled requests get to answer after the grace period.
const AFTER_GRACE: Duration = Duration::from_secs(5);
/// What an HTTP/2 (prior knowledge) connection starts with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits, for at most `timeout`, until the client has sent enough to tell its protocol: a byte that
/// departs from the HTTP/2 preface, or the whole preface. hyper's header timeout only starts once the
/// protocol is known, so without this a client that connects and stays silent (or sends half the
/// preface) would hold its connection, and a file descriptor, forever. `false`: it did not (or closed).
async fn protocol_known(stream: &TcpStream, timeout: Duration) -> bool {
    let known = async {
        let mut buffer = [0u8; H2_PREFACE.len()];
        loop {
            match stream.peek(&mut buffer).await {
                Ok(0) | Err(_) => return false,
                Ok(n) if n == H2_PREFACE.len() || buffer[..n] != H2_PREFACE[..n] => return true,
                // A part of the preface: the rest is on its way (peeking again at once would spin).
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    };
    tokio::time::timeout(timeout, known).await.unwrap_or(false)
}

pub(crate) async fn serve(
    router: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    config: ServerConfig,
    stop: CancellationToken,
) -> Result<(), ServerError> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(256);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, address) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before it was accepted: wait a
                    // moment rather than spin.
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ClientAddr(address));
            router.clone().oneshot(request)
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let header_timeout = config.header_timeout;
        tokio::spawn(async move {
            if !protocol_known(&stream, header_timeout).await {
                tracing::debug!(client = %address, "a connection sent no request within the header timeout; closed");
                return;
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(client = %address, %error, "a connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(grace = ?config.grace, "shutting down: no new connections; in-flight requests may finish");
    let closed = graceful.shutdown();
    tokio::pin!(closed);
    tokio::select! {
        () = &mut closed => {}
        () = tokio::time::sleep(config.grace) => {
            stop.cancel();
            if tokio::time::timeout(AFTER_GRACE, &mut closed).await.is_err() {
                tracing::warn!("some connections were still open after the grace period; they are dropped");
            }
        }
    }
    Ok(())
}
