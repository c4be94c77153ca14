//! Log lines that lead to the trace.
//!
//! Every line written while a request is handled carries the `trace_id` and `span_id` of the
//! span it was written in, the service name, and the request's baggage entries (`user_id`,
//! `customer_tier`, set by the gateway), so a log line found by grep opens the trace in Jaeger
//! and a trace's spans lead back to their log lines.
//!
//! The ids come from the OpenTelemetry context that `tracing-opentelemetry` keeps for the
//! span the line was written in (the innermost one it knows, for a line in a span of the
//! plumbing), so they are the same ids the exporter sends, sampled or not. The layer does not
//! make that context current on every enter (see `otel_layer`): the lines look it up instead.
//!
//! Two formats: JSON lines (one object per line, for containers and log shippers) and
//! readable text (for a terminal). `LOG_FORMAT` chooses; by default a terminal gets text
//! and anything else JSON.
//!
//! Much of a line comes from callers: baggage values (percent-decoded, so `%0A` is a line
//! feed), error messages, fields that quote a request. No such value may start a new line or
//! drive the terminal, or one request could write a forged `{"level":"ERROR",...}` line or
//! clear the screen. So every value, in both formats, is written with its control characters
//! (C0, DEL, C1) and the Unicode line, paragraph and bidirectional controls escaped: in JSON
//! as `\uXXXX` (`serde_json` escapes only C0), in text as `\n`, `\u{1b}`, with values that are
//! not plain words quoted, so a value cannot pose as another `key=value` either.

use std::{borrow::Cow, cell::RefCell, fmt, io::IsTerminal, sync::OnceLock};

use opentelemetry::{
    baggage::BaggageExt,
    trace::{SpanContext, TraceContextExt},
};
use serde::Serialize as _;
use serde_json::Value;
use tracing::{Dispatch, Event, Subscriber, dispatcher::WeakDispatch, field::Field};
use tracing_subscriber::{
    Layer,
    fmt::{
        MakeWriter,
        format::Writer,
        time::{FormatTime, SystemTime},
    },
    layer::Context,
    registry::LookupSpan,
};

use crate::{
    config::{ConfigError, Vars, shared as var},
    propagation::trace_context::encode_lower_hex,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl LogFormat {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        match vars.get(&var::LOG_FORMAT).as_deref().map(str::trim) {
            None if std::io::stdout().is_terminal() => Ok(LogFormat::Text),
            None | Some("json") => Ok(LogFormat::Json),
            Some("text") => Ok(LogFormat::Text),
            Some(other) => Err(ConfigError::invalid(
                var::LOG_FORMAT.name,
                other,
                "expected json or text",
            )),
        }
    }
}

/// The line of an event, in either format; written by [`LogLayer`].
pub struct EventFormat {
    service: String,
    format: LogFormat,
}

impl EventFormat {
    pub fn new(service: impl Into<String>, format: LogFormat) -> Self {
        EventFormat {
            service: service.into(),
            format,
        }
    }
}

impl EventFormat {
    /// Writes `event`, logged in the span named `span_name` whose OpenTelemetry context is
    /// `cx`, as one line.
    fn write_line(
        &self,
        writer: Writer<'_>,
        span_name: Option<&str>,
        cx: &opentelemetry::Context,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let meta = event.metadata();

        let mut fields = FieldMap::default();
        event.record(&mut fields);
        let message = fields.message.take().unwrap_or_default();

        let span = cx.span();
        let span_context = span.span_context();
        let ids = span_context.is_valid().then(|| HexIds::new(span_context));
        // Sorted, so the text format is stable (Baggage is a hash map).
        let mut baggage: Vec<(&str, &str)> = cx
            .baggage()
            .iter()
            .map(|(key, (value, _))| (key.as_str(), value.as_str()))
            .collect();
        baggage.sort_unstable();
        let mut correlation: Vec<(&str, &str)> = Vec::with_capacity(2 + baggage.len());
        if let Some(ids) = &ids {
            let (trace_id, span_id) = ids.trace_and_span_id();
            correlation.push(("trace_id", trace_id));
            correlation.push(("span_id", span_id));
        }
        correlation.extend(baggage);

        let line = Line {
            timestamp: &timestamp,
            meta,
            message: &message,
            correlation: &correlation,
            span_name,
            fields: &fields,
        };
        match self.format {
            LogFormat::Json => self.write_json(writer, &line),
            LogFormat::Text => self.write_text(writer, &line),
        }
    }

