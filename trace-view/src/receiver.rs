//! A real OTLP trace receiver: gRPC and HTTP (protobuf and JSON), feeding one bounded store.
//!
//! This is the one OTLP receiver of the workspace. `trace-view listen` runs it on the standard
//! ports and prints each trace as it completes; the end-to-end tests start it on two ephemeral
//! ports of 127.0.0.1 (through `testkit::otlp`), point the services' exporters at
//! [`OtlpReceiver::http_endpoint`] or [`OtlpReceiver::grpc_endpoint`], drive a request through
//! the system and read back what arrived with [`OtlpReceiver::wait_for_trace`].
//!
//! - OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//! - OTLP/HTTP: `POST /v1/traces` with `application/x-protobuf` or `application/json`.
//!   Compressed bodies (`Content-Encoding: gzip`) are answered 415: decompressing would pull in
//!   a compression crate for a receiver that runs next to its exporters, and the OTLP exporters
//!   send uncompressed by default. (gRPC compression is refused by tonic the same way.)
//!
//! Everything a neighbour sends is bounded: a request body ([`ReceiverConfig::max_body_bytes`],
//! 413 / `RESOURCE_EXHAUSTED` beyond it), the number of traces kept (the oldest trace is
//! evicted past [`ReceiverConfig::max_traces`]) and the spans kept per trace (later ones are
//! counted and dropped past [`ReceiverConfig::max_spans_per_trace`]). Counters say what
//! happened: [`OtlpReceiver::spans_received`], [`OtlpReceiver::traces_evicted`],
//! [`OtlpReceiver::spans_dropped`], [`OtlpReceiver::export_requests`].
//!
//! The receiver can also misbehave on purpose, to test how exporters cope with a collector
//! that is down ([`OtlpReceiver::stop`] / [`OtlpReceiver::restart`]), slow
//! ([`Behaviour::Delay`]) or failing ([`Behaviour::Fail`]).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tonic::codegen::tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::span::{ReceivedSpan, decode_request};

/// How both servers answer export calls; see [`OtlpReceiver::set_behaviour`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// Accept and store every export at once.
    #[default]
    Normal,
    /// Wait this long before accepting, like an overloaded collector.
    Delay(Duration),
    /// Reject every export without storing it: HTTP 503 / gRPC `UNAVAILABLE`,
    /// the answers OTLP defines as "retryable, try later".
    Fail,
}

/// Where the receiver listens and how much it keeps.
#[derive(Clone, Debug)]
pub struct ReceiverConfig {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// Traces kept in memory; the one that arrived first is evicted to make room.
    pub max_traces: usize,
    /// Spans kept per trace; later ones are dropped and counted.
    pub max_spans_per_trace: usize,
    /// The largest request accepted, over either protocol.
    pub max_body_bytes: usize,
    /// Whether the spans are decoded and kept, for [`OtlpReceiver::trace`] and the rest, or
    /// only counted ([`OtlpReceiver::spans_received`]). The benchmark's receiver counts: it
    /// stands in for a collector on another machine, and shares its cores with the services it
    /// measures.
    pub keep_spans: bool,
}

impl Default for ReceiverConfig {
    /// Ephemeral ports of 127.0.0.1 and limits no test comes near: 5000 traces of up to
    /// 10 000 spans, requests up to 16 MiB (an exporter's batch of 512 spans is well under 1).
    fn default() -> Self {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        ReceiverConfig {
            grpc: any_port,
            http: any_port,
            max_traces: 5_000,
            max_spans_per_trace: 10_000,
            max_body_bytes: 16 * 1024 * 1024,
            keep_spans: true,
        }
    }
}

/// What the store knows about one trace, without its spans; see
/// [`OtlpReceiver::trace_summaries`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceSummary {
    pub trace_id: String,
    /// Spans accepted for this trace so far (kept or dropped): it changes whenever a span
    /// arrives, so a reader can tell whether it has seen the latest state.
    pub received: u64,
    /// How long since the last span of this trace arrived.
    pub quiet_for: Duration,
}

/// A receiver of OTLP traces over HTTP and gRPC; see the module docs.
///
/// Dropping it stops both servers and closes their connections.
pub struct OtlpReceiver {
    shared: Arc<Shared>,
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    running: Mutex<Option<Running>>,
    /// While stopped: the two ports, bound but not listening, so connections are refused
    /// and no other socket is given them as ephemeral ports until `restart`.
    reserved: Mutex<Vec<TcpSocket>>,
}

