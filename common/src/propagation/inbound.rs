//! How much of a caller's context a service accepts: the inbound half of propagation policy.
//!
//! The server layer ([`crate::http_server::trace_requests`]) asks a service's
//! [`InboundPolicy`] for the context to run each request in, and hands the request's span to
//! [`Extracted::parent`], which makes that context its parent (or, for a new trace, links it
//! to the caller's span). Services inside the system trust each other and take everything;
//! the gateway is the trust boundary, where what an outside caller sends is data from the
//! internet: it may start a new trace instead of continuing the caller's, and it keeps only
//! allow-listed baggage.
//!
//! The policy narrows the context the global propagator extracted; it never rebuilds one from
//! the caller's [`SpanContext`]. The extracted context also carries what a span context
//! cannot (the caller's `random-trace-id` flag for spans this process does not sample, and a
//! `tracestate` the opentelemetry crate cannot hold, see [`trace_context`](super::trace_context)),
//! and a rebuilt context would lose it: the gateway once answered `-00` to a caller's `-02`
//! that way.

use std::sync::Arc;

use http::HeaderMap;
use opentelemetry::{
    Context, Key,
    baggage::{Baggage, BaggageExt},
    trace::{SpanContext, TraceContextExt},
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{BaggageLimits, HeaderExtractor, copy_baggage, trace_context::mark_random_trace_id};

/// What a service accepts from its callers' propagation headers.
///
/// Services inside the system trust each other and take everything. The gateway is the trust
/// boundary: what an outside caller sends is data from the internet.
#[derive(Clone, Debug)]
pub struct InboundPolicy {
    /// Continue the caller's trace (its `traceparent`), or start a new one and link to it.
    pub continue_remote_trace: bool,
    /// Which baggage entries are kept.
    pub baggage: BaggagePolicy,
}

#[derive(Clone, Debug)]
pub enum BaggagePolicy {
    /// Every entry the W3C limits allow.
    AcceptAll,
    /// Only these keys, within these limits; everything else is dropped without failing the
    /// request.
    AllowList {
        keys: Arc<[String]>,
        limits: BaggageLimits,
    },
}

/// The result of [`InboundPolicy::extract`].
pub struct Extracted {
    /// The parent context: the caller's trace context as extracted (or none) and the accepted
    /// baggage.
    pub cx: Context,
    /// The caller's span, when the policy starts a new trace instead of continuing it.
    pub link: Option<SpanContext>,
}

impl InboundPolicy {
    /// For services behind the gateway: continue the trace, keep all baggage.
    pub fn internal() -> Arc<Self> {
        Arc::new(InboundPolicy {
            continue_remote_trace: true,
            baggage: BaggagePolicy::AcceptAll,
        })
    }

    /// The context to run the request in: the caller's, as far as this policy trusts it.
    pub fn extract(&self, headers: &HeaderMap) -> Extracted {
        let extracted = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract_with_context(&Context::new(), &HeaderExtractor(headers))
        });
        let remote = extracted.span().span_context().clone();
        let continued = self.continue_remote_trace && remote.is_valid();
        let link = (!self.continue_remote_trace && remote.is_valid()).then(|| remote.clone());

        let baggage = match &self.baggage {
            BaggagePolicy::AcceptAll => copy_baggage(extracted.baggage()),
            BaggagePolicy::AllowList { keys, limits } => {
                allowed_baggage(extracted.baggage(), keys, *limits)
            }
        };
        // Continued: the extracted context, whole, with only its baggage replaced. Otherwise a
        // context with nothing of the caller's trace in it.
        let base = if continued { extracted } else { Context::new() };
        let mut cx = base.with_baggage(baggage);
        if !cx.has_active_span() {
            // A new trace: its id comes from the SDK's random generator, which W3C Trace
            // Context lets us announce with the `random` flag.
            cx = mark_random_trace_id(&cx);
        }
        Extracted { cx, link }
    }
}

impl Extracted {
    /// Makes this context `span`'s parent, and, when the policy started a new trace, links
    /// `span` to the caller's span, so the caller's trace can still be found from it.
    pub fn parent(self, span: &tracing::Span) {
        // `set_parent` fails only when no OpenTelemetry layer is installed (handler tests):
        // then there is no trace to continue, and nothing to do about it.
        let _ = span.set_parent(self.cx);
        if let Some(remote) = self.link {
            span.add_link(remote);
        }
    }
}

