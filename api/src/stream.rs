//! The live bar stream behind `GET /api/v1/stream`: history first, then live,
//! with no gap and no duplicate at the seam.
//!
//! A cursor holds the start of the next interval whose *closed* bar has not
//! been sent. Every poll asks the Datastore for the bars from the cursor on;
//! each bar whose interval ended more than the grace period ago is sent once
//! as `bar` and moves the cursor past it; the interval in progress is sent as
//! `partial` when it changed. History and live are the same query at different
//! times, so there is no seam to get wrong.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;

use candela_actors::datastore::BarQuery;
use candela_actors::domain::{Instrument, Interval};

use crate::data::now_secs;
use crate::model::{BarDto, StreamEvent};
use crate::server::ApiState;

/// The event stream type.
pub type Events = Pin<Box<dyn Stream<Item = StreamEvent> + Send>>;

struct Cursor {
    state: Arc<ApiState>,
    instrument: Instrument,
    interval: Interval,
    next_closed: i64,
    last_partial: Option<BarDto>,
    pending: std::collections::VecDeque<StreamEvent>,
    first_poll: bool,
}

/// The events for `instrument` and `interval` from `from` on.
pub(crate) fn events(
    state: Arc<ApiState>,
    instrument: Instrument,
    interval: Interval,
    from: i64,
) -> Events {
    let cursor = Cursor {
        state,
        instrument,
        interval,
        next_closed: from,
        last_partial: None,
        pending: Default::default(),
        first_poll: true,
    };
    Box::pin(futures_util::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(e) = c.pending.pop_front() {
                return Some((e, c));
            }
            if !c.first_poll {
                tokio::time::sleep(Duration::from_millis(c.state.config.stream_poll_ms)).await;
            }
            c.first_poll = false;
            poll(&mut c).await;
        }
    }))
}

async fn poll(c: &mut Cursor) {
    let now = now_secs();
    let grace = c.state.config.stream_grace_secs;
    let step = c.interval.seconds();
    // Page through what is there (history can be long).
    loop {
        let query = BarQuery {
            instrument: c.instrument.clone(),
            interval: c.interval,
            from: c.next_closed,
            to: c.interval.floor(now),
            limit: 1_000,
            // A live stream never asks for an instrument: only /ohlcv does.
            fetch: false,
        };
        let bars = match c.state.datastore.request(query).await {
            Ok(answer) => answer.bars,
            Err(err) => {
                // Not fatal for the stream: the next poll tries again.
                tracing::debug!(instrument = %c.instrument, error = %err, "stream poll failed");
                return;
            }
        };
        let full_page = bars.len() >= 1_000;
        let mut moved = false;
        for stored in &bars {
            let bar = BarDto::from_stored(stored, now);
            if stored.bar.open_time + step + grace <= now {
                c.next_closed = stored.bar.open_time + step;
                moved = true;
                c.last_partial = None;
                c.pending.push_back(StreamEvent {
                    kind: "bar".into(),
                    bar: BarDto {
                        closed: true,
                        ..bar
                    },
                });
            } else if c.last_partial.as_ref() != Some(&bar) {
                c.last_partial = Some(bar.clone());
                c.pending.push_back(StreamEvent {
                    kind: "partial".into(),
                    bar,
                });
            }
        }
        if !(full_page && moved) {
            return;
        }
    }
}
