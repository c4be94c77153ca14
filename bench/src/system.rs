//! The system under test, started as in production: the three release binaries as separate
//! processes, a fresh database, and an OTLP receiver in a process of its own (the bench
//! binary re-executed as `bench receive`), so the CPU each of them spends is measured apart
//! from the load generator's.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use testkit::{
    CHARGE_SIGNING_KEY,
    db::TestDatabase,
    otlp::{OtlpReceiver, ReceiverConfig},
};

/// How long a process may take to start, or to stop cleanly.
const PATIENCE: Duration = Duration::from_secs(20);

/// The three services, in the order they are started (each needs the next one's address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Binary {
    PaymentService,
    OrderService,
    Gateway,
}

impl Binary {
    pub(crate) const ALL: [Binary; 3] = [
        Binary::Gateway,
        Binary::OrderService,
        Binary::PaymentService,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Binary::Gateway => "gateway",
            Binary::OrderService => "order-service",
            Binary::PaymentService => "payment-service",
        }
    }
}

/// Builds the service binaries, in the profile the bench binary itself was built in, with the
/// cargo that runs us (`cargo run` sets `CARGO`), so the benchmark always measures the current
/// code. Numbers are only meaningful from `--release`; `.ci/run`'s smoke run uses the dev
/// build the tests have already made.
pub(crate) fn build_services() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "--bins"]);
    build.args([
        "-p",
        "gateway",
        "-p",
        "order-service",
        "-p",
        "payment-service",
    ]);
    if is_release()? {
        build.arg("--release");
    }
    let status = build.status().context("running cargo build")?;
    if !status.success() {
        bail!("building the service binaries failed ({status})");
    }
    Ok(())
}

/// Whether this is a release build: the binary sits in `target/release`.
pub(crate) fn is_release() -> anyhow::Result<bool> {
    Ok(binary_dir()?.file_name().is_some_and(|d| d == "release"))
}

/// The directory the bench binary is in: `target/release`, where the services are too.
fn binary_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the bench binary's own path")?;
    Ok(exe
        .parent()
        .context("the bench binary has no directory")?
        .to_path_buf())
}

/// A child process, killed when dropped.
pub(crate) struct Process {
    pub name: &'static str,
    child: Child,
}

