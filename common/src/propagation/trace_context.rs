//! W3C Trace Context: the `traceparent` and `tracestate` request headers and the response's
//! trace context, per the current text of the specification
//! (<https://w3c.github.io/trace-context/>, which carries the Level 2 `random-trace-id` flag
//! and the `Server-Timing` binding of the response).
//!
//! Extraction follows the specification's processing model: a `traceparent` that is invalid in
//! any way (or sent twice) is ignored so that the caller starts a new trace, and its
//! `tracestate` is then ignored too; `tracestate` is validated member by member (see
//! [`tracestate`](super::tracestate) for each rule) and never affects the `traceparent`. Only
//! the `sampled` and `random-trace-id` flags are kept, so reserved flags are never echoed
//! downstream ("Vendors MUST set those to zero").
//!
//! Two things the W3C text requires do not fit in an opentelemetry [`SpanContext`]:
//! - the random flag of a continued trace "MUST also be set in all outgoing `traceparent`
//!   headers which use the same `trace-id`", also when this process does not sample it; but
//!   the SDK gives every span its sampler drops flags `00`;
//! - a `tracestate` key the current grammar allows may be one opentelemetry 0.33's
//!   [`TraceState`] rejects (`foo@@bar`, or more than 13 characters after an `@`), and a
//!   `tracestate` received "MUST" be sent on.
//!
//! So extraction also stores the caller's side of the trace, its random flag and its validated
//! `tracestate` list, as one private [`Context`] value bound to the trace id. Injection and the
//! response headers read it for any span of that trace. Code that narrows an extracted
//! context (the inbound policy's baggage filter) must derive from the extracted [`Context`], not
//! rebuild one from its [`SpanContext`], or this value is lost with it. For traces this process
//! starts, [`mark_random_trace_id`] says that the SDK drew the trace id at random.
//!
//! Responses carry this process's side of the trace in two headers with the same value,
//! `00-{trace-id}-{span-id}-{trace-flags}`, written by [`set_response_headers`]:
//! `traceresponse` (the draft that followed Level 2) and the current text's
//! `server-timing: trace;desc=...` metric.

use std::sync::LazyLock;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator, text_map_propagator::FieldIter},
    trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState},
};

use super::tracestate::{TraceStateList, parse_tracestate};

pub(super) const TRACEPARENT_HEADER: &str = "traceparent";
pub(super) const TRACESTATE_HEADER: &str = "tracestate";
// Names, not `&str`s: written on every answer, a `&str` would be parsed every time.
const TRACERESPONSE_HEADER: HeaderName = HeaderName::from_static("traceresponse");
const SERVER_TIMING_HEADER: HeaderName = HeaderName::from_static("server-timing");

static FIELDS: LazyLock<[String; 2]> =
    LazyLock::new(|| [TRACEPARENT_HEADER.to_owned(), TRACESTATE_HEADER.to_owned()]);

/// The version this module writes; higher versions are read with its layout.
const SUPPORTED_VERSION: u8 = 0x00;
/// "Version ff is forbidden."
const FORBIDDEN_VERSION: u8 = 0xff;
/// `version "-" trace-id "-" parent-id "-" trace-flags` = 2+1+32+1+16+1+2.
const TRACEPARENT_LEN: usize = 55;

const SAMPLED_FLAG: u8 = 0x01;
/// "The second least significant bit of the trace-flags field denotes the `random-trace-id`
/// flag."
const RANDOM_TRACE_ID_FLAG: u8 = 0x02;
/// Every other bit is reserved: "Vendors MUST set those to zero."
const KNOWN_FLAGS: u8 = SAMPLED_FLAG | RANDOM_TRACE_ID_FLAG;

/// Optional whitespace (RFC 9110 OWS): space and horizontal tab.
const OWS: [char; 2] = [' ', '\t'];

/// Propagates span contexts in the W3C `traceparent` / `tracestate` headers.
#[derive(Clone, Debug, Default)]
pub struct TraceContextPropagator {
    _private: (),
}

