//! The Jaeger client and the command line around it, against a fake Jaeger v2 query API on a
//! free local port: the v3 envelope, the 404 body of a missing trace, a slow answer, a closed
//! port, malformed JSON, and the exit codes the binary maps them to.

// The fake is Jaeger, not one of the services: its path extractor may answer in plain text,
// as the workspace's rule against `axum::extract::Path` (clippy.toml) is for the services.
#![allow(clippy::disallowed_types)]

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use trace_view::ReceivedSpan;
use trace_view::jaeger::{FetchError, Timeouts, fetch_trace};

const BIN: &str = env!("CARGO_BIN_EXE_trace-view");
const FOUND: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const MISSING: &str = "0af7651916cd43dd8448eb211c80319c";
const SLOW: &str = "11111111111111111111111111111111";
const MALFORMED: &str = "22222222222222222222222222222222";
/// A span of `service` in the trace Jaeger has stored.
fn span(
    id: &str,
    parent: Option<&str>,
    service: &str,
    name: &str,
    start: u64,
    end: u64,
) -> ReceivedSpan {
    ReceivedSpan {
        trace_id: FOUND.to_owned(),
        ..ReceivedSpan::for_test(id, parent, name, start, end).in_service(service)
    }
}

fn stored_trace() -> Vec<ReceivedSpan> {
    vec![
        span("a", None, "gateway", "POST /api/orders", 0, 166),
        span("b", Some("a"), "payment-service", "charge_card", 10, 160),
        span(
            "c",
            Some("b"),
            "payment-service",
            "call_stripe_api",
            12,
            158,
        ),
    ]
}

async fn jaeger_trace(Path(id): Path<String>) -> Response {
    match id.as_str() {
        FOUND => {
            let body = serde_json::json!({ "result": trace_view::json::encode(&stored_trace()) });
            axum::Json(body).into_response()
        }
        SLOW => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
        MALFORMED => (StatusCode::OK, "{\"result\": {\"resourceSpans\": [").into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            [("content-type", "application/json")],
            r#"{"error":{"httpCode":404,"message":"No traces found"}}"#,
        )
            .into_response(),
    }
}

/// Serves `router` on a free port; returns its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the fake Jaeger");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

async fn fake_jaeger() -> String {
    serve(Router::new().route("/api/v3/traces/{id}", get(jaeger_trace))).await
}

async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let addr = listener.local_addr().expect("its address");
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn the_v3_envelope_is_fetched_and_decoded() {
    let jaeger = fake_jaeger().await;
    let spans = fetch_trace(&format!("{jaeger}/"), FOUND, Timeouts::default())
        .await
        .expect("the trace");
    assert_eq!(spans, stored_trace());
}

