"""What the three Flask services of the Python contrast share: telemetry set up as the
tutorial does it, database connections, and the server they run in.

The benchmark (`bench/src/python.rs`) starts each service as `python -B <service>.py` with the
same environment it gives the Rust services: `LISTEN_ADDR`, `DATABASE_URL`,
`ORDER_SERVICE_URL` / `PAYMENT_SERVICE_URL`, and the standard `OTEL_*` variables
(`OTEL_EXPORTER_OTLP_PROTOCOL` and `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SDK_DISABLED=true`
for the run with tracing off). Each
prints one JSON line, `{"message": "listening", "address": "127.0.0.1:PORT"}`, once it
accepts connections, as the Rust services do, so the benchmark finds the port it was given.
"""

import contextlib
import json
import os
import queue
import signal
import sys

import psycopg2
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.psycopg2 import Psycopg2Instrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from werkzeug.serving import make_server


def init_telemetry(service_name):
    """The tutorial's setup: an SDK tracer provider exporting over OTLP through a
    BatchSpanProcessor (its default settings, as the Rust services use theirs), and the
    auto-instrumentations for `requests` and psycopg2 (Flask's is applied per app in
    `instrument`). With `OTEL_SDK_DISABLED=true` the provider hands out no-op tracers: the
    instrumentation still wraps every call, as it would in such a deployment, but records
    nothing.

    The protocol is the one `OTEL_EXPORTER_OTLP_PROTOCOL` names, `http/protobuf` (the
    specification's default) unless it says `grpc`, as the Rust services choose theirs: the
    two stacks are compared exporting the same way. Either exporter reads its endpoint from
    `OTEL_EXPORTER_OTLP_ENDPOINT` (the HTTP one appends `/v1/traces`); the benchmark's
    `http://` endpoints are plaintext. The SDK runs each export with instrumentation
    suppressed, so the HTTP exporter's own requests make no spans."""
    # Shut down by `serve` on the way out, not by an `atexit` hook of its own.
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}), shutdown_on_exit=False
    )
    grpc = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") == "grpc"
    exporter = GrpcSpanExporter() if grpc else HttpSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    RequestsInstrumentor().instrument()
    # Before the first `psycopg2.connect`: only connections made after this are traced.
    Psycopg2Instrumentor().instrument()
    return provider


def instrument(app):
    """Flask's auto-instrumentation: a SERVER span per request, continuing the caller's
    trace from its `traceparent` header."""
    FlaskInstrumentor().instrument_app(app)


def trace_id():
    """The current trace's id in hex, or "" when nothing is recorded (tracing off), which
    is what the Rust services store then too."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


class ConnectionPool:
    """Connections to `DATABASE_URL`, reused between requests.

    Not the tutorial's snippet, which opens a connection for every query: that would make
    these rows measure Postgres forking a backend per statement (milliseconds each) rather
    than the Python stack, and the benchmark could not count the CPU of backends that come and
    go between its snapshots. So the Python stack gets its database connections pooled, as
    the Rust services have theirs, and the contrast is conservative: the per-call habits left
    are the ones the tutorial shows for HTTP (`requests.post` per call, a new connection each
    time) and the threaded development server.

    A queue of idle connections, one opened whenever none is idle: as many as requests ever
    ran at once, never an "exhausted" error (which psycopg2's own pools raise instead of
    waiting). Autocommit, so each statement is its own transaction, as the Rust services run
    them.
    """

    def __init__(self, dsn):
        self._dsn = dsn
        self._idle = queue.SimpleQueue()

    @contextlib.contextmanager
    def connection(self):
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = psycopg2.connect(self._dsn)
            conn.autocommit = True
        try:
            yield conn
        except BaseException:
            # Whatever went wrong may have left the connection unusable: never hand it on.
            conn.close()
            raise
        self._idle.put(conn)

    def execute(self, sql, params):
        """Runs one statement; returns its first row, or None when it returns none."""
        with self.connection() as conn, conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone() if cursor.description is not None else None


def serve(app, provider):
    """Flask's built-in server, threaded (a thread per connection), as `app.run()` runs it:
    `make_server` is what `app.run()` calls, used here only to bind port 0 and learn the
    port. It takes the benchmark's 16 concurrent requests without trouble, but closes every
    connection after its answer (Werkzeug does not do keep-alive), so each request to any of
    the three services, the load generator's included, comes on a new connection and a new
    thread. Its request log (a line per request on stderr) stays on: it is the tutorial's
    default, and the Rust services log a line per request as well.

    SIGTERM (how the benchmark stops a service) ends `serve_forever`, and the tracer
    provider is shut down before the process exits, which exports the spans still queued."""
    host, _, port = os.environ.get("LISTEN_ADDR", "127.0.0.1:0").rpartition(":")
    server = make_server(host, int(port), app, threaded=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(
        json.dumps({"message": "listening", "address": f"{host}:{server.port}"}),
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        provider.shutdown()
