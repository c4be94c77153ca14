//! The gateway's settings, from the environment (see the README for each variable).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use common::{
    config::{ConfigError, Vars},
    http_client::ResponseLimit,
    http_server::{ConnectionLimits, HttpLimits},
    propagation::{BaggageLimits, BaggagePolicy, InboundPolicy},
};
use reqwest::Url;

use crate::trace_link::TraceUi;

#[derive(Clone, Debug)]
pub struct Config {
    pub listen_addr: SocketAddr,
    pub order_service_url: Url,
    /// Bound on each call to the order service. Longer than the order service's own bound on
    /// the payment call, so the order service can answer (and record the order's state)
    /// before the gateway gives up on it.
    pub order_service_timeout: Duration,
    /// The most of one order service answer that is read (`UPSTREAM_RESPONSE_LIMIT_BYTES`).
    pub order_service_response_limit: ResponseLimit,
    /// Request size limits.
    pub http: HttpLimits,
    /// Header read timeout and connection bound of the server.
    pub server: ConnectionLimits,
    /// What the gateway accepts from outside callers' propagation headers.
    pub inbound: Arc<InboundPolicy>,
    /// `TRACE_UI_URL`: when set, every answer links to its trace there.
    pub trace_ui: Option<TraceUi>,
}

impl Config {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let keys: Vec<String> = vars
            .get("BAGGAGE_ALLOWLIST")
            .unwrap_or_else(|| "session_id".to_owned())
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Config {
            listen_addr: vars.or("LISTEN_ADDR", SocketAddr::from(([0, 0, 0, 0], 8080)))?,
            order_service_url: vars
                .service_url("ORDER_SERVICE_URL", "e.g. http://order-service:8081")?,
            order_service_timeout: vars
                .millis_or("ORDER_SERVICE_TIMEOUT_MS", Duration::from_secs(10))?,
            order_service_response_limit: ResponseLimit::from_vars(vars)?,
            http: HttpLimits::from_vars(vars)?,
            server: ConnectionLimits::from_vars(vars)?,
            trace_ui: trace_ui(vars)?,
            inbound: Arc::new(InboundPolicy {
                continue_remote_trace: vars.bool_or("CONTINUE_EXTERNAL_TRACES", true)?,
                baggage: BaggagePolicy::AllowList {
                    keys: keys.into(),
                    limits: BaggageLimits {
                        max_members: vars.or("BAGGAGE_MAX_MEMBERS", 8)?,
                        max_bytes: vars.or("BAGGAGE_MAX_BYTES", 1024)?,
                    },
                },
            }),
        })
    }
}

/// `TRACE_UI_URL`, if set: an `http` or `https` URL.
fn trace_ui(vars: &Vars) -> Result<Option<TraceUi>, ConfigError> {
    const NAME: &str = "TRACE_UI_URL";
    let Some(value) = vars.get(NAME) else {
        return Ok(None);
    };
    let url = Url::parse(value.trim()).map_err(|e| ConfigError::invalid(NAME, &value, e))?;
    if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
        return Err(ConfigError::invalid(
            NAME,
            &value,
            "expected an http(s) URL without a query, e.g. http://localhost:16686",
        ));
    }
    Ok(Some(TraceUi::new(url)))
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
                assert_eq!(&keys[..], ["session_id", "experiment"])
            }
            other => panic!("expected an allow-list, got {other:?}"),
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
