//! Infrastructure shared by the three services, and nothing of any one service's business.
//!
//! - [`telemetry`]: OTLP export, sampling, correlated log lines, and recording failures on spans.
//! - [`propagation`]: W3C Trace Context and W3C Baggage, to the letter of the specifications.
//! - [`http_server`]: what every service has around its routes (the middleware that opens
//!   each request's SERVER span, size limits, `/healthz`, `/metrics`), and the server itself.
//! - [`http_client`]: the reqwest client whose middleware opens CLIENT spans and injects context.
//! - [`db`]: the Postgres pool, the migrations, and one CLIENT span per SQL statement.
//! - [`api`]: the JSON bodies that cross service boundaries.
//! - [`error`] and [`extract`]: one JSON error shape, with the trace id, for every failure,
//!   and the one classification of a failure ([`error::Classify`]) that services map into.
//! - [`signing`]: the HMAC with which the order service vouches for each charge it asks for.
//! - [`config`] and [`shutdown`]: reading the environment, and stopping cleanly.
//! - [`healthcheck`]: `<binary> healthcheck`, for container health checks.

pub mod api;
pub mod config;
pub mod db;
pub mod error;
pub mod extract;
pub mod healthcheck;
pub mod http_client;
pub mod http_server;
pub mod propagation;
pub mod shutdown;
pub mod signing;
pub mod telemetry;