#[tokio::test]
async fn each_failure_is_its_own_error_naming_jaeger() {
    let jaeger = fake_jaeger().await;
    let error = fetch_trace(&jaeger, MISSING, Timeouts::default())
        .await
        .expect_err("a missing trace");
    assert!(matches!(error, FetchError::NotFound { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("trace {MISSING} not found in Jaeger at {jaeger}")
    );

    let error = fetch_trace(&jaeger, MALFORMED, Timeouts::default())
        .await
        .expect_err("malformed JSON");
    assert!(matches!(error, FetchError::Malformed { .. }), "{error:?}");
    assert!(
        error.to_string().starts_with(&format!(
            "the answer of {jaeger}/api/v3/traces/{MALFORMED} is not OTLP JSON"
        )),
        "{error}"
    );

    let timeouts = Timeouts {
        connect: Duration::from_secs(1),
        total: Duration::from_millis(300),
    };
    let started = Instant::now();
    let error = fetch_trace(&jaeger, SLOW, timeouts)
        .await
        .expect_err("a slow answer");
    assert!(matches!(error, FetchError::Timeout { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let closed = closed_port().await;
    let error = fetch_trace(&closed, FOUND, Timeouts::default())
        .await
        .expect_err("nothing listens");
    assert!(matches!(error, FetchError::Unreachable { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("Jaeger at {closed} is unreachable: ")),
        "{error}"
    );

    // A 404 that is not Jaeger's (a wrong URL, a proxy) is not "trace not found".
    let not_jaeger = serve(Router::new()).await;
    let error = fetch_trace(&not_jaeger, FOUND, Timeouts::default())
        .await
        .expect_err("not a Jaeger");
    assert!(
        matches!(error, FetchError::Status { status: 404, .. }),
        "{error:?}"
    );

    let error = fetch_trace("https://localhost:16686", FOUND, Timeouts::default())
        .await
        .expect_err("https");
    assert!(matches!(error, FetchError::BadUrl { .. }), "{error:?}");
}

/// Runs the binary with `args` (and `JAEGER_URL` unset unless given); returns exit code,
/// stdout and stderr.
async fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(args)
        .env_remove("JAEGER_URL")
        .env_remove("COLUMNS")
        .env_remove("NO_COLOR");
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().await.expect("run trace-view");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "a table of Jaeger answers, one per exit code, with the check each row shares"
)]
async fn the_binary_draws_the_trace_and_exits_with_a_code_per_failure() {
    let jaeger = fake_jaeger().await;
    let closed = closed_port().await;

    let (code, stdout, stderr) = run(&["--jaeger", &jaeger, &FOUND.to_uppercase()], &[]).await;
    assert_eq!(code, Some(0), "{stderr}");
    println!("{stdout}");
    assert!(
        stdout.starts_with(&format!("Trace ID: {FOUND} · 166 ms · 3 spans\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains("critical path: POST /api/orders > charge_card > call_stripe_api\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("bottleneck call_stripe_api (payment-service): 146 ms of 166 ms (88%)\n"),
        "{stdout}"
    );
    for line in stdout.lines() {
        assert!(line.chars().count() <= 80, "{line:?}");
    }

    // JAEGER_URL is the default of --jaeger; --json is one object.
    let (code, stdout, stderr) = run(&[FOUND, "--json"], &[("JAEGER_URL", &jaeger)]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(json["trace_id"], FOUND);
    assert_eq!(json["bottleneck"]["name"], "call_stripe_api");
    assert_eq!(json["critical_path"].as_array().map(Vec::len), Some(3));

    for (args, expected_code, expected_stderr) in [
        (
            vec!["--jaeger", &jaeger, MISSING],
            1,
            format!("trace-view: trace {MISSING} not found in Jaeger at {jaeger}\n"),
        ),
        (
            vec!["--jaeger", &closed, FOUND],
            3,
            format!("trace-view: Jaeger at {closed} is unreachable: "),
        ),
        (
            vec!["--jaeger", &jaeger, "--timeout", "1", SLOW],
            3,
            format!("trace-view: Jaeger at {jaeger} did not answer within 1s\n"),
        ),
        (
            vec!["--jaeger", &jaeger, MALFORMED],
            4,
            format!("trace-view: the answer of {jaeger}/api/v3/traces/{MALFORMED} is not OTLP JSON"),
        ),
        (
            vec!["4bf92f35"],
            2,
            "error: invalid value '4bf92f35' for '[TRACE_ID]': not a trace id: expected 32 hex characters, got 8\n".to_owned(),
        ),
        (
            vec!["00000000000000000000000000000000"],
            2,
            "error: invalid value '00000000000000000000000000000000' for '[TRACE_ID]': not a trace id: all zeros".to_owned(),
        ),
        (vec![], 2, "error: the following required arguments were not provided".to_owned()),
        (
            vec!["--file", "/nonexistent/trace.json"],
            5,
            "trace-view: cannot read /nonexistent/trace.json: ".to_owned(),
        ),
    ] {
        let (code, stdout, stderr) = run(&args, &[]).await;
        assert_eq!(code, Some(expected_code), "{args:?}: {stderr}");
        assert!(stderr.starts_with(&expected_stderr), "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}: nothing on stdout");
    }
}

#[tokio::test]
async fn a_file_or_stdin_in_either_wrapper_draws_the_same_waterfall() {
    let dir = std::env::temp_dir().join(format!("trace-view-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bare = dir.join("bare.json");
    let wrapped = dir.join("wrapped.json");
    let broken = dir.join("broken.json");
    let encoded = trace_view::json::encode(&stored_trace());
    std::fs::write(&bare, encoded.to_string()).expect("write");
    std::fs::write(
        &wrapped,
        serde_json::json!({ "result": encoded }).to_string(),
    )
    .expect("write");
    std::fs::write(&broken, "{\"resourceSpans\": 7}").expect("write");

    let (code, from_bare, stderr) = run(&["--file", bare.to_str().unwrap()], &[]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let (code, from_wrapped, _) = run(&["--file", wrapped.to_str().unwrap()], &[]).await;
    assert_eq!(code, Some(0));
    assert_eq!(from_bare, from_wrapped);
    assert!(from_bare.starts_with(&format!("Trace ID: {FOUND}")));

    let mut child = tokio::process::Command::new(BIN)
        .args(["--file", "-", "--width", "120"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run trace-view --file -");
    let mut stdin = child.stdin.take().expect("stdin");
    tokio::io::AsyncWriteExt::write_all(&mut stdin, encoded.to_string().as_bytes())
        .await
        .expect("write stdin");
    drop(stdin);
    let output = child.wait_with_output().await.expect("wait");
    assert!(output.status.success());
    let wide = String::from_utf8_lossy(&output.stdout);
    assert!(wide.lines().any(|l| l.chars().count() > 80), "{wide}");
    assert!(wide.lines().all(|l| l.chars().count() <= 120), "{wide}");

    let (code, _, stderr) = run(&["--file", broken.to_str().unwrap()], &[]).await;
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "trace-view: {} is not OTLP JSON",
            broken.display()
        )),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn help_documents_the_exit_codes_with_an_example() {
    let (code, stdout, _) = run(&["--help"], &[]).await;
    assert_eq!(code, Some(0));
    for needle in [
        "Exit codes:",
        "  1  the trace was not found",
        "  2  usage error",
        "trace-view 4bf92f3577b34da6a3ce929d0e0e4736",
        "[env: JAEGER_URL=]",
        "NO_COLOR",
        "listen",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }
}