impl TraceContextPropagator {
    /// A propagator with the W3C processing rules; it has no options.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Marks a [`Context`] whose trace id was generated randomly by this process,
/// so that [`TraceContextPropagator`] and [`traceresponse`] set the Level 2
/// `random-trace-id` flag for it. See [`mark_random_trace_id`].
#[derive(Clone, Copy, Debug)]
pub struct RandomTraceId;

/// The caller's side of a continued trace, as extraction read it: what the W3C rules need on
/// every outgoing request of the trace and that a [`SpanContext`] cannot hold (see the module
/// documentation). Bound to the trace id so that it never applies to another trace, and
/// written on every extraction so that it shadows one from an earlier extraction.
#[derive(Clone, Debug)]
struct RemoteParent {
    trace_id: TraceId,
    /// The incoming `random-trace-id` flag.
    random: bool,
    /// The validated incoming `tracestate`.
    trace_state: TraceStateList,
    /// Whether the span context's [`TraceState`] holds `trace_state`. When it does, the span
    /// context is the reference (a sampler may have updated it); when the library rejected a
    /// key, the span context's is empty, and `trace_state` is what is sent on.
    held_by_span_context: bool,
}

/// Returns `cx` marked as carrying a trace whose trace id was generated
/// randomly by this process.
///
/// The SDK's `RandomIdGenerator` draws all 16 bytes of a new trace id at
/// random, which satisfies the requirement that "at least the right-most 7
/// bytes of the `trace-id` MUST be selected randomly", but the SDK gives new
/// root spans only the `sampled` flag. Call this on the context of a trace this
/// process starts (never on one continued from a caller: the flag of a
/// continued trace must stay what the caller sent).
pub fn mark_random_trace_id(cx: &Context) -> Context {
    cx.with_value(RandomTraceId)
}

/// Whether outgoing headers for the span in `cx` carry the `random-trace-id`
/// flag: the span context has the flag (0x02), or `cx` was marked with
/// [`mark_random_trace_id`], or `cx` descends from an extracted `traceparent`
/// with the flag set for the same trace id.
pub fn has_random_trace_id(cx: &Context) -> bool {
    let span = cx.span();
    let span_context = span.span_context();
    span_context.trace_flags().to_u8() & RANDOM_TRACE_ID_FLAG != 0
        || cx.get::<RandomTraceId>().is_some()
        || remote_parent(cx, span_context.trace_id()).is_some_and(|remote| remote.random)
}

/// The extracted caller's side of `trace_id`, if `cx` has one.
fn remote_parent(cx: &Context, trace_id: TraceId) -> Option<&RemoteParent> {
    cx.get::<RemoteParent>()
        .filter(|remote| remote.trace_id == trace_id)
}

/// The `tracestate` header value outgoing requests for the span in `cx` carry, or `None` when
/// there is none to send ("Vendors MUST accept empty tracestate headers but SHOULD avoid
/// sending them").
///
/// It is the span context's [`TraceState`], unless the caller's list could not be held there;
/// then it is the caller's list, unchanged, after any entries added locally (the spec's rule
/// for a vendor that adds an entry: "to the beginning (left) of the list").
pub fn outgoing_tracestate(cx: &Context) -> Option<String> {
    let span = cx.span();
    let span_context = span.span_context();
    if !span_context.is_valid() {
        return None;
    }
    let own = span_context.trace_state();
    let header = match remote_parent(cx, span_context.trace_id()) {
        Some(remote) if !remote.held_by_span_context => {
            let mut members: Vec<String> = Vec::new();
            let local = own.header();
            if !local.is_empty() {
                members.push(local);
            }
            members.extend(
                remote
                    .trace_state
                    .iter()
                    .filter(|(key, _)| own.get(key).is_none())
                    .map(|(key, value)| format!("{key}={value}")),
            );
            members.join(",")
        }
        _ => own.header(),
    };
    (!header.is_empty()).then_some(header)
}

/// The `version-format` of version 00 for the span in `cx`, shared by
/// `traceparent` and the response headers; `None` without a valid span context.
fn version_00_value(cx: &Context) -> Option<Version00> {
    let span = cx.span();
    let span_context = span.span_context();
    if !span_context.is_valid() {
        return None;
    }
    let mut flags = span_context.trace_flags().to_u8() & SAMPLED_FLAG;
    if has_random_trace_id(cx) {
        flags |= RANDOM_TRACE_ID_FLAG;
    }
    Some(Version00::new(
        span_context.trace_id().to_bytes(),
        span_context.span_id().to_bytes(),
        flags,
    ))
}

/// `00-{trace-id}-{span-id}-{trace-flags}`, the 55 bytes of a version 00 value. It is written
/// on every response and every outgoing call, so it is hex-encoded into a fixed buffer rather
/// than through `format!` (which was half the cost of the response headers in the profile).
struct Version00([u8; VERSION_00_LEN]);

const VERSION_00_LEN: usize = 2 + 1 + 32 + 1 + 16 + 1 + 2;

impl Version00 {
    fn new(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> Self {
        let mut out = [b'-'; VERSION_00_LEN];
        // The lengths match by construction, so the encodings cannot fail.
        let parts: [(&[u8], std::ops::Range<usize>); 4] = [
            (&[SUPPORTED_VERSION], 0..2),
            (&trace_id, 3..35),
            (&span_id, 36..52),
            (&[flags], 53..55),
        ];
        for (bytes, range) in parts {
            encode_lower_hex(bytes, &mut out[range]);
        }
        Version00(out)
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("lowercase hex and dashes")
    }
}

/// The `traceresponse` header value for the span in `cx`:
/// `00-{trace-id}-{child-id}-{trace-flags}`, with the same flag rules as
/// `traceparent`, or `None` without a valid span context.
///
/// `traceresponse` comes from the Trace Context editor's draft that followed
/// Level 2; the current text carries the same value in [`server_timing`].
pub fn traceresponse(cx: &Context) -> Option<String> {
    version_00_value(cx).map(|value| value.as_str().to_owned())
}

/// The current text's trace context metric for the span in `cx`, as a `Server-Timing` list
/// member: `trace;desc=00-{trace-id}-{span-id}-{trace-flags}` (the same value as
/// [`traceresponse`]; every character of it is a `token` character, so it needs no quotes).
pub fn server_timing(cx: &Context) -> Option<String> {
    version_00_value(cx).map(|value| trace_metric(value.as_str()))
}

/// `trace;desc={value}`: the metric name the current text gives the trace context.
fn trace_metric(value: &str) -> String {
    const NAME: &str = "trace;desc=";
    // Two copies into one allocation of the right size: this is on every answer, where
    // `format!` went through `fmt` for a plain concatenation.
    let mut metric = String::with_capacity(NAME.len() + value.len());
    metric.push_str(NAME);
    metric.push_str(value);
    metric
}

/// Writes this process's side of the trace in `cx` onto a response: `traceresponse` (replacing
/// any) and the `trace` metric of `Server-Timing`, appended after the metrics already there
/// (a handler's `db;dur=53` stays, as the first member of the same field). Writes nothing
/// without a valid span context.
pub fn set_response_headers(cx: &Context, headers: &mut HeaderMap) {
    let Some(value) = version_00_value(cx) else {
        return;
    };
    // Each value is written into a buffer of its size, which becomes the header value as it
    // is: `HeaderValue::from_bytes` would copy each into one more allocation, on every answer.
    let traceresponse = Bytes::from(value.0.to_vec());
    let metric = Bytes::from(trace_metric(value.as_str()).into_bytes());
    // Lowercase hex, dashes and ASCII letters: always valid header values.
    let (Ok(traceresponse), Ok(metric)) = (
        HeaderValue::from_maybe_shared(traceresponse),
        HeaderValue::from_maybe_shared(metric),
    ) else {
        return;
    };
    headers.insert(TRACERESPONSE_HEADER, traceresponse);

    // Server-Timing is a list: the handler's fields and this metric become one field, so a
    // client that reads only the first field value still sees them all.
    let mut combined: Vec<u8> = Vec::new();
    for existing in headers.get_all(&SERVER_TIMING_HEADER) {
        let bytes = existing.as_bytes();
        if bytes.iter().all(|c| matches!(c, b' ' | b'\t')) {
            continue;
        }
        combined.extend_from_slice(bytes);
        combined.extend_from_slice(b", ");
    }
    if combined.is_empty() {
        headers.insert(SERVER_TIMING_HEADER, metric);
        return;
    }
    combined.extend_from_slice(metric.as_bytes());
    match HeaderValue::from_bytes(&combined) {
        Ok(value) => {
            headers.insert(SERVER_TIMING_HEADER, value);
        }
        // Valid field values joined with ", " are a valid field value; were that ever not
        // so, a field of its own still leaves the handler's metrics in place.
        Err(_) => {
            headers.append(SERVER_TIMING_HEADER, metric);
        }
    }
}

/// Parses one `traceparent` value per the specification's versioning rules.
/// Returns `None` for any invalid value. Of the flags only `sampled` and
/// `random-trace-id` are kept.
///
/// Leading and trailing spaces and tabs are ignored: they are not part of an
/// HTTP field value (RFC 9110, section 5.5), and the W3C test suite sends them
/// (`test_traceparent_ows_handling`).
pub fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
    let bytes = value.trim_matches(OWS).as_bytes();
    // "If the size of the header is shorter than 55 characters, the vendor
    // should not parse the header"; version 00 is exactly 55 characters.
    if bytes.len() < TRACEPARENT_LEN {
        return None;
    }
    let [version] = decode_lower_hex::<1>(&bytes[0..2])?;
    if version == FORBIDDEN_VERSION {
        return None;
    }
    let length_ok = if version == SUPPORTED_VERSION {
        bytes.len() == TRACEPARENT_LEN
    } else {
        // A higher version may append fields, but the flags "MUST" be
        // "either at the end of the string or followed by a dash"; whatever
        // follows is not parsed ("MUST NOT parse or assume anything about
        // unknown fields").
        bytes.len() == TRACEPARENT_LEN || bytes[TRACEPARENT_LEN] == b'-'
    };
    if !length_ok || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let trace_id = TraceId::from_bytes(decode_lower_hex::<16>(&bytes[3..35])?);
    let span_id = SpanId::from_bytes(decode_lower_hex::<8>(&bytes[36..52])?);
    let [flags] = decode_lower_hex::<1>(&bytes[53..55])?;
    // "All zeroes forbidden" for both ids.
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    Some((trace_id, span_id, TraceFlags::new(flags & KNOWN_FLAGS)))
}

/// Writes `bytes` into `out` as lowercase hex digits (`HEXDIGLC`), two a byte.
///
/// Ids are hex-encoded on every answer, every outgoing call and every log line, so eight
/// bytes at a time are encoded as one integer ([`lower_hex_u64`]); a shorter rest goes
/// through the digit table.
///
/// # Panics
/// When `out` is not twice as long as `bytes`: the callers' buffers are fixed.
pub(crate) fn encode_lower_hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    assert_eq!(out.len(), 2 * bytes.len(), "two hex digits a byte");
    let mut words = bytes.chunks_exact(8);
    let mut digits = out.chunks_exact_mut(16);
    for (word, digits) in (&mut words).zip(&mut digits) {
        let word = u64::from_be_bytes(word.try_into().expect("chunks of 8"));
        digits.copy_from_slice(&lower_hex_u64(word));
    }
    for (pair, byte) in digits
        .into_remainder()
        .chunks_exact_mut(2)
        .zip(words.remainder())
    {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

/// `word` as 16 lowercase hex digits, most significant first, computed on all of them at
/// once (SWAR): its 16 nibbles are spread out to one a byte of a `u128`, then each becomes
/// its digit, `'0' + n`, plus `'a' - '0' - 10` where `n > 9`. About 20 operations where a
/// lookup a digit is 16 loads and stores, with their index arithmetic.
fn lower_hex_u64(word: u64) -> [u8; 16] {
    const ONES: u128 = 0x0101_0101_0101_0101_0101_0101_0101_0101;
    let word = u128::from(word);
    // Halve the width of each group of bits, moving its upper half into the group's new
    // upper half: 2 x 32 bits, 4 x 16, 8 x 8, then 16 x 4, each in a byte of its own.
    let mut n = ((word & 0xffff_ffff_0000_0000) << 32) | (word & 0xffff_ffff);
    n = ((n & 0x0000_0000_ffff_0000_0000_0000_ffff_0000) << 16)
        | (n & 0x0000_0000_0000_ffff_0000_0000_0000_ffff);
    n = ((n & 0x0000_ff00_0000_ff00_0000_ff00_0000_ff00) << 8)
        | (n & 0x0000_00ff_0000_00ff_0000_00ff_0000_00ff);
    n = ((n & 0x00f0_00f0_00f0_00f0_00f0_00f0_00f0_00f0) << 4)
        | (n & 0x000f_000f_000f_000f_000f_000f_000f_000f);
    // 1 in each byte whose nibble is 10-15: adding 6 carries it into bit 4.
    let letters = ((n + 6 * ONES) >> 4) & ONES;
    (n + u128::from(b'0') * ONES + letters * u128::from(b'a' - b'0' - 10)).to_be_bytes()
}

/// Decodes exactly `2 * N` lowercase hex digits (`HEXDIGLC`); upper case is
/// not hex in this grammar.
fn decode_lower_hex<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    if hex.len() != 2 * N {
        return None;
    }
    let mut out = [0_u8; N];
    // Every digit is looked up, and whether one was not a digit is checked once at the end:
    // a value is usually valid, and a branch a digit costs more than the lookups.
    let mut seen = 0;
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (high, low) = (
            HEX_VALUES[usize::from(pair[0])],
            HEX_VALUES[usize::from(pair[1])],
        );
        seen |= high | low;
        *byte = (high << 4) | low;
    }
    (seen & NOT_HEX == 0).then_some(out)
}

