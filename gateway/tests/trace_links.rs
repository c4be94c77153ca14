//! `TRACE_UI_URL`: every answer of the gateway, success or error, links to its trace in the
//! trace UI, in the body (`trace_url`) and in a `Link` header; unsampled traces, which never
//! reach the UI, are not linked.

// Each test crate compiles the support module on its own, and this one uses only part of it.
#[allow(dead_code, unused_imports)]
mod support;

use axum::http::{Method, StatusCode};
use serde_json::json;
use support::{ORDER, Orders, Reply, TestApp, TestResponse};

const UI: &str = "http://localhost:16686";

async fn linked_app() -> TestApp {
    TestApp::start_with(Orders::Fake, &[("TRACE_UI_URL", UI)]).await
}

fn assert_linked(response: &TestResponse, what: &str) {
    let url = format!("{UI}/trace/{}", response.trace_id());
    assert_eq!(
        response.json["trace_url"], url,
        "{what}: the body links to the trace: {}",
        response.body
    );
    assert_eq!(
        response.header("link"),
        Some(format!("<{url}>; rel=\"trace\"").as_str()),
        "{what}: the Link header"
    );
}

#[tokio::test]
async fn a_placed_order_links_to_its_trace() {
    let app = linked_app().await;
    let response = app.post_order(ORDER).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    assert_linked(&response, "201");
    assert_eq!(
        response.json["status"], "confirmed",
        "the body is otherwise unchanged"
    );
}

#[tokio::test]
async fn every_kind_of_error_links_to_its_trace() {
    let app = linked_app().await;
    app.orders.reply_with(Reply::json(
        StatusCode::PAYMENT_REQUIRED,
        &json!({"error": {"code": "payment_declined", "message": "declined"}}),
    ));
    let declined = app.post_order(ORDER).await;
    assert_eq!(declined.status, StatusCode::PAYMENT_REQUIRED);
    assert_linked(&declined, "an error relayed from the order service");

    let malformed = app.post_order("{").await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_linked(&malformed, "a rejected body");

    let bad_id = app.get("/api/orders/not-a-uuid").await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST);
    assert_linked(&bad_id, "a malformed order id");

    let unknown = app.send(Method::GET, "/nowhere", &[], String::new()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_linked(&unknown, "an unknown route");
}

#[tokio::test]
async fn an_unsampled_trace_is_not_linked() {
    let app = linked_app().await;
    let response = app
        .post_order_with(
            &[(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            )],
            ORDER,
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    assert_eq!(response.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(
        response.json.get("trace_url").is_none(),
        "{}",
        response.body
    );
    assert_eq!(response.header("link"), None);
}

#[tokio::test]
async fn without_a_trace_ui_nothing_is_linked() {
    let app = TestApp::start().await;
    let response = app.post_order(ORDER).await;
    assert_eq!(response.status, StatusCode::CREATED);
    assert!(
        response.json.get("trace_url").is_none(),
        "{}",
        response.body
    );
    assert_eq!(response.header("link"), None);
}
