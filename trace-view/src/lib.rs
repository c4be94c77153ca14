//! `trace-view`: see a trace in the terminal, with its critical path.
//!
//! One span model ([`span::ReceivedSpan`]), one analysis ([`analysis::Trace`]: the tree, the
//! critical path and the bottleneck) and one renderer ([`render::waterfall`]) for three
//! sources of spans:
//!
//! - Jaeger v2's query API ([`jaeger::fetch_trace`]), OTLP JSON in Jaeger's envelope;
//! - a file of OTLP JSON, bare or in Jaeger's envelope ([`json::decode`]);
//! - a built-in OTLP receiver, gRPC and HTTP ([`receiver::OtlpReceiver`]), which
//!   `trace-view listen` ([`listen::run`]) prints from as traces complete, and which the
//!   end-to-end tests use as their collector.
//!
//! The binary (`src/main.rs`) only parses the command line and maps errors to exit codes.

pub mod analysis;
pub mod jaeger;
pub mod json;
pub mod listen;
pub mod receiver;
pub mod render;
pub mod span;

pub use analysis::{Trace, analyse};
pub use receiver::{Behaviour, OtlpReceiver, ReceiverConfig};
pub use render::{Style, waterfall};
pub use span::{AttrValue, ReceivedEvent, ReceivedSpan, SpanKind, SpanStatus};
