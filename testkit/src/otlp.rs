//! The OTLP receiver the end-to-end tests use in place of Jaeger: `trace_view`'s receiver, the
//! same one `trace-view listen` runs, re-exported under the names the tests have always used.
//!
//! A test points the services' exporters at [`OtlpReceiver::http_endpoint`] or
//! [`OtlpReceiver::grpc_endpoint`], drives a request through the system, then waits with
//! [`OtlpReceiver::wait_for_trace`] and asserts on the decoded [`ReceivedSpan`]s.
//! [`render_tree`] turns a trace into a compact text tree so that a failing assertion shows
//! what actually arrived, [`find`] picks one span out of a trace or fails with that tree, and
//! [`trace_view::waterfall`] draws the real waterfall with its critical path. The receiver
//! misbehaves on demand ([`OtlpReceiver::stop`], [`OtlpReceiver::restart`],
//! [`Behaviour::Delay`], [`Behaviour::Fail`]) for the fault tests.

pub use trace_view::receiver::{Behaviour, OtlpReceiver, ReceiverConfig, TraceSummary};
pub use trace_view::render::{children, find, render_shape, render_tree};
pub use trace_view::span::{AttrValue, ReceivedEvent, ReceivedSpan, SpanKind, SpanStatus};
