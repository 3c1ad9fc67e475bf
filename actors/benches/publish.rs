//! Publish throughput to acknowledged delivery, on a real broker.
//!
//! ```text
//! cargo bench -p candela-actors --bench publish
//! ```
//!
//! Starts a tansu broker (or uses `CANDELA_KAFKA_BROKERS`), creates a fresh
//! 6-partition topic, publishes synthetic ticks of 50 instruments in batches
//! and prints ticks/s to acknowledged delivery and the batch latency
//! percentiles. Knobs (environment): `BENCH_TICKS` (500000), `BENCH_BATCH`
//! (5000), `BENCH_IN_FLIGHT` (batches published concurrently, 4),
//! `BENCH_STORAGE` (`sqlite` or `memory`), `BENCH_COMPRESSION` (`lz4`/`none`),
//! `BENCH_LINGER_MS` (5).

use candela_testkit::broker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use candela_actors::domain::{Instrument, Side, Tick};
use candela_actors::kafka::{ensure_topic, Compression, KafkaConfig, TickPublisher};
use rust_decimal::Decimal;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn synthetic(n: usize) -> Vec<Tick> {
    let instruments: Vec<Instrument> = (0..50)
        .map(|i| Instrument::new("Bench", format!("C{i}"), "USD"))
        .collect();
    (0..n)
        .map(|i| Tick {
            instrument: instruments[i % instruments.len()].clone(),
            trade_id: (100_000_000 + i).to_string(),
            trade_time_ns: 1_700_000_000_000_000_000 + i as i64 * 1_000,
            price: Decimal::new(3_725_012 + (i as i64 % 10_000), 2),
            quantity: Decimal::new(1 + (i as i64 % 5_000), 4),
            side: if i % 2 == 0 { Side::Buy } else { Side::Sell },
            received_ns: 1_700_000_000_000_000_000 + i as i64 * 1_000 + 250_000,
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let total: usize = env_or("BENCH_TICKS", 500_000);
    let batch: usize = env_or("BENCH_BATCH", 5_000);
    let in_flight: usize = env_or("BENCH_IN_FLIGHT", 4);
    let storage = match std::env::var("BENCH_STORAGE").as_deref() {
        Ok("memory") => broker::Storage::Memory,
        _ => broker::Storage::Sqlite,
    };
    let compression = match std::env::var("BENCH_COMPRESSION").as_deref() {
        Ok("none") => Compression::None,
        _ => Compression::Lz4,
    };

    let _own;
    let bootstrap = match std::env::var(broker::BROKERS_ENV) {
        Ok(b) if !b.trim().is_empty() => b,
        _ => {
            let t = broker::Tansu::start(storage);
            println!("broker: {}", t.command_line());
            let b = t.bootstrap();
            _own = t;
            b
        }
    };
    let config = KafkaConfig {
        compression,
        linger_ms: env_or("BENCH_LINGER_MS", 5),
        ..KafkaConfig::for_brokers(&bootstrap)
    };
    let topic = format!("bench-{}", std::process::id());
    ensure_topic(&config, &topic, 6, 1).await.expect("topic");

    let ticks = Arc::new(synthetic(total));
    let publisher = Arc::new(TickPublisher::new(&config).expect("publisher"));
    // Warm-up: connections, producer id, metadata.
    publisher
        .publish(&topic, &ticks[..batch.min(total)])
        .await
        .expect("warm-up");

    println!(
        "publishing {total} ticks in batches of {batch}, {in_flight} in flight, \
         {compression:?}, linger {} ms, storage {storage:?}",
        config.linger_ms
    );
    let before = publisher.stats();
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(total / batch + 1);
    let chunks: Vec<(usize, usize)> = (0..total)
        .step_by(batch)
        .map(|s| (s, (s + batch).min(total)))
        .collect();
    for group in chunks.chunks(in_flight) {
        let tasks: Vec<_> = group
            .iter()
            .map(|&(s, e)| {
                let (p, t, topic) = (publisher.clone(), ticks.clone(), topic.clone());
                tokio::spawn(async move {
                    let r = p.publish(&topic, &t[s..e]).await;
                    r.map(|r| r.elapsed)
                })
            })
            .collect();
        for t in tasks {
            latencies.push(t.await.expect("task").expect("publish"));
        }
    }
    let elapsed = started.elapsed();
    let after = publisher.stats();
    let acked = after.published - before.published;
    assert_eq!(acked as usize, total, "acknowledged {acked} of {total}");
    latencies.sort();
    println!(
        "acknowledged {acked} ticks in {:.2} s: {:.0} ticks/s, {:.1} MB/s payload+key; \
         batch latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; failed {}",
        elapsed.as_secs_f64(),
        acked as f64 / elapsed.as_secs_f64(),
        (after.bytes - before.bytes) as f64 / elapsed.as_secs_f64() / 1e6,
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
        after.failed - before.failed,
    );
}
