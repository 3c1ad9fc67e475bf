//! The live bar stream behind `GET /api/v1/stream`: what is stored from
//! `from` on, then every change of a bar as it is committed, pushed (the
//! node's [`BarHub`]), corrections of closed bars included; resumable with
//! `Last-Event-ID` without a gap and without a replay from the start.
//!
//! Events (server-sent events; the data is the bar's JSON):
//!
//! * `partial`: the interval in progress, every time it changes;
//! * `bar`: an interval that closed (a grace period after its end), the first
//!   time this stream sends it closed;
//! * `correction`: a closed interval this stream had already sent closed,
//!   changed (a late trade, a repair from history, a consumer that caught
//!   up): the client replaces its bar in place.
//!
//! **Event ids** are `{V}-{C}`: the stream has sent every change of a bar
//! with version at most `V` (versions are the store's one change counter),
//! and every interval before `C` closed. A client that reconnects with
//! `Last-Event-ID: V-C` gets every bar changed after `V` (from `from` on),
//! then every bar from `C` on (which closes any interval it held in
//! progress), then the live changes: nothing missed, and nothing before `C`
//! sent again unless it changed.
//!
//! Order of work, so nothing falls between the stored and the live part: the
//! stream follows the hub first, reads the store's latest version `B`, then
//! reads what is stored (every change up to `B` is in it), then applies what
//! the hub brought meanwhile and after. A stream that lags behind the hub
//! (a slow client) catches up from the store on its own, after `V`.
//!
//! What must never happen: a client's stream costing a store query per
//! change (only its start, a resume and a lag do), an older version of a bar
//! sent after a newer one, or a stream outliving its client (the task ends
//! when the connection does).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::{broadcast, mpsc};

use candela_actors::datastore::BarQuery;
use candela_actors::domain::{Instrument, Interval};
use candela_actors::store::StoredBar;

use crate::data::now_secs;
use crate::feed::BarHub;
use crate::model::{BarDto, StreamEvent};
use crate::server::ApiState;

/// The event stream type.
pub type Events = Pin<Box<dyn Stream<Item = StreamEvent> + Send>>;

/// Where a resumed stream starts: the parts of a `Last-Event-ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// Every change up to this version was sent.
    pub version: i64,
    /// Every interval before this one was sent closed.
    pub closed_before: i64,
}

impl Resume {
    /// Parses an event id `{V}-{C}` (what this stream sends as `id`).
    pub fn parse(id: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`Last-Event-ID` `{}` is not an id this stream sent (`VERSION-TIME`)",
                candela_actors::domain::validate::shorten(id)
            )
        };
        // Exactly the documented pattern `^[0-9]{1,18}-[0-9]{1,10}$`.
        let (v, c) = id.split_once('-').ok_or_else(bad)?;
        let digits = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
        };
        if !digits(v, 18) || !digits(c, 10) {
            return Err(bad());
        }
        let version: i64 = v.parse().map_err(|_| bad())?;
        let closed_before: i64 = c.parse().map_err(|_| bad())?;
        Ok(Self {
            version,
            closed_before,
        })
    }

    fn id(&self) -> String {
        format!("{}-{}", self.version, self.closed_before)
    }
}

/// Most bars a page of the stored part holds.
const PAGE: usize = 1_000;
/// How many bars' versions a stream remembers (the recent ones).
const REMEMBERED: usize = 2_048;

