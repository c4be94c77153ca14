//! The OTLP trace request, encoded straight from the SDK's span data.
//!
//! `opentelemetry-otlp` builds its request by converting every [`SpanData`] of a batch into
//! the generated protobuf structs first (a `Vec` for each id, a `String` for the name and for
//! every attribute key and value), then encodes those, then frees them all: about twenty
//! allocations a span that exist only to be written out once. [`TraceEncoder`] writes the
//! protobuf wire format from the span data itself, in one pass over it, into one buffer.
//!
//! The bytes are those `prost` writes for `opentelemetry-proto`'s conversion of the same
//! batch (same fields, in field-number order, the same defaults left out): the tests compare
//! the two byte for byte, so a collector cannot tell them apart.
//!
//! The wire format, in short: a message is a sequence of fields, each a key (field number and
//! wire type, as a varint) and a value: a varint, 8 or 4 little-endian bytes, or a length
//! (varint) and that many bytes, for strings, bytes and nested messages. proto3 leaves out
//! scalars equal to their default (0, empty) and writes a present nested message even when
//! it is empty. Field numbers are those of `opentelemetry/proto/trace/v1/trace.proto`,
//! `common/v1/common.proto` and `resource/v1/resource.proto`.
//!
//! A nested message's length comes before it, but is known only once it is written. Rather
//! than walk every span twice (once to add up lengths, once to write), [`put_message`] sets
//! aside as many bytes for the length as a message of its kind usually needs, writes the
//! message after them, and then fills them in; in the rare case the guess was wrong, it moves
//! the message by the difference, so the output stays the canonical encoding.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry::{
    Array, InstrumentationScope, KeyValue, Value,
    trace::{SpanContext, SpanId, SpanKind, Status, TraceState},
};
use opentelemetry_sdk::{Resource, trace::SpanData};

/// Encodes `ExportTraceServiceRequest`s for one resource.
#[derive(Clone, Debug, Default)]
pub struct TraceEncoder {
    /// The `Resource` message, encoded once: every request repeats it.
    resource: Vec<u8>,
    schema_url: String,
}

/// What a span of the services usually takes on the wire, to size the buffer: a reallocation
/// or two when spans are larger is cheap, an over-estimate only costs address space.
const TYPICAL_SPAN_BYTES: usize = 320;

impl TraceEncoder {
    pub fn new(resource: &Resource) -> Self {
        // Resource: attributes = 1.
        let mut encoded = Vec::new();
        for (key, value) in resource {
            key_value(&mut encoded, 1, &KeyValue::new(key.clone(), value.clone()));
        }
        TraceEncoder {
            resource: encoded,
            schema_url: resource.schema_url().unwrap_or_default().to_owned(),
        }
    }

    /// The request carrying `spans`: one `ResourceSpans`, with a `ScopeSpans` for each
    /// instrumentation scope, in the order the scopes first appear.
    pub fn encode(&self, spans: &[SpanData]) -> Bytes {
        let mut encoded = EncodedSpans::with_capacity(spans.len() * TYPICAL_SPAN_BYTES);
        for span in spans {
            encoded.push(span);
        }
        self.request(encoded)
    }

    /// The request carrying spans encoded as they ended: the bytes [`encode`](Self::encode)
    /// writes for the same spans.
    ///
    /// Spans of one scope, as the services' are, are sent from the buffer they were encoded
    /// into: the request's head goes into the room [`EncodedSpans`] left in front of them, and
    /// its two closing fields after them. Spans of several scopes, or a head longer than that
    /// room, are copied into a request of their own.
    pub fn request(&self, spans: EncodedSpans) -> Bytes {
        let mut scopes = spans.scopes;
        if let [(scope, buffer)] = scopes.as_mut_slice()
            && let Some(start) = self.wrap_in_place(scope, buffer)
        {
            let (_, buffer) = scopes.swap_remove(0);
            return Bytes::from(buffer).slice(start..);
        }
        let spans_of = |at: usize, buffer: &[u8]| -> std::ops::Range<usize> {
            (if at == 0 { HEAD_ROOM } else { 0 })..buffer.len()
        };
        let bytes = scopes
            .iter()
            .enumerate()
            .map(|(at, (_, buffer))| spans_of(at, buffer).len())
            .sum::<usize>();
        let mut out = Vec::with_capacity(self.resource.len() + 64 + bytes);
        // ExportTraceServiceRequest.resource_spans = 1
        put_message(&mut out, 1, Reserve::Batch, |out| {
            // ResourceSpans: resource = 1, scope_spans = 2, schema_url = 3.
            put_message(out, 1, Reserve::Small, |out| {
                out.extend_from_slice(&self.resource);
            });
            for (at, (scope, buffer)) in scopes.iter().enumerate() {
                put_message(out, 2, Reserve::Batch, |out| {
                    write_scope_spans(out, scope, &buffer[spans_of(at, buffer)]);
                });
            }
            put_string(out, 3, &self.schema_url);
        });
        Bytes::from(out)
    }

