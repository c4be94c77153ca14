//! The order service's settings, from the environment (see the README for each variable).

use std::{net::SocketAddr, time::Duration};

use common::{
    config::{ConfigError, Vars},
    db::PoolSettings,
    http_server::{ConnectionLimits, HttpLimits},
};
use reqwest::Url;
use sqlx::postgres::PgConnectOptions;

#[derive(Clone, Debug)]
pub struct Config {
    pub listen_addr: SocketAddr,
    pub database: PgConnectOptions,
    pub pool: PoolSettings,
    pub payment_service_url: Url,
    /// Bound on each call to the payment service.
    pub payment_timeout: Duration,
    /// Request size limits.
    pub http: HttpLimits,
    /// Header read timeout and connection bound of the server.
    pub server: ConnectionLimits,
}

impl Config {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Config {
            listen_addr: vars.or("LISTEN_ADDR", SocketAddr::from(([0, 0, 0, 0], 8081)))?,
            database: vars.required_secret(
                "DATABASE_URL",
                "e.g. postgres://postgres@localhost:5432/orders",
            )?,
            pool: PoolSettings::from_vars(vars)?,
            payment_service_url: vars
                .service_url("PAYMENT_SERVICE_URL", "e.g. http://payment-service:8082")?,
            payment_timeout: vars.millis_or("PAYMENT_TIMEOUT_MS", Duration::from_millis(2000))?,
            http: HttpLimits::from_vars(vars)?,
            server: ConnectionLimits::from_vars(vars)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payment_service_url_is_required() {
        let err = Config::from_vars(&Vars::from_pairs([(
            "DATABASE_URL",
            "postgres://db/orders",
        )]))
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
        ]))
        .unwrap();
        assert_eq!(config.listen_addr.port(), 8081);
        assert_eq!(config.payment_timeout, Duration::from_secs(2));
    }
}
