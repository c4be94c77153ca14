//! Spans that never reach the collector, counted and reported.
//!
//! When the collector is down or slow, the batch span processor cannot empty its queue, and
//! spans are lost: dropped when the queue is full, or discarded when an export fails. Request
//! handling never waits for the collector (the processor runs on its own thread and its queue
//! is bounded), so the loss is the price of an unaffected latency and a bounded memory. It
//! must not be silent, though.
//!
//! The SDK's processor keeps its own drop count private, so two thin wrappers do the counting:
//! - [`Admission`] sits in front of the batch processor and admits a span only while fewer
//!   than `OTEL_BSP_MAX_QUEUE_SIZE` spans are in flight (queued, or in an export that has not
//!   finished). The processor's queue therefore never overflows behind our back: every span
//!   dropped for lack of room is dropped, and counted, here.
//! - [`CountingExporter`] wraps the OTLP/gRPC exporter behind the SDK's processor and counts
//!   the spans each export delivered or lost. The OTLP/HTTP export's own processor
//!   ([`EncodingBatchProcessor`](crate::telemetry::otlp::EncodingBatchProcessor)) settles
//!   its batches itself, in the same counters.
//!
//! The counts are in [`ExportStats`], readable at `GET /metrics` on every service, and a
//! background task logs a warning whenever spans were lost since its last look.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use opentelemetry::Context;
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    trace::{Span, SpanData, SpanExporter, SpanProcessor},
};

/// What happened to the spans this process recorded.
#[derive(Debug)]
pub struct ExportStats {
    capacity: u64,
    in_flight: AtomicU64,
    exported: AtomicU64,
    dropped_queue_full: AtomicU64,
    export_failed: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportSnapshot {
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans dropped because the queue was full (the collector too slow, or down for long).
    pub dropped_queue_full: u64,
    /// Spans in exports that failed (the collector down, or answering errors).
    pub export_failed: u64,
    /// Spans queued or being exported right now.
    pub in_flight: u64,
}

impl ExportSnapshot {
    /// Every span lost so far.
    pub fn lost(&self) -> u64 {
        self.dropped_queue_full + self.export_failed
    }
}

impl ExportStats {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(ExportStats {
            capacity: capacity as u64,
            in_flight: AtomicU64::new(0),
            exported: AtomicU64::new(0),
            dropped_queue_full: AtomicU64::new(0),
            export_failed: AtomicU64::new(0),
        })
    }

    /// `spans` admitted by [`Admission`] are no longer in flight: delivered, or lost.
    pub(crate) fn settle(&self, spans: u64, delivered: bool) {
        self.in_flight.fetch_sub(spans, Ordering::AcqRel);
        let counter = if delivered {
            &self.exported
        } else {
            &self.export_failed
        };
        counter.fetch_add(spans, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ExportSnapshot {
        ExportSnapshot {
            exported: self.exported.load(Ordering::Relaxed),
            dropped_queue_full: self.dropped_queue_full.load(Ordering::Relaxed),
            export_failed: self.export_failed.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }
}

static STATS: OnceLock<Arc<ExportStats>> = OnceLock::new();

/// The counters of this process, once telemetry is initialised with an exporter.
pub fn stats() -> Option<ExportSnapshot> {
    STATS.get().map(|s| s.snapshot())
}

pub(crate) fn install(stats: Arc<ExportStats>) {
    // A second initialisation (tests) keeps the first counters.
    let _ = STATS.set(stats);
}

/// Admits spans to the batch processor while there is room; see the module docs.
#[derive(Debug)]
pub struct Admission<P> {
    inner: P,
    stats: Arc<ExportStats>,
}

impl<P> Admission<P> {
    pub fn new(inner: P, stats: Arc<ExportStats>) -> Self {
        Admission { inner, stats }
    }
}

impl<P: SpanProcessor> SpanProcessor for Admission<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let admitted = self
            .stats
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.stats.capacity).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            self.inner.on_end(span);
        } else {
            self.stats
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Counts what each export delivered or lost; see the module docs.
#[derive(Debug)]
pub struct CountingExporter<E> {
    inner: E,
    stats: Arc<ExportStats>,
}

impl<E> CountingExporter<E> {
    pub fn new(inner: E, stats: Arc<ExportStats>) -> Self {
        CountingExporter { inner, stats }
    }
}

/// Settles one batch's spans when the export ends, or when its future is dropped (a timed
/// out export), so a cancelled export cannot leak in-flight spans and block admission.
struct Settle<'a> {
    stats: &'a ExportStats,
    spans: u64,
    delivered: bool,
}

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        self.stats.settle(self.spans, self.delivered);
    }
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut settle = Settle {
            stats: &self.stats,
            spans: batch.len() as u64,
            delivered: false,
        };
        let result = self.inner.export(batch).await;
        settle.delivered = result.is_ok();
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Logs a warning whenever spans were lost since the last look, every `every`. Runs until
/// the runtime stops.
pub(crate) fn spawn_reporter(stats: Arc<ExportStats>, every: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut reported = 0;
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = stats.snapshot();
            if now.lost() > reported {
                tracing::warn!(
                    spans.lost = now.lost() - reported,
                    spans.dropped_queue_full = now.dropped_queue_full,
                    spans.export_failed = now.export_failed,
                    spans.exported = now.exported,
                    "spans could not be exported: is the collector up? (totals at GET /metrics)"
                );
                reported = now.lost();
            }
        }
    });
}