    /// Turns `buffer`, [`HEAD_ROOM`] bytes and then the spans of `scope`, into the request
    /// for those spans, and returns where in the buffer the request starts; `None`, with the
    /// buffer as it was, if the head does not fit in the room.
    fn wrap_in_place(&self, scope: &InstrumentationScope, buffer: &mut Vec<u8>) -> Option<usize> {
        let spans = buffer.len() - HEAD_ROOM;
        // The fields around the spans, in the order they go out: resource_spans = 1 (its
        // length), ResourceSpans.resource = 1, ResourceSpans.scope_spans = 2 (its length),
        // ScopeSpans.scope = 1; the spans; ScopeSpans.schema_url = 3, ResourceSpans.schema_url
        // = 3. The lengths are those `put_message` writes: every byte of a message after its
        // length, in the fewest bytes.
        let mut scope_message = Vec::new();
        write_scope(&mut scope_message, scope);
        let scope_schema = string_field_len(scope.schema_url().unwrap_or_default());
        let scope_spans = scope_message.len() + spans + scope_schema;
        let resource_spans = field_len(self.resource.len())
            + field_len(scope_spans)
            + string_field_len(&self.schema_url);
        let mut head = Vec::with_capacity(HEAD_ROOM);
        put_key(&mut head, 1, LEN);
        put_varint(&mut head, resource_spans as u64);
        put_bytes(&mut head, 1, &self.resource);
        put_key(&mut head, 2, LEN);
        put_varint(&mut head, scope_spans as u64);
        head.extend_from_slice(&scope_message);
        let start = HEAD_ROOM.checked_sub(head.len())?;
        buffer[start..HEAD_ROOM].copy_from_slice(&head);
        put_string(buffer, 3, scope.schema_url().unwrap_or_default());
        put_string(buffer, 3, &self.schema_url);
        Some(start)
    }
}

/// Bytes [`EncodedSpans`] sets aside in front of the first scope's spans for the request's
/// head: three tags and lengths, the resource (the services' is about 150 bytes) and the
/// scope.
const HEAD_ROOM: usize = 320;

/// Spans already encoded, each as a `Span` field of a `ScopeSpans`, grouped by
/// instrumentation scope in the order the scopes first appear: what a batch processor can
/// queue instead of the spans, until [`TraceEncoder::request`] wraps them for a collector.
///
/// A span encoded where it ends is dropped there too, on the thread that allocated its
/// attributes and events, and a queued span is its few hundred bytes on the wire instead of
/// the span data and everything it points to.
#[derive(Clone, Debug, Default)]
pub struct EncodedSpans {
    scopes: Vec<(InstrumentationScope, Vec<u8>)>,
    spans: usize,
    /// The capacity a scope's buffer starts with.
    capacity: usize,
}

impl EncodedSpans {
    /// Room for `bytes` of encoded spans in the first scope before it grows.
    pub fn with_capacity(bytes: usize) -> Self {
        EncodedSpans {
            capacity: bytes,
            ..EncodedSpans::default()
        }
    }

    /// Encodes `span` after the others of its scope.
    pub fn push(&mut self, span: &SpanData) {
        let scope = &span.instrumentation_scope;
        // A batch from one tracer has one scope, which every span carries a clone of: the
        // comparison with it is usually a few pointer comparisons.
        let at = if let Some(at) = self
            .scopes
            .iter()
            .position(|(known, _)| same_scope(known, scope))
        {
            at
        } else {
            let capacity = self.capacity.max(TYPICAL_SPAN_BYTES);
            // The first scope's spans start after room for the request's head.
            let room = if self.scopes.is_empty() { HEAD_ROOM } else { 0 };
            let mut buffer = Vec::with_capacity(room + capacity);
            buffer.resize(room, 0);
            self.scopes.push((scope.clone(), buffer));
            self.scopes.len() - 1
        };
        // ScopeSpans.spans = 2
        put_message(&mut self.scopes[at].1, 2, Reserve::Span, |out| {
            write_span(out, span);
        });
        self.spans += 1;
    }

