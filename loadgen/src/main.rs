//! `loadgen`: traffic for the order flow, from the command line. See the library docs for
//! what open and closed loop mean and how latency is measured.

use std::{
    io::{IsTerminal, Write},
    process::ExitCode,
    time::Duration,
};

use clap::Parser;
use loadgen::{Config, Mix, Mode, Report};

/// Sends a mix of orders, reads, declined payments and bad requests to the gateway.
///
/// Open loop (the default): --rate requests a second, latency measured from each request's
/// intended send time. Closed loop (--concurrency N): N requests at a time, as fast as the
/// target answers, for saturation.
///
/// Exit codes: 0 every request got its expected status; 1 some did not (or failed);
/// 2 bad usage; 3 the target was not reachable.
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    after_help = "Examples:\n  \
        loadgen --rate 20 --duration 30s\n  \
        loadgen --target http://gateway:8080 --rate 5 --duration 0      # until SIGTERM or Ctrl-C\n  \
        loadgen --concurrency 16 --duration 10s --mix order=1           # saturation\n  \
        loadgen --rate 50 --duration 10s --no-keepalive                 # a new connection per request"
)]
struct Cli {
    /// The gateway's base URL.
    #[arg(long, default_value = "http://localhost:8080")]
    target: String,
    /// Requests a second (open loop).
    #[arg(long, default_value_t = 10.0, value_parser = positive_rate)]
    rate: f64,
    /// Closed loop instead: this many requests at a time, as fast as possible.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrency: Option<u32>,
    /// How long to send (`30s`, `5m`, `500ms`, or seconds); `0` runs until SIGTERM or
    /// Ctrl-C, then prints the summary.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Weights of the request kinds: order, read, declined, `bad_request` (or bad).
    #[arg(long, default_value_t = Mix::default())]
    mix: Mix,
    /// Open a new connection for every request instead of reusing pooled ones.
    #[arg(long)]
    no_keepalive: bool,
    /// How long one request may take before it counts as a timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Open loop: the most requests in flight at once; later ones wait (their latency still
    /// counts from their intended send time).
    #[arg(long, default_value_t = 1024)]
    max_in_flight: usize,
    /// How long to wait for `GET /healthz` to answer before sending (exit 3 if it never does).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    wait_ready: Duration,
    /// No progress line.
    #[arg(long, short)]
    quiet: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 1_000_000.0 => Ok(r),
        _ => Err(format!(
            "`{s}`: a rate is a number of requests a second above 0"
        )),
    }
}

/// `250ms`, `30s`, `5m`, `1h`, or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{s}`: expected a duration such as 30s, 5m or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("`{s}`: the unit is one of ms, s, m, h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{s}`: {e}"))
}

/// Resolves on SIGTERM (how compose and the benchmark stop it) or Ctrl-C.
async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let kind = tokio::signal::unix::SignalKind::terminate();
        let Ok(mut term) = tokio::signal::unix::signal(kind) else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = config(&cli);
    let client = match loadgen::client(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = loadgen::wait_until_ready(&client, &config.target, cli.wait_ready).await {
        eprintln!("loadgen: {e:#}");
        return ExitCode::from(3);
    }
    let tty = std::io::stderr().is_terminal();
    let quiet = cli.quiet;
    eprintln!("loadgen: {}", describe(&config));
    let result = loadgen::run(&config, stop_signal(), |progress| {
        if quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        // On a terminal the line is rewritten in place; in a log (compose) each second is a
        // line of its own.
        let _ = if tty {
            write!(err, "\r\x1b[2K{progress}")
        } else {
            writeln!(err, "{progress}")
        };
        let _ = err.flush();
    })
    .await;
    if tty && !quiet {
        eprintln!();
    }
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            return ExitCode::from(1);
        }
    };
    if cli.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("loadgen: encoding the summary: {e}"),
        }
    } else {
        print!("{report}");
    }
    exit_code(&report, &config)
}

/// The run the command line asks for.
fn config(cli: &Cli) -> Config {
    Config {
        target: cli.target.clone(),
        mode: match cli.concurrency {
            Some(n) => Mode::Closed {
                concurrency: usize::try_from(n).expect("at most 10 000"),
            },
            None => Mode::Open {
                rate: cli.rate,
                max_in_flight: cli.max_in_flight,
            },
        },
        duration: (!cli.duration.is_zero()).then_some(cli.duration),
        mix: cli.mix.clone(),
        keepalive: !cli.no_keepalive,
        timeout: cli.timeout,
    }
}

/// The run in one line, for the start of the log.
fn describe(config: &Config) -> String {
    format!(
        "{} -> {} ({}), mix {}{}",
        match config.mode {
            Mode::Open { rate, .. } => format!("{rate}/s"),
            Mode::Closed { concurrency } => format!("{concurrency} at a time"),
        },
        config.target,
        match config.duration {
            Some(d) => format!("for {d:?}"),
            None => "until SIGTERM or Ctrl-C".to_owned(),
        },
        config.mix,
        if config.keepalive {
            ""
        } else {
            ", a new connection per request"
        },
    )
}

/// 3 when the target was never reached, 1 when a request got a status it should not have,
/// 0 otherwise.
fn exit_code(report: &Report, config: &Config) -> ExitCode {
    if report.unreachable() {
        eprintln!("loadgen: {} was not reachable", config.target);
        ExitCode::from(3)
    } else if report.unexpected > 0 {
        eprintln!(
            "loadgen: {} of {} requests did not get their expected status",
            report.unexpected, report.completed
        );
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_bare_seconds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_mins(2)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn the_cli_parses_its_examples_and_refuses_a_zero_rate() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "loadgen",
            "--target",
            "http://gateway:8080",
            "--rate",
            "5",
            "--duration",
            "0",
        ])
        .unwrap();
        assert_eq!(cli.duration, Duration::ZERO);
        assert!(Cli::try_parse_from(["loadgen", "--rate", "0"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "--concurrency", "0"]).is_err());
    }
}
