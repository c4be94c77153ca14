//! Starts what an end-to-end test needs: a fresh Postgres database, the three real service
//! binaries as separate processes, and an in-process OTLP receiver they export to. The
//! database, the receiver and the TCP proxy are `testkit`'s; what is here is the binaries and
//! how they are wired to each other, as in compose.
//!
//! ```no_run
//! # async fn example() {
//! let system = e2e::harness::System::start().await;
//! let response = system.post_order(serde_json::json!({"user_id": 1, "amount": 42.50})).await;
//! let spans = system.receiver.wait_for_trace(response.trace_id(), e2e::ORDER_TRACE_SPANS, e2e::harness::PATIENCE).await;
//! # }
//! ```
//!
//! The binaries are built (if they are out of date) by running `cargo build` once per test
//! process, so `cargo test -p e2e` alone always tests the current code. Each service listens
//! on port 0 and reports the port it got in its "listening" log line, which the harness reads;
//! no port is guessed, so tests can run in parallel.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use serde_json::Value;
use testkit::{
    CHARGE_SIGNING_KEY, db::TestDatabase, otlp::OtlpReceiver, proxy::TcpProxy,
    response::TestResponse,
};

/// How long a test waits for something that should happen promptly (spans to arrive, a
/// service to start). Generous: CI machines are slow and busy.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// One of the three service binaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binary {
    Gateway,
    OrderService,
    PaymentService,
}

impl Binary {
    pub const ALL: [Binary; 3] = [
        Binary::Gateway,
        Binary::OrderService,
        Binary::PaymentService,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Binary::Gateway => "gateway",
            Binary::OrderService => "order-service",
            Binary::PaymentService => "payment-service",
        }
    }

    /// The binary's path, built first if needed (once per test process).
    fn path(self) -> PathBuf {
        static BUILT: OnceLock<PathBuf> = OnceLock::new();
        let dir = BUILT.get_or_init(|| {
            // The test executable is target/<profile>/deps/e2e-…; the binaries are in
            // target/<profile>.
            let exe = std::env::current_exe().expect("the test's own path");
            let dir = exe
                .parent()
                .and_then(|deps| deps.parent())
                .expect("target/<profile>/deps")
                .to_path_buf();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let mut build = Command::new(cargo);
            build.args([
                "build",
                "--bins",
                "-p",
                "gateway",
                "-p",
                "order-service",
                "-p",
                "payment-service",
            ]);
            if dir.file_name().is_some_and(|p| p == "release") {
                build.arg("--release");
            }
            let status = build.status().expect("running cargo build");
            assert!(status.success(), "building the service binaries failed");
            dir
        });
        dir.join(self.name())
    }
}

