//! A load generator for the order flow, as a library (the benchmark drives it) and as the
//! `loadgen` binary (a user fills Jaeger with varied traces).
//!
//! Two ways to drive the gateway:
//!
//! - **Open loop** ([`Mode::Open`]): requests are *scheduled* at a fixed rate, whatever the
//!   target does. Each one has an intended send time (`start + i / rate`), and its latency is
//!   measured from that time, not from when it was actually sent. A target that stalls for a
//!   second therefore shows a second of latency on every request it delayed, instead of the
//!   stall vanishing because fewer requests were sent during it ("coordinated omission").
//! - **Closed loop** ([`Mode::Closed`]): `N` workers, each sending its next request as soon as
//!   the previous one answered. This finds the throughput at saturation; its latencies say how
//!   long a request waits at that load.
//!
//! Each request is one of four [`Kind`]s, chosen by weight ([`Mix`]): a successful order, a
//! read of an order this run created, a declined payment, and a bad request. Every kind has an
//! expected status; anything else (including a transport error) is *unexpected* and makes the
//! binary exit non-zero.
//!
//! Latencies go into [`hdrhistogram`] histograms (microseconds, 3 significant digits), so
//! memory stays constant however long the run is: `--duration 0` runs until stopped.

use std::{
    collections::BTreeMap,
    fmt,
    future::Future,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Semaphore;

/// What one request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `POST /api/orders` that the payment service accepts: `201`.
    Order,
    /// `GET /api/orders/{id}` of an order this run created: `200`. Until the run has
    /// created one, an [`Kind::Order`] is sent instead (and counted as one).
    Read,
    /// `POST /api/orders` that the payment service declines (the test card
    /// `tok_chargeDeclined`, or an amount over the user's credit limit): `402`.
    Declined,
    /// A request the gateway refuses (a negative amount, a missing field, malformed JSON, an
    /// order id that is not a UUID): `400` or `422`.
    BadRequest,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Order, Kind::Read, Kind::Declined, Kind::BadRequest];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Order => "order",
            Kind::Read => "read",
            Kind::Declined => "declined",
            Kind::BadRequest => "bad_request",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "bad" => Some(Kind::BadRequest),
            _ => Kind::ALL.into_iter().find(|k| k.as_str() == s),
        }
    }

    /// Whether `status` is what this kind should get.
    pub fn expects(self, status: u16) -> bool {
        match self {
            Kind::Order => status == 201,
            Kind::Read => status == 200,
            Kind::Declined => status == 402,
            Kind::BadRequest => matches!(status, 400 | 422),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The weights of the four kinds, e.g. `order=60,read=25,declined=10,bad=5`.
///
/// Kinds are picked by smooth weighted round-robin rather than at random: the sequence is
/// the same on every run and every window of `sum(weights)` requests has exactly the mix
/// asked for, so a short run is as representative as a long one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(Kind, u32)>,
}

impl Mix {
    /// Successful orders only: what the benchmark sends.
    pub fn orders_only() -> Mix {
        Mix {
            weights: vec![(Kind::Order, 1)],
        }
    }

    pub fn weight(&self, kind: Kind) -> u32 {
        self.weights
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, w)| *w)
    }

    fn picker(&self) -> Picker {
        Picker {
            weights: self.weights.clone(),
            current: vec![0; self.weights.len()],
            total: self.weights.iter().map(|(_, w)| i64::from(*w)).sum(),
        }
    }
}

impl Default for Mix {
    /// Mostly orders that succeed, some reads, and enough declines and bad requests that a
    /// user browsing Jaeger finds red traces.
    fn default() -> Mix {
        "order=60,read=25,declined=10,bad=5"
            .parse()
            .expect("the default mix parses")
    }
}

