//! The payment service's settings: [`VARS`] declares every variable it reads,
//! [`Config::from_vars`] reads them (the README's tables are made from the list:
//! `cargo xtask docs`).

use std::time::Duration;

use common::config::{
    ConfigError, Unset, Var, Vars,
    shared::{self, BackendConfig, ServiceConfig},
};

pub const LISTEN_ADDR: Var = shared::listen_addr("0.0.0.0:8082");
pub const PROCESSOR_LATENCY_MS: Var = Var {
    name: "PROCESSOR_LATENCY_MS",
    unset: Unset::Default("150"),
    meaning: "how long the simulated card processor takes",
};
pub const PROCESSOR_FAILURE_RATE: Var = Var {
    name: "PROCESSOR_FAILURE_RATE",
    unset: Unset::Default("0"),
    meaning: "fraction of charges the processor declines, for demos of red traces",
};

/// Every variable the payment service reads: its own, then the groups it shares.
pub const VARS: &[&[Var]] = &[
    &[LISTEN_ADDR, PROCESSOR_LATENCY_MS, PROCESSOR_FAILURE_RATE],
    shared::BACKEND,
    shared::SERVICE,
];

#[derive(Clone, Debug)]
pub struct Config {
    /// Listen address, request and connection limits, telemetry: as every service.
    pub service: ServiceConfig,
    /// The database and the charge signing key: as the order service.
    pub backend: BackendConfig,
    pub processor: ProcessorSettings,
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
    /// Reads [`VARS`].
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Config {
            service: ServiceConfig::from_vars(vars, env!("CARGO_PKG_NAME"), &LISTEN_ADDR)?,
            backend: BackendConfig::from_vars(vars)?,
            processor: ProcessorSettings {
                latency: vars.millis(&PROCESSOR_LATENCY_MS)?,
                failure_rate: vars.read(&PROCESSOR_FAILURE_RATE, |raw| {
                    match raw.parse::<f64>() {
                        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
                        _ => Err("expected a fraction between 0 and 1".to_owned()),
                    }
                })?,
            },
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
        assert_eq!(config.service.listen_addr.port(), 8082);
        assert_eq!(config.service.telemetry.service_name, "payment-service");
        assert_eq!(config.processor.latency, Duration::from_millis(150));
        assert!(config.processor.failure_rate.abs() < f64::EPSILON);
        assert_eq!(
            config.backend.database.expose_secret().get_database(),
            Some("orders")
        );
    }

    #[test]
    fn a_failure_rate_outside_zero_to_one_is_rejected() {
        for rate in ["1.5", "-0.1", "often"] {
            let err = Config::from_vars(&Vars::from_pairs([
                ("DATABASE_URL", "postgres://db/orders"),
                ("CHARGE_SIGNING_KEY", KEY),
                ("PROCESSOR_FAILURE_RATE", rate),
            ]))
            .unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::Invalid {
                        name: "PROCESSOR_FAILURE_RATE",
                        ..
                    }
                ),
                "{rate}: {err}"
            );
        }
    }
}
