//! The gateway's settings: [`VARS`] declares every variable it reads, [`Config::from_vars`]
//! reads them (the README's tables are made from the list: `cargo xtask docs`).

use std::{sync::Arc, time::Duration};

use common::{
    config::{
        ConfigError, Unset, Var, Vars,
        shared::{self, ServiceConfig},
    },
    http_client::ResponseLimit,
    propagation::{BaggageLimits, BaggagePolicy, InboundPolicy},
};
use reqwest::Url;

use crate::trace_link::TraceUi;

pub const LISTEN_ADDR: Var = shared::listen_addr("0.0.0.0:8080");
pub const ORDER_SERVICE_URL: Var = Var {
    name: "ORDER_SERVICE_URL",
    unset: Unset::Required {
        example: "http://order-service:8081",
    },
    meaning: "the order service's base URL",
};
pub const ORDER_SERVICE_TIMEOUT_MS: Var = Var {
    name: "ORDER_SERVICE_TIMEOUT_MS",
    unset: Unset::Default("10000"),
    meaning: "bound on each call to the order service",
};
pub const TRACE_UI_URL: Var = Var {
    name: "TRACE_UI_URL",
    unset: Unset::Empty,
    meaning: "the trace UI, e.g. `http://localhost:16686` (compose sets it): every answer of a \
              sampled request then links to its trace, as `trace_url` in the JSON body and a \
              `Link: <…/trace/<trace id>>; rel=\"trace\"` header",
};
pub const CONTINUE_EXTERNAL_TRACES: Var = Var {
    name: "CONTINUE_EXTERNAL_TRACES",
    unset: Unset::Default("true"),
    meaning: "continue an outside caller's `traceparent`, or start a new trace linked to it",
};
pub const BAGGAGE_ALLOWLIST: Var = Var {
    name: "BAGGAGE_ALLOWLIST",
    unset: Unset::Default("session_id"),
    meaning: "baggage keys accepted from outside callers (comma-separated); others are dropped",
};
pub const BAGGAGE_MAX_MEMBERS: Var = Var {
    name: "BAGGAGE_MAX_MEMBERS",
    unset: Unset::Default("8"),
    meaning: "the most allowed baggage entries accepted from outside; disallowed entries are \
              dropped first, so they never use up this room",
};
pub const BAGGAGE_MAX_BYTES: Var = Var {
    name: "BAGGAGE_MAX_BYTES",
    unset: Unset::Default("1024"),
    meaning: "the most bytes (of keys and values) of allowed baggage accepted from outside",
};

/// Every variable the gateway reads: its own, then the groups it shares.
pub const VARS: &[&[Var]] = &[
    &[
        LISTEN_ADDR,
        ORDER_SERVICE_URL,
        ORDER_SERVICE_TIMEOUT_MS,
        TRACE_UI_URL,
        CONTINUE_EXTERNAL_TRACES,
        BAGGAGE_ALLOWLIST,
        BAGGAGE_MAX_MEMBERS,
        BAGGAGE_MAX_BYTES,
    ],
    shared::RESPONSE_LIMIT,
    shared::SERVICE,
];

#[derive(Clone, Debug)]
pub struct Config {
    /// Listen address, request and connection limits, telemetry: as every service.
    pub service: ServiceConfig,
    pub order_service_url: Url,
    /// Bound on each call to the order service. Longer than the order service's own bound on
    /// the payment call, so the order service can answer (and record the order's state)
    /// before the gateway gives up on it.
    pub order_service_timeout: Duration,
    /// The most of one order service answer that is read (`UPSTREAM_RESPONSE_LIMIT_BYTES`).
    pub order_service_response_limit: ResponseLimit,
    /// What the gateway accepts from outside callers' propagation headers.
    pub inbound: Arc<InboundPolicy>,
    /// `TRACE_UI_URL`: when set, every answer links to its trace there.
    pub trace_ui: Option<TraceUi>,
}

