//! `cargo xtask run`, driven as a user drives it: start it, place an order with an HTTP
//! client, read the waterfall it prints, press Ctrl-C (SIGINT), and check that everything it
//! started has stopped.

use std::{
    io::{BufRead, BufReader},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc::{self, Receiver},
    time::{Duration, Instant},
};

use e2e::ORDER_TRACE_SPANS;
use serde_json::json;
use testkit::db::TestDatabase;

/// The first run builds the binaries (and trace-view), which takes minutes on a small machine.
const START_TIMEOUT: Duration = Duration::from_mins(15);
const PATIENCE: Duration = Duration::from_secs(30);

/// The workspace's `target/<profile>`, where this test's own executable lives (in `deps/`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .to_path_buf()
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port")
        .port()
}

/// The xtask process, with its output read line by line on a thread.
struct LocalRun {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl LocalRun {
    fn start(args: &[String]) -> Self {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "xtask"]);
        if profile_dir().ends_with("release") {
            build.arg("--release");
        }
        assert!(
            build.status().expect("running cargo build").success(),
            "building xtask failed"
        );
        let mut child = Command::new(profile_dir().join("xtask"))
            .arg("run")
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting xtask run");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("| {line}");
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        LocalRun {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one satisfies `done`; returns the lines read on the way, that one
    /// included.
    fn read_until(&mut self, timeout: Duration, done: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut read = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    let found = done(&line);
                    read.push(line);
                    if found {
                        return read;
                    }
                }
                Err(e) => panic!(
                    "xtask run: {e} while waiting; its output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -INT failed");
    }
}

impl Drop for LocalRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one run of the local flow, from start to Ctrl-C, checked as a user would read its output"
)]
async fn the_local_run_prints_the_waterfall_of_an_order_and_stops_cleanly_on_ctrl_c() {
    // A database of the test's own, empty: xtask reuses it, the services migrate it, and the
    // guard drops it at the end.
    let db = TestDatabase::create().await;
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let address = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let mut run = LocalRun::start(&[
        "--database".into(),
        db.name().into(),
        "--gateway".into(),
        address(0),
        "--order-service".into(),
        address(1),
        "--payment-service".into(),
        address(2),
        "--otlp-grpc".into(),
        address(3),
        "--otlp-http".into(),
        address(4),
        "--logs".into(),
        format!("target/xtask-run-{}", db.name()),
    ]);
    let start = run.read_until(START_TIMEOUT, |l| l.starts_with("xtask: ready"));
    for service in ["payment-service", "order-service", "gateway"] {
        assert!(
            start
                .iter()
                .any(|l| l.starts_with(&format!("xtask: {service}")) && l.contains("http://")),
            "no address printed for {service}:\n{}",
            start.join("\n")
        );
    }

    let response = reqwest::Client::new()
        .post(format!("http://{}/api/orders", address(0)))
        .json(&json!({"user_id": 1, "amount": 42.50, "currency": "USD", "tier": "gold"}))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.expect("a JSON body");
    let trace_id = body["trace_id"].as_str().expect("a trace id").to_owned();

    let header = format!("Trace ID: {trace_id}");
    run.read_until(PATIENCE, |l| l.contains(&header));
    let waterfall = run.read_until(PATIENCE, |l| l.starts_with("bottleneck"));
    let text = waterfall.join("\n");
    assert!(
        waterfall
            .iter()
            .any(|l| l.starts_with("critical path:") && l.ends_with("call_stripe_api")),
        "{text}"
    );
    assert!(
        waterfall
            .last()
            .is_some_and(|l| l.starts_with("bottleneck call_stripe_api (payment-service)")),
        "{text}"
    );
    let span_lines = waterfall
        .iter()
        .filter(|l| {
            ["gateway", "order-service", "payment-service"]
                .iter()
                .any(|s| l.contains(s))
        })
        .filter(|l| {
            ["SERVER", "CLIENT", "INTERNAL"]
                .iter()
                .any(|k| l.contains(k))
        })
        .count();
    assert_eq!(span_lines, ORDER_TRACE_SPANS, "{text}");

    run.interrupt();
    let stopped = run.read_until(PATIENCE, |l| l.starts_with("xtask: trace-view stopped"));
    for service in ["gateway", "order-service", "payment-service"] {
        assert!(
            stopped
                .iter()
                .any(|l| l == &format!("xtask: {service} stopped")),
            "{service} did not stop cleanly:\n{}",
            stopped.join("\n")
        );
    }
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = run.child.try_wait().expect("polling xtask") {
            break status;
        }
        assert!(Instant::now() < deadline, "xtask did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "xtask run exited with {status}");
    for i in 0..3 {
        assert!(
            TcpStream::connect(address(i)).is_err(),
            "something still listens on {}",
            address(i)
        );
    }
}
