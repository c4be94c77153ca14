//! The batch processor of the OTLP/HTTP export: spans encoded where they end.
//!
//! The SDK's `BatchSpanProcessor` sends each ended span (its `SpanData`, about 300 bytes
//! and the heap blocks it points to) through a channel to its thread, copies each batch once
//! more, and the exporter encodes and frees the spans there. Every block a span allocated on
//! a request thread is therefore freed on another, which is the slow path of a per-thread
//! allocator cache (glibc's, for one), and the queue holds whole spans.
//!
//! [`EncodingBatchProcessor`] does the same job with the same settings
//! (`OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`; the queue bound is
//! [`Admission`](crate::telemetry::export::Admission)'s), but encodes each span into the
//! batch being filled as it ends, with the [`TraceEncoder`], and drops it right there: what
//! is queued is the protobuf bytes, and its thread only wraps them into a request and posts
//! it with the [`HttpExporter`]. The spans on the wire are the same bytes.
//!
//! A batch is posted when it holds `max_export_batch_size` spans, when the schedule delay
//! has passed since the last export, on `force_flush` and on shutdown. Request handling never
//! waits on the collector: ending a span takes a lock for the time its encoding takes (about a
//! microsecond), never for an export.

use std::{
    collections::VecDeque,
    mem,
    sync::{Arc, Condvar, Mutex, MutexGuard, mpsc},
    thread,
    time::{Duration, Instant},
};

use opentelemetry::Context;
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    trace::{Span, SpanData, SpanProcessor},
};

use super::{EncodedSpans, HttpExporter, TraceEncoder};
use crate::telemetry::export::ExportStats;

/// How long `force_flush` waits for the export thread, as the SDK's batch processor does.
const FORCE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// A batch span processor that queues spans encoded; see the module docs.
#[derive(Debug)]
pub struct EncodingBatchProcessor {
    shared: Arc<Shared>,
    stats: Arc<ExportStats>,
    worker: Mutex<Option<thread::JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Told when a batch is full, and on a flush or shutdown.
    wake: Condvar,
    max_batch: usize,
}

#[derive(Debug)]
struct Queue {
    encoder: Arc<TraceEncoder>,
    /// The batch spans are encoded into as they end.
    filling: EncodedSpans,
    /// Batches of `max_batch` spans, waiting for the export thread.
    full: VecDeque<EncodedSpans>,
    /// `force_flush` calls waiting for what was queued before them to be exported.
    flushes: Vec<mpsc::SyncSender<OTelSdkResult>>,
    /// The `shutdown` call waiting for the last export.
    shutdown: Option<mpsc::SyncSender<OTelSdkResult>>,
    /// Shut down: spans that end now are not exported.
    closed: bool,
}

impl Queue {
    /// The filled batch, and a new one with as much room.
    fn take_filling(&mut self) -> EncodedSpans {
        let next = EncodedSpans::with_capacity(self.filling.bytes());
        mem::replace(&mut self.filling, next)
    }
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding the lock but the encoder, on a span the SDK built: the
        // queue is still whole then, so a poisoned lock is taken as it is.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl EncodingBatchProcessor {
    /// Exports with `exporter` on a thread of its own, in batches of at most
    /// `max_export_batch_size` spans, at least every `schedule_delay`. Every span it is given
    /// was admitted (counted in flight) by `stats`' [`Admission`](crate::telemetry::export::Admission),
    /// and is settled there as delivered or lost.
    pub fn new(
        exporter: HttpExporter,
        stats: Arc<ExportStats>,
        schedule_delay: Duration,
        max_export_batch_size: usize,
    ) -> std::io::Result<Self> {
        let max_batch = max_export_batch_size.max(1);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                encoder: Arc::new(TraceEncoder::default()),
                filling: EncodedSpans::default(),
                full: VecDeque::new(),
                flushes: Vec::new(),
                shutdown: None,
                closed: false,
            }),
            wake: Condvar::new(),
            max_batch,
        });
        let worker = thread::Builder::new()
            .name("otlp-http-export".to_owned())
            .spawn({
                let shared = Arc::clone(&shared);
                let stats = Arc::clone(&stats);
                move || export_loop(&shared, &exporter, &stats, schedule_delay)
            })?;
        Ok(EncodingBatchProcessor {
            shared,
            stats,
            worker: Mutex::new(Some(worker)),
        })
    }
}