/// A running service process. Killed when dropped.
pub struct Service {
    binary: Binary,
    child: Child,
    address: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Starts `binary` with exactly the environment `env` (nothing is inherited, so a
    /// developer's own `OTEL_*` or `DATABASE_URL` cannot leak into a test), plus the test
    /// defaults of what `env` leaves out (`LISTEN_ADDR`, the shared `CHARGE_SIGNING_KEY`),
    /// and waits until it is listening.
    pub async fn start(binary: Binary, env: &HashMap<String, String>) -> Self {
        let mut command = Command::new(binary.path());
        command.env_clear().envs(env).env(
            "LISTEN_ADDR",
            env.get("LISTEN_ADDR").map_or("127.0.0.1:0", String::as_str),
        );
        if binary != Binary::Gateway {
            command.env(
                "CHARGE_SIGNING_KEY",
                env.get("CHARGE_SIGNING_KEY")
                    .map_or(CHARGE_SIGNING_KEY, String::as_str),
            );
        }
        let mut child = command
            .env("LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.name()));
        let logs = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().expect("piped stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("piped stderr")),
        ] {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    logs.lock().expect("log lock").push(line);
                }
            });
        }
        let mut service = Service {
            binary,
            child,
            address: String::new(),
            logs,
        };
        service.address = service.wait_until_listening().await;
        service
    }

    async fn wait_until_listening(&mut self) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let found = self.log_lines().into_iter().find_map(|line| {
                (line["message"] == "listening")
                    .then(|| line["address"].as_str().map(str::to_owned))?
            });
            if let Some(address) = found {
                return address;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited with {status} before listening:\n{}",
                    self.binary.name(),
                    self.logs().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start listening within {PATIENCE:?}:\n{}",
                self.binary.name(),
                self.logs().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn port(&self) -> u16 {
        self.address
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("host:port")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in KiB, from `/proc` (Linux).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Every line the process has written so far, stdout and stderr.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("log lock").clone()
    }

    /// The lines that are JSON objects (the services log JSON lines in tests).
    pub fn log_lines(&self) -> Vec<Value> {
        self.logs()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// Sends SIGTERM and waits for the process to exit (a clean stop).
    pub async fn terminate(&mut self) -> ExitStatus {
        self.send_sigterm();
        self.wait_for_exit(PATIENCE).await
    }

    /// Sends SIGTERM, without waiting: the service starts its clean stop.
    pub fn send_sigterm(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM {pid} failed");
    }

    /// Waits for the process to exit by itself.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("polling the child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}:\n{}",
                self.binary.name(),
                self.logs().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process at once (SIGKILL): a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What to change from the defaults when starting a [`System`].
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Extra environment variables per service (override the harness's defaults).
    pub env: HashMap<Binary, Vec<(String, String)>>,
    /// Connect the services to Postgres through a [`TcpProxy`] the test can cut.
    pub database_proxy: bool,
}

impl Options {
    #[must_use]
    pub fn with_database_proxy(mut self) -> Self {
        self.database_proxy = true;
        self
    }

    #[must_use]
    pub fn env(mut self, binary: Binary, name: &str, value: &str) -> Self {
        self.env
            .entry(binary)
            .or_default()
            .push((name.to_owned(), value.to_owned()));
        self
    }

    /// `name=value` on all three services.
    #[must_use]
    pub fn everywhere(self, name: &str, value: &str) -> Self {
        Binary::ALL
            .into_iter()
            .fold(self, |options, binary| options.env(binary, name, value))
    }
}

/// The whole system: database, receiver and the three services, wired as in compose.
pub struct System {
    pub receiver: OtlpReceiver,
    pub db: TestDatabase,
    pub payments: Service,
    pub orders: Service,
    pub gateway: Service,
    pub http: reqwest::Client,
    /// Between the services and Postgres, with [`Options::with_database_proxy`].
    pub db_proxy: Option<TcpProxy>,
    options: Options,
}

impl System {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let receiver = OtlpReceiver::start().await;
        let db = TestDatabase::create().await;
        let db_proxy = if options.database_proxy {
            Some(TcpProxy::start(db.server_address()).await)
        } else {
            None
        };
        let wiring = Wiring {
            receiver: &receiver,
            database_url: database_url(&db, db_proxy.as_ref()),
            options: &options,
        };
        let payments = Service::start(
            Binary::PaymentService,
            &wiring.env(Binary::PaymentService, None),
        )
        .await;
        let orders = Service::start(
            Binary::OrderService,
            &wiring.env(Binary::OrderService, Some(&payments)),
        )
        .await;
        let gateway =
            Service::start(Binary::Gateway, &wiring.env(Binary::Gateway, Some(&orders))).await;
        System {
            receiver,
            db,
            payments,
            orders,
            gateway,
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("a plain client"),
            db_proxy,
            options,
        }
    }

    /// Restarts the payment service (after `payments.kill()` or `terminate()`), on its old
    /// port, so the order service finds it where it was.
    pub async fn restart_payments(&mut self) {
        let wiring = Wiring {
            receiver: &self.receiver,
            database_url: database_url(&self.db, self.db_proxy.as_ref()),
            options: &self.options,
        };
        let mut env = wiring.env(Binary::PaymentService, None);
        env.insert(
            "LISTEN_ADDR".into(),
            format!("127.0.0.1:{}", self.payments.port()),
        );
        self.payments = Service::start(Binary::PaymentService, &env).await;
    }

    pub async fn post_order(&self, body: Value) -> TestResponse {
        self.post_order_with_headers(body, &[]).await
    }

    pub async fn post_order_with_headers(
        &self,
        body: Value,
        headers: &[(&str, &str)],
    ) -> TestResponse {
        let mut request = self
            .http
            .post(format!("{}/api/orders", self.gateway.url()))
            .json(&body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        TestResponse::from_reqwest(request.send().await.expect("the gateway answers")).await
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        let response = self
            .http
            .get(format!("{}{path}", self.gateway.url()))
            .send()
            .await
            .expect("the gateway answers");
        TestResponse::from_reqwest(response).await
    }
}

/// The database URL the services get: direct, or through the test's proxy.
fn database_url(db: &TestDatabase, proxy: Option<&TcpProxy>) -> String {
    proxy.map_or_else(|| db.url().to_owned(), |p| db.url_through(p.address()))
}

/// What a service is connected to, as in compose.
struct Wiring<'a> {
    receiver: &'a OtlpReceiver,
    database_url: String,
    options: &'a Options,
}

impl Wiring<'_> {
    fn env(&self, binary: Binary, downstream: Option<&Service>) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = HashMap::new();
        let mut set = |k: &str, v: &str| {
            env.insert(k.to_owned(), v.to_owned());
        };
        // The gateway exports over gRPC, the others over HTTP: every run exercises both.
        if binary == Binary::Gateway {
            set("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
            set(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                &self.receiver.grpc_endpoint(),
            );
        } else {
            set("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
            set(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                &self.receiver.http_endpoint(),
            );
        }
        // Export quickly, so tests do not wait the default five seconds for a batch.
        set("OTEL_BSP_SCHEDULE_DELAY", "100");
        set("RUST_LOG", "info");
        set("RUST_BACKTRACE", "1");
        match binary {
            Binary::Gateway => set(
                "ORDER_SERVICE_URL",
                &downstream
                    .expect("the gateway calls the order service")
                    .url(),
            ),
            Binary::OrderService => {
                set("DATABASE_URL", &self.database_url);
                set(
                    "PAYMENT_SERVICE_URL",
                    &downstream
                        .expect("the order service calls the payment service")
                        .url(),
                );
            }
            Binary::PaymentService => set("DATABASE_URL", &self.database_url),
        }
        for (k, v) in self.options.env.get(&binary).into_iter().flatten() {
            env.insert(k.clone(), v.clone());
        }
        env
    }
}
