//! `serve_load --url URL --body JSON [--header 'Name: value']… --concurrency N --warmup SECS --duration SECS
//! [--ramp SECS] [--timeout SECS]`: the load generator of the `serve` scenario of `cargo xtask bench`,
//! built in release (`cargo build --release -p xtask --example serve_load`) so that it costs the two shared
//! cores little.
//!
//! `N` workers on one thread (a current-thread tokio runtime), each with its own keep-alive HTTP/1.1
//! connection (hyper's client connection, `TCP_NODELAY`), send `POST URL` with the body back to back:
//! `{prompt}` in the body is replaced by `bench W S` (worker W, its S-th request), so that no two requests
//! are alike. A request's latency is from just before it is written to the end of its answer's body.
//! With `--ramp`, worker W starts W × ramp / N seconds late, so that against a slow provider the requests
//! arrive spread out, as from independent clients, rather than in waves of N (give the provider's
//! latency; the ramp is part of the warm-up, which should be longer).
//!
//! The first `warmup` seconds are not counted (connections opened, caches filled, the first wave of a slow
//! provider under way); then requests *completed* during the next `duration` seconds are: their number
//! over `duration` is the throughput, and their latencies give the percentiles. When the window ends the
//! workers send nothing more, and the requests still in flight are waited for (up to `timeout`), so the
//! server is left idle. A failed request (transport error, timeout, status other than 2xx) is counted as
//! an error, and its worker opens a new connection.
//!
//! Prints one JSON line: `completed`, `errors` (in the window), `ok_total` (every success, warm-up and
//! drain included), `errors_total`, `window_s`, `rps`, `p50_ms`, `p90_ms`, `p99_ms`, `mean_ms`,
//! `max_ms`, `connections` (opened), `first_error` (if any) and `sample` (the start of the
//! first successful answer, as text).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;

struct Args {
    /// `host:port` to connect to.
    addr: String,
    /// The request target (path and query).
    path: String,
    body: String,
    headers: Vec<(String, String)>,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    ramp: Duration,
    timeout: Duration,
}

fn seconds(flag: &str, value: Option<String>) -> Result<Duration, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    value
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("{flag} {value}: not a number of seconds"))
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut url, mut body, mut headers) = (None, None, Vec::new());
    let (mut concurrency, mut warmup, mut duration, mut ramp, mut timeout) = (
        1,
        Duration::from_secs(1),
        Duration::from_secs(5),
        Duration::ZERO,
        Duration::from_secs(60),
    );
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--url" => url = args.next(),
            "--body" => body = args.next(),
            "--header" => {
                let line = args.next().ok_or("--header needs a value")?;
                let (name, value) = line
                    .split_once(':')
                    .ok_or_else(|| format!("--header {line}: not `Name: value`"))?;
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
            "--concurrency" => {
                concurrency = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--concurrency needs a positive number")?;
            }
            "--warmup" => warmup = seconds("--warmup", args.next())?,
            "--duration" => duration = seconds("--duration", args.next())?,
            "--ramp" => ramp = seconds("--ramp", args.next())?,
            "--timeout" => timeout = seconds("--timeout", args.next())?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let url = url.ok_or("--url is needed")?;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs"))?;
    let (addr, path) = match rest.find('/') {
        Some(slash) => (rest[..slash].to_owned(), rest[slash..].to_owned()),
        None => (rest.to_owned(), "/".to_owned()),
    };
    Ok(Args {
        addr,
        path,
        body: body.ok_or("--body is needed")?,
        headers,
        concurrency,
        warmup,
        duration,
        ramp,
        timeout,
    })
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    /// Latencies of the requests completed in the window, in microseconds.
    latencies: Vec<u32>,
    errors: u64,
    ok_total: u64,
    errors_total: u64,
    connections: u64,
    first_error: Option<String>,
    sample: Option<String>,
}

async fn connect(addr: &str) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// One request on `sender`: its status and body.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(u16, Bytes), String> {
    sender.ready().await.map_err(|e| format!("connection: {e}"))?;
    let answer = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = answer.status().as_u16();
    let body = answer
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, body))
}

