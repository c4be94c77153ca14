//! `cargo xtask run`: the order flow on this machine, with each trace drawn in the terminal.
//!
//! What it does, in order:
//! 1. builds the three services and `trace-view` (`cargo build`, so a second run starts in
//!    seconds);
//! 2. creates the database `traced_orders` on the `PostgreSQL` server that `DATABASE_URL` names
//!    (the local one by default), or reuses it; `--fresh` drops and re-creates it;
//! 3. starts `trace-view listen` on the standard OTLP ports, with its output on this terminal;
//! 4. starts payment-service, order-service and gateway on their usual ports (those of each
//!    one's declared `LISTEN_ADDR` default, on this host only), exporting to it over
//!    OTLP/HTTP (protobuf), with their logs in files (the terminal is for waterfalls), and waits for each
//!    to be ready before it starts the one that calls it;
//! 5. prints where everything listens and a `curl` to try, then waits;
//! 6. on Ctrl-C (or SIGTERM) stops the services in the order a request flows through them
//!    (gateway first, so nothing new comes in), each with SIGTERM so it drains and flushes its
//!    spans, then stops `trace-view`, which prints what it still holds. It exits 0 when every
//!    child exited 0.
//!
//! The children run in process groups of their own: the terminal's Ctrl-C reaches only this
//! process, which then stops them in order. Were they in the terminal's group, `trace-view`
//! would get the same SIGINT at the same moment as the services and could exit before their
//! last spans arrive.

use std::{
    fmt::Write as _,
    fs::File,
    net::{Ipv4Addr, SocketAddr},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use common::config::{Var, shared};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use reqwest::Url;
use sqlx::{Connection as _, PgConnection};

/// How long a service may take to become ready (the first start applies the migrations).
const READY_TIMEOUT: Duration = Duration::from_mins(1);
/// How long a child may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(clap::Args, Debug)]
#[command(after_help = after_help())]
pub(crate) struct Args {
    /// The `PostgreSQL` server (any database on it); the run uses a database of its own there.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// The database to create, or reuse, on that server.
    #[arg(long, default_value = "traced_orders", value_parser = database_name)]
    database: String,
    /// Drop the database and start from an empty one (the migrations re-create the demo users).
    #[arg(long)]
    fresh: bool,
    /// Build and run optimised binaries (a slower first build).
    #[arg(long)]
    release: bool,
    /// Where the gateway listens (its usual port, on this host only).
    #[arg(long, default_value_t = on_this_host(&gateway::config::LISTEN_ADDR))]
    gateway: SocketAddr,
    /// Where the order service listens.
    #[arg(long, default_value_t = on_this_host(&order_service::config::LISTEN_ADDR))]
    order_service: SocketAddr,
    /// Where the payment service listens.
    #[arg(long, default_value_t = on_this_host(&payment_service::config::LISTEN_ADDR))]
    payment_service: SocketAddr,
    /// Where trace-view receives OTLP/gRPC.
    #[arg(long, default_value = "127.0.0.1:4317")]
    otlp_grpc: SocketAddr,
    /// Where trace-view receives OTLP/HTTP (the services export there).
    #[arg(long, default_value = "127.0.0.1:4318")]
    otlp_http: SocketAddr,
    /// An environment variable for one service, e.g. `payment-service:PROCESSOR_FAILURE_RATE=0.3`
    /// (repeatable; wins over the run's own settings).
    #[arg(long = "set", value_name = "SERVICE:NAME=VALUE", value_parser = service_var)]
    set: Vec<ServiceVar>,
    /// Where the services' log files go (relative to the workspace).
    #[arg(long, default_value = "target/xtask-run")]
    logs: PathBuf,
}

/// The loopback address on the port of a service's declared `LISTEN_ADDR` default, so the
/// run's ports are the ones the services' own configuration names.
fn on_this_host(listen_addr: &Var) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, shared::default_port(listen_addr)))
}

fn after_help() -> String {
    let gateway = on_this_host(&gateway::config::LISTEN_ADDR);
    format!(
        "\
Example:
  cargo xtask run
  curl -s -X POST {gateway}/api/orders -H 'content-type: application/json' \\
       -d '{{\"user_id\": 1, \"amount\": 42.50, \"currency\": \"USD\", \"tier\": \"gold\"}}'

  cargo xtask run --set payment-service:PROPAGATION=off   # the broken-propagation demo"
    )
}

