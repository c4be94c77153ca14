//! The one span model every source decodes into.
//!
//! Spans reach `trace-view` three ways: OTLP protobuf (gRPC or HTTP, in the receiver), OTLP
//! JSON (HTTP in the receiver, a file, Jaeger's query API). Each source decodes into
//! [`ReceivedSpan`], a span flattened together with its resource and instrumentation scope, so
//! the analysis, the renderer and the tests never care where a span came from. Ids are
//! lowercase hex strings, times are nanoseconds since the Unix epoch.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{span, status};

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

impl SpanKind {
    /// The OTLP enum number (`SPAN_KIND_*`); unknown numbers are `Unspecified`.
    pub fn from_otlp(kind: i32) -> SpanKind {
        match span::SpanKind::try_from(kind) {
            Ok(span::SpanKind::Internal) => SpanKind::Internal,
            Ok(span::SpanKind::Server) => SpanKind::Server,
            Ok(span::SpanKind::Client) => SpanKind::Client,
            Ok(span::SpanKind::Producer) => SpanKind::Producer,
            Ok(span::SpanKind::Consumer) => SpanKind::Consumer,
            Ok(span::SpanKind::Unspecified) | Err(_) => SpanKind::Unspecified,
        }
    }

    /// The OTLP enum number, for writing OTLP JSON back.
    pub fn to_otlp(self) -> i32 {
        (match self {
            SpanKind::Unspecified => span::SpanKind::Unspecified,
            SpanKind::Internal => span::SpanKind::Internal,
            SpanKind::Server => span::SpanKind::Server,
            SpanKind::Client => span::SpanKind::Client,
            SpanKind::Producer => span::SpanKind::Producer,
            SpanKind::Consumer => span::SpanKind::Consumer,
        }) as i32
    }
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

impl SpanStatus {
    /// From the OTLP status code and message; unknown codes are `Unset`.
    pub fn from_otlp(code: i32, message: String) -> SpanStatus {
        match status::StatusCode::try_from(code) {
            Ok(status::StatusCode::Ok) => SpanStatus::Ok,
            Ok(status::StatusCode::Error) => SpanStatus::Error(message),
            Ok(status::StatusCode::Unset) | Err(_) => SpanStatus::Unset,
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, SpanStatus::Error(_))
    }
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

/// One span, flattened together with its resource and instrumentation scope so that each span
/// can be analysed (and asserted on) alone.
#[derive(Clone, Debug, PartialEq)]
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
    /// A span made by hand, for the tests of what reads spans (the analysis, the renderer, the
    /// codecs, the receiver's store) here and in the end-to-end tests: an INTERNAL span of
    /// service `svc` named `name`, in trace `1111…`, from `start_ms` to `end_ms` milliseconds
    /// after 2023-11-14T22:13:20Z, its id `id` and its parent's `parent` zero-padded to 16 hex
    /// digits. A test sets any other field on the result; [`in_service`](Self::in_service)
    /// changes the service.
    #[doc(hidden)]
    pub fn for_test(
        id: &str,
        parent: Option<&str>,
        name: &str,
        start_ms: u64,
        end_ms: u64,
    ) -> ReceivedSpan {
        const T0: u64 = 1_700_000_000_000_000_000;
        const MS: u64 = 1_000_000;
        ReceivedSpan {
            service_name: String::new(),
            resource: BTreeMap::new(),
            scope_name: String::new(),
            trace_id: "1".repeat(32),
            span_id: format!("{id:0>16}"),
            parent_span_id: parent.map(|p| format!("{p:0>16}")),
            trace_state: String::new(),
            flags: 1,
            name: name.to_owned(),
            kind: SpanKind::Internal,
            start_unix_nano: T0 + start_ms * MS,
            end_unix_nano: T0 + end_ms * MS,
            attributes: BTreeMap::new(),
            events: Vec::new(),
            links: Vec::new(),
            status: SpanStatus::Unset,
        }
        .in_service("svc")
    }

