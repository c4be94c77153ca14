//! One request, one trace: the order flow across gateway, order service, payment service and
//! Postgres, as the OTLP receiver (standing in for Jaeger) gets it.

use std::{collections::HashSet, time::Duration};

use e2e::{
    ORDER_TRACE, ORDER_TRACE_SPANS,
    harness::{Binary, Options, PATIENCE, Service, System},
};
use reqwest::StatusCode;
use serde_json::json;
use testkit::{
    db::TestDatabase,
    otlp::{
        AttrValue, ReceivedSpan, SpanKind, SpanStatus, children, find, render_shape, render_tree,
    },
};
use trace_view::{Style, Trace, waterfall};

fn order() -> serde_json::Value {
    json!({"user_id": 1, "amount": 42.50, "currency": "USD", "tier": "gold"})
}

fn assert_attrs(span: &ReceivedSpan, expected: &[(&str, AttrValue)]) {
    for (key, value) in expected {
        assert_eq!(
            span.attr(key),
            Some(value),
            "{key} of {:?} [{}]; all attributes: {:#?}",
            span.name,
            span.service_name,
            span.attributes
        );
    }
}

fn s(v: &str) -> AttrValue {
    AttrValue::Str(v.to_owned())
}

fn i(v: i64) -> AttrValue {
    AttrValue::Int(v)
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "the golden trace: one request checked span by span, in the order of the waterfall"
)]
async fn one_order_is_one_trace_from_the_gateway_to_postgres() {
    let system = System::start().await;

    let response = system.post_order(order()).await;
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(response.json["status"], "confirmed");
    let trace_id = response.trace_id().to_owned();
    assert_eq!(trace_id.len(), 32);
    assert!(
        trace_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );

    let spans = system
        .receiver
        .wait_for_trace(&trace_id, ORDER_TRACE_SPANS, PATIENCE)
        .await;
    // The real waterfall, as `trace-view` draws it (`--nocapture` shows it).
    let trace = Trace::new(trace_id.clone(), spans.clone());
    let drawn = waterfall(
        &trace,
        &Style {
            width: 100,
            colour: false,
        },
    );
    println!("{drawn}");
    assert_eq!(
        render_shape(&spans),
        ORDER_TRACE,
        "the trace as received:\n{}",
        render_tree(&spans)
    );
    assert!(
        spans.iter().all(|s| s.trace_id == trace_id),
        "one trace id across all spans"
    );
    for span in &spans {
        assert_eq!(
            span.status,
            SpanStatus::Unset,
            "{} should not be an error",
            span.name
        );
        assert_eq!(
            span.resource.get("service.name"),
            Some(&s(&span.service_name))
        );
    }

    // The gateway's SERVER span is the root, and the traceresponse header names it.
    let root = find(&spans, "gateway", "POST /api/orders");
    assert_eq!(root.parent_span_id, None);
    assert_eq!(
        response.header("traceresponse"),
        Some(format!("00-{trace_id}-{}-03", root.span_id).as_str()),
        "Level 2 traceresponse: version, trace id, the server span, sampled + random"
    );
    assert_attrs(
        root,
        &[
            ("http.request.method", s("POST")),
            ("http.route", s("/api/orders")),
            ("http.response.status_code", i(201)),
            ("url.path", s("/api/orders")),
            ("url.scheme", s("http")),
            ("server.address", s("127.0.0.1")),
            ("server.port", i(i64::from(system.gateway.port()))),
        ],
    );
    // Baggage set at the gateway: on `create_order` and on every span after it.
    for span in spans.iter().filter(|span| span.name != "POST /api/orders") {
        assert_attrs(span, &[("user_id", s("1")), ("customer_tier", s("gold"))]);
    }

    // Each hop: a CLIENT span with the URL it called, continued by the next SERVER span.
    for (client_service, server, path) in [
        ("gateway", &system.orders, "/orders"),
        ("order-service", &system.payments, "/charge"),
    ] {
        let client = find(&spans, client_service, &format!("POST {path}"));
        assert_attrs(
            client,
            &[
                ("http.request.method", s("POST")),
                ("url.full", s(&format!("{}{path}", server.url()))),
                ("server.address", s("127.0.0.1")),
                ("server.port", i(i64::from(server.port()))),
                (
                    "http.response.status_code",
                    i(if path == "/orders" { 201 } else { 200 }),
                ),
            ],
        );
        let kids = children(&spans, client);
        assert_eq!(
            kids.len(),
            1,
            "{path}: the CLIENT span has the remote SERVER span as its child"
        );
        assert_eq!(kids[0].kind, SpanKind::Server);
        assert_attrs(
            kids[0],
            &[("http.route", s(path)), ("http.request.method", s("POST"))],
        );
    }

    let save_order = find(&spans, "order-service", "save_order");
    let order_id = response.json["order_id"].as_str().expect("an order id");
    assert_attrs(save_order, &[("order_id", s(order_id))]);

    // Database spans: CLIENT spans with the current database semantic conventions.
    for (service, name, operation, table, rows) in [
        ("order-service", "INSERT orders", "INSERT", "orders", 1),
        ("order-service", "UPDATE orders", "UPDATE", "orders", 0),
        ("payment-service", "SELECT users", "SELECT", "users", 1),
        (
            "payment-service",
            "INSERT payments",
            "INSERT",
            "payments",
            1,
        ),
        (
            "payment-service",
            "UPDATE payments",
            "UPDATE",
            "payments",
            0,
        ),
    ] {
        let span = find(&spans, service, name);
        assert_attrs(
            span,
            &[
                ("db.system.name", s("postgresql")),
                ("db.namespace", s(system.db.name())),
                ("db.operation.name", s(operation)),
                ("db.collection.name", s(table)),
                ("server.address", s("127.0.0.1")),
                ("server.port", i(5432)),
                ("db.response.returned_rows", i(rows)),
            ],
        );
        let text = span.str_attr("db.query.text").expect("db.query.text");
        assert!(
            text.starts_with(operation) && text.contains("$1"),
            "parameterised: {text}"
        );
        for value in ["42.5", "4250", "USD", order_id] {
            assert!(!text.contains(value), "no values in db.query.text: {text}");
        }
    }

    // The processor call is the bottleneck, as in the tutorial's waterfall, and the critical
    // path leads to it through the payment.
    let stripe = find(&spans, "payment-service", "call_stripe_api");
    assert!(
        stripe.duration() >= Duration::from_millis(150),
        "{:?}",
        stripe.duration()
    );
    let bottleneck = trace.bottleneck().expect("a critical path");
    let bottleneck_span = &trace.spans[bottleneck.span];
    assert_eq!(
        (
            bottleneck_span.name.as_str(),
            bottleneck_span.service_name.as_str()
        ),
        ("call_stripe_api", "payment-service"),
        "{drawn}"
    );
    assert_eq!(
        bottleneck.self_ns,
        stripe.end_unix_nano - stripe.start_unix_nano,
        "a span without children is on the path for all of its time"
    );
    let chain: Vec<&str> = trace
        .chain_to_bottleneck()
        .into_iter()
        .map(|i| trace.spans[i].name.as_str())
        .collect();
    assert_eq!(chain.first(), Some(&"POST /api/orders"), "{drawn}");
    assert!(
        chain.ends_with(&["charge_card", "call_stripe_api"]),
        "{chain:?}\n{drawn}"
    );
    let summary: Vec<&str> = drawn.lines().rev().take(2).collect();
    assert!(
        summary[1].starts_with("critical path: POST /api/orders > ")
            && summary[1].ends_with(" > charge_card > call_stripe_api"),
        "{drawn}"
    );
    assert!(
        summary[0].starts_with("bottleneck call_stripe_api (payment-service): "),
        "{drawn}"
    );

    // And the database says what the response said.
    let (status, stored_trace): (String, String) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT status, trace_id FROM orders WHERE id = '{order_id}'"
    )))
    .fetch_one(system.db.pool())
    .await
    .expect("the order row");
    assert_eq!(
        (status.as_str(), stored_trace.as_str()),
        ("confirmed", trace_id.as_str())
    );
    let (payments, succeeded): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded') FROM payments WHERE order_id = '{order_id}'"
    )))
    .fetch_one(system.db.pool())
    .await
    .expect("the payment rows");
    assert_eq!((payments, succeeded), (1, 1));

    // Nothing else was exported: no span from the exporters' own HTTP and gRPC calls, which
    // would arrive as extra traces over the next export rounds.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let strays: Vec<ReceivedSpan> = system
        .receiver
        .spans()
        .into_iter()
        .filter(|s| s.trace_id != trace_id)
        .collect();
    assert!(
        strays.is_empty(),
        "unexpected spans:\n{}",
        render_tree(&strays)
    );
}

