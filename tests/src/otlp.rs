//! An in-process OpenTelemetry collector for the end-to-end tests.
//!
//! The services export their spans with OTLP, some over gRPC and some over
//! HTTP/protobuf. Jaeger cannot run on the test machines, so instead of asking a
//! real backend what it stored, the tests start an [`OtlpReceiver`]: a genuine
//! OTLP/HTTP server (`POST /v1/traces`) and a genuine OTLP/gRPC server
//! (`TraceService/Export`) on two ephemeral ports of 127.0.0.1, both feeding one
//! in-memory store. A test points the services' exporters at
//! [`OtlpReceiver::http_endpoint`] or [`OtlpReceiver::grpc_endpoint`], drives a
//! request through the system, then waits with [`OtlpReceiver::wait_for_trace`]
//! and asserts on the decoded [`ReceivedSpan`]s. [`render_tree`] turns a trace
//! into a text waterfall so that a failing assertion shows what actually
//! arrived, and [`find`] picks one span out of a trace or fails with that tree.
//!
//! The receiver can also misbehave on purpose, to test how the services cope
//! with a collector that is down ([`OtlpReceiver::stop`] /
//! [`OtlpReceiver::restart`]), slow ([`Behaviour::Delay`]) or failing
//! ([`Behaviour::Fail`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
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
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{span, status};
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tonic::codegen::tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};

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

/// The kind of a span, as sent on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl fmt::Display for SpanKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpanKind::Unspecified => "UNSPECIFIED",
            SpanKind::Internal => "INTERNAL",
            SpanKind::Server => "SERVER",
            SpanKind::Client => "CLIENT",
            SpanKind::Producer => "PRODUCER",
            SpanKind::Consumer => "CONSUMER",
        })
    }
}

/// The status of a span; the message only exists for errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpanStatus {
    Unset,
    Ok,
    Error(String),
}

/// An attribute value, decoded from OTLP's `AnyValue`.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Array(Vec<AttrValue>),
    Bytes(Vec<u8>),
    KvList(BTreeMap<String, AttrValue>),
    /// No value at all. OTLP allows it, and the profiles-only string-table
    /// reference has no meaning for traces either, so both land here.
    Empty,
}

impl AttrValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            AttrValue::Int(i) => Some(*i),
            _ => None,
        }
    }
}

/// A span event: its name, when it happened and its attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedEvent {
    pub name: String,
    pub time_unix_nano: u64,
    pub attributes: BTreeMap<String, AttrValue>,
}

/// One span as the receiver decoded it, flattened together with its resource
/// and instrumentation scope so that each span can be asserted on alone.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// The resource attribute `service.name`, or "" when the exporter sent none.
    pub service_name: String,
    pub resource: BTreeMap<String, AttrValue>,
    pub scope_name: String,
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// `None` for a root span (sent as empty or all-zero bytes).
    pub parent_span_id: Option<String>,
    pub trace_state: String,
    pub flags: u32,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: BTreeMap<String, AttrValue>,
    pub events: Vec<ReceivedEvent>,
    /// Linked spans as (trace id, span id), both in lowercase hex.
    pub links: Vec<(String, String)>,
    pub status: SpanStatus,
}

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes.get(key)
    }

    /// The attribute as a string; `None` if it is missing or of another type.
    pub fn str_attr(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(AttrValue::as_str)
    }

    /// The attribute as an integer; `None` if it is missing or of another type
    /// (an integer recorded as a string is a bug the tests should notice).
    pub fn int_attr(&self, key: &str) -> Option<i64> {
        self.attr(key).and_then(AttrValue::as_int)
    }

    /// End minus start; zero if a clock made the span end before it began.
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.end_unix_nano.saturating_sub(self.start_unix_nano))
    }

    /// Whether `self` was recorded as a direct child of `parent`.
    pub fn is_child_of(&self, parent: &ReceivedSpan) -> bool {
        self.trace_id == parent.trace_id
            && self.parent_span_id.as_deref() == Some(parent.span_id.as_str())
    }
}

/// A receiver of OTLP traces over HTTP/protobuf and gRPC; see the module docs.
///
/// Dropping it stops both servers and closes their connections.
pub struct OtlpReceiver {
    shared: Arc<Shared>,
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    running: Mutex<Option<Running>>,
}