impl std::str::FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Mix, String> {
        let mut weights = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected KIND=WEIGHT"))?;
            let kind = Kind::parse(name.trim()).ok_or_else(|| {
                format!("`{name}`: unknown kind (order, read, declined, bad_request)")
            })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("`{weight}`: a weight is a whole number"))?;
            if weights.iter().any(|(k, _)| *k == kind) {
                return Err(format!("`{name}` is given twice"));
            }
            if weight > 0 {
                weights.push((kind, weight));
            }
        }
        if weights.is_empty() {
            return Err("the mix needs at least one kind with a weight above 0".into());
        }
        Ok(Mix { weights })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .weights
            .iter()
            .map(|(k, w)| format!("{k}={w}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Smooth weighted round-robin (as nginx balances upstreams): each pick adds every weight to
/// its counter, takes the largest, and subtracts the total from it.
struct Picker {
    weights: Vec<(Kind, u32)>,
    current: Vec<i64>,
    total: i64,
}

impl Picker {
    fn next(&mut self) -> Kind {
        let mut best = 0;
        for (i, (_, w)) in self.weights.iter().enumerate() {
            self.current[i] += i64::from(*w);
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= self.total;
        self.weights[best].0
    }
}

/// How requests are paced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// `rate` requests a second, scheduled whatever the target does; at most `max_in_flight`
    /// at once (a request waiting for a slot still has its latency measured from its
    /// intended send time).
    Open { rate: f64, max_in_flight: usize },
    /// `concurrency` workers, each sending as soon as its previous request answered.
    Closed { concurrency: usize },
}

/// One run's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The gateway's base URL, e.g. `http://localhost:8080`.
    pub target: String,
    pub mode: Mode,
    /// How long to send for; `None` runs until the `stop` future given to [`run`] resolves.
    pub duration: Option<Duration>,
    pub mix: Mix,
    /// Reuse connections (the default). `false` opens a new connection for every request,
    /// as code that builds a client per call does.
    pub keepalive: bool,
    /// How long one request may take before it counts as a timeout.
    pub timeout: Duration,
}

/// How long an idle pooled connection is kept for the next request; see [`client`].
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// The HTTP client a run uses: one client, so connections are pooled and reused, unless
/// `keepalive` is off.
pub fn client(config: &Config) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(config.timeout)
        .connect_timeout(config.timeout.min(Duration::from_secs(5)))
        // Give up an idle connection before the gateway does (its `HTTP_HEADER_READ_TIMEOUT_MS`,
        // 5 s by default, also closes idle keep-alive connections), as the services' own
        // clients do: an order sent on a connection the gateway is closing at that moment
        // fails as a transport error, and a POST is not safe to resend. (One such error in
        // 7 000 orders of an open loop, with nothing in the services' logs, is what led here;
        // that it was this race is an inference.)
        .pool_idle_timeout(IDLE_CONNECTION_TIMEOUT)
        .tcp_nodelay(true);
    if !config.keepalive {
        // No idle connection is kept, so each request dials anew (and the request says
        // `Connection: close`, so the server does not keep it either).
        builder = builder.pool_max_idle_per_host(0);
    }
    builder.build().context("building the HTTP client")
}

/// Waits until `GET {target}/healthz` answers 200, for at most `patience`.
pub async fn wait_until_ready(
    client: &reqwest::Client,
    target: &str,
    patience: Duration,
) -> anyhow::Result<()> {
    let url = format!("{}/healthz", target.trim_end_matches('/'));
    let deadline = Instant::now() + patience;
    loop {
        let outcome = client.get(&url).send().await;
        let error = match outcome {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => format!("answered {}", r.status()),
            Err(e) => error_chain(&e),
        };
        if Instant::now() >= deadline {
            bail!("{url} is not reachable: {error}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// An HTTP answer with this status.
    Status(u16),
    /// No connection could be made.
    Connect,
    /// No answer within the timeout.
    Timeout,
    /// Any other transport failure (a reset, a malformed answer).
    Transport,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Status(s) => write!(f, "{s}"),
            Outcome::Connect => f.write_str("connect error"),
            Outcome::Timeout => f.write_str("timeout"),
            Outcome::Transport => f.write_str("transport error"),
        }
    }
}

/// Latency histogram in microseconds, up to an hour (anything longer is clamped).
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn record(h: &mut Histogram<u64>, latency: Duration) {
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    h.saturating_record(us.max(1));
}

/// Counters and histograms shared by every request task of a run.
struct Recorder {
    state: Mutex<Totals>,
    sent: AtomicU64,
    in_flight: AtomicU64,
    /// Ids of orders this run created, for reads (bounded: the newest replace the oldest).
    created: Mutex<Vec<String>>,
}

struct Totals {
    counts: BTreeMap<(Kind, Outcome), u64>,
    all: Histogram<u64>,
    by_kind: BTreeMap<Kind, Histogram<u64>>,
    /// Since the last progress line.
    window: Histogram<u64>,
    unexpected: u64,
    completed: u64,
}

const REMEMBERED_ORDERS: usize = 1024;

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            state: Mutex::new(Totals {
                counts: BTreeMap::new(),
                all: histogram(),
                by_kind: BTreeMap::new(),
                window: histogram(),
                unexpected: 0,
                completed: 0,
            }),
            sent: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            created: Mutex::new(Vec::new()),
        }
    }

    fn finish(&self, kind: Kind, outcome: Outcome, latency: Duration) {
        let mut t = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        *t.counts.entry((kind, outcome)).or_default() += 1;
        record(&mut t.all, latency);
        record(&mut t.window, latency);
        record(t.by_kind.entry(kind).or_insert_with(histogram), latency);
        t.completed += 1;
        let expected = matches!(outcome, Outcome::Status(s) if kind.expects(s));
        if !expected {
            t.unexpected += 1;
        }
    }

    fn remember(&self, order_id: String) {
        let mut created = self.created.lock().unwrap_or_else(PoisonError::into_inner);
        if created.len() < REMEMBERED_ORDERS {
            created.push(order_id);
        } else {
            let slot = self.sent.load(Ordering::Relaxed) % REMEMBERED_ORDERS as u64;
            created[usize::try_from(slot).expect("below REMEMBERED_ORDERS")] = order_id;
        }
    }

    fn an_order(&self, n: u64) -> Option<String> {
        let created = self.created.lock().unwrap_or_else(PoisonError::into_inner);
        if created.is_empty() {
            return None;
        }
        let slot = usize::try_from(n % created.len() as u64).expect("below the length");
        Some(created[slot].clone())
    }
}

