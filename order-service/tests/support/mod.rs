//! The order service's test harness: the real router over a fresh Postgres database, and a
//! fake payment service on a local port.
//!
//! `#[sqlx::test]` creates a database per test and runs the migrations; [`TestApp::start`]
//! builds the service's router on it, the way `main` does but without environment variables,
//! and points `PAYMENT_SERVICE_URL` at a [`FakePayments`]: a small axum server on
//! 127.0.0.1:0 that counts the charges it receives and answers whatever the test told it to.
//! The router itself is called with `tower::ServiceExt::oneshot`, through
//! [`testkit::service::InProcess`], which also installs telemetry for the test's thread as
//! `main` does through `common::telemetry::init`, so responses carry a real trace id, and
//! holds the pool the assertions read the table with.

use std::{
    ops::Deref,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use common::{
    config::Secret,
    db::{Database, PoolSettings},
};
use order_service::{AppState, Config};
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
pub(crate) use testkit::fake::Neighbour as Payments;
pub(crate) use testkit::response::{TestResponse, is_trace_id};
use testkit::service::{InProcess, database_service_vars};
use uuid::Uuid;

/// The service under test, the fake it calls, and a way to look at its table; the requests
/// themselves (`get`, `send`), the pool and `close` are [`InProcess`]'s, reached through
/// `Deref`.
pub(crate) struct TestApp {
    app: InProcess,
    pub payments: FakePayments,
}

impl Deref for TestApp {
    type Target = InProcess;

    fn deref(&self) -> &InProcess {
        &self.app
    }
}

/// A row of `orders`, as the assertions read it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct OrderRecord {
    pub user_id: i64,
    pub amount_minor: i64,
    pub currency: String,
    pub status: String,
    pub trace_id: String,
}

impl TestApp {
    /// The service with a fake payment service that charges every order.
    pub(crate) async fn start(options: PgConnectOptions) -> Self {
        Self::start_with(options, Payments::Fake, &[]).await
    }

    /// The service with `payments` and extra configuration `vars`.
    pub(crate) async fn start_with(
        options: PgConnectOptions,
        payments: Payments,
        vars: &[(&str, &str)],
    ) -> Self {
        let telemetry = testkit::telemetry::install();
        let fake = FakePayments::start().await;
        let payment_url = payments.url(fake.url()).await;
        let mut pairs = vec![("PAYMENT_SERVICE_URL", payment_url.as_str())];
        pairs.extend_from_slice(vars);
        let mut config = Config::from_vars(&database_service_vars(&pairs))
            .expect("the test configuration is valid");
        config.backend.database = Secret::new(options);
        let db = Database::connect_lazy(&config.backend.database, PoolSettings::default());
        let router = order_service::router(AppState::new(&config, db.clone()), &config);
        TestApp {
            app: InProcess::new(router, telemetry).with_database(db),
            payments: fake,
        }
    }

    /// `POST /orders` with a JSON body given byte for byte (so `42.50` is sent as written:
    /// `serde_json::json!` would turn it into the float `42.5`).
    pub(crate) async fn post_order(&self, body: &str) -> TestResponse {
        self.post_order_with_key(None, body).await
    }

    /// [`post_order`](Self::post_order) with, if given, an `Idempotency-Key`.
    pub(crate) async fn post_order_with_key(&self, key: Option<&str>, body: &str) -> TestResponse {
        let headers: Vec<(&str, &str)> = key
            .map(|key| ("idempotency-key", key))
            .into_iter()
            .collect();
        self.post_json("/orders", &headers, body).await
    }

    /// The row of order `id`; fails the test if there is none.
    pub(crate) async fn order(&self, id: Uuid) -> OrderRecord {
        sqlx::query_as(
            "SELECT user_id, amount_minor, currency, status, trace_id FROM orders WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .expect("reading the order")
        .unwrap_or_else(|| panic!("order {id} should be in the table"))
    }

    /// How many rows `orders` has in all.
    pub(crate) async fn order_count(&self) -> i64 {
        self.row_count("orders").await
    }
}

/// The order most tests place: user 1, 42.50 USD.
pub(crate) const ORDER: &str = r#"{"user_id":1,"amount":42.50,"currency":"USD"}"#;

/// How the fake payment service answers `POST /charge`.
#[derive(Clone, Debug)]
pub(crate) enum Reply {
    /// 200 with a `ChargeResponse`, as the real service answers a successful charge.
    Charge,
    /// `status` with `body` as JSON.
    Json(StatusCode, Value),
    /// Waits `delay`, then answers like [`Reply::Charge`].
    Slow(Duration),
}

/// A stand-in for the payment service: counts and records the charges it receives and
/// answers each with the current [`Reply`]. Serves on its own task until the test's runtime
/// ends.
pub(crate) struct FakePayments {
    url: String,
    state: Arc<FakeState>,
}

struct FakeState {
    calls: AtomicUsize,
    received: Mutex<Vec<Value>>,
    reply: Mutex<Reply>,
}

impl FakePayments {
    async fn start() -> Self {
        let state = Arc::new(FakeState {
            calls: AtomicUsize::new(0),
            received: Mutex::new(Vec::new()),
            reply: Mutex::new(Reply::Charge),
        });
        let router = Router::new()
            .route("/charge", post(fake_charge))
            .with_state(state.clone());
        let url = testkit::fake::serve(router).await;
        FakePayments { url, state }
    }

    pub(crate) fn url(&self) -> String {
        self.url.clone()
    }

    /// How every later charge is answered.
    pub(crate) fn reply_with(&self, reply: Reply) {
        *self.state.reply.lock().expect("the fake's lock") = reply;
    }

    /// How many charges arrived (including ones the fake answered with an error).
    pub(crate) fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// The bodies of the charges received, in order.
    pub(crate) fn received(&self) -> Vec<Value> {
        self.state.received.lock().expect("the fake's lock").clone()
    }
}

async fn fake_charge(State(state): State<Arc<FakeState>>, body: Bytes) -> Response {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let charge: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state
        .received
        .lock()
        .expect("the fake's lock")
        .push(charge.clone());
    let reply = state.reply.lock().expect("the fake's lock").clone();
    let charged = || {
        Json(json!({
            "payment_id": Uuid::now_v7(),
            "status": "succeeded",
            "charge_id": format!("ch_fake_{}", charge["order_id"].as_str().unwrap_or("?")),
        }))
        .into_response()
    };
    match reply {
        Reply::Charge => charged(),
        Reply::Json(status, body) => (status, Json(body)).into_response(),
        Reply::Slow(delay) => {
            tokio::time::sleep(delay).await;
            charged()
        }
    }
}
