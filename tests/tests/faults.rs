//! Faults and hostile input: a declined payment, a database outage, a dead or slow payment
//! service, a collector that is down or slow, bad input of every kind, SIGTERM under load,
//! and a concurrent run with a service killed half-way. Each test checks what a user would:
//! the status and body, the rows, and where the trace turned red.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use e2e::{
    ORDER_TRACE, ORDER_TRACE_SPANS,
    harness::{Binary, Options, PATIENCE, Service, System},
};
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{
    otlp::{Behaviour, ReceivedSpan, SpanStatus, find, render_shape, render_tree},
    response::TestResponse,
};

fn order(user_id: i64) -> Value {
    json!({"user_id": user_id, "amount": 42.50, "currency": "USD"})
}

fn is_error(span: &ReceivedSpan) -> bool {
    matches!(span.status, SpanStatus::Error(_))
}

/// The spans of a trace that are ERROR, as `name [service]`, sorted.
fn red(spans: &[ReceivedSpan]) -> Vec<String> {
    let mut red: Vec<String> = spans
        .iter()
        .filter(|s| is_error(s))
        .map(|s| format!("{} [{}]", s.name, s.service_name))
        .collect();
    red.sort();
    red
}

async fn count(system: &System, sql: &'static str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql)
        .fetch_one(system.db.pool())
        .await
        .expect("a count");
    n
}

async fn order_status(system: &System, order_id: &str) -> String {
    let (status,): (String,) = sqlx::query_as("SELECT status FROM orders WHERE id = $1::uuid")
        .bind(order_id)
        .fetch_one(system.db.pool())
        .await
        .expect("the order row");
    status
}

async fn payments_for(system: &System, order_id: &str) -> Vec<String> {
    sqlx::query_as::<_, (String,)>("SELECT status FROM payments WHERE order_id = $1::uuid")
        .bind(order_id)
        .fetch_all(system.db.pool())
        .await
        .expect("the payment rows")
        .into_iter()
        .map(|(s,)| s)
        .collect()
}

#[tokio::test]
async fn a_declined_payment_is_red_exactly_where_it_broke() {
    let system = System::start().await;
    let response = system
        .post_order(json!({"user_id": 1, "amount": 42.50, "card_token": "tok_chargeDeclined"}))
        .await;
    response.assert_error(
        StatusCode::PAYMENT_REQUIRED,
        "payment_declined",
        "a declined card",
    );
    let order_id = response.json["order_id"]
        .as_str()
        .expect("the order is named");
    assert_eq!(order_status(&system, order_id).await, "payment_declined");
    assert_eq!(payments_for(&system, order_id).await, ["declined"]);

    let spans = system
        .receiver
        .wait_for_trace(response.trace_id(), ORDER_TRACE_SPANS, PATIENCE)
        .await;
    assert_eq!(
        red(&spans),
        [
            "POST /api/orders [gateway]",
            "POST /charge [order-service]",
            "POST /charge [payment-service]",
            "POST /orders [gateway]",
            "POST /orders [order-service]",
            "call_stripe_api [payment-service]",
            "charge_card [payment-service]",
            "create_order [gateway]",
            "save_order [order-service]",
        ],
        "red from the processor up to the gateway, and nowhere else:\n{}",
        render_tree(&spans)
    );
    let charge_card = find(&spans, "payment-service", "charge_card");
    assert_eq!(charge_card.str_attr("error.type"), Some("payment_declined"));
    let exception = charge_card
        .events
        .iter()
        .find(|e| e.name == "exception")
        .expect("an exception event");
    assert!(
        exception.attributes["exception.message"]
            .as_str()
            .is_some_and(|m| m.contains("card_declined")),
        "{exception:?}"
    );
    assert_eq!(
        find(&spans, "payment-service", "call_stripe_api").str_attr("error.type"),
        Some("card_declined")
    );
}

