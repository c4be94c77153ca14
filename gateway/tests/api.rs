//! The gateway in front of a fake order service: what it forwards (the body byte for byte,
//! the `Idempotency-Key`, trace context, and the baggage it sets at the trust boundary), what it
//! keeps out (baggage outside the allow-list, bad bodies, paths that would leave
//! `/orders/{id}`), and how it answers when the order service fails.

mod support;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::json;
use support::{FAKE_ORDER_ID, FAKE_TRACE_ID, ORDER, Orders, Reply, TestApp, is_trace_id};

#[tokio::test]
async fn an_order_is_forwarded_byte_for_byte_with_its_idempotency_key() {
    let app = TestApp::start().await;

    let response = app
        .post_order_with(&[("Idempotency-Key", "order-key-1")], ORDER)
        .await;

    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    assert_eq!(response.json["order_id"], FAKE_ORDER_ID);
    assert_eq!(response.json["status"], "confirmed");
    assert_eq!(
        response.header("location"),
        Some(format!("/api/orders/{FAKE_ORDER_ID}").as_str())
    );
    let forwarded = app.orders.only_request();
    assert_eq!(forwarded.method, Method::POST);
    assert_eq!(forwarded.path, "/orders");
    assert_eq!(forwarded.header("content-type"), Some("application/json"));
    assert_eq!(forwarded.header("idempotency-key"), Some("order-key-1"));
    assert_eq!(
        forwarded.body_text(),
        ORDER,
        "the body reaches the order service as the client wrote it"
    );
    // The caller's trace starts at the gateway: the answer carries the gateway's trace id,
    // the one it sent on, not the order service's.
    assert_eq!(response.json["trace_id"], forwarded.traceparent_trace_id());
    assert_ne!(response.json["trace_id"], FAKE_TRACE_ID);
}

