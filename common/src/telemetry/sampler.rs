//! Sampling: which traces are recorded.
//!
//! The base sampler follows the OpenTelemetry specification's `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG` variables, `parentbased_always_on` by default. Being
//! parent-based matters in a distributed system: each service follows the sampled flag of
//! the `traceparent` it receives, so a trace is recorded by all services or by none.
//!
//! On top of it sits a [`RouteRuleSampler`]: rules keyed by HTTP route that decide before
//! the base sampler does. Health and readiness probes are dropped by default (they would
//! otherwise be most of the traces a service produces). Further rules come from
//! `TRACES_ROUTE_RULES`, e.g. `GET /api/orders/{id}=0.1,/internal/*=off`.
//!
//! A dropped span still has a valid span context with the sampled flag off, so context keeps
//! propagating (`-00` in `traceparent`) and downstream services drop their spans too.

use opentelemetry::{
    KeyValue,
    trace::{Link, SpanKind, TraceContextExt, TraceId},
};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, SamplingResult, ShouldSample};

use crate::config::{ConfigError, Vars, shared as var};

/// Routes that are never traced unless `TRACES_ROUTE_RULES` says otherwise: the probes, and
/// the metrics scrape.
const DEFAULT_RULES: &str = "/healthz=off,/readyz=off,/metrics=off";

/// Reads `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` and `TRACES_ROUTE_RULES`.
pub fn from_vars(vars: &Vars) -> Result<RouteRuleSampler, ConfigError> {
    let base = base_sampler(vars)?;
    let mut rules = parse_rules(DEFAULT_RULES).expect("the default rules parse");
    if let Some(extra) = vars.read_optional(&var::TRACES_ROUTE_RULES, parse_rules)? {
        // Later rules win, so a user rule can override a default one (`/healthz=1` traces probes).
        rules.extend(extra);
    }
    Ok(RouteRuleSampler { rules, base })
}

fn base_sampler(vars: &Vars) -> Result<Sampler, ConfigError> {
    // Read whichever sampler is named, so the argument is looked up as every other variable
    // is, but an error only where a sampler uses it.
    let ratio = vars.read(&var::OTEL_TRACES_SAMPLER_ARG, |raw| {
        match raw.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
            _ => Err("expected a ratio between 0 and 1".to_owned()),
        }
    });
    let ratio = || ratio.clone();
    let name = vars.read(&var::OTEL_TRACES_SAMPLER, |raw| Ok(raw.to_owned()))?;
    Ok(match name.as_str() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio()?),
        "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio()?)))
        }
        other => {
            return Err(ConfigError::invalid(
                var::OTEL_TRACES_SAMPLER.name,
                other,
                "expected always_on, always_off, traceidratio, parentbased_always_on, \
                 parentbased_always_off or parentbased_traceidratio",
            ));
        }
    })
}

/// What a rule does with the spans of a matching route.
#[derive(Clone, Debug, PartialEq)]
pub enum RouteDecision {
    /// Never record (probes). Applies even under a sampled parent: a probe has no
    /// downstream spans worth keeping.
    Drop,
    /// Record this fraction of the traces that *start* at this route. Under a parent the
    /// parent's decision stands, so a trace is never half-sampled.
    Ratio(f64),
}

/// One rule: an optional method and a route pattern (`*` at the end matches any suffix).
#[derive(Clone, Debug, PartialEq)]
pub struct RouteRule {
    method: Option<String>,
    pattern: String,
    decision: RouteDecision,
}

impl RouteRule {
    fn matches(&self, method: Option<&str>, route: &str) -> bool {
        if let Some(m) = &self.method
            && method != Some(m.as_str())
        {
            return false;
        }
        match self.pattern.strip_suffix('*') {
            Some(prefix) => route.starts_with(prefix),
            None => route == self.pattern,
        }
    }
}