/// One `--set` value.
#[derive(Clone, Debug)]
struct ServiceVar {
    service: &'static str,
    name: String,
    value: String,
}

const SERVICES: [&str; 3] = ["payment-service", "order-service", "gateway"];

fn service_var(text: &str) -> Result<ServiceVar, String> {
    let (service, assignment) = text.split_once(':').ok_or("expected SERVICE:NAME=VALUE")?;
    let service = SERVICES
        .into_iter()
        .find(|s| *s == service)
        .ok_or_else(|| {
            format!(
                "unknown service {service:?}: one of {}",
                SERVICES.join(", ")
            )
        })?;
    let (name, value) = assignment
        .split_once('=')
        .filter(|(name, _)| !name.is_empty())
        .ok_or("expected SERVICE:NAME=VALUE")?;
    Ok(ServiceVar {
        service,
        name: name.to_owned(),
        value: value.to_owned(),
    })
}

/// Database names go into `CREATE DATABASE` as identifiers, which cannot be bound as
/// parameters: only plain lower-case names are accepted.
fn database_name(text: &str) -> Result<String, String> {
    let plain = !text.is_empty()
        && text.len() <= 63
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    plain
        .then(|| text.to_owned())
        .ok_or_else(|| "use lower-case letters, digits and _ (at most 63)".to_owned())
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let bin_dir = build(&root, args.release)?;

    let server = Url::parse(&args.database_url).context("DATABASE_URL is not a URL")?;
    let database_url = prepare_database(&server, &args.database, args.fresh).await?;

    let logs = root.join(&args.logs);
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;

    // The order service signs each charge and the payment service checks the signature: a key
    // of this run's own, which no file holds.
    let signing_key = random_key().context("making a charge signing key")?;

    let mut children = Children::default();
    children.spawn("trace-view", viewer(&bin_dir, &args))?;
    let launch = Launch {
        bin_dir: &bin_dir,
        args: &args,
        database_url: database_url.as_str(),
        signing_key: &signing_key,
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .context("building an HTTP client")?;

    for service in SERVICES {
        let log_path = logs.join(format!("{service}.log"));
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        children.spawn(service, launch.command(service, log)?)?;
        let url = launch.url(service);
        children.wait_ready(service, &http, &url, &log_path).await?;
        println!(
            "xtask: {service:<15} {url:<22} log: {}",
            relative(&log_path, &root).display()
        );
    }

    println!(
        "\nxtask: ready. Place an order:\n\n  \
         curl -s -X POST {}/api/orders -H 'content-type: application/json' \\\n    \
         -d '{{\"user_id\": 1, \"amount\": 42.50, \"currency\": \"USD\", \"tier\": \"gold\"}}'\n\n\
         Each trace's waterfall is printed here when it is complete. Ctrl-C stops everything.\n",
        launch.url("gateway")
    );

    let reason = children.wait_for_stop_signal().await;
    println!("\nxtask: {reason}: stopping");
    let clean = children.stop_all().await;
    Ok(if clean && reason.is_signal() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `trace-view listen` on the run's OTLP addresses: it prints each trace's waterfall.
fn viewer(bin_dir: &Path, args: &Args) -> Command {
    let mut viewer = Command::new(bin_dir.join("trace-view"));
    viewer.args([
        "listen",
        "--grpc",
        &args.otlp_grpc.to_string(),
        "--http",
        &args.otlp_http.to_string(),
        "--quiet-ms",
        "1000",
    ]);
    viewer
}

/// What every service of the run is started with.
struct Launch<'a> {
    bin_dir: &'a Path,
    args: &'a Args,
    database_url: &'a str,
    signing_key: &'a str,
}

impl Launch<'_> {
    fn address(&self, service: &str) -> SocketAddr {
        match service {
            "gateway" => self.args.gateway,
            "order-service" => self.args.order_service,
            _ => self.args.payment_service,
        }
    }

    fn url(&self, service: &str) -> String {
        format!("http://{}", self.address(service))
    }

    /// `service`'s command: its address, where it sends spans, its neighbours, its database,
    /// the run's signing key, and the `--set` variables for it; output to `log`.
    fn command(&self, service: &str, log: File) -> anyhow::Result<Command> {
        let mut command = Command::new(self.bin_dir.join(service));
        command
            .stdout(log.try_clone().context("sharing the log file")?)
            .stderr(log)
            .env(shared::LISTEN_ADDR, self.address(service).to_string())
            .env(shared::LOG_FORMAT.name, "text")
            .env(
                shared::OTEL_EXPORTER_OTLP_ENDPOINT.name,
                format!("http://{}", self.args.otlp_http),
            )
            // The specification's default protocol, as compose uses: the cheaper one here.
            .env(shared::OTEL_EXPORTER_OTLP_PROTOCOL.name, "http/protobuf")
            // Export soon after each request, so its waterfall prints within a second or two.
            .env(shared::OTEL_BSP_SCHEDULE_DELAY.name, "200")
            .env(
                shared::OTEL_RESOURCE_ATTRIBUTES.name,
                "deployment.environment.name=local",
            );
        match service {
            "gateway" => {
                command.env(
                    gateway::config::ORDER_SERVICE_URL.name,
                    self.url("order-service"),
                );
            }
            "order-service" => {
                command
                    .env(shared::DATABASE_URL.name, self.database_url)
                    .env(shared::CHARGE_SIGNING_KEY.name, self.signing_key)
                    .env(
                        order_service::config::PAYMENT_SERVICE_URL.name,
                        self.url("payment-service"),
                    );
            }
            _ => {
                command
                    .env(shared::DATABASE_URL.name, self.database_url)
                    .env(shared::CHARGE_SIGNING_KEY.name, self.signing_key);
            }
        }
        for var in self.args.set.iter().filter(|v| v.service == service) {
            command.env(&var.name, &var.value);
        }
        Ok(command)
    }
}

/// The workspace this xtask belongs to (its crate is one level below the root).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ is inside the workspace")
        .to_path_buf()
}

