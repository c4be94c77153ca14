//! `POST /orders` and `GET /orders/{id}` against a real Postgres database and a fake payment
//! service: an order is saved before it is charged, each payment answer leaves the order in
//! the status that says what happened to the money, an `Idempotency-Key` makes a retry find
//! the order it created instead of charging twice, and bad requests are refused before
//! anything is saved or charged.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use support::{ORDER, Payments, Reply, TestApp, is_trace_id};
use uuid::Uuid;

/// The error body the real payment service sends with a 402.
fn declined_body() -> serde_json::Value {
    json!({
        "error": {"code": "payment_declined", "message": "the payment was declined (card_declined)"},
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    })
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn an_order_is_saved_charged_once_and_answered_201_with_its_location(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::start(options).await;

    let response = app.post_order(ORDER).await;

    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    let order_id = response.order_id();
    assert_eq!(response.json["status"], "confirmed");
    let trace_id = response.json["trace_id"].as_str().unwrap_or_default();
    assert!(is_trace_id(trace_id), "a trace id: {}", response.body);
    assert_eq!(
        response.header("location"),
        Some(format!("/orders/{order_id}").as_str())
    );

    assert_eq!(app.payments.calls(), 1, "charged exactly once");
    assert_eq!(
        app.payments.received(),
        vec![json!({
            "order_id": order_id,
            "user_id": 1,
            "amount_minor": 4250,
            "currency": "USD",
        })],
        "the charge is for this order, in minor units"
    );
    let order = app.order(order_id).await;
    assert_eq!(order.status, "confirmed");
    assert_eq!(order.amount_minor, 4250, "42.50 is 4250 cents");
    assert_eq!((order.user_id, order.currency.as_str()), (1, "USD"));
    assert_eq!(order.trace_id, trace_id, "the row leads to its trace");
    assert_eq!(app.order_count().await, 1);
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_declined_payment_is_a_402_that_names_the_order_and_marks_it_payment_declined(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::start(options).await;
    app.payments
        .reply_with(Reply::Json(StatusCode::PAYMENT_REQUIRED, declined_body()));

    let response = app.post_order(ORDER).await;

    response.assert_error(StatusCode::PAYMENT_REQUIRED, "payment_declined", "declined");
    assert!(
        response.error_message().contains("card_declined"),
        "the payment service's reason is passed on: {}",
        response.body
    );
    let order_id = response.order_id();
    assert_eq!(app.order(order_id).await.status, "payment_declined");
    assert_eq!(app.payments.calls(), 1);
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn an_unreachable_payment_service_is_a_503_and_the_order_is_payment_failed(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::start_with(options, Payments::Down, &[]).await;

    let response = app.post_order(ORDER).await;

    response.assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "payment_unavailable",
        "payment service down",
    );
    // The request never reached the payment service: nothing can have been charged.
    assert_eq!(
        app.order(response.order_id()).await.status,
        "payment_failed"
    );
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_payment_service_error_is_a_502_and_the_order_is_payment_unknown(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::start(options).await;
    app.payments.reply_with(Reply::Json(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"error": {"code": "internal_error", "message": "internal error"}}),
    ));

    let response = app.post_order(ORDER).await;

    response.assert_error(StatusCode::BAD_GATEWAY, "payment_error", "payment 500");
    // The charge may have happened before the payment service failed.
    assert_eq!(
        app.order(response.order_id()).await.status,
        "payment_unknown"
    );
    assert_eq!(app.payments.calls(), 1);
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_payment_call_that_times_out_is_a_504_and_the_order_is_payment_unknown(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::start_with(options, Payments::Fake, &[("PAYMENT_TIMEOUT_MS", "200")]).await;
    app.payments.reply_with(Reply::Slow(Duration::from_secs(2)));

    let started = std::time::Instant::now();
    let response = app.post_order(ORDER).await;

    response.assert_error(
        StatusCode::GATEWAY_TIMEOUT,
        "payment_timeout",
        "slow payment",
    );
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "the call gives up at its timeout, not when the fake answers: {:?}",
        started.elapsed()
    );
    assert_eq!(
        app.order(response.order_id()).await.status,
        "payment_unknown"
    );
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn the_same_idempotency_key_and_body_replay_the_order_without_charging_again(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::start(options).await;
    let key = Some("order-key-1");

    let first = app.post_order_with_key(key, ORDER).await;
    let second = app.post_order_with_key(key, ORDER).await;
    // The same order, spelled differently: 42.5 is 42.50 and USD is the default currency.
    let respelled = app
        .post_order_with_key(key, r#"{"amount":42.5,"user_id":1}"#)
        .await;

    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.header("idempotent-replayed"), None);
    for (case, replay) in [
        ("the same body", &second),
        ("the same order respelled", &respelled),
    ] {
        assert_eq!(
            replay.status,
            StatusCode::CREATED,
            "{case}: {}",
            replay.body
        );
        assert_eq!(replay.order_id(), first.order_id(), "{case}");
        assert_eq!(replay.json["status"], "confirmed", "{case}");
        assert_eq!(replay.header("idempotent-replayed"), Some("true"), "{case}");
        assert_eq!(
            replay.header("location"),
            Some(format!("/orders/{}", first.order_id()).as_str()),
            "{case}"
        );
    }
    assert_eq!(app.payments.calls(), 1, "charged once for three requests");
    assert_eq!(app.order_count().await, 1);
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn the_same_idempotency_key_with_another_order_is_422_idempotency_key_reused(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::start(options).await;
    let key = Some("order-key-2");
    let first = app.post_order_with_key(key, ORDER).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);

    let other = app
        .post_order_with_key(key, r#"{"user_id":1,"amount":42.51,"currency":"USD"}"#)
        .await;

    other.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "another amount under the same key",
    );
    assert_eq!(
        other.order_id(),
        first.order_id(),
        "the error names the order that owns the key"
    );
    assert_eq!(app.payments.calls(), 1, "the second order is not charged");
    assert_eq!(app.order_count().await, 1);
    let order = app.order(first.order_id()).await;
    assert_eq!(
        (order.amount_minor, order.status.as_str()),
        (4250, "confirmed")
    );
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn an_order_whose_payment_is_unknown_is_charged_again_when_retried_with_its_key(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::start(options).await;
    let key = Some("order-key-3");
    app.payments.reply_with(Reply::Json(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"error": {"code": "internal_error", "message": "internal error"}}),
    ));
    let failed = app.post_order_with_key(key, ORDER).await;
    failed.assert_error(StatusCode::BAD_GATEWAY, "payment_error", "first attempt");
    assert_eq!(app.order(failed.order_id()).await.status, "payment_unknown");

    app.payments.reply_with(Reply::Charge);
    let retried = app.post_order_with_key(key, ORDER).await;

    assert_eq!(retried.status, StatusCode::CREATED, "{}", retried.body);
    assert_eq!(retried.order_id(), failed.order_id(), "the same order");
    assert_eq!(retried.json["status"], "confirmed");
    assert_eq!(app.order(failed.order_id()).await.status, "confirmed");
    assert_eq!(app.order_count().await, 1);
    // Charging again is safe because both charges name the same order, which the payment
    // service charges at most once.
    let charges = app.payments.received();
    assert_eq!(charges.len(), 2);
    assert_eq!(charges[0], charges[1], "the retry sends the same charge");
    assert_eq!(charges[0]["order_id"], json!(failed.order_id()));
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_declined_order_retried_with_its_key_is_declined_again_without_a_charge(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::start(options).await;
    let key = Some("order-key-4");
    app.payments
        .reply_with(Reply::Json(StatusCode::PAYMENT_REQUIRED, declined_body()));
    let declined = app.post_order_with_key(key, ORDER).await;
    declined.assert_error(StatusCode::PAYMENT_REQUIRED, "payment_declined", "first");

    app.payments.reply_with(Reply::Charge);
    let retried = app.post_order_with_key(key, ORDER).await;

    retried.assert_error(StatusCode::PAYMENT_REQUIRED, "payment_declined", "retry");
    assert_eq!(retried.order_id(), declined.order_id());
    assert_eq!(
        app.payments.calls(),
        1,
        "a settled decline is not charged again"
    );
    assert_eq!(
        app.order(declined.order_id()).await.status,
        "payment_declined"
    );
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_malformed_idempotency_key_is_refused_with_400(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::start(options).await;
    let too_long = "k".repeat(256);
    // (what is wrong, the key)
    let cases = [
        ("an empty key", ""),
        ("a key with a space", "order key"),
        ("a key of 256 characters", too_long.as_str()),
    ];
    for (case, key) in cases {
        let response = app.post_order_with_key(Some(key), ORDER).await;

        response.assert_error(StatusCode::BAD_REQUEST, "invalid_idempotency_key", case);
    }
    assert_eq!(app.order_count().await, 0);
    assert_eq!(app.payments.calls(), 0);
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn invalid_orders_are_refused_with_the_field_named_and_nothing_saved_or_charged(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::start(options).await;
    let long_token = format!(
        r#"{{"user_id":1,"amount":1,"card_token":"{}"}}"#,
        "a".repeat(65)
    );
    // (what is wrong, body, status, code, the field the message names)
    let cases: [(&str, &str, StatusCode, &str, &str); 17] = [
        (
            "a zero amount",
            r#"{"user_id":1,"amount":0}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "amount",
        ),
        (
            "a negative amount",
            r#"{"user_id":1,"amount":-42.50}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "amount",
        ),
        (
            "a tenth of a cent",
            r#"{"user_id":1,"amount":0.001}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "amount",
        ),
        (
            "an amount far too large",
            r#"{"user_id":1,"amount":1e300}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "amount",
        ),
        (
            "an exponent no amount is written with",
            r#"{"user_id":1,"amount":1e99999}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "amount",
        ),
        (
            "an amount written as a string",
            r#"{"user_id":1,"amount":"42"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "amount",
        ),
        (
            "a null amount",
            r#"{"user_id":1,"amount":null}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "amount",
        ),
        (
            "an unknown currency",
            r#"{"user_id":1,"amount":1,"currency":"XYZ"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "currency",
        ),
        (
            "SQL in the currency",
            r#"{"user_id":1,"amount":1,"currency":"USD'; DROP TABLE orders; --"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "currency",
        ),
        (
            "SQL in the card token",
            r#"{"user_id":1,"amount":1,"card_token":"tok' OR '1'='1"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "card_token",
        ),
        (
            "unicode in the card token",
            r#"{"user_id":1,"amount":1,"card_token":"tok_vïsa"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "card_token",
        ),
        (
            "a card token of 65 characters",
            long_token.as_str(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "card_token",
        ),
        (
            "a missing user_id",
            r#"{"amount":42.50}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "user_id",
        ),
        (
            "a user_id of zero",
            r#"{"user_id":0,"amount":42.50}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "user_id",
        ),
        (
            "an unknown tier",
            r#"{"user_id":1,"amount":42.50,"tier":"diamond"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "tier",
        ),
        (
            "malformed JSON",
            r#"{"user_id":1,"amount":"#,
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "EOF",
        ),
        (
            "NaN, which JSON does not have",
            r#"{"user_id":1,"amount":NaN}"#,
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "line 1",
        ),
    ];
    for (case, body, status, code, field) in cases {
        let response = app.post_order(body).await;

        response.assert_error(status, code, case);
        assert!(
            response.error_message().contains(field),
            "{case}: the message should name {field:?}: {}",
            response.body
        );
        assert_eq!(app.order_count().await, 0, "{case}: nothing is saved");
        assert_eq!(app.payments.calls(), 0, "{case}: nothing is charged");
    }
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_saved_order_reads_back_with_its_amount_as_written(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::start(options).await;
    let created = app.post_order(ORDER).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let order_id = created.order_id();

    let response = app.get(&format!("/orders/{order_id}")).await;

    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert!(
        response.body.contains(r#""amount":42.50"#),
        "two decimals, as a JSON number, not 42.5 or \"42.50\": {}",
        response.body
    );
    assert_eq!(response.json["order_id"], json!(order_id));
    assert_eq!(response.json["user_id"], 1);
    assert_eq!(response.json["currency"], "USD");
    assert_eq!(response.json["status"], "confirmed");
    assert_eq!(response.json["trace_id"], created.json["trace_id"]);
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn reading_an_unknown_or_malformed_order_id_is_a_json_error(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::start(options).await;
    let unknown = Uuid::now_v7();
    // (what is asked for, path, status, code)
    let cases = [
        (
            "an order that does not exist",
            format!("/orders/{unknown}"),
            StatusCode::NOT_FOUND,
            "order_not_found",
        ),
        (
            "an id that is not a UUID",
            "/orders/42".to_owned(),
            StatusCode::BAD_REQUEST,
            "malformed_order_id",
        ),
        (
            "an id with SQL in it",
            "/orders/1%27%20OR%20%271%27=%271".to_owned(),
            StatusCode::BAD_REQUEST,
            "malformed_order_id",
        ),
        (
            "a path under no route",
            "/orders/42/items".to_owned(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (case, path, status, code) in cases {
        let response = app.get(&path).await;

        response.assert_error(status, code, case);
    }
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn an_order_id_that_is_not_utf_8_once_decoded_is_a_json_400_with_a_trace_id(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::start(options).await;

    let response = app.get("/orders/%FF%FE").await;

    response.assert_error(StatusCode::BAD_REQUEST, "invalid_path", "%FF%FE");
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn two_idempotency_keys_are_refused_with_400_and_nothing_saved_or_charged(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::start(options).await;

    let response = app
        .send(
            axum::http::Method::POST,
            "/orders",
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "key-a"),
                ("idempotency-key", "key-b"),
            ],
            ORDER.to_owned(),
        )
        .await;

    response.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_idempotency_key",
        "two keys",
    );
    assert!(
        response.error_message().contains("one Idempotency-Key"),
        "{}",
        response.body
    );
    assert_eq!(app.order_count().await, 0);
    assert_eq!(app.payments.calls(), 0);
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_15_kb_tier_or_currency_is_refused_with_a_short_message(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::start(options).await;
    let long = "A".repeat(15 * 1024);
    // (field, body, what the message still says)
    let cases = [
        (
            "tier",
            format!(r#"{{"user_id":1,"amount":1,"tier":"{long}"}}"#),
            "expected one of `standard`",
        ),
        (
            "currency",
            format!(r#"{{"user_id":1,"amount":1,"currency":"{long}"}}"#),
            "is not a supported ISO 4217 code",
        ),
    ];
    for (field, body, says) in cases {
        let response = app.post_order(&body).await;

        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{field}");
        assert!(
            response.body.len() < 600,
            "{field}: {} bytes",
            response.body.len()
        );
        let message = response.error_message();
        assert!(message.starts_with(field), "{field}: {message}");
        assert!(message.contains(says), "{field}: {message}");
    }
    assert_eq!(app.order_count().await, 0);
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn every_charge_is_signed_for_the_stored_order_with_the_shared_key(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    use common::{api::ChargeRequest, config::Secret, signing::ChargeSigner};
    // A payment service that records the request (and answers nothing useful).
    let payments = testkit::fake::Recorder::start().await;
    let app = TestApp::start_with(
        options,
        Payments::Fake,
        &[("PAYMENT_SERVICE_URL", &payments.url())],
    )
    .await;

    let response = app.post_order(ORDER).await;

    let order_id = response.order_id();
    let received = payments.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let charge: ChargeRequest =
        serde_json::from_slice(&received[0].body).expect("a charge request");
    let stored = app.order(order_id).await;
    assert_eq!(
        (
            charge.order_id.0,
            charge.user_id.0,
            charge.amount_minor,
            charge.currency.as_str()
        ),
        (
            order_id,
            stored.user_id,
            stored.amount_minor,
            stored.currency.as_str()
        ),
        "the charge is the stored order"
    );
    let signature = received[0]
        .headers
        .get("charge-signature")
        .and_then(|v| v.to_str().ok());
    let payment_side = ChargeSigner::new(Secret::new(
        testkit::CHARGE_SIGNING_KEY.parse().expect("a valid key"),
    ));
    assert_eq!(
        payment_side.verify(&charge, signature),
        Ok(()),
        "the payment service, with the shared key, accepts the signature: {signature:?}"
    );
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_redirect_from_the_payment_service_is_a_502_and_nothing_follows_it(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let target = testkit::fake::Recorder::start().await;
    let redirector = testkit::fake::redirecting_to(
        StatusCode::TEMPORARY_REDIRECT,
        &format!("{}/charge", target.url()),
    )
    .await;
    let app = TestApp::start_with(
        options,
        Payments::Fake,
        &[("PAYMENT_SERVICE_URL", &redirector)],
    )
    .await;

    let response = app.post_order(ORDER).await;

    response.assert_error(StatusCode::BAD_GATEWAY, "payment_error", "a 307");
    assert_eq!(
        target.received().len(),
        0,
        "the charge (and its signature) did not reach the redirect's target"
    );
    // Whoever answered the redirect may have charged: the order says so.
    assert_eq!(
        app.order(response.order_id()).await.status,
        "payment_unknown"
    );
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn an_oversized_answer_from_the_payment_service_is_a_502_without_reading_it_all(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    use testkit::fake::{Framing, LargeBody};
    const HUGE: usize = 160 * 1024 * 1024;
    let fakes = [
        LargeBody::start(StatusCode::OK, HUGE, Framing::ContentLength).await,
        LargeBody::start(StatusCode::OK, HUGE, Framing::Chunked).await,
    ];
    for fake in &fakes {
        let app = TestApp::start_with(
            options.clone(),
            Payments::Fake,
            &[("PAYMENT_SERVICE_URL", &fake.url())],
        )
        .await;
        let started = std::time::Instant::now();

        let response = app.post_order(ORDER).await;

        response.assert_error(StatusCode::BAD_GATEWAY, "payment_error", "160 MiB");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "answered at once: {:?}",
            started.elapsed()
        );
        assert!(
            fake.produced() < 32 * 1024 * 1024,
            "the order service made the neighbour produce {} bytes of {HUGE}",
            fake.produced()
        );
        assert_eq!(
            app.order(response.order_id()).await.status,
            "payment_unknown"
        );
        app.close().await;
    }
}