/// Parses `[METHOD ]route=decision` pairs separated by commas; the decision is `off` or a
/// ratio between 0 and 1.
pub fn parse_rules(raw: &str) -> Result<Vec<RouteRule>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|rule| {
            let (target, decision) = rule
                .rsplit_once('=')
                .ok_or_else(|| format!("rule {rule:?} has no `=decision`"))?;
            let decision = match decision.trim() {
                "off" | "drop" => RouteDecision::Drop,
                d => match d.parse::<f64>() {
                    Ok(r) if (0.0..=1.0).contains(&r) => RouteDecision::Ratio(r),
                    _ => {
                        return Err(format!(
                            "rule {rule:?}: decision must be `off` or a ratio 0..1"
                        ));
                    }
                },
            };
            let target = target.trim();
            let (method, pattern) = match target.split_once(' ') {
                Some((m, p)) => (Some(m.trim().to_ascii_uppercase()), p.trim()),
                None => (None, target),
            };
            if !pattern.starts_with('/') {
                return Err(format!("rule {rule:?}: the route must start with `/`"));
            }
            Ok(RouteRule {
                method,
                pattern: pattern.to_owned(),
                decision,
            })
        })
        .collect()
}

/// Applies route rules to server spans, and the base sampler to everything else.
#[derive(Clone, Debug)]
pub struct RouteRuleSampler {
    rules: Vec<RouteRule>,
    base: Sampler,
}

impl RouteRuleSampler {
    fn rule_for(&self, attributes: &[KeyValue]) -> Option<&RouteRule> {
        let attr = |key: &str| {
            attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.as_str())
        };
        // The server layer sets `http.route` (the matched template) when the router matched,
        // and `url.path` always; rules are written against routes, which a path also is for
        // the fixed routes this project has.
        let route = attr("http.route").or_else(|| attr("url.path"))?;
        let method = attr("http.request.method");
        self.rules
            .iter()
            .rev()
            .find(|rule| rule.matches(method.as_deref(), &route))
    }
}

