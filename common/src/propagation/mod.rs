//! Context propagation across service boundaries: reading the W3C
//! `traceparent`, `tracestate` and `baggage` headers of an incoming request into
//! an OpenTelemetry [`Context`], and writing them onto
//! outgoing requests, so that one distributed trace (and the application's
//! baggage) follows a request through every service it touches.
//!
//! The stock `opentelemetry_sdk` propagators are replaced because they do not
//! implement the whole W3C processing model: they read only the first value of a
//! header (so two `traceparent` headers are not rejected and several
//! `tracestate`/`baggage` headers are not combined), they clear every trace flag
//! but `sampled` (so the Trace Context Level 2 `random-trace-id` flag is lost),
//! they validate `tracestate` by the 2020 grammar and lose a list whose keys the
//! current one allows, and their baggage parser neither follows the W3C grammar
//! nor applies its limits member by member. [`TraceContextPropagator`] (with
//! [`tracestate`]) and [`BaggagePropagator`] implement the specifications;
//! [`HeaderExtractor`] and [`HeaderInjector`] connect them to [`http::HeaderMap`],
//! which is what axum and reqwest use. [`InboundPolicy`] decides how much of a
//! caller's context a service accepts, and [`set_response_headers`] writes the
//! trace context of a response (`traceresponse` and `server-timing`).

pub mod baggage;
pub mod inbound;
pub mod trace_context;
pub mod tracestate;

// What the services and the rest of `common` use, at the top; everything else stays in its
// module (`propagation::trace_context::traceresponse`), so this list is the interface.
pub use baggage::{BaggageLimits, BaggagePropagator};
pub use inbound::{BaggagePolicy, InboundPolicy};
pub use trace_context::{TraceContextPropagator, parse_traceparent, set_response_headers};

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::{
    Context, KeyValue, StringValue,
    baggage::{Baggage, BaggageExt, KeyValueMetadata},
    propagation::{Extractor, Injector, TextMapCompositePropagator},
};

/// What [`HeaderExtractor::get_all`] returns for a header value that is not
/// visible ASCII (it holds `obs-text` bytes). An empty string would not do:
/// an empty `tracestate` header is valid and would silently be skipped, while
/// the header is really present and unreadable. U+FFFD is outside the ASCII
/// range every W3C grammar here is limited to, so each parser rejects it.
const UNREADABLE_VALUE: &str = "\u{FFFD}";

/// The header names this workspace's propagators read and write. A name given as `&str` is
/// parsed (checked and lowercased) on every lookup and insert into a `HeaderMap`; as a
/// `HeaderName` it is only hashed. Parsing them was most of the cost of propagation.
static KNOWN_NAMES: [HeaderName; 3] = [
    HeaderName::from_static(trace_context::TRACEPARENT_HEADER),
    HeaderName::from_static(trace_context::TRACESTATE_HEADER),
    HeaderName::from_static(baggage::BAGGAGE_HEADER),
];

fn known_name(key: &str) -> Option<&'static HeaderName> {
    KNOWN_NAMES.iter().find(|known| known.as_str() == key)
}

/// Reads propagation headers from an [`http::HeaderMap`] (case-insensitive
/// names, as HTTP requires).
#[derive(Debug, Clone, Copy)]
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    /// The first value of `key` that is visible ASCII; values holding other
    /// bytes are skipped because no propagation format can use them.
    fn get(&self, key: &str) -> Option<&str> {
        self.values(key).find_map(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }

    /// Every value of `key`, in the order received. A value that is not
    /// visible ASCII is returned as U+FFFD rather than dropped, so that the
    /// parsers see the header as present but invalid (a dropped value could
    /// turn two `traceparent` headers into one valid-looking header).
    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values: Vec<&str> = self
            .values(key)
            .map(|value| value.to_str().unwrap_or(UNREADABLE_VALUE))
            .collect();
        if values.is_empty() {
            None
        } else {
            Some(values)
        }
    }
}

