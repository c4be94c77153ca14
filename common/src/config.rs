//! Service configuration: one declared list of environment variables per service, one reader.
//!
//! Every setting is an environment variable declared once, as a [`Var`]: its name, what holds
//! when it is unset ([`Unset`]: a default written as it would be set, required, empty, or
//! computed), and what it means. Each service's `config.rs` declares the variables of its own
//! and lists, in `VARS`, those plus the groups it shares with the others ([`shared`]: the
//! server's limits, telemetry, the database, ...). Its `Config::from_vars` is the one function
//! that reads them, each through [`Vars`] with its `Var`, so a name and its default are
//! written in one place: a default is parsed by the same code as a set value, and the
//! README's tables (`cargo xtask docs`) and the deployment drift test
//! (`tests/tests/deployment.rs`) are made from, or checked against, the same lists.
//!
//! Settings are read once, at start-up. A value that is missing or malformed stops start-up
//! with a [`ConfigError`] that names the variable, so a typo in `docker-compose.yml` fails
//! loudly instead of running with a surprising default.
//!
//! `Vars` reads from a lookup function rather than from `std::env` directly, so tests build
//! configurations from a list of pairs without touching (unsafe, process-global) environment
//! variables.
//!
//! A setting that is a secret (a database URL with its password, a signing key) is held in a
//! [`Secret`], whose `Debug` and `Display` print `[redacted]`: every `Config` derives `Debug`,
//! and a `?config` in a log line or a panic message must never print a password.

pub mod shared;

use std::{
    collections::HashMap,
    fmt::{self, Display},
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use reqwest::Url;

/// One environment variable a service reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var {
    pub name: &'static str,
    /// What holds when the variable is unset (or set to the empty string).
    pub unset: Unset,
    /// What it does, in Markdown: the README's "meaning" column.
    pub meaning: &'static str,
}

/// What holds when a [`Var`] is unset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unset {
    /// This value, written as it would be set: it is parsed like a set value, so the declared
    /// default and the one in effect cannot disagree.
    Default(&'static str),
    /// Start-up stops. The example goes into the error message and the README.
    Required { example: &'static str },
    /// The setting is empty: no extra rules, no extra attributes, no links.
    Empty,
    /// A default that is no one fixed text (the binary's name; `text` on a terminal), said in
    /// Markdown words; the variable's reader computes it.
    Computed(&'static str),
}

/// A configuration variable that is missing or cannot be parsed.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name} is not set (e.g. {example})")]
    Missing {
        name: &'static str,
        example: &'static str,
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
        Vars::from_lookup(|name| std::env::var(name).ok())
    }

    /// A fixed set of variables, for tests.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let map: HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Vars::from_lookup(move |name| map.get(name).cloned())
    }

    /// Any lookup, e.g. one that records which names a `Config` reads (the drift test).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Vars {
            lookup: Arc::new(lookup),
        }
    }

    /// The value as set, if it is. An empty value counts as unset, as the OpenTelemetry
    /// specification says for its own variables, so `FOO=` in a compose file means "use the
    /// default".
    pub fn get(&self, var: &Var) -> Option<String> {
        (self.lookup)(var.name).filter(|v| !v.trim().is_empty())
    }

    /// The value of `var` parsed by `parse`: the value as set, else the declared default.
    /// Unset, a required variable is a [`ConfigError::Missing`].
    ///
    /// # Panics
    /// When `var` has neither a default nor is required: such a variable is read with
    /// [`read_optional`](Self::read_optional) (a mistake in the code that any test building
    /// the `Config` shows).
    pub fn read<T>(
        &self,
        var: &Var,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.read_optional(var, parse)? {
            Some(value) => Ok(value),
            None => panic!(
                "{} is declared without a default; read it with Vars::read_optional",
                var.name
            ),
        }
    }

    /// [`read`](Self::read) for a variable that may be unset without a default: `None` then.
    pub fn read_optional<T>(
        &self,
        var: &Var,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let text = match (self.get(var), var.unset) {
            (Some(raw), _) => raw,
            (None, Unset::Default(text)) => text.to_owned(),
            (None, Unset::Required { example }) => {
                return Err(ConfigError::Missing {
                    name: var.name,
                    example,
                });
            }
            (None, Unset::Empty | Unset::Computed(_)) => return Ok(None),
        };
        parse(text.trim())
            .map(Some)
            .map_err(|reason| ConfigError::invalid(var.name, &text, reason))
    }

    /// The value parsed with `FromStr`.
    pub fn parse<T>(&self, var: &Var) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.read(var, from_str)
    }

    /// A value that holds a secret (a database URL with its password, a key): like
    /// [`parse`](Self::parse), but the value comes back as a [`Secret`], and an error names
    /// the variable without echoing the value, so the secret does not end up in the logs.
    pub fn secret<T>(&self, var: &Var) -> Result<Secret<T>, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.parse(var).map(Secret).map_err(|e| match e {
            ConfigError::Invalid { name, reason, .. } => ConfigError::Invalid {
                name,
                value: "<redacted>".to_owned(),
                reason,
            },
            missing @ ConfigError::Missing { .. } => missing,
        })
    }

    /// A duration written in whole milliseconds (the variable's name ends in `_MS`, or is one
    /// of the OpenTelemetry specification's, which are milliseconds too).
    pub fn millis(&self, var: &Var) -> Result<Duration, ConfigError> {
        self.read(var, millis)
    }

    /// A boolean written `true`/`false` (also `1`/`0`, `on`/`off`, `yes`/`no`, any case).
    pub fn flag(&self, var: &Var) -> Result<bool, ConfigError> {
        self.read(var, flag)
    }

    /// The base URL of another service: `http://host:port` (https is accepted too, should a
    /// deployment terminate TLS in front of the service).
    pub fn service_url(&self, var: &Var) -> Result<Url, ConfigError> {
        self.read(var, |raw| {
            let url: Url = from_str(raw)?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err("expected an http:// URL with a host".to_owned());
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err("a base URL has no query or fragment".to_owned());
            }
            Ok(url)
        })
    }
}

