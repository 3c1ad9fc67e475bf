//! Shared by the integration tests (`mod common;`): the broker harness and
//! small helpers that build test data.

#![allow(dead_code)]

pub use candela_testkit::broker;
mod cc;

#[allow(unused_imports)]
pub use cc::*;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use candela_actors::domain::{Instrument, Side, Tick};
use candela_actors::kafka::KafkaConfig;

/// A Kafka configuration for the shared test broker, with short timeouts.
pub fn config() -> KafkaConfig {
    KafkaConfig {
        delivery_timeout_ms: 20_000,
        admin_timeout_ms: 10_000,
        ..KafkaConfig::for_brokers(broker::shared_bootstrap())
    }
}

/// A name nobody else uses in this or any earlier run: `{prefix}-{pid}-{n}-{nanos}`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `n` ticks round-robin over `instruments`, trade ids and times increasing
/// per instrument, prices with varying scale.
pub fn ticks(instruments: &[Instrument], n: usize) -> Vec<Tick> {
    (0..n)
        .map(|i| {
            let instrument = instruments[i % instruments.len()].clone();
            let seq = (i / instruments.len()) as i64;
            Tick {
                instrument,
                trade_id: format!("{}", 1_000_000 + seq),
                trade_time_ns: 1_700_000_000_000_000_000 + seq * 1_000,
                price: rust_decimal::Decimal::new(3_725_012 + (i as i64 % 997), 2 + (i as u32 % 3)),
                quantity: rust_decimal::Decimal::new(15 + i as i64 % 100, 3),
                side: match i % 3 {
                    0 => Side::Buy,
                    1 => Side::Sell,
                    _ => Side::Unknown,
                },
                received_ns: 1_700_000_000_000_000_000 + seq * 1_000 + 500,
            }
        })
        .collect()
}

/// Instruments on a market name unique to this run, so tests on a shared,
/// long-lived broker can tell their own messages from earlier runs'.
pub fn instruments(count: usize) -> Vec<Instrument> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() % 10_000_000_000)
        .unwrap_or_default();
    static N: AtomicU32 = AtomicU32::new(0);
    let market = format!(
        "T{}x{}x{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    ["BTC", "ETH", "SOL", "XRP", "ADA", "DOT", "LTC", "DOGE"]
        .iter()
        .cycle()
        .take(count)
        .enumerate()
        .map(|(i, base)| Instrument::new(market.clone(), *base, if i < 8 { "USD" } else { "EUR" }))
        .collect()
}