impl<'a> HeaderExtractor<'a> {
    fn values(self, key: &str) -> http::header::ValueIter<'a, HeaderValue> {
        match known_name(key) {
            Some(name) => self.0.get_all(name).iter(),
            None => self.0.get_all(key).iter(),
        }
    }
}

/// Writes propagation headers into an [`http::HeaderMap`].
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    /// Replaces every existing value of `key`: a request must carry exactly
    /// one `traceparent`, and a stale `tracestate` or `baggage` left next to
    /// the new one would be combined with it by the receiver. A name or value
    /// that HTTP cannot carry is skipped rather than sent half-written.
    fn set(&mut self, key: &str, value: String) {
        let name = match known_name(key) {
            Some(known) => known.clone(),
            None => match HeaderName::from_bytes(key.as_bytes()) {
                Ok(name) => name,
                Err(_) => return,
            },
        };
        // The `String` becomes the header's bytes as it is, without a copy.
        let Ok(value) = HeaderValue::try_from(value) else {
            return;
        };
        self.0.insert(name, value);
    }

    fn reserve(&mut self, additional: usize) {
        self.0.reserve(additional);
    }
}

/// One propagator that handles trace context first and baggage second, for
/// `opentelemetry::global::set_text_map_propagator`.
pub fn composite(
    trace_context: TraceContextPropagator,
    baggage: BaggagePropagator,
) -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![Box::new(trace_context), Box::new(baggage)])
}

/// A copy of `baggage` (opentelemetry's `Baggage` is not `Clone`).
pub fn copy_baggage(baggage: &Baggage) -> Baggage {
    baggage
        .iter()
        .map(|(key, (value, metadata))| {
            KeyValueMetadata::new(key.clone(), value.clone(), metadata.clone())
        })
        .collect()
}