    /// How many spans are encoded.
    pub fn len(&self) -> usize {
        self.spans
    }

    pub fn is_empty(&self) -> bool {
        self.spans == 0
    }

    /// The encoded spans' size.
    pub fn bytes(&self) -> usize {
        let buffers: usize = self.scopes.iter().map(|(_, spans)| spans.len()).sum();
        buffers - if self.scopes.is_empty() { 0 } else { HEAD_ROOM }
    }
}

fn same_scope(a: &InstrumentationScope, b: &InstrumentationScope) -> bool {
    let clones = same_text(Some(a.name()), Some(b.name()))
        && same_text(a.version(), b.version())
        && same_text(a.schema_url(), b.schema_url())
        && a.attributes().next().is_none()
        && b.attributes().next().is_none();
    clones || a == b
}

/// The same text at the same address, as clones of one `&'static str` are.
fn same_text(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.as_ptr() == b.as_ptr() && a.len() == b.len(),
        _ => false,
    }
}

/// `ScopeSpans`: scope = 1 (an `InstrumentationScope`: name = 1, version = 2,
/// attributes = 3), spans = 2 (`spans`: fields already encoded), `schema_url` = 3.
fn write_scope_spans(out: &mut Vec<u8>, scope: &InstrumentationScope, spans: &[u8]) {
    write_scope(out, scope);
    out.extend_from_slice(spans);
    put_string(out, 3, scope.schema_url().unwrap_or_default());
}

/// `ScopeSpans.scope` = 1: an `InstrumentationScope` (name = 1, version = 2, attributes = 3).
fn write_scope(out: &mut Vec<u8>, scope: &InstrumentationScope) {
    put_message(out, 1, Reserve::Small, |out| {
        put_string(out, 1, scope.name());
        put_string(out, 2, scope.version().unwrap_or_default());
        for kv in scope.attributes() {
            key_value(out, 3, kv);
        }
    });
}

// `Span`, in field-number order (the order prost writes them): trace_id = 1, span_id = 2,
// trace_state = 3, parent_span_id = 4, name = 5, kind = 6, start_time_unix_nano = 7,
// end_time_unix_nano = 8, attributes = 9, dropped_attributes_count = 10, events = 11,
// dropped_events_count = 12, links = 13, dropped_links_count = 14, status = 15, flags = 16.

fn write_span(out: &mut Vec<u8>, span: &SpanData) {
    let context = &span.span_context;
    put_bytes(out, 1, &context.trace_id().to_bytes());
    put_bytes(out, 2, &context.span_id().to_bytes());
    put_trace_state(out, 3, context);
    if span.parent_span_id != SpanId::INVALID {
        put_bytes(out, 4, &span.parent_span_id.to_bytes());
    }
    put_string(out, 5, &span.name);
    put_varint_field(out, 6, kind(&span.span_kind));
    put_fixed64_field(out, 7, nanos(span.start_time));
    put_fixed64_field(out, 8, nanos(span.end_time));
    for kv in &span.attributes {
        key_value(out, 9, kv);
    }
    put_varint_field(out, 10, u64::from(span.dropped_attributes_count));
    for event in span.events.iter() {
        // Event: time_unix_nano = 1, name = 2, attributes = 3, dropped_attributes_count = 4.
        put_message(out, 11, Reserve::Small, |out| {
            put_fixed64_field(out, 1, nanos(event.timestamp));
            put_string(out, 2, &event.name);
            for kv in &event.attributes {
                key_value(out, 3, kv);
            }
            put_varint_field(out, 4, u64::from(event.dropped_attributes_count));
        });
    }
    put_varint_field(out, 12, u64::from(span.events.dropped_count));
    for link in span.links.iter() {
        // Link: trace_id = 1, span_id = 2, trace_state = 3, attributes = 4,
        // dropped_attributes_count = 5, flags = 6.
        put_message(out, 13, Reserve::Small, |out| {
            put_bytes(out, 1, &link.span_context.trace_id().to_bytes());
            put_bytes(out, 2, &link.span_context.span_id().to_bytes());
            put_trace_state(out, 3, &link.span_context);
            for kv in &link.attributes {
                key_value(out, 4, kv);
            }
            put_varint_field(out, 5, u64::from(link.dropped_attributes_count));
            put_key(out, 6, FIXED32);
            out.extend_from_slice(
                &span_flags(
                    link.span_context.trace_flags().to_u8(),
                    link.span_context.is_remote(),
                )
                .to_le_bytes(),
            );
        });
    }
    put_varint_field(out, 14, u64::from(span.links.dropped_count));
    // Status: message = 2, code = 3; always present, as the conversion always sets it.
    put_message(out, 15, Reserve::Small, |out| {
        let (message, code) = status(&span.status);
        put_string(out, 2, message);
        put_varint_field(out, 3, code);
    });
    put_key(out, 16, FIXED32);
    out.extend_from_slice(
        &span_flags(context.trace_flags().to_u8(), span.parent_span_is_remote).to_le_bytes(),
    );
}