/// State shared by the two servers and the owner of the receiver.
struct Shared {
    config: ReceiverConfig,
    store: Mutex<Store>,
    behaviour: Mutex<Behaviour>,
    export_requests: AtomicUsize,
    spans_received: AtomicU64,
    spans_dropped: AtomicU64,
    traces_evicted: AtomicU64,
    /// Bumped by every stop, so that an export which arrived before a stop and
    /// is answered after it (it was delayed) is not stored: its client saw the
    /// connection die and considers the export failed.
    generation: AtomicU64,
    connections: Arc<Connections>,
}

/// The kept traces, oldest first.
#[derive(Default)]
struct Store {
    traces: HashMap<String, StoredTrace>,
    /// Trace ids in order of their first span's arrival: the eviction order.
    order: VecDeque<String>,
    /// Arrival number of the next span, so `spans()` can return arrival order across traces.
    next_seq: u64,
}

struct StoredTrace {
    spans: Vec<(u64, ReceivedSpan)>,
    received: u64,
    last_arrival: Instant,
}

/// The server tasks of one start; aborting them closes the listeners.
struct Running {
    http: JoinHandle<()>,
    grpc: JoinHandle<()>,
}

impl OtlpReceiver {
    /// Starts both servers on ephemeral ports of 127.0.0.1 with the default limits.
    ///
    /// Panics if a port cannot be bound: no test can run without the receiver.
    pub async fn start() -> OtlpReceiver {
        OtlpReceiver::bind(ReceiverConfig::default())
            .await
            .expect("bind the OTLP receiver on 127.0.0.1")
    }