/// Marks a byte that is not a lowercase hex digit in [`HEX_VALUES`]: a bit no digit's value has.
const NOT_HEX: u8 = 0x10;

/// Each byte's value as a lowercase hex digit, or [`NOT_HEX`].
static HEX_VALUES: [u8; 256] = {
    let mut values = [NOT_HEX; 256];
    let mut value: u8 = 0;
    while value < 16 {
        let symbol = if value < 10 {
            b'0' + value
        } else {
            b'a' + value - 10
        };
        values[symbol as usize] = value;
        value += 1;
    }
    values
};

impl TextMapPropagator for TraceContextPropagator {
    /// Writes `traceparent` (always version 00, the highest this module
    /// knows, as the spec requires after reading a higher version) and, when
    /// non-empty, `tracestate` (see [`outgoing_tracestate`]).
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let Some(traceparent) = version_00_value(cx) else {
            return;
        };
        injector.set(TRACEPARENT_HEADER, traceparent.as_str().to_owned());
        if let Some(trace_state) = outgoing_tracestate(cx) {
            injector.set(TRACESTATE_HEADER, trace_state);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let Some(values) = extractor.get_all(TRACEPARENT_HEADER) else {
            return cx.clone();
        };
        // Two traceparent headers cannot both describe the parent; the W3C
        // test suite expects a new trace (`test_traceparent_duplicated`).
        let [value] = values.as_slice() else {
            tracing::debug!(
                count = values.len(),
                "ignoring repeated traceparent headers"
            );
            return cx.clone();
        };
        let Some((trace_id, span_id, flags)) = parse_traceparent(value) else {
            // "If the vendor failed to parse traceparent, it MUST NOT attempt
            // to parse tracestate."
            tracing::debug!("ignoring invalid traceparent header");
            return cx.clone();
        };
        // "failure to parse tracestate MUST NOT affect the parsing of traceparent"; invalid
        // members are discarded one by one (see `tracestate`).
        let list = match extractor.get_all(TRACESTATE_HEADER) {
            None => TraceStateList::default(),
            Some(values) => {
                let (list, discarded) = parse_tracestate(&values);
                if discarded.any() {
                    tracing::debug!(
                        invalid = discarded.invalid,
                        duplicate = discarded.duplicate,
                        beyond_limit = discarded.beyond_limit,
                        "discarded tracestate members"
                    );
                }
                list
            }
        };
        let held = TraceState::from_key_value(list.iter());
        let held_by_span_context = held.is_ok();
        if !held_by_span_context {
            tracing::debug!("tracestate kept outside opentelemetry's TraceState, which rejects it");
        }
        cx.with_remote_span_context(SpanContext::new(
            trace_id,
            span_id,
            flags,
            true,
            held.unwrap_or_default(),
        ))
        .with_value(RemoteParent {
            trace_id,
            random: flags.to_u8() & RANDOM_TRACE_ID_FLAG != 0,
            trace_state: list,
            held_by_span_context,
        })
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(FIELDS.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::{HeaderExtractor, HeaderInjector};
    use http::{HeaderMap, HeaderValue};
    use opentelemetry::trace::{Tracer, TracerProvider};
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

    /// The spec's example of a sampled request.
    const SPEC_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const SPEC_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPEC_PARENT_ID: &str = "00f067aa0ba902b7";
    /// The spec's example with two tracing systems.
    const SPEC_TRACESTATE: &str = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE";

    #[test]
    fn every_byte_is_encoded_as_two_lowercase_digits_and_decoded_back() {
        let bytes: Vec<u8> = (0..=u8::MAX).collect();
        let mut digits = vec![0; 2 * bytes.len()];
        encode_lower_hex(&bytes, &mut digits);
        let expected = bytes.iter().fold(String::new(), |mut digits, b| {
            use std::fmt::Write as _;
            write!(digits, "{b:02x}").unwrap();
            digits
        });
        assert_eq!(std::str::from_utf8(&digits).unwrap(), expected);
        for (pair, byte) in digits.chunks_exact(2).zip(&bytes) {
            assert_eq!(decode_lower_hex::<1>(pair), Some([*byte]));
        }
    }

    #[test]
    fn bytes_of_any_length_encode_as_format_does_eight_at_once_or_not() {
        // A multiplicative walk through the 64-bit words, after the edges of each digit.
        let mut word = 0x9e37_79b9_7f4a_7c15_u64;
        let walk = std::iter::repeat_with(|| {
            word = word
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            word
        });
        let edges = [0, 1, 9, 10, 15, 16, 0x0123_4567_89ab_cdef, u64::MAX];
        for word in edges.into_iter().chain(walk.take(2000)) {
            assert_eq!(
                lower_hex_u64(word),
                format!("{word:016x}").as_bytes(),
                "{word:#x}"
            );
        }
        let bytes: Vec<u8> = (0..=u8::MAX).rev().collect();
        for len in 0..=25 {
            let mut digits = vec![0; 2 * len];
            encode_lower_hex(&bytes[..len], &mut digits);
            let expected = bytes[..len].iter().fold(String::new(), |mut hex, b| {
                use std::fmt::Write as _;
                write!(hex, "{b:02x}").unwrap();
                hex
            });
            assert_eq!(
                std::str::from_utf8(&digits).unwrap(),
                expected,
                "{len} bytes"
            );
        }
    }

    #[test]
    fn a_byte_that_is_not_a_lowercase_hex_digit_fails_the_decoding_wherever_it_is() {
        for byte in 0..=u8::MAX {
            let digit = byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte);
            for at in 0..16 {
                let mut hex = *b"00f067aa0ba902b7";
                hex[at] = byte;
                assert_eq!(
                    decode_lower_hex::<8>(&hex).is_some(),
                    digit,
                    "{byte:#04x} at {at}"
                );
            }
        }
        assert_eq!(
            decode_lower_hex::<8>(b"00f067aa0ba902b7"),
            Some(0x00f0_67aa_0ba9_02b7_u64.to_be_bytes())
        );
    }

    fn trace_id() -> TraceId {
        TraceId::from_hex(SPEC_TRACE_ID).expect("valid trace id")
    }

    fn parent_id() -> SpanId {
        SpanId::from_hex(SPEC_PARENT_ID).expect("valid span id")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                *name,
                HeaderValue::from_str(value).expect("test header values are valid"),
            );
        }
        map
    }

    fn extract(pairs: &[(&'static str, &str)]) -> Context {
        let map = headers(pairs);
        TraceContextPropagator::new().extract_with_context(&Context::new(), &HeaderExtractor(&map))
    }

    fn extracted_span_context(pairs: &[(&'static str, &str)]) -> SpanContext {
        extract(pairs).span().span_context().clone()
    }

    /// Asserts that the traceparent is ignored: the context has no span.
    fn assert_traceparent_ignored(traceparent: &str) {
        let cx = extract(&[("traceparent", traceparent), ("tracestate", "foo=1")]);
        assert!(
            !cx.has_active_span(),
            "{traceparent:?} should have been ignored"
        );
        assert_eq!(parse_traceparent(traceparent), None);
    }

    fn inject(cx: &Context) -> HeaderMap {
        let mut map = HeaderMap::new();
        TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(&mut map));
        map
    }

    fn header<'a>(map: &'a HeaderMap, name: &str) -> Option<&'a str> {
        map.get(name).and_then(|value| value.to_str().ok())
    }

    fn remote_cx(flags: u8, trace_state: TraceState) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            trace_id(),
            parent_id(),
            TraceFlags::new(flags),
            true,
            trace_state,
        ))
    }

    /// Extracts `tracestate` values next to the spec's valid traceparent and
    /// returns the `tracestate` injected on an outgoing request, "" when none is.
    fn tracestate_after_extraction(values: &[&str]) -> String {
        let mut pairs: Vec<(&'static str, &str)> = vec![("traceparent", SPEC_TRACEPARENT)];
        pairs.extend(values.iter().map(|value| ("tracestate", *value)));
        let cx = extract(&pairs);
        assert_eq!(
            cx.span().span_context().trace_id(),
            trace_id(),
            "traceparent kept"
        );
        header(&inject(&cx), "tracestate")
            .unwrap_or_default()
            .to_owned()
    }

    /// A child of `parent` started by an SDK tracer with `sampler`, as the server layer starts
    /// its SERVER span.
    fn child_of(parent: &Context, sampler: Sampler) -> Context {
        let provider = SdkTracerProvider::builder().with_sampler(sampler).build();
        let tracer = provider.tracer("test");
        parent.with_span(tracer.start_with_context("child", parent))
    }

    // traceparent: valid values

    #[test]
    fn the_spec_example_traceparent_is_extracted_as_a_remote_sampled_parent() {
        let span_context = extracted_span_context(&[("traceparent", SPEC_TRACEPARENT)]);
        assert_eq!(span_context.trace_id(), trace_id());
        assert_eq!(span_context.span_id(), parent_id());
        assert_eq!(span_context.trace_flags(), TraceFlags::SAMPLED);
        assert!(span_context.is_remote());
        assert_eq!(span_context.trace_state().header(), "");
    }

    #[test]
    fn the_sampled_flag_unset_is_extracted_as_not_sampled() {
        let span_context = extracted_span_context(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        )]);
        assert_eq!(span_context.trace_id(), trace_id());
        assert_eq!(span_context.trace_flags(), TraceFlags::NOT_SAMPLED);
    }

    #[test]
    fn the_random_flag_is_extracted() {
        let cx = extract(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02",
        )]);
        assert_eq!(
            cx.span().span_context().trace_flags(),
            TraceFlags::new(0x02)
        );
        assert!(has_random_trace_id(&cx));
    }

    #[test]
    fn unknown_trace_flags_are_not_kept_on_extraction() {
        let span_context = extracted_span_context(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff",
        )]);
        assert_eq!(span_context.trace_flags(), TraceFlags::new(0x03));
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let span_context = extracted_span_context(&[
            ("TraceParent", SPEC_TRACEPARENT),
            ("TRACESTATE", SPEC_TRACESTATE),
        ]);
        assert_eq!(span_context.trace_id(), trace_id());
        assert_eq!(span_context.trace_state().header(), SPEC_TRACESTATE);
    }

    #[test]
    fn spaces_and_tabs_around_the_traceparent_are_ignored() {
        let (trace_id_read, span_id_read, flags) =
            parse_traceparent(" \t00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\t ")
                .expect("OWS is not part of the value");
        assert_eq!(trace_id_read, trace_id());
        assert_eq!(span_id_read, parent_id());
        assert_eq!(flags, TraceFlags::SAMPLED);
    }

    #[test]
    fn a_missing_traceparent_leaves_the_context_unchanged() {
        let base = Context::new().with_value(42_u32);
        let map = headers(&[]);
        let cx = TraceContextPropagator::new().extract_with_context(&base, &HeaderExtractor(&map));
        assert!(!cx.has_active_span());
        assert_eq!(cx.get::<u32>(), Some(&42));
    }

    #[test]
    fn a_tracestate_without_a_traceparent_is_discarded() {
        let cx = extract(&[("tracestate", "foo=1")]);
        assert!(!cx.has_active_span());
        assert_eq!(cx.span().span_context().trace_state().header(), "");
    }

    // traceparent: versions

    #[test]
    fn version_ff_is_ignored() {
        assert_traceparent_ignored("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    }

    #[test]
    fn version_00_with_trailing_data_is_ignored() {
        assert_traceparent_ignored("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.");
        assert_traceparent_ignored("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-");
        assert_traceparent_ignored(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like",
        );
    }

    #[test]
    fn a_future_version_is_parsed_with_the_version_00_layout() {
        let span_context = extracted_span_context(&[(
            "traceparent",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )]);
        assert_eq!(span_context.trace_id(), trace_id());
        assert_eq!(span_context.span_id(), parent_id());
        assert_eq!(span_context.trace_flags(), TraceFlags::SAMPLED);
    }

    #[test]
    fn a_future_version_with_extra_fields_after_a_dash_is_accepted() {
        let span_context = extracted_span_context(&[(
            "traceparent",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like",
        )]);
        assert_eq!(span_context.trace_id(), trace_id());
        assert_eq!(span_context.span_id(), parent_id());
        assert_eq!(span_context.trace_flags(), TraceFlags::SAMPLED);
    }

    #[test]
    fn a_future_version_with_extra_data_not_after_a_dash_is_ignored() {
        assert_traceparent_ignored(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what-the-future-will-be-like",
        );
    }

    #[test]
    fn a_future_version_shorter_than_55_characters_is_ignored() {
        assert_traceparent_ignored("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1");
    }

    #[test]
    fn a_future_version_is_injected_as_version_00() {
        let cx = extract(&[(
            "traceparent",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future",
        )]);
        assert_eq!(header(&inject(&cx), "traceparent"), Some(SPEC_TRACEPARENT));
    }

    #[test]
    fn a_version_that_is_too_short_is_ignored() {
        assert_traceparent_ignored("0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    }

    #[test]
    fn a_version_that_is_too_long_is_ignored() {
        assert_traceparent_ignored("000-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    }

    #[test]
    fn a_version_with_a_non_hex_character_is_ignored() {
        assert_traceparent_ignored(".0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_traceparent_ignored("0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    }

    #[test]
    fn an_upper_case_version_is_ignored() {
        assert_traceparent_ignored("CC-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    }

    // traceparent: trace-id

    #[test]
    fn a_trace_id_that_is_too_short_is_ignored() {
        assert_traceparent_ignored("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01");
    }

    #[test]
    fn a_trace_id_that_is_too_long_is_ignored() {
        assert_traceparent_ignored("00-4bf92f3577b34da6a3ce929d0e0e47361-00f067aa0ba902b7-01");
    }

    #[test]
    fn a_trace_id_with_a_non_hex_character_is_ignored() {
        assert_traceparent_ignored("00-4bf92f3577b34da6a3ce929d0e0e473.-00f067aa0ba902b7-01");
        assert_traceparent_ignored("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01");
    }

    #[test]
    fn a_traceparent_with_an_upper_case_trace_id_is_ignored() {
        assert_traceparent_ignored("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01");
    }

    #[test]
    fn an_all_zero_trace_id_is_ignored() {
        assert_traceparent_ignored("00-00000000000000000000000000000000-00f067aa0ba902b7-01");
    }

    // traceparent: parent-id

    #[test]
    fn a_parent_id_that_is_too_short_is_ignored() {
        assert_traceparent_ignored("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01");
    }

    #[test]
    fn a_parent_id_that_is_too_long_is_ignored() {
        assert_traceparent_ignored("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b71-01");
    }

    #[test]
    fn a_parent_id_with_a_non_hex_character_is_ignored() {
        assert_traceparent_ignored("00-4bf92f3577b34da6a3ce929d0e0e4736-.0f067aa0ba902b7-01");
    }

    #[test]
    fn a_traceparent_with_an_upper_case_parent_id_is_ignored() {
        assert_traceparent_ignored("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01");
    }

    #[test]
    fn an_all_zero_parent_id_is_ignored() {
        assert_traceparent_ignored("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01");
    }

    // traceparent: trace-flags and layout

    #[test]
    fn trace_flags_that_are_too_short_are_ignored() {
        assert_traceparent_ignored("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1");
    }

    #[test]
    fn trace_flags_that_are_too_long_are_ignored() {
        assert_traceparent_ignored("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-001");
    }

    #[test]
    fn trace_flags_with_a_non_hex_character_are_ignored() {
        assert_traceparent_ignored("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0.");
    }

    #[test]
    fn upper_case_trace_flags_are_ignored() {
        assert_traceparent_ignored("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A");
    }

    #[test]
    fn a_traceparent_with_a_wrong_delimiter_is_ignored() {
        assert_traceparent_ignored("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_traceparent_ignored("00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01");
        assert_traceparent_ignored("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01");
    }

    #[test]
    fn duplicated_traceparent_headers_are_ignored() {
        let cx = extract(&[
            ("traceparent", SPEC_TRACEPARENT),
            ("traceparent", SPEC_TRACEPARENT),
            ("tracestate", "foo=1"),
        ]);
        assert!(!cx.has_active_span());
    }

    #[test]
    fn a_non_ascii_traceparent_value_is_ignored() {
        let mut map = HeaderMap::new();
        map.append(
            "traceparent",
            HeaderValue::from_bytes(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\u{e9}".as_bytes(),
            )
            .expect("obs-text is a valid header value"),
        );
        let cx = TraceContextPropagator::new()
            .extract_with_context(&Context::new(), &HeaderExtractor(&map));
        assert!(!cx.has_active_span());
    }

    // tracestate: what is sent on (the list rules themselves are tested in `tracestate`)

    #[test]
    fn an_invalid_member_is_discarded_and_the_rest_sent_on_while_the_traceparent_is_kept() {
        let cx = extract(&[
            ("traceparent", SPEC_TRACEPARENT),
            ("tracestate", "rojo=00f067aa0ba902b7"),
            ("tracestate", "congo=t61rcWkgMzE,BAD=1"),
        ]);
        let map = inject(&cx);
        assert_eq!(
            header(&map, "traceparent"),
            Some(SPEC_TRACEPARENT),
            "traceparent untouched"
        );
        assert_eq!(header(&map, "tracestate"), Some(SPEC_TRACESTATE));
    }

    #[test]
    fn a_duplicated_key_is_sent_on_once_with_its_first_value() {
        assert_eq!(tracestate_after_extraction(&["foo=1", "foo=2"]), "foo=1");
        assert_eq!(
            tracestate_after_extraction(&["foo=1,bar=2,foo=3"]),
            "foo=1,bar=2"
        );
    }

    #[test]
    fn several_tracestate_headers_are_sent_on_as_one() {
        assert_eq!(
            tracestate_after_extraction(&["foo=1,bar=2", "rojo=1,congo=2", "baz=3"]),
            "foo=1,bar=2,rojo=1,congo=2,baz=3"
        );
    }

    #[test]
    fn only_the_first_32_members_are_sent_on() {
        let members: Vec<String> = (1..=33).map(|i| format!("bar{i:02}={i:02}")).collect();
        assert_eq!(
            tracestate_after_extraction(&[&members.join(",")]),
            members[..32].join(",")
        );
    }

    #[test]
    fn a_non_ascii_tracestate_header_is_discarded_and_the_others_sent_on() {
        let mut map = headers(&[("traceparent", SPEC_TRACEPARENT), ("tracestate", "foo=1")]);
        map.append(
            "tracestate",
            HeaderValue::from_bytes("bar=\u{e9}".as_bytes()).expect("obs-text is valid"),
        );
        let cx = TraceContextPropagator::new()
            .extract_with_context(&Context::new(), &HeaderExtractor(&map));
        assert_eq!(cx.span().span_context().trace_id(), trace_id());
        assert_eq!(header(&inject(&cx), "tracestate"), Some("foo=1"));
    }

    /// Keys the current grammar allows and opentelemetry 0.33's `TraceState` rejects: more
    /// than one `@`, or more than 13 characters after it (the harness's 241 + `@` + 14).
    fn keys_the_library_rejects() -> Vec<String> {
        vec![
            "foo@@bar".to_owned(),
            "foo@bar@baz".to_owned(),
            format!("{}@{}", "t".repeat(241), "v".repeat(14)),
            format!("t@{}", "v".repeat(15)),
        ]
    }

    #[test]
    fn the_library_rejects_these_keys() {
        // If this fails after an upgrade, the library has caught up with the grammar: the
        // tests below still hold, but the list is then also in the span context.
        for key in keys_the_library_rejects() {
            assert!(
                TraceState::from_key_value([(key.as_str(), "1")]).is_err(),
                "{key}"
            );
        }
    }

    #[test]
    fn a_tracestate_the_library_rejects_is_carried_and_sent_on_unchanged() {
        for key in keys_the_library_rejects() {
            let list = format!("{key}=1,congo=t61rcWkgMzE");
            let cx = extract(&[("traceparent", SPEC_TRACEPARENT), ("tracestate", &list)]);
            let span_context = cx.span().span_context().clone();
            assert_eq!(
                span_context.trace_id(),
                trace_id(),
                "{key}: traceparent kept"
            );
            assert_eq!(
                span_context.trace_state().header(),
                "",
                "not held by the library"
            );
            assert_eq!(outgoing_tracestate(&cx).as_deref(), Some(list.as_str()));
            assert_eq!(
                header(&inject(&cx), "tracestate"),
                Some(list.as_str()),
                "{key}"
            );
        }
    }

    #[test]
    fn a_tracestate_the_library_rejects_is_sent_on_from_child_spans_sampled_or_not() {
        let list = "foo@@bar=1,rojo=00f067aa0ba902b7";
        for (flags, sampler) in [("01", Sampler::AlwaysOn), ("00", Sampler::AlwaysOff)] {
            let parent = extract(&[
                (
                    "traceparent",
                    &format!("00-{SPEC_TRACE_ID}-{SPEC_PARENT_ID}-{flags}"),
                ),
                ("tracestate", list),
            ]);
            let child = child_of(&parent, sampler);
            assert_eq!(header(&inject(&child), "tracestate"), Some(list), "{flags}");
        }
    }

    #[test]
    fn a_tracestate_the_library_accepts_is_sent_on_from_child_spans() {
        let parent = extract(&[
            ("traceparent", SPEC_TRACEPARENT),
            ("tracestate", SPEC_TRACESTATE),
        ]);
        assert_eq!(
            parent.span().span_context().trace_state().header(),
            SPEC_TRACESTATE,
            "held by the library, so exported with the spans"
        );
        let child = child_of(&parent, Sampler::AlwaysOn);
        assert_eq!(header(&inject(&child), "tracestate"), Some(SPEC_TRACESTATE));
    }

    #[test]
    fn entries_added_locally_go_left_of_a_carried_tracestate() {
        let parent = extract(&[
            ("traceparent", SPEC_TRACEPARENT),
            ("tracestate", "foo@@bar=1,rojo=old"),
        ]);
        let local = parent.with_remote_span_context(SpanContext::new(
            trace_id(),
            SpanId::from_hex("b7ad6b7169203331").expect("valid span id"),
            TraceFlags::SAMPLED,
            false,
            TraceState::from_key_value([("rojo", "new")]).expect("valid"),
        ));
        assert_eq!(
            header(&inject(&local), "tracestate"),
            Some("rojo=new,foo@@bar=1"),
            "an updated key moves left; the others keep their order"
        );
    }

    #[test]
    fn a_carried_tracestate_does_not_apply_to_another_trace() {
        let extracted = extract(&[
            ("traceparent", SPEC_TRACEPARENT),
            ("tracestate", "foo@@bar=1"),
        ]);
        let other = extracted.with_remote_span_context(SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").expect("valid trace id"),
            SpanId::from_hex("b7ad6b7169203331").expect("valid span id"),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ));
        assert_eq!(inject(&other).get("tracestate"), None);
    }

    #[test]
    fn a_tracestate_without_a_valid_traceparent_is_never_sent_on() {
        let cx = extract(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            ),
            ("tracestate", "foo=1"),
        ]);
        assert!(inject(&cx).is_empty());
        assert_eq!(outgoing_tracestate(&cx), None);
    }

    // injection

    #[test]
    fn the_spec_example_round_trips_through_inject_and_extract() {
        let cx = extract(&[
            ("traceparent", SPEC_TRACEPARENT),
            ("tracestate", SPEC_TRACESTATE),
        ]);
        let map = inject(&cx);
        assert_eq!(header(&map, "traceparent"), Some(SPEC_TRACEPARENT));
        assert_eq!(header(&map, "tracestate"), Some(SPEC_TRACESTATE));
    }

    #[test]
    fn an_empty_tracestate_is_not_injected() {
        let map = inject(&remote_cx(0x01, TraceState::default()));
        assert_eq!(header(&map, "traceparent"), Some(SPEC_TRACEPARENT));
        assert_eq!(map.get("tracestate"), None);
    }

    #[test]
    fn nothing_is_injected_without_a_valid_span_context() {
        assert!(inject(&Context::new()).is_empty());
    }

    #[test]
    fn unknown_flags_are_not_echoed_on_injection() {
        let map = inject(&remote_cx(0x09, TraceState::default()));
        assert_eq!(
            header(&map, "traceparent"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        let map = inject(&remote_cx(0xfc, TraceState::default()));
        assert_eq!(
            header(&map, "traceparent"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
        );
    }

    #[test]
    fn the_random_flag_is_re_injected() {
        let cx = extract(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03",
        )]);
        assert_eq!(
            header(&inject(&cx), "traceparent"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03")
        );
    }

    #[test]
    fn the_random_flag_survives_a_child_span_the_sampler_drops() {
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOff)
            .build();
        let tracer = provider.tracer("test");
        let parent = extract(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03",
        )]);
        let child = parent.with_span(tracer.start_with_context("child", &parent));
        let child_context = child.span().span_context().clone();
        assert_eq!(child_context.trace_flags(), TraceFlags::NOT_SAMPLED);

        let traceparent = format!("00-{SPEC_TRACE_ID}-{}-02", child_context.span_id());
        assert_eq!(
            header(&inject(&child), "traceparent"),
            Some(traceparent.as_str())
        );
    }

    #[test]
    fn a_sampled_child_of_a_random_parent_keeps_both_flags() {
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOn)
            .build();
        let tracer = provider.tracer("test");
        let parent = extract(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03",
        )]);
        let child = parent.with_span(tracer.start_with_context("child", &parent));
        let span_id = child.span().span_context().span_id();
        let traceparent = format!("00-{SPEC_TRACE_ID}-{span_id}-03");
        assert_eq!(
            header(&inject(&child), "traceparent"),
            Some(traceparent.as_str())
        );
    }

    #[test]
    fn a_random_flag_extracted_for_one_trace_does_not_apply_to_another() {
        let extracted = extract(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02",
        )]);
        let other = extracted.with_remote_span_context(SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").expect("valid trace id"),
            SpanId::from_hex("b7ad6b7169203331").expect("valid span id"),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ));
        assert!(!has_random_trace_id(&other));
        assert_eq!(
            header(&inject(&other), "traceparent"),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
    }

    #[test]
    fn a_locally_started_trace_marked_random_is_injected_with_the_random_flag() {
        let local = Context::new().with_remote_span_context(SpanContext::new(
            trace_id(),
            parent_id(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ));
        assert!(!has_random_trace_id(&local));
        assert_eq!(
            header(&inject(&local), "traceparent"),
            Some(SPEC_TRACEPARENT)
        );

        let marked = mark_random_trace_id(&local);
        assert!(has_random_trace_id(&marked));
        assert_eq!(
            header(&inject(&marked), "traceparent"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03")
        );
    }

    #[test]
    fn an_unsampled_marked_trace_is_injected_with_only_the_random_flag() {
        let marked = mark_random_trace_id(&remote_cx(0x00, TraceState::default()));
        assert_eq!(
            header(&inject(&marked), "traceparent"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02")
        );
    }

    #[test]
    fn an_unsampled_random_parent_is_sent_on_as_random_from_a_dropped_child() {
        // What an OpenTelemetry Python SDK sends for an unsampled root: `-02`.
        let parent = extract(&[(
            "traceparent",
            &format!("00-{SPEC_TRACE_ID}-{SPEC_PARENT_ID}-02"),
        )]);
        let child = child_of(&parent, Sampler::AlwaysOff);
        let span_id = child.span().span_context().span_id();
        assert_eq!(
            header(&inject(&child), "traceparent"),
            Some(format!("00-{SPEC_TRACE_ID}-{span_id}-02").as_str())
        );
        assert_eq!(
            traceresponse(&child),
            Some(format!("00-{SPEC_TRACE_ID}-{span_id}-02"))
        );
    }

    #[test]
    fn a_parent_without_the_random_flag_is_never_sent_on_as_random() {
        for (flags, sampler) in [("00", Sampler::AlwaysOff), ("01", Sampler::AlwaysOn)] {
            let parent = extract(&[(
                "traceparent",
                &format!("00-{SPEC_TRACE_ID}-{SPEC_PARENT_ID}-{flags}"),
            )]);
            let child = child_of(&parent, sampler);
            let span_id = child.span().span_context().span_id();
            assert_eq!(
                header(&inject(&child), "traceparent"),
                Some(format!("00-{SPEC_TRACE_ID}-{span_id}-{flags}").as_str())
            );
        }
    }

    // traceresponse

    #[test]
    fn traceresponse_has_the_version_00_format() {
        let cx = remote_cx(
            0x01,
            TraceState::from_key_value([("foo", "1")]).expect("valid"),
        );
        assert_eq!(traceresponse(&cx).as_deref(), Some(SPEC_TRACEPARENT));
    }

    #[test]
    fn traceresponse_follows_the_traceparent_flag_rules() {
        assert_eq!(
            traceresponse(&mark_random_trace_id(&remote_cx(
                0x05,
                TraceState::default()
            )))
            .as_deref(),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03")
        );
    }

    #[test]
    fn traceresponse_is_none_without_a_valid_span_context() {
        assert_eq!(traceresponse(&Context::new()), None);
    }

    // server-timing

    #[test]
    fn server_timing_carries_the_traceresponse_value_as_the_trace_metric() {
        let cx = mark_random_trace_id(&remote_cx(0x01, TraceState::default()));
        assert_eq!(
            server_timing(&cx).as_deref(),
            Some("trace;desc=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03")
        );
        assert_eq!(server_timing(&Context::new()), None);
    }

    #[test]
    fn response_headers_are_traceresponse_and_server_timing_with_one_value() {
        let parent = extract(&[(
            "traceparent",
            &format!("00-{SPEC_TRACE_ID}-{SPEC_PARENT_ID}-02"),
        )]);
        let child = child_of(&parent, Sampler::AlwaysOff);
        let span_id = child.span().span_context().span_id();
        let mut map = HeaderMap::new();
        set_response_headers(&child, &mut map);
        let value = format!("00-{SPEC_TRACE_ID}-{span_id}-02");
        assert_eq!(header(&map, "traceresponse"), Some(value.as_str()));
        assert_eq!(
            header(&map, "server-timing"),
            Some(format!("trace;desc={value}").as_str())
        );
    }

    #[test]
    fn the_trace_metric_is_appended_to_a_handlers_server_timing() {
        let cx = remote_cx(0x01, TraceState::default());
        let mut map = headers(&[
            ("server-timing", "db;dur=53"),
            ("server-timing", "cache;desc=\"Cache Read\";dur=23.2"),
            ("traceresponse", "stale"),
        ]);
        set_response_headers(&cx, &mut map);
        let values: Vec<_> = map.get_all("server-timing").iter().collect();
        assert_eq!(
            values,
            vec![HeaderValue::from_static(
                "db;dur=53, cache;desc=\"Cache Read\";dur=23.2, \
                 trace;desc=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            )]
        );
        assert_eq!(header(&map, "traceresponse"), Some(SPEC_TRACEPARENT));
    }

    #[test]
    fn no_response_headers_are_written_without_a_valid_span_context() {
        let mut map = headers(&[("server-timing", "db;dur=53")]);
        set_response_headers(&Context::new(), &mut map);
        assert_eq!(header(&map, "server-timing"), Some("db;dur=53"));
        assert_eq!(map.get("traceresponse"), None);
    }

    #[test]
    fn the_propagator_declares_its_two_headers() {
        let propagator = TraceContextPropagator::new();
        let fields: Vec<&str> = propagator.fields().collect();
        assert_eq!(fields, vec!["traceparent", "tracestate"]);
    }
}