/// Builds the binaries and returns the directory they are in.
///
/// The services are built in one `cargo build`, exactly as the end-to-end tests build them:
/// cargo unifies dependency features across the packages of one build, so a different set
/// would rebuild every dependency with other features, and the two would keep replacing each
/// other's binaries.
fn build(root: &Path, release: bool) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let packages: [&[&str]; 2] = [
        &[
            "-p",
            "gateway",
            "-p",
            "order-service",
            "-p",
            "payment-service",
        ],
        &["-p", "trace-view"],
    ];
    println!("xtask: building the services and trace-view");
    for package in packages {
        let mut build = Command::new(&cargo);
        build
            .current_dir(root)
            .args(["build", "--bins"])
            .args(package);
        if release {
            build.arg("--release");
        }
        let status = build.status().context("running cargo build")?;
        ensure!(status.success(), "cargo build failed ({status})");
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target.join(if release { "release" } else { "debug" }))
}

/// Creates (or, with `fresh`, re-creates) `name` on `server`, and returns its URL.
async fn prepare_database(server: &Url, name: &str, fresh: bool) -> anyhow::Result<Url> {
    let shown = redacted(server);
    let mut conn = PgConnection::connect(server.as_str())
        .await
        .with_context(|| format!("connecting to PostgreSQL at {shown} (set DATABASE_URL)"))?;
    if fresh {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await
        .with_context(|| format!("dropping database {name}"))?;
    }
    let exists = sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut conn)
        .await
        .context("looking for the database")?
        .is_some();
    if !exists {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
    }
    let mut url = server.clone();
    url.set_path(&format!("/{name}"));
    println!(
        "xtask: database {} ({})",
        redacted(&url),
        if exists {
            "reused; --fresh starts empty"
        } else {
            "new"
        }
    );
    Ok(url)
}

/// 32 random bytes from the kernel, as 64 hex digits.
fn random_key() -> std::io::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    }))
}

/// A database URL fit to print: without its password.
fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

fn relative<'a>(path: &'a Path, root: &Path) -> &'a Path {
    path.strip_prefix(root).unwrap_or(path)
}