    /// Binds both servers as `config` says and starts serving. The error names the
    /// address that could not be bound.
    #[expect(
        clippy::unused_async,
        reason = "it spawns the servers on the current runtime: being async says it needs one"
    )]
    pub async fn bind(config: ReceiverConfig) -> io::Result<OtlpReceiver> {
        let named = |what: &'static str, addr: SocketAddr| {
            move |e: io::Error| io::Error::new(e.kind(), format!("{what} on {addr}: {e}"))
        };
        let http_listener = bind(config.http).map_err(named("OTLP/HTTP", config.http))?;
        let grpc_listener = bind(config.grpc).map_err(named("OTLP/gRPC", config.grpc))?;
        let http_addr = http_listener.local_addr()?;
        let grpc_addr = grpc_listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            store: Mutex::default(),
            behaviour: Mutex::default(),
            export_requests: AtomicUsize::new(0),
            spans_received: AtomicU64::new(0),
            spans_dropped: AtomicU64::new(0),
            traces_evicted: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            connections: Arc::default(),
        });
        let running = spawn_servers(&shared, http_listener, grpc_listener);
        Ok(OtlpReceiver {
            shared,
            http_addr,
            grpc_addr,
            running: Mutex::new(Some(running)),
            reserved: Mutex::default(),
        })
    }

    /// The bound OTLP/HTTP address (the real port when 0 was asked for).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound OTLP/gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Base URL for `http/protobuf` exporters configured with
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, which append `/v1/traces` themselves; a
    /// signal-specific `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as is and
    /// needs the `/v1/traces` suffix added.
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// URL for `grpc` exporters.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// Every kept span, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let store = lock(&self.shared.store);
        let mut all: Vec<&(u64, ReceivedSpan)> =
            store.traces.values().flat_map(|t| &t.spans).collect();
        all.sort_unstable_by_key(|(seq, _)| *seq);
        all.into_iter().map(|(_, s)| s.clone()).collect()
    }

    /// The kept spans of one trace (hex id, any case), in arrival order.
    pub fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        let trace_id = trace_id.to_ascii_lowercase();
        lock(&self.shared.store)
            .traces
            .get(&trace_id)
            .map(|t| t.spans.iter().map(|(_, s)| s.clone()).collect())
            .unwrap_or_default()
    }

    /// One line per kept trace, oldest first: what `listen` needs to decide what to print
    /// without copying any span.
    pub fn trace_summaries(&self) -> Vec<TraceSummary> {
        let store = lock(&self.shared.store);
        let now = Instant::now();
        store
            .order
            .iter()
            .filter_map(|id| store.traces.get(id).map(|t| (id, t)))
            .map(|(id, t)| TraceSummary {
                trace_id: id.clone(),
                received: t.received,
                quiet_for: now.saturating_duration_since(t.last_arrival),
            })
            .collect()
    }

    /// Polls every 50ms until `done` accepts the spans received so far, or
    /// `timeout` passes. Returns the last snapshot either way: exporters batch
    /// and retry on their own schedule, so the caller's assertions, not this
    /// function, report what is missing.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) || Instant::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until trace `trace_id` has at least `n` spans, or `timeout`
    /// passes; returns the spans of that trace.
    pub async fn wait_for_trace(
        &self,
        trace_id: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.trace(trace_id);
            if spans.len() >= n || Instant::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Takes the collector down: both ports refuse new connections and every
    /// open connection is shut, so an exporter's next call fails instead of
    /// reusing a kept-alive connection. The ports stay held until `restart` or
    /// drop, so no other socket is given them. Does nothing if already stopped.
    pub async fn stop(&self) {
        let running = lock(&self.running).take();
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(running) = running {
            running.http.abort();
            running.grpc.abort();
            // Awaiting the aborted tasks guarantees their listeners have been
            // dropped, so the ports refuse connections when this returns.
            let _ = running.http.await;
            let _ = running.grpc.await;
        }
        // Aborting the accept loops leaves the per-connection tasks running;
        // shutting the sockets down makes them end and the clients notice.
        self.shared.connections.shut_down_all();
        // A freed port is the kernel's to hand out again, and it does: another receiver
        // binding port 0 meanwhile could get this one and answer the exporters that
        // expect a collector that is down. A socket bound to it without listening keeps
        // `bind(0)` from choosing it, and connections to it are still refused.
        let mut reserved = lock(&self.reserved);
        if reserved.is_empty() {
            // Best effort: if the port was taken in between, `restart` says so.
            reserved.extend(
                [self.http_addr, self.grpc_addr]
                    .into_iter()
                    .filter_map(|addr| reserve(addr).ok()),
            );
        }
    }

    /// Brings the collector back on the same ports (stopping it first if it is
    /// running). Received spans and the counters are kept.
    ///
    /// Panics if a port cannot be bound again, e.g. another process took it.
    pub async fn restart(&self) {
        self.stop().await;
        lock(&self.reserved).clear();
        let http_listener = rebind(self.http_addr, "OTLP/HTTP").await;
        let grpc_listener = rebind(self.grpc_addr, "OTLP/gRPC").await;
        let running = spawn_servers(&self.shared, http_listener, grpc_listener);
        *lock(&self.running) = Some(running);
    }

    /// Changes how both servers answer from the next export on.
    pub fn set_behaviour(&self, b: Behaviour) {
        *lock(&self.shared.behaviour) = b;
    }

    /// Export calls received over both protocols, counted on arrival, so
    /// rejected, delayed and undecodable ones count too.
    pub fn export_requests(&self) -> usize {
        self.shared.export_requests.load(Ordering::SeqCst)
    }

    /// Spans accepted since the start, over both protocols, including those later evicted
    /// with their trace or dropped by the per-trace limit.
    pub fn spans_received(&self) -> u64 {
        self.shared.spans_received.load(Ordering::SeqCst)
    }

    /// Traces evicted to keep at most [`ReceiverConfig::max_traces`].
    pub fn traces_evicted(&self) -> u64 {
        self.shared.traces_evicted.load(Ordering::SeqCst)
    }

    /// Spans accepted but not kept because their trace already had
    /// [`ReceiverConfig::max_spans_per_trace`].
    pub fn spans_dropped(&self) -> u64 {
        self.shared.spans_dropped.load(Ordering::SeqCst)
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(running) = self
            .running
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            running.http.abort();
            running.grpc.abort();
        }
        self.shared.connections.shut_down_all();
    }
}

/// A poisoned lock only means another thread panicked; the data (spans,
/// sockets) is still consistent, and cascading panics would hide the real one.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Binds with `SO_REUSEADDR`: after `stop` the closed connections linger in
/// `TIME_WAIT` on our side, which would otherwise make `restart` fail.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    reserve(addr)?.listen(1024)
}

/// A socket bound to `addr` with `SO_REUSEADDR`, not listening yet: what [`bind`] listens
/// on, and what [`OtlpReceiver::stop`] keeps to hold a port. The option lets `restart`
/// bind beside the closed connections' `TIME_WAIT`, and beside a reservation.
fn reserve(addr: SocketAddr) -> io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

async fn rebind(addr: SocketAddr, what: &str) -> TcpListener {
    // The kernel may take a moment to release the port of an aborted listener.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match bind(addr) {
            Ok(listener) => return listener,
            Err(e) if Instant::now() < deadline && e.kind() == io::ErrorKind::AddrInUse => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("could not bind the {what} receiver again on {addr}: {e}"),
        }
    }
}