/// One line of progress, taken once a second while a run goes on.
#[derive(Clone, Debug)]
pub struct Progress {
    pub elapsed: Duration,
    pub sent: u64,
    pub completed: u64,
    pub unexpected: u64,
    pub in_flight: u64,
    /// p99 of the requests that completed since the last line, if any did.
    pub window_p99: Option<Duration>,
    pub window_completed: u64,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>5.0}s  sent {}  done {}  unexpected {}  in flight {}  last 1s: {} done",
            self.elapsed.as_secs_f64(),
            self.sent,
            self.completed,
            self.unexpected,
            self.in_flight,
            self.window_completed,
        )?;
        if let Some(p99) = self.window_p99 {
            write!(f, ", p99 {}", Ms(p99))?;
        }
        Ok(())
    }
}

/// A duration shown in milliseconds with two decimals.
pub struct Ms(pub Duration);

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2} ms", self.0.as_secs_f64() * 1000.0)
    }
}

/// Latency percentiles of a set of requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        let at = |q: f64| Duration::from_micros(h.value_at_quantile(q));
        Latency {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max: Duration::from_micros(h.max()),
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// From the first send to the last answer.
    pub elapsed: Duration,
    pub mode: String,
    pub completed: u64,
    /// Requests whose outcome was not the one their kind expects.
    pub unexpected: u64,
    /// `(kind, outcome) -> count`.
    #[serde(serialize_with = "counts_as_list")]
    pub counts: BTreeMap<(Kind, Outcome), u64>,
    pub latency: Latency,
    pub latency_by_kind: BTreeMap<Kind, Latency>,
}

fn counts_as_list<S: serde::Serializer>(
    counts: &BTreeMap<(Kind, Outcome), u64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Row {
        kind: Kind,
        outcome: String,
        count: u64,
    }
    s.collect_seq(counts.iter().map(|((kind, outcome), count)| Row {
        kind: *kind,
        outcome: outcome.to_string(),
        count: *count,
    }))
}

