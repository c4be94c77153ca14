//! `bench --instructions`: what a span costs in instructions, a count that does not move with
//! the machine's load.
//!
//! CPU time per request moves by 10-25% between runs on a shared machine, more than tracing's
//! whole cost, so a difference of a few microseconds a span is below what the timed benchmark
//! can resolve. `valgrind --tool=callgrind` counts the instructions a process executes, the
//! same for the same binary and input whatever else the machine is doing. This mode starts the
//! whole system three times with the three services under callgrind, tracing off, unsampled
//! but propagating, and 100% sampled (exporting over OTLP/HTTP to the receiver), sends each
//! the same orders at a low
//! fixed rate (callgrind runs code about fifty times slower), stops the services (which
//! flushes their spans) and reads each one's instruction total.
//!
//! The totals are of whole processes, start-up and shutdown included; the systems start and
//! stop the same way, so the difference to tracing off over the spans sent is what a span
//! costs all-in: unsampled, the layer's work, the SDK's non-recording span and propagation;
//! sampled, also the recording, the batch processor's, encoding and sending.

use std::{
    fmt::Write as _,
    path::Path,
    process::{Command, ExitCode},
    time::Duration,
};

use anyhow::{Context, bail};
use loadgen::Mode;

use crate::system::{self, Binary, System, TelemetryEnv};

/// Orders sent to each system: enough that start-up is a small part of each total.
const ORDERS: u64 = 200;
/// Orders a second: what three services under callgrind answer without queueing.
const RATE: f64 = 5.0;
/// No connection is pinged for having idled: the counts are of a system under load, where
/// none idles as long as `DATABASE_PING_IDLE_MS` (500 ms). At [`RATE`] under callgrind the
/// pools open a few connections and hand them out in turn, so each one idles about that long
/// between statements, and how many pings a run paid depended on how fast it went: with them,
/// tracing off read 197.9M and 203.4M instructions for the same code on 2026-12-03; without,
/// 198.1M, 199.8M and 200.2M in the next three runs.
const NO_IDLE_PINGS: (&str, &str) = ("DATABASE_PING_IDLE_MS", "3600000");
/// Spans one order makes in the three services.
const SPANS_PER_ORDER: u64 = e2e::ORDER_TRACE_SPANS as u64;

/// One system's count.
struct Count {
    name: &'static str,
    /// Instructions per service, in [`Binary::ALL`]'s order.
    services: Vec<u64>,
    spans_received: u64,
}

impl Count {
    fn total(&self) -> u64 {
        self.services.iter().sum()
    }
}

pub(crate) async fn run(logs: &Path) -> anyhow::Result<ExitCode> {
    let version = Command::new("valgrind").arg("--version").output();
    if !version.is_ok_and(|o| o.status.success()) {
        bail!("valgrind is not installed (Debian: `apt-get install valgrind`)");
    }
    let scenarios: [(&'static str, TelemetryEnv); 3] = [
        (
            "tracing off (`OTEL_SDK_DISABLED=true`)",
            &[("OTEL_SDK_DISABLED", "true"), NO_IDLE_PINGS],
        ),
        (
            "unsampled, propagating (`parentbased_always_off`)",
            &[
                ("OTEL_TRACES_SAMPLER", "parentbased_always_off"),
                NO_IDLE_PINGS,
            ],
        ),
        ("100% sampled", &[NO_IDLE_PINGS]),
    ];
    let mut counts = Vec::new();
    for (index, (name, env)) in scenarios.into_iter().enumerate() {
        let dir = logs.join(format!("instructions-{index}"));
        counts.push(count(name, env, &dir).await?);
    }
    println!("{}", markdown(&counts));
    let sampled = &counts[2];
    Ok(if sampled.spans_received == ORDERS * SPANS_PER_ORDER {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "bench: {} of {} spans arrived from the sampled system",
            sampled.spans_received,
            ORDERS * SPANS_PER_ORDER
        );
        ExitCode::from(1)
    })
}