/// Why the run ends.
enum StopReason {
    Signal(&'static str),
    Exited(&'static str, ExitStatus),
}

impl StopReason {
    fn is_signal(&self) -> bool {
        matches!(self, StopReason::Signal(_))
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Signal(name) => write!(f, "{name}"),
            StopReason::Exited(name, status) => write!(f, "{name} exited by itself ({status})"),
        }
    }
}

/// The processes this run started, in start order. Dropping it kills any still running, so
/// an error half-way through start-up leaves nothing behind.
#[derive(Default)]
struct Children {
    running: Vec<(&'static str, Child)>,
}

impl Children {
    fn spawn(&mut self, name: &'static str, mut command: Command) -> anyhow::Result<()> {
        let child = command
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name} ({})", command.get_program().display()))?;
        self.running.push((name, child));
        Ok(())
    }

    /// Waits until `GET {url}/readyz` answers 200, or fails with the end of the service's log.
    async fn wait_ready(
        &mut self,
        name: &str,
        http: &reqwest::Client,
        url: &str,
        log: &Path,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(response) = http.get(format!("{url}/readyz")).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            let (_, child) = self
                .running
                .iter_mut()
                .find(|(n, _)| *n == name)
                .expect("a started child");
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{name} exited ({status}) before it was ready:\n{}",
                    tail(log)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} was not ready within {READY_TIMEOUT:?}:\n{}",
                    tail(log)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Resolves on Ctrl-C or SIGTERM, or when a child exits by itself.
    async fn wait_for_stop_signal(&mut self) -> StopReason {
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let terminate = async {
            match sigterm.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        let exited = async {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                for (name, child) in &mut self.running {
                    if let Ok(Some(status)) = child.try_wait() {
                        return StopReason::Exited(name, status);
                    }
                }
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => StopReason::Signal("Ctrl-C"),
            _ = terminate => StopReason::Signal("SIGTERM"),
            reason = exited => reason,
        }
    }

    /// Stops every child, last started first, each with SIGTERM and then (after
    /// [`STOP_TIMEOUT`]) SIGKILL. True when each exited 0.
    async fn stop_all(&mut self) -> bool {
        let mut clean = true;
        while let Some((name, mut child)) = self.running.pop() {
            let status = stop(&mut child).await;
            match status {
                Ok(status) if status.success() => println!("xtask: {name} stopped"),
                Ok(status) => {
                    clean = false;
                    println!("xtask: {name} stopped: {status}");
                }
                Err(e) => {
                    clean = false;
                    println!("xtask: {name}: {e:#}");
                }
            }
        }
        clean
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.running {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn stop(child: &mut Child) -> anyhow::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    let pid = Pid::from_raw(i32::try_from(child.id()).context("a process id")?);
    kill(pid, Signal::SIGTERM).context("sending SIGTERM")?;
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            child.kill()?;
            let status = child.wait()?;
            bail!("did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed ({status})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last lines of a log file, for an error message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_variable_names_a_known_service() {
        let var = service_var("payment-service:PROPAGATION=off").unwrap();
        assert_eq!(
            (var.service, var.name.as_str(), var.value.as_str()),
            ("payment-service", "PROPAGATION", "off")
        );
        assert!(service_var("billing:PROPAGATION=off").is_err());
        assert!(service_var("gateway:=1").is_err());
        assert!(service_var("gateway").is_err());
    }

    #[test]
    fn a_value_may_hold_equals_signs() {
        let var = service_var("gateway:OTEL_RESOURCE_ATTRIBUTES=a=b").unwrap();
        assert_eq!(var.value, "a=b");
    }

    #[test]
    fn database_names_are_plain_identifiers() {
        assert!(database_name("traced_orders").is_ok());
        for bad in ["", "Orders", "1db", "a;DROP", "a-b", &"x".repeat(64)] {
            assert!(database_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn each_run_has_a_signing_key_of_its_own() {
        let (a, b) = (random_key().unwrap(), random_key().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn a_printed_database_url_has_no_password() {
        let url = Url::parse("postgres://orders:secret@db:5432/postgres").unwrap();
        let shown = redacted(&url);
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("orders:***@db"), "{shown}");
    }
}
