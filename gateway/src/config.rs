//! The gateway's settings, from the environment (see the README for each variable).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use common::{
    config::{ConfigError, Vars},
    http_client::ResponseLimit,
    http_server::{BaggagePolicy, HttpLimits, InboundPolicy},
    propagation::BaggageLimits,
};
use reqwest::Url;

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
    /// What the gateway accepts from outside callers' propagation headers.
    pub inbound: Arc<InboundPolicy>,
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
}
