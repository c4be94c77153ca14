//! The `trace-view` command line: parse, pick the source, render, map failures to exit codes.
//! Everything else lives in the library, where the tests reach it.

use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use trace_view::jaeger::{self, FetchError, Timeouts};
use trace_view::listen::{self, ListenError, ListenOptions};
use trace_view::{ReceiverConfig, Style, Trace, analyse, waterfall};

const AFTER_HELP: &str = "\
Examples:
  trace-view 4bf92f3577b34da6a3ce929d0e0e4736
  trace-view --jaeger http://jaeger:16686 4bf92f3577b34da6a3ce929d0e0e4736 --json
  trace-view --file trace.json
  curl -s localhost:16686/api/v3/traces/4bf92f3577b34da6a3ce929d0e0e4736 | trace-view --file -
  trace-view listen --save traces/

Exit codes:
  0  the trace was shown (listen: stopped by SIGINT or SIGTERM)
  1  the trace was not found: Jaeger answered 404, or the input holds no spans
  2  usage error, e.g. a trace id that is not 32 hex characters
  3  Jaeger is unreachable, did not answer in time, or answered an unexpected status
  4  Jaeger's answer or the file is not OTLP JSON, or is larger than 64 MiB
  5  a file or stdout could not be read or written, or listen could not bind a port

Environment:
  JAEGER_URL  the default of --jaeger
  COLUMNS     the width when --width is not given (else the terminal's, else 80)
  NO_COLOR    when set and not empty, no colour (colour is only used on a terminal)";

/// See a trace in the terminal: its waterfall, critical path and bottleneck.
///
/// The spans come from Jaeger's query API (a `TRACE_ID`), from a file of OTLP JSON (--file), or
/// straight from OTLP exporters (listen).
#[derive(Parser)]
#[command(
    name = "trace-view",
    version,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    /// The trace to fetch from Jaeger: 32 hex characters, any case.
    #[arg(
        value_name = "TRACE_ID",
        value_parser = trace_id,
        required_unless_present = "file"
    )]
    trace_id: Option<String>,

    /// Jaeger's query API: the URL of its UI.
    #[arg(
        long,
        value_name = "URL",
        env = "JAEGER_URL",
        default_value = "http://localhost:16686"
    )]
    jaeger: String,

    /// How long to wait for Jaeger's answer, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    timeout: u64,

    /// Read OTLP JSON from PATH instead (`-` for stdin): bare `{"resourceSpans": ...}` or
    /// Jaeger's `{"result": ...}`.
    #[arg(long, value_name = "PATH", conflicts_with = "trace_id")]
    file: Option<PathBuf>,

    #[command(flatten)]
    output: Output,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args)]
struct Output {
    /// Print the analysed trace as JSON, one object per trace and line, instead of the
    /// waterfall.
    #[arg(long)]
    json: bool,

    /// Width of the waterfall in columns (default: $COLUMNS, else the terminal's width, else 80;
    /// at least 60).
    #[arg(long, value_name = "N")]
    width: Option<usize>,
}

#[derive(Subcommand)]
enum Command {
    /// Receive OTLP over gRPC and HTTP and print each trace when it is complete.
    ///
    /// A trace is complete when no span of it arrived for the quiet time (exporters send a span
    /// once it has ended). Spans arriving for a trace already printed print it again, marked
    /// as updated. Ctrl-C or SIGTERM prints what is pending, stops the servers and exits 0.
    Listen(ListenArgs),
}

#[derive(Args)]
struct ListenArgs {
    /// Address of the OTLP/gRPC server (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4317")]
    grpc: SocketAddr,

    /// Address of the OTLP/HTTP server (`POST /v1/traces`, protobuf or JSON).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4318")]
    http: SocketAddr,

    /// A trace is complete when no span of it arrived for this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1500)]
    quiet_ms: u64,

    /// How many traces to keep in memory; the oldest is forgotten first.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    keep: u64,

    /// Also write each printed trace to DIR/<trace id>.json, as OTLP JSON that --file reads.
    #[arg(long, value_name = "DIR")]
    save: Option<PathBuf>,

    #[command(flatten)]
    output: Output,
}

fn trace_id(input: &str) -> Result<String, String> {
    trace_view::span::parse_trace_id(input)
}

/// A failure: its exit code and the one line that explains it.
struct Failure {
    code: u8,
    message: String,
}

const NOT_FOUND: u8 = 1;
const UNREACHABLE: u8 = 3;
const MALFORMED: u8 = 4;
const IO: u8 = 5;

