//! The variables more than one service reads, declared once, and the parts of a `Config` they
//! make: [`ServiceConfig`] (every service) and [`BackendConfig`] (the order and payment
//! services).
//!
//! The groups ([`SERVICE`], [`BACKEND`], [`RESPONSE_LIMIT`]) are what a service's `VARS`
//! lists; each variable is read where its setting is built (`HttpLimits::from_vars`,
//! `PoolSettings::from_vars`, `TelemetrySettings::from_vars`, ...), by passing its `Var`.

use std::net::SocketAddr;

use sqlx::postgres::PgConnectOptions;

use super::{ConfigError, Secret, Unset, Var, Vars};
use crate::{
    db::PoolSettings,
    http_server::{ConnectionLimits, HttpLimits},
    signing::SigningKey,
    telemetry::TelemetrySettings,
};

/// The name of every service's [`listen_addr`] variable.
pub const LISTEN_ADDR: &str = "LISTEN_ADDR";

/// `LISTEN_ADDR`, with a service's own default address (and so its own port).
pub const fn listen_addr(default: &'static str) -> Var {
    Var {
        name: LISTEN_ADDR,
        unset: Unset::Default(default),
        meaning: "address to listen on",
    }
}

/// The port of a `LISTEN_ADDR`'s declared default, for what must know where a service listens
/// without reading its environment (`cargo xtask run`, the health check).
///
/// # Panics
/// When the default is not an address: the services' tests build their `Config` from it.
pub fn default_port(listen_addr: &Var) -> u16 {
    match listen_addr.unset {
        Unset::Default(text) => text.parse::<SocketAddr>().map_or_else(
            |e| {
                panic!(
                    "the default {} {text:?} is not an address: {e}",
                    listen_addr.name
                )
            },
            |addr| addr.port(),
        ),
        other => panic!(
            "{} declares no default address: {other:?}",
            listen_addr.name
        ),
    }
}

// The HTTP server (`common::http_server`).

pub const REQUEST_BODY_LIMIT_BYTES: Var = Var {
    name: "REQUEST_BODY_LIMIT_BYTES",
    unset: Unset::Default("16384"),
    meaning: "larger request bodies get `413`",
};
pub const REQUEST_HEADER_LIMIT_BYTES: Var = Var {
    name: "REQUEST_HEADER_LIMIT_BYTES",
    // Room for the W3C limits: 8 KiB of baggage, 512+ bytes of tracestate.
    unset: Unset::Default("32768"),
    meaning: "larger header sections get `431` (room for W3C baggage's 8 KiB)",
};
pub const HTTP_HEADER_READ_TIMEOUT_MS: Var = Var {
    name: "HTTP_HEADER_READ_TIMEOUT_MS",
    unset: Unset::Default("5000"),
    meaning: "time a client has to send a request's headers, counted from when the connection \
              opens or the previous answer was sent; past it the connection is closed. hyper \
              restarts this one timer when a keep-alive connection goes idle, so it is also the \
              idle keep-alive timeout",
};
pub const HTTP_MAX_CONNECTIONS: Var = Var {
    name: "HTTP_MAX_CONNECTIONS",
    unset: Unset::Default("1024"),
    meaning: "connections served at once; past it new connections are not accepted but wait in \
              the kernel's listen backlog (neither served nor refused) until one closes",
};

// Telemetry (`common::telemetry`). The `OTEL_*` names and defaults are the OpenTelemetry
// specification's.