async fn worker(id: usize, args: Arc<Args>, window: (Instant, Instant)) -> Tally {
    let (from, to) = window;
    let mut tally = Tally::default();
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut seq = 0u64;
    let delay = args.ramp.mul_f64(id as f64 / args.concurrency as f64);
    tokio::time::sleep(delay).await;
    while Instant::now() < to {
        let started = Instant::now();
        let current = match sender.take() {
            Some(current) if !current.is_closed() => Ok(current),
            _ => {
                tally.connections += 1;
                connect(&args.addr).await
            }
        };
        let body = args.body.replace("{prompt}", &format!("bench {id} {seq}"));
        seq += 1;
        let mut request = Request::post(args.path.as_str())
            .header(header::HOST, args.addr.as_str())
            .header(header::CONTENT_TYPE, "application/json");
        for (name, value) in &args.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let outcome = match (current, request.body(Full::new(Bytes::from(body)))) {
            (Ok(mut current), Ok(request)) => {
                match tokio::time::timeout(args.timeout, exchange(&mut current, request)).await {
                    Ok(Ok((status, body))) if (200..300).contains(&status) => {
                        sender = Some(current);
                        Ok(body)
                    }
                    Ok(Ok((status, body))) => {
                        sender = Some(current);
                        Err(format!(
                            "status {status}: {}",
                            String::from_utf8_lossy(&body[..body.len().min(300)])
                        ))
                    }
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(format!("no answer within {:?}", args.timeout)),
                }
            }
            (Err(e), _) => Err(e),
            (_, Err(e)) => Err(format!("bad request: {e}")),
        };
        let done = Instant::now();
        let counted = done >= from && done <= to;
        match outcome {
            Ok(body) => {
                tally.ok_total += 1;
                if counted {
                    let micros = done.duration_since(started).as_micros();
                    tally.latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                }
                if tally.sample.is_none() {
                    tally.sample = Some(String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
                }
            }
            Err(e) => {
                tally.errors_total += 1;
                if counted {
                    tally.errors += 1;
                }
                tally.first_error.get_or_insert(e);
                // Do not spin on a server that refuses at once.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tally
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1e3
}

async fn run(args: Args) -> serde_json::Value {
    let args = Arc::new(args);
    let start = Instant::now();
    let window = (start + args.warmup, start + args.warmup + args.duration);
    let workers: Vec<_> = (0..args.concurrency)
        .map(|id| tokio::spawn(worker(id, Arc::clone(&args), window)))
        .collect();
    let mut all = Tally::default();
    for handle in workers {
        let Ok(tally) = handle.await else {
            all.errors_total += 1;
            continue;
        };
        all.latencies.extend(tally.latencies);
        all.errors += tally.errors;
        all.ok_total += tally.ok_total;
        all.errors_total += tally.errors_total;
        all.connections += tally.connections;
        if all.first_error.is_none() {
            all.first_error = tally.first_error;
        }
        if all.sample.is_none() {
            all.sample = tally.sample;
        }
    }
    all.latencies.sort_unstable();
    let n = all.latencies.len();
    let window_s = args.duration.as_secs_f64();
    let mean = all.latencies.iter().map(|&l| f64::from(l)).sum::<f64>() / n.max(1) as f64 / 1e3;
    json!({
        "completed": n,
        "errors": all.errors,
        "ok_total": all.ok_total,
        "errors_total": all.errors_total,
        "window_s": window_s,
        "rps": n as f64 / window_s,
        "p50_ms": percentile(&all.latencies, 50.0),
        "p90_ms": percentile(&all.latencies, 90.0),
        "p99_ms": percentile(&all.latencies, 99.0),
        "mean_ms": mean,
        "max_ms": all.latencies.last().map_or(f64::NAN, |&l| f64::from(l) / 1e3),
        "connections": all.connections,
        "first_error": all.first_error,
        "sample": all.sample,
        "elapsed_s": start.elapsed().as_secs_f64(),
    })
}

fn main() -> Result<(), String> {
    let args = parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let answer = runtime.block_on(run(args));
    println!("{answer}");
    Ok(())
}
