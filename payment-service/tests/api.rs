//! `POST /charge` against a real Postgres database: a charge is made at most once per order,
//! declines are recorded with their reason, and bad requests are refused before anything is
//! written. Each test gets a fresh database with the seeded users (see `migrations/`):
//! user 1 (limit 5000.00), user 5 (limit 25.00), and no user 999.

mod support;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use support::{TestApp, charge_body};
use uuid::Uuid;

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_charge_for_a_seeded_user_succeeds_and_records_one_succeeded_payment(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::new(options);
    let order_id = Uuid::now_v7();

    let response = app.charge(&charge_body(order_id, 1, 4250)).await;

    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.json["status"], "succeeded");
    let charge_id = response.json["charge_id"].as_str().expect("a charge_id");
    assert!(charge_id.starts_with("ch_"), "{charge_id}");
    let payment_id: Uuid = response.json["payment_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("a payment_id that is a UUID");

    let payment = app.only_payment_for(order_id).await;
    assert_eq!(payment.id, payment_id, "the answer names the recorded row");
    assert_eq!(payment.status, "succeeded");
    assert_eq!(payment.processor_charge_id.as_deref(), Some(charge_id));
    assert_eq!(payment.decline_reason, None);
    assert_eq!(
        (
            payment.user_id,
            payment.amount_minor,
            payment.currency.as_str()
        ),
        (1, 4250, "USD")
    );
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn charging_the_same_order_again_replays_the_first_payment(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::new(options);
    let order_id = Uuid::now_v7();
    let body = charge_body(order_id, 1, 4250);

    let first = app.charge(&body).await;
    let second = app.charge(&body).await;

    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(second.json["payment_id"], first.json["payment_id"]);
    assert_eq!(second.json["charge_id"], first.json["charge_id"]);
    assert_eq!(app.payments_for(order_id).await.len(), 1);
    assert_eq!(app.payment_count().await, 1);
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn concurrent_duplicate_charges_of_one_order_make_one_payment_and_one_charge(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::new(options);
    let order_id = Uuid::now_v7();
    let body = charge_body(order_id, 1, 4250);

    // Five retries of one charge arriving together: all of them race to claim the order's
    // payment in Postgres.
    let responses = tokio::join!(
        app.charge(&body),
        app.charge(&body),
        app.charge(&body),
        app.charge(&body),
        app.charge(&body),
    );
    let responses = [
        responses.0,
        responses.1,
        responses.2,
        responses.3,
        responses.4,
    ];

    for (i, response) in responses.iter().enumerate() {
        assert_eq!(
            response.status,
            StatusCode::OK,
            "charge #{i}: {}",
            response.body
        );
        assert_eq!(
            response.json["payment_id"], responses[0].json["payment_id"],
            "charge #{i} names another payment"
        );
        assert_eq!(
            response.json["charge_id"], responses[0].json["charge_id"],
            "charge #{i} names another processor charge"
        );
    }
    let payment = app.only_payment_for(order_id).await;
    assert_eq!(payment.status, "succeeded");
    assert_eq!(
        payment.processor_charge_id.as_deref(),
        responses[0].json["charge_id"].as_str()
    );
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn the_same_order_charged_with_another_amount_is_a_409_conflict(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::new(options);
    let order_id = Uuid::now_v7();
    let first = app.charge(&charge_body(order_id, 1, 4250)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);

    let other_amount = app.charge(&charge_body(order_id, 1, 9999)).await;

    other_amount.assert_error(
        StatusCode::CONFLICT,
        "payment_conflict",
        "another amount for a charged order",
    );
    assert!(
        other_amount.error_message().contains(&order_id.to_string()),
        "the message names the order: {}",
        other_amount.body
    );
    // The first payment is untouched.
    let payment = app.only_payment_for(order_id).await;
    assert_eq!(payment.amount_minor, 4250);
    assert_eq!(payment.status, "succeeded");
    assert_eq!(
        payment.processor_charge_id.as_deref(),
        first.json["charge_id"].as_str()
    );
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_declined_charge_is_a_402_and_is_recorded_with_its_reason(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::new(options);
    // (what is declined, user, amount, card token, the recorded reason)
    let cases: [(&str, i64, i64, Option<&str>, &str); 4] = [
        ("a user who does not exist", 999, 4250, None, "unknown_user"),
        (
            "one cent over user 5's limit of 25.00",
            5,
            2501,
            None,
            "credit_limit_exceeded",
        ),
        (
            "the declined test card",
            1,
            4250,
            Some("tok_chargeDeclined"),
            "card_declined",
        ),
        (
            "the insufficient-funds test card",
            1,
            4250,
            Some("tok_chargeDeclinedInsufficientFunds"),
            "insufficient_funds",
        ),
    ];
    for (case, user_id, amount_minor, card_token, reason) in cases {
        let order_id = Uuid::now_v7();
        let mut body = charge_body(order_id, user_id, amount_minor);
        if let Some(token) = card_token {
            body["card_token"] = json!(token);
        }

        let response = app.charge(&body).await;

        response.assert_error(StatusCode::PAYMENT_REQUIRED, "payment_declined", case);
        assert!(
            response.error_message().contains(reason),
            "{case}: the message gives the reason {reason}: {}",
            response.body
        );
        let payment = app.only_payment_for(order_id).await;
        assert_eq!(payment.status, "declined", "{case}");
        assert_eq!(payment.decline_reason.as_deref(), Some(reason), "{case}");
        assert_eq!(payment.processor_charge_id, None, "{case}");

        // A retry of a declined charge is answered from the record, not charged again.
        let retry = app.charge(&body).await;
        retry.assert_error(
            StatusCode::PAYMENT_REQUIRED,
            "payment_declined",
            &format!("{case}, retried"),
        );
        assert_eq!(
            app.payments_for(order_id).await,
            vec![payment],
            "{case}: a retry leaves the payment as it was"
        );
    }
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn an_amount_equal_to_the_credit_limit_is_charged(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::new(options);
    let order_id = Uuid::now_v7();

    // User 5's limit is 2500 minor units: the limit itself is allowed, one more is not.
    let response = app.charge(&charge_body(order_id, 5, 2500)).await;

    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(app.only_payment_for(order_id).await.status, "succeeded");
    app.close().await;
}

/// A request `POST /charge` must refuse, and how.
struct Invalid {
    case: &'static str,
    content_type: &'static str,
    body: String,
    status: StatusCode,
    code: &'static str,
    /// A word the error message must contain: the field at fault, or the parser's complaint.
    named: &'static str,
}

impl Invalid {
    /// A JSON body refused with 422 `code`, the message naming `field`.
    fn unprocessable(
        case: &'static str,
        body: &Value,
        code: &'static str,
        field: &'static str,
    ) -> Self {
        Invalid {
            case,
            content_type: "application/json",
            body: body.to_string(),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code,
            named: field,
        }
    }
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn invalid_charge_requests_are_refused_with_a_json_error_and_write_nothing(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::new(options);
    let order_id = Uuid::now_v7();
    let with = |field: &str, value: Value| {
        let mut body = charge_body(order_id, 1, 4250);
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = charge_body(order_id, 1, 4250);
        body.as_object_mut().expect("an object").remove(field);
        body
    };
    let cases = [
        Invalid::unprocessable(
            "a zero amount",
            &with("amount_minor", json!(0)),
            "validation_failed",
            "amount_minor",
        ),
        Invalid::unprocessable(
            "a negative amount",
            &with("amount_minor", json!(-4250)),
            "validation_failed",
            "amount_minor",
        ),
        Invalid::unprocessable(
            "a lower-case currency",
            &with("currency", json!("usd")),
            "validation_failed",
            "currency",
        ),
        Invalid::unprocessable(
            "a currency that is not three letters",
            &with("currency", json!("US'; --")),
            "validation_failed",
            "currency",
        ),
        Invalid::unprocessable(
            "a card token with SQL in it",
            &with("card_token", json!("tok'; DROP TABLE payments; --")),
            "validation_failed",
            "card_token",
        ),
        Invalid::unprocessable(
            "a user id of zero",
            &with("user_id", json!(0)),
            "validation_failed",
            "user_id",
        ),
        Invalid::unprocessable(
            "a missing currency",
            &without("currency"),
            "invalid_body",
            "currency",
        ),
        Invalid::unprocessable(
            "a missing order id",
            &without("order_id"),
            "invalid_body",
            "order_id",
        ),
        Invalid::unprocessable(
            "an amount written as a string",
            &with("amount_minor", json!("4250")),
            "invalid_body",
            "amount_minor",
        ),
        Invalid::unprocessable(
            "an amount with a fraction of a minor unit",
            &with("amount_minor", json!(42.5)),
            "invalid_body",
            "amount_minor",
        ),
        Invalid::unprocessable(
            "an amount beyond i64",
            &with("amount_minor", json!(u64::MAX)),
            "invalid_body",
            "amount_minor",
        ),
        Invalid::unprocessable(
            "an order id that is not a UUID",
            &with("order_id", json!("42")),
            "invalid_body",
            "order_id",
        ),
        Invalid {
            case: "malformed JSON",
            content_type: "application/json",
            body: format!(r#"{{"order_id": "{order_id}", "user_id": 1,"#),
            status: StatusCode::BAD_REQUEST,
            code: "malformed_json",
            named: "EOF",
        },
        Invalid {
            case: "an empty body",
            content_type: "application/json",
            body: String::new(),
            status: StatusCode::BAD_REQUEST,
            code: "malformed_json",
            named: "EOF",
        },
        Invalid {
            case: "a body that is not declared as JSON",
            content_type: "text/plain",
            body: charge_body(order_id, 1, 4250).to_string(),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            named: "application/json",
        },
    ];
    for Invalid {
        case,
        content_type,
        body,
        status,
        code,
        named,
    } in cases
    {
        let response = app.charge_raw(content_type, &body).await;

        response.assert_error(status, code, case);
        assert!(
            response.error_message().contains(named),
            "{case}: the message should mention {named:?}: {}",
            response.body
        );
        assert_eq!(app.payment_count().await, 0, "{case}: nothing is written");
    }
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn readyz_is_200_while_the_database_answers(_: PgPoolOptions, options: PgConnectOptions) {
    let app = TestApp::new(options);

    let ready = app.get("/readyz").await;
    let healthy = app.get("/healthz").await;

    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(
        ready.json,
        json!({"status": "ready", "database": "ok"}),
        "{}",
        ready.body
    );
    assert_eq!(healthy.status, StatusCode::OK);
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn unknown_routes_and_wrong_methods_get_json_errors(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::new(options);
    // (request, status, code)
    let cases = [
        (Method::GET, "/charges", StatusCode::NOT_FOUND, "not_found"),
        (Method::POST, "/", StatusCode::NOT_FOUND, "not_found"),
        (
            Method::GET,
            "/charge",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::DELETE,
            "/charge",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::POST,
            "/readyz",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, path, status, code) in cases {
        let case = format!("{method} {path}");
        let response = app.send(method, path, &[], String::new()).await;

        response.assert_error(status, code, &case);
    }
    assert_eq!(app.payment_count().await, 0);
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn malformed_paths_and_oversized_values_are_json_errors_with_short_messages(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::new(options);

    // The payment service has no path parameters: a path that is not UTF-8 once decoded
    // matches no route, and gets the JSON 404.
    let response = app.get("/charge/%FF%FE").await;
    response.assert_error(StatusCode::NOT_FOUND, "not_found", "%FF%FE");

    let body = format!(
        r#"{{"order_id":"{}","user_id":1,"amount_minor":100,"currency":"USD"}}"#,
        "f".repeat(15 * 1024)
    );
    let response = app.charge_raw("application/json", &body).await;
    response.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", "order_id");
    assert!(
        response.body.len() < 600,
        "{} bytes: {}",
        response.body.len(),
        response.body
    );
    assert!(
        response.error_message().starts_with("order_id"),
        "{}",
        response.body
    );
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_charge_the_order_service_did_not_sign_is_refused_recorded_and_claims_no_payment(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::new(options);
    // (what the caller sent as `charge-signature`, the reason recorded)
    let all_zero = format!("v1={}", "0".repeat(64));
    let cases: [(Option<&str>, &str); 3] = [
        (None, "signature_missing"),
        (Some("not-a-signature"), "signature_malformed"),
        (Some(all_zero.as_str()), "signature_mismatch"),
    ];
    for (signature, reason) in cases {
        // An order the order service never stored, so never signed.
        let order_id = Uuid::new_v4();

        let response = app
            .charge_signed(&charge_body(order_id, 1, 4250), signature)
            .await;

        response.assert_error(StatusCode::FORBIDDEN, "charge_not_authorised", reason);
        assert_eq!(
            app.refusals_for(order_id).await,
            [reason],
            "{reason}: the refusal is recorded, with its reason"
        );
        assert_eq!(
            app.payments_for(order_id).await,
            [],
            "{reason}: no payment is claimed, let alone charged"
        );
    }
    assert_eq!(app.payment_count().await, 0);
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_signed_charge_sent_with_another_amount_is_refused_and_the_real_one_still_succeeds(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::new(options);
    let order_id = Uuid::now_v7();
    let signed = charge_body(order_id, 1, 4250);
    let signature = app.signature_for(&signed);
    // A signature taken from a real charge, on other values: the same order for more money,
    // another user's card, another currency.
    let tampered = [
        charge_body(order_id, 1, 499_999),
        charge_body(order_id, 2, 4250),
        {
            let mut body = signed.clone();
            body["currency"] = json!("EUR");
            body
        },
    ];
    for body in &tampered {
        let response = app.charge_signed(body, Some(&signature)).await;
        response.assert_error(
            StatusCode::FORBIDDEN,
            "charge_not_authorised",
            &body.to_string(),
        );
    }
    assert_eq!(
        app.refusals_for(order_id).await,
        ["signature_mismatch"; 3],
        "every tampered charge is recorded"
    );
    assert_eq!(app.payments_for(order_id).await, [], "nothing is claimed");

    // The forged requests came first; the order's own charge is not blocked by them.
    let real = app.charge_signed(&signed, Some(&signature)).await;

    assert_eq!(real.status, StatusCode::OK, "{}", real.body);
    assert_eq!(real.json["status"], "succeeded");
    let payment = app.only_payment_for(order_id).await;
    assert_eq!(
        (payment.amount_minor, payment.status.as_str()),
        (4250, "succeeded")
    );
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn a_malformed_charge_is_refused_for_its_shape_signed_or_not_and_recorded_nowhere(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::new(options);
    let order_id = Uuid::now_v7();
    let zero = charge_body(order_id, 1, 0);
    for signature in [None, Some(app.signature_for(&zero))] {
        let response = app.charge_signed(&zero, signature.as_deref()).await;
        response.assert_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "a zero amount",
        );
    }
    assert_eq!(app.refusals_for(order_id).await, Vec::<String>::new());
    assert_eq!(app.payment_count().await, 0);
    app.close().await;
}

#[sqlx::test(migrator = "common::db::MIGRATOR")]
async fn two_signature_headers_are_a_malformed_signature(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = TestApp::new(options);
    let order_id = Uuid::now_v7();
    let body = charge_body(order_id, 1, 4250);
    let signature = app.signature_for(&body);

    let response = app
        .send(
            Method::POST,
            "/charge",
            &[
                ("content-type", "application/json"),
                ("charge-signature", &signature),
                ("charge-signature", &signature),
            ],
            body.to_string(),
        )
        .await;

    response.assert_error(
        StatusCode::FORBIDDEN,
        "charge_not_authorised",
        "two headers",
    );
    assert_eq!(app.refusals_for(order_id).await, ["signature_malformed"]);
    app.close().await;
}