pub const RUST_LOG: Var = Var {
    name: "RUST_LOG",
    unset: Unset::Default("info,sqlx=warn"),
    meaning: "log level and filters \
              ([`EnvFilter` syntax](https://docs.rs/tracing-subscriber/latest/tracing_subscriber/filter/struct.EnvFilter.html)); \
              spans are not affected",
};
pub const LOG_FORMAT: Var = Var {
    name: "LOG_FORMAT",
    unset: Unset::Computed("`text` on a terminal, else `json`"),
    meaning: "`json` (one object per line) or `text`",
};
pub const PROPAGATION: Var = Var {
    name: "PROPAGATION",
    unset: Unset::Default("on"),
    meaning: "`off`: the service neither reads nor sends trace context and baggage, so its \
              spans start a new trace",
};
pub const OTEL_SERVICE_NAME: Var = Var {
    name: "OTEL_SERVICE_NAME",
    unset: Unset::Computed("`service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else the binary's name"),
    meaning: "`service.name` of the exported spans",
};
pub const OTEL_RESOURCE_ATTRIBUTES: Var = Var {
    name: "OTEL_RESOURCE_ATTRIBUTES",
    unset: Unset::Empty,
    meaning: "extra resource attributes, `key=value,key=value`",
};
pub const OTEL_EXPORTER_OTLP_ENDPOINT: Var = Var {
    name: "OTEL_EXPORTER_OTLP_ENDPOINT",
    unset: Unset::Computed("`http://localhost:4318` (http) / `http://localhost:4317` (grpc)"),
    meaning: "where spans go, an `http://` URL (`/v1/traces` is appended for HTTP)",
};
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: Var = Var {
    name: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    unset: Unset::Empty,
    meaning: "the full trace endpoint, used as is; wins over `OTEL_EXPORTER_OTLP_ENDPOINT`",
};
pub const OTEL_EXPORTER_OTLP_HEADERS: Var = Var {
    name: "OTEL_EXPORTER_OTLP_HEADERS",
    unset: Unset::Empty,
    meaning: "extra headers on every export, `key=value,key=value`, values percent-encoded",
};
pub const OTEL_EXPORTER_OTLP_PROTOCOL: Var = Var {
    name: "OTEL_EXPORTER_OTLP_PROTOCOL",
    unset: Unset::Default("http/protobuf"),
    meaning: "`grpc` or `http/protobuf`",
};
pub const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: Var = Var {
    name: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    unset: Unset::Computed("`OTEL_EXPORTER_OTLP_PROTOCOL`"),
    meaning: "the same, for traces only; wins over `OTEL_EXPORTER_OTLP_PROTOCOL`",
};
pub const OTEL_EXPORTER_OTLP_TIMEOUT: Var = Var {
    name: "OTEL_EXPORTER_OTLP_TIMEOUT",
    unset: Unset::Default("10000"),
    meaning: "how long one export may take (ms); the smaller of this and \
              `OTEL_BSP_EXPORT_TIMEOUT` bounds it",
};
pub const OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: Var = Var {
    name: "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    unset: Unset::Computed("`OTEL_EXPORTER_OTLP_TIMEOUT`"),
    meaning: "the same, for traces only; wins over `OTEL_EXPORTER_OTLP_TIMEOUT`",
};
pub const OTEL_TRACES_EXPORTER: Var = Var {
    name: "OTEL_TRACES_EXPORTER",
    unset: Unset::Default("otlp"),
    meaning: "`none`: sample and propagate, but export nothing",
};
pub const OTEL_SDK_DISABLED: Var = Var {
    name: "OTEL_SDK_DISABLED",
    unset: Unset::Default("false"),
    meaning: "`true`: no spans at all; context still passes through unchanged",
};
pub const OTEL_TRACES_SAMPLER: Var = Var {
    name: "OTEL_TRACES_SAMPLER",
    unset: Unset::Default("parentbased_always_on"),
    meaning: "`always_on`, `always_off`, `traceidratio`, `parentbased_always_on`, \
              `parentbased_always_off` or `parentbased_traceidratio`",
};
pub const OTEL_TRACES_SAMPLER_ARG: Var = Var {
    name: "OTEL_TRACES_SAMPLER_ARG",
    unset: Unset::Default("1.0"),
    meaning: "the ratio of the `traceidratio` samplers, between 0 and 1",
};
pub const TRACES_ROUTE_RULES: Var = Var {
    name: "TRACES_ROUTE_RULES",
    unset: Unset::Empty,
    meaning: "per-route sampling rules, e.g. `GET /api/orders/{id}=0.1,/internal/*=off` (see \
              below); the probes and `/metrics` are never traced unless a rule says otherwise",
};
pub const OTEL_BSP_SCHEDULE_DELAY: Var = Var {
    name: "OTEL_BSP_SCHEDULE_DELAY",
    unset: Unset::Default("5000"),
    meaning: "the batch span processor's export interval (ms)",
};
pub const OTEL_BSP_MAX_QUEUE_SIZE: Var = Var {
    name: "OTEL_BSP_MAX_QUEUE_SIZE",
    unset: Unset::Default("2048"),
    meaning: "spans waiting for export; more are dropped, and counted",
};
pub const OTEL_BSP_MAX_EXPORT_BATCH_SIZE: Var = Var {
    name: "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    unset: Unset::Default("512"),
    meaning: "spans in one export (at most the queue size)",
};
pub const OTEL_BSP_EXPORT_TIMEOUT: Var = Var {
    name: "OTEL_BSP_EXPORT_TIMEOUT",
    unset: Unset::Default("30000"),
    meaning: "how long one export may take (ms); the smaller of this and the OTLP timeout \
              bounds it",
};