fn spawn_servers(
    shared: &Arc<Shared>,
    http_listener: TcpListener,
    grpc_listener: TcpListener,
) -> Running {
    let app = Router::new()
        .route("/v1/traces", post(http_export))
        // Exporters batch thousands of spans; the limit is the configured one, not axum's
        // 2 MB default.
        .layer(DefaultBodyLimit::max(shared.config.max_body_bytes))
        .with_state(Arc::clone(shared));
    let http_listener = TrackedListener {
        listener: http_listener,
        connections: Arc::clone(&shared.connections),
    };
    let http = tokio::spawn(async move {
        if let Err(e) = axum::serve(http_listener, app).await {
            eprintln!("OTLP/HTTP receiver stopped: {e}");
        }
    });

    let service = TraceServiceServer::new(GrpcTraces {
        shared: Arc::clone(shared),
    })
    .max_decoding_message_size(shared.config.max_body_bytes);
    let grpc_listener = TrackedListener {
        listener: grpc_listener,
        connections: Arc::clone(&shared.connections),
    };
    let grpc = tokio::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(grpc_listener)
            .await
        {
            eprintln!("OTLP/gRPC receiver stopped: {e}");
        }
    });
    Running { http, grpc }
}

/// The spans of one export, as far as the receiver keeps them.
enum Batch {
    Spans(Vec<ReceivedSpan>),
    Counted(u64),
}

impl Batch {
    /// The spans of `request`, decoded if they are kept.
    fn of(request: ExportTraceServiceRequest, config: &ReceiverConfig) -> Batch {
        if config.keep_spans {
            return Batch::Spans(decode_request(request));
        }
        let spans = request
            .resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .map(|scope| scope.spans.len() as u64)
            .sum();
        Batch::Counted(spans)
    }
}

/// Why an export was not accepted.
enum Rejected {
    Failing,
    StoppedMeanwhile,
}

impl Rejected {
    fn message(&self) -> &'static str {
        match self {
            Rejected::Failing => "receiver is set to fail every export",
            Rejected::StoppedMeanwhile => "receiver was stopped while this export waited",
        }
    }
}

impl Shared {
    /// The protocol-independent part of an export: misbehave as told, store.
    async fn export(&self, batch: Batch) -> Result<(), Rejected> {
        let generation = self.generation.load(Ordering::SeqCst);
        let behaviour = *lock(&self.behaviour);
        match behaviour {
            Behaviour::Normal => {}
            Behaviour::Delay(delay) => tokio::time::sleep(delay).await,
            Behaviour::Fail => return Err(Rejected::Failing),
        }
        if self.generation.load(Ordering::SeqCst) != generation {
            return Err(Rejected::StoppedMeanwhile);
        }
        match batch {
            Batch::Spans(spans) => self.store(spans),
            Batch::Counted(spans) => {
                self.spans_received.fetch_add(spans, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    fn store(&self, spans: Vec<ReceivedSpan>) {
        let now = Instant::now();
        let (mut dropped, mut evicted) = (0, 0);
        let received = spans.len() as u64;
        let mut store = lock(&self.store);
        for span in spans {
            let seq = store.next_seq;
            store.next_seq += 1;
            if !store.traces.contains_key(&span.trace_id) {
                while store.order.len() >= self.config.max_traces.max(1) {
                    if let Some(oldest) = store.order.pop_front() {
                        store.traces.remove(&oldest);
                        evicted += 1;
                    }
                }
                store.order.push_back(span.trace_id.clone());
            }
            let trace = store
                .traces
                .entry(span.trace_id.clone())
                .or_insert_with(|| StoredTrace {
                    spans: Vec::new(),
                    received: 0,
                    last_arrival: now,
                });
            trace.received += 1;
            trace.last_arrival = now;
            if trace.spans.len() < self.config.max_spans_per_trace {
                trace.spans.push((seq, span));
            } else {
                dropped += 1;
            }
        }
        drop(store);
        self.spans_received.fetch_add(received, Ordering::SeqCst);
        self.spans_dropped.fetch_add(dropped, Ordering::SeqCst);
        self.traces_evicted.fetch_add(evicted, Ordering::SeqCst);
    }
}

/// The wire formats OTLP/HTTP defines for a request body.
#[derive(Clone, Copy)]
enum Encoding {
    Protobuf,
    Json,
}

/// How an OTLP/HTTP request's body is encoded, from its headers; a 415 for what this receiver
/// does not read (compressed bodies, other media types).
fn request_encoding(headers: &HeaderMap) -> Result<Encoding, (StatusCode, String)> {
    let header_text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    let content_encoding = header_text(header::CONTENT_ENCODING);
    if !(content_encoding.is_empty() || content_encoding == "identity") {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Encoding {content_encoding:?} is not supported: send uncompressed OTLP \
                 (set the exporter's compression to none)"
            ),
        ));
    }
    let content_type = header_text(header::CONTENT_TYPE);
    if content_type.starts_with("application/x-protobuf") {
        Ok(Encoding::Protobuf)
    } else if content_type.starts_with("application/json") {
        Ok(Encoding::Json)
    } else {
        Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {content_type:?} is not OTLP: send application/x-protobuf or \
                 application/json"
            ),
        ))
    }
}