fn status(status: &Status) -> (&str, u64) {
    match status {
        Status::Unset => ("", 0),
        Status::Ok => ("", 1),
        Status::Error { description } => (description, 2),
    }
}

/// `SpanFlags`: the W3C trace flags in the low byte, and whether the parent (or the linked
/// span) is remote, with the bit that says this is known.
fn span_flags(trace_flags: u8, remote: bool) -> u32 {
    const HAS_IS_REMOTE: u32 = 0x100;
    const IS_REMOTE: u32 = 0x200;
    u32::from(trace_flags) | HAS_IS_REMOTE | if remote { IS_REMOTE } else { 0 }
}

fn kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// Nanoseconds since the epoch; 0 (left out) before it, as the conversion does.
fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn put_trace_state(out: &mut Vec<u8>, field: u32, context: &SpanContext) {
    let state = context.trace_state();
    if state != &TraceState::NONE {
        put_string(out, field, &state.header());
    }
}

// `KeyValue`: key = 1, value = 2 (an `AnyValue`, always present). `AnyValue` is a oneof:
// string_value = 1, bool_value = 2, int_value = 3, double_value = 4, array_value = 5 (an
// `ArrayValue`: values = 1, each an `AnyValue`). A oneof member is written even when it holds
// its type's default.

fn key_value(out: &mut Vec<u8>, field: u32, kv: &KeyValue) {
    let key = kv.key.as_str();
    // Nearly every attribute is a short string or integer under a short key: every length
    // then fits in one byte, and the field goes out as its headers and two copies.
    if !key.is_empty() && key.len() < 0x80 {
        match &kv.value {
            Value::String(s) => {
                let s = s.as_str();
                // KeyValue: key header (2) + key, value header (2) + AnyValue: string header
                // (2) + the string.
                let len = 2 + key.len() + 4 + s.len();
                if let Ok(short) = u8::try_from(len)
                    && short < 0x80
                {
                    #[expect(clippy::cast_possible_truncation, reason = "each is below 0x80")]
                    let (key_len, s_len) = (key.len() as u8, s.len() as u8);
                    out.reserve(2 + len);
                    out.extend_from_slice(&[tag(field, LEN), short, tag(1, LEN), key_len]);
                    out.extend_from_slice(key.as_bytes());
                    out.extend_from_slice(&[tag(2, LEN), s_len + 2, tag(1, LEN), s_len]);
                    out.extend_from_slice(s.as_bytes());
                    return;
                }
            }
            Value::I64(i) => {
                let mut varint = [0; 10];
                let bits = i64_bits(*i);
                let varint_len = varint_len(bits);
                fill_varint(&mut varint[..varint_len], bits);
                // KeyValue: key header (2) + key, value header (2) + AnyValue: the int's key
                // (1) + its varint.
                let len = 2 + key.len() + 3 + varint_len;
                if let Ok(short) = u8::try_from(len)
                    && short < 0x80
                {
                    #[expect(clippy::cast_possible_truncation, reason = "each is below 0x80")]
                    let (key_len, value_len) = (key.len() as u8, 1 + varint_len as u8);
                    out.reserve(2 + len);
                    out.extend_from_slice(&[tag(field, LEN), short, tag(1, LEN), key_len]);
                    out.extend_from_slice(key.as_bytes());
                    out.extend_from_slice(&[tag(2, LEN), value_len, tag(3, VARINT)]);
                    out.extend_from_slice(&varint[..varint_len]);
                    return;
                }
            }
            _ => {}
        }
    }
    let Some(value_len) = scalar_len(&kv.value) else {
        put_message(out, field, Reserve::Small, |out| {
            put_string(out, 1, key);
            put_message(out, 2, Reserve::Small, |out| any_value(out, &kv.value));
        });
        return;
    };
    let len = string_field_len(key) + 1 + varint_len(value_len as u64) + value_len;
    put_key(out, field, LEN);
    put_varint(out, len as u64);
    put_string(out, 1, key);
    put_key(out, 2, LEN);
    put_varint(out, value_len as u64);
    any_value(out, &kv.value);
}

