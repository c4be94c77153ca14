//! The order service's settings: [`VARS`] declares every variable it reads,
//! [`Config::from_vars`] reads them (the README's tables are made from the list:
//! `cargo xtask docs`).

use std::time::Duration;

use common::{
    config::{
        ConfigError, Unset, Var, Vars,
        shared::{self, BackendConfig, ServiceConfig},
    },
    http_client::ResponseLimit,
};
use reqwest::Url;

pub const LISTEN_ADDR: Var = shared::listen_addr("0.0.0.0:8081");
pub const PAYMENT_SERVICE_URL: Var = Var {
    name: "PAYMENT_SERVICE_URL",
    unset: Unset::Required {
        example: "http://payment-service:8082",
    },
    meaning: "the payment service's base URL",
};
pub const PAYMENT_TIMEOUT_MS: Var = Var {
    name: "PAYMENT_TIMEOUT_MS",
    unset: Unset::Default("2000"),
    meaning: "bound on each call to the payment service",
};

/// Every variable the order service reads: its own, then the groups it shares.
pub const VARS: &[&[Var]] = &[
    &[LISTEN_ADDR, PAYMENT_SERVICE_URL, PAYMENT_TIMEOUT_MS],
    shared::RESPONSE_LIMIT,
    shared::BACKEND,
    shared::SERVICE,
];

#[derive(Clone, Debug)]
pub struct Config {
    /// Listen address, request and connection limits, telemetry: as every service.
    pub service: ServiceConfig,
    /// The database and the charge signing key: as the payment service.
    pub backend: BackendConfig,
    pub payment_service_url: Url,
    /// Bound on each call to the payment service.
    pub payment_timeout: Duration,
    /// The most of one payment service answer that is read (`UPSTREAM_RESPONSE_LIMIT_BYTES`).
    pub payment_response_limit: ResponseLimit,
}

impl Config {
    /// Reads [`VARS`].
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Config {
            service: ServiceConfig::from_vars(vars, env!("CARGO_PKG_NAME"), &LISTEN_ADDR)?,
            backend: BackendConfig::from_vars(vars)?,
            payment_service_url: vars.service_url(&PAYMENT_SERVICE_URL)?,
            payment_timeout: vars.millis(&PAYMENT_TIMEOUT_MS)?,
            payment_response_limit: ResponseLimit::from_vars(vars)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "a charge signing key of at least 32 bytes";

    #[test]
    fn the_payment_service_url_is_required() {
        let err = Config::from_vars(&Vars::from_pairs([
            ("DATABASE_URL", "postgres://db/orders"),
            ("CHARGE_SIGNING_KEY", KEY),
        ]))
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("PAYMENT_SERVICE_URL is not set"),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_timeout_is_named() {
        let err = Config::from_vars(&Vars::from_pairs([
            ("DATABASE_URL", "postgres://db/orders"),
            ("PAYMENT_SERVICE_URL", "http://payment-service:8082"),
            ("CHARGE_SIGNING_KEY", KEY),
            ("PAYMENT_TIMEOUT_MS", "soon"),
        ]))
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                name: "PAYMENT_TIMEOUT_MS",
                ..
            }
        ));
    }

    #[test]
    fn defaults_apply() {
        let config = Config::from_vars(&Vars::from_pairs([
            ("DATABASE_URL", "postgres://db/orders"),
            ("PAYMENT_SERVICE_URL", "http://payment-service:8082"),
            ("CHARGE_SIGNING_KEY", KEY),
        ]))
        .unwrap();
        assert_eq!(config.service.listen_addr.port(), 8081);
        assert_eq!(config.service.telemetry.service_name, "order-service");
        assert_eq!(config.payment_timeout, Duration::from_secs(2));
        assert_eq!(config.payment_response_limit, ResponseLimit(1024 * 1024));
    }
}
