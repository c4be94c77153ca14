//! OTLP JSON, read and written.
//!
//! The OTLP/HTTP JSON encoding differs from protobuf's canonical JSON in ways generic decoders
//! get wrong: trace and span ids are hex (base64, what generic protobuf JSON writers produce,
//! is accepted too), 64-bit integers (timestamps, `intValue`) may be strings or numbers, and
//! enums (`kind`, `status.code`) are integers, although some writers use the enum names
//! (`SPAN_KIND_SERVER`). This module's own small serde
//! model accepts all of those, in either of two wrappers: the bare `{"resourceSpans": [...]}`
//! that OTLP/HTTP and `otel-cli`-style tools write, and Jaeger v2's query API envelope
//! `{"result": {"resourceSpans": [...]}}`. (opentelemetry-proto's `with-serde` feature rejects
//! enum names and would add two crates for base64 and hex, hence a model of our own.)
//!
//! [`encode`] writes spans back as bare OTLP JSON, which [`decode`] reads: `listen --save`
//! and `--file` meet there.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::{Value, json};

use crate::span::{AttrValue, ReceivedEvent, ReceivedSpan, SpanKind, SpanStatus, service_name};

/// Why a document is not OTLP JSON.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("not OTLP JSON: {0}")]
    Syntax(#[from] serde_json::Error),
    #[error("not OTLP JSON: expected an object with \"resourceSpans\" or Jaeger's \"result\"")]
    NoSpans,
    #[error("the document is an error answer: {0}")]
    ErrorAnswer(String),
    #[error("span {index} of the document: {problem}")]
    BadSpan { index: usize, problem: String },
}

/// Decodes a bare or Jaeger-wrapped OTLP JSON document into spans.
pub fn decode(bytes: &[u8]) -> Result<Vec<ReceivedSpan>, JsonError> {
    let document: Document = serde_json::from_slice(bytes)?;
    let resource_spans = match document {
        Document {
            result: Some(data), ..
        } => data.resource_spans,
        Document {
            resource_spans: Some(rs),
            ..
        } => rs,
        Document {
            error: Some(error), ..
        } => return Err(JsonError::ErrorAnswer(error.to_string())),
        _ => return Err(JsonError::NoSpans),
    };
    let mut out = Vec::new();
    for rs in resource_spans {
        let resource = attributes(rs.resource.map(|r| r.attributes).unwrap_or_default());
        let service = service_name(&resource);
        for ss in rs.scope_spans {
            let scope_name = ss.scope.map(|s| s.name).unwrap_or_default();
            for s in ss.spans {
                let span = received(s, out.len(), &service, &resource, &scope_name)?;
                out.push(span);
            }
        }
    }
    Ok(out)
}

/// Span number `index` of the document, with its resource's service and attributes and its
/// scope's name, checked and converted.
fn received(
    s: Span,
    index: usize,
    service: &str,
    resource: &BTreeMap<String, AttrValue>,
    scope_name: &str,
) -> Result<ReceivedSpan, JsonError> {
    let bad = |problem: String| JsonError::BadSpan { index, problem };
    let trace_id = id(&s.trace_id, 16).map_err(|p| bad(format!("traceId {p}")))?;
    let span_id = id(&s.span_id, 8).map_err(|p| bad(format!("spanId {p}")))?;
    let parent_span_id = match s.parent_span_id.as_deref() {
        None | Some("") => None,
        Some(p) => {
            let p = id(p, 8).map_err(|e| bad(format!("parentSpanId {e}")))?;
            (!p.bytes().all(|b| b == b'0')).then_some(p)
        }
    };
    let status = s.status.map_or(SpanStatus::Unset, |st| {
        SpanStatus::from_otlp(st.code.0, st.message)
    });
    let links = s
        .links
        .into_iter()
        .map(|l| {
            Ok((
                id(&l.trace_id, 16).map_err(|p| bad(format!("link traceId {p}")))?,
                id(&l.span_id, 8).map_err(|p| bad(format!("link spanId {p}")))?,
            ))
        })
        .collect::<Result<_, JsonError>>()?;
    Ok(ReceivedSpan {
        service_name: service.to_owned(),
        resource: resource.clone(),
        scope_name: scope_name.to_owned(),
        trace_id,
        span_id,
        parent_span_id,
        trace_state: s.trace_state,
        flags: s.flags,
        name: s.name,
        kind: SpanKind::from_otlp(s.kind.0),
        start_unix_nano: s.start_time_unix_nano.0,
        end_unix_nano: s.end_time_unix_nano.0,
        attributes: attributes(s.attributes),
        events: s
            .events
            .into_iter()
            .map(|e| ReceivedEvent {
                name: e.name,
                time_unix_nano: e.time_unix_nano.0,
                attributes: attributes(e.attributes),
            })
            .collect(),
        links,
        status,
    })
}