#[tokio::test]
async fn amount_literals_are_forwarded_unchanged() {
    let app = TestApp::start().await;
    // An f64 in between would print these as 42.5, 0.1, 100.0 (or 100) and 42.5.
    for literal in ["42.50", "0.10", "100", "4.250e1", "19.999"] {
        let body = format!(r#"{{"user_id":1,"amount":{literal}}}"#);

        let response = app.post_order(&body).await;

        assert_eq!(
            response.status,
            StatusCode::CREATED,
            "{literal}: {}",
            response.body
        );
        let forwarded = app.orders.last_request().body_text();
        assert!(
            forwarded.contains(&format!(r#""amount":{literal}"#)),
            "{literal} should be forwarded as written: {forwarded}"
        );
        assert_eq!(
            app.orders.last_request().header("idempotency-key"),
            None,
            "{literal}: no key is invented"
        );
    }
    assert_eq!(app.orders.calls(), 5);
}

#[tokio::test]
async fn a_replayed_answer_keeps_its_idempotent_replayed_header() {
    let app = TestApp::start().await;
    app.orders
        .reply_with(Reply::created().with_header("idempotent-replayed", "true"));

    let response = app
        .post_order_with(&[("Idempotency-Key", "order-key-2")], ORDER)
        .await;

    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    assert_eq!(response.header("idempotent-replayed"), Some("true"));
}

#[tokio::test]
async fn the_order_service_receives_trace_context_and_the_customer_as_baggage() {
    let app = TestApp::start().await;
    // (body, the tier the baggage should carry)
    let cases = [
        (ORDER, "gold"),
        (
            r#"{"user_id":1,"amount":42.50,"tier":"platinum"}"#,
            "platinum",
        ),
        (r#"{"user_id":1,"amount":42.50}"#, "standard"),
    ];
    for (body, tier) in cases {
        let response = app.post_order(body).await;

        assert_eq!(
            response.status,
            StatusCode::CREATED,
            "{body}: {}",
            response.body
        );
        let forwarded = app.orders.last_request();
        assert_eq!(
            forwarded.traceparent_trace_id(),
            response.trace_id(),
            "{body}: the traceparent continues the gateway's trace"
        );
        let baggage = forwarded.baggage();
        assert_eq!(
            baggage.get("user_id").map(String::as_str),
            Some("1"),
            "{body}: {baggage:?}"
        );
        assert_eq!(
            baggage.get("customer_tier").map(String::as_str),
            Some(tier),
            "{body}: {baggage:?}"
        );
    }
}

#[tokio::test]
async fn outside_baggage_is_kept_only_for_allowed_keys_and_never_overrides_the_gateways() {
    let app = TestApp::start().await;

    let response = app
        .post_order_with(
            &[(
                "baggage",
                "session_id=abc,evil=1,user_id=999,customer_tier=platinum",
            )],
            ORDER,
        )
        .await;

    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    let baggage = app.orders.only_request().baggage();
    assert_eq!(
        baggage,
        [
            ("customer_tier".to_owned(), "gold".to_owned()),
            ("session_id".to_owned(), "abc".to_owned()),
            ("user_id".to_owned(), "1".to_owned()),
        ]
        .into(),
        "session_id is allowed; evil is not; user_id and customer_tier come from the body"
    );
}

#[tokio::test]
async fn the_baggage_allowlist_comes_from_the_configuration() {
    let app = TestApp::start_with(Orders::Fake, &[("BAGGAGE_ALLOWLIST", "experiment")]).await;

    let response = app
        .post_order_with(&[("baggage", "session_id=abc,experiment=b")], ORDER)
        .await;

    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    let baggage = app.orders.only_request().baggage();
    assert_eq!(baggage.get("experiment").map(String::as_str), Some("b"));
    assert_eq!(baggage.get("session_id"), None, "{baggage:?}");
}

#[tokio::test]
async fn an_outside_traceparent_is_continued() {
    let app = TestApp::start().await;
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";

    let response = app
        .post_order_with(
            &[(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )],
            ORDER,
        )
        .await;

    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    assert_eq!(response.trace_id(), caller_trace);
    assert_eq!(
        app.orders.only_request().traceparent_trace_id(),
        caller_trace
    );
}

#[tokio::test]
async fn errors_from_the_order_service_are_relayed_with_the_gateways_trace_id() {
    let app = TestApp::start().await;
    // (the order service's status and error body)
    let cases = [
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({
                "error": {"code": "validation_failed", "message": "amount: must be greater than zero"},
                "trace_id": FAKE_TRACE_ID,
            }),
        ),
        (
            StatusCode::PAYMENT_REQUIRED,
            json!({
                "error": {"code": "payment_declined", "message": "the payment was declined (card_declined)"},
                "order_id": FAKE_ORDER_ID,
                "trace_id": FAKE_TRACE_ID,
            }),
        ),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "error": {"code": "payment_unavailable", "message": "the payment service is unavailable"},
                "order_id": FAKE_ORDER_ID,
                "trace_id": FAKE_TRACE_ID,
            }),
        ),
    ];
    for (status, body) in cases {
        let code = body["error"]["code"].as_str().expect("a code");
        app.orders.reply_with(Reply::json(status, &body));

        let response = app.post_order(ORDER).await;

        response.assert_error(status, code, code);
        assert_eq!(
            response.json["error"], body["error"],
            "{code}: the order service's error is relayed as it was"
        );
        assert_eq!(
            response.json["order_id"], body["order_id"],
            "{code}: the order, when named, is still named"
        );
        assert_eq!(
            response.trace_id(),
            app.orders.last_request().traceparent_trace_id(),
            "{code}: the trace id is the gateway's, as sent on"
        );
    }
}

#[tokio::test]
async fn an_order_service_that_is_down_is_a_503() {
    let app = TestApp::start_with(Orders::Down, &[]).await;

    let response = app.post_order(ORDER).await;

    response.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "order_service_unavailable",
        "order service down",
    );
}