impl Report {
    /// Completed requests per second.
    pub fn throughput(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Whether no request could even connect: the target is not there.
    pub fn unreachable(&self) -> bool {
        self.completed > 0 && self.counts.iter().all(|((_, o), _)| *o == Outcome::Connect)
    }

    /// How many requests ended with `outcome`, any kind.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.counts
            .iter()
            .filter(|((_, o), _)| *o == outcome)
            .map(|(_, n)| n)
            .sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} requests in {:.1} s ({:.1}/s), {} unexpected",
            self.mode,
            self.completed,
            self.elapsed.as_secs_f64(),
            self.throughput(),
            self.unexpected
        )?;
        writeln!(f, "  {:<12} {:<16} {:>8}", "kind", "outcome", "count")?;
        for ((kind, outcome), count) in &self.counts {
            let mark = match outcome {
                Outcome::Status(s) if kind.expects(*s) => "",
                _ => "  (unexpected)",
            };
            writeln!(
                f,
                "  {:<12} {:<16} {:>8}{mark}",
                kind.as_str(),
                outcome.to_string(),
                count
            )?;
        }
        let row = |f: &mut fmt::Formatter<'_>, name: &str, l: &Latency| {
            writeln!(
                f,
                "  {:<12} {:>10} {:>10} {:>10} {:>10} {:>10}",
                name,
                Ms(l.p50).to_string(),
                Ms(l.p90).to_string(),
                Ms(l.p99).to_string(),
                Ms(l.p999).to_string(),
                Ms(l.max).to_string()
            )
        };
        if self.mode.starts_with("open") {
            writeln!(f, "  latency, from each request's intended send time:")?;
        }
        writeln!(
            f,
            "  {:<12} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "latency", "p50", "p90", "p99", "p99.9", "max"
        )?;
        row(f, "all", &self.latency)?;
        for (kind, l) in &self.latency_by_kind {
            row(f, kind.as_str(), l)?;
        }
        Ok(())
    }
}

/// The request bodies and paths: a few variants per kind, so traces differ.
mod requests {
    use serde_json::{Value, json};

    /// Users 1 to 4 of the demo data, with their tiers; their credit limits are all above
    /// the amounts sent for successful orders.
    const USERS: [(i64, &str); 4] = [(1, "gold"), (2, "platinum"), (3, "standard"), (4, "silver")];

    pub(crate) fn order(n: u64) -> Value {
        let (user_id, tier) = USERS[usize::try_from(n % USERS.len() as u64).expect("below 4")];
        // 10.00 to 49.99: under user 3's limit of 100.00.
        let cents = 1000 + (n * 37) % 4000;
        json!({
            "user_id": user_id,
            "amount": amount(cents),
            "tier": tier,
        })
    }

    pub(crate) fn declined(n: u64) -> Value {
        if n.is_multiple_of(2) {
            json!({"user_id": 1, "amount": amount(1999), "tier": "gold", "card_token": "tok_chargeDeclined"})
        } else {
            // User 3's credit limit is 100.00.
            json!({"user_id": 3, "amount": amount(25_000), "tier": "standard"})
        }
    }

    /// A bad request: either a JSON body for `POST /api/orders`, raw bytes, or a path.
    pub(crate) enum Bad {
        Json(Value),
        Raw(&'static str),
        Path(&'static str),
    }

    pub(crate) fn bad(n: u64) -> Bad {
        match n % 4 {
            0 => Bad::Json(json!({"user_id": 1, "amount": -5})),
            1 => Bad::Json(json!({"amount": 12.5})),
            2 => Bad::Raw("{\"user_id\": 1, \"amount\": "),
            _ => Bad::Path("/api/orders/not-a-uuid"),
        }
    }

    fn amount(cents: u64) -> Value {
        // An exact decimal number on the wire (`12.34`), never through f64.
        let text = format!("{}.{:02}", cents / 100, cents % 100);
        serde_json::from_str(&text).expect("a decimal number is JSON")
    }
}

/// Runs the load until `config.duration` has passed or `stop` resolves, whichever is first,
/// then waits for the requests in flight and reports. `on_progress` is called once a second.
pub async fn run(
    config: &Config,
    stop: impl Future<Output = ()>,
    mut on_progress: impl FnMut(&Progress),
) -> anyhow::Result<Report> {
    let client = client(config)?;
    let base: Arc<str> = config.target.trim_end_matches('/').into();
    let recorder = Arc::new(Recorder::new());
    let picker = Arc::new(Mutex::new(config.mix.picker()));
    let start = Instant::now();
    let deadline = config.duration.map(|d| start + d);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    let load = Load {
        client,
        base,
        keepalive: config.keepalive,
        recorder: recorder.clone(),
        picker,
        deadline,
    };
    let driver = tokio::spawn(load.drive(config.mode, stop_rx));

    tokio::pin!(stop);
    let mut driver = driver;
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let mut stopped = false;
    loop {
        tokio::select! {
            done = &mut driver => {
                done.context("the load driver panicked")?;
                break;
            }
            () = &mut stop, if !stopped => {
                stopped = true;
                let _ = stop_tx.send(true);
            }
            _ = ticks.tick() => on_progress(&recorder.progress(start)),
        }
    }
    Ok(recorder.report(config.mode, start.elapsed()))
}

impl Recorder {
    /// The last second's progress; starts the next second's window.
    fn progress(&self, start: Instant) -> Progress {
        let mut t = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let window_completed = t.window.len();
        let window_p99 =
            (window_completed > 0).then(|| Duration::from_micros(t.window.value_at_quantile(0.99)));
        t.window.reset();
        Progress {
            elapsed: start.elapsed(),
            sent: self.sent.load(Ordering::Relaxed),
            completed: t.completed,
            unexpected: t.unexpected,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            window_p99,
            window_completed,
        }
    }

