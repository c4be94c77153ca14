//! Service configuration from environment variables.
//!
//! Every service reads its settings once, at start-up, through [`Vars`]. A value that is
//! missing or malformed stops start-up with a [`ConfigError`] that names the variable, so a
//! typo in `docker-compose.yml` fails loudly instead of running with a surprising default.
//!
//! `Vars` reads from a lookup function rather than from `std::env` directly, so tests build
//! configurations from a list of pairs without touching (unsafe, process-global) environment
//! variables.
//!
//! A setting that is a secret (a database URL with its password, a signing key) is held in a
//! [`Secret`], whose `Debug` and `Display` print `[redacted]`: every `Config` derives `Debug`,
//! and a `?config` in a log line or a panic message must never print a password.

use std::{
    collections::HashMap,
    fmt::{self, Display},
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use reqwest::Url;

/// A configuration variable that is missing or cannot be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name} is not set ({hint})")]
    Missing {
        name: &'static str,
        hint: &'static str,
    },
    #[error("{name} has an invalid value {value:?}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

impl ConfigError {
    pub fn invalid(name: &'static str, value: &str, reason: impl Display) -> Self {
        ConfigError::Invalid {
            name,
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// A value that must never be printed: a password, a database URL with its password, a key.
///
/// `Debug` and `Display` print `[redacted]`, so a struct that holds one can derive `Debug` and
/// be logged, whole, without leaking it; there is no `Deref`, so reading the value takes a call
/// to [`expose_secret`](Self::expose_secret) that a reviewer can search for. (The `secrecy`
/// crate does the same, and also zeroes the memory on drop; this workspace keeps its secrets
/// for the life of the process, so the wrapper alone is enough, and costs no dependency.)
#[derive(Clone)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The value itself, for the one place that needs it (the pool, the signer).
    pub fn expose_secret(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Looks a variable up by name.
type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Where configuration values come from: the process environment, or a fixed map in tests.
#[derive(Clone)]
pub struct Vars {
    lookup: Arc<Lookup>,
}

impl Vars {
    /// The process environment.
    pub fn from_env() -> Self {
        Vars {
            lookup: Arc::new(|name| std::env::var(name).ok()),
        }
    }

    /// A fixed set of variables, for tests.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let map: HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Vars {
            lookup: Arc::new(move |name| map.get(name).cloned()),
        }
    }

    /// The raw value. An empty value counts as unset, as the OpenTelemetry specification
    /// says for its own variables, so `FOO=` in a compose file means "use the default".
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// A required value, parsed with `FromStr`.
    pub fn required<T>(&self, name: &'static str, hint: &'static str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.get(name) {
            Some(raw) => parse(name, &raw),
            None => Err(ConfigError::Missing { name, hint }),
        }
    }

    /// A required value that holds a secret (a database URL with its password, a key): like
    /// [`required`](Self::required), but the value comes back as a [`Secret`], and an error
    /// names the variable without echoing the value, so the secret does not end up in the
    /// logs.
    pub fn required_secret<T>(
        &self,
        name: &'static str,
        hint: &'static str,
    ) -> Result<Secret<T>, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.required(name, hint).map(Secret).map_err(|e| match e {
            ConfigError::Invalid { name, reason, .. } => ConfigError::Invalid {
                name,
                value: "<redacted>".to_owned(),
                reason,
            },
            missing => missing,
        })
    }

    /// An optional value, parsed with `FromStr`, or `default` when unset.
    pub fn or<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.get(name).map_or(Ok(default), |raw| parse(name, &raw))
    }

    /// A duration written in whole milliseconds (the variable's name ends in `_MS`).
    pub fn millis_or(
        &self,
        name: &'static str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| {
                    ConfigError::invalid(name, &raw, "expected whole milliseconds, e.g. 2500")
                }),
        }
    }

    /// A boolean written `true`/`false` (also `1`/`0`, `on`/`off`, any case).
    pub fn bool_or(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "on" | "yes" => Ok(true),
                "false" | "0" | "off" | "no" => Ok(false),
                _ => Err(ConfigError::invalid(name, &raw, "expected true or false")),
            },
        }
    }

    /// A required base URL of another service: `http://host:port` (https is accepted too,
    /// should a deployment terminate TLS in front of the service).
    pub fn service_url(&self, name: &'static str, hint: &'static str) -> Result<Url, ConfigError> {
        let raw = self.get(name).ok_or(ConfigError::Missing { name, hint })?;
        let url: Url = parse(name, &raw)?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ConfigError::invalid(
                name,
                &raw,
                "expected an http:// URL with a host",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ConfigError::invalid(
                name,
                &raw,
                "a base URL has no query or fragment",
            ));
        }
        Ok(url)
    }
}

