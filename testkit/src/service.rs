//! A service's router under test, called in-process: what every service's `tests/support`
//! `TestApp` is built on.
//!
//! Each service's support builds its router the way `main` does, but from a list of variables
//! rather than the environment, and keeps the fakes that service calls. What they all share is
//! here: telemetry installed for the test's thread (so trace ids, `traceparent` and baggage
//! are real), requests sent with `tower::ServiceExt::oneshot` (so a path is sent exactly as
//! given, `..` and all, which a real HTTP client would normalise first), and, for a service
//! with a database, its pool: to read rows with, and to close before `#[sqlx::test]` drops the
//! database.

use axum::{Router, http::Method};
use common::{config::Vars, db::Database};
use sqlx::PgPool;
use tracing::subscriber::DefaultGuard;

use crate::{CHARGE_SIGNING_KEY, response::TestResponse};

/// A service's router, the telemetry it runs under, and its pool if it has one.
pub struct InProcess {
    router: Router,
    /// The service's own pool, also used by the assertions. Handed over by
    /// [`with_database`](Self::with_database); closed by [`close`](Self::close) so that sqlx can
    /// drop the test database afterwards (a database with open connections cannot be dropped).
    db: Option<Database>,
    /// Makes the OpenTelemetry subscriber current on this thread for as long as the app
    /// lives. `#[tokio::test]` and `#[sqlx::test]` run each test on a current-thread runtime,
    /// so the router, its HTTP client and the fakes all run on this thread, under this
    /// subscriber. Installed by the caller ([`crate::telemetry::install`]) before it builds
    /// anything that might record a span.
    _telemetry: DefaultGuard,
}

impl InProcess {
    pub fn new(router: Router, telemetry: DefaultGuard) -> Self {
        InProcess {
            router,
            db: None,
            _telemetry: telemetry,
        }
    }

    /// The same, for a service whose state holds `db`.
    #[must_use]
    pub fn with_database(self, db: Database) -> Self {
        InProcess {
            db: Some(db),
            ..self
        }
    }

    /// Any request; the path is sent exactly as given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: String,
    ) -> TestResponse {
        crate::response::oneshot(&self.router, method, path, headers, body).await
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(Method::GET, path, &[], String::new()).await
    }

    /// `POST path` with a JSON body given byte for byte (`serde_json::json!` would turn `42.50`
    /// into the float `42.5`, and the literal is often what is being tested), and `headers`
    /// after the content type.
    pub async fn post_json(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> TestResponse {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send(Method::POST, path, &all, body.to_owned()).await
    }

    /// The service's pool; fails the test for a service without a database.
    pub fn pool(&self) -> &PgPool {
        self.db
            .as_ref()
            .expect("this service was given no database")
            .pool()
    }

    /// How many rows `table` has in all.
    pub async fn row_count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(self.pool())
            .await
            .unwrap_or_else(|e| panic!("counting {table}: {e}"))
    }

    /// Closes the pool; see the field's comment.
    pub async fn close(&self) {
        if let Some(db) = &self.db {
            db.close().await;
        }
    }
}

/// The variables of a service with a database, `vars` last (so a test can override any):
/// a `DATABASE_URL` the config requires, which the support replaces with the options
/// `#[sqlx::test]` hands it (the test database has a generated name only they know), and the
/// shared [`CHARGE_SIGNING_KEY`].
pub fn database_service_vars(vars: &[(&str, &str)]) -> Vars {
    let mut pairs = vec![
        ("DATABASE_URL", "postgres://placeholder/placeholder"),
        ("CHARGE_SIGNING_KEY", CHARGE_SIGNING_KEY),
    ];
    pairs.extend_from_slice(vars);
    Vars::from_pairs(pairs)
}
