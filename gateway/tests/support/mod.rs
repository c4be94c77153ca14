//! The gateway's test harness: the real router, and a fake order service on a local port.
//!
//! [`TestApp::start`] builds the gateway's router the way `main` does, but without
//! environment variables, and points `ORDER_SERVICE_URL` at a [`FakeOrders`]: a small axum
//! server on 127.0.0.1:0 that records every request it receives (method, path as sent, headers,
//! body bytes) and answers whatever the test told it to. The gateway is called with
//! `tower::ServiceExt::oneshot` through [`testkit::service::InProcess`], so a test can send
//! request targets a real HTTP client would normalise first (`/api/orders/..`).
//!
//! The gateway's propagation is part of what is tested, so a tracing subscriber with the
//! OpenTelemetry layer and the W3C propagators is installed, as `common::telemetry::init`
//! does in `main`: without it the gateway has no span context to send.

use std::{
    collections::BTreeMap,
    ops::Deref,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use common::config::Vars;
use gateway::{AppState, Config};
use serde_json::{Value, json};
pub(crate) use testkit::fake::Neighbour as Orders;
pub(crate) use testkit::response::{TestResponse, is_trace_id};
use testkit::service::InProcess;

/// The order id the fake order service gives every order it creates.
pub(crate) const FAKE_ORDER_ID: &str = "01936b2e-7c3a-7def-8123-456789abcdef";

/// The trace id the fake order service puts in its bodies; the gateway must replace it with
/// its own.
pub(crate) const FAKE_TRACE_ID: &str = "ffffffffffffffffffffffffffffffff";

/// An order as a client writes it, byte for byte (`serde_json::json!` would turn `42.50` into
/// the float `42.5`, and the literal is what is being tested).
pub(crate) const ORDER: &str = r#"{"user_id":1,"amount":42.50,"currency":"USD","tier":"gold"}"#;

/// The gateway under test and the fake it calls; the requests themselves (`get`, `send`) are
/// [`InProcess`]'s, reached through `Deref`.
pub(crate) struct TestApp {
    app: InProcess,
    pub orders: FakeOrders,
}

impl Deref for TestApp {
    type Target = InProcess;

    fn deref(&self) -> &InProcess {
        &self.app
    }
}

impl TestApp {
    /// The gateway with the default configuration and a fake order service.
    pub(crate) async fn start() -> Self {
        Self::start_with(Orders::Fake, &[]).await
    }

    /// The gateway calling `orders`, with extra configuration `vars`.
    pub(crate) async fn start_with(orders: Orders, vars: &[(&str, &str)]) -> Self {
        let telemetry = testkit::telemetry::install();
        let fake = FakeOrders::start().await;
        let url = orders.url(fake.url()).await;
        let mut pairs = vec![("ORDER_SERVICE_URL", url.as_str())];
        pairs.extend_from_slice(vars);
        let config =
            Config::from_vars(&Vars::from_pairs(pairs)).expect("the test configuration is valid");
        let router = gateway::router(AppState::new(&config), &config);
        TestApp {
            app: InProcess::new(router, telemetry),
            orders: fake,
        }
    }

    /// `POST /api/orders` with a JSON body given byte for byte.
    pub(crate) async fn post_order(&self, body: &str) -> TestResponse {
        self.post_order_with(&[], body).await
    }

    /// `POST /api/orders` with a JSON body and extra headers.
    pub(crate) async fn post_order_with(
        &self,
        headers: &[(&str, &str)],
        body: &str,
    ) -> TestResponse {
        self.post_json("/api/orders", headers, body).await
    }
}

/// What the fake order service answers to every request.
#[derive(Clone, Debug)]
pub(crate) struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: String,
    headers: Vec<(&'static str, &'static str)>,
    delay: Duration,
}

impl Reply {
    /// `status` with `body` as JSON.
    pub(crate) fn json(status: StatusCode, body: &Value) -> Self {
        Self::raw(status, "application/json", body.to_string())
    }