/// [`Vars::read`]'s parser for a `FromStr` type.
pub fn from_str<T>(raw: &str) -> Result<T, String>
where
    T: FromStr,
    T::Err: Display,
{
    raw.parse().map_err(|e: T::Err| e.to_string())
}

/// [`Vars::read`]'s parser for whole milliseconds.
pub fn millis(raw: &str) -> Result<Duration, String> {
    raw.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| "expected whole milliseconds, e.g. 2500".to_owned())
}

/// [`Vars::read`]'s parser for a boolean.
pub fn flag(raw: &str) -> Result<bool, String> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "on" | "yes" => Ok(true),
        "false" | "0" | "off" | "no" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    const LISTEN_ADDR: Var = Var {
        name: "LISTEN_ADDR",
        unset: Unset::Default("0.0.0.0:8080"),
        meaning: "address to listen on",
    };
    const DATABASE_URL: Var = Var {
        name: "DATABASE_URL",
        unset: Unset::Required {
            example: "postgres://localhost/orders",
        },
        meaning: "the database",
    };

    fn var(name: &'static str, unset: Unset) -> Var {
        Var {
            name,
            unset,
            meaning: "",
        }
    }

    #[test]
    fn a_missing_required_variable_is_named_with_an_example() {
        let err = Vars::from_pairs([])
            .parse::<String>(&DATABASE_URL)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "DATABASE_URL is not set (e.g. postgres://localhost/orders)"
        );
    }

    #[test]
    fn a_malformed_value_is_named_with_the_reason() {
        let vars = Vars::from_pairs([("LISTEN_ADDR", "localhost:80:80")]);
        let err = vars.parse::<SocketAddr>(&LISTEN_ADDR).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("LISTEN_ADDR has an invalid value \"localhost:80:80\": "),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_secret_is_named_but_not_echoed() {
        let vars = Vars::from_pairs([("DATABASE_URL", "postgres://u:hunter2@db:notaport/x")]);
        let err = vars.secret::<SocketAddr>(&DATABASE_URL).unwrap_err();
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
    fn unset_or_empty_means_the_declared_default_parsed_like_a_set_value() {
        for vars in [
            Vars::from_pairs([]),
            Vars::from_pairs([("LISTEN_ADDR", "")]),
        ] {
            let addr = vars.parse::<SocketAddr>(&LISTEN_ADDR).unwrap();
            assert_eq!(addr, SocketAddr::from(([0, 0, 0, 0], 8080)));
        }
        let broken = var("PORT", Unset::Default("eighty"));
        assert!(matches!(
            Vars::from_pairs([]).parse::<u16>(&broken),
            Err(ConfigError::Invalid { name: "PORT", value, .. }) if value == "eighty"
        ));
    }

    #[test]
    fn an_empty_or_computed_variable_is_none_when_unset() {
        let vars = Vars::from_pairs([("SET", "x")]);
        for unset in [Unset::Empty, Unset::Computed("the binary's name")] {
            assert_eq!(
                vars.read_optional(&var("UNSET", unset), from_str::<String>),
                Ok(None)
            );
            assert_eq!(
                vars.read_optional(&var("SET", unset), from_str::<String>),
                Ok(Some("x".to_owned()))
            );
        }
    }

    #[test]
    fn durations_are_whole_milliseconds() {
        let vars = Vars::from_pairs([("A_MS", "250"), ("B_MS", "1.5s")]);
        let (a, b) = (
            var("A_MS", Unset::Default("0")),
            var("B_MS", Unset::Default("0")),
        );
        assert_eq!(vars.millis(&a).unwrap(), Duration::from_millis(250));
        assert!(matches!(
            vars.millis(&b),
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
        let url = |name| var(name, Unset::Required { example: "" });
        assert_eq!(
            vars.service_url(&url("GOOD")).unwrap().as_str(),
            "http://order-service:8081/"
        );
        assert!(vars.service_url(&url("NO_SCHEME")).is_err());
        assert!(vars.service_url(&url("FTP")).is_err());
        assert!(matches!(
            vars.service_url(&url("UNSET")),
            Err(ConfigError::Missing { name: "UNSET", .. })
        ));
    }

    #[test]
    fn booleans_accept_the_usual_spellings() {
        let vars = Vars::from_pairs([("A", "TRUE"), ("B", "off"), ("C", "maybe")]);
        let flag = |name| var(name, Unset::Default("false"));
        assert!(vars.flag(&flag("A")).unwrap());
        assert!(!vars.flag(&flag("B")).unwrap());
        assert!(vars.flag(&flag("C")).is_err());
    }
}