impl Process {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for the exit: the services flush their spans on the way out.
    pub(crate) fn terminate(&mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + PATIENCE;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("{} did not stop within {PATIENCE:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A started service.
pub(crate) struct Service {
    pub binary: Binary,
    pub process: Process,
    pub url: String,
}

/// How a system starts each of its services: the command that runs `binary`'s role, before
/// its environment and output are set. [`workspace_binary`] for the workspace's services; the
/// Python contrast has its own (`crate::python`), serving the same API.
pub(crate) type Launcher<'a> = &'a dyn Fn(Binary) -> anyhow::Result<Command>;

/// The workspace's own build of `binary`, beside the bench binary.
pub(crate) fn workspace_binary(binary: Binary) -> anyhow::Result<Command> {
    Ok(Command::new(binary_path(binary)?))
}

/// Where the workspace's own build of `binary` is.
pub(crate) fn binary_path(binary: Binary) -> anyhow::Result<PathBuf> {
    Ok(binary_dir()?.join(binary.name()))
}

impl Service {
    /// Starts `command` in `binary`'s role with exactly `env` (nothing inherited), its output
    /// in `log`, and waits for its "listening" line, which names the port it got.
    fn start(
        binary: Binary,
        mut command: Command,
        env: &HashMap<String, String>,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = command
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", binary.name()))?;
        let mut process = Process {
            name: binary.name(),
            child,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let address = text.lines().find_map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).ok()?;
                (v["message"] == "listening").then(|| v["address"].as_str().map(str::to_owned))?
            });
            if let Some(address) = address {
                return Ok(Service {
                    binary,
                    process,
                    url: format!("http://{address}"),
                });
            }
            if let Some(status) = process.child.try_wait()? {
                bail!(
                    "{} exited with {status} before listening; see {}",
                    binary.name(),
                    log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen within {PATIENCE:?}; see {}",
                    binary.name(),
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The OTLP receiver, in its own process: `bench receive`.
pub(crate) struct Receiver {
    pub process: Process,
    pub grpc_endpoint: String,
    pub http_endpoint: String,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Receiver {
    pub(crate) fn start() -> anyhow::Result<Receiver> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("receive")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the receiver process")?;
        let stdin = child.stdin.take().context("the receiver's stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("the receiver's stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let ["grpc", grpc_endpoint, "http", http_endpoint] =
            line.split_whitespace().collect::<Vec<_>>()[..]
        else {
            bail!("the receiver did not say where it listens: {line:?}");
        };
        let (grpc_endpoint, http_endpoint) = (grpc_endpoint.to_owned(), http_endpoint.to_owned());
        Ok(Receiver {
            process: Process {
                name: "receiver",
                child,
            },
            grpc_endpoint,
            http_endpoint,
            stdin,
            stdout,
        })
    }

    /// How many spans it has received so far.
    pub(crate) fn spans_received(&mut self) -> anyhow::Result<u64> {
        writeln!(self.stdin, "count")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        line.trim()
            .parse()
            .with_context(|| format!("the receiver answered {line:?}"))
    }
}

/// `bench receive`: runs the workspace's OTLP receiver, counting spans without keeping them;
/// prints `grpc <endpoint> http <endpoint>`, then answers each `count` line on stdin with the
/// number of spans received; exits at the end of stdin (when the benchmark drops it).
pub(crate) async fn receive() -> anyhow::Result<()> {
    // Counting only: the receiver stands in for a collector elsewhere, and what it spends
    // here is taken from the services it measures.
    let config = ReceiverConfig {
        keep_spans: false,
        ..ReceiverConfig::default()
    };
    let receiver = std::sync::Arc::new(
        OtlpReceiver::bind(config)
            .await
            .context("binding the OTLP receiver")?,
    );
    println!(
        "grpc {} http {}",
        receiver.grpc_endpoint(),
        receiver.http_endpoint()
    );
    let shared = receiver.clone();
    // Blocking reads of stdin on a thread of their own: the servers keep the runtime's workers.
    let reader = tokio::task::spawn_blocking(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if line.trim() == "count" {
                println!("{}", shared.spans_received());
            }
        }
    });
    reader.await?;
    Ok(())
}

/// How a scenario configures the services' telemetry.
pub(crate) type TelemetryEnv = &'static [(&'static str, &'static str)];

/// A new database with the schema already in it, from the migrations the Rust services run
/// at startup: for them a head start, for the Python contrast the only way to get the same
/// tables.
async fn fresh_database() -> anyhow::Result<TestDatabase> {
    let db = TestDatabase::create().await;
    common::db::MIGRATOR
        .run(db.pool())
        .await
        .context("migrating the benchmark's database")?;
    Ok(db)
}

/// Database, receiver and the three services, wired as in compose.
pub(crate) struct System {
    pub services: Vec<Service>,
    pub receiver: Receiver,
    pub db: TestDatabase,
}

impl System {
    /// Starts the receiver, a fresh database and the three services `launch` runs, each
    /// given the next one's address.
    pub(crate) async fn start(
        telemetry: TelemetryEnv,
        logs: &Path,
        launch: Launcher<'_>,
    ) -> anyhow::Result<System> {
        std::fs::create_dir_all(logs)?;
        let receiver = Receiver::start()?;
        let db = fresh_database().await?;
        let mut services: Vec<Service> = Vec::new();
        let protocol = telemetry
            .iter()
            .find_map(|(k, v)| (*k == "OTEL_EXPORTER_OTLP_PROTOCOL").then_some(*v))
            .unwrap_or("http/protobuf");
        for binary in [
            Binary::PaymentService,
            Binary::OrderService,
            Binary::Gateway,
        ] {
            let mut env: HashMap<String, String> = [
                ("LISTEN_ADDR", "127.0.0.1:0"),
                ("LOG_FORMAT", "json"),
                ("RUST_LOG", "info"),
                // The specification's default protocol, as compose uses; a scenario may say
                // `grpc`, and then the endpoint follows it.
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    match protocol {
                        "grpc" => receiver.grpc_endpoint.as_str(),
                        _ => receiver.http_endpoint.as_str(),
                    },
                ),
                // The simulated card processor answers at once: the numbers are the stack's.
                ("PROCESSOR_LATENCY_MS", "0"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            match binary {
                Binary::PaymentService => {
                    env.insert("DATABASE_URL".into(), db.url().to_owned());
                    env.insert("CHARGE_SIGNING_KEY".into(), CHARGE_SIGNING_KEY.to_owned());
                }
                Binary::OrderService => {
                    env.insert("DATABASE_URL".into(), db.url().to_owned());
                    env.insert("CHARGE_SIGNING_KEY".into(), CHARGE_SIGNING_KEY.to_owned());
                    env.insert("PAYMENT_SERVICE_URL".into(), services[0].url.clone());
                }
                Binary::Gateway => {
                    env.insert("ORDER_SERVICE_URL".into(), services[1].url.clone());
                }
            }
            for (k, v) in telemetry {
                env.insert((*k).to_owned(), (*v).to_owned());
            }
            let log = logs.join(format!("{}.log", binary.name()));
            services.push(Service::start(binary, launch(binary)?, &env, &log)?);
        }
        Ok(System {
            services,
            receiver,
            db,
        })
    }

    pub(crate) fn gateway_url(&self) -> &str {
        &self.service(Binary::Gateway).url
    }

    pub(crate) fn service(&self, binary: Binary) -> &Service {
        self.services
            .iter()
            .find(|s| s.binary == binary)
            .expect("all three services run")
    }

    /// Spans the services' SDKs gave up on, summed over the three (`spans_lost_total` in
    /// their `/metrics`).
    pub(crate) async fn spans_lost(&self, http: &reqwest::Client) -> anyhow::Result<u64> {
        let mut total = 0;
        for service in &self.services {
            let text = http
                .get(format!("{}/metrics", service.url))
                .send()
                .await?
                .error_for_status()?
                .text()
                .await?;
            total += parse_spans_lost(&text);
        }
        Ok(total)
    }

    /// The Postgres backends serving this database.
    pub(crate) async fn postgres_backends(&self) -> anyhow::Result<Vec<u32>> {
        let pids: Vec<i32> =
            sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = $1")
                .bind(self.db.name())
                .fetch_all(self.db.pool())
                .await?;
        Ok(pids
            .into_iter()
            .filter_map(|p| u32::try_from(p).ok())
            .collect())
    }

    /// Stops the services cleanly (their spans are flushed), then reads the receiver's count.
    pub(crate) fn stop(mut self) -> anyhow::Result<(u64, TestDatabase)> {
        // The gateway first, as a load balancer would drain it; then the ones behind it.
        for service in self.services.iter_mut().rev() {
            service.process.terminate()?;
        }
        let received = self.receiver.spans_received()?;
        Ok((received, self.db))
    }
}

/// Sums every `spans_lost_total{...} N` line of a Prometheus text body.
pub(crate) fn parse_spans_lost(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("spans_lost_total"))
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_spans_are_summed_over_every_reason_and_comments_ignored() {
        let body = "# HELP spans_lost_total Spans that never reached the collector.\n\
                    # TYPE spans_lost_total counter\n\
                    spans_lost_total{reason=\"queue_full\"} 12\n\
                    spans_lost_total{reason=\"export_failed\"} 30\n\
                    spans_exported_total 900\n";
        assert_eq!(parse_spans_lost(body), 42);
        assert_eq!(parse_spans_lost(""), 0);
    }
}
