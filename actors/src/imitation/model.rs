//! Deterministic synthetic trades: a pure function of (seed, instrument,
//! second).
//!
//! Nothing here depends on wall-clock time or on what was generated before:
//! the trades of any second can be recomputed at any moment, by the streamer,
//! by the history endpoints and by a test, and they always agree. Prices
//! follow a smooth path (hourly and per-minute anchors, linearly
//! interpolated) with per-trade noise; all arithmetic is on integers (price
//! in cents, quantity in millionths), so bars are exact sums.
//!
//! Trade ids are `second * 1_000_000 + index`, so they increase with time and
//! are unique per instrument.

use rust_decimal::Decimal;

use crate::cryptocompare::side_from_flags;
use crate::domain::{Instrument, Tick};

/// One synthetic trade (of an instrument known from context).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Trade {
    /// Trade id; increases with time.
    pub id: u64,
    /// Trade time, nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// Price in cents of the quote symbol.
    pub price_cents: i64,
    /// Quantity in millionths of the base symbol.
    pub qty_micros: i64,
    /// CryptoCompare `F` flags.
    pub flags: u32,
}

impl Trade {
    /// Price as an exact decimal (two places).
    pub fn price(&self) -> Decimal {
        Decimal::new(self.price_cents, 2)
    }

    /// Quantity as an exact decimal (six places).
    pub fn quantity(&self) -> Decimal {
        Decimal::new(self.qty_micros, 6)
    }

    /// Price times quantity in units of 1e-8 of the quote symbol.
    pub fn notional_e8(&self) -> i128 {
        self.price_cents as i128 * self.qty_micros as i128
    }

    /// The tick a client should make of this trade (`received_ns` 0).
    pub fn to_tick(&self, instrument: &Instrument) -> Tick {
        Tick {
            instrument: instrument.clone(),
            trade_id: self.id.to_string(),
            trade_time_ns: self.time_ns,
            price: self.price(),
            quantity: self.quantity(),
            side: side_from_flags(self.flags),
            received_ns: 0,
        }
    }
}

/// The trade generator: seed, rate and the first second with trades.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TradeModel {
    seed: u64,
    trades_per_sec: f64,
    start_ts: i64,
}

const NS: i64 = 1_000_000_000;
const MAX_PER_SECOND: u64 = 999_999;

impl TradeModel {
    /// Trades at a mean of `trades_per_sec` per instrument, from unix second
    /// `start_ts` on (none before).
    pub fn new(seed: u64, trades_per_sec: f64, start_ts: i64) -> Self {
        Self {
            seed,
            trades_per_sec: trades_per_sec.max(0.0),
            start_ts,
        }
    }

    /// The first second that has trades.
    pub fn start_ts(&self) -> i64 {
        self.start_ts
    }