#[tokio::test]
async fn a_callers_traceparent_is_continued() {
    let system = System::start().await;
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";

    let response = system
        .post_order_with_headers(
            order(),
            &[(
                "traceparent",
                &format!("00-{caller_trace}-{caller_span}-01"),
            )],
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(
        response.trace_id(),
        caller_trace,
        "the caller's trace id, in the body"
    );

    let spans = system
        .receiver
        .wait_for_trace(caller_trace, ORDER_TRACE_SPANS, PATIENCE)
        .await;
    assert_eq!(
        render_shape(&spans),
        ORDER_TRACE.replace(
            "[gateway, SERVER]",
            "[gateway, SERVER] (parent not received)"
        )
    );
    let root = find(&spans, "gateway", "POST /api/orders");
    assert_eq!(
        root.parent_span_id.as_deref(),
        Some(caller_span),
        "a child of the caller's span"
    );
    assert_eq!(
        response.header("traceresponse"),
        // The caller did not announce a random trace id, so the flag stays off.
        Some(format!("00-{caller_trace}-{}-01", root.span_id).as_str())
    );
}

#[tokio::test]
async fn reading_an_order_back_is_a_second_trace() {
    let system = System::start().await;
    let created = system.post_order(order()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let order_id = created.json["order_id"]
        .as_str()
        .expect("order id")
        .to_owned();

    let read = system.get(&format!("/api/orders/{order_id}")).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json["order_id"], order_id.as_str());
    assert_eq!(read.json["amount"], json!(42.50));
    assert!(
        read.body.contains(r#""amount":42.50"#),
        "the amount to the cent: {}",
        read.body
    );
    assert_eq!(read.json["currency"], "USD");
    assert_eq!(read.json["status"], "confirmed");
    assert_eq!(
        read.json["trace_id"],
        created.trace_id(),
        "the order remembers the trace that created it"
    );

    let read_trace = read
        .header("traceresponse")
        .and_then(|v| v.split('-').nth(1))
        .expect("a traceresponse header")
        .to_owned();
    assert_ne!(read_trace, created.trace_id());
    let spans = system
        .receiver
        .wait_for_trace(&read_trace, 6, PATIENCE)
        .await;
    assert_eq!(
        render_shape(&spans),
        "\
GET /api/orders/{id} [gateway, SERVER]
  get_order [gateway, INTERNAL]
    GET /orders/{id} [gateway, CLIENT]
      GET /orders/{id} [order-service, SERVER]
        load_order [order-service, INTERNAL]
          SELECT orders [order-service, CLIENT]
"
    );
    let client = find(&spans, "gateway", "GET /orders/{id}");
    assert_attrs(
        client,
        &[
            ("url.template", s("/orders/{id}")),
            (
                "url.full",
                s(&format!("{}/orders/{order_id}", system.orders.url())),
            ),
        ],
    );
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one failing request, checked tier by tier"
)]
async fn a_5xx_marks_the_server_spans_error_and_the_body_carries_the_trace_id() {
    let mut system = System::start().await;
    system.payments.kill();

    let response = system.post_order(order()).await;
    response.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "payment_unavailable",
        "a 5xx",
    );
    let trace_id = response.trace_id().to_owned();

    let spans = system
        .receiver
        .wait_for_trace(&trace_id, 12, PATIENCE)
        .await;
    // Nothing was sent (the connection was refused), so the client tried three times: three
    // CLIENT spans, the resends numbered.
    let mut attempts: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.service_name == "order-service" && s.name == "POST /charge")
        .collect();
    attempts.sort_by_key(|s| s.start_unix_nano);
    assert_eq!(attempts.len(), 3, "{}", render_tree(&spans));
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.kind, SpanKind::Client);
        assert!(matches!(attempt.status, SpanStatus::Error(_)));
        assert_eq!(attempt.str_attr("error.type"), Some("connection_failed"));
        let resend = attempt.int_attr("http.request.resend_count");
        let expected = (n > 0).then(|| i64::try_from(n).expect("three attempts"));
        assert_eq!(resend, expected, "attempt {n}");
    }
    for (service, name) in [
        ("gateway", "POST /api/orders"),
        ("gateway", "create_order"),
        ("gateway", "POST /orders"),
        ("order-service", "POST /orders"),
        ("order-service", "save_order"),
    ] {
        let span = find(&spans, service, name);
        assert!(
            matches!(span.status, SpanStatus::Error(_)),
            "{name} [{service}] should be ERROR:\n{}",
            render_tree(&spans)
        );
    }
    let server = find(&spans, "order-service", "POST /orders");
    assert_eq!(server.int_attr("http.response.status_code"), Some(503));
    assert_eq!(server.str_attr("error.type"), Some("payment_unreachable"));
    assert!(
        server.events.iter().any(|e| e.name == "exception"),
        "an exception event on the failed span"
    );
    assert_eq!(
        find(&spans, "order-service", "validate_order").status,
        SpanStatus::Unset
    );

    let order_id = response.json["order_id"]
        .as_str()
        .expect("the error names the order");
    let (status,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT status FROM orders WHERE id = '{order_id}'"
    )))
    .fetch_one(system.db.pool())
    .await
    .expect("the order row");
    assert_eq!(
        status, "payment_failed",
        "recorded, and known not to be charged"
    );
}