impl Config {
    /// Reads [`VARS`].
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Config {
            service: ServiceConfig::from_vars(vars, env!("CARGO_PKG_NAME"), &LISTEN_ADDR)?,
            order_service_url: vars.service_url(&ORDER_SERVICE_URL)?,
            order_service_timeout: vars.millis(&ORDER_SERVICE_TIMEOUT_MS)?,
            order_service_response_limit: ResponseLimit::from_vars(vars)?,
            trace_ui: vars.read_optional(&TRACE_UI_URL, trace_ui)?,
            inbound: Arc::new(InboundPolicy {
                continue_remote_trace: vars.flag(&CONTINUE_EXTERNAL_TRACES)?,
                baggage: BaggagePolicy::AllowList {
                    keys: vars
                        .read(&BAGGAGE_ALLOWLIST, |raw| {
                            Ok(raw
                                .split(',')
                                .map(str::trim)
                                .filter(|k| !k.is_empty())
                                .map(str::to_owned)
                                .collect::<Vec<_>>())
                        })?
                        .into(),
                    limits: BaggageLimits {
                        max_members: vars.parse(&BAGGAGE_MAX_MEMBERS)?,
                        max_bytes: vars.parse(&BAGGAGE_MAX_BYTES)?,
                    },
                },
            }),
        })
    }
}

/// `TRACE_UI_URL`: an `http` or `https` URL.
fn trace_ui(raw: &str) -> Result<TraceUi, String> {
    let url = Url::parse(raw).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
        return Err(
            "expected an http(s) URL without a query, e.g. http://localhost:16686".to_owned(),
        );
    }
    Ok(TraceUi::new(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_service_url_is_required() {
        let err = Config::from_vars(&Vars::from_pairs([])).unwrap_err();
        assert!(
            err.to_string().starts_with("ORDER_SERVICE_URL is not set"),
            "{err}"
        );
    }

    #[test]
    fn defaults_apply() {
        let config = Config::from_vars(&Vars::from_pairs([(
            "ORDER_SERVICE_URL",
            "http://order-service:8081",
        )]))
        .unwrap();
        assert_eq!(config.service.listen_addr.port(), 8080);
        assert_eq!(config.order_service_timeout, Duration::from_secs(10));
        assert_eq!(config.service.telemetry.service_name, "gateway");
        assert!(config.inbound.continue_remote_trace);
        assert_eq!(config.trace_ui, None);
    }

    #[test]
    fn the_boundary_policy_comes_from_the_environment() {
        let config = Config::from_vars(&Vars::from_pairs([
            ("ORDER_SERVICE_URL", "http://order-service:8081"),
            ("CONTINUE_EXTERNAL_TRACES", "false"),
            ("BAGGAGE_ALLOWLIST", "session_id, experiment"),
        ]))
        .unwrap();
        assert!(!config.inbound.continue_remote_trace);
        match &config.inbound.baggage {
            BaggagePolicy::AllowList { keys, .. } => {
                assert_eq!(&keys[..], ["session_id", "experiment"]);
            }
            other @ BaggagePolicy::AcceptAll => panic!("expected an allow-list, got {other:?}"),
        }
    }

    #[test]
    fn the_trace_ui_is_optional_and_must_be_a_web_address() {
        let config = |url: &str| {
            Config::from_vars(&Vars::from_pairs([
                ("ORDER_SERVICE_URL", "http://order-service:8081"),
                ("TRACE_UI_URL", url),
            ]))
        };
        assert_eq!(config("").unwrap().trace_ui, None);
        assert_eq!(
            config("http://localhost:16686").unwrap().trace_ui,
            Some(TraceUi::new(Url::parse("http://localhost:16686").unwrap()))
        );
        for bad in [
            "localhost:16686",
            "ftp://jaeger",
            "http://jaeger/?q=1",
            "not a url",
        ] {
            let err = config(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("TRACE_UI_URL has an invalid value"),
                "{bad}: {err}"
            );
        }
    }
}
