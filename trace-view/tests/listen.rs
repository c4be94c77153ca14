//! `trace-view listen`, the real binary: traces exported over OTLP/gRPC, OTLP/HTTP protobuf and
//! OTLP/HTTP JSON each come out as exactly one waterfall, late spans as an update, `--save`
//! writes files that `--file` reads back to the same waterfall, and SIGTERM prints what is
//! pending and exits 0.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

const BIN: &str = env!("CARGO_BIN_EXE_trace-view");
const MS: u64 = 1_000_000;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos()
        .try_into()
        .expect("before 2554")
}

/// A two-service trace: a gateway root and a payment-service child, plus `extra` more children.
fn request(trace_byte: u8, extra: usize) -> ExportTraceServiceRequest {
    // One start for every trace of the test run, so a late span fits its trace's timeline.
    static T0: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let t0 = *T0.get_or_init(|| now_ns() - 200 * MS);
    let trace_id = vec![trace_byte; 16];
    let mk = |id: u8, parent: Option<u8>, name: &str, start: u64, end: u64| Span {
        trace_id: trace_id.clone(),
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.to_owned(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: t0 + start * MS,
        end_time_unix_nano: t0 + end * MS,
        ..Default::default()
    };
    let resource = |service: &str, spans: Vec<Span>| ResourceSpans {
        resource: Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".to_owned(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(service.to_owned())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut payment = vec![mk(2, Some(1), "charge_card", 20, 180)];
    for n in 0..extra {
        let id = 10 + u8::try_from(n).expect("a few extra spans");
        payment.push(mk(id, Some(2), "retry", 30, 40));
    }
    ExportTraceServiceRequest {
        resource_spans: vec![
            resource("gateway", vec![mk(1, None, "POST /api/orders", 0, 200)]),
            resource("payment-service", payment),
        ],
    }
}

fn hex_id(byte: u8) -> String {
    format!("{byte:02x}").repeat(16)
}

struct Listener {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    grpc: String,
    http: String,
}

/// Starts `trace-view listen` on free ports and reads the addresses from its first line.
async fn start(extra_args: &[&str]) -> Listener {
    let mut child = Command::new(BIN)
        .args(["listen", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(extra_args)
        .env_remove("NO_COLOR")
        .env_remove("COLUMNS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start trace-view listen");
    let mut stderr: Lines<BufReader<ChildStderr>> =
        BufReader::new(child.stderr.take().expect("stderr")).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), stderr.next_line())
        .await
        .expect("the receiving line within 10 s")
        .expect("read stderr")
        .expect("a line on stderr");
    // trace-view: receiving OTLP on grpc 127.0.0.1:PORT and http 127.0.0.1:PORT/v1/traces
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &words[..5],
        ["trace-view:", "receiving", "OTLP", "on", "grpc"],
        "{line}"
    );
    let grpc = words[5].to_owned();
    let http = words[8].trim_end_matches("/v1/traces").to_owned();
    for addr in [&grpc, &http] {
        assert!(
            addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
            "the real port is shown: {line}"
        );
    }
    // Keep draining stderr so the child never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    Listener {
        child,
        stdout,
        grpc: format!("http://{grpc}"),
        http: format!("http://{http}/v1/traces"),
    }
}

impl Listener {
    /// Reads stdout up to and including the critical-path summary of the next trace.
    async fn next_trace(&mut self) -> String {
        let mut text = String::new();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(10), self.stdout.next_line())
                .await
                .unwrap_or_else(|_| panic!("no complete trace within 10 s; so far:\n{text}"))
                .expect("read stdout")
                .unwrap_or_else(|| panic!("stdout closed; so far:\n{text}"));
            // Traces are separated by an empty line.
            if text.is_empty() && line.is_empty() {
                continue;
            }
            text.push_str(&line);
            text.push('\n');
            if line.starts_with("bottleneck ") {
                return text;
            }
        }
    }

    /// Sends SIGTERM and returns the rest of stdout and the exit status.
    async fn terminate(mut self) -> (String, std::process::ExitStatus) {
        let pid = self.child.id().expect("the child runs").to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(killed.success());
        let mut rest = String::new();
        while let Some(line) =
            tokio::time::timeout(Duration::from_secs(10), self.stdout.next_line())
                .await
                .expect("stdout ends within 10 s of SIGTERM")
                .expect("read stdout")
        {
            rest.push_str(&line);
            rest.push('\n');
        }
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("exits within 10 s of SIGTERM")
            .expect("wait for the child");
        (rest, status)
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "trace-view-{name}-{}-{}",
        std::process::id(),
        now_ns()
    ));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

fn header_of(text: &str) -> &str {
    text.lines()
        .find(|l| l.starts_with("Trace ID: "))
        .unwrap_or_else(|| panic!("no header in:\n{text}"))
}