impl ShouldSample for RouteRuleSampler {
    fn should_sample(
        &self,
        parent_context: Option<&opentelemetry::Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let has_parent =
            parent_context.is_some_and(opentelemetry::trace::TraceContextExt::has_active_span);
        if *span_kind == SpanKind::Server {
            match self.rule_for(attributes).map(|r| &r.decision) {
                Some(RouteDecision::Drop) => {
                    return SamplingResult {
                        decision: SamplingDecision::Drop,
                        attributes: Vec::new(),
                        trace_state: parent_context
                            .map(|cx| cx.span().span_context().trace_state().clone())
                            .unwrap_or_default(),
                    };
                }
                Some(RouteDecision::Ratio(r)) if !has_parent => {
                    return Sampler::TraceIdRatioBased(*r).should_sample(
                        parent_context,
                        trace_id,
                        name,
                        span_kind,
                        attributes,
                        links,
                    );
                }
                _ => {}
            }
        }
        self.base
            .should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::{
        Context,
        trace::{SpanContext, SpanId, TraceFlags, TraceState},
    };

    use super::*;

    #[expect(
        clippy::needless_pass_by_value,
        reason = "the arguments of `ShouldSample::should_sample`, as its callers write them"
    )]
    fn sample(
        s: &RouteRuleSampler,
        parent: Option<&Context>,
        kind: SpanKind,
        attrs: &[KeyValue],
    ) -> SamplingDecision {
        s.should_sample(
            parent,
            TraceId::from_bytes([7; 16]),
            "span",
            &kind,
            attrs,
            &[],
        )
        .decision
    }

    fn sampled_parent() -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_bytes([1; 16]),
            SpanId::from_bytes([2; 8]),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ))
    }

    fn route(method: &'static str, route: &'static str) -> Vec<KeyValue> {
        vec![
            KeyValue::new("http.request.method", method),
            KeyValue::new("http.route", route),
        ]
    }

    #[test]
    fn probes_are_never_sampled_by_default() {
        let s = from_vars(&Vars::from_pairs([])).unwrap();
        for path in ["/healthz", "/readyz"] {
            assert_eq!(
                sample(&s, None, SpanKind::Server, &route("GET", path)),
                SamplingDecision::Drop,
                "{path}"
            );
        }
        assert_eq!(
            sample(&s, None, SpanKind::Server, &route("POST", "/api/orders")),
            SamplingDecision::RecordAndSample
        );
    }

    #[test]
    fn the_default_base_sampler_follows_the_parent() {
        let s = from_vars(&Vars::from_pairs([])).unwrap();
        let unsampled = Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_bytes([1; 16]),
            SpanId::from_bytes([2; 8]),
            TraceFlags::NOT_SAMPLED,
            true,
            TraceState::default(),
        ));
        assert_eq!(
            sample(&s, Some(&unsampled), SpanKind::Internal, &[]),
            SamplingDecision::Drop
        );
        assert_eq!(
            sample(&s, Some(&sampled_parent()), SpanKind::Internal, &[]),
            SamplingDecision::RecordAndSample
        );
    }

    #[test]
    fn a_ratio_rule_applies_to_traces_that_start_at_the_route_only() {
        let s = from_vars(&Vars::from_pairs([(
            "TRACES_ROUTE_RULES",
            "GET /api/orders/{id}=0",
        )]))
        .unwrap();
        let get = route("GET", "/api/orders/{id}");
        assert_eq!(
            sample(&s, None, SpanKind::Server, &get),
            SamplingDecision::Drop
        );
        assert_eq!(
            sample(&s, Some(&sampled_parent()), SpanKind::Server, &get),
            SamplingDecision::RecordAndSample,
            "a sampled parent's decision stands, or the trace would be half-sampled"
        );
        assert_eq!(
            sample(
                &s,
                None,
                SpanKind::Server,
                &route("POST", "/api/orders/{id}")
            ),
            SamplingDecision::RecordAndSample,
            "the rule names GET only"
        );
    }

    #[test]
    fn a_user_rule_overrides_a_default_rule() {
        let s = from_vars(&Vars::from_pairs([("TRACES_ROUTE_RULES", "/healthz=1")])).unwrap();
        assert_eq!(
            sample(&s, None, SpanKind::Server, &route("GET", "/healthz")),
            SamplingDecision::RecordAndSample
        );
    }

    #[test]
    fn prefix_rules_match_any_suffix() {
        let s = from_vars(&Vars::from_pairs([(
            "TRACES_ROUTE_RULES",
            "/internal/*=off",
        )]))
        .unwrap();
        assert_eq!(
            sample(
                &s,
                None,
                SpanKind::Server,
                &route("GET", "/internal/debug/vars")
            ),
            SamplingDecision::Drop
        );
    }

    #[test]
    fn rules_only_look_at_server_spans() {
        let s = from_vars(&Vars::from_pairs([])).unwrap();
        assert_eq!(
            sample(&s, None, SpanKind::Client, &route("GET", "/healthz")),
            SamplingDecision::RecordAndSample
        );
    }

    #[test]
    fn the_standard_sampler_variables_are_parsed_strictly() {
        let ok = |name: &str, arg: &str| {
            from_vars(&Vars::from_pairs([
                ("OTEL_TRACES_SAMPLER", name),
                ("OTEL_TRACES_SAMPLER_ARG", arg),
            ]))
        };
        assert!(ok("parentbased_traceidratio", "0.01").is_ok());
        assert!(
            ok("traceidratio", "").is_ok(),
            "a missing ratio defaults to 1"
        );
        assert!(matches!(
            ok("parentbased_traceidratio", "1.5"),
            Err(ConfigError::Invalid {
                name: "OTEL_TRACES_SAMPLER_ARG",
                ..
            })
        ));
        assert!(matches!(
            ok("sometimes", ""),
            Err(ConfigError::Invalid {
                name: "OTEL_TRACES_SAMPLER",
                ..
            })
        ));
    }

    #[test]
    fn always_off_drops_root_spans() {
        let s = from_vars(&Vars::from_pairs([("OTEL_TRACES_SAMPLER", "always_off")])).unwrap();
        assert_eq!(
            sample(&s, None, SpanKind::Server, &route("POST", "/api/orders")),
            SamplingDecision::Drop
        );
    }

    #[test]
    fn malformed_rules_are_rejected_with_the_rule() {
        for bad in ["/healthz", "healthz=off", "/x=2", "/x=sometimes"] {
            assert!(parse_rules(bad).is_err(), "{bad}");
        }
    }
}