/// Spans as a bare OTLP JSON document (`{"resourceSpans": [...]}`), one resource per distinct
/// resource and one scope per distinct scope name, in the order they first appear. Timestamps
/// and `intValue`s are strings, as the OTLP JSON encoding writes 64-bit integers.
pub fn encode(spans: &[ReceivedSpan]) -> Value {
    // Group by (resource, scope) keeping first-seen order; a trace has few of each, so a
    // linear search beats building keys for a map.
    let mut groups: Vec<(&BTreeMap<String, AttrValue>, Vec<ScopeGroup>)> = Vec::new();
    for span in spans {
        let index = if let Some(i) = groups.iter().position(|(r, _)| *r == &span.resource) {
            i
        } else {
            groups.push((&span.resource, Vec::new()));
            groups.len() - 1
        };
        let scopes = &mut groups[index].1;
        match scopes.iter_mut().find(|(name, _)| *name == span.scope_name) {
            Some((_, list)) => list.push(span),
            None => scopes.push((&span.scope_name, vec![span])),
        }
    }
    let resource_spans: Vec<Value> = groups
        .into_iter()
        .map(|(resource, scopes)| {
            json!({
                "resource": {"attributes": encode_attributes(resource)},
                "scopeSpans": scopes.into_iter().map(|(scope, spans)| json!({
                    "scope": {"name": scope},
                    "spans": spans.into_iter().map(encode_span).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "resourceSpans": resource_spans })
}

/// The spans of one instrumentation scope, by scope name.
type ScopeGroup<'a> = (&'a str, Vec<&'a ReceivedSpan>);

fn encode_span(s: &ReceivedSpan) -> Value {
    let (code, message) = match &s.status {
        SpanStatus::Unset => (0, ""),
        SpanStatus::Ok => (1, ""),
        SpanStatus::Error(m) => (2, m.as_str()),
    };
    json!({
        "traceId": s.trace_id,
        "spanId": s.span_id,
        "parentSpanId": s.parent_span_id.as_deref().unwrap_or(""),
        "traceState": s.trace_state,
        "flags": s.flags,
        "name": s.name,
        "kind": s.kind.to_otlp(),
        "startTimeUnixNano": s.start_unix_nano.to_string(),
        "endTimeUnixNano": s.end_unix_nano.to_string(),
        "attributes": encode_attributes(&s.attributes),
        "events": s.events.iter().map(|e| json!({
            "timeUnixNano": e.time_unix_nano.to_string(),
            "name": e.name,
            "attributes": encode_attributes(&e.attributes),
        })).collect::<Vec<_>>(),
        "links": s.links.iter().map(|(t, sp)| json!({"traceId": t, "spanId": sp})).collect::<Vec<_>>(),
        "status": {"code": code, "message": message},
    })
}

fn encode_attributes(attributes: &BTreeMap<String, AttrValue>) -> Vec<Value> {
    attributes
        .iter()
        .map(|(k, v)| json!({"key": k, "value": encode_value(v)}))
        .collect()
}

fn encode_value(v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => json!({"stringValue": s}),
        AttrValue::Int(i) => json!({"intValue": i.to_string()}),
        // JSON has no NaN or infinities; the OTLP JSON encoding spells them as strings.
        AttrValue::Double(d) if d.is_nan() => json!({"doubleValue": "NaN"}),
        AttrValue::Double(d) if d.is_infinite() => {
            json!({"doubleValue": if *d > 0.0 { "Infinity" } else { "-Infinity" }})
        }
        AttrValue::Double(d) => json!({"doubleValue": d}),
        AttrValue::Bool(b) => json!({"boolValue": b}),
        AttrValue::Array(a) => {
            json!({"arrayValue": {"values": a.iter().map(encode_value).collect::<Vec<_>>()}})
        }
        AttrValue::Bytes(b) => json!({"bytesValue": base64_encode(b)}),
        AttrValue::KvList(kv) => json!({"kvlistValue": {"values": encode_attributes(kv)}}),
        AttrValue::Empty => json!({}),
    }
}

/// The two wrappers, decoded in one pass: whichever field is present decides.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    result: Option<TracesData>,
    resource_spans: Option<Vec<ResourceSpans>>,
    error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TracesData {
    #[serde(default)]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans {
    #[serde(default)]
    resource: Option<Resource>,
    #[serde(default)]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(default)]
    attributes: Vec<KeyValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScopeSpans {
    #[serde(default)]
    scope: Option<Scope>,
    #[serde(default)]
    spans: Vec<Span>,
}

#[derive(Deserialize)]
struct Scope {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[expect(
    clippy::struct_field_names,
    reason = "the field names of OTLP JSON's `Span`"
)]
struct Span {
    #[serde(default)]
    trace_id: String,
    #[serde(default)]
    span_id: String,
    #[serde(default)]
    parent_span_id: Option<String>,
    #[serde(default)]
    trace_state: String,
    #[serde(default)]
    flags: u32,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: Enum<KindNames>,
    #[serde(default)]
    start_time_unix_nano: Nanos,
    #[serde(default)]
    end_time_unix_nano: Nanos,
    #[serde(default)]
    attributes: Vec<KeyValue>,
    #[serde(default)]
    events: Vec<Event>,
    #[serde(default)]
    links: Vec<Link>,
    #[serde(default)]
    status: Option<Status>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    #[serde(default)]
    time_unix_nano: Nanos,
    #[serde(default)]
    name: String,
    #[serde(default)]
    attributes: Vec<KeyValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Link {
    #[serde(default)]
    trace_id: String,
    #[serde(default)]
    span_id: String,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    code: Enum<StatusNames>,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct KeyValue {
    key: String,
    #[serde(default)]
    value: Option<AnyValue>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
#[expect(
    clippy::struct_field_names,
    reason = "the field names of OTLP JSON's `AnyValue`"
)]
struct AnyValue {
    string_value: Option<String>,
    bool_value: Option<bool>,
    int_value: Option<Int64>,
    double_value: Option<Double>,
    array_value: Option<ArrayValue>,
    kvlist_value: Option<KvList>,
    bytes_value: Option<String>,
}

#[derive(Deserialize)]
struct ArrayValue {
    #[serde(default)]
    values: Vec<AnyValue>,
}

#[derive(Deserialize)]
struct KvList {
    #[serde(default)]
    values: Vec<KeyValue>,
}

fn attributes(kvs: Vec<KeyValue>) -> BTreeMap<String, AttrValue> {
    kvs.into_iter()
        .map(|kv| (kv.key, kv.value.map_or(AttrValue::Empty, value)))
        .collect()
}

fn value(v: AnyValue) -> AttrValue {
    if let Some(s) = v.string_value {
        AttrValue::Str(s)
    } else if let Some(b) = v.bool_value {
        AttrValue::Bool(b)
    } else if let Some(i) = v.int_value {
        AttrValue::Int(i.0)
    } else if let Some(d) = v.double_value {
        AttrValue::Double(d.0)
    } else if let Some(a) = v.array_value {
        AttrValue::Array(a.values.into_iter().map(value).collect())
    } else if let Some(kv) = v.kvlist_value {
        AttrValue::KvList(attributes(kv.values))
    } else if let Some(b) = v.bytes_value {
        // Undecodable base64 keeps its text: an attribute is not worth rejecting a trace over.
        base64_decode(&b).map_or(AttrValue::Str(b), AttrValue::Bytes)
    } else {
        AttrValue::Empty
    }
}

/// An id of `bytes` bytes as lowercase hex; the error says what is wrong with it.
///
/// OTLP JSON writes ids in hex. Generic protobuf JSON writers use base64 for `bytes` fields
/// instead; its length differs from hex's for both id sizes (24 vs 32, 12 vs 16), so it is
/// accepted too without ambiguity.
fn id(text: &str, bytes: usize) -> Result<String, String> {
    if text.len() == bytes * 2 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(text.to_ascii_lowercase());
    }
    match base64_decode(text) {
        Some(decoded) if text.len() == bytes.div_ceil(3) * 4 && decoded.len() == bytes => {
            Ok(crate::span::hex(&decoded))
        }
        _ => Err(format!("{text:?} is not {} hex digits", bytes * 2)),
    }
}

/// A 64-bit unsigned integer written as a JSON number or a decimal string.
#[derive(Default)]
struct Nanos(u64);

impl<'de> Deserialize<'de> for Nanos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumberOrString::deserialize(d)? {
            NumberOrString::Unsigned(n) => Ok(Nanos(n)),
            NumberOrString::Signed(n) => u64::try_from(n)
                .map(Nanos)
                .map_err(|_| de::Error::custom(format!("negative timestamp {n}"))),
            NumberOrString::Float(_) => Err(de::Error::custom(
                "a timestamp must be an integer number of nanoseconds",
            )),
            NumberOrString::String(s) => s
                .parse()
                .map(Nanos)
                .map_err(|_| de::Error::custom(format!("timestamp {s:?} is not an integer"))),
        }
    }
}

/// A 64-bit signed integer written as a JSON number or a decimal string.
struct Int64(i64);

impl<'de> Deserialize<'de> for Int64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumberOrString::deserialize(d)? {
            NumberOrString::Signed(n) => Ok(Int64(n)),
            NumberOrString::Unsigned(n) => i64::try_from(n)
                .map(Int64)
                .map_err(|_| de::Error::custom(format!("intValue {n} is out of range"))),
            NumberOrString::Float(f) => {
                Err(de::Error::custom(format!("intValue {f} is not an integer")))
            }
            NumberOrString::String(s) => s
                .parse()
                .map(Int64)
                .map_err(|_| de::Error::custom(format!("intValue {s:?} is not an integer"))),
        }
    }
}

/// A double written as a JSON number or as "NaN", "Infinity", "-Infinity" (or a decimal
/// string).
struct Double(f64);

impl<'de> Deserialize<'de> for Double {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumberOrString::deserialize(d)? {
            NumberOrString::Float(f) => Ok(Double(f)),
            NumberOrString::Signed(n) => Ok(Double(n as f64)),
            NumberOrString::Unsigned(n) => Ok(Double(n as f64)),
            NumberOrString::String(s) => match s.as_str() {
                "NaN" => Ok(Double(f64::NAN)),
                "Infinity" => Ok(Double(f64::INFINITY)),
                "-Infinity" => Ok(Double(f64::NEG_INFINITY)),
                _ => s
                    .parse()
                    .map(Double)
                    .map_err(|_| de::Error::custom(format!("doubleValue {s:?} is not a number"))),
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    String(String),
}

/// The enum names an OTLP enum may be written as, besides its number.
trait EnumNames {
    const NAMES: &'static [&'static str];
    const WHAT: &'static str;
}

struct KindNames;
impl EnumNames for KindNames {
    const NAMES: &'static [&'static str] = &[
        "SPAN_KIND_UNSPECIFIED",
        "SPAN_KIND_INTERNAL",
        "SPAN_KIND_SERVER",
        "SPAN_KIND_CLIENT",
        "SPAN_KIND_PRODUCER",
        "SPAN_KIND_CONSUMER",
    ];
    const WHAT: &'static str = "span kind";
}

struct StatusNames;
impl EnumNames for StatusNames {
    const NAMES: &'static [&'static str] =
        &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];
    const WHAT: &'static str = "status code";
}