    fn write_json(&self, mut writer: Writer<'_>, line_parts: &Line<'_>) -> fmt::Result {
        let Line {
            timestamp,
            meta,
            message,
            correlation,
            span_name,
            fields,
        } = *line_parts;
        // The members in order, each key once: the envelope first, then the
        // correlation and the span name, then the event's fields. Written straight
        // into the line, not gathered in a `serde_json::Map` first, which cost a
        // `String` for every key and value and a hash of every key, on every line.
        let mut line: Vec<(&str, JsonValue<'_>)> =
            Vec::with_capacity(6 + correlation.len() + fields.values.len());
        line.push(("timestamp", JsonValue::Str(timestamp)));
        line.push(("level", JsonValue::Str(meta.level().as_str())));
        line.push(("service", JsonValue::Str(&self.service)));
        line.push(("target", JsonValue::Str(meta.target())));
        line.push(("message", JsonValue::Str(message)));
        let has =
            |line: &[(&str, JsonValue<'_>)], key: &str| line.iter().position(|(k, _)| *k == key);
        for (k, v) in correlation {
            // Baggage keys come from callers: they never overwrite the envelope.
            if has(&line, k).is_none() {
                line.push((k, JsonValue::Str(v)));
            }
        }
        if let Some(name) = span_name {
            // The span's name wins over a baggage entry called `span`, in its place.
            match has(&line, "span") {
                Some(i) => line[i].1 = JsonValue::Str(name),
                None => line.push(("span", JsonValue::Str(name))),
            }
        }
        for (k, v) in &fields.values {
            // A field never overwrites the envelope: `message` or `trace_id` stay true.
            if has(&line, k).is_none() {
                line.push((k, JsonValue::Json(v)));
            }
        }
        let mut json = Vec::with_capacity(256);
        write_json_object(&mut json, &line).map_err(|_| fmt::Error)?;
        let json = std::str::from_utf8(&json).map_err(|_| fmt::Error)?;
        writeln!(writer, "{json}")
    }

    fn write_text(&self, mut writer: Writer<'_>, line: &Line<'_>) -> fmt::Result {
        let Line {
            timestamp,
            meta,
            message,
            correlation,
            span_name,
            fields,
        } = *line;
        write!(
            writer,
            "{timestamp} {:>5} {} {}: {}",
            meta.level(),
            text_value(&self.service),
            text_value(meta.target()),
            escape_controls(message),
        )?;
        for (k, v) in &fields.values {
            match v {
                // Strings are always quoted: a field is a value, not a word.
                Value::String(s) => write!(writer, " {}={}", text_value(k), quoted(s))?,
                other => write!(writer, " {}={other}", text_value(k))?,
            }
        }
        if let Some(name) = span_name {
            write!(writer, " span={}", text_value(name))?;
        }
        for (k, v) in correlation {
            write!(writer, " {}={}", text_value(k), text_value(v))?;
        }
        writeln!(writer)
    }
}

/// A line's trace and span ids as lowercase hex, in one fixed buffer: every line written inside a
/// request carries them, and `to_string` made two `String`s and two trips through `fmt` a line.
/// The trace id of every answer (`current_trace_id`) comes from here too.
pub(super) struct HexIds([u8; TRACE_ID_DIGITS + SPAN_ID_DIGITS]);

const TRACE_ID_DIGITS: usize = 32;
const SPAN_ID_DIGITS: usize = 16;

impl HexIds {
    pub(super) fn new(span_context: &SpanContext) -> Self {
        let mut digits = [0; TRACE_ID_DIGITS + SPAN_ID_DIGITS];
        let (trace_id, span_id) = digits.split_at_mut(TRACE_ID_DIGITS);
        encode_lower_hex(&span_context.trace_id().to_bytes(), trace_id);
        encode_lower_hex(&span_context.span_id().to_bytes(), span_id);
        HexIds(digits)
    }

    pub(super) fn trace_id(&self) -> &str {
        std::str::from_utf8(&self.0[..TRACE_ID_DIGITS]).expect("hex digits")
    }

    /// The trace id and the span id, checked as text once for both.
    fn trace_and_span_id(&self) -> (&str, &str) {
        std::str::from_utf8(&self.0)
            .expect("hex digits")
            .split_at(TRACE_ID_DIGITS)
    }
}

/// The parts of one log line, gathered once for either format.
#[derive(Clone, Copy)]
struct Line<'a> {
    timestamp: &'a str,
    meta: &'static tracing::Metadata<'static>,
    message: &'a str,
    /// Trace and span id, then the baggage, sorted.
    correlation: &'a [(&'a str, &'a str)],
    span_name: Option<&'a str>,
    fields: &'a FieldMap,
}

/// The log layer: each event that passes its filter becomes one line ([`EventFormat`]),
/// written whole to `writer`.
///
/// It replaces tracing-subscriber's fmt layer, whose lines these were, because the fmt layer
/// also works for every span: it renders a span's fields into a string when the span is
/// created, appends to it on every `record`, and stores it in the span, for event formatters
/// that print their spans' fields. These lines print none (a line carries its span's name
/// and the trace context; the span's attributes are in the trace), so each span paid for a
/// `String`, a `Debug` rendering of every field (the SQL text of each DB span, for one) and
/// a slot in the span's extensions, whether or not anything was ever logged in it. This
/// layer keeps nothing per span: a span costs it nothing until an event is logged inside.
pub struct LogLayer<W> {
    format: EventFormat,
    writer: W,
    /// The subscriber this layer is part of, set when it is registered: asking the
    /// OpenTelemetry layer for a span's context needs it, and inside a layer's callback the
    /// thread's default dispatcher is a no-op one (tracing's guard against recursion).
    dispatch: OnceLock<WeakDispatch>,
}

impl<W> LogLayer<W> {
    pub fn new(format: EventFormat, writer: W) -> Self {
        LogLayer {
            format,
            writer,
            dispatch: OnceLock::new(),
        }
    }
}

/// A line longer than this gives its buffer back after it is written, so one huge line
/// does not keep a thread's buffer that large for ever.
const KEPT_LINE_CAPACITY: usize = 16 * 1024;

impl<S, W> Layer<S> for LogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        thread_local! {
            static LINE: RefCell<String> = const { RefCell::new(String::new()) };
        }
        let current = ctx.lookup_current();
        let span_name = current
            .as_ref()
            .map(tracing_subscriber::registry::SpanRef::name);
        // The context of the innermost span that the OpenTelemetry layer has one for: the
        // current span's, or an ancestor's when the current span is one of the plumbing's,
        // which that layer never sees.
        let dispatch = self.dispatch.get().and_then(WeakDispatch::upgrade);
        let cx = current
            .zip(dispatch)
            .and_then(|(span, dispatch)| {
                span.scope()
                    .find_map(|span| tracing_opentelemetry::get_otel_context(&span.id(), &dispatch))
            })
            .unwrap_or_default();
        LINE.with(|line| {
            // An event logged while a line is being written (by a field's `Debug`, say)
            // gets a buffer of its own rather than a panic.
            let mut own = String::new();
            let mut borrowed = line.try_borrow_mut();
            let buf = match &mut borrowed {
                Ok(buf) => {
                    buf.clear();
                    &mut **buf
                }
                Err(_) => &mut own,
            };
            if self
                .format
                .write_line(Writer::new(buf), span_name, &cx, event)
                .is_ok()
            {
                // Nowhere to report a failed write to: stdout is where reports go.
                let mut writer = self.writer.make_writer_for(event.metadata());
                let _ = std::io::Write::write_all(&mut writer, buf.as_bytes());
            }
            if buf.capacity() > KEPT_LINE_CAPACITY {
                *buf = String::new();
            }
        });
    }
}