/// State shared by the two servers and the test.
#[derive(Default)]
struct Shared {
    spans: Mutex<Vec<ReceivedSpan>>,
    behaviour: Mutex<Behaviour>,
    export_requests: AtomicUsize,
    /// Bumped by every stop, so that an export which arrived before a stop and
    /// is answered after it (it was delayed) is not stored: its client saw the
    /// connection die and considers the export failed.
    generation: AtomicU64,
    connections: Arc<Connections>,
}

/// The server tasks of one start; aborting them closes the listeners.
struct Running {
    http: JoinHandle<()>,
    grpc: JoinHandle<()>,
}

impl OtlpReceiver {
    /// Starts both servers on ephemeral ports of 127.0.0.1.
    ///
    /// Panics if a port cannot be bound: no test can run without the receiver.
    pub async fn start() -> OtlpReceiver {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        let http_listener = bind(any_port).expect("bind the OTLP/HTTP receiver on 127.0.0.1");
        let grpc_listener = bind(any_port).expect("bind the OTLP/gRPC receiver on 127.0.0.1");
        let http_addr = http_listener
            .local_addr()
            .expect("read the OTLP/HTTP receiver's port");
        let grpc_addr = grpc_listener
            .local_addr()
            .expect("read the OTLP/gRPC receiver's port");
        let shared = Arc::new(Shared::default());
        let running = spawn_servers(&shared, http_listener, grpc_listener);
        OtlpReceiver {
            shared,
            http_addr,
            grpc_addr,
            running: Mutex::new(Some(running)),
        }
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

    /// Everything received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        lock(&self.shared.spans).clone()
    }

    /// The spans received so far for one trace (hex id, any case).
    pub fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        let trace_id = trace_id.to_ascii_lowercase();
        lock(&self.shared.spans)
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
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
        let trace_id = trace_id.to_ascii_lowercase();
        let spans = self
            .wait_for(timeout, |spans| {
                spans.iter().filter(|s| s.trace_id == trace_id).count() >= n
            })
            .await;
        spans
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }

    /// Takes the collector down: both ports refuse new connections and every
    /// open connection is shut, so an exporter's next call fails instead of
    /// reusing a kept-alive connection. Does nothing if already stopped.
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
    }

    /// Brings the collector back on the same ports (stopping it first if it is
    /// running). Received spans and the request count are kept.
    ///
    /// Panics if a port cannot be bound again, e.g. another process took it.
    pub async fn restart(&self) {
        self.stop().await;
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

/// Renders spans as an indented text waterfall, one line per span:
/// `name [service, KIND, duration]`, children two spaces deeper than their
/// parent and ordered by start time. Spans whose parent is not among `spans`
/// are shown as roots, marked "(parent not received)".
pub fn render_tree(spans: &[ReceivedSpan]) -> String {
    render(spans, true)
}

/// [`render_tree`] without durations: the shape of the trace (names, services, kinds and
/// nesting), which is the same in every run and can be compared exactly.
pub fn render_shape(spans: &[ReceivedSpan]) -> String {
    render(spans, false)
}

fn render(spans: &[ReceivedSpan], durations: bool) -> String {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&spans[a], &spans[b]);
        (a.start_unix_nano, &a.name, &a.span_id).cmp(&(b.start_unix_nano, &b.name, &b.span_id))
    });
    let present: HashSet<(&str, &str)> = spans
        .iter()
        .map(|s| (s.trace_id.as_str(), s.span_id.as_str()))
        .collect();
    let mut children: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for &i in &order {
        let s = &spans[i];
        match s.parent_span_id.as_deref() {
            Some(parent) if present.contains(&(s.trace_id.as_str(), parent)) => children
                .entry((s.trace_id.as_str(), parent))
                .or_default()
                .push(i),
            _ => roots.push(i),
        }
    }

    let mut renderer = Renderer {
        spans,
        children: &children,
        durations,
        visited: vec![false; spans.len()],
        out: String::new(),
    };
    for &root in &roots {
        let note = if spans[root].parent_span_id.is_some() {
            " (parent not received)"
        } else {
            ""
        };
        renderer.subtree(root, 0, note);
    }
    // Spans that only reach each other through parent links (a cycle, which a
    // correct exporter never produces) would otherwise vanish from the output.
    for &i in &order {
        if !renderer.visited[i] {
            renderer.subtree(i, 0, " (parent cycle)");
        }
    }
    renderer.out
}