/// The length of a scalar's `AnyValue`, or `None` for an array or a kind of value added
/// after this was written.
fn scalar_len(value: &Value) -> Option<usize> {
    match value {
        Value::String(s) => Some(field_len(s.as_str().len())),
        Value::Bool(_) => Some(2),
        Value::I64(i) => Some(1 + varint_len(i64_bits(*i))),
        Value::F64(_) => Some(9),
        _ => None,
    }
}

fn any_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(s) => put_bytes(out, 1, s.as_str().as_bytes()),
        Value::Bool(b) => put_bool(out, *b),
        Value::I64(i) => put_int(out, *i),
        Value::F64(d) => put_double(out, *d),
        Value::Array(array) => put_message(out, 5, Reserve::Small, |out| {
            // ArrayValue.values = 1, each an AnyValue.
            let mut member = |write: &dyn Fn(&mut Vec<u8>)| {
                put_message(out, 1, Reserve::Small, |out| write(out));
            };
            match array {
                Array::Bool(v) => v.iter().for_each(|b| member(&|o| put_bool(o, *b))),
                Array::I64(v) => v.iter().for_each(|i| member(&|o| put_int(o, *i))),
                Array::F64(v) => v.iter().for_each(|d| member(&|o| put_double(o, *d))),
                Array::String(v) => v
                    .iter()
                    .for_each(|s| member(&|o| put_bytes(o, 1, s.as_str().as_bytes()))),
                // A kind of array added after this was written: its members as text, not
                // dropped.
                _ => member(&|o| put_bytes(o, 1, value.as_str().as_bytes())),
            }
        }),
        // A kind of value added after this was written is sent as its text.
        _ => put_bytes(out, 1, value.as_str().as_bytes()),
    }
}

fn put_bool(out: &mut Vec<u8>, b: bool) {
    put_key(out, 2, VARINT);
    out.push(u8::from(b));
}

fn put_int(out: &mut Vec<u8>, i: i64) {
    put_key(out, 3, VARINT);
    put_varint(out, i64_bits(i));
}

fn put_double(out: &mut Vec<u8>, d: f64) {
    put_key(out, 4, FIXED64);
    out.extend_from_slice(&d.to_le_bytes());
}

// The wire format's primitives.

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// How many bytes [`put_message`] sets aside for a message's length: what a message of that
/// kind needs (a varint holds 7 bits a byte), so the message rarely has to move.
#[derive(Clone, Copy)]
enum Reserve {
    /// Attributes, values, events, links, the status, the scope: under 128 bytes.
    Small = 1,
    /// A span: 128 bytes to 16 KiB.
    Span = 2,
    /// A batch, and its spans of one scope: 16 KiB to 2 MiB (a full batch of 512 spans is
    /// about 160 KiB; a smaller one moves by a byte or two, which costs little when small).
    Batch = 3,
}

/// A length-delimited field whose body `write` appends: the length's bytes are set aside
/// first (as many as `reserve` guesses), then filled in; when the guess was wrong, the body
/// moves so that the length takes exactly the bytes it needs.
#[inline]
fn put_message(out: &mut Vec<u8>, field: u32, reserve: Reserve, write: impl FnOnce(&mut Vec<u8>)) {
    put_key(out, field, LEN);
    let reserved = reserve as usize;
    let at = out.len();
    out.resize(at + reserved, 0);
    write(out);
    let len = out.len() - at - reserved;
    let needed = varint_len(len as u64);
    if needed != reserved {
        if needed > reserved {
            out.resize(out.len() + needed - reserved, 0);
        }
        out.copy_within(at + reserved..at + reserved + len, at + needed);
        out.truncate(at + needed + len);
    }
    fill_varint(&mut out[at..at + needed], len as u64);
}