/// Whether `c` could break a log line or drive a terminal: the C0 and C1 controls and DEL
/// (`char::is_control`), the line and paragraph separators that some viewers break on, and
/// the bidirectional controls that can make a line read as something else.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// A value in the text format: bare when it is a plain word (`gold`, `order-service`,
/// `4bf9...`), else quoted with [`quoted`].
fn text_value(s: &str) -> Cow<'_, str> {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || "-_.:/@".contains(c));
    if plain {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(quoted(s))
    }
}

/// `s` in double quotes, with `"` and `\\` escaped and every unsafe character written as an
/// escape.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => push_char(&mut out, c),
        }
    }
    out.push('"');
    out
}

/// `s` with its unsafe characters escaped, and nothing else changed: for the free text of a
/// message, which stays readable.
fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_char(&mut out, c);
    }
    Cow::Owned(out)
}

fn push_char(out: &mut String, c: char) {
    use std::fmt::Write as _;
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if is_unsafe(c) => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// `serde_json`'s compact output, with every [`is_unsafe`] character escaped as `\uXXXX`.
/// `serde_json` escapes C0 itself; DEL, C1 and the Unicode controls it writes as they are,
/// valid JSON that a terminal showing the line would still obey.
struct EscapingFormatter;

impl serde_json::ser::Formatter for EscapingFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        // Almost every fragment (ids, names, messages) is printable ASCII, which holds no
        // unsafe character: one check of its bytes, which the compiler vectorises, instead of
        // decoding and classifying it char by char. DEL is ASCII but unsafe; every other
        // unsafe character is a control byte or starts with a byte above 0x7e.
        if fragment.bytes().all(|b| matches!(b, 0x20..=0x7e)) {
            return writer.write_all(fragment.as_bytes());
        }
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if is_unsafe(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                // Every unsafe character is in the Basic Multilingual Plane: one \u escape.
                write!(writer, "\\u{:04x}", u32::from(c))?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// A member's value in a JSON line: a string of the envelope or the correlation, or a field's
/// typed value.
enum JsonValue<'a> {
    Str(&'a str),
    Json(&'a Value),
}

/// `{"key":value,...}`, compact, every string through [`EscapingFormatter`]: what
/// serializing a `serde_json::Map` of the same members in the same order writes.
fn write_json_object(
    out: &mut Vec<u8>,
    members: &[(&str, JsonValue<'_>)],
) -> serde_json::Result<()> {
    use serde::Serializer as _;
    // A serializer is two words; one per value keeps `out` free for the punctuation.
    fn ser(out: &mut Vec<u8>) -> serde_json::Serializer<&mut Vec<u8>, EscapingFormatter> {
        serde_json::Serializer::with_formatter(out, EscapingFormatter)
    }
    // Nearly every key and string (names, ids, the timestamp) is printable ASCII with no
    // quote or backslash, which JSON and the formatter write as it is: one check of its bytes,
    // which the compiler vectorises, instead of the serializer's byte-by-byte escape lookup.
    fn string(out: &mut Vec<u8>, s: &str) -> serde_json::Result<()> {
        if s.bytes()
            .all(|b| matches!(b, 0x20..=0x7e) && b != b'"' && b != b'\\')
        {
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
            return Ok(());
        }
        ser(out).serialize_str(s)
    }
    out.push(b'{');
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, key)?;
        out.push(b':');
        match value {
            JsonValue::Str(s) => string(out, s)?,
            JsonValue::Json(v) => v.serialize(&mut ser(out))?,
        }
    }
    out.push(b'}');
    Ok(())
}

/// Collects an event's fields as JSON values, keeping numbers and booleans typed.
#[derive(Default)]
struct FieldMap {
    message: Option<String>,
    values: Vec<(&'static str, Value)>,
}

impl FieldMap {
    fn push(&mut self, field: &Field, value: Value) {
        // `log` records bridged into tracing carry their metadata as `log.*` fields.
        if !field.name().starts_with("log.") {
            self.values.push((field.name(), value));
        }
    }
}

impl tracing::field::Visit for FieldMap {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        } else {
            self.push(field, value.into());
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The whole cause chain, so one log line tells the story.
        self.push(field, crate::telemetry::error_chain(value).into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = Some(format!("{value:?}"));
        } else {
            self.push(field, format!("{value:?}").into());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::{Layer as _, layer::SubscriberExt, util::SubscriberInitExt};

    use super::*;

    /// Captures what the formatter writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(format: LogFormat, f: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        // The services' own OpenTelemetry layer, which does not make contexts current.
        let subscriber = tracing_subscriber::registry()
            .with(
                crate::telemetry::otel_layer(provider.tracer("test"))
                    .with_filter(crate::telemetry::span_filter()),
            )
            .with(LogLayer::new(
                EventFormat::new("order-service", format),
                move || writer.clone(),
            ));
        let _guard = subscriber.set_default();
        f();
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    /// The trace and span ids of `span`'s OpenTelemetry context, as log lines print them.
    fn ids_of(span: &tracing::Span) -> (String, String) {
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        (sc.trace_id().to_string(), sc.span_id().to_string())
    }

    #[test]
    fn a_json_line_carries_the_trace_and_span_ids_of_its_span() {
        let mut ids = (String::new(), String::new());
        let out = capture(LogFormat::Json, || {
            let span = tracing::info_span!("save_order");
            let _entered = span.enter();
            ids = ids_of(&span);
            tracing::info!(order_id = 7, valid = true, "order saved");
        });
        let line: Value = serde_json::from_str(out.trim()).expect("one JSON object");
        assert_eq!(line["message"], "order saved");
        assert_eq!(line["service"], "order-service");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["trace_id"], ids.0.as_str());
        assert_eq!(line["span_id"], ids.1.as_str());
        assert_eq!(line["span"], "save_order");
        assert_eq!(line["order_id"], 7, "numbers stay numbers");
        assert_eq!(line["valid"], true);
    }

    #[test]
    fn baggage_entries_appear_in_log_lines_without_overriding_the_envelope() {
        use opentelemetry::{KeyValue, baggage::BaggageExt};
        let out = capture(LogFormat::Json, || {
            let span = tracing::info_span!("charge_card");
            let _ = span.set_parent(opentelemetry::Context::new().with_baggage([
                KeyValue::new("user_id", "42"),
                KeyValue::new("customer_tier", "gold"),
                KeyValue::new("message", "spoofed"),
            ]));
            let _entered = span.enter();
            tracing::info!("charging");
        });
        let line: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(line["user_id"], "42");
        assert_eq!(line["customer_tier"], "gold");
        assert_eq!(
            line["message"], "charging",
            "a baggage key never replaces the message"
        );
    }

    #[test]
    fn a_line_in_a_span_of_the_plumbing_carries_the_ids_of_the_span_around_it() {
        let mut ids = (String::new(), String::new());
        let out = capture(LogFormat::Json, || {
            let span = tracing::info_span!("save_order");
            let _entered = span.enter();
            ids = ids_of(&span);
            // The OpenTelemetry layer never sees hyper's spans (`span_filter`).
            let plumbing = tracing::info_span!(target: "hyper", "connection");
            let _in_plumbing = plumbing.enter();
            tracing::info!("inside the plumbing");
        });
        let line: Value = serde_json::from_str(out.trim()).expect("one JSON object");
        assert_eq!(line["trace_id"], ids.0.as_str());
        assert_eq!(line["span_id"], ids.1.as_str());
        assert_eq!(line["span"], "connection");
    }

    #[test]
    fn a_json_line_keeps_its_members_in_order_and_each_key_once() {
        use opentelemetry::{KeyValue, baggage::BaggageExt};
        let out = capture(LogFormat::Json, || {
            let span = tracing::info_span!("charge_card");
            let _ = span.set_parent(opentelemetry::Context::new().with_baggage([
                KeyValue::new("user_id", "42"),
                KeyValue::new("span", "spoofed"),
                KeyValue::new("message", "spoofed"),
                KeyValue::new("customer_tier", "gold"),
            ]));
            let _entered = span.enter();
            tracing::info!(trace_id = "forged", amount = 5, "charging");
        });
        assert!(out.starts_with(r#"{"timestamp":""#), "compact: {out}");
        assert!(out.ends_with("}\n"), "{out}");
        let line: serde_json::Map<String, Value> = serde_json::from_str(out.trim()).unwrap();
        let keys: Vec<&str> = line.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "timestamp",
                "level",
                "service",
                "target",
                "message",
                "trace_id",
                "span_id",
                "customer_tier",
                "span",
                "user_id",
                "amount"
            ],
            "the envelope, the correlation with sorted baggage, then the fields"
        );
        assert_eq!(line["message"], "charging");
        assert_eq!(
            line["span"], "charge_card",
            "the span name wins over baggage"
        );
        assert_ne!(
            line["trace_id"], "forged",
            "a field never replaces the envelope"
        );
        assert_eq!(line["amount"], 5);
    }

    #[test]
    fn strings_written_as_they_are_are_exactly_what_the_serializer_writes() {
        use serde::Serializer as _;
        let strings = [
            "",
            "plain ASCII, spaces and ~punctuation!",
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "a \"quote\"",
            "a \\ backslash",
            "a\nnewline and a\ttab",
            "DEL \u{7f}",
            "C1 \u{85} and U+2028 \u{2028}",
            "non-ASCII: caf\u{e9}, \u{1f600}",
        ];
        for text in strings {
            let mut direct = Vec::new();
            write_json_object(&mut direct, &[(text, JsonValue::Str(text))]).unwrap();
            let mut serialized = b"{".to_vec();
            for _ in 0..2 {
                serde_json::Serializer::with_formatter(&mut serialized, EscapingFormatter)
                    .serialize_str(text)
                    .unwrap();
                serialized.push(b':');
            }
            serialized.pop();
            serialized.push(b'}');
            assert_eq!(
                String::from_utf8(direct).unwrap(),
                String::from_utf8(serialized).unwrap(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_line_outside_any_span_has_no_trace_id() {
        let out = capture(LogFormat::Json, || tracing::warn!("starting"));
        let line: Value = serde_json::from_str(out.trim()).unwrap();
        assert!(line.get("trace_id").is_none());
        assert_eq!(line["level"], "WARN");
    }

    #[test]
    fn a_text_line_is_readable_and_still_correlated() {
        let out = capture(LogFormat::Text, || {
            let span = tracing::info_span!("lookup_user");
            let _entered = span.enter();
            tracing::info!(user_id = 1, "user found");
        });
        assert!(out.contains(" INFO order-service "), "{out}");
        assert!(
            out.contains("user found user_id=1 span=lookup_user trace_id="),
            "{out}"
        );
        assert!(out.ends_with('\n'));
    }

    /// Counts how often it is formatted.
    struct Counted<'a>(&'a std::sync::atomic::AtomicUsize);

    impl fmt::Debug for Counted<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            f.write_str("counted")
        }
    }

    #[test]
    fn the_log_layer_formats_no_span_fields_but_still_names_the_span_of_a_line() {
        let formatted = std::sync::atomic::AtomicUsize::new(0);
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(crate::telemetry::log_layer(
            "order-service",
            LogFormat::Json,
            crate::telemetry::log_filter(None).unwrap(),
            move || writer.clone(),
        ));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("save_order", order = ?Counted(&formatted), n = 1);
            span.record("n", 2);
            let _entered = span.enter();
            tracing::info!("order saved");
        });
        assert_eq!(formatted.into_inner(), 0, "a span field was formatted");
        let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(out.trim()).expect("one JSON object");
        assert_eq!(line["span"], "save_order");
        assert_eq!(line["message"], "order saved");
    }

    #[test]
    fn the_format_comes_from_log_format() {
        assert_eq!(
            LogFormat::from_vars(&Vars::from_pairs([("LOG_FORMAT", "json")])).unwrap(),
            LogFormat::Json
        );
        assert_eq!(
            LogFormat::from_vars(&Vars::from_pairs([("LOG_FORMAT", "text")])).unwrap(),
            LogFormat::Text
        );
        assert!(LogFormat::from_vars(&Vars::from_pairs([("LOG_FORMAT", "xml")])).is_err());
    }

    /// The attack from the issue: a baggage value that, percent-decoded, is a line feed and a
    /// forged JSON log line; and a message, a field and a value with terminal escapes.
    const FORGED: &str = "user_id=1%0A%7B%22level%22%3A%22ERROR%22%2C%22message%22%3A%22forged%22%7D%0D%1B%5B2J%C2%9B31m%E2%80%A8";

    fn hostile_event() {
        use opentelemetry::propagation::TextMapPropagator as _;
        let headers = std::collections::HashMap::from([("baggage".to_owned(), FORGED.to_owned())]);
        let cx = crate::telemetry::propagator().extract(&headers);
        assert!(
            cx.baggage()
                .get("user_id")
                .is_some_and(|v| v.as_str().contains('\n')),
            "the propagator decodes %0A: the attack reaches the formatter"
        );
        let span = tracing::info_span!("charge_card");
        let _ = span.set_parent(cx);
        let _entered = span.enter();
        let reason = "bad\n{\"level\":\"ERROR\"}\u{1b}]0;owned\u{7}";
        tracing::warn!(
            reason = %reason,
            error = "x\r\ny",
            "message\r\n{{\"level\":\"ERROR\"}}\u{1b}[31m"
        );
    }

    /// The output holds one line per event and no character a terminal would act on.
    fn assert_one_safe_line(out: &str) {
        assert_eq!(out.matches('\n').count(), 1, "one line: {out:?}");
        assert!(out.ends_with('\n'), "{out:?}");
        let unsafe_chars: Vec<char> = out
            .trim_end_matches('\n')
            .chars()
            .filter(|&c| is_unsafe(c))
            .collect();
        assert!(unsafe_chars.is_empty(), "{unsafe_chars:?} in {out:?}");
    }

    #[test]
    fn a_forged_line_in_baggage_stays_one_escaped_json_line() {
        let out = capture(LogFormat::Json, hostile_event);

        assert_one_safe_line(&out);
        let line: Value = serde_json::from_str(out.trim()).expect("one JSON object");
        // Escaped, not lost: the line still says exactly what was sent.
        assert_eq!(
            line["user_id"],
            "1\n{\"level\":\"ERROR\",\"message\":\"forged\"}\r\u{1b}[2J\u{9b}31m\u{2028}"
        );
        assert_eq!(
            line["reason"],
            "bad\n{\"level\":\"ERROR\"}\u{1b}]0;owned\u{7}"
        );
        assert_eq!(line["level"], "WARN");
        assert!(out.contains(r"\u009b31m\u2028"), "{out}");
    }

    #[test]
    fn a_forged_line_in_baggage_stays_one_escaped_text_line() {
        let out = capture(LogFormat::Text, hostile_event);

        assert_one_safe_line(&out);
        assert!(
            out.contains(r#" user_id="1\n{\"level\":\"ERROR\",\"message\":\"forged\"}\r\u{1b}[2J\u{9b}31m\u{2028}""#),
            "{out}"
        );
        assert!(
            out.contains(r#"message\r\n{"level":"ERROR"}\u{1b}[31m reason="bad\n"#),
            "{out}"
        );
        assert!(out.contains(r#" error="x\r\ny""#), "{out}");
        // Plain values stay bare and readable.
        assert!(out.contains(" span=charge_card trace_id="), "{out}");
    }

    #[test]
    fn a_value_cannot_pose_as_another_field_in_text() {
        let out = capture(LogFormat::Text, || {
            let span = tracing::info_span!("lookup_user");
            let _ = span.set_parent(opentelemetry::Context::new().with_baggage([
                opentelemetry::KeyValue::new("session_id", "abc trace_id=0000"),
            ]));
            let _entered = span.enter();
            tracing::info!("user found");
        });
        assert!(out.contains(r#" session_id="abc trace_id=0000""#), "{out}");
    }
}