/// The state of one [`render`] call.
struct Renderer<'a> {
    spans: &'a [ReceivedSpan],
    children: &'a HashMap<(&'a str, &'a str), Vec<usize>>,
    durations: bool,
    visited: Vec<bool>,
    out: String,
}

impl Renderer<'_> {
    fn subtree(&mut self, i: usize, depth: usize, note: &str) {
        if self.visited[i] {
            return;
        }
        self.visited[i] = true;
        let s = &self.spans[i];
        let duration = if self.durations {
            format!(", {}", format_duration(s.duration()))
        } else {
            String::new()
        };
        self.out.push_str(&format!(
            "{:indent$}{} [{}, {}{duration}]{note}\n",
            "",
            s.name,
            s.service_name,
            s.kind,
            indent = depth * 2
        ));
        if let Some(kids) = self
            .children
            .get(&(s.trace_id.as_str(), s.span_id.as_str()))
        {
            for &kid in kids {
                self.subtree(kid, depth + 1, "");
            }
        }
    }
}

/// Whole milliseconds, which is what a reader compares in a waterfall; spans
/// shorter than that show microseconds so they do not all read "0ms".
fn format_duration(d: Duration) -> String {
    if d >= Duration::from_millis(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}µs", d.as_micros())
    }
}

/// The one span named `name` from service `service` ("" matches any service).
///
/// Panics, showing the whole tree, unless exactly one span matches: a missing
/// or duplicated span is exactly what the tests exist to catch.
pub fn find<'a>(spans: &'a [ReceivedSpan], service: &str, name: &str) -> &'a ReceivedSpan {
    let matches: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.name == name && (service.is_empty() || s.service_name == service))
        .collect();
    match matches.as_slice() {
        [one] => one,
        _ => panic!(
            "expected exactly one span {name:?} from service {service:?}, found {}; received spans:\n{}",
            matches.len(),
            render_tree(spans)
        ),
    }
}

/// The direct children of `parent` among `spans`, ordered by start time.
pub fn children<'a>(spans: &'a [ReceivedSpan], parent: &ReceivedSpan) -> Vec<&'a ReceivedSpan> {
    let mut kids: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.is_child_of(parent)).collect();
    kids.sort_by_key(|s| s.start_unix_nano);
    kids
}

/// A poisoned lock only means another test thread panicked; the data (spans,
/// sockets) is still consistent, and cascading panics would hide the real one.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Binds with SO_REUSEADDR: after `stop` the closed connections linger in
/// TIME_WAIT on our side, which would otherwise make `restart` fail.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
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
        // Exporters batch up to thousands of spans; axum's 2 MB default
        // would turn a large batch into a confusing 413.
        .layer(DefaultBodyLimit::disable())
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
    });
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

/// Why an export was not accepted.
enum Rejected {
    Failing,
    StoppedMeanwhile,
}

impl Shared {
    /// The protocol-independent part of an export: count, misbehave as told,
    /// store.
    async fn export(&self, request: ExportTraceServiceRequest) -> Result<(), Rejected> {
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
        let spans = decode_spans(request);
        lock(&self.spans).extend(spans);
        Ok(())
    }
}