// The database (`common::db`) and the charge signing key (`common::signing`).

pub const DATABASE_URL: Var = Var {
    name: "DATABASE_URL",
    unset: Unset::Required {
        example: "postgres://orders:secret@postgres:5432/orders",
    },
    meaning: "the database (a secret: never echoed in errors, logs or a printed `Config`)",
};
pub const DATABASE_MAX_CONNECTIONS: Var = Var {
    name: "DATABASE_MAX_CONNECTIONS",
    unset: Unset::Default("10"),
    meaning: "pool size",
};
pub const DATABASE_ACQUIRE_TIMEOUT_MS: Var = Var {
    name: "DATABASE_ACQUIRE_TIMEOUT_MS",
    unset: Unset::Default("3000"),
    meaning: "how long a query waits for a free connection, then `503`",
};
pub const DATABASE_STATEMENT_TIMEOUT_MS: Var = Var {
    name: "DATABASE_STATEMENT_TIMEOUT_MS",
    unset: Unset::Default("5000"),
    meaning: "Postgres cancels a longer statement (SQLSTATE 57014), then `503`",
};
pub const DATABASE_PING_IDLE_MS: Var = Var {
    name: "DATABASE_PING_IDLE_MS",
    unset: Unset::Default("500"),
    meaning: "a pooled connection idle this long is pinged before a statement gets it; one used \
              more recently is handed out as it is, and one whose statements completed waits \
              this long for the next session without being pinged on its way back",
};
pub const DATABASE_RECHECK_MS: Var = Var {
    name: "DATABASE_RECHECK_MS",
    unset: Unset::Default("60000"),
    meaning: "a connection in steady use still goes back through sqlx's pool this often: its \
              ping on the way back, and its lifetime limit",
};
pub const CHARGE_SIGNING_KEY: Var = Var {
    name: "CHARGE_SIGNING_KEY",
    unset: Unset::Required {
        example: "$(openssl rand -hex 32)",
    },
    meaning: "the key the order service signs every charge with, and the payment service checks \
              it with: at least 32 bytes, the same value in both; a charge not signed with it is \
              refused. A secret, never printed",
};

// A service that calls another (`common::http_client`).

pub const UPSTREAM_RESPONSE_LIMIT_BYTES: Var = Var {
    name: "UPSTREAM_RESPONSE_LIMIT_BYTES",
    unset: Unset::Default("1048576"),
    meaning: "the most of one answer of the next service read into memory; a longer one (by \
              `Content-Length` or counted as it streams) is a `502`",
};

/// What every service reads (besides its own `LISTEN_ADDR`): [`ServiceConfig`].
pub const SERVICE: &[Var] = &[
    REQUEST_BODY_LIMIT_BYTES,
    REQUEST_HEADER_LIMIT_BYTES,
    HTTP_HEADER_READ_TIMEOUT_MS,
    HTTP_MAX_CONNECTIONS,
    RUST_LOG,
    LOG_FORMAT,
    PROPAGATION,
    OTEL_SERVICE_NAME,
    OTEL_RESOURCE_ATTRIBUTES,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_EXPORTER_OTLP_TIMEOUT,
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
    OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_TRACES_EXPORTER,
    OTEL_SDK_DISABLED,
    OTEL_TRACES_SAMPLER,
    OTEL_TRACES_SAMPLER_ARG,
    TRACES_ROUTE_RULES,
    OTEL_BSP_SCHEDULE_DELAY,
    OTEL_BSP_MAX_QUEUE_SIZE,
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    OTEL_BSP_EXPORT_TIMEOUT,
];

/// What the order and payment services read alike: [`BackendConfig`].
pub const BACKEND: &[Var] = &[
    DATABASE_URL,
    DATABASE_MAX_CONNECTIONS,
    DATABASE_ACQUIRE_TIMEOUT_MS,
    DATABASE_STATEMENT_TIMEOUT_MS,
    DATABASE_PING_IDLE_MS,
    DATABASE_RECHECK_MS,
    CHARGE_SIGNING_KEY,
];

/// What a service that calls another reads: `ResponseLimit::from_vars`.
pub const RESPONSE_LIMIT: &[Var] = &[UPSTREAM_RESPONSE_LIMIT_BYTES];