    /// `status` with `body` byte for byte.
    pub(crate) fn raw(
        status: StatusCode,
        content_type: &'static str,
        body: impl Into<String>,
    ) -> Self {
        Reply {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// The order service's answer to a created order: [`FAKE_ORDER_ID`], confirmed.
    pub(crate) fn created() -> Self {
        Self::json(
            StatusCode::CREATED,
            &json!({"order_id": FAKE_ORDER_ID, "status": "confirmed", "trace_id": FAKE_TRACE_ID}),
        )
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Waits `delay` before answering.
    pub(crate) fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A request as the fake order service received it.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub method: Method,
    /// The request target as it arrived, percent-encoding and all.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text.
    pub(crate) fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `baggage` entries, from every `baggage` header, keys to values (properties
    /// dropped). Enough W3C Baggage parsing for values the gateway writes.
    pub(crate) fn baggage(&self) -> BTreeMap<String, String> {
        self.headers
            .get_all("baggage")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|member| {
                let member = member.split(';').next()?;
                let (key, value) = member.split_once('=')?;
                Some((key.trim().to_owned(), value.trim().to_owned()))
            })
            .collect()
    }

    /// The trace id of the `traceparent` header; fails the test unless the header is a
    /// version-00 traceparent: `00-{32 hex}-{16 hex}-{2 hex}`.
    pub(crate) fn traceparent_trace_id(&self) -> String {
        let value = self
            .header("traceparent")
            .unwrap_or_else(|| panic!("a traceparent header in {:?}", self.headers));
        let parts: Vec<&str> = value.split('-').collect();
        let hex = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        assert!(
            parts.len() == 4
                && parts[0] == "00"
                && parts[1].len() == 32
                && parts[2].len() == 16
                && parts[3].len() == 2
                && parts.iter().all(|p| hex(p))
                && parts[1] != "0".repeat(32),
            "a well-formed traceparent: {value}"
        );
        parts[1].to_owned()
    }
}

/// A stand-in for the order service: records each request and answers it with the current
/// [`Reply`]. Serves on its own task until the test's runtime ends.
pub(crate) struct FakeOrders {
    url: String,
    state: Arc<FakeState>,
}

struct FakeState {
    received: Mutex<Vec<Received>>,
    reply: Mutex<Reply>,
}

impl FakeOrders {
    async fn start() -> Self {
        let state = Arc::new(FakeState {
            received: Mutex::new(Vec::new()),
            reply: Mutex::new(Reply::created()),
        });
        // One handler for every path, so a request that escapes `/orders/...` is recorded
        // with the path it reached rather than lost in a 404.
        let router = Router::new().fallback(fake).with_state(state.clone());
        let url = testkit::fake::serve(router).await;
        FakeOrders { url, state }
    }

    pub(crate) fn url(&self) -> String {
        self.url.clone()
    }

    /// How every later request is answered.
    pub(crate) fn reply_with(&self, reply: Reply) {
        *self.state.reply.lock().expect("the fake's lock") = reply;
    }

    /// How many requests arrived.
    pub(crate) fn calls(&self) -> usize {
        self.state.received.lock().expect("the fake's lock").len()
    }

    /// The one request that arrived; fails the test unless exactly one did.
    pub(crate) fn only_request(&self) -> Received {
        let received = self.state.received.lock().expect("the fake's lock");
        assert_eq!(
            received.len(),
            1,
            "the order service should be called exactly once: {received:?}"
        );
        received[0].clone()
    }

    /// The latest request; fails the test if none arrived.
    pub(crate) fn last_request(&self) -> Received {
        self.state
            .received
            .lock()
            .expect("the fake's lock")
            .last()
            .cloned()
            .expect("the order service should have been called")
    }
}

async fn fake(State(state): State<Arc<FakeState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    state
        .received
        .lock()
        .expect("the fake's lock")
        .push(Received {
            method: parts.method,
            path,
            headers: parts.headers,
            body,
        });
    let reply = state.reply.lock().expect("the fake's lock").clone();
    tokio::time::sleep(reply.delay).await;
    let mut response = (reply.status, reply.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    for (name, value) in reply.headers {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
