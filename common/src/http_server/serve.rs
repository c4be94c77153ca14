//! Serving connections: the accept loop, its errors, and the graceful drain on shutdown.
//!
//! [`serve`] is axum's own `serve` with what it lacks: hyper gets a timer, so the header read
//! timeout of [`ConnectionLimits`] is in effect, and a semaphore bounds the connections.
//! [`run_to_completion`] is for a handler's work that a closing connection must not cut short.

use std::{sync::Arc, time::Duration};

use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::ConnectionLimits;

/// Runs `work` to completion even if the caller goes away.
///
/// hyper drops a request's future when its connection closes, and a caller that times out
/// closes it. For work with effects outside the process (a charge, a row), being dropped
/// half-way leaves them half-done: a card charged and the order still `pending`. Spawned, the
/// work finishes and records its outcome; only the answer is lost, and a retry with the same
/// idempotency key finds the outcome. The work runs in the current span.
pub async fn run_to_completion<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> T {
    match tokio::spawn(work.instrument(tracing::Span::current())).await {
        Ok(value) => value,
        // A panic in the work is a panic in the handler (the server layer answers 500).
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => panic!("the work was cancelled: {error}"),
    }
}

/// How every service's `main` ends: binds its `LISTEN_ADDR` and [`serve`]s `router` within
/// its connection limits until SIGTERM or Ctrl-C ([`crate::shutdown::signal`]).
pub async fn serve_until_signal(
    service: &crate::config::shared::ServiceConfig,
    router: axum::Router,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let listener = tokio::net::TcpListener::bind(service.listen_addr)
        .await
        .with_context(|| format!("binding LISTEN_ADDR {}", service.listen_addr))?;
    serve(
        listener,
        router,
        service.connections,
        crate::shutdown::signal(),
    )
    .await
    .context("serving HTTP")
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then waits for
/// in-flight requests to finish (their spans end, and are queued for export, before this
/// returns).
///
/// The shape is axum's own `serve` and hyper-util's graceful-shutdown example: accept, serve
/// each connection on its own task with hyper's HTTP/1 connection, and on shutdown stop
/// accepting and let every connection finish the request it is serving (idle ones close at
/// once). The differences are the reason this exists: hyper gets a timer, so the header read
/// timeout is in effect, and a semaphore bounds the connections.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(
        address = %listener.local_addr()?,
        http.header_read_timeout_ms =
            u64::try_from(limits.header_read_timeout.as_millis()).unwrap_or(u64::MAX),
        http.max_connections = limits.max_connections,
        "listening"
    );
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let service = TowerToHyperService::new(router);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        // A slot first, then a connection: past the bound, connections wait in the backlog
        // rather than being accepted and left unserved. The semaphore is never closed.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    on_accept_error(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection =
            graceful.watch(http.serve_connection(TokioIo::new(stream), service.clone()));
        tokio::spawn(async move {
            // A client that goes away, sends garbage or is too slow with its headers ends
            // its connection with an error; the server carries on.
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "connection closed with an error");
            }
            drop(slot);
        });
    }

    // Stop accepting at once: new connections are refused instead of waiting in a backlog
    // no one reads.
    drop(listener);
    graceful.shutdown().await;
    tracing::info!("stopped: all in-flight requests answered");
    Ok(())
}