async fn http_export(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.export_requests.fetch_add(1, Ordering::SeqCst);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/json") {
        // OTLP/JSON is valid OTLP but not what the services are configured to
        // send; saying so beats a protobuf decoding error.
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "this test receiver only accepts OTLP/HTTP with application/x-protobuf",
        )
            .into_response();
    }
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("body is not an ExportTraceServiceRequest: {e}"),
            )
                .into_response();
        }
    };
    match shared.export(request).await {
        Ok(()) => (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            ExportTraceServiceResponse::default().encode_to_vec(),
        )
            .into_response(),
        Err(Rejected::Failing) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "test receiver is set to fail every export",
        )
            .into_response(),
        Err(Rejected::StoppedMeanwhile) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "test receiver was stopped while this export waited",
        )
            .into_response(),
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
        match self.shared.export(request.into_inner()).await {
            Ok(()) => Ok(tonic::Response::new(ExportTraceServiceResponse::default())),
            Err(Rejected::Failing) => Err(tonic::Status::unavailable(
                "test receiver is set to fail every export",
            )),
            Err(Rejected::StoppedMeanwhile) => Err(tonic::Status::unavailable(
                "test receiver was stopped while this export waited",
            )),
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

/// Flattens a request into spans that each carry their resource and scope.
fn decode_spans(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| decode_attributes(r.attributes))
            .unwrap_or_default();
        let service_name = resource
            .get("service.name")
            .and_then(AttrValue::as_str)
            .unwrap_or_default()
            .to_owned();
        for scope_spans in resource_spans.scope_spans {
            let scope_name = scope_spans.scope.map(|s| s.name).unwrap_or_default();
            for s in scope_spans.spans {
                out.push(ReceivedSpan {
                    service_name: service_name.clone(),
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: (!s.parent_span_id.iter().all(|&b| b == 0))
                        .then(|| hex(&s.parent_span_id)),
                    trace_state: s.trace_state,
                    flags: s.flags,
                    name: s.name,
                    kind: decode_kind(s.kind),
                    start_unix_nano: s.start_time_unix_nano,
                    end_unix_nano: s.end_time_unix_nano,
                    attributes: decode_attributes(s.attributes),
                    events: s
                        .events
                        .into_iter()
                        .map(|e| ReceivedEvent {
                            name: e.name,
                            time_unix_nano: e.time_unix_nano,
                            attributes: decode_attributes(e.attributes),
                        })
                        .collect(),
                    links: s
                        .links
                        .into_iter()
                        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                        .collect(),
                    status: decode_status(s.status),
                });
            }
        }
    }
    out
}

fn decode_kind(kind: i32) -> SpanKind {
    match span::SpanKind::try_from(kind) {
        Ok(span::SpanKind::Internal) => SpanKind::Internal,
        Ok(span::SpanKind::Server) => SpanKind::Server,
        Ok(span::SpanKind::Client) => SpanKind::Client,
        Ok(span::SpanKind::Producer) => SpanKind::Producer,
        Ok(span::SpanKind::Consumer) => SpanKind::Consumer,
        Ok(span::SpanKind::Unspecified) | Err(_) => SpanKind::Unspecified,
    }
}

fn decode_status(s: Option<opentelemetry_proto::tonic::trace::v1::Status>) -> SpanStatus {
    let Some(s) = s else {
        return SpanStatus::Unset;
    };
    match status::StatusCode::try_from(s.code) {
        Ok(status::StatusCode::Ok) => SpanStatus::Ok,
        Ok(status::StatusCode::Error) => SpanStatus::Error(s.message),
        Ok(status::StatusCode::Unset) | Err(_) => SpanStatus::Unset,
    }
}

fn decode_attributes(attributes: Vec<KeyValue>) -> BTreeMap<String, AttrValue> {
    attributes
        .into_iter()
        .map(|kv| (kv.key, decode_value(kv.value)))
        .collect()
}

fn decode_value(value: Option<AnyValue>) -> AttrValue {
    match value.and_then(|v| v.value) {
        Some(any_value::Value::StringValue(s)) => AttrValue::Str(s),
        Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(b),
        Some(any_value::Value::IntValue(i)) => AttrValue::Int(i),
        Some(any_value::Value::DoubleValue(d)) => AttrValue::Double(d),
        Some(any_value::Value::ArrayValue(a)) => AttrValue::Array(
            a.values
                .into_iter()
                .map(|v| decode_value(Some(v)))
                .collect(),
        ),
        Some(any_value::Value::KvlistValue(kv)) => AttrValue::KvList(decode_attributes(kv.values)),
        Some(any_value::Value::BytesValue(b)) => AttrValue::Bytes(b),
        Some(any_value::Value::StringValueStrindex(_)) | None => AttrValue::Empty,
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}