    /// The summary of a run in `mode` that took `elapsed`.
    fn report(&self, mode: Mode, elapsed: Duration) -> Report {
        let t = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        Report {
            elapsed,
            mode: match mode {
                Mode::Open { rate, .. } => format!("open loop at {rate}/s"),
                Mode::Closed { concurrency } => format!("closed loop, {concurrency} at a time"),
            },
            completed: t.completed,
            unexpected: t.unexpected,
            counts: t.counts.clone(),
            latency: Latency::of(&t.all),
            latency_by_kind: t
                .by_kind
                .iter()
                .map(|(k, h)| (*k, Latency::of(h)))
                .collect(),
        }
    }
}

fn next_kind(picker: &Mutex<Picker>) -> Kind {
    picker.lock().unwrap_or_else(PoisonError::into_inner).next()
}

/// What every request of a run shares: the client, where it goes, how it connects, what it
/// records, what comes next, and until when. Cloned into each task (all of it is shared).
#[derive(Clone)]
struct Load {
    client: reqwest::Client,
    base: Arc<str>,
    keepalive: bool,
    recorder: Arc<Recorder>,
    picker: Arc<Mutex<Picker>>,
    deadline: Option<Instant>,
}

impl Load {
    /// Sends requests in `mode` until the deadline or the stop signal.
    async fn drive(self, mode: Mode, stop: tokio::sync::watch::Receiver<bool>) {
        match mode {
            Mode::Open {
                rate,
                max_in_flight,
            } => self.open_loop(rate, max_in_flight, stop).await,
            Mode::Closed { concurrency } => self.closed_loop(concurrency, stop).await,
        }
    }

