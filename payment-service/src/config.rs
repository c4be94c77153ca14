//! The payment service's settings, from the environment (see the README for each variable).

use std::{net::SocketAddr, time::Duration};

use common::{
    config::{ConfigError, Secret, Vars},
    db::PoolSettings,
    http_server::{ConnectionLimits, HttpLimits},
    signing::SigningKey,
};
use sqlx::postgres::PgConnectOptions;

#[derive(Clone, Debug)]
pub struct Config {
    pub listen_addr: SocketAddr,
    /// Holds the password: a [`Secret`], so `{config:?}` cannot print it.
    pub database: Secret<PgConnectOptions>,
    pub pool: PoolSettings,
    pub processor: ProcessorSettings,
    /// Verifies that the order service asked for each charge (`CHARGE_SIGNING_KEY`, shared with
    /// the order service); see `common::signing`.
    pub charge_signing_key: Secret<SigningKey>,
    /// Request size limits.
    pub http: HttpLimits,
    /// Header read timeout and connection bound of the server.
    pub server: ConnectionLimits,
}

/// How the simulated card processor behaves.
#[derive(Clone, Copy, Debug)]
pub struct ProcessorSettings {
    /// Time a charge takes: the bottleneck the waterfall is meant to show.
    pub latency: Duration,
    /// Fraction of charges the processor declines at random, for demos of red traces.
    pub failure_rate: f64,
}

impl Config {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let failure_rate: f64 = vars.or("PROCESSOR_FAILURE_RATE", 0.0)?;
        if !(0.0..=1.0).contains(&failure_rate) {
            return Err(ConfigError::invalid(
                "PROCESSOR_FAILURE_RATE",
                &failure_rate.to_string(),
                "expected a fraction between 0 and 1",
            ));
        }
        Ok(Config {
            listen_addr: vars.or("LISTEN_ADDR", SocketAddr::from(([0, 0, 0, 0], 8082)))?,
            database: vars.required_secret(
                "DATABASE_URL",
                "e.g. postgres://postgres@localhost:5432/orders",
            )?,
            pool: PoolSettings::from_vars(vars)?,
            processor: ProcessorSettings {
                latency: vars.millis_or("PROCESSOR_LATENCY_MS", Duration::from_millis(150))?,
                failure_rate,
            },
            charge_signing_key: vars.required_secret(
                "CHARGE_SIGNING_KEY",
                "at least 32 bytes shared with the order service, e.g. from `openssl rand -hex 32`",
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
    fn defaults_apply_when_only_the_database_and_the_key_are_given() {
        let config = Config::from_vars(&Vars::from_pairs([
            ("DATABASE_URL", "postgres://postgres@db:5432/orders"),
            ("CHARGE_SIGNING_KEY", KEY),
        ]))
        .unwrap();
        assert_eq!(config.listen_addr.port(), 8082);
        assert_eq!(config.processor.latency, Duration::from_millis(150));
        assert_eq!(
            config.database.expose_secret().get_database(),
            Some("orders")
        );
    }

    #[test]
    fn the_charge_signing_key_is_required() {
        let err = Config::from_vars(&Vars::from_pairs([(
            "DATABASE_URL",
            "postgres://postgres@db:5432/orders",
        )]))
        .unwrap_err();
        assert!(
            err.to_string().starts_with("CHARGE_SIGNING_KEY is not set"),
            "{err}"
        );
    }

    #[test]
    fn the_printed_config_shows_neither_the_database_password_nor_the_signing_key() {
        let config = Config::from_vars(&Vars::from_pairs([
            ("DATABASE_URL", "postgres://payments:hunter2@db:5432/orders"),
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
    }

    #[test]
    fn a_missing_database_url_is_named() {
        let err = Config::from_vars(&Vars::from_pairs([])).unwrap_err();
        assert!(
            err.to_string().starts_with("DATABASE_URL is not set"),
            "{err}"
        );
    }

    #[test]
    fn a_failure_rate_outside_zero_to_one_is_rejected() {
        let err = Config::from_vars(&Vars::from_pairs([
            ("DATABASE_URL", "postgres://db/orders"),
            ("CHARGE_SIGNING_KEY", KEY),
            ("PROCESSOR_FAILURE_RATE", "1.5"),
        ]))
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                name: "PROCESSOR_FAILURE_RATE",
                ..
            }
        ));
    }
}