/// The spans of an OTLP/HTTP body; a 400 that says why when it is not one.
fn decode_body(
    encoding: Encoding,
    body: &Bytes,
    config: &ReceiverConfig,
) -> Result<Batch, (StatusCode, String)> {
    match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body.clone())
            .map(|request| Batch::of(request, config))
            .map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("body is not an ExportTraceServiceRequest: {e}"),
                )
            }),
        Encoding::Json => crate::json::decode(body)
            .map(|spans| {
                if config.keep_spans {
                    Batch::Spans(spans)
                } else {
                    Batch::Counted(spans.len() as u64)
                }
            })
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("body is {e}"))),
    }
}

async fn http_export(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.export_requests.fetch_add(1, Ordering::SeqCst);
    let decoded = request_encoding(&headers).and_then(|encoding| {
        let batch = decode_body(encoding, &body, &shared.config)?;
        Ok((encoding, batch))
    });
    let (encoding, batch) = match decoded {
        Ok(decoded) => decoded,
        Err(refused) => return refused.into_response(),
    };
    match (shared.export(batch).await, encoding) {
        (Ok(()), Encoding::Protobuf) => (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            ExportTraceServiceResponse::default().encode_to_vec(),
        )
            .into_response(),
        // The JSON encoding of an empty ExportTraceServiceResponse.
        (Ok(()), Encoding::Json) => {
            ([(header::CONTENT_TYPE, "application/json")], "{}").into_response()
        }
        (Err(rejected), _) => (StatusCode::SERVICE_UNAVAILABLE, rejected.message()).into_response(),
    }
}

struct GrpcTraces {
    shared: Arc<Shared>,
}

#[tonic::async_trait]
impl TraceService for GrpcTraces {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.shared.export_requests.fetch_add(1, Ordering::SeqCst);
        let batch = Batch::of(request.into_inner(), &self.shared.config);
        match self.shared.export(batch).await {
            Ok(()) => Ok(tonic::Response::new(ExportTraceServiceResponse::default())),
            Err(rejected) => Err(tonic::Status::unavailable(rejected.message())),
        }
    }
}

/// Duplicates of the accepted sockets, kept so that `stop` can shut down
/// connections that the servers' own tasks would keep alive.
#[derive(Default)]
struct Connections {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, std::net::TcpStream>>,
}

impl Connections {
    fn track(self: &Arc<Self>, stream: TcpStream) -> io::Result<TrackedStream> {
        // `shutdown` acts on the socket, not on the descriptor, so shutting
        // down the duplicate ends the connection the server task is serving.
        let std_stream = stream.into_std()?;
        let duplicate = std_stream.try_clone()?;
        let stream = TcpStream::from_std(std_stream)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.open).insert(id, duplicate);
        Ok(TrackedStream {
            inner: stream,
            id,
            connections: Arc::clone(self),
        })
    }

    fn shut_down_all(&self) {
        let open: Vec<std::net::TcpStream> = lock(&self.open).drain().map(|(_, s)| s).collect();
        for stream in open {
            // Fails only if the peer already closed it, which is the goal.
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// A listener whose connections are registered in [`Connections`]; it serves
/// axum (as a `Listener`) and tonic (as a stream of incoming connections).
struct TrackedListener {
    listener: TcpListener,
    connections: Arc<Connections>,
}

impl axum::serve::Listener for TrackedListener {
    type Io = TrackedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => match self.connections.track(stream) {
                    Ok(stream) => return (stream, addr),
                    Err(e) => eprintln!("OTLP/HTTP receiver dropped a connection: {e}"),
                },
                // Typically out of file descriptors: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

impl Stream for TrackedListener {
    type Item = io::Result<TrackedStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.listener.poll_accept(cx) {
            Poll::Ready(Ok((stream, _))) => Poll::Ready(Some(this.connections.track(stream))),
            // tonic logs accept errors and keeps accepting.
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// An accepted connection that unregisters itself when the server drops it.
struct TrackedStream {
    inner: TcpStream,
    id: u64,
    connections: Arc<Connections>,
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        lock(&self.connections.open).remove(&self.id);
    }
}

impl Connected for TrackedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