/// Reads at most this much from a file or stdin, as from Jaeger.
const MAX_INPUT_BYTES: usize = jaeger::MAX_ANSWER_BYTES;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("trace-view: cannot start the async runtime: {e}");
            return ExitCode::from(IO);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("trace-view: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    if let Some(Command::Listen(args)) = cli.command {
        return listen(args).await;
    }
    let (spans, source) = match (&cli.file, &cli.trace_id) {
        (Some(path), _) => (read_file(path)?, path.display().to_string()),
        (None, Some(id)) => {
            let timeouts = Timeouts {
                total: Duration::from_secs(cli.timeout.max(1)),
                ..Timeouts::default()
            };
            let spans = jaeger::fetch_trace(&cli.jaeger, id, timeouts)
                .await
                .map_err(|e| Failure {
                    code: match e {
                        FetchError::NotFound { .. } => NOT_FOUND,
                        FetchError::TooLarge { .. } | FetchError::Malformed { .. } => MALFORMED,
                        _ => UNREACHABLE,
                    },
                    message: e.to_string(),
                })?;
            // Jaeger answers with the trace asked for; anything else is not shown.
            let spans: Vec<_> = spans.into_iter().filter(|s| &s.trace_id == id).collect();
            if spans.is_empty() {
                return Err(Failure {
                    code: NOT_FOUND,
                    message: format!("trace {id} not found in Jaeger at {}", cli.jaeger),
                });
            }
            (spans, cli.jaeger.clone())
        }
        // clap requires one of the two.
        (None, None) => unreachable!("clap requires a trace id or --file"),
    };
    if spans.is_empty() {
        return Err(Failure {
            code: NOT_FOUND,
            message: format!("{source} holds no spans"),
        });
    }
    let style = Style::from_env(cli.output.width);
    let mut text = String::new();
    for (n, trace) in analyse(spans).iter().enumerate() {
        text.push_str(&render(trace, &style, cli.output.json, n > 0));
    }
    write_stdout(&text)
}

fn render(trace: &Trace, style: &Style, json: bool, separate: bool) -> String {
    if json {
        format!("{}\n", trace.to_json())
    } else if separate {
        format!("\n{}", waterfall(trace, style))
    } else {
        waterfall(trace, style)
    }
}

fn read_file(path: &PathBuf) -> Result<Vec<trace_view::ReceivedSpan>, Failure> {
    let name = if path.as_os_str() == "-" {
        "stdin".to_owned()
    } else {
        path.display().to_string()
    };
    let io_failure = |e: io::Error| Failure {
        code: IO,
        message: format!("cannot read {name}: {e}"),
    };
    let mut bytes = Vec::new();
    let limit = MAX_INPUT_BYTES as u64 + 1;
    if path.as_os_str() == "-" {
        io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(io_failure)?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(limit).read_to_end(&mut bytes))
            .map_err(io_failure)?;
    }
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(Failure {
            code: MALFORMED,
            message: format!("{name} is larger than {MAX_INPUT_BYTES} bytes"),
        });
    }
    trace_view::json::decode(&bytes).map_err(|e| Failure {
        code: MALFORMED,
        message: format!("{name} is {e}"),
    })
}

fn write_stdout(text: &str) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // The reader went away (`| head`): nothing left to tell anyone.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure {
            code: IO,
            message: format!("cannot write to stdout: {e}"),
        }),
        Ok(()) => Ok(()),
    }
}

async fn listen(args: ListenArgs) -> Result<(), Failure> {
    // Installed before the servers start, so a signal sent as soon as the "receiving" line
    // appears is not lost.
    let signals = Signals::install().map_err(|e| Failure {
        code: IO,
        message: format!("cannot install the signal handlers: {e}"),
    })?;
    let options = ListenOptions {
        receiver: ReceiverConfig {
            grpc: args.grpc,
            http: args.http,
            max_traces: usize::try_from(args.keep).unwrap_or(usize::MAX),
            ..ReceiverConfig::default()
        },
        quiet: Duration::from_millis(args.quiet_ms),
        save: args.save,
        json: args.output.json,
        style: Style::from_env(args.output.width),
    };
    let mut stdout = io::stdout();
    listen::run(options, &mut stdout, signals.recv())
        .await
        .map_err(|e| Failure {
            code: IO,
            message: match e {
                ListenError::Bind(_) | ListenError::Save { .. } | ListenError::Stdout(_) => {
                    e.to_string()
                }
            },
        })
}

/// SIGINT and SIGTERM, either of which ends `listen`.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