fn parse<T>(name: &'static str, raw: &str) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    raw.trim()
        .parse()
        .map_err(|e| ConfigError::invalid(name, raw, e))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn a_missing_required_variable_is_named_in_the_error() {
        let vars = Vars::from_pairs([]);
        let err = vars
            .required::<String>("DATABASE_URL", "e.g. postgres://localhost/orders")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "DATABASE_URL is not set (e.g. postgres://localhost/orders)"
        );
    }

    #[test]
    fn a_malformed_value_is_named_with_the_reason() {
        let vars = Vars::from_pairs([("LISTEN_ADDR", "localhost:80:80")]);
        let err = vars
            .or::<SocketAddr>("LISTEN_ADDR", "0.0.0.0:8080".parse().unwrap())
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("LISTEN_ADDR has an invalid value \"localhost:80:80\": "),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_secret_is_named_but_not_echoed() {
        let vars = Vars::from_pairs([("DATABASE_URL", "postgres://u:hunter2@db:notaport/x")]);
        let err = vars
            .required_secret::<std::net::SocketAddr>("DATABASE_URL", "")
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("DATABASE_URL has an invalid value \"<redacted>\""),
            "{err}"
        );
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn a_secret_prints_as_redacted_however_it_is_formatted() {
        #[derive(Debug)]
        #[allow(dead_code)] // read only through Debug, which is the point
        struct Config {
            database: Secret<String>,
        }
        let config = Config {
            database: Secret::new("postgres://u:hunter2@db/x".to_owned()),
        };
        for printed in [
            format!("{config:?}"),
            format!("{config:#?}"),
            format!("{}", config.database),
        ] {
            assert!(!printed.contains("hunter2"), "{printed}");
            assert!(printed.contains("[redacted]"), "{printed}");
        }
        assert_eq!(config.database.expose_secret(), "postgres://u:hunter2@db/x");
    }

    #[test]
    fn an_empty_value_means_the_default() {
        let vars = Vars::from_pairs([("LISTEN_ADDR", "")]);
        let addr = vars
            .or::<SocketAddr>("LISTEN_ADDR", "0.0.0.0:8080".parse().unwrap())
            .unwrap();
        assert_eq!(addr.port(), 8080);
    }

    #[test]
    fn durations_are_whole_milliseconds() {
        let vars = Vars::from_pairs([("A_MS", "250"), ("B_MS", "1.5s")]);
        assert_eq!(
            vars.millis_or("A_MS", Duration::ZERO).unwrap(),
            Duration::from_millis(250)
        );
        assert!(matches!(
            vars.millis_or("B_MS", Duration::ZERO),
            Err(ConfigError::Invalid { name: "B_MS", .. })
        ));
    }

    #[test]
    fn service_urls_must_be_http_with_a_host() {
        let vars = Vars::from_pairs([
            ("GOOD", "http://order-service:8081"),
            ("NO_SCHEME", "order-service:8081"),
            ("FTP", "ftp://order-service"),
        ]);
        assert_eq!(
            vars.service_url("GOOD", "").unwrap().as_str(),
            "http://order-service:8081/"
        );
        assert!(vars.service_url("NO_SCHEME", "").is_err());
        assert!(vars.service_url("FTP", "").is_err());
        assert!(matches!(
            vars.service_url("UNSET", "hint"),
            Err(ConfigError::Missing { name: "UNSET", .. })
        ));
    }

    #[test]
    fn booleans_accept_the_usual_spellings() {
        let vars = Vars::from_pairs([("A", "TRUE"), ("B", "off"), ("C", "maybe")]);
        assert!(vars.bool_or("A", false).unwrap());
        assert!(!vars.bool_or("B", true).unwrap());
        assert!(vars.bool_or("C", true).is_err());
    }
}