/// What the export thread took from the queue in one look.
struct Work {
    encoder: Arc<TraceEncoder>,
    batches: Vec<EncodedSpans>,
    flushes: Vec<mpsc::SyncSender<OTelSdkResult>>,
    shutdown: Option<mpsc::SyncSender<OTelSdkResult>>,
}

/// The export thread: waits for full batches, the schedule, a flush or the shutdown, then
/// posts what it took, outside the lock.
fn export_loop(shared: &Shared, exporter: &HttpExporter, stats: &ExportStats, delay: Duration) {
    // The HTTP client's own instrumentation must not make spans of the export.
    let _suppressed = Context::enter_telemetry_suppressed_scope();
    let mut due = Instant::now() + delay;
    loop {
        let work = {
            let mut queue = shared.queue();
            loop {
                let now = Instant::now();
                let everything = now >= due || !queue.flushes.is_empty() || queue.closed;
                if everything || !queue.full.is_empty() {
                    let mut batches: Vec<EncodedSpans> = queue.full.drain(..).collect();
                    if everything {
                        if !queue.filling.is_empty() {
                            batches.push(queue.take_filling());
                        }
                        due = now + delay;
                    }
                    break Work {
                        encoder: Arc::clone(&queue.encoder),
                        batches,
                        flushes: mem::take(&mut queue.flushes),
                        shutdown: queue.shutdown.take(),
                    };
                }
                queue = shared
                    .wake
                    .wait_timeout(queue, due - now)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
        };
        let mut failure = None;
        for batch in work.batches {
            let spans = batch.len() as u64;
            let body = work.encoder.request(batch);
            let result = exporter.send(&body);
            stats.settle(spans, result.is_ok());
            if let Err(e) = result {
                failure = Some(e.to_string());
            }
        }
        let outcome = || match &failure {
            None => Ok(()),
            Some(reason) => Err(OTelSdkError::InternalFailure(reason.clone())),
        };
        for flush in work.flushes {
            let _ = flush.send(outcome());
        }
        if let Some(done) = work.shutdown {
            let _ = done.send(outcome());
            return;
        }
    }
}

impl SpanProcessor for EncodingBatchProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let mut queue = self.shared.queue();
        if queue.closed {
            drop(queue);
            // Admitted, and never to be sent.
            self.stats.settle(1, false);
            return;
        }
        queue.filling.push(&span);
        if queue.filling.len() >= self.shared.max_batch {
            let full = queue.take_filling();
            queue.full.push_back(full);
            drop(queue);
            self.shared.wake.notify_one();
        }
        // `span` is dropped here, on the thread that built it, after the lock is released.
    }

    fn force_flush(&self) -> OTelSdkResult {
        let (done, finished) = mpsc::sync_channel(1);
        {
            let mut queue = self.shared.queue();
            if queue.closed {
                return Err(OTelSdkError::AlreadyShutdown);
            }
            queue.flushes.push(done);
        }
        self.shared.wake.notify_one();
        finished
            .recv_timeout(FORCE_FLUSH_TIMEOUT)
            .map_err(|_| OTelSdkError::Timeout(FORCE_FLUSH_TIMEOUT))?
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let (done, finished) = mpsc::sync_channel(1);
        {
            let mut queue = self.shared.queue();
            if queue.closed {
                return Err(OTelSdkError::AlreadyShutdown);
            }
            queue.closed = true;
            queue.shutdown = Some(done);
        }
        self.shared.wake.notify_one();
        let result = finished
            .recv_timeout(timeout)
            .map_err(|_| OTelSdkError::Timeout(timeout))?;
        let worker = self
            .worker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(worker) = worker {
            // It has answered: it is returning.
            let _ = worker.join();
        }
        result
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.shared.queue().encoder = Arc::new(TraceEncoder::new(resource));
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use bytes::Bytes;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message as _;

    use super::super::tests::{Collector, span};
    use super::*;
    use crate::telemetry::export::Admission;

    fn resource() -> Resource {
        Resource::builder_empty()
            .with_service_name("batch-test")
            .build()
    }

    /// The processor as the services build it: behind the admission that counts its spans.
    fn processor(
        collector: &Collector,
        delay: Duration,
        max_batch: usize,
    ) -> (Admission<EncodingBatchProcessor>, Arc<ExportStats>) {
        let stats = ExportStats::new(100);
        let exporter = collector.exporter(Duration::from_secs(2));
        let mut processor =
            EncodingBatchProcessor::new(exporter, Arc::clone(&stats), delay, max_batch)
                .expect("a thread");
        processor.set_resource(&resource());
        (Admission::new(processor, Arc::clone(&stats)), stats)
    }

    /// The bodies posted so far, once there are `count` of them (or after 5 s).
    fn posted(collector: &Collector, count: usize) -> Vec<Bytes> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let requests = collector.requests.lock().unwrap();
            if requests.len() >= count || Instant::now() > deadline {
                return requests.iter().map(|(_, body)| body.clone()).collect();
            }
            drop(requests);
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn names(body: &[u8]) -> Vec<String> {
        let request = ExportTraceServiceRequest::decode(body).expect("a valid request");
        request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.name.clone())
            .collect()
    }

    #[test]
    fn a_full_batch_is_posted_at_once_as_the_encoder_writes_those_spans() {
        let collector = Collector::start(Vec::new());
        // The schedule is far away: only the batch size can post.
        let (processor, stats) = processor(&collector, Duration::from_mins(1), 3);
        let spans = [span("a"), span("b"), span("c"), span("d")];
        for s in &spans {
            processor.on_end(s.clone());
        }
        let bodies = posted(&collector, 1);
        assert_eq!(
            bodies.len(),
            1,
            "the full batch, without waiting for the schedule"
        );
        assert_eq!(
            bodies[0],
            TraceEncoder::new(&resource()).encode(&spans[..3])
        );
        thread::sleep(Duration::from_millis(200));
        assert_eq!(
            collector.requests.lock().unwrap().len(),
            1,
            "the fourth span waits for its batch to fill or the schedule"
        );
        processor.force_flush().expect("flushed");
        let bodies = posted(&collector, 2);
        assert_eq!(names(&bodies[1]), ["d"]);
        let now = stats.snapshot();
        assert_eq!((now.exported, now.in_flight, now.lost()), (4, 0, 0));
    }

    #[test]
    fn a_partial_batch_is_posted_when_the_schedule_comes() {
        let collector = Collector::start(Vec::new());
        let (processor, stats) = processor(&collector, Duration::from_millis(100), 512);
        processor.on_end(span("alone"));
        let bodies = posted(&collector, 1);
        assert_eq!(names(&bodies[0]), ["alone"]);
        // Settled once the post is answered, just after the collector saw it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while stats.snapshot().exported < 1 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(stats.snapshot().exported, 1);
    }

    #[test]
    fn shutdown_posts_what_is_queued_and_later_spans_are_counted_lost() {
        let collector = Collector::start(Vec::new());
        let (processor, stats) = processor(&collector, Duration::from_mins(1), 512);
        processor.on_end(span("before"));
        processor
            .shutdown_with_timeout(Duration::from_secs(5))
            .expect("shut down");
        let bodies = posted(&collector, 1);
        assert_eq!(
            names(&bodies[0]),
            ["before"],
            "posted before shutdown returned"
        );
        processor.on_end(span("after"));
        let now = stats.snapshot();
        assert_eq!((now.exported, now.export_failed, now.in_flight), (1, 1, 0));
        assert!(matches!(
            processor.shutdown_with_timeout(Duration::from_secs(1)),
            Err(OTelSdkError::AlreadyShutdown)
        ));
        assert!(matches!(
            processor.force_flush(),
            Err(OTelSdkError::AlreadyShutdown)
        ));
    }

    #[test]
    fn a_refused_batch_is_counted_lost_and_the_flush_says_why() {
        let collector = Collector::start(vec![(StatusCode::BAD_REQUEST, Vec::new(), Vec::new())]);
        let (processor, stats) = processor(&collector, Duration::from_mins(1), 512);
        processor.on_end(span("refused"));
        let error = processor
            .force_flush()
            .expect_err("the collector refused it");
        assert!(error.to_string().contains("400"), "{error}");
        let now = stats.snapshot();
        assert_eq!((now.exported, now.export_failed, now.in_flight), (0, 1, 0));
    }

    #[test]
    fn spans_from_many_threads_are_each_posted_once() {
        let collector = Collector::start(Vec::new());
        let (processor, stats) = processor(&collector, Duration::from_mins(1), 7);
        let processor = Arc::new(processor);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let processor = Arc::clone(&processor);
                thread::spawn(move || {
                    for _ in 0..20 {
                        processor.on_end(span("s"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no panic");
        }
        processor.force_flush().expect("flushed");
        let bodies = posted(&collector, 0);
        let posted: usize = bodies.iter().map(|body| names(body).len()).sum();
        assert_eq!(posted, 80);
        let now = stats.snapshot();
        assert_eq!((now.exported, now.in_flight), (80, 0));
    }
}
