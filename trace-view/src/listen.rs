//! `trace-view listen`: an OTLP receiver that prints each trace when it is complete.
//!
//! The receiver ([`crate::receiver`]) stores what the exporters send; this loop looks at the
//! store a few times per quiet period and prints every trace that is *complete*: no span of it
//! arrived for the quiet time. Exporters send a span only once it has ended, so a trace whose
//! root has arrived has a root that ended; the quiet time is there for the spans still on
//! their way from other services' batches. A trace without a root (all orphans, e.g. with
//! propagation broken) is printed after the quiet time as well, showing its orphans. When
//! spans arrive for a trace already printed, it is printed again, marked as updated.
//!
//! On shutdown (SIGINT or SIGTERM, decided by the caller) everything not yet printed is
//! printed, the servers stop, and [`run`] returns.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::analysis::Trace;
use crate::receiver::{OtlpReceiver, ReceiverConfig};
use crate::render::{Style, waterfall};

/// What `listen` was asked to do.
#[derive(Clone, Debug)]
pub struct ListenOptions {
    pub receiver: ReceiverConfig,
    pub quiet: Duration,
    pub save: Option<PathBuf>,
    pub json: bool,
    pub style: Style,
}

/// Why `listen` stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen: {0}")]
    Bind(io::Error),
    #[error("cannot save into {dir}: {source}")]
    Save {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write to stdout: {0}")]
    Stdout(io::Error),
}

/// Runs the receiver and prints traces to `out` until `shutdown` completes.
pub async fn run(
    options: ListenOptions,
    out: &mut dyn Write,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ListenError> {
    if let Some(dir) = &options.save {
        std::fs::create_dir_all(dir).map_err(|source| ListenError::Save {
            dir: dir.clone(),
            source,
        })?;
    }
    let receiver = OtlpReceiver::bind(options.receiver.clone())
        .await
        .map_err(ListenError::Bind)?;
    eprintln!(
        "trace-view: receiving OTLP on grpc {} and http {}/v1/traces",
        receiver.grpc_addr(),
        receiver.http_addr()
    );
    let mut printer = Printer {
        options: &options,
        printed: HashMap::new(),
        out,
    };
    // A few looks per quiet period keep the delay after completion small without spinning.
    let tick = (options.quiet / 5).clamp(Duration::from_millis(5), Duration::from_millis(100));
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            () = &mut shutdown => break printer.print_ready(&receiver, None),
            () = tokio::time::sleep(tick) => {
                if let Err(e) = printer.print_ready(&receiver, Some(options.quiet)) {
                    break Err(e);
                }
            }
        }
    };
    receiver.stop().await;
    result
}

struct Printer<'a> {
    options: &'a ListenOptions,
    /// Trace id -> the span count it had when printed.
    printed: HashMap<String, u64>,
    out: &'a mut dyn Write,
}

impl Printer<'_> {
    /// Prints every trace that changed since it was last printed and, if `quiet` is given,
    /// has been quiet that long.
    fn print_ready(
        &mut self,
        receiver: &OtlpReceiver,
        quiet: Option<Duration>,
    ) -> Result<(), ListenError> {
        let summaries = receiver.trace_summaries();
        for summary in &summaries {
            let before = self.printed.get(&summary.trace_id).copied();
            if before == Some(summary.received) || quiet.is_some_and(|q| summary.quiet_for < q) {
                continue;
            }
            let spans = receiver.trace(&summary.trace_id);
            let trace = Trace::new(summary.trace_id.clone(), spans);
            self.print(&trace, before.map(|b| summary.received.saturating_sub(b)))?;
            self.printed
                .insert(summary.trace_id.clone(), summary.received);
        }
        // Forget what the store evicted, so this map stays as bounded as the store.
        if self.printed.len() > summaries.len() {
            let kept: std::collections::HashSet<&str> =
                summaries.iter().map(|s| s.trace_id.as_str()).collect();
            self.printed.retain(|id, _| kept.contains(id.as_str()));
        }
        Ok(())
    }

    /// `new_spans` is `Some` for a trace printed before: how many spans arrived since.
    fn print(&mut self, trace: &Trace, new_spans: Option<u64>) -> Result<(), ListenError> {
        if let Some(dir) = &self.options.save {
            save(dir, trace).map_err(|source| ListenError::Save {
                dir: dir.clone(),
                source,
            })?;
        }
        let text = if self.options.json {
            let mut value = trace.to_json();
            value["updated"] = serde_json::Value::Bool(new_spans.is_some());
            format!("{value}\n")
        } else {
            let updated = new_spans
                .map(|n| {
                    format!(
                        "updated: {n} more span{} arrived for trace {}\n",
                        if n == 1 { "" } else { "s" },
                        trace.trace_id
                    )
                })
                .unwrap_or_default();
            format!("{updated}{}\n", waterfall(trace, &self.options.style))
        };
        // Flushed per trace: stdout is often a pipe (a test, the local run), which would
        // otherwise hold the waterfall back until its buffer fills.
        self.out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush())
            .map_err(ListenError::Stdout)
    }
}

/// Writes `<dir>/<trace id>.json` as bare OTLP JSON, through a temporary file and a rename so
/// a reader never sees half a file.
fn save(dir: &Path, trace: &Trace) -> io::Result<()> {
    let path = dir.join(format!("{}.json", trace.trace_id));
    let tmp = dir.join(format!(".{}.json.tmp", trace.trace_id));
    let bytes = serde_json::to_vec_pretty(&crate::json::encode(&trace.spans))?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &path)
}