#[tokio::test]
async fn an_order_service_slower_than_the_timeout_is_a_504() {
    let app = TestApp::start_with(Orders::Fake, &[("ORDER_SERVICE_TIMEOUT_MS", "200")]).await;
    app.orders
        .reply_with(Reply::created().after(Duration::from_secs(2)));

    let started = std::time::Instant::now();
    let response = app.post_order(ORDER).await;

    response.assert_error(
        StatusCode::GATEWAY_TIMEOUT,
        "order_service_timeout",
        "slow order service",
    );
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "the gateway gives up at its timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(app.orders.calls(), 1);
}

#[tokio::test]
async fn answers_from_the_order_service_that_are_not_its_json_are_a_502() {
    let app = TestApp::start().await;
    // (what the order service answered)
    let cases = [
        (
            "a 500 in plain text",
            Reply::raw(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "oops"),
        ),
        (
            "a 502 HTML page from a proxy",
            Reply::raw(
                StatusCode::BAD_GATEWAY,
                "text/html",
                "<html><body>Bad Gateway</body></html>",
            ),
        ),
        (
            "a 201 that is not an order",
            Reply::json(StatusCode::CREATED, &json!({"ok": true})),
        ),
        (
            "a 200 instead of a 201",
            Reply::json(
                StatusCode::OK,
                &json!({"order_id": FAKE_ORDER_ID, "status": "confirmed", "trace_id": FAKE_TRACE_ID}),
            ),
        ),
    ];
    for (case, reply) in cases {
        app.orders.reply_with(reply);

        let response = app.post_order(ORDER).await;

        response.assert_error(StatusCode::BAD_GATEWAY, "order_service_error", case);
        assert!(
            !response.body.contains("oops") && !response.body.contains("<html>"),
            "{case}: the upstream's text is not passed on: {}",
            response.body
        );
    }
    assert_eq!(app.orders.calls(), 4);
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "a table of bad requests, one row each, and the one check that none reached the order service"
)]
async fn bad_input_is_refused_at_the_gateway_and_never_reaches_the_order_service() {
    let app = TestApp::start_with(Orders::Fake, &[("REQUEST_BODY_LIMIT_BYTES", "512")]).await;
    let too_large = format!(
        r#"{{"user_id":1,"amount":42.50,"card_token":"{}"}}"#,
        "a".repeat(600)
    );
    // (what is wrong, content type, body, status, code)
    let cases: [(&str, Option<&str>, &str, StatusCode, &str); 8] = [
        (
            "malformed JSON",
            Some("application/json"),
            r#"{"user_id":1,"amount":"#,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "an empty body",
            Some("application/json"),
            "",
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "a user_id of the wrong type",
            Some("application/json"),
            r#"{"user_id":"one","amount":42.50}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "an amount written as a string",
            Some("application/json"),
            r#"{"user_id":1,"amount":"42.50"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "an unknown tier",
            Some("application/json"),
            r#"{"user_id":1,"amount":42.50,"tier":"diamond"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "a body over REQUEST_BODY_LIMIT_BYTES",
            Some("application/json"),
            too_large.as_str(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            "a form instead of JSON",
            Some("application/x-www-form-urlencoded"),
            "user_id=1&amount=42.50",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "no content type",
            None,
            ORDER,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ];
    for (case, content_type, body, status, code) in cases {
        let headers: Vec<(&str, &str)> = content_type
            .map(|ct| ("content-type", ct))
            .into_iter()
            .collect();

        let response = app
            .send(Method::POST, "/api/orders", &headers, body.to_owned())
            .await;

        response.assert_error(status, code, case);
        assert_eq!(app.orders.calls(), 0, "{case}: nothing is forwarded");
    }
}

#[tokio::test]
async fn reading_an_order_relays_it_with_its_amount_as_written() {
    let app = TestApp::start().await;
    let view = format!(
        r#"{{"order_id":"{FAKE_ORDER_ID}","user_id":1,"amount":42.50,"currency":"USD","status":"confirmed","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:01Z","trace_id":"{FAKE_TRACE_ID}"}}"#
    );
    app.orders
        .reply_with(Reply::raw(StatusCode::OK, "application/json", view));

    let response = app.get(&format!("/api/orders/{FAKE_ORDER_ID}")).await;

    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert!(
        response.body.contains(r#""amount":42.50"#),
        "{}",
        response.body
    );
    assert_eq!(response.json["order_id"], FAKE_ORDER_ID);
    assert_eq!(response.json["status"], "confirmed");
    let forwarded = app.orders.only_request();
    assert_eq!(forwarded.method, Method::GET);
    assert_eq!(forwarded.path, format!("/orders/{FAKE_ORDER_ID}"));
    assert!(is_trace_id(&forwarded.traceparent_trace_id()));
}

#[tokio::test]
async fn an_order_id_that_is_not_a_uuid_is_refused_and_never_reaches_the_order_service() {
    let app = TestApp::start().await;
    // Dot segments and encoded delimiters: any of them, forwarded, could address another path
    // of the order service (`Url::join` resolves `/orders/..` to `/`).
    let cases = [
        "/api/orders/..",
        "/api/orders/%2E%2E",
        "/api/orders/.",
        "/api/orders/..%2Fhealthz",
        "/api/orders/..%2F..%2Freadyz",
        "/api/orders/%2Fhealthz",
        "/api/orders/x%3Fadmin=1",
        "/api/orders/x%23frag",
        "/api/orders/a%20b",
        "/api/orders/0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5",
    ];
    for asked in cases {
        let response = app.get(asked).await;

        response.assert_error(StatusCode::BAD_REQUEST, "malformed_order_id", asked);
    }
    assert_eq!(app.orders.calls(), 0, "nothing was forwarded");
}

#[tokio::test]
async fn an_order_id_that_is_not_utf_8_once_decoded_is_a_json_400_with_a_trace_id() {
    let app = TestApp::start().await;

    let response = app.get("/api/orders/%FF%FE").await;

    response.assert_error(StatusCode::BAD_REQUEST, "invalid_path", "%FF%FE");
    assert!(
        response.error_message().contains("UTF-8"),
        "{}",
        response.body
    );
    assert_eq!(app.orders.calls(), 0, "nothing was forwarded");
}

#[tokio::test]
async fn an_idempotency_key_sent_twice_or_malformed_is_refused_at_the_gateway() {
    let app = TestApp::start().await;
    let too_long = "k".repeat(256);
    // The order service refuses the same keys: one rule (common::extract::IdempotencyKey),
    // applied at the edge, so the gateway never picks one of two keys and forwards it.
    let cases: [(&str, &[(&str, &str)]); 4] = [
        (
            "two headers",
            &[("Idempotency-Key", "key-a"), ("Idempotency-Key", "key-b")],
        ),
        ("an empty key", &[("Idempotency-Key", "")]),
        ("a key with a space", &[("Idempotency-Key", "key a")]),
        ("a key of 256 characters", &[("Idempotency-Key", &too_long)]),
    ];
    for (case, headers) in cases {
        let response = app.post_order_with(headers, ORDER).await;

        response.assert_error(StatusCode::BAD_REQUEST, "invalid_idempotency_key", case);
    }
    assert_eq!(app.orders.calls(), 0, "nothing was forwarded");
}

#[tokio::test]
async fn a_15_kb_tier_is_refused_with_a_short_message_that_says_what_was_wrong() {
    let app = TestApp::start().await;
    let body = format!(
        r#"{{"user_id":1,"amount":42.50,"tier":"{}"}}"#,
        "A".repeat(15 * 1024)
    );

    let response = app.post_order(&body).await;

    response.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", "tier");
    assert!(
        response.body.len() < 400,
        "{} bytes: {}",
        response.body.len(),
        response.body
    );
    let message = response.error_message();
    assert!(
        message.starts_with("tier: unknown variant `AAAA"),
        "{message}"
    );
    assert!(message.contains("…`"), "the echo is cut visibly: {message}");
    assert!(message.contains("expected one of `standard`"), "{message}");
    assert_eq!(app.orders.calls(), 0);
}

#[tokio::test]
async fn a_redirect_from_the_order_service_is_a_502_and_nothing_follows_it() {
    // Where the redirect points: it records whatever reaches it.
    let target = testkit::fake::Recorder::start().await;
    let caller_headers = [
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("baggage", "session_id=abc123"),
    ];
    for status in [
        StatusCode::MOVED_PERMANENTLY,
        StatusCode::FOUND,
        StatusCode::SEE_OTHER,
        StatusCode::TEMPORARY_REDIRECT,
        StatusCode::PERMANENT_REDIRECT,
    ] {
        let redirector =
            testkit::fake::redirecting_to(status, &format!("{}/orders", target.url())).await;
        let app = TestApp::start_with(Orders::Fake, &[("ORDER_SERVICE_URL", &redirector)]).await;

        let placed = app.post_order_with(&caller_headers, ORDER).await;
        let read = app.get(&format!("/api/orders/{FAKE_ORDER_ID}")).await;

        for (what, response) in [("POST", &placed), ("GET", &read)] {
            response.assert_error(StatusCode::BAD_GATEWAY, "order_service_error", what);
            assert!(
                response.error_message().contains("redirect"),
                "{status} to {what}: the message says what happened: {}",
                response.body
            );
        }
        assert_eq!(
            target.received().len(),
            0,
            "{status}: nothing (body, traceparent, baggage) reached the redirect's target: {:?}",
            target.received()
        );
    }
}

#[tokio::test]
async fn an_oversized_answer_from_the_order_service_is_a_502_without_reading_it_all() {
    use testkit::fake::{Framing, LargeBody};
    const HUGE: usize = 160 * 1024 * 1024;
    for framing in [Framing::ContentLength, Framing::Chunked] {
        let fake = LargeBody::start(StatusCode::CREATED, HUGE, framing).await;
        let app = TestApp::start_with(Orders::Fake, &[("ORDER_SERVICE_URL", &fake.url())]).await;

        let started = std::time::Instant::now();
        let response = app.post_order(ORDER).await;
        let elapsed = started.elapsed();

        response.assert_error(
            StatusCode::BAD_GATEWAY,
            "order_service_error",
            &format!("{framing:?}"),
        );
        assert!(
            response.error_message().contains("larger than"),
            "{framing:?}: {}",
            response.body
        );
        assert!(
            elapsed < Duration::from_secs(5),
            "{framing:?}: answered at once, not after reading 160 MiB: {elapsed:?}"
        );
        // The default limit is 1 MiB; what else was produced sat in socket buffers.
        assert!(
            fake.produced() < 32 * 1024 * 1024,
            "{framing:?}: the gateway made the neighbour produce {} bytes of {HUGE}",
            fake.produced()
        );
    }
}

#[tokio::test]
async fn the_answer_size_limit_comes_from_the_configuration() {
    use testkit::fake::{Framing, LargeBody};
    // (the limit, whether a 4096-byte answer is over it)
    for (limit, over) in [("4095", true), ("4096", false)] {
        let fake = LargeBody::start(StatusCode::CREATED, 4096, Framing::Chunked).await;
        let app = TestApp::start_with(
            Orders::Fake,
            &[
                ("ORDER_SERVICE_URL", &fake.url()),
                ("UPSTREAM_RESPONSE_LIMIT_BYTES", limit),
            ],
        )
        .await;

        let response = app.post_order(ORDER).await;

        // Within the limit the answer is read, and found not to be an order.
        response.assert_error(StatusCode::BAD_GATEWAY, "order_service_error", limit);
        assert_eq!(
            response.error_message().contains("larger than"),
            over,
            "limit {limit}: {}",
            response.body
        );
    }
}
