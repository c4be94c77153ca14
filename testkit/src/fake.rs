//! Fake neighbours for handler tests: a service's router runs in-process, and the service it
//! calls is a small axum router of the test's own, served on a free local port.
//!
//! Besides [`serve`] and the choice between a fake and a neighbour that is down
//! ([`Neighbour`]), a few neighbours that misbehave in ways every client must survive: one
//! that answers with a redirect ([`redirecting_to`]), one that records what reaches it
//! ([`Recorder`], to show that nothing followed the redirect), and one that answers with a
//! body far larger than any real answer ([`LargeBody`]).

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::Request,
    http::{
        HeaderMap, HeaderValue, Method, StatusCode,
        header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION},
    },
    response::{IntoResponse, Response},
};

/// Serves `router` on a free port of 127.0.0.1, in the background, for the rest of the test;
/// returns `http://127.0.0.1:PORT`.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a port for the fake");
    let addr: SocketAddr = listener.local_addr().expect("a bound address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// The URL of a local port nothing listens on: a service that is down.
///
/// The port stays bound, without listening, for the rest of the test process, so a connection
/// to it is refused and the kernel cannot hand it to another test's server running in
/// parallel (a port bound and released at once can be, and then the "down" service answers).
#[expect(
    clippy::unused_async,
    reason = "tokio's socket must be made inside a runtime: being async says so"
)]
pub async fn closed_port_url() -> String {
    static HELD: Mutex<Vec<tokio::net::TcpSocket>> = Mutex::new(Vec::new());
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket
        .bind("127.0.0.1:0".parse().expect("an address"))
        .expect("binding a free port");
    let addr = socket.local_addr().expect("a bound address");
    HELD.lock().expect("the held ports").push(socket);
    format!("http://{addr}")
}

/// Where a service under test sends its calls: to the test's fake, or to a port nobody listens
/// on ([`closed_port_url`]), so that every call fails to connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Neighbour {
    Fake,
    Down,
}

impl Neighbour {
    /// The URL to configure the service with; `fake` is the fake's.
    pub async fn url(self, fake: String) -> String {
        match self {
            Neighbour::Fake => fake,
            Neighbour::Down => closed_port_url().await,
        }
    }
}

/// A neighbour that records every request it receives (method, path, headers, body) and
/// answers each `201` with an empty JSON object. Used as the target of a redirect, to see
/// whether anything follows it there.
pub struct Recorder {
    url: String,
    received: Arc<Mutex<Vec<Recorded>>>,
}

/// A request as a [`Recorder`] received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorder {
    pub async fn start() -> Self {
        let received: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let shared = received.clone();
        let router = Router::new().fallback(move |request: Request| {
            let shared = shared.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 1024 * 1024)
                    .await
                    .unwrap_or_default();
                shared.lock().expect("the recorder's lock").push(Recorded {
                    method: parts.method,
                    path: parts.uri.path().to_owned(),
                    headers: parts.headers,
                    body,
                });
                (
                    StatusCode::CREATED,
                    [(CONTENT_TYPE, "application/json")],
                    "{}",
                )
            }
        });
        Recorder {
            url: serve(router).await,
            received,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Recorded> {
        self.received.lock().expect("the recorder's lock").clone()
    }
}

/// A neighbour that answers every request with `status` (a 3xx) and `Location: location`.
pub async fn redirecting_to(status: StatusCode, location: &str) -> String {
    let location = HeaderValue::from_str(location).expect("a valid Location");
    let router = Router::new().fallback(move || {
        let location = location.clone();
        async move { (status, [(LOCATION, location)]).into_response() }
    });
    serve(router).await
}

/// A neighbour that answers every request with `status` and a body of `total` bytes, streamed
/// in 64 KiB chunks, with a `Content-Length` or, without one, chunked; and counts how much of
/// it the caller made it produce (a chunk is produced only when the connection takes it).
pub struct LargeBody {
    url: String,
    produced: Arc<AtomicUsize>,
}

/// How [`LargeBody`] frames its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length: <total>`, then the bytes.
    ContentLength,
    /// `Transfer-Encoding: chunked`: no length announced, so only counting can stop it.
    Chunked,
}

impl LargeBody {
    pub async fn start(status: StatusCode, total: usize, framing: Framing) -> Self {
        const CHUNK: usize = 64 * 1024;
        static BYTES: [u8; CHUNK] = [b' '; CHUNK];
        let produced = Arc::new(AtomicUsize::new(0));
        let counter = produced.clone();
        let router = Router::new().fallback(move || {
            let counter = counter.clone();
            async move {
                let chunks = futures_util::stream::unfold(0usize, move |sent| {
                    let counter = counter.clone();
                    async move {
                        let n = CHUNK.min(total - sent);
                        (n > 0).then(|| {
                            counter.fetch_add(n, Ordering::SeqCst);
                            (
                                Ok::<_, std::io::Error>(Bytes::from_static(&BYTES[..n])),
                                sent + n,
                            )
                        })
                    }
                });
                let mut response = Response::new(Body::from_stream(chunks));
                *response.status_mut() = status;
                let headers = response.headers_mut();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                if framing == Framing::ContentLength {
                    headers.insert(CONTENT_LENGTH, HeaderValue::from(total));
                }
                response
            }
        });
        LargeBody {
            url: serve(router).await,
            produced,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// How many bytes of the body the caller has taken so far.
    pub fn produced(&self) -> usize {
        self.produced.load(Ordering::SeqCst)
    }
}