#[tokio::test]
async fn declines_decided_before_the_processor_stop_at_charge_card() {
    let system = System::start().await;
    for (body, reason) in [
        (json!({"user_id": 99, "amount": 1}), "unknown_user"),
        (
            json!({"user_id": 5, "amount": 25.01}),
            "credit_limit_exceeded",
        ),
    ] {
        let response = system.post_order(body).await;
        response.assert_error(StatusCode::PAYMENT_REQUIRED, "payment_declined", reason);
        assert!(
            response.json["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(reason)
        );
        let spans = system
            .receiver
            .wait_for_trace(response.trace_id(), 16, PATIENCE)
            .await;
        assert!(
            spans.iter().all(|s| s.name != "call_stripe_api"),
            "{reason}: the processor is not called"
        );
        assert!(
            is_error(find(&spans, "payment-service", "charge_card")),
            "{reason}"
        );
        assert!(
            !is_error(find(&spans, "payment-service", "lookup_user")),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn a_statement_timeout_is_a_503_with_the_sqlstate_on_the_database_span() {
    let options =
        Options::default().env(Binary::OrderService, "DATABASE_STATEMENT_TIMEOUT_MS", "300");
    let system = System::start_with(options).await;
    // Another session holds the table: the INSERT waits, and Postgres cancels it.
    let mut blocker = system.db.pool().begin().await.expect("a transaction");
    sqlx::query("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .expect("the lock");

    let response = system.post_order(order(1)).await;
    response.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        "a statement timeout",
    );
    for internal in ["INSERT", "orders", "statement", "sqlx", "57014"] {
        assert!(
            !response.body.contains(internal),
            "the body leaks {internal:?}: {}",
            response.body
        );
    }
    let spans = system
        .receiver
        .wait_for_trace(response.trace_id(), 8, PATIENCE)
        .await;
    let insert = find(&spans, "order-service", "INSERT orders");
    assert!(is_error(insert), "{}", render_tree(&spans));
    assert_eq!(insert.str_attr("db.response.status_code"), Some("57014"));
    assert_eq!(insert.str_attr("error.type"), Some("57014"));
    assert!(insert.events.iter().any(|e| e.name == "exception"));
    assert!(is_error(find(&spans, "order-service", "POST /orders")));

    blocker.rollback().await.expect("releasing the lock");
    let response = system.post_order(order(1)).await;
    assert_eq!(response.status, 201, "recovered: {}", response.body);
}

#[tokio::test]
async fn a_database_outage_is_503_and_not_ready_and_the_services_recover_by_themselves() {
    let system = System::start_with(Options::default().with_database_proxy()).await;
    let proxy = system.db_proxy.as_ref().expect("the proxy");
    let ready = |service: &Service| {
        let url = format!("{}/readyz", service.url());
        let http = system.http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16())
        }
    };
    assert_eq!(system.post_order(order(1)).await.status, 201);

    proxy.cut();
    let response = system.post_order(order(1)).await;
    response.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        "the database cut off",
    );
    assert_eq!(ready(&system.orders).await, 503);
    assert_eq!(ready(&system.payments).await, 503);
    let spans = system
        .receiver
        .wait_for_trace(response.trace_id(), 8, PATIENCE)
        .await;
    assert!(
        is_error(find(&spans, "order-service", "INSERT orders")),
        "{}",
        render_tree(&spans)
    );

    proxy.restore();
    let deadline = Instant::now() + PATIENCE;
    while ready(&system.orders).await != 200 || ready(&system.payments).await != 200 {
        assert!(
            Instant::now() < deadline,
            "the services did not become ready again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let response = system.post_order(order(1)).await;
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(
        count(
            &system,
            "SELECT count(*) FROM orders WHERE status = 'confirmed'"
        )
        .await,
        2
    );
    assert_eq!(
        count(&system, "SELECT count(*) FROM orders").await,
        2,
        "the failed order left no row"
    );
}

/// One family of bad input to `POST /api/orders`, and the answer it must get.
struct BadInput<'a> {
    /// The family, named in every failure message.
    name: &'static str,
    request: Request<'a>,
    expected_status: StatusCode,
    /// `error.code` of the body.
    expected_code: &'static str,
    /// What `error.message` must mention: the part of the request that was wrong.
    message_mentions: &'static str,
}

/// A request to `POST /api/orders`, byte for byte.
struct Request<'a> {
    method: Method,
    content_type: &'static str,
    body: &'a str,
}

/// `POST` with `body` as `application/json`, the way a client sends an order.
fn post_json(body: &str) -> Request<'_> {
    Request {
        method: Method::POST,
        content_type: "application/json",
        body,
    }
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "the table of bad inputs is the specification: one struct per case, read top to bottom"
)]
async fn bad_input_gets_a_clear_4xx_and_leaves_no_row() {
    let system = System::start().await;
    let url = format!("{}/api/orders", system.gateway.url());
    let big = format!(
        r#"{{"user_id": 1, "amount": 1, "card_token": "{}"}}"#,
        "x".repeat(20_000)
    );
    let cases = [
        BadInput {
            name: "malformed JSON",
            request: post_json(r#"{"user_id": 1,"#),
            expected_status: StatusCode::BAD_REQUEST,
            expected_code: "malformed_json",
            message_mentions: "EOF",
        },
        BadInput {
            name: "not JSON at all",
            request: post_json("user_id=1"),
            expected_status: StatusCode::BAD_REQUEST,
            expected_code: "malformed_json",
            message_mentions: "expected value",
        },
        BadInput {
            name: "empty body",
            request: post_json(""),
            expected_status: StatusCode::BAD_REQUEST,
            expected_code: "malformed_json",
            message_mentions: "EOF",
        },
        BadInput {
            name: "wrong type",
            request: post_json(r#"{"user_id": "1", "amount": 1}"#),
            expected_status: StatusCode::UNPROCESSABLE_ENTITY,
            expected_code: "invalid_body",
            message_mentions: "user_id",
        },
        BadInput {
            name: "amount as a string",
            request: post_json(r#"{"user_id": 1, "amount": "42.50"}"#),
            expected_status: StatusCode::UNPROCESSABLE_ENTITY,
            expected_code: "invalid_body",
            message_mentions: "amount",
        },
        BadInput {
            name: "missing amount",
            request: post_json(r#"{"user_id": 1}"#),
            expected_status: StatusCode::UNPROCESSABLE_ENTITY,
            expected_code: "invalid_body",
            message_mentions: "missing field `amount`",
        },
        BadInput {
            name: "missing user",
            request: post_json(r#"{"amount": 1}"#),
            expected_status: StatusCode::UNPROCESSABLE_ENTITY,
            expected_code: "invalid_body",
            message_mentions: "missing field `user_id`",
        },
        BadInput {
            name: "zero",
            request: post_json(r#"{"user_id": 1, "amount": 0}"#),
            expected_status: StatusCode::UNPROCESSABLE_ENTITY,
            expected_code: "validation_failed",
            message_mentions: "amount: must be greater than zero",
        },
        BadInput {
            name: "negative",
            request: post_json(r#"{"user_id": 1, "amount": -5}"#),
            expected_status: StatusCode::UNPROCESSABLE_ENTITY,
            expected_code: "validation_failed",
            message_mentions: "amount: must be greater than zero",
        },
        BadInput {
            name: "NaN",
            request: post_json(r#"{"user_id": 1, "amount": NaN}"#),
            expected_status: StatusCode::BAD_REQUEST,
            expected_code: "malformed_json",
            message_mentions: "expected value",
        },
        BadInput {
            name: "infinite",
            request: post_json(r#"{"user_id": 1, "amount": 1e999}"#),
            expected_status: StatusCode::UNPROCESSABLE_ENTITY,
            expected_code: "validation_failed",
            message_mentions: "amount: must be at most",
        },
        BadInput {
            name: "over-precise",
            request: post_json(r#"{"user_id": 1, "amount": 42.505}"#),
            expected_status: StatusCode::UNPROCESSABLE_ENTITY,
            expected_code: "validation_failed",
            message_mentions: "at most 2 decimal places",
        },
        BadInput {
            name: "huge amount",
            request: post_json(r#"{"user_id": 1, "amount": 123456789012345678901234567890}"#),
            expected_status: StatusCode::UNPROCESSABLE_ENTITY,
            expected_code: "validation_failed",
            message_mentions: "amount: must be at most",
        },
        BadInput {
            name: "huge user id",
            request: post_json(r#"{"user_id": 123456789012345678901234567890, "amount": 1}"#),
            expected_status: StatusCode::UNPROCESSABLE_ENTITY,
            expected_code: "invalid_body",
            message_mentions: "user_id",
        },
        BadInput {
            name: "unknown currency",
            request: post_json(r#"{"user_id": 1, "amount": 1, "currency": "XYZ"}"#),
            expected_status: StatusCode::UNPROCESSABLE_ENTITY,
            expected_code: "validation_failed",
            message_mentions: "currency",
        },
        BadInput {
            name: "unknown tier",
            request: post_json(r#"{"user_id": 1, "amount": 1, "tier": "diamond"}"#),
            expected_status: StatusCode::UNPROCESSABLE_ENTITY,
            expected_code: "invalid_body",
            message_mentions: "tier",
        },
        BadInput {
            name: "SQL in currency",
            request: post_json(
                r#"{"user_id": 1, "amount": 1, "currency": "USD'; DROP TABLE orders; --"}"#,
            ),
            expected_status: StatusCode::UNPROCESSABLE_ENTITY,
            expected_code: "validation_failed",
            message_mentions: "currency",
        },
        BadInput {
            name: "SQL in card token",
            request: post_json(r#"{"user_id": 1, "amount": 1, "card_token": "x' OR '1'='1"}"#),
            expected_status: StatusCode::UNPROCESSABLE_ENTITY,
            expected_code: "validation_failed",
            message_mentions: "card_token",
        },
        BadInput {
            name: "unicode in currency",
            request: post_json(r#"{"user_id": 1, "amount": 1, "currency": "ÜSD"}"#),
            expected_status: StatusCode::UNPROCESSABLE_ENTITY,
            expected_code: "validation_failed",
            message_mentions: "currency",
        },
        BadInput {
            name: "unicode in card token",
            request: post_json(r#"{"user_id": 1, "amount": 1, "card_token": "tök_😀"}"#),
            expected_status: StatusCode::UNPROCESSABLE_ENTITY,
            expected_code: "validation_failed",
            message_mentions: "card_token",
        },
        BadInput {
            name: "oversized body",
            request: post_json(&big),
            expected_status: StatusCode::PAYLOAD_TOO_LARGE,
            expected_code: "body_too_large",
            message_mentions: "larger than",
        },
        BadInput {
            name: "wrong content type",
            request: Request {
                content_type: "text/plain",
                ..post_json(r#"{"user_id": 1, "amount": 1}"#)
            },
            expected_status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            expected_code: "unsupported_media_type",
            message_mentions: "application/json",
        },
        BadInput {
            name: "wrong method",
            request: Request {
                method: Method::PUT,
                ..post_json(r#"{"user_id": 1, "amount": 1}"#)
            },
            expected_status: StatusCode::METHOD_NOT_ALLOWED,
            expected_code: "method_not_allowed",
            message_mentions: "method",
        },
    ];
    for case in &cases {
        let request = &case.request;
        let response = system
            .http
            .request(request.method.clone(), &url)
            .header("content-type", request.content_type)
            .body(request.body.to_owned())
            .send()
            .await
            .expect("an answer");
        let response = TestResponse::from_reqwest(response).await;
        response.assert_error(case.expected_status, case.expected_code, case.name);
        assert!(
            response.error_message().contains(case.message_mentions),
            "{}: {:?} should mention {:?}",
            case.name,
            response.error_message(),
            case.message_mentions
        );
    }

    for (what, path) in [
        ("unknown route", "/api/nope"),
        ("unknown nested route", "/api/orders/1/items"),
    ] {
        let response = system.get(path).await;
        response.assert_error(StatusCode::NOT_FOUND, "not_found", what);
    }
    let response = system
        .post_order_with_headers(order(1), &[("x-padding", &"y".repeat(40_000))])
        .await;
    response.assert_error(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
        "oversized headers",
    );
    let response = system
        .post_order_with_headers(order(1), &[("idempotency-key", "not visible ascii: ü")])
        .await;
    response.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_idempotency_key",
        "a non-ASCII idempotency key",
    );

    assert_eq!(
        count(&system, "SELECT count(*) FROM orders").await,
        0,
        "no partial row"
    );
    assert_eq!(count(&system, "SELECT count(*) FROM payments").await, 0);
    // The service is fine afterwards.
    assert_eq!(system.post_order(order(1)).await.status, 201);
}

#[tokio::test]
async fn the_same_idempotency_key_gives_the_same_order_and_one_charge() {
    let system = System::start().await;
    let key = [("idempotency-key", "order-7f3a")];
    let first = system.post_order_with_headers(order(1), &key).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = system
        .post_order_with_headers(
            json!({"user_id": 1, "amount": 42.5, "currency": "USD"}),
            &key,
        )
        .await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(
        again.json["order_id"], first.json["order_id"],
        "the same order"
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    let other = system.post_order_with_headers(order(2), &key).await;
    other.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "the key reused for another order",
    );

    // Five at once with a new key: one order, one charge.
    let key = [("idempotency-key", "burst-1")];
    let burst = join_all((0..5).map(|_| system.post_order_with_headers(order(4), &key))).await;
    let ids: HashSet<&str> = burst
        .iter()
        .filter_map(|r| r.json["order_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 1, "{burst:#?}");
    assert!(burst.iter().all(|r| r.status == 201), "{burst:#?}");
    let order_id = ids.into_iter().next().expect("an order id");
    assert_eq!(payments_for(&system, order_id).await, ["succeeded"]);
    assert_eq!(count(&system, "SELECT count(*) FROM orders").await, 2);
    assert_eq!(count(&system, "SELECT count(*) FROM payments").await, 2);
}

#[tokio::test]
async fn a_payment_service_that_is_down_then_back_charges_the_retried_order_once() {
    let mut system = System::start().await;
    system.payments.kill();
    let key = [("idempotency-key", "retry-me")];

    let response = system.post_order_with_headers(order(1), &key).await;
    response.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "payment_unavailable",
        "the payment service down",
    );
    let order_id = response.json["order_id"]
        .as_str()
        .expect("the order is named")
        .to_owned();
    assert_eq!(order_status(&system, &order_id).await, "payment_failed");
    assert!(
        payments_for(&system, &order_id).await.is_empty(),
        "nothing charged"
    );

    system.restart_payments().await;
    let response = system.post_order_with_headers(order(1), &key).await;
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(response.json["order_id"], order_id.as_str());
    assert_eq!(order_status(&system, &order_id).await, "confirmed");
    assert_eq!(payments_for(&system, &order_id).await, ["succeeded"]);
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario (timeout, retry, settle) told in the order it happens"
)]
async fn a_slow_payment_service_times_out_in_bounded_time_and_is_never_charged_twice() {
    let options = Options::default()
        .env(Binary::PaymentService, "PROCESSOR_LATENCY_MS", "1500")
        .env(Binary::OrderService, "PAYMENT_TIMEOUT_MS", "400");
    let system = System::start_with(options).await;

    // Without an Idempotency-Key: the order service gives up after three attempts, and the
    // gateway does not retry (it cannot know a repeat is safe).
    let started = Instant::now();
    let response = system.post_order(order(1)).await;
    let took = started.elapsed();
    response.assert_error(
        StatusCode::GATEWAY_TIMEOUT,
        "payment_timeout",
        "the payment service too slow",
    );
    assert!(
        took < Duration::from_secs(5),
        "answered within the bounds ({took:?})"
    );
    let order_id = response.json["order_id"]
        .as_str()
        .expect("the order is named")
        .to_owned();
    assert_eq!(
        order_status(&system, &order_id).await,
        "payment_unknown",
        "the state says so"
    );
    let trace_id = response.trace_id().to_owned();
    let is_attempt = |s: &ReceivedSpan| {
        s.trace_id == trace_id && s.service_name == "order-service" && s.name == "POST /charge"
    };
    let spans = system
        .receiver
        .wait_for(PATIENCE, |spans| {
            spans.iter().filter(|s| is_attempt(s)).count() >= 3
        })
        .await;
    let attempts = spans.iter().filter(|s| is_attempt(s)).count();
    assert_eq!(
        attempts,
        3,
        "the timed-out charge was retried, visibly:\n{}",
        render_tree(&system.receiver.trace(&trace_id))
    );
    // The attempts it gave up on finish at the payment service, as one charge.
    let deadline = Instant::now() + PATIENCE;
    while payments_for(&system, &order_id).await != ["succeeded"] {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            payments_for(&system, &order_id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // With a key, the gateway may retry, and by then the first charge has settled: the order
    // is confirmed, charged once.
    let response = system
        .post_order_with_headers(order(2), &[("idempotency-key", "slow-1")])
        .await;
    assert_eq!(response.status, 201, "{}", response.body);
    let order_id = response.json["order_id"].as_str().expect("an order id");
    assert_eq!(order_status(&system, order_id).await, "confirmed");
    assert_eq!(payments_for(&system, order_id).await, ["succeeded"]);
    let spans = system
        .receiver
        .wait_for(PATIENCE, |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == response.trace_id() && s.name == "POST /api/orders")
        })
        .await;
    let resent = spans
        .iter()
        .filter(|s| {
            s.trace_id == response.trace_id()
                && s.service_name == "gateway"
                && s.name == "POST /orders"
        })
        .any(|s| s.int_attr("http.request.resend_count").is_some());
    assert!(resent, "the gateway's resend is a span of its own");
}

async fn metrics(system: &System, service: &Service) -> HashMap<String, u64> {
    let text = system
        .http
        .get(format!("{}/metrics", service.url()))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("a text body");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_owned(), v.parse().expect("a number")))
        .collect()
}

#[tokio::test]
async fn a_collector_that_is_down_costs_spans_not_requests_and_the_loss_is_reported() {
    let system = System::start().await;
    system.receiver.stop().await;
    for _ in 0..5 {
        let response = system.post_order(order(1)).await;
        assert_eq!(response.status, 201, "{}", response.body);
    }
    // The exports fail; the loss is counted and logged.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let m = metrics(&system, &system.orders).await;
        if m["spans_lost_total{reason=\"export_failed\"}"] > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no loss counted: {m:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + PATIENCE;
    while !system.orders.log_lines().iter().any(|l| {
        l["level"] == "WARN"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("spans could not be exported"))
    }) {
        assert!(
            Instant::now() < deadline,
            "no warning logged:\n{}",
            system.orders.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The collector comes back, and so do the traces.
    system.receiver.restart().await;
    let response = system.post_order(order(1)).await;
    assert_eq!(response.status, 201);
    system
        .receiver
        .wait_for_trace(response.trace_id(), ORDER_TRACE_SPANS, PATIENCE)
        .await;
    assert_eq!(
        system.receiver.trace(response.trace_id()).len(),
        ORDER_TRACE_SPANS
    );
}

#[tokio::test]
async fn a_slow_collector_fills_a_bounded_queue_and_drops_are_counted() {
    let options = Options::default().everywhere("OTEL_BSP_MAX_QUEUE_SIZE", "32");
    let system = System::start_with(options).await;
    system
        .receiver
        .set_behaviour(Behaviour::Delay(Duration::from_secs(3)));
    for _ in 0..10 {
        let response = system.post_order(order(1)).await;
        assert_eq!(response.status, 201, "{}", response.body);
    }
    let m = metrics(&system, &system.orders).await;
    assert!(m["spans_in_flight"] <= 32, "bounded: {m:?}");
    assert!(
        m["spans_lost_total{reason=\"queue_full\"}"] > 0,
        "drops are counted: {m:?}"
    );
    system.receiver.set_behaviour(Behaviour::Normal);
}

#[tokio::test]
async fn sigterm_under_load_answers_the_requests_in_flight_and_flushes_their_spans() {
    let options = Options::default()
        .everywhere("OTEL_BSP_SCHEDULE_DELAY", "60000")
        .env(Binary::PaymentService, "PROCESSOR_LATENCY_MS", "1000");
    let mut system = System::start_with(options).await;
    let http = system.http.clone();
    let url = format!("{}/api/orders", system.gateway.url());
    let in_flight: Vec<_> = (0..8)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let response = http
                    .post(url)
                    .json(&order(1))
                    .send()
                    .await
                    .expect("an answer");
                let status = response.status().as_u16();
                let body: Value = response.json().await.expect("a JSON body");
                (status, body)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    for service in [&system.gateway, &system.orders, &system.payments] {
        service.send_sigterm();
    }
    let mut trace_ids = Vec::new();
    for request in in_flight {
        let (status, body) = request.await.expect("the request task");
        assert_eq!(status, 201, "{body}");
        trace_ids.push(body["trace_id"].as_str().expect("a trace id").to_owned());
    }
    for service in [
        &mut system.gateway,
        &mut system.orders,
        &mut system.payments,
    ] {
        let status = service.wait_for_exit(PATIENCE).await;
        assert!(status.success(), "{status}:\n{}", service.logs().join("\n"));
    }
    for trace_id in &trace_ids {
        let spans = system.receiver.trace(trace_id);
        assert_eq!(
            spans.len(),
            ORDER_TRACE_SPANS,
            "every span flushed at exit:\n{}",
            render_tree(&spans)
        );
    }
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one scenario (load, crash, restart, reconcile) told in the order it happens"
)]
async fn a_concurrent_run_with_a_crash_loses_and_doubles_nothing() {
    let options = Options::default().env(Binary::PaymentService, "PROCESSOR_LATENCY_MS", "20");
    let mut system = System::start_with(options).await;
    // 120 requests, 12 at a time: good orders, declines, and the same keys sent three times.
    let requests: Vec<(Value, Option<String>)> = (0..120)
        .map(|i| {
            let body = match i % 10 {
                7 => json!({"user_id": 1, "amount": 10, "card_token": "tok_chargeDeclined"}),
                8 => json!({"user_id": 99, "amount": 10}),
                // The same body for every request under one key: a true retry.
                9 => json!({"user_id": 3, "amount": 10.5}),
                _ => json!({"user_id": 1 + i % 4, "amount": 10.5}),
            };
            let key = (i % 10 == 9).then(|| format!("dup-{}", i / 30));
            (body, key)
        })
        .collect();

    let mut results: Vec<(Value, Option<String>, TestResponse)> = Vec::new();
    for (n, chunk) in requests.chunks(12).enumerate() {
        if n == 3 {
            system.payments.kill();
        }
        if n == 6 {
            system.restart_payments().await;
        }
        let batch = join_all(chunk.iter().map(|(body, key)| {
            let headers: Vec<(&str, &str)> = key
                .iter()
                .map(|k| ("idempotency-key", k.as_str()))
                .collect();
            let system = &system;
            async move { system.post_order_with_headers(body.clone(), &headers).await }
        }))
        .await;
        results.extend(
            chunk
                .iter()
                .cloned()
                .zip(batch)
                .map(|((b, k), r)| (b, k, r)),
        );
    }

    let statuses: HashMap<u16, usize> = results.iter().fold(HashMap::new(), |mut m, (_, _, r)| {
        *m.entry(r.status.as_u16()).or_default() += 1;
        m
    });
    println!("statuses: {statuses:?}");
    // Spans come from three processes in batches; let the last ones arrive.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        results
            .iter()
            .all(|(_, _, r)| [201, 402, 503].contains(&r.status.as_u16())),
        "{statuses:?}"
    );
    assert!(
        statuses.get(&503).copied().unwrap_or(0) > 0,
        "the crash was noticed"
    );

    let mut by_key: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (_, key, response) in &results {
        let order_id = response.json["order_id"].as_str();
        match response.status.as_u16() {
            201 => {
                let id = order_id.expect("a created order has an id");
                assert_eq!(
                    order_status(&system, id).await,
                    "confirmed",
                    "every 2xx has its row"
                );
                assert_eq!(payments_for(&system, id).await, ["succeeded"]);
            }
            402 => {
                let id = order_id.expect("a declined order is named");
                assert_eq!(order_status(&system, id).await, "payment_declined");
            }
            _ => {
                // Every 5xx carries a trace id whose spans show where it broke: the calls to
                // the payment service that was down.
                let spans = system.receiver.trace(response.trace_id());
                let broke = spans
                    .iter()
                    .filter(|s| s.service_name == "order-service" && s.name == "POST /charge")
                    .all(|s| is_error(s) && s.str_attr("error.type") == Some("connection_failed"));
                assert!(broke, "{}", render_tree(&spans));
                assert!(is_error(find(&spans, "gateway", "POST /api/orders")));
            }
        }
        if let (Some(key), Some(id)) = (key, order_id) {
            by_key.entry(key.as_str()).or_default().insert(id);
        }
    }
    for (key, ids) in &by_key {
        assert_eq!(
            ids.len(),
            1,
            "one order per idempotency key: {key} -> {ids:?}"
        );
    }
    assert_eq!(
        count(&system, "SELECT count(*) FROM (SELECT order_id FROM payments GROUP BY order_id HAVING count(*) > 1) doubled").await,
        0,
        "no order has two payments"
    );
    assert_eq!(
        count(&system, "SELECT count(*) FROM payments p JOIN orders o ON o.id = p.order_id WHERE p.status = 'succeeded' AND o.status <> 'confirmed'").await,
        0,
        "no charge without its confirmed order"
    );
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "three attacks on one gateway, each a short paragraph of the same scenario"
)]
async fn the_gateway_cuts_slow_headers_and_idle_connections_and_answers_bad_paths_in_json() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let system = System::start_with(Options::default().env(
        Binary::Gateway,
        "HTTP_HEADER_READ_TIMEOUT_MS",
        "500",
    ))
    .await;
    let address = format!("127.0.0.1:{}", system.gateway.port());

    // Slowloris: the headers, a byte every 100 ms, would take seconds to arrive.
    let request = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nUser-Agent: slow\r\n\r\n";
    let (mut read, mut write) = tokio::net::TcpStream::connect(&address)
        .await
        .expect("the gateway accepts")
        .into_split();
    let drip = tokio::spawn(async move {
        for byte in request {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let start = Instant::now();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(4), read.read_to_end(&mut answer)).await;
    let elapsed = start.elapsed();
    drip.abort();
    assert!(
        closed.is_ok(),
        "the slow client still held its connection after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(1500),
        "cut only after {elapsed:?}"
    );
    assert!(answer.is_empty(), "the slow request was served");

    // An idle keep-alive connection is closed after the same timeout.
    let mut idle = tokio::net::TcpStream::connect(&address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0; 1024];
    let n = idle.read(&mut buffer).await.unwrap();
    assert!(
        buffer[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buffer[..n])
    );
    let start = Instant::now();
    let eof = tokio::time::timeout(Duration::from_secs(3), idle.read(&mut buffer)).await;
    assert!(
        matches!(eof, Ok(Ok(0) | Err(_))),
        "an idle connection stays open: {eof:?}"
    );
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );

    // The server still serves everyone else, and a path that is not UTF-8 is a JSON 400.
    let response = system.get("/api/orders/%FF%FE").await;
    response.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_path",
        "a path that is not UTF-8",
    );
}

#[tokio::test]
async fn a_charge_for_an_order_nobody_placed_is_refused_recorded_and_red() {
    let system = System::start().await;
    let order_id = uuid::Uuid::new_v4();
    // Straight to the payment service, as anything on its network could: no signature.
    let response = system
        .http
        .post(format!("{}/charge", system.payments.url()))
        .json(&json!({"order_id": order_id, "user_id": 1, "amount_minor": 4250, "currency": "USD"}))
        .send()
        .await
        .expect("the payment service answers");
    let response = TestResponse::from_reqwest(response).await;

    response.assert_error(
        StatusCode::FORBIDDEN,
        "charge_not_authorised",
        "an unsigned charge",
    );
    let refused = count_for(
        &system,
        "SELECT count(*) FROM refused_charges WHERE order_id = $1",
        order_id,
    )
    .await;
    assert_eq!(refused, 1, "the refusal is recorded");
    assert_eq!(
        payments_for(&system, &order_id.to_string()).await,
        Vec::<String>::new(),
        "no payment for an order that does not exist"
    );
    // POST /charge, charge_card, INSERT refused_charges.
    let spans = system
        .receiver
        .wait_for_trace(response.trace_id(), 3, PATIENCE)
        .await;
    let charge_card = find(&spans, "payment-service", "charge_card");
    assert!(is_error(charge_card), "{}", render_tree(&spans));
    assert_eq!(
        charge_card.str_attr("error.type"),
        Some("charge_not_authorised"),
        "{}",
        render_tree(&spans)
    );
    assert!(is_error(find(&spans, "payment-service", "POST /charge")));
    assert!(
        spans
            .iter()
            .all(|s| s.name != "INSERT payments" && s.name != "call_stripe_api"),
        "nothing is claimed or charged: {}",
        render_tree(&spans)
    );
    find(&spans, "payment-service", "INSERT refused_charges");

    // The order service's own charges are signed with the same key, and keep the trace's shape.
    let placed = system.post_order(order(1)).await;
    assert_eq!(placed.status, 201, "{}", placed.body);
    let spans = system
        .receiver
        .wait_for_trace(placed.trace_id(), ORDER_TRACE_SPANS, PATIENCE)
        .await;
    assert_eq!(render_shape(&spans), ORDER_TRACE, "{}", render_tree(&spans));
    assert!(red(&spans).is_empty(), "{:?}", red(&spans));
}

async fn count_for(system: &System, sql: &'static str, id: uuid::Uuid) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql)
        .bind(id)
        .fetch_one(system.db.pool())
        .await
        .expect("a count");
    n
}

#[tokio::test]
async fn an_order_service_answering_160_mib_costs_the_gateway_a_502_not_the_memory() {
    use testkit::fake::{Framing, LargeBody};
    const HUGE: usize = 160 * 1024 * 1024;
    /// The most memory the process has ever held (`VmHWM`), in KiB: a body buffered and freed
    /// again leaves no trace in the current RSS, but does in its high-water mark.
    fn peak_rss_kib(pid: u32) -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .expect("the gateway's /proc status")
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmHWM line")
    }
    let fake = LargeBody::start(axum::http::StatusCode::CREATED, HUGE, Framing::Chunked).await;
    let system = System::start_with(Options::default().env(
        Binary::Gateway,
        "ORDER_SERVICE_URL",
        &fake.url(),
    ))
    .await;
    let before = peak_rss_kib(system.gateway.pid());

    let started = Instant::now();
    let response = system.post_order(order(1)).await;
    let elapsed = started.elapsed();

    response.assert_error(
        StatusCode::BAD_GATEWAY,
        "order_service_error",
        "a 160 MiB answer",
    );
    let after = peak_rss_kib(system.gateway.pid());
    let grown_mib = after.saturating_sub(before) as f64 / 1024.0;
    eprintln!(
        "gateway peak RSS {before} KiB -> {after} KiB (+{grown_mib:.1} MiB); the neighbour produced {} of {HUGE} bytes; answered in {elapsed:?}",
        fake.produced()
    );
    assert!(
        grown_mib < 16.0,
        "the gateway's peak grew by {grown_mib:.1} MiB"
    );
    assert!(fake.produced() < HUGE / 4, "read {} bytes", fake.produced());
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn services_with_different_signing_keys_charge_nothing_and_the_trace_says_where() {
    let system = System::start_with(Options::default().env(
        Binary::PaymentService,
        "CHARGE_SIGNING_KEY",
        "not the order service's key, but as long",
    ))
    .await;

    let response = system.post_order(order(1)).await;

    response.assert_error(
        StatusCode::BAD_GATEWAY,
        "payment_error",
        "a signature mismatch",
    );
    let order_id = response.order_id();
    assert_eq!(
        payments_for(&system, &order_id.to_string()).await,
        Vec::<String>::new()
    );
    let refused = count_for(
        &system,
        "SELECT count(*) FROM refused_charges WHERE order_id = $1 AND reason = 'signature_mismatch'",
        order_id,
    )
    .await;
    assert_eq!(refused, 1, "the refusal names the order");
    // The gateway's 3 spans, the order service's 7, and the payment service's POST /charge,
    // charge_card and INSERT refused_charges.
    let spans = system
        .receiver
        .wait_for_trace(response.trace_id(), 13, PATIENCE)
        .await;
    let charge_card = find(&spans, "payment-service", "charge_card");
    assert_eq!(
        charge_card.str_attr("error.type"),
        Some("charge_not_authorised"),
        "{}",
        render_tree(&spans)
    );
    assert!(
        red(&spans).contains(&"charge_card [payment-service]".to_owned()),
        "{:?}",
        red(&spans)
    );
}