/// One client's stream.
struct Client {
    state: Arc<ApiState>,
    hub: Arc<BarHub>,
    instrument: Instrument,
    interval: Interval,
    from: i64,
    grace: i64,
    out: mpsc::Sender<StreamEvent>,
    /// See [`Resume`].
    at: Resume,
    /// The version last sent of recent bars (bounded).
    versions: BTreeMap<i64, i64>,
    /// Intervals sent in progress and not yet closed: their last bar.
    in_progress: BTreeMap<i64, BarDto>,
    /// This stream's place among `api.max_streams`.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Why a stream ends.
enum End {
    /// The client went away.
    Gone,
    /// The store could not be read: the client reconnects with its last id.
    Store(String),
}

/// The events for `instrument` and `interval` from `from` on (or resumed).
pub(crate) fn events(
    state: Arc<ApiState>,
    hub: Arc<BarHub>,
    instrument: Instrument,
    interval: Interval,
    from: i64,
    resume: Option<Resume>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Events {
    let (out, rx) = mpsc::channel(256);
    let grace = state.config.stream_grace_secs.max(0);
    // A client cannot have seen closed what has not closed yet: an id that
    // says so (a forged or corrupted one; the pattern admits it) resumes
    // from the interval in progress, so nothing live passes as a correction.
    let in_progress = interval.floor(crate::data::now_secs());
    let resume = resume.map(|r| Resume {
        closed_before: r.closed_before.min(in_progress),
        ..r
    });
    let client = Client {
        state,
        hub,
        instrument,
        interval,
        from,
        grace,
        out,
        at: resume.unwrap_or(Resume {
            version: 0,
            closed_before: from,
        }),
        versions: BTreeMap::new(),
        in_progress: BTreeMap::new(),
        _permit: permit,
    };
    tokio::spawn(async move {
        let instrument = client.instrument.clone();
        match client.run(resume).await {
            End::Gone => {}
            End::Store(err) => {
                tracing::warn!(%instrument, error = %err, "live stream ended: the store could not be read (the client resumes)");
            }
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (e, rx))
    }))
}

impl Client {
    async fn run(mut self, resume: Option<Resume>) -> End {
        let mut live = self.hub.subscribe(&self.instrument, self.interval);
        let baseline = match self
            .hub
            .store()
            .latest_version(self.instrument.clone())
            .await
        {
            Ok(v) => v,
            Err(err) => return End::Store(err),
        };
        self.hub.anchor(&self.instrument, baseline);
        if let Some(r) = resume {
            // Every bar the client holds closed that changed since its last
            // event (the rest is sent again below, from `C` on).
            if let Err(end) = self
                .send_changes_after(r.version, Some(r.closed_before))
                .await
            {
                return end;
            }
        }
        self.at.version = self.at.version.max(baseline);
        // Everything stored from where the client needs it.
        let start = resume.map_or(self.from, |r| r.closed_before.max(self.from));
        if let Err(end) = self.send_stored(start).await {
            return end;
        }
        let out = self.out.clone();
        loop {
            let wake = self.next_close();
            tokio::select! {
                () = out.closed() => return End::Gone,
                () = tokio::time::sleep(wake) => {
                    if let Err(end) = self.close_due().await {
                        return end;
                    }
                }
                update = live.recv() => match update {
                    Ok(update) => {
                        if let Err(end) = self.apply(&update.bars).await {
                            return end;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(instrument = %self.instrument, missed, "live stream lagged; catching up from the store");
                        if let Err(end) = self.send_changes_after(self.at.version, None).await {
                            return end;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return End::Gone,
                },
            }
        }
    }

    /// Sends every bar of the stream's interval changed after `version`
    /// (only those starting before `below`, when given).
    async fn send_changes_after(&mut self, version: i64, below: Option<i64>) -> Result<(), End> {
        let store = Arc::clone(self.hub.store());
        let mut after = version;
        loop {
            let page = store
                .changed_since(self.instrument.clone(), self.from, after, PAGE)
                .await
                .map_err(End::Store)?;
            let full = page.len() >= PAGE;
            if let Some(last) = page.last() {
                after = last.version;
            }
            let mut bars = if self.interval == Interval::M1 {
                page
            } else {
                self.coarse_of(&page).await?
            };
            if let Some(below) = below {
                bars.retain(|b| b.bar.open_time < below);
            }
            self.apply(&bars).await?;
            if !full {
                return Ok(());
            }
        }
    }

    /// The coarse bars of the buckets `minutes` fall in, each with the
    /// highest version of its changed minutes.
    async fn coarse_of(&self, minutes: &[StoredBar]) -> Result<Vec<StoredBar>, End> {
        let mut buckets: BTreeMap<i64, i64> = BTreeMap::new();
        for m in minutes {
            let e = buckets
                .entry(self.interval.floor(m.bar.open_time))
                .or_insert(0);
            *e = (*e).max(m.version);
        }
        let (Some((&lo, _)), Some((&hi, _))) =
            (buckets.first_key_value(), buckets.last_key_value())
        else {
            return Ok(Vec::new());
        };
        let bars = self
            .hub
            .store()
            .bars(
                self.instrument.clone(),
                self.interval,
                lo,
                hi,
                buckets.len() + PAGE,
            )
            .await
            .map_err(End::Store)?;
        Ok(bars
            .into_iter()
            .filter_map(|mut b| {
                let v = *buckets.get(&b.bar.open_time)?;
                b.version = b.version.max(v);
                Some(b)
            })
            .collect())
    }

    /// Sends what is stored from `start` up to now, page by page, through the
    /// datastore (the cache answers recent 1-minute ranges).
    async fn send_stored(&mut self, start: i64) -> Result<(), End> {
        let mut cursor = self.interval.floor(start);
        loop {
            let now = now_secs();
            let query = BarQuery {
                instrument: self.instrument.clone(),
                interval: self.interval,
                from: cursor,
                to: self.interval.floor(now),
                limit: PAGE,
                // A live stream never asks for an instrument: only /ohlcv does.
                fetch: false,
                by_hour: None,
            };
            let bars = match self.state.datastore.request(query).await {
                Ok(answer) => answer.bars,
                Err(err) => return Err(End::Store(err.to_string())),
            };
            let full = bars.len() >= PAGE;
            if let Some(last) = bars.last() {
                cursor = last.bar.open_time + self.interval.seconds();
            }
            for b in &bars {
                self.send(b, true).await?;
            }
            if !full {
                break;
            }
        }
        self.close_due().await
    }

    /// Applies pushed (or caught-up) changes.
    async fn apply(&mut self, bars: &[StoredBar]) -> Result<(), End> {
        self.close_due().await?;
        for b in bars {
            if b.bar.open_time < self.from {
                continue;
            }
            self.send(b, false).await?;
        }
        Ok(())
    }

    /// Sends one bar unless the client has this version or a newer one.
    /// `stored` bars (the initial read) do not move the version mark: it is
    /// the baseline read before them.
    async fn send(&mut self, b: &StoredBar, stored: bool) -> Result<(), End> {
        let t = b.bar.open_time;
        if self.versions.get(&t).is_some_and(|v| *v >= b.version) && !stored {
            return Ok(());
        }
        self.versions.insert(t, b.version);
        while self.versions.len() > REMEMBERED {
            self.versions.pop_first();
        }
        if !stored {
            self.at.version = self.at.version.max(b.version);
        }
        let now = now_secs();
        let step = self.interval.seconds();
        let closed = t + step + self.grace <= now;
        let kind = if t < self.at.closed_before {
            "correction"
        } else if closed {
            "bar"
        } else {
            "partial"
        };
        let mut bar = BarDto::from_stored(b, now);
        bar.closed = kind != "partial";
        if kind == "partial" {
            self.in_progress.insert(t, bar.clone());
        } else {
            self.in_progress.remove(&t);
            if kind == "bar" {
                // Every interval up to this one is now closed: those held in
                // progress are sent closed first, then `C` moves past it.
                self.close_before(t).await?;
                self.at.closed_before = self.at.closed_before.max(t + step);
            }
        }
        self.emit(kind, bar).await
    }

    /// Closes the intervals whose grace period is over: each held in
    /// progress is sent as `bar`; `C` moves past them.
    async fn close_due(&mut self) -> Result<(), End> {
        let due = self.interval.floor(now_secs() - self.grace);
        self.close_before(due).await?;
        if due > self.at.closed_before {
            self.at.closed_before = due;
        }
        Ok(())
    }

    /// Sends the intervals before `t` held in progress as `bar`.
    async fn close_before(&mut self, t: i64) -> Result<(), End> {
        let mut closing = self.in_progress.split_off(&t);
        std::mem::swap(&mut closing, &mut self.in_progress);
        for (_, mut bar) in closing {
            bar.closed = true;
            self.at.closed_before = self
                .at
                .closed_before
                .max(bar.time + self.interval.seconds());
            self.emit("bar", bar).await?;
        }
        Ok(())
    }

    /// How long until the next interval's grace period ends.
    fn next_close(&self) -> Duration {
        let now = now_secs();
        let step = self.interval.seconds();
        let next = self.interval.floor(now - self.grace) + step + self.grace;
        Duration::from_secs(u64::try_from(next - now).unwrap_or(0).max(1))
    }

    async fn emit(&mut self, kind: &str, bar: BarDto) -> Result<(), End> {
        let event = StreamEvent {
            kind: kind.to_owned(),
            bar,
            id: self.at.id(),
        };
        self.out.send(event).await.map_err(|_| End::Gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip_and_bad_ones_are_refused() {
        let r = Resume {
            version: 42,
            closed_before: 1_700_000_040,
        };
        assert_eq!(Resume::parse(&r.id()), Ok(r));
        for bad in ["", "42", "x-1", "1-x", "-1-5", "1-99999999999", "1-2-3"] {
            assert!(Resume::parse(bad).is_err(), "{bad}");
        }
    }
}