/// Writes `value` as a varint of exactly `into.len()` bytes (its [`varint_len`]).
#[expect(clippy::cast_possible_truncation, reason = "the low 7 bits, by design")]
fn fill_varint(into: &mut [u8], mut value: u64) {
    let (last, rest) = into
        .split_last_mut()
        .expect("a varint takes a byte at least");
    for byte in rest {
        *byte = (value as u8) | 0x80;
        value >>= 7;
    }
    *last = value as u8;
}

/// An `int64` is written as its two's complement bits: a negative one takes ten bytes.
#[expect(clippy::cast_sign_loss, reason = "protobuf writes int64 as its bits")]
fn i64_bits(i: i64) -> u64 {
    i as u64
}

fn varint_len(value: u64) -> usize {
    // 7 bits a byte; 0 takes one byte.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

#[expect(clippy::cast_possible_truncation, reason = "the low 7 bits, by design")]
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, u64::from(field << 3 | u32::from(wire_type)));
}

/// The one-byte key of a field numbered below 16.
#[expect(
    clippy::cast_possible_truncation,
    reason = "field numbers here are below 16"
)]
const fn tag(field: u32, wire_type: u8) -> u8 {
    debug_assert!(field < 16);
    (field as u8) << 3 | wire_type
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A length-delimited field of `len` bytes, key and length included. The fields this module
/// writes all have numbers below 16, so their key is one byte.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// A string field; an empty one is left out.
fn string_field_len(s: &str) -> usize {
    if s.is_empty() { 0 } else { field_len(s.len()) }
}

/// A string field; an empty one is left out.
fn put_string(out: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        put_bytes(out, field, s.as_bytes());
    }
}

/// A varint field; 0 is left out.
fn put_varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        put_key(out, field, VARINT);
        put_varint(out, value);
    }
}