async fn post(url: &str, content_type: &str, body: Vec<u8>) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("POST /v1/traces")
        .status()
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one receiver fed over its three protocols, with the waterfall each one must print"
)]
async fn one_waterfall_per_trace_over_grpc_http_protobuf_and_http_json() {
    let save = temp_dir("save");
    let mut listener = start(&[
        "--quiet-ms",
        "300",
        "--save",
        save.to_str().expect("utf-8 path"),
    ])
    .await;

    let mut grpc = TraceServiceClient::connect(listener.grpc.clone())
        .await
        .expect("connect over gRPC");
    grpc.export(request(0xa1, 0)).await.expect("gRPC export");
    let first = listener.next_trace().await;

    let status = post(
        &listener.http,
        "application/x-protobuf",
        request(0xb2, 1).encode_to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let second = listener.next_trace().await;

    let json_spans = trace_view::span::decode_request(request(0xc3, 2));
    let body = serde_json::to_vec(&trace_view::json::encode(&json_spans)).expect("encode");
    assert_eq!(post(&listener.http, "application/json", body).await, 200);
    let third = listener.next_trace().await;

    for (text, byte, spans) in [(&first, 0xa1, 2), (&second, 0xb2, 3), (&third, 0xc3, 4)] {
        assert_eq!(
            header_of(text),
            format!("Trace ID: {} · 200 ms · {spans} spans", hex_id(byte)),
            "{text}"
        );
        assert!(
            text.contains("services: gateway, payment-service"),
            "{text}"
        );
        assert!(
            text.contains("critical path: POST /api/orders > charge_card"),
            "{text}"
        );
        assert!(!text.contains('\x1b'), "no colour into a pipe: {text}");
        assert_eq!(text.matches("Trace ID: ").count(), 1, "{text}");
    }
    println!("{first}{second}{third}");

    // A late span for the first trace prints it again, marked.
    let mut late = request(0xa1, 1);
    late.resource_spans.remove(0);
    late.resource_spans[0].scope_spans[0].spans.remove(0);
    grpc.export(late)
        .await
        .expect("gRPC export of the late span");
    let updated = listener.next_trace().await;
    assert!(
        updated.starts_with(&format!(
            "updated: 1 more span arrived for trace {}",
            hex_id(0xa1)
        )),
        "{updated}"
    );
    assert!(updated.contains(" · 3 spans"), "{updated}");

    let (rest, status) = listener.terminate().await;
    assert!(status.success(), "exit status {status}");
    assert_eq!(rest.trim(), "", "nothing was pending");

    // Every printed trace was saved, and --file draws the same waterfall from the file.
    for (byte, printed) in [(0xb2, &second), (0xc3, &third)] {
        let file = save.join(format!("{}.json", hex_id(byte)));
        let output = std::process::Command::new(BIN)
            .arg("--file")
            .arg(&file)
            .env_remove("COLUMNS")
            .output()
            .expect("run trace-view --file");
        assert!(output.status.success(), "{output:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim_end(),
            printed.trim_end(),
            "{} read back",
            file.display()
        );
    }
    let updated_file = save.join(format!("{}.json", hex_id(0xa1)));
    let output = std::process::Command::new(BIN)
        .arg("--json")
        .arg("--file")
        .arg(&updated_file)
        .output()
        .expect("run trace-view --file --json");
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(json["span_count"], 3, "the file holds the updated trace");
    assert_eq!(json["bottleneck"]["name"], "charge_card");
    std::fs::remove_dir_all(&save).ok();
}

#[tokio::test]
async fn sigterm_prints_the_pending_trace_and_exits_0() {
    let mut listener = start(&["--quiet-ms", "60000", "--json"]).await;
    let status = post(
        &listener.http,
        "application/x-protobuf",
        request(0xd4, 0).encode_to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    // Orphans only: the root never comes.
    let mut orphans = request(0xe5, 0);
    orphans.resource_spans.remove(0);
    let status = post(
        &listener.http,
        "application/x-protobuf",
        orphans.encode_to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    // Nothing is printed before the quiet time...
    let early = tokio::time::timeout(Duration::from_millis(500), listener.stdout.next_line()).await;
    assert!(early.is_err(), "printed before the quiet time: {early:?}");

    // ...and everything on SIGTERM.
    let (rest, status) = listener.terminate().await;
    assert!(status.success(), "exit status {status}");
    let traces: Vec<serde_json::Value> = rest
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(traces.len(), 2, "{rest}");
    assert_eq!(traces[0]["trace_id"], hex_id(0xd4));
    assert_eq!(traces[0]["updated"], false);
    assert_eq!(traces[1]["trace_id"], hex_id(0xe5));
    assert_eq!(traces[1]["spans"][0]["place"], "orphan");
    assert_eq!(traces[1]["bottleneck"]["name"], "charge_card");
}

#[tokio::test]
async fn a_port_in_use_is_a_clear_error_with_exit_5() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("its address").to_string();
    let output = Command::new(BIN)
        .args(["listen", "--grpc", &addr, "--http", "127.0.0.1:0"])
        .output()
        .await
        .expect("run trace-view listen");
    assert_eq!(output.status.code(), Some(5), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("OTLP/gRPC on {addr}")),
        "the error names the address: {stderr}"
    );
}