/// `cx` with `entries` added to its baggage (replacing entries with the same key). Spans
/// started from the returned context, and requests sent from them, carry the new entries.
pub fn with_baggage_entries(cx: &Context, entries: impl IntoIterator<Item = KeyValue>) -> Context {
    let mut baggage = copy_baggage(cx.baggage());
    for KeyValue { key, value, .. } in entries {
        // Shared, so the copies onto every span are reference counts (`telemetry::baggage`).
        baggage.insert(key, StringValue::from(Arc::<str>::from(value.to_string())));
    }
    cx.with_baggage(baggage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::{
        Context,
        baggage::BaggageExt,
        propagation::TextMapPropagator,
        trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState},
    };

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn get_all_returns_every_value_of_a_header_in_order() {
        let map = headers(&[("tracestate", "a=1"), ("tracestate", "b=2")]);
        assert_eq!(
            HeaderExtractor(&map).get_all("tracestate"),
            Some(vec!["a=1", "b=2"])
        );
    }

    #[test]
    fn get_all_returns_none_for_a_missing_header() {
        let map = headers(&[("tracestate", "a=1")]);
        assert_eq!(HeaderExtractor(&map).get_all("traceparent"), None);
    }

    #[test]
    fn header_names_are_looked_up_case_insensitively() {
        let map = headers(&[("tracestate", "a=1")]);
        let extractor = HeaderExtractor(&map);
        assert_eq!(extractor.get("TraceState"), Some("a=1"));
        assert_eq!(extractor.get_all("TRACESTATE"), Some(vec!["a=1"]));
    }

    #[test]
    fn get_all_reports_a_non_ascii_value_as_present_but_unreadable() {
        let mut map = headers(&[("baggage", "a=1")]);
        map.append(
            "baggage",
            HeaderValue::from_bytes(b"b=\xc3\xa9").expect("obs-text is a valid header value"),
        );
        assert_eq!(
            HeaderExtractor(&map).get_all("baggage"),
            Some(vec!["a=1", "\u{FFFD}"])
        );
    }

    #[test]
    fn get_skips_a_non_ascii_value() {
        let mut map = HeaderMap::new();
        map.append(
            "baggage",
            HeaderValue::from_bytes(b"b=\xff").expect("obs-text is a valid header value"),
        );
        map.append("baggage", HeaderValue::from_static("a=1"));
        assert_eq!(HeaderExtractor(&map).get("baggage"), Some("a=1"));
    }

    #[test]
    fn keys_lists_the_header_names() {
        let map = headers(&[("traceparent", "x"), ("baggage", "y")]);
        let extractor = HeaderExtractor(&map);
        let mut keys = extractor.keys();
        keys.sort_unstable();
        assert_eq!(keys, vec!["baggage", "traceparent"]);
    }

    #[test]
    fn set_replaces_every_existing_value() {
        let mut map = headers(&[("tracestate", "old=1"), ("tracestate", "old=2")]);
        HeaderInjector(&mut map).set("tracestate", "new=3".to_owned());
        let values: Vec<_> = map.get_all("tracestate").iter().collect();
        assert_eq!(values, vec![HeaderValue::from_static("new=3")]);
    }

    #[test]
    fn set_skips_a_value_that_is_not_a_valid_header_value() {
        let mut map = headers(&[("baggage", "kept=1")]);
        HeaderInjector(&mut map).set("baggage", "bad\nvalue".to_owned());
        assert_eq!(
            map.get("baggage"),
            Some(&HeaderValue::from_static("kept=1"))
        );
    }

    #[test]
    fn set_writes_the_known_names_and_any_other_valid_one() {
        let names = ["traceparent", "tracestate", "baggage", "x-vendor-context"];
        let mut map = HeaderMap::new();
        for name in names {
            HeaderInjector(&mut map).set(name, format!("{name}=1"));
        }
        assert_eq!(map.len(), names.len());
        for name in names {
            assert_eq!(
                map.get(name).and_then(|v| v.to_str().ok()),
                Some(format!("{name}=1").as_str()),
                "{name}"
            );
        }
    }

    #[test]
    fn set_skips_a_name_that_is_not_a_valid_header_name() {
        let mut map = HeaderMap::new();
        HeaderInjector(&mut map).set("bad name", "1".to_owned());
        assert!(map.is_empty());
    }

    #[test]
    fn the_composite_propagator_round_trips_trace_context_and_baggage() {
        let propagator = composite(
            TraceContextPropagator::default(),
            BaggagePropagator::default(),
        );
        let span_context = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("valid hex"),
            SpanId::from_hex("00f067aa0ba902b7").expect("valid hex"),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("congo", "t61rcWkgMzE")]).expect("valid tracestate"),
        );
        let cx = Context::new()
            .with_remote_span_context(span_context)
            .with_baggage([opentelemetry::KeyValue::new("userId", "alice")]);

        let mut map = HeaderMap::new();
        propagator.inject_context(&cx, &mut HeaderInjector(&mut map));
        assert_eq!(
            map.get("traceparent"),
            Some(&HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            ))
        );
        assert_eq!(
            map.get("tracestate"),
            Some(&HeaderValue::from_static("congo=t61rcWkgMzE"))
        );
        assert_eq!(
            map.get("baggage"),
            Some(&HeaderValue::from_static("userId=alice"))
        );

        let extracted = propagator.extract_with_context(&Context::new(), &HeaderExtractor(&map));
        assert_eq!(
            extracted.span().span_context().span_id(),
            SpanId::from_hex("00f067aa0ba902b7").expect("valid hex")
        );
        assert_eq!(
            extracted
                .baggage()
                .get("userId")
                .map(opentelemetry::StringValue::as_str),
            Some("alice")
        );
        // The composite propagator keeps its fields in a set: compare sorted.
        let mut fields: Vec<&str> = propagator.fields().collect();
        fields.sort_unstable();
        assert_eq!(fields, vec!["baggage", "traceparent", "tracestate"]);
    }
}
