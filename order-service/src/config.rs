//! The order service's settings, from the environment (see the README for each variable).

use std::{net::SocketAddr, time::Duration};

use common::{
    config::{ConfigError, Secret, Vars},
    db::PoolSettings,
    http_client::ResponseLimit,
    http_server::{ConnectionLimits, HttpLimits},
    signing::SigningKey,
};
use reqwest::Url;
use sqlx::postgres::PgConnectOptions;

#[derive(Clone, Debug)]
pub struct Config {
    pub listen_addr: SocketAddr,
    /// Holds the password: a [`Secret`], so `{config:?}` cannot print it.
    pub database: Secret<PgConnectOptions>,
    pub pool: PoolSettings,
    pub payment_service_url: Url,
    /// Bound on each call to the payment service.
    pub payment_timeout: Duration,
    /// The most of one payment service answer that is read (`UPSTREAM_RESPONSE_LIMIT_BYTES`).
    pub payment_response_limit: ResponseLimit,
    /// Signs every charge this service asks for (`CHARGE_SIGNING_KEY`, shared with the payment
    /// service); see `common::signing`.
    pub charge_signing_key: Secret<SigningKey>,
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
            payment_response_limit: ResponseLimit::from_vars(vars)?,
            charge_signing_key: vars.required_secret(
                "CHARGE_SIGNING_KEY",
                "at least 32 bytes shared with the payment service, e.g. from `openssl rand -hex 32`",
            )?,
            http: HttpLimits::from_vars(vars)?,
            server: ConnectionLimits::from_vars(vars)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "a charge signing key of at least 32 bytes";

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
        assert_eq!(config.listen_addr.port(), 8081);
        assert_eq!(config.payment_timeout, Duration::from_secs(2));
        assert_eq!(config.payment_response_limit, ResponseLimit(1024 * 1024));
    }

    #[test]
    fn the_charge_signing_key_is_required_and_at_least_32_bytes() {
        let config = |key: Option<&str>| {
            let mut pairs = vec![
                ("DATABASE_URL", "postgres://db/orders"),
                ("PAYMENT_SERVICE_URL", "http://payment-service:8082"),
            ];
            pairs.extend(key.map(|key| ("CHARGE_SIGNING_KEY", key)));
            Config::from_vars(&Vars::from_pairs(pairs))
        };
        let missing = config(None).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("CHARGE_SIGNING_KEY is not set"),
            "{missing}"
        );
        let short = config(Some("hunter2")).unwrap_err().to_string();
        assert!(short.contains("at least 32 bytes"), "{short}");
        assert!(!short.contains("hunter2"), "the key is not echoed: {short}");
        assert!(config(Some(KEY)).is_ok());
    }

    #[test]
    fn the_printed_config_shows_neither_the_database_password_nor_the_signing_key() {
        let config = Config::from_vars(&Vars::from_pairs([
            ("DATABASE_URL", "postgres://orders:hunter2@db:5432/orders"),
            ("PAYMENT_SERVICE_URL", "http://payment-service:8082"),
            ("CHARGE_SIGNING_KEY", KEY),
        ]))
        .unwrap();
        for printed in [format!("{config:?}"), format!("{config:#?}")] {
            assert!(
                !printed.contains("hunter2"),
                "the password leaks: {printed}"
            );
            assert!(!printed.contains(KEY), "the key leaks: {printed}");
            assert!(printed.contains("[redacted]"), "{printed}");
        }
        assert_eq!(
            config.database.expose_secret().get_database(),
            Some("orders")
        );
    }
}