/// The entries of `baggage` whose keys are allowed, within `limits`. The keys are filtered
/// first, so entries an outside caller may not send cannot use up the room of those it may.
/// Sizes count the key and the decoded value and properties.
fn allowed_baggage(baggage: &Baggage, keys: &[String], limits: BaggageLimits) -> Baggage {
    let mut kept = Baggage::new();
    let mut bytes = 0;
    for key in keys {
        let Some((value, metadata)) = baggage.get_with_metadata(key) else {
            continue;
        };
        let size = key.len() + value.as_str().len() + metadata.as_str().len();
        if kept.len() == limits.max_members || bytes + size > limits.max_bytes {
            continue;
        }
        bytes += size;
        // A shared key, as the propagator's values are: every span copies it.
        kept.insert_with_metadata(
            Key::from(Arc::<str>::from(key.as_str())),
            value.clone(),
            metadata.clone(),
        );
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::{
        HeaderInjector,
        trace_context::{outgoing_tracestate, traceresponse},
    };
    use http::HeaderValue;
    use opentelemetry::trace::{Tracer, TracerProvider};
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

    const CALLER_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

    fn install_propagator() {
        opentelemetry::global::set_text_map_propagator(crate::telemetry::propagator());
    }

    fn gateway_with(
        continue_remote_trace: bool,
        max_members: usize,
        max_bytes: usize,
    ) -> InboundPolicy {
        install_propagator();
        InboundPolicy {
            continue_remote_trace,
            baggage: BaggagePolicy::AllowList {
                keys: vec!["session_id".to_owned(), "experiment".to_owned()].into(),
                limits: BaggageLimits {
                    max_members,
                    max_bytes,
                },
            },
        }
    }

    fn gateway(max_members: usize, max_bytes: usize) -> InboundPolicy {
        gateway_with(true, max_members, max_bytes)
    }

    fn internal() -> Arc<InboundPolicy> {
        install_propagator();
        InboundPolicy::internal()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                *name,
                HeaderValue::from_str(value).expect("a valid test header"),
            );
        }
        map
    }

    fn baggage_of(policy: &InboundPolicy, header: &str) -> Vec<(String, String)> {
        let cx = policy.extract(&headers(&[("baggage", header)])).cx;
        let mut entries: Vec<(String, String)> = cx
            .baggage()
            .iter()
            .map(|(k, (v, _))| (k.to_string(), v.to_string()))
            .collect();
        entries.sort();
        entries
    }

    /// The headers an outgoing call sends from the SERVER span a request's context starts,
    /// with `sampler` deciding for that span, as the server layer and HTTP client do.
    fn outgoing_from_server_span(cx: &Context, sampler: Sampler) -> (Context, HeaderMap) {
        let provider = SdkTracerProvider::builder().with_sampler(sampler).build();
        let server = cx.with_span(provider.tracer("test").start_with_context("server", cx));
        let mut map = HeaderMap::new();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&server, &mut HeaderInjector(&mut map));
        });
        (server, map)
    }

    fn header<'a>(map: &'a HeaderMap, name: &str) -> Option<&'a str> {
        map.get(name).and_then(|v| v.to_str().ok())
    }

    // Baggage at the boundary

    #[test]
    fn the_gateway_keeps_only_allowed_baggage_keys() {
        let policy = gateway(8, 1024);
        assert_eq!(
            baggage_of(&policy, "session_id=abc,evil=1,user_id=999"),
            [("session_id".to_owned(), "abc".to_owned())]
        );
    }

    #[test]
    fn disallowed_entries_cannot_crowd_out_allowed_ones() {
        // A disallowed member that fits would otherwise take the only slot...
        assert_eq!(
            baggage_of(&gateway(1, 1024), "evil=1,session_id=abc"),
            [("session_id".to_owned(), "abc".to_owned())]
        );
        // ...or most of the byte budget.
        let padding = "x".repeat(50);
        assert_eq!(
            baggage_of(&gateway(8, 64), &format!("evil={padding},session_id=abc")),
            [("session_id".to_owned(), "abc".to_owned())]
        );
    }

    #[test]
    fn allowed_entries_beyond_the_limits_are_dropped_whole() {
        let policy = gateway(8, 20);
        let entries = baggage_of(
            &policy,
            &format!("session_id=abc,experiment={}", "y".repeat(30)),
        );
        assert_eq!(entries, [("session_id".to_owned(), "abc".to_owned())]);
        let policy = gateway(1, 1024);
        assert_eq!(baggage_of(&policy, "experiment=a,session_id=b").len(), 1);
    }

    #[test]
    fn internal_services_keep_all_baggage() {
        let cx = internal()
            .extract(&headers(&[("baggage", "evil=1,user_id=2")]))
            .cx;
        assert_eq!(cx.baggage().len(), 2);
    }

    // The caller's trace context through the policy

    #[test]
    fn the_random_flag_of_an_unsampled_caller_survives_every_policy() {
        let traceparent = format!("00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-02");
        for (name, policy) in [
            ("gateway", Arc::new(gateway(8, 1024))),
            ("internal", internal()),
        ] {
            let cx = policy
                .extract(&headers(&[
                    ("traceparent", &traceparent),
                    ("baggage", "session_id=a"),
                ]))
                .cx;
            let (server, outgoing) = outgoing_from_server_span(&cx, Sampler::AlwaysOff);
            let span_id = server.span().span_context().span_id();
            let expected = format!("00-{CALLER_TRACE_ID}-{span_id}-02");
            assert_eq!(
                header(&outgoing, "traceparent"),
                Some(expected.as_str()),
                "{name}"
            );
            assert_eq!(traceresponse(&server), Some(expected), "{name}");
        }
    }

    #[test]
    fn sampled_and_unsampled_callers_keep_their_flags_through_the_gateway_policy() {
        for (flags, sampler) in [
            ("03", Sampler::ParentBased(Box::new(Sampler::AlwaysOff))),
            ("01", Sampler::ParentBased(Box::new(Sampler::AlwaysOff))),
            ("00", Sampler::ParentBased(Box::new(Sampler::AlwaysOn))),
        ] {
            let traceparent = format!("00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-{flags}");
            let cx = gateway(8, 1024)
                .extract(&headers(&[("traceparent", &traceparent)]))
                .cx;
            let (server, outgoing) = outgoing_from_server_span(&cx, sampler);
            let span_id = server.span().span_context().span_id();
            assert_eq!(
                header(&outgoing, "traceparent"),
                Some(format!("00-{CALLER_TRACE_ID}-{span_id}-{flags}").as_str())
            );
        }
    }

    #[test]
    fn a_tracestate_the_library_rejects_survives_the_gateway_policy() {
        let list = "foo@@bar=1,congo=t61rcWkgMzE";
        let cx = gateway(8, 1024)
            .extract(&headers(&[
                (
                    "traceparent",
                    &format!("00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-02"),
                ),
                ("tracestate", list),
            ]))
            .cx;
        assert_eq!(outgoing_tracestate(&cx).as_deref(), Some(list));
        let (_, outgoing) = outgoing_from_server_span(&cx, Sampler::AlwaysOff);
        assert_eq!(header(&outgoing, "tracestate"), Some(list));
    }

    #[test]
    fn a_new_trace_at_the_boundary_keeps_nothing_of_the_callers_trace_context() {
        let cx = gateway_with(false, 8, 1024).extract(&headers(&[
            (
                "traceparent",
                &format!("00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-02"),
            ),
            ("tracestate", "foo@@bar=1"),
        ]));
        assert!(!cx.cx.has_active_span());
        assert_eq!(
            cx.link.map(|link| link.trace_id().to_string()),
            Some(CALLER_TRACE_ID.to_owned()),
            "linked instead"
        );
        let (server, outgoing) = outgoing_from_server_span(&cx.cx, Sampler::AlwaysOn);
        assert_ne!(
            server.span().span_context().trace_id().to_string(),
            CALLER_TRACE_ID
        );
        assert_eq!(
            outgoing.get("tracestate"),
            None,
            "the caller's tracestate stays out"
        );
        assert!(
            header(&outgoing, "traceparent").is_some_and(|v| v.ends_with("-03")),
            "a trace this system starts announces its random trace id"
        );
    }

    #[test]
    fn a_request_without_a_traceparent_starts_a_random_trace() {
        for policy in [Arc::new(gateway(8, 1024)), internal()] {
            let cx = policy.extract(&HeaderMap::new()).cx;
            let (_, outgoing) = outgoing_from_server_span(&cx, Sampler::AlwaysOff);
            assert!(
                header(&outgoing, "traceparent").is_some_and(|v| v.ends_with("-02")),
                "{outgoing:?}"
            );
        }
    }
}