/// An OTLP enum as its number or its name; the number is what the model keeps.
struct Enum<N>(i32, std::marker::PhantomData<N>);

impl<N> Default for Enum<N> {
    fn default() -> Self {
        Enum(0, std::marker::PhantomData)
    }
}

impl<'de, N: EnumNames> Deserialize<'de> for Enum<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let number = match NumberOrString::deserialize(d)? {
            NumberOrString::Unsigned(n) => i32::try_from(n).ok(),
            NumberOrString::Signed(n) => i32::try_from(n).ok(),
            NumberOrString::Float(_) => None,
            NumberOrString::String(s) => N::NAMES
                .iter()
                .position(|name| *name == s)
                .and_then(|i| i32::try_from(i).ok()),
        };
        number
            .map(|n| Enum(n, std::marker::PhantomData))
            .ok_or_else(|| de::Error::custom(format!("not a {}", N::WHAT)))
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as protobuf JSON writes `bytes`.
fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard or URL-safe base64, padding optional; `None` for anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            // `acc` holds fewer than 16 bits here: the byte is its low byte after the shift.
            out.push((acc >> bits).to_le_bytes()[0]);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAEGER: &str = r#"{"result":{"resourceSpans":[{
        "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"gateway"}}]},
        "scopeSpans":[{"scope":{"name":"gw"},"spans":[
          {"traceId":"4BF92F3577B34DA6A3CE929D0E0E4736","spanId":"00f067aa0ba902b7","parentSpanId":"",
           "name":"POST /api/orders","kind":2,"startTimeUnixNano":"1700000000000000000",
           "endTimeUnixNano":1700000000312000000,
           "attributes":[{"key":"http.response.status_code","value":{"intValue":"201"}},
                         {"key":"n","value":{"intValue":7}},
                         {"key":"d","value":{"doubleValue":"NaN"}},
                         {"key":"b","value":{"bytesValue":"3q0="}},
                         {"key":"a","value":{"arrayValue":{"values":[{"stringValue":"x"},{"boolValue":true}]}}},
                         {"key":"kv","value":{"kvlistValue":{"values":[{"key":"k","value":{"doubleValue":1.5}}]}}},
                         {"key":"e","value":{}}],
           "status":{"code":"STATUS_CODE_ERROR","message":"boom"}},
          {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"53995c3f42cd8ad8","parentSpanId":"00f067aa0ba902b7",
           "name":"child","kind":"SPAN_KIND_CLIENT","startTimeUnixNano":"1700000000010000000",
           "endTimeUnixNano":"1700000000300000000",
           "events":[{"timeUnixNano":"1700000000150000000","name":"exception",
                      "attributes":[{"key":"exception.message","value":{"stringValue":"refused"}}]}],
           "links":[{"traceId":"ffffffffffffffffffffffffffffffff","spanId":"0102030405060708"}],
           "status":{"code":1}}
        ]}]}]}}"#;

    #[test]
    fn jaegers_envelope_with_hex_ids_string_timestamps_and_enum_names_decodes() {
        let spans = decode(JAEGER.as_bytes()).expect("decodes");
        assert_eq!(spans.len(), 2);
        let root = &spans[0];
        assert_eq!(root.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(root.parent_span_id, None);
        assert_eq!(root.service_name, "gateway");
        assert_eq!(root.scope_name, "gw");
        assert_eq!(root.kind, SpanKind::Server);
        assert_eq!(root.start_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(root.end_unix_nano, 1_700_000_000_312_000_000);
        assert_eq!(root.int_attr("http.response.status_code"), Some(201));
        assert_eq!(root.int_attr("n"), Some(7));
        assert!(matches!(root.attr("d"), Some(AttrValue::Double(d)) if d.is_nan()));
        assert_eq!(root.attr("b"), Some(&AttrValue::Bytes(vec![0xde, 0xad])));
        assert_eq!(
            root.attr("a"),
            Some(&AttrValue::Array(vec![
                AttrValue::Str("x".into()),
                AttrValue::Bool(true)
            ]))
        );
        assert_eq!(
            root.attr("kv"),
            Some(&AttrValue::KvList(BTreeMap::from([(
                "k".to_owned(),
                AttrValue::Double(1.5)
            )])))
        );
        assert_eq!(root.attr("e"), Some(&AttrValue::Empty));
        assert_eq!(root.status, SpanStatus::Error("boom".into()));
        let child = &spans[1];
        assert_eq!(child.kind, SpanKind::Client);
        assert_eq!(child.status, SpanStatus::Ok);
        assert!(child.is_child_of(root));
        assert_eq!(child.events[0].time_unix_nano, 1_700_000_000_150_000_000);
        assert_eq!(
            child.links,
            vec![("f".repeat(32), "0102030405060708".to_owned())]
        );
    }

    #[test]
    fn encoding_then_decoding_gives_the_same_spans() {
        let spans = decode(JAEGER.as_bytes()).unwrap();
        let text = serde_json::to_vec(&encode(&spans)).unwrap();
        let again = decode(&text).unwrap();
        // NaN != NaN, so compare everything but that attribute.
        let strip = |mut s: Vec<ReceivedSpan>| {
            for span in &mut s {
                span.attributes.remove("d");
            }
            s
        };
        assert_eq!(strip(again.clone()), strip(spans));
        assert!(matches!(again[0].attr("d"), Some(AttrValue::Double(d)) if d.is_nan()));
    }

    #[test]
    fn malformed_documents_are_rejected_with_what_is_wrong() {
        for (doc, expected) in [
            ("not json", "not OTLP JSON"),
            ("[]", "not OTLP JSON"),
            ("{}", "expected an object"),
            (
                r#"{"error":{"httpCode":404,"message":"No traces found"}}"#,
                "No traces found",
            ),
            (
                r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz","spanId":"00f067aa0ba902b7"}]}]}]}"#,
                "traceId \"xyz\" is not 32 hex digits",
            ),
            (
                r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","kind":"SERVER"}]}]}]}"#,
                "not a span kind",
            ),
            (
                r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","startTimeUnixNano":"-1"}]}]}]}"#,
                "is not an integer",
            ),
        ] {
            let error = decode(doc.as_bytes()).expect_err(doc).to_string();
            assert!(error.contains(expected), "{doc}: {error}");
        }
    }

    #[test]
    fn base64_ids_of_generic_protobuf_json_writers_are_accepted() {
        let doc = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"S/kvNXezTaajzpKdDg5HNg==","spanId":"APBnqgupArc=","parentSpanId":"U5lcP0LNitg="}
        ]}]}]}"#;
        let spans = decode(doc.as_bytes()).expect("decodes");
        assert_eq!(spans[0].trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(spans[0].span_id, "00f067aa0ba902b7");
        assert_eq!(spans[0].parent_span_id.as_deref(), Some("53995c3f42cd8ad8"));
    }

    #[test]
    fn base64_round_trips() {
        for bytes in [&b""[..], b"a", b"ab", b"abc", b"abcd", &[0xff, 0x00, 0x10]] {
            assert_eq!(base64_decode(&base64_encode(bytes)).unwrap(), bytes);
        }
        assert_eq!(base64_encode(&[0xde, 0xad]), "3q0=");
    }
}