    /// The same span, recorded by `service`: its name and its resource's `service.name`, as a
    /// decoder would set them.
    #[doc(hidden)]
    #[must_use]
    pub fn in_service(mut self, service: &str) -> ReceivedSpan {
        service.clone_into(&mut self.service_name);
        self.resource.insert(
            "service.name".to_owned(),
            AttrValue::Str(service.to_owned()),
        );
        self
    }

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
        Duration::from_nanos(self.duration_ns())
    }

    /// [`duration`](Self::duration) in nanoseconds; 0 for a span that ends before it starts.
    pub fn duration_ns(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }

    /// Whether `self` was recorded as a direct child of `parent`.
    pub fn is_child_of(&self, parent: &ReceivedSpan) -> bool {
        self.trace_id == parent.trace_id
            && self.parent_span_id.as_deref() == Some(parent.span_id.as_str())
    }

    /// What went wrong, for a span with ERROR status: the `error.type` attribute, the status
    /// message and the message of the first `exception` event, whichever exist, joined by
    /// ": " (an empty string for an error without any of them). `None` for other spans.
    pub fn error_summary(&self) -> Option<String> {
        let SpanStatus::Error(message) = &self.status else {
            return None;
        };
        let exception = self
            .events
            .iter()
            .find(|e| e.name == "exception")
            .and_then(|e| e.attributes.get("exception.message"))
            .and_then(AttrValue::as_str);
        let mut parts: Vec<&str> = Vec::new();
        for part in [
            self.str_attr("error.type"),
            Some(message.as_str()),
            exception,
        ] {
            match part {
                Some(p) if !p.is_empty() && !parts.contains(&p) => parts.push(p),
                _ => {}
            }
        }
        Some(parts.join(": "))
    }
}

/// Flattens an OTLP protobuf request into spans that each carry their resource and scope.
///
/// Ids of the wrong length are kept (hex of whatever arrived): the receiver stores what it was
/// sent, and the renderer shows such spans as orphans rather than hiding them.
pub fn decode_request(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| decode_attributes(r.attributes))
            .unwrap_or_default();
        let service_name = service_name(&resource);
        for scope_spans in resource_spans.scope_spans {
            let scope_name = scope_spans.scope.map(|s| s.name).unwrap_or_default();
            for s in scope_spans.spans {
                let status = s.status.map_or(SpanStatus::Unset, |st| {
                    SpanStatus::from_otlp(st.code, st.message)
                });
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
                    kind: SpanKind::from_otlp(s.kind),
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
                    status,
                });
            }
        }
    }
    out
}

/// `service.name` from resource attributes, or "".
pub(crate) fn service_name(resource: &BTreeMap<String, AttrValue>) -> String {
    resource
        .get("service.name")
        .and_then(AttrValue::as_str)
        .unwrap_or_default()
        .to_owned()
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

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// A trace id as typed by a user: 32 hex digits in any case, not all zeros (the W3C invalid
/// id). Returns it in lowercase, the form every source uses; the error says what is wrong
/// (the caller names the input).
pub fn parse_trace_id(input: &str) -> Result<String, String> {
    let id = input.trim();
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "not a trace id: expected 32 hex characters, got {}",
            id.chars().count()
        ));
    }
    if id.bytes().all(|b| b == b'0') {
        return Err("not a trace id: all zeros is the W3C invalid trace id".to_owned());
    }
    Ok(id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_normalised_to_lowercase_and_bad_ones_rejected() {
        let upper = "4BF92F3577B34DA6A3CE929D0E0E4736";
        assert_eq!(parse_trace_id(upper).unwrap(), upper.to_ascii_lowercase());
        for bad in [
            "",
            "4bf92f3577b34da6a3ce929d0e0e473",
            "4bf92f3577b34da6a3ce929d0e0e47360",
            "4bf92f3577b34da6a3ce929d0e0e473g",
            "00000000000000000000000000000000",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse_trace_id(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