#[tokio::test]
async fn a_clean_stop_flushes_every_span_of_completed_requests() {
    // Batches would only be exported every minute: whatever arrives, the shutdown flushed.
    let options = Options::default().everywhere("OTEL_BSP_SCHEDULE_DELAY", "60000");
    let mut system = System::start_with(options).await;
    let response = system.post_order(order()).await;
    assert_eq!(response.status, 201, "{}", response.body);
    assert!(
        system.receiver.trace(response.trace_id()).is_empty(),
        "nothing exported yet"
    );

    for service in [
        &mut system.gateway,
        &mut system.orders,
        &mut system.payments,
    ] {
        let status = service.terminate().await;
        assert!(
            status.success(),
            "exit {status}:\n{}",
            service.logs().join("\n")
        );
    }
    let spans = system.receiver.trace(response.trace_id());
    assert_eq!(render_shape(&spans), ORDER_TRACE, "{}", render_tree(&spans));
}

#[tokio::test]
async fn services_starting_at_the_same_time_apply_the_migrations_once() {
    let db = TestDatabase::create().await;
    let env = [
        ("DATABASE_URL", db.url()),
        ("OTEL_TRACES_EXPORTER", "none"),
        // The order service needs one; nothing calls it in this test.
        ("PAYMENT_SERVICE_URL", "http://127.0.0.1:9"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let services: (Service, Service, Service) = tokio::join!(
        Service::start(Binary::PaymentService, &env),
        Service::start(Binary::OrderService, &env),
        Service::start(Binary::PaymentService, &env),
    );
    let (applied,): (i64,) = sqlx::query_as("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(db.pool())
        .await
        .expect("the migrations table");
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
        .expect("the migrations folder")
        .count();
    assert_eq!(usize::try_from(applied).ok(), Some(migrations));
    let (users,): (i64,) = sqlx::query_as("SELECT count(*) FROM users")
        .fetch_one(db.pool())
        .await
        .expect("the seeded users");
    assert_eq!(users, 5, "seeded once");
    drop(services);
}

#[tokio::test]
async fn every_span_of_a_trace_has_a_parent_in_the_trace_except_the_root() {
    let system = System::start().await;
    let mut trace_ids = HashSet::new();
    for user in [1, 2, 4] {
        let response = system
            .post_order(json!({"user_id": user, "amount": 10, "currency": "EUR"}))
            .await;
        assert_eq!(response.status, 201, "{}", response.body);
        trace_ids.insert(response.trace_id().to_owned());
    }
    for trace_id in &trace_ids {
        let spans = system
            .receiver
            .wait_for_trace(trace_id, ORDER_TRACE_SPANS, PATIENCE)
            .await;
        assert_eq!(render_shape(&spans), ORDER_TRACE);
        let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
        let roots = spans.iter().filter(|s| s.parent_span_id.is_none()).count();
        assert_eq!(roots, 1);
        assert!(
            spans
                .iter()
                .filter_map(|s| s.parent_span_id.as_deref())
                .all(|p| ids.contains(p))
        );
    }
}