    /// A stable 64-bit key of an instrument under this seed.
    pub fn key(&self, instrument: &Instrument) -> InstrumentKey {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for part in [&instrument.market, &instrument.base, &instrument.quote] {
            for b in part.bytes().chain(std::iter::once(0x1f)) {
                h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
        let mut base_h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in instrument.base.bytes() {
            base_h = (base_h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        let base_cents = match instrument.base.as_str() {
            "BTC" => 6_000_000,
            "ETH" => 300_000,
            "SOL" => 15_000,
            _ => 100 + (base_h % 100_000) as i64,
        };
        InstrumentKey {
            hash: mix(self.seed ^ mix(h)),
            base_cents,
        }
    }

    /// Every trade of `instrument` in unix second `second`, in time order.
    pub fn trades_in_second(&self, instrument: &Instrument, second: i64) -> Vec<Trade> {
        let mut out = Vec::new();
        self.fill_second(&self.key(instrument), second, &mut out);
        out
    }

    /// Every trade with `from_ns <= time_ns <= to_ns`, in time order.
    pub fn trades_between(&self, instrument: &Instrument, from_ns: i64, to_ns: i64) -> Vec<Trade> {
        let key = self.key(instrument);
        let mut out = Vec::new();
        let mut second_trades = Vec::new();
        for second in from_ns.div_euclid(NS)..=to_ns.div_euclid(NS) {
            self.fill_second(&key, second, &mut second_trades);
            out.extend(
                second_trades
                    .iter()
                    .filter(|t| (from_ns..=to_ns).contains(&t.time_ns)),
            );
        }
        out
    }

    /// How many trades `second` has.
    fn count(&self, key: &InstrumentKey, second: i64) -> u64 {
        if second < self.start_ts || self.trades_per_sec <= 0.0 {
            return 0;
        }
        let h = mix(key.hash ^ mix(second as u64 ^ 0xC0_u64.rotate_left(56)));
        let u1 = unit(h);
        let u2 = unit(mix(h ^ 0x5555));
        ((2.0 * self.trades_per_sec * u1 + u2).floor() as u64).min(MAX_PER_SECOND)
    }

    /// Replaces `out` with the trades of `second`.
    pub(crate) fn fill_second(&self, key: &InstrumentKey, second: i64, out: &mut Vec<Trade>) {
        out.clear();
        let n = self.count(key, second);
        if n == 0 {
            return;
        }
        let slot = NS / n as i64;
        let second_h = mix(key.hash ^ (second as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        out.reserve(n as usize);
        for i in 0..n {
            let h = mix(second_h ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93));
            let time_ns = second * NS + i as i64 * slot + (h % slot as u64) as i64;
            let price_cents = self.price_at(key, time_ns, h);
            let qty_max = (2_000_000_000_000 / price_cents).max(1) as u64;
            let qty_micros = 1 + (mix(h ^ 0x0F0F) % qty_max) as i64;
            let flags = match (h >> 40) % 32 {
                0..=14 => 2,
                15..=29 => 1,
                30 => 4,
                _ => 9,
            };
            out.push(Trade {
                id: second as u64 * 1_000_000 + i,
                time_ns,
                price_cents,
                qty_micros,
                flags,
            });
        }
    }

    /// The price path at `time_ns`, plus noise from `h`; at least one cent.
    fn price_at(&self, key: &InstrumentKey, time_ns: i64, h: u64) -> i64 {
        let base = key.base_cents;
        let slow = interpolate(key.hash ^ 0x51, time_ns, 3_600, base / 25);
        let fast = interpolate(key.hash ^ 0xFA, time_ns, 60, base / 500);
        let noise_amp = (base / 5_000).max(1);
        let noise = (mix(h ^ 0x401) % (2 * noise_amp as u64 + 1)) as i64 - noise_amp;
        (base + slow + fast + noise).max(1)
    }
}

/// What the generator needs to know of an instrument, computed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InstrumentKey {
    hash: u64,
    base_cents: i64,
}

/// A value in `[-amp, amp]` at each multiple of `period_secs`, linearly
/// interpolated in between.
fn interpolate(hash: u64, time_ns: i64, period_secs: i64, amp: i64) -> i64 {
    if amp <= 0 {
        return 0;
    }
    let period_ns = period_secs * NS;
    let k = time_ns.div_euclid(period_ns);
    let anchor = |k: i64| (mix(hash ^ mix(k as u64)) % (2 * amp as u64 + 1)) as i64 - amp;
    let (a0, a1) = (anchor(k) as i128, anchor(k + 1) as i128);
    let frac = time_ns.rem_euclid(period_ns) as i128;
    (a0 + (a1 - a0) * frac / period_ns as i128) as i64
}

/// SplitMix64's finaliser: a strong 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform value in `[0, 1)`.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn btc() -> Instrument {
        Instrument::new("Coinbase", "BTC", "USD")
    }

    #[test]
    fn trades_are_a_pure_function_of_seed_instrument_and_second() {
        let m = TradeModel::new(7, 5.0, 0);
        let a = m.trades_in_second(&btc(), 1_700_000_000);
        assert_eq!(a, m.trades_in_second(&btc(), 1_700_000_000));
        assert_ne!(
            a,
            TradeModel::new(8, 5.0, 0).trades_in_second(&btc(), 1_700_000_000)
        );
        assert_ne!(
            a,
            m.trades_in_second(&Instrument::new("Kraken", "BTC", "USD"), 1_700_000_000)
        );
        assert!(TradeModel::new(7, 5.0, 1_700_000_001)
            .trades_in_second(&btc(), 1_700_000_000)
            .is_empty());
    }

    #[test]
    fn ids_and_times_increase_and_stay_in_their_second() {
        let m = TradeModel::new(1, 20.0, 0);
        let trades = m.trades_between(&btc(), 1_700_000_000 * NS, 1_700_000_100 * NS - 1);
        assert!(trades.len() > 1_000, "{}", trades.len());
        for w in trades.windows(2) {
            assert!(w[0].id < w[1].id && w[0].time_ns < w[1].time_ns);
        }
        for t in &trades {
            assert_eq!((t.id / 1_000_000) as i64, t.time_ns.div_euclid(NS));
            assert!(
                t.price_cents > 5_000_000 && t.price_cents < 7_000_000,
                "{t:?}"
            );
            assert!(t.qty_micros >= 1);
        }
    }

    #[test]
    fn the_mean_rate_is_close_to_the_configured_one() {
        for rate in [0.05, 3.0, 1_000.0] {
            let m = TradeModel::new(3, rate, 0);
            let key = m.key(&btc());
            let n: u64 = (0..20_000).map(|s| m.count(&key, 1_700_000_000 + s)).sum();
            let mean = n as f64 / 20_000.0;
            assert!(
                (mean - rate).abs() < rate * 0.1 + 0.02,
                "rate {rate}: mean {mean}"
            );
        }
    }
}
