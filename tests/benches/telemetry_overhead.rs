//! What telemetry costs a request, and what a failing collector costs it.
//!
//! Starts the whole system (release binaries, a fresh database, the in-process receiver) once
//! per scenario, sends the same load through the gateway, and prints latency percentiles,
//! throughput and each service's resident memory:
//!
//! - `sdk disabled`: `OTEL_SDK_DISABLED=true`, the baseline without spans;
//! - `unsampled`: spans created and context propagated, nothing recorded (`always_off`);
//! - `sampled`: every trace recorded and exported to a healthy receiver;
//! - `collector down`: every trace recorded, the receiver stopped;
//! - `collector slow`: every trace recorded, the receiver answering after 5 s.
//!
//! The simulated card processor is set to 0 ms so the numbers are the stack's own.
//!
//! ```sh
//! cargo bench -p e2e --bench telemetry_overhead
//! ```

use std::time::{Duration, Instant};

use e2e::{
    harness::{Binary, Options, System},
    otlp::Behaviour,
};
use futures_util::future::join_all;
use serde_json::json;

const WARM_UP: usize = 200;
const REQUESTS: usize = 2000;
const CONCURRENCY: usize = 8;

#[derive(Clone, Copy)]
enum Collector {
    Up,
    Down,
    Slow,
}

struct Scenario {
    name: &'static str,
    env: &'static [(&'static str, &'static str)],
    collector: Collector,
}

const SCENARIOS: [Scenario; 5] = [
    Scenario {
        name: "sdk disabled",
        env: &[("OTEL_SDK_DISABLED", "true")],
        collector: Collector::Up,
    },
    Scenario {
        name: "unsampled",
        env: &[("OTEL_TRACES_SAMPLER", "always_off")],
        collector: Collector::Up,
    },
    Scenario {
        name: "sampled",
        env: &[],
        collector: Collector::Up,
    },
    Scenario {
        name: "collector down",
        env: &[],
        collector: Collector::Down,
    },
    Scenario {
        name: "collector slow",
        env: &[],
        collector: Collector::Slow,
    },
];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    println!(
        "{REQUESTS} orders per scenario, {CONCURRENCY} at a time, after {WARM_UP} to warm up; processor latency 0 ms\n"
    );
    println!(
        "| scenario | median ms | p90 ms | p99 ms | orders/s | RSS gateway / order / payment MiB | order-service RSS change during the run, MiB | spans lost (order-service) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for scenario in &SCENARIOS {
        let mut options =
            Options::default().env(Binary::PaymentService, "PROCESSOR_LATENCY_MS", "0");
        for binary in [
            Binary::Gateway,
            Binary::OrderService,
            Binary::PaymentService,
        ] {
            // The default batch interval, as in production.
            options = options.env(binary, "OTEL_BSP_SCHEDULE_DELAY", "5000");
            for (k, v) in scenario.env {
                options = options.env(binary, k, v);
            }
        }
        let system = System::start_with(options).await;
        match scenario.collector {
            Collector::Up => {}
            Collector::Down => system.receiver.stop().await,
            Collector::Slow => system
                .receiver
                .set_behaviour(Behaviour::Delay(Duration::from_secs(5))),
        }

        let run = |count: usize| {
            let system = &system;
            async move {
                let mut latencies = Vec::with_capacity(count);
                for chunk in (0..count).collect::<Vec<_>>().chunks(CONCURRENCY) {
                    let batch = join_all(chunk.iter().map(|i| async move {
                        let started = Instant::now();
                        let response = system
                            .post_order(json!({"user_id": 1 + (*i as i64 % 4), "amount": 1.25, "tier": "gold"}))
                            .await;
                        assert_eq!(response.status, 201, "{}", response.body);
                        started.elapsed()
                    }))
                    .await;
                    latencies.extend(batch);
                }
                latencies
            }
        };
        run(WARM_UP).await;
        let rss_before = system.orders.rss_kib().unwrap_or(0);
        let started = Instant::now();
        let mut latencies = run(REQUESTS).await;
        let elapsed = started.elapsed();
        latencies.sort();

        let rss_after = system.orders.rss_kib().unwrap_or(0);
        let rss = [&system.gateway, &system.orders, &system.payments]
            .map(|s| {
                s.rss_kib()
                    .map_or("?".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0))
            })
            .join(" / ");
        let metrics = system
            .http
            .get(format!("{}/metrics", system.orders.url()))
            .send()
            .await
            .expect("/metrics")
            .text()
            .await
            .expect("a body");
        let lost: u64 = metrics
            .lines()
            .filter(|l| l.starts_with("spans_lost_total"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
            .sum();
        println!(
            "| {} | {} | {} | {} | {:.0} | {} | {:+.1} | {} |",
            scenario.name,
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.9)),
            ms(percentile(&latencies, 0.99)),
            REQUESTS as f64 / elapsed.as_secs_f64(),
            rss,
            (rss_after as f64 - rss_before as f64) / 1024.0,
            lost,
        );
    }
}