/// Starts the system with `env` under callgrind, sends it [`ORDERS`], stops it and reads the
/// services' instruction totals.
async fn count(name: &'static str, env: TelemetryEnv, dir: &Path) -> anyhow::Result<Count> {
    std::fs::create_dir_all(dir)?;
    let out_file = |binary: Binary| dir.join(format!("{}.callgrind", binary.name()));
    let under_callgrind = |binary: Binary| -> anyhow::Result<Command> {
        let mut command = Command::new("valgrind");
        command
            .arg("--tool=callgrind")
            .arg(format!(
                "--callgrind-out-file={}",
                out_file(binary).display()
            ))
            .arg(format!(
                "--log-file={}",
                dir.join(format!("{}.valgrind", binary.name())).display()
            ))
            .arg(system::binary_path(binary)?);
        Ok(command)
    };
    eprintln!("bench: {name}: starting the services under callgrind");
    let system = System::start(env, dir, &under_callgrind).await?;
    let config = crate::load(
        system.gateway_url(),
        Mode::Open {
            rate: RATE,
            max_in_flight: 64,
        },
        Duration::from_secs_f64(ORDERS as f64 / RATE),
        true,
    );
    let report = loadgen::run(&config, std::future::pending(), |_| {}).await?;
    if report.unexpected > 0 || report.completed != ORDERS {
        bail!(
            "{name}: {} of {ORDERS} orders completed, {} unexpected",
            report.completed,
            report.unexpected
        );
    }
    let (spans_received, _db) = system.stop()?;
    let services = Binary::ALL
        .iter()
        .map(|&binary| total_instructions(&out_file(binary)))
        .collect::<anyhow::Result<_>>()?;
    eprintln!("bench: {name}: {ORDERS} orders, {spans_received} spans received");
    Ok(Count {
        name,
        services,
        spans_received,
    })
}

/// The `totals:` (or, from older valgrinds, `summary:`) line of a callgrind output file: the
/// instructions the whole process executed.
fn total_instructions(path: &Path) -> anyhow::Result<u64> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_total(&text).with_context(|| format!("no instruction total in {}", path.display()))
}

fn parse_total(callgrind_out: &str) -> Option<u64> {
    callgrind_out.lines().find_map(|line| {
        let value = line
            .strip_prefix("totals:")
            .or_else(|| line.strip_prefix("summary:"))?;
        value.split_whitespace().next()?.parse().ok()
    })
}

fn markdown(counts: &[Count]) -> String {
    let mut out = format!(
        "{ORDERS} orders at {RATE}/s into each system, the three services under `valgrind \
         --tool=callgrind`; instructions of the whole processes (start-up and shutdown included):\n\n\
         | scenario | gateway | order-service | payment-service | all three | per order |\n\
         |---|---|---|---|---|---|\n"
    );
    for count in counts {
        let cells: Vec<String> = count.services.iter().map(|&n| millions(n)).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {}k |",
            count.name,
            cells.join(" | "),
            millions(count.total()),
            count.total() / ORDERS / 1000
        );
    }
    let [off, rest @ ..] = counts else {
        return out;
    };
    let spans = ORDERS * SPANS_PER_ORDER;
    out.push('\n');
    for count in rest {
        let extra = count.total().saturating_sub(off.total());
        let _ = writeln!(
            out,
            "- {}: {} instructions a span all-in ({} more than tracing off over {spans} \
             spans, {:+.1}%)",
            count.name,
            extra / spans,
            millions(extra),
            percent(extra, off.total())
        );
    }
    out
}

fn millions(n: u64) -> String {
    format!("{:.1}M", n as f64 / 1e6)
}

fn percent(part: u64, whole: u64) -> f64 {
    100.0 * part as f64 / whole.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_is_read_from_the_totals_line_or_an_older_summary_line() {
        let out =
            "# callgrind format\nversion: 1\nevents: Ir\nfn=(1) main\n3 12\ntotals: 207100123\n";
        assert_eq!(parse_total(out), Some(207_100_123));
        assert_eq!(parse_total("events: Ir\nsummary: 42\n"), Some(42));
        assert_eq!(parse_total("events: Ir\nfn=(1) main\n"), None);
    }

    #[test]
    fn the_table_gives_each_system_and_the_cost_of_a_sampled_span() {
        let counts = [
            Count {
                name: "tracing off",
                services: vec![40_000_000, 86_000_000, 80_000_000],
                spans_received: 0,
            },
            Count {
                name: "unsampled",
                services: vec![41_000_000, 87_000_000, 81_700_000],
                spans_received: 0,
            },
            Count {
                name: "100% sampled",
                services: vec![48_000_000, 100_000_000, 92_000_000],
                spans_received: ORDERS * SPANS_PER_ORDER,
            },
        ];
        let table = markdown(&counts);
        assert!(
            table.contains("| tracing off | 40.0M | 86.0M | 80.0M | 206.0M | 1030k |"),
            "{table}"
        );
        assert!(
            table.contains("| 100% sampled | 48.0M | 100.0M | 92.0M | 240.0M | 1200k |"),
            "{table}"
        );
        // 3.7M and 34M over 3400 spans.
        for line in [
            "- unsampled: 1088 instructions a span all-in (3.7M more than tracing off over 3400 spans, +1.8%)",
            "- 100% sampled: 10000 instructions a span all-in (34.0M more than tracing off over 3400 spans, +16.5%)",
        ] {
            assert!(table.contains(line), "{table}");
        }
    }
}