/// A fixed64 field; 0 is left out.
fn put_fixed64_field(out: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        put_key(out, field, FIXED64);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use opentelemetry::{
        InstrumentationScope, KeyValue, StringValue,
        trace::{
            Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
        },
    };
    use opentelemetry_proto::{
        tonic::collector::trace::v1::ExportTraceServiceRequest,
        transform::{
            common::tonic::ResourceAttributesWithSchema,
            trace::tonic::group_spans_by_resource_and_scope,
        },
    };
    use opentelemetry_sdk::{
        Resource,
        trace::{SpanData, SpanEvents, SpanLinks},
    };
    use prost::Message as _;

    use super::TraceEncoder;

    /// What `opentelemetry-otlp` sends for the same batch: the generated structs, encoded.
    fn reference(resource: &Resource, spans: &[SpanData]) -> Vec<u8> {
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans.to_vec(),
                &ResourceAttributesWithSchema::from(resource),
            ),
        }
        .encode_to_vec()
    }

    fn context(trace: u128, span: u64, state: TraceState, remote: bool) -> SpanContext {
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            TraceFlags::SAMPLED,
            remote,
            state,
        )
    }

    fn span(name: &'static str, scope: &InstrumentationScope) -> SpanData {
        let start = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_764_600_000_123_456_789);
        SpanData {
            span_context: context(
                0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
                0x00f0_67aa_0ba9_02b7,
                TraceState::NONE,
                false,
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: name.into(),
            start_time: start,
            end_time: start + Duration::from_micros(1250),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: scope.clone(),
        }
    }

    /// Spans using every field and every kind of value, in two scopes.
    fn batch() -> (Resource, Vec<SpanData>) {
        let resource = Resource::builder_empty()
            .with_service_name("order-service")
            .with_attribute(KeyValue::new("service.version", "0.1.0"))
            .with_schema_url([], "https://opentelemetry.io/schemas/1.34.0")
            .build();
        let tracing = InstrumentationScope::builder("tracing-opentelemetry")
            .with_version("0.34.0")
            .build();
        let other = InstrumentationScope::builder("other")
            .with_schema_url("https://example.com/schema")
            .with_attributes([KeyValue::new("scope.kind", "test")])
            .build();

        let server = server_span(&tracing);
        let failed = failed_span(&tracing);
        let mut other_scope = span("other", &other);
        other_scope.span_kind = SpanKind::Producer;
        let mut consumer = span("consumer", &other);
        consumer.span_kind = SpanKind::Consumer;
        consumer.start_time = SystemTime::UNIX_EPOCH;
        consumer.end_time = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        let db = span("SELECT orders", &tracing);
        (resource, vec![server, failed, other_scope, db, consumer])
    }

    /// A server span with a remote parent, a tracestate and attributes of every kind.
    fn server_span(scope: &InstrumentationScope) -> SpanData {
        let mut server = span("POST /orders", scope);
        server.span_kind = SpanKind::Server;
        server.parent_span_id = SpanId::from(0x1111_2222_3333_4444);
        server.parent_span_is_remote = true;
        server.span_context = context(
            0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
            0x0102_0304_0506_0708,
            TraceState::from_key_value([("vendor", "opaque"), ("rojo", "00f067aa0ba902b7")])
                .expect("valid"),
            false,
        );
        server.attributes = vec![
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("http.response.status_code", 201_i64),
            KeyValue::new("http.route", StringValue::from(String::from("/orders"))),
            KeyValue::new("negative", -42_i64),
            KeyValue::new("zero", 0_i64),
            KeyValue::new("ratio", 0.25),
            KeyValue::new("flag", false),
            KeyValue::new("empty", ""),
            KeyValue::new("unicode", "größe ✓"),
            KeyValue::new(
                "tags",
                opentelemetry::Value::Array(
                    vec![StringValue::from("a"), StringValue::from("")].into(),
                ),
            ),
            KeyValue::new(
                "ints",
                opentelemetry::Value::Array(vec![1_i64, -1, i64::MAX].into()),
            ),
            KeyValue::new(
                "bools",
                opentelemetry::Value::Array(vec![true, false].into()),
            ),
            KeyValue::new(
                "floats",
                opentelemetry::Value::Array(vec![1.5, -0.0].into()),
            ),
            KeyValue::new("long", "x".repeat(300)),
        ];
        server.dropped_attributes_count = 3;
        server.status = Status::Ok;
        server
    }

    /// A failed client span with events and links, and counts of what was dropped.
    fn failed_span(scope: &InstrumentationScope) -> SpanData {
        let mut failed = span("charge_card", scope);
        failed.span_kind = SpanKind::Client;
        failed.parent_span_id = SpanId::from(0x0102_0304_0506_0708);
        failed.status = Status::error("card declined");
        failed.events.events = vec![
            Event::new(
                "exception",
                failed.start_time,
                vec![
                    KeyValue::new("exception.type", "Declined"),
                    KeyValue::new("exception.message", "card declined"),
                ],
                1,
            ),
            Event::with_name("empty"),
        ];
        failed.events.dropped_count = 2;
        failed.links.links = vec![
            Link::new(
                context(7, 8, TraceState::NONE, true),
                vec![KeyValue::new("link.reason", "retry")],
                0,
            ),
            Link::with_context(context(
                9,
                10,
                TraceState::from_key_value([("k", "v")]).expect("valid"),
                false,
            )),
        ];
        failed.links.dropped_count = 1;
        failed
    }

    #[test]
    fn the_request_is_byte_for_byte_what_the_generated_types_encode() {
        let (resource, spans) = batch();
        assert_eq!(
            TraceEncoder::new(&resource).encode(&spans),
            reference(&resource, &spans)
        );
    }

    #[test]
    fn one_span_an_empty_batch_and_an_empty_resource_match_too() {
        let (resource, spans) = batch();
        for spans in [&spans[..1], &spans[1..2], &[]] {
            assert_eq!(
                TraceEncoder::new(&resource).encode(spans),
                reference(&resource, spans)
            );
        }
        let empty = Resource::builder_empty().build();
        assert_eq!(
            TraceEncoder::new(&empty).encode(&spans),
            reference(&empty, &spans)
        );
    }

    #[test]
    fn spans_of_one_scope_match_too_whether_the_head_fits_their_room_or_not() {
        // One scope: the request is built around the spans where they were encoded, unless
        // the head (a resource of 400 bytes here) does not fit in front of them.
        let scope = InstrumentationScope::builder("common")
            .with_version("0.1.0")
            .with_schema_url("https://opentelemetry.io/schemas/1.34.0")
            .build();
        let spans = vec![server_span(&scope), span("SELECT orders", &scope)];
        let empty = Resource::builder_empty().build();
        let (usual, _) = batch();
        let large = Resource::builder_empty()
            .with_service_name("order-service")
            .with_attribute(KeyValue::new("host.description", "h".repeat(400)))
            .build();
        for resource in [empty, usual, large] {
            let encoder = TraceEncoder::new(&resource);
            assert_eq!(encoder.encode(&spans), reference(&resource, &spans));
            assert_eq!(
                encoder.encode(&spans[..1]),
                reference(&resource, &spans[..1])
            );
        }
    }

    #[test]
    fn attributes_on_either_side_of_one_length_byte_match_too() {
        // The short string and integer attributes take a path of their own, up to a
        // `KeyValue` of 0x7f bytes; around that, and with an empty key, both paths must
        // write what the generated types do.
        let (resource, _) = batch();
        let scope = InstrumentationScope::builder("common").build();
        let mut attributes = Vec::new();
        for key_len in [0, 1, 40, 115, 116, 117, 118, 127, 128, 200] {
            let key = "k".repeat(key_len);
            for value_len in [
                0, 1, 60, 115, 116, 117, 118, 119, 120, 121, 126, 127, 128, 300,
            ] {
                attributes.push(KeyValue::new(key.clone(), "v".repeat(value_len)));
            }
            for int in [0, 1, 127, 128, 300, i64::MAX, -1, i64::MIN] {
                attributes.push(KeyValue::new(key.clone(), int));
            }
        }
        let spans: Vec<SpanData> = attributes
            .chunks(7)
            .map(|chunk| {
                let mut span = span("boundaries", &scope);
                span.attributes = chunk.to_vec();
                span
            })
            .collect();
        assert_eq!(
            TraceEncoder::new(&resource).encode(&spans),
            reference(&resource, &spans)
        );
    }

    #[test]
    fn messages_longer_than_their_reserved_length_bytes_are_moved_not_cut() {
        // A 20 KiB attribute makes its span need three length bytes (two are set aside), and a
        // 3 MiB one makes the batch need four (three are set aside).
        let (resource, _) = batch();
        let scope = InstrumentationScope::builder("common").build();
        for size in [20 * 1024, 3 * 1024 * 1024] {
            let mut big = span("big", &scope);
            big.attributes = vec![KeyValue::new("db.query.text", "x".repeat(size))];
            let spans = vec![span("before", &scope), big, span("after", &scope)];
            assert_eq!(
                TraceEncoder::new(&resource).encode(&spans),
                reference(&resource, &spans),
                "{size} bytes"
            );
        }
    }

    #[test]
    fn equal_scopes_built_apart_share_a_scope_and_unequal_ones_do_not() {
        let (resource, _) = batch();
        // Owned names at different addresses: only the full comparison can tell they are equal.
        let scope = || {
            InstrumentationScope::builder(String::from("common"))
                .with_version(String::from("0.1.0"))
                .build()
        };
        let (first, second) = (scope(), scope());
        let unversioned = InstrumentationScope::builder("common").build();
        let empty_version = InstrumentationScope::builder("common")
            .with_version("")
            .build();
        let spans = vec![
            span("a", &first),
            span("b", &second),
            span("c", &unversioned),
            span("d", &empty_version),
            span("e", &first),
        ];
        assert_eq!(
            TraceEncoder::new(&resource).encode(&spans),
            reference(&resource, &spans)
        );
    }

    #[test]
    fn what_it_writes_decodes_to_the_spans_it_was_given() {
        let (resource, spans) = batch();
        let request =
            ExportTraceServiceRequest::decode(&TraceEncoder::new(&resource).encode(&spans)[..])
                .expect("a valid message");
        let scopes = &request.resource_spans[0].scope_spans;
        let names: Vec<Vec<&str>> = scopes
            .iter()
            .map(|s| s.spans.iter().map(|span| span.name.as_str()).collect())
            .collect();
        assert_eq!(
            names,
            [
                vec!["POST /orders", "charge_card", "SELECT orders"],
                vec!["other", "consumer"]
            ]
        );
        let server = &scopes[0].spans[0];
        assert_eq!(server.trace_id, spans[0].span_context.trace_id().to_bytes());
        assert_eq!(server.trace_state, "vendor=opaque,rojo=00f067aa0ba902b7");
        assert_eq!(server.flags, 0x301, "sampled, with a remote parent");
    }
}