    async fn open_loop(
        self,
        rate: f64,
        max_in_flight: usize,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
        let interval = Duration::from_secs_f64(1.0 / rate);
        let start = tokio::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0u64.. {
            // The schedule is computed from the start, never from the previous send, so a late
            // wake-up does not push every later request back.
            let intended = start + interval.mul_f64(n as f64);
            if self.deadline.is_some_and(|d| intended.into_std() >= d) {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(intended) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let kind = next_kind(&self.picker);
            self.recorder.sent.fetch_add(1, Ordering::Relaxed);
            self.recorder.in_flight.fetch_add(1, Ordering::Relaxed);
            let (load, slots) = (self.clone(), slots.clone());
            tasks.spawn(async move {
                let _slot = slots.acquire_owned().await;
                load.send(kind, n, intended.into_std()).await;
                load.recorder.in_flight.fetch_sub(1, Ordering::Relaxed);
            });
            // Reap finished tasks as we go, so the set stays as small as what is in flight.
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn closed_loop(self, concurrency: usize, stop: tokio::sync::watch::Receiver<bool>) {
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..concurrency.max(1) {
            let (load, stop) = (self.clone(), stop.clone());
            workers.spawn(async move {
                while !*stop.borrow() && load.deadline.is_none_or(|d| Instant::now() < d) {
                    let kind = next_kind(&load.picker);
                    let n = load.recorder.sent.fetch_add(1, Ordering::Relaxed);
                    load.recorder.in_flight.fetch_add(1, Ordering::Relaxed);
                    load.send(kind, n, Instant::now()).await;
                    load.recorder.in_flight.fetch_sub(1, Ordering::Relaxed);
                }
            });
        }
        while workers.join_next().await.is_some() {}
    }

    /// Sends one request of `kind` and records how it ended; `started` is when it was meant
    /// to be sent (open loop) or was sent (closed loop).
    async fn send(&self, mut kind: Kind, n: u64, started: Instant) {
        let order_id = match kind {
            Kind::Read => {
                let id = self.recorder.an_order(n);
                if id.is_none() {
                    kind = Kind::Order;
                }
                id
            }
            _ => None,
        };
        let orders = format!("{}/api/orders", self.base);
        let request = match kind {
            Kind::Order => self.client.post(&orders).json(&requests::order(n)),
            Kind::Read => self.client.get(format!(
                "{orders}/{}",
                order_id.expect("a read has an order id")
            )),
            Kind::Declined => self.client.post(&orders).json(&requests::declined(n)),
            Kind::BadRequest => match requests::bad(n) {
                requests::Bad::Json(body) => self.client.post(&orders).json(&body),
                requests::Bad::Raw(body) => self
                    .client
                    .post(&orders)
                    .header("content-type", "application/json")
                    .body(body),
                requests::Bad::Path(path) => self.client.get(format!("{}{path}", self.base)),
            },
        };
        let request = if self.keepalive {
            request
        } else {
            request.header("connection", "close")
        };
        let outcome = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                // The body is read in full: the answer is not complete (and the connection not
                // reusable) before it is.
                match response.bytes().await {
                    Ok(body) => {
                        if kind == Kind::Order
                            && status == 201
                            && let Some(id) = serde_json::from_slice::<serde_json::Value>(&body)
                                .ok()
                                .and_then(|v| v["order_id"].as_str().map(str::to_owned))
                        {
                            self.recorder.remember(id);
                        }
                        Outcome::Status(status)
                    }
                    Err(e) if e.is_timeout() => Outcome::Timeout,
                    Err(_) => Outcome::Transport,
                }
            }
            Err(e) if e.is_timeout() => Outcome::Timeout,
            Err(e) if e.is_connect() => Outcome::Connect,
            Err(_) => Outcome::Transport,
        };
        self.recorder.finish(kind, outcome, started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_is_parsed_with_short_names_and_zero_weights_dropped() {
        let mix: Mix = "order=3, read=1,declined=0,bad=1".parse().unwrap();
        assert_eq!(mix.weight(Kind::Order), 3);
        assert_eq!(mix.weight(Kind::Read), 1);
        assert_eq!(mix.weight(Kind::Declined), 0);
        assert_eq!(mix.weight(Kind::BadRequest), 1);
        assert_eq!(mix.to_string(), "order=3,read=1,bad_request=1");
    }

    #[test]
    fn malformed_mixes_are_refused_with_a_reason() {
        for (input, reason) in [
            ("", "at least one kind"),
            ("order=0", "at least one kind"),
            ("order", "KIND=WEIGHT"),
            ("orders=1", "unknown kind"),
            ("order=-1", "whole number"),
            ("order=1,order=2", "twice"),
        ] {
            let error = input.parse::<Mix>().unwrap_err();
            assert!(error.contains(reason), "{input:?}: {error}");
        }
    }

    #[test]
    fn every_window_of_the_total_weight_has_the_exact_mix() {
        let mix: Mix = "order=6,read=2,declined=1,bad=1".parse().unwrap();
        let mut picker = mix.picker();
        for window in 0..5 {
            let mut seen = BTreeMap::new();
            for _ in 0..10 {
                *seen.entry(picker.next()).or_insert(0) += 1;
            }
            for kind in Kind::ALL {
                assert_eq!(
                    seen.get(&kind).copied().unwrap_or(0),
                    mix.weight(kind),
                    "window {window}, {kind}"
                );
            }
        }
    }

    #[test]
    fn only_the_expected_status_counts_as_expected() {
        // (kind, status, whether it is the expected answer)
        for (kind, status, expected) in [
            (Kind::Order, 201, true),
            (Kind::Order, 200, false),
            (Kind::Read, 200, true),
            (Kind::Declined, 402, true),
            (Kind::Declined, 201, false),
            (Kind::BadRequest, 400, true),
            (Kind::BadRequest, 422, true),
            (Kind::BadRequest, 500, false),
        ] {
            assert_eq!(kind.expects(status), expected, "{kind} answered {status}");
        }
    }

    #[test]
    fn amounts_are_exact_decimals_under_the_smallest_credit_limit() {
        for n in 0..200 {
            let body = requests::order(n);
            let text = body["amount"].to_string();
            let (whole, cents) = text.split_once('.').unwrap_or((&text, "0"));
            let minor = whole.parse::<u64>().unwrap() * 100 + cents.parse::<u64>().unwrap();
            assert!((1000..5000).contains(&minor), "{text}");
        }
    }

    /// A server that answers every request like the gateway would, after `delay`.
    // A stand-in for the gateway, not one of the services: its path extractor need not answer
    // in the project's JSON (the rule in clippy.toml is for the services).
    #[allow(clippy::disallowed_types)]
    async fn fake_gateway(delay: Duration) -> String {
        use axum::{
            Router,
            http::StatusCode,
            routing::{get, post},
        };
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/api/orders",
                post(move |body: axum::body::Bytes| async move {
                    tokio::time::sleep(delay).await;
                    let v: serde_json::Value = match serde_json::from_slice(&body) {
                        Ok(v) => v,
                        Err(_) => return (StatusCode::BAD_REQUEST, String::new()),
                    };
                    if v["card_token"] == "tok_chargeDeclined" || v["amount"].as_f64() > Some(100.0)
                    {
                        (StatusCode::PAYMENT_REQUIRED, String::new())
                    } else if v["user_id"].is_null() || v["amount"].as_f64() < Some(0.0) {
                        (StatusCode::UNPROCESSABLE_ENTITY, String::new())
                    } else {
                        (
                            StatusCode::CREATED,
                            r#"{"order_id":"0196f7a0-0000-7000-8000-000000000000"}"#.to_owned(),
                        )
                    }
                }),
            )
            .route(
                "/api/orders/{id}",
                get(
                    |axum::extract::Path(id): axum::extract::Path<String>| async move {
                        if id.len() == 36 {
                            StatusCode::OK
                        } else {
                            StatusCode::BAD_REQUEST
                        }
                    },
                ),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// Runs `config` until its duration is over (nothing stops it early).
    async fn run_to_the_end(config: &Config) -> Report {
        run(config, std::future::pending(), |_| {})
            .await
            .expect("the load runs")
    }

    fn config(target: String, mode: Mode, duration: Duration) -> Config {
        Config {
            target,
            mode,
            duration: Some(duration),
            mix: Mix::default(),
            keepalive: true,
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn an_open_loop_sends_at_the_rate_and_every_kind_gets_its_expected_status() {
        let target = fake_gateway(Duration::ZERO).await;
        let mode = Mode::Open {
            rate: 200.0,
            max_in_flight: 64,
        };
        let report = run_to_the_end(&config(target, mode, Duration::from_secs(1))).await;
        assert_eq!(report.completed, 200, "{report}");
        assert_eq!(report.unexpected, 0, "{report}");
        for kind in Kind::ALL {
            assert!(
                report.counts.keys().any(|(k, _)| *k == kind),
                "no {kind}: {report}"
            );
        }
    }

    #[tokio::test]
    async fn open_loop_latency_counts_the_wait_for_a_slot_from_the_intended_time() {
        // One slot and a 50 ms server at 100/s: each request waits for the ones before it,
        // so latency grows with the backlog; measured from the actual send it would not.
        let target = fake_gateway(Duration::from_millis(50)).await;
        let mut config = config(
            target,
            Mode::Open {
                rate: 100.0,
                max_in_flight: 1,
            },
            Duration::from_millis(300),
        );
        config.mix = Mix::orders_only();
        let report = run_to_the_end(&config).await;
        assert_eq!(report.completed, 30);
        assert!(
            report.latency.max > Duration::from_secs(1),
            "the last request waited for 29 others: {report}"
        );
    }

    #[tokio::test]
    async fn a_closed_loop_stops_when_told_and_an_unreachable_target_is_reported() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let mut config = config(target, Mode::Closed { concurrency: 2 }, Duration::ZERO);
        config.duration = None;
        let report = run(
            &config,
            tokio::time::sleep(Duration::from_millis(200)),
            |_| {},
        )
        .await
        .unwrap();
        assert!(report.unreachable(), "{report}");
        assert_eq!(report.unexpected, report.completed);
        assert!(
            wait_until_ready(&client(&config).unwrap(), &config.target, Duration::ZERO)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn without_keepalive_every_request_still_succeeds() {
        let target = fake_gateway(Duration::ZERO).await;
        let mut config = config(
            target,
            Mode::Closed { concurrency: 2 },
            Duration::from_millis(200),
        );
        config.keepalive = false;
        config.mix = Mix::orders_only();
        let report = run_to_the_end(&config).await;
        assert!(report.completed > 10, "{report}");
        assert_eq!(report.unexpected, 0, "{report}");
    }
}
