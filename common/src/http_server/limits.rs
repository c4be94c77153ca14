//! What a request and a client may be, before a handler sees them.
//!
//! [`HttpLimits`] bound one request (its body, 413; its header section, 431, refused by
//! [`limit_header_size`]); [`ConnectionLimits`] bound what clients may hold of the server (how
//! long a request's headers may take, how many connections are open), which
//! [`serve`](super::serve) applies.

use std::time::Duration;

use axum::{
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    config::{ConfigError, Vars, shared},
    error::ApiError,
};

/// Limits on what a request may be, before a handler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// `REQUEST_BODY_LIMIT_BYTES`: larger bodies get 413.
    pub body: usize,
    /// `REQUEST_HEADER_LIMIT_BYTES`: larger header sections get 431.
    pub headers: usize,
}

impl HttpLimits {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(HttpLimits {
            body: vars.parse(&shared::REQUEST_BODY_LIMIT_BYTES)?,
            headers: vars.parse(&shared::REQUEST_HEADER_LIMIT_BYTES)?,
        })
    }
}

/// Refuses requests whose header section is larger than `max` bytes with 431.
pub async fn limit_header_size(State(max): State<usize>, request: Request, next: Next) -> Response {
    let size: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + request
            .uri()
            .path_and_query()
            .map_or(0, |pq| pq.as_str().len());
    if size > max {
        return ApiError::client(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("the request's headers are larger than {max} bytes"),
        )
        .into_response();
    }
    next.run(request).await
}

/// What one client may hold of the server: how long it may take to send a request's
/// headers, and how many connections all clients together may have open.
///
/// Without these, a client that sends its headers one byte a second keeps its connection (and
/// the task serving it) forever, and enough such clients exhaust the process's file
/// descriptors: the "slowloris" attack. axum's own `serve` builds hyper connections without a
/// timer, so no header timeout is in effect there; [`serve`](super::serve) configures hyper itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `HTTP_HEADER_READ_TIMEOUT_MS`: the time a client has to send a request's headers,
    /// counted from the moment the server waits for them: when the connection is accepted, and
    /// on a keep-alive connection when the previous answer has been sent. hyper starts the same
    /// timer for both, so this is also how long an idle keep-alive connection stays open.
    pub header_read_timeout: Duration,
    /// `HTTP_MAX_CONNECTIONS`: connections served at once. Past it the server stops
    /// accepting: new connections wait in the kernel's listen backlog (they are neither served
    /// nor refused) until one closes, and their own connect or read timeouts bound the wait.
    pub max_connections: usize,
}

impl ConnectionLimits {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(ConnectionLimits {
            // hyper reads a zero timeout as "expired at once": no request could be served.
            header_read_timeout: vars.read(&shared::HTTP_HEADER_READ_TIMEOUT_MS, |raw| {
                match crate::config::millis(raw)? {
                    zero if zero.is_zero() => Err("must be at least 1 millisecond".to_owned()),
                    timeout => Ok(timeout),
                }
            })?,
            max_connections: vars.read(&shared::HTTP_MAX_CONNECTIONS, |raw| {
                match crate::config::from_str(raw)? {
                    0 => Err("must be at least 1".to_owned()),
                    max => Ok(max),
                }
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(header_read_timeout_ms: u64, max_connections: usize) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_millis(header_read_timeout_ms),
            max_connections,
        }
    }

    #[test]
    fn connection_limits_come_from_the_environment_and_refuse_zero() {
        let defaults = ConnectionLimits::from_vars(&Vars::from_pairs([])).unwrap();
        assert_eq!(defaults, limits(5_000, 1024));
        let set = ConnectionLimits::from_vars(&Vars::from_pairs([
            ("HTTP_HEADER_READ_TIMEOUT_MS", "250"),
            ("HTTP_MAX_CONNECTIONS", "8"),
        ]))
        .unwrap();
        assert_eq!(set, limits(250, 8));
        for (name, value) in [
            ("HTTP_HEADER_READ_TIMEOUT_MS", "0"),
            ("HTTP_MAX_CONNECTIONS", "0"),
        ] {
            assert!(
                ConnectionLimits::from_vars(&Vars::from_pairs([(name, value)])).is_err(),
                "{name}={value}"
            );
        }
    }
}