/// The head of every service's `Config`: where its server listens, what a request and the
/// clients may take of it, and its telemetry.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub listen_addr: SocketAddr,
    /// Request size limits.
    pub http: HttpLimits,
    /// Header read timeout and connection bound of the server.
    pub connections: ConnectionLimits,
    /// Handed to `telemetry::init` by `main`.
    pub telemetry: TelemetrySettings,
}

impl ServiceConfig {
    /// Reads [`SERVICE`] and the service's own `listen_addr` variable; `name` is the default
    /// `service.name` (the binary's).
    pub fn from_vars(vars: &Vars, name: &str, listen_addr: &Var) -> Result<Self, ConfigError> {
        Ok(ServiceConfig {
            listen_addr: vars.parse(listen_addr)?,
            http: HttpLimits::from_vars(vars)?,
            connections: ConnectionLimits::from_vars(vars)?,
            telemetry: TelemetrySettings::from_vars(vars, name)?,
        })
    }
}

/// What the order and payment services' `Config`s hold alike: the database, and the key that
/// the one signs charges with and the other checks them with.
#[derive(Clone, Debug)]
pub struct BackendConfig {
    /// Holds the password: a [`Secret`], so `{config:?}` cannot print it.
    pub database: Secret<PgConnectOptions>,
    pub pool: PoolSettings,
    /// See `common::signing`.
    pub charge_signing_key: Secret<SigningKey>,
}

impl BackendConfig {
    /// Reads [`BACKEND`].
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(BackendConfig {
            database: vars.secret(&DATABASE_URL)?,
            pool: PoolSettings::from_vars(vars)?,
            charge_signing_key: vars.secret(&CHARGE_SIGNING_KEY)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "a charge signing key of at least 32 bytes";

    #[test]
    fn the_backend_needs_the_database_and_a_key_of_at_least_32_bytes() {
        let backend = |pairs: &[(&'static str, &'static str)]| {
            BackendConfig::from_vars(&Vars::from_pairs(pairs.iter().copied()))
        };
        let missing = backend(&[("CHARGE_SIGNING_KEY", KEY)]).unwrap_err();
        assert!(
            missing.to_string().starts_with("DATABASE_URL is not set"),
            "{missing}"
        );
        let missing = backend(&[("DATABASE_URL", "postgres://db/orders")]).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("CHARGE_SIGNING_KEY is not set"),
            "{missing}"
        );
        let short = backend(&[
            ("DATABASE_URL", "postgres://db/orders"),
            ("CHARGE_SIGNING_KEY", "hunter2"),
        ])
        .unwrap_err()
        .to_string();
        assert!(short.contains("at least 32 bytes"), "{short}");
        assert!(!short.contains("hunter2"), "the key is not echoed: {short}");
    }

    #[test]
    fn the_printed_backend_shows_neither_the_database_password_nor_the_signing_key() {
        let backend = BackendConfig::from_vars(&Vars::from_pairs([
            ("DATABASE_URL", "postgres://orders:hunter2@db:5432/orders"),
            ("CHARGE_SIGNING_KEY", KEY),
        ]))
        .unwrap();
        for printed in [format!("{backend:?}"), format!("{backend:#?}")] {
            assert!(
                !printed.contains("hunter2"),
                "the password leaks: {printed}"
            );
            assert!(!printed.contains(KEY), "the key leaks: {printed}");
            assert!(printed.contains("[redacted]"), "{printed}");
        }
        assert_eq!(
            backend.database.expose_secret().get_database(),
            Some("orders")
        );
        assert_eq!(backend.pool, PoolSettings::default());
    }

    #[test]
    fn every_declared_default_parses_and_no_meaning_breaks_a_table() {
        let vars = Vars::from_pairs([
            ("DATABASE_URL", "postgres://db/orders"),
            ("CHARGE_SIGNING_KEY", KEY),
        ]);
        let service = ServiceConfig::from_vars(&vars, "test", &listen_addr("0.0.0.0:1")).unwrap();
        assert_eq!(service.listen_addr.port(), 1);
        BackendConfig::from_vars(&vars).unwrap();
        crate::http_client::ResponseLimit::from_vars(&vars).unwrap();
        for var in SERVICE.iter().chain(BACKEND).chain(RESPONSE_LIMIT) {
            assert!(
                !var.meaning.contains('|'),
                "{}: a | ends a table cell",
                var.name
            );
        }
    }

    #[test]
    fn the_default_port_is_the_declared_addresses() {
        assert_eq!(default_port(&listen_addr("0.0.0.0:8081")), 8081);
    }
}