/// What to do when `accept` fails: errors that concern one connection (the client reset it
/// before it was accepted) are nothing to act on; anything else, such as running out of file
/// descriptors, is logged and retried after a pause, so the loop does not spin (as hyper's
/// and axum's accept loops do).
async fn on_accept_error(error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %error, "cannot accept connections; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use axum::{Router, routing::get};

    use super::*;
    use crate::http_server::healthz;

    /// The server under test: `serve` with `limits` on 127.0.0.1:0, a `/healthz` and a
    /// `/slow` that answers after 300 ms. Dropping the sender starts the shutdown.
    async fn server(
        limits: ConnectionLimits,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::new().route("/healthz", get(healthz)).route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router, limits, async {
            let _ = stopped.await;
        }));
        (address, stop, server)
    }

    fn limits(header_read_timeout_ms: u64, max_connections: usize) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_millis(header_read_timeout_ms),
            max_connections,
        }
    }

    const GET_HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";

    /// Reads one HTTP/1.1 answer (head and `Content-Length` body) and returns its head.
    async fn read_answer(stream: &mut tokio::net::TcpStream) -> String {
        use tokio::io::AsyncReadExt as _;
        let mut buffer = Vec::new();
        let mut chunk = [0; 1024];
        loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if buffer.len() >= end + 4 + length {
                    return head;
                }
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection closed before a whole answer");
            buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// Waits up to `within` for the server to close `stream`, and says how long it took.
    async fn closed_within(
        stream: &mut tokio::net::TcpStream,
        within: Duration,
    ) -> Option<Duration> {
        use tokio::io::AsyncReadExt as _;
        let start = std::time::Instant::now();
        let mut byte = [0; 1];
        match tokio::time::timeout(within, stream.read(&mut byte)).await {
            Ok(Ok(0) | Err(_)) => Some(start.elapsed()),
            Ok(Ok(_)) => panic!("the server sent bytes instead of closing"),
            Err(_) => None,
        }
    }

    #[tokio::test]
    async fn a_client_that_sends_its_headers_a_byte_at_a_time_is_disconnected() {
        use tokio::io::AsyncWriteExt as _;
        let (address, _stop, _server) = server(limits(300, 16)).await;
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        // One byte every 50 ms: never idle long, but the headers take 1.8 s to arrive.
        let drip = tokio::spawn(async move {
            for byte in GET_HEALTHZ {
                if write.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let start = std::time::Instant::now();
        let mut buffer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3), async {
            use tokio::io::AsyncReadExt as _;
            read.read_to_end(&mut buffer).await
        })
        .await;
        let elapsed = start.elapsed();
        assert!(read.is_ok(), "still open after {elapsed:?}");
        assert!(
            elapsed < Duration::from_millis(300 + 500),
            "closed only after {elapsed:?}"
        );
        assert!(buffer.is_empty(), "the slow request was served");
        drip.abort();
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
        use tokio::io::AsyncWriteExt as _;
        let (address, _stop, _server) = server(limits(300, 16)).await;
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(GET_HEALTHZ).await.unwrap();
        let head = read_answer(&mut stream).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        // The answer was kept alive; then nothing more is sent.
        let closed = closed_within(&mut stream, Duration::from_secs(2)).await;
        let elapsed = closed.expect("an idle connection stayed open for 2 s");
        assert!(
            elapsed >= Duration::from_millis(200) && elapsed < Duration::from_millis(800),
            "closed after {elapsed:?}, expected about 300 ms"
        );
    }

    #[tokio::test]
    async fn a_connection_past_the_bound_is_served_only_when_another_closes() {
        use tokio::io::AsyncWriteExt as _;
        let (address, _stop, _server) = server(limits(10_000, 1)).await;
        let mut first = tokio::net::TcpStream::connect(address).await.unwrap();
        first.write_all(GET_HEALTHZ).await.unwrap();
        read_answer(&mut first).await;

        // The kernel completes the handshake (the backlog), but the server does not accept.
        let mut second = tokio::net::TcpStream::connect(address).await.unwrap();
        second.write_all(GET_HEALTHZ).await.unwrap();
        let early =
            tokio::time::timeout(Duration::from_millis(500), read_answer(&mut second)).await;
        assert!(
            early.is_err(),
            "the second connection was served past the bound"
        );

        drop(first);
        let head = tokio::time::timeout(Duration::from_secs(2), read_answer(&mut second))
            .await
            .expect("the second connection is served once the first closes");
        assert!(head.starts_with("http/1.1 200"), "{head}");
    }

    #[tokio::test]
    async fn shutdown_answers_the_request_in_flight_then_stops_accepting() {
        use tokio::io::AsyncWriteExt as _;
        let (address, stop, server) = server(limits(5_000, 16)).await;
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        // An idle keep-alive connection too: shutdown closes it at once rather than waiting.
        let mut idle = tokio::net::TcpStream::connect(address).await.unwrap();
        idle.write_all(GET_HEALTHZ).await.unwrap();
        read_answer(&mut idle).await;

        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(stop);
        let head = read_answer(&mut stream).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(
            closed_within(&mut idle, Duration::from_secs(1))
                .await
                .is_some()
        );
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("serve returns once the connections are done")
            .unwrap()
            .unwrap();
        assert!(tokio::net::TcpStream::connect(address).await.is_err());
    }
}
