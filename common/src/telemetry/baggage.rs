//! Baggage on spans: every span a service starts carries the request's baggage entries as
//! attributes.
//!
//! The gateway puts `user_id` and `customer_tier` into the baggage; the services behind it
//! receive them in the `baggage` header, and this processor copies them onto each of their
//! spans, so Jaeger finds every span of a user's requests by `user_id=42`, in any service, and
//! shows the tier next to each. Baggage that a caller may set is limited at the gateway (an
//! allow-list and size limits), which is what makes copying all of it here safe.
//!
//! Attributes that describe a span's own work use semantic-convention names (`user.id` on
//! `lookup_user`), so they never collide with a baggage key.

use opentelemetry::{Context, KeyValue, baggage::BaggageExt, trace::Span as _};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    trace::{Span, SpanData, SpanProcessor},
};

/// Copies the parent context's baggage onto each span when it starts.
#[derive(Debug)]
pub struct BaggageSpanProcessor;

fn copy_baggage_onto(span: &mut Span, cx: &Context) {
    for (key, (value, _)) in cx.baggage() {
        span.set_attribute(KeyValue::new(key.clone(), value.clone()));
    }
}

impl SpanProcessor for BaggageSpanProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        copy_baggage_onto(span, cx);
    }

    fn on_end(&self, _span: SpanData) {}

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: std::time::Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// [`BaggageSpanProcessor`] in front of another processor, as one processor.
///
/// The SDK hands a provider's only processor the ended span itself, but gives each of
/// several processors a copy of it: every attribute, event and link cloned, the span name,
/// the SQL text and each baggage value with them, once per processor, for every span. The
/// baggage processor, registered on its own beside the batch processor, made every sampled
/// span be copied twice; wrapped around the batch processor, it is not copied at all.
#[derive(Debug)]
pub struct WithBaggage<P>(pub P);

impl<P: SpanProcessor> SpanProcessor for WithBaggage<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        copy_baggage_onto(span, cx);
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {

    use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;
    use crate::telemetry::Collect;

    #[test]
    fn every_baggage_entry_becomes_an_attribute_of_the_spans_started_under_it() {
        let collected = Collect::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BaggageSpanProcessor)
            .with_span_processor(collected.clone())
            .build();
        let tracer = provider.tracer("test");
        let cx = Context::new().with_baggage([
            KeyValue::new("user_id", "42"),
            KeyValue::new("customer_tier", "gold"),
        ]);
        let parent = tracer.start_with_context("charge_card", &cx);
        let cx = cx.with_span(parent);
        tracer.start_with_context("lookup_user", &cx).end();
        cx.span().end();

        let spans = collected.spans();
        assert_eq!(spans.len(), 2);
        for span in spans {
            let attr = |k: &str| {
                span.attributes
                    .iter()
                    .find(|kv| kv.key.as_str() == k)
                    .map(|kv| kv.value.to_string())
            };
            assert_eq!(attr("user_id").as_deref(), Some("42"), "{}", span.name);
            assert_eq!(
                attr("customer_tier").as_deref(),
                Some("gold"),
                "{}",
                span.name
            );
        }
    }

    #[test]
    fn the_attributes_share_the_extracted_baggage_strings_instead_of_copying_them() {
        use opentelemetry::propagation::TextMapPropagator as _;
        let collected = Collect::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BaggageSpanProcessor)
            .with_span_processor(collected.clone())
            .build();
        let headers = std::collections::HashMap::from([(
            "baggage".to_owned(),
            "user_id=42,customer_tier=gold".to_owned(),
        )]);
        let cx = crate::telemetry::propagator().extract(&headers);
        provider
            .tracer("test")
            .start_with_context("charge_card", &cx)
            .end();

        let spans = collected.spans();
        for key in ["user_id", "customer_tier"] {
            let kv = spans[0]
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .expect("the entry is an attribute");
            let in_baggage = cx.baggage().get(key).expect("the entry is in the baggage");
            assert_eq!(kv.value.as_str(), in_baggage.as_str());
            assert_eq!(
                kv.key.as_str().as_ptr(),
                cx.baggage()
                    .iter()
                    .find(|(k, _)| k.as_str() == key)
                    .map(|(k, _)| k.as_str().as_ptr())
                    .unwrap(),
                "{key}: the key was copied"
            );
            assert_eq!(
                kv.value.as_str().as_ptr(),
                in_baggage.as_str().as_ptr(),
                "{key}: the value was copied"
            );
        }
    }

    #[test]
    fn wrapped_around_another_processor_it_copies_the_baggage_and_hands_the_span_on() {
        let collected = Collect::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(WithBaggage(collected.clone()))
            .build();
        let cx = Context::new().with_baggage([KeyValue::new("user_id", "42")]);
        provider
            .tracer("test")
            .start_with_context("charge_card", &cx)
            .end();

        let spans = collected.spans();
        assert_eq!(spans.len(), 1, "the inner processor got the span");
        assert!(
            spans[0]
                .attributes
                .iter()
                .any(|kv| kv.key.as_str() == "user_id" && kv.value.as_str() == "42"),
            "{:?}",
            spans[0].attributes
        );
    }
}
