//! The payment service's test harness: the real router over a fresh Postgres database.
//!
//! `#[sqlx::test]` creates a database per test and runs the migrations (which seed users 1 to
//! 5); [`TestApp::new`] builds the service's router on it, the way `main` does but without
//! environment variables, and with the simulated processor's latency at zero so the tests
//! stay fast. Requests go through `tower::ServiceExt::oneshot` ([`InProcess`], which also
//! installs telemetry and holds the pool): no socket is needed, and concurrent requests still
//! meet in Postgres, which is where idempotency is enforced.

use std::ops::Deref;

use axum::http::Method;

use common::{
    api::ChargeRequest,
    config::Secret,
    db::{Database, PoolSettings},
    signing::{ChargeSigner, SIGNATURE_HEADER},
};
use payment_service::{AppState, Config};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
pub(crate) use testkit::response::TestResponse;
use testkit::service::{InProcess, database_service_vars};
use uuid::Uuid;

/// The service under test, and a way to look at its tables; the requests themselves (`get`,
/// `send`), the pool and `close` are [`InProcess`]'s, reached through `Deref`.
pub(crate) struct TestApp {
    app: InProcess,
    /// Signs charges as the order service does, with the key the service is configured with.
    signer: ChargeSigner,
}

impl Deref for TestApp {
    type Target = InProcess;

    fn deref(&self) -> &InProcess {
        &self.app
    }
}

/// A row of `payments`, as the assertions read it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct Payment {
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
    pub(crate) fn new(options: PgConnectOptions) -> Self {
        let telemetry = testkit::telemetry::install();
        let mut config =
            Config::from_vars(&database_service_vars(&[("PROCESSOR_LATENCY_MS", "0")]))
                .expect("the test configuration is valid");
        config.backend.database = Secret::new(options);
        let signer = ChargeSigner::new(config.backend.charge_signing_key.clone());
        let db = Database::connect_lazy(
            &config.backend.database,
            PoolSettings {
                // Enough for the concurrency test's five simultaneous charges.
                max_connections: 8,
                ..PoolSettings::default()
            },
        );
        let router = payment_service::router(AppState::new(&config, db.clone()), &config);
        TestApp {
            app: InProcess::new(router, telemetry).with_database(db),
            signer,
        }
    }

    /// `POST /charge` with a JSON body, signed as the order service signs it (when the body is
    /// a `ChargeRequest` at all; one that is not goes unsigned, and is refused for its shape).
    pub(crate) async fn charge(&self, body: &Value) -> TestResponse {
        let signature = serde_json::from_value::<ChargeRequest>(body.clone())
            .ok()
            .map(|charge| self.signer.sign(&charge));
        self.charge_signed(body, signature.as_deref()).await
    }

    /// `POST /charge` with a JSON body and, if given, this `charge-signature`.
    pub(crate) async fn charge_signed(
        &self,
        body: &Value,
        signature: Option<&str>,
    ) -> TestResponse {
        let headers: Vec<(&str, &str)> = signature
            .map(|s| (SIGNATURE_HEADER, s))
            .into_iter()
            .collect();
        self.post_json("/charge", &headers, &body.to_string()).await
    }

    /// The signature the order service would send for `body`.
    pub(crate) fn signature_for(&self, body: &Value) -> String {
        let charge: ChargeRequest = serde_json::from_value(body.clone()).expect("a charge request");
        self.signer.sign(&charge)
    }

    /// The reasons recorded in `refused_charges` for `order_id`, oldest first.
    pub(crate) async fn refusals_for(&self, order_id: Uuid) -> Vec<String> {
        sqlx::query_scalar("SELECT reason FROM refused_charges WHERE order_id = $1 ORDER BY id")
            .bind(order_id)
            .fetch_all(self.pool())
            .await
            .expect("reading refused charges")
    }

    /// `POST /charge` with a body given byte for byte, and any content type.
    pub(crate) async fn charge_raw(&self, content_type: &str, body: &str) -> TestResponse {
        self.send(
            Method::POST,
            "/charge",
            &[("content-type", content_type)],
            body.to_owned(),
        )
        .await
    }

    /// Every payment recorded for `order_id` (the schema allows at most one).
    pub(crate) async fn payments_for(&self, order_id: Uuid) -> Vec<Payment> {
        sqlx::query_as(
            "SELECT id, user_id, amount_minor, currency, status, processor_charge_id, decline_reason \
             FROM payments WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_all(self.pool())
        .await
        .expect("reading payments")
    }

    /// The one payment recorded for `order_id`; fails the test unless there is exactly one.
    pub(crate) async fn only_payment_for(&self, order_id: Uuid) -> Payment {
        let mut payments = self.payments_for(order_id).await;
        assert_eq!(
            payments.len(),
            1,
            "order {order_id} should have exactly one payment: {payments:?}"
        );
        payments.remove(0)
    }

    /// How many rows `payments` has in all.
    pub(crate) async fn payment_count(&self) -> i64 {
        self.row_count("payments").await
    }
}

/// A charge request for a seeded user, as the order service would send it.
pub(crate) fn charge_body(order_id: Uuid, user_id: i64, amount_minor: i64) -> Value {
    serde_json::json!({
        "order_id": order_id,
        "user_id": user_id,
        "amount_minor": amount_minor,
        "currency": "USD",
    })
}