#[cfg(test)]
mod tests {

    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry_sdk::{error::OTelSdkError, trace::SpanEvents, trace::SpanLinks};

    use super::*;
    // Stands in for the batch processor: keeps what it is given.
    use crate::telemetry::Collect;

    fn span() -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from_bytes([1; 16]),
                SpanId::from_bytes([2; 8]),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: "test".into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: opentelemetry::InstrumentationScope::default(),
        }
    }

    #[derive(Debug)]
    struct Answer(bool);

    impl SpanExporter for Answer {
        async fn export(&self, _: Vec<SpanData>) -> OTelSdkResult {
            if self.0 {
                Ok(())
            } else {
                Err(OTelSdkError::InternalFailure("collector down".into()))
            }
        }
    }

    #[test]
    fn spans_beyond_the_capacity_are_dropped_and_counted() {
        let stats = ExportStats::new(3);
        let admission = Admission::new(Collect::default(), stats.clone());
        for _ in 0..5 {
            admission.on_end(span());
        }
        assert_eq!(admission.inner.0.lock().unwrap().len(), 3);
        assert_eq!(
            stats.snapshot(),
            ExportSnapshot {
                exported: 0,
                dropped_queue_full: 2,
                export_failed: 0,
                in_flight: 3
            }
        );
    }

    #[tokio::test]
    async fn an_export_settles_its_spans_delivered_or_failed_and_frees_room() {
        let stats = ExportStats::new(4);
        let admission = Admission::new(Collect::default(), stats.clone());
        for _ in 0..4 {
            admission.on_end(span());
        }
        let ok = CountingExporter::new(Answer(true), stats.clone());
        let down = CountingExporter::new(Answer(false), stats.clone());
        ok.export(vec![span(), span(), span()]).await.unwrap();
        assert!(down.export(vec![span()]).await.is_err());
        assert_eq!(
            stats.snapshot(),
            ExportSnapshot {
                exported: 3,
                dropped_queue_full: 0,
                export_failed: 1,
                in_flight: 0
            }
        );
        admission.on_end(span());
        assert_eq!(
            stats.snapshot().in_flight,
            1,
            "room again after the exports"
        );
    }

    #[tokio::test]
    async fn a_cancelled_export_counts_as_failed_and_frees_its_room() {
        #[derive(Debug)]
        struct Hang;
        impl SpanExporter for Hang {
            async fn export(&self, _: Vec<SpanData>) -> OTelSdkResult {
                std::future::pending().await
            }
        }
        let stats = ExportStats::new(2);
        let admission = Admission::new(Collect::default(), stats.clone());
        admission.on_end(span());
        admission.on_end(span());
        let exporter = CountingExporter::new(Hang, stats.clone());
        let timed_out = tokio::time::timeout(
            Duration::from_millis(10),
            exporter.export(vec![span(), span()]),
        )
        .await;
        assert!(timed_out.is_err());
        assert_eq!(stats.snapshot().in_flight, 0);
        assert_eq!(stats.snapshot().export_failed, 2);
    }
}
