//! The payment service's test harness: the real router over a fresh Postgres database.
//!
//! `#[sqlx::test]` creates a database per test and runs the migrations (which seed users 1 to
//! 5); [`TestApp::new`] builds the service's router on it, the way `main` does but without
//! environment variables, and with the simulated processor's latency at zero so the tests
//! stay fast. Requests go through `tower::ServiceExt::oneshot`: no socket is needed, and
//! concurrent requests still meet in Postgres, which is where idempotency is enforced.

use axum::{Router, http::Method};
use common::{
    api::ChargeRequest,
    config::{Secret, Vars},
    db::{Database, PoolSettings},
    signing::{ChargeSigner, SIGNATURE_HEADER},
};
pub use e2e::response::TestResponse;
use payment_service::{AppState, Config};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use uuid::Uuid;

/// The service under test, and a way to look at its tables.
pub struct TestApp {
    router: Router,
    /// Signs charges as the order service does, with the key the service is configured with.
    signer: ChargeSigner,
    /// The service's own pool, also used by the assertions. Created by [`TestApp::new`];
    /// closed by [`TestApp::close`] so that sqlx can drop the test database afterwards (a
    /// database with open connections cannot be dropped).
    db: Database,
    /// Trace context and trace ids, as `main` would set up; for the test's whole life.
    _telemetry: tracing::subscriber::DefaultGuard,
}

/// A row of `payments`, as the assertions read it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Payment {
    pub id: Uuid,
    pub user_id: i64,
    pub amount_minor: i64,
    pub currency: String,
    pub status: String,
    pub processor_charge_id: Option<String>,
    pub decline_reason: Option<String>,
}

impl TestApp {
    /// The router on the test database that `options` points at.
    pub fn new(options: PgConnectOptions) -> Self {
        let mut config = Config::from_vars(&Vars::from_pairs([
            // Required by the config, but replaced below: the test database has a generated
            // name that only `options` knows.
            ("DATABASE_URL", "postgres://placeholder/placeholder"),
            ("PROCESSOR_LATENCY_MS", "0"),
            ("CHARGE_SIGNING_KEY", e2e::harness::CHARGE_SIGNING_KEY),
        ]))
        .expect("the test configuration is valid");
        config.backend.database = Secret::new(options);
        let signer = ChargeSigner::new(config.backend.charge_signing_key.clone());
        let db = Database::connect_lazy(
            config.backend.database.clone(),
            PoolSettings {
                // Enough for the concurrency test's five simultaneous charges.
                max_connections: 8,
                ..PoolSettings::default()
            },
        );
        let router = payment_service::router(AppState::new(&config, db.clone()), &config);
        TestApp {
            router,
            signer,
            db,
            _telemetry: e2e::telemetry::install(),
        }
    }

    /// `POST /charge` with a JSON body, signed as the order service signs it (when the body is
    /// a `ChargeRequest` at all; one that is not goes unsigned, and is refused for its shape).
    pub async fn charge(&self, body: &Value) -> TestResponse {
        let signature = serde_json::from_value::<ChargeRequest>(body.clone())
            .ok()
            .map(|charge| self.signer.sign(&charge));
        self.charge_signed(body, signature.as_deref()).await
    }

    /// `POST /charge` with a JSON body and, if given, this `charge-signature`.
    pub async fn charge_signed(&self, body: &Value, signature: Option<&str>) -> TestResponse {
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(signature.map(|s| (SIGNATURE_HEADER, s)));
        self.send_with_headers(Method::POST, "/charge", &headers, body.to_string())
            .await
    }

    /// The signature the order service would send for `body`.
    pub fn signature_for(&self, body: &Value) -> String {
        let charge: ChargeRequest = serde_json::from_value(body.clone()).expect("a charge request");
        self.signer.sign(&charge)
    }

    /// The reasons recorded in `refused_charges` for `order_id`, oldest first.
    pub async fn refusals_for(&self, order_id: Uuid) -> Vec<String> {
        sqlx::query_scalar("SELECT reason FROM refused_charges WHERE order_id = $1 ORDER BY id")
            .bind(order_id)
            .fetch_all(self.db.pool())
            .await
            .expect("reading refused charges")
    }

    /// `POST /charge` with a body given byte for byte, and any content type.
    pub async fn charge_raw(&self, content_type: &str, body: &str) -> TestResponse {
        self.send(Method::POST, "/charge", Some(content_type), body.to_owned())
            .await
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(Method::GET, path, None, String::new()).await
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: String,
    ) -> TestResponse {
        let headers: Vec<(&str, &str)> = content_type
            .map(|value| ("content-type", value))
            .into_iter()
            .collect();
        self.send_with_headers(method, path, &headers, body).await
    }

    /// Any request, with exactly these headers.
    pub async fn send_with_headers(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: String,
    ) -> TestResponse {
        e2e::response::oneshot(&self.router, method, path, headers, body).await
    }

    /// Every payment recorded for `order_id` (the schema allows at most one).
    pub async fn payments_for(&self, order_id: Uuid) -> Vec<Payment> {
        sqlx::query_as(
            "SELECT id, user_id, amount_minor, currency, status, processor_charge_id, decline_reason \
             FROM payments WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_all(self.db.pool())
        .await
        .expect("reading payments")
    }

    /// The one payment recorded for `order_id`; fails the test unless there is exactly one.
    pub async fn only_payment_for(&self, order_id: Uuid) -> Payment {
        let mut payments = self.payments_for(order_id).await;
        assert_eq!(
            payments.len(),
            1,
            "order {order_id} should have exactly one payment: {payments:?}"
        );
        payments.remove(0)
    }

    /// How many rows `payments` has in all.
    pub async fn payment_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM payments")
            .fetch_one(self.db.pool())
            .await
            .expect("counting payments")
    }

    /// Closes the pool; see the field's comment.
    pub async fn close(self) {
        self.db.pool().close().await;
    }
}

/// A charge request for a seeded user, as the order service would send it.
pub fn charge_body(order_id: Uuid, user_id: i64, amount_minor: i64) -> Value {
    serde_json::json!({
        "order_id": order_id,
        "user_id": user_id,
        "amount_minor": amount_minor,
        "currency": "USD",
    })
}
