//! The CryptoCompare client as the Producer's data sources
//! ([`HistorySource`] and [`LiveSource`]).

use tokio::sync::mpsc;

use super::{
    ApiErrorKind, CryptoCompareConfig, CryptoCompareError, HistoryClient, Interval, LiveClient,
    LiveHandle,
};
use crate::domain::validate;
use crate::domain::{HistoryBar, Instrument, Tick};
use crate::ports::{HistorySource, LiveControl, LiveSource, SourceError};

impl HistorySource for HistoryClient {
    async fn minute_bars(
        &self,
        instrument: &Instrument,
        from_ts: i64,
        to_ts: i64,
    ) -> Result<Vec<HistoryBar>, SourceError> {
        let bars = self
            .bars(Interval::Minute, instrument, from_ts, to_ts)
            .await
            .map_err(|e| source_error(instrument, e))?;
        let now = validate::now_secs();
        let mut refused = 0usize;
        let bars: Vec<HistoryBar> = bars
            .into_iter()
            .map(|b| HistoryBar {
                instrument: instrument.clone(),
                open_time: b.time,
                open: b.open,
                high: b.high,
                low: b.low,
                close: b.close,
                volume_base: b.volume_from,
                volume_quote: b.volume_to,
            })
            .filter(|b| match validate::history_bar(b, now) {
                Ok(()) => true,
                // CryptoCompare's all-zero bar: no data for that minute (before
                // the pair was listed, say). Nothing to publish.
                Err(_) if b.open.is_zero() && b.close.is_zero() && b.volume_base.is_zero() => false,
                Err(e) => {
                    refused += 1;
                    if refused == 1 {
                        tracing::warn!(%instrument, open_time = b.open_time, error = %e, "the source sent a bar that breaks the platform's rules: not published");
                    }
                    false
                }
            })
            .collect();
        if refused > 0 {
            self.count_refused(refused);
            tracing::warn!(%instrument, refused, "history bars refused by the platform's rules");
        }
        Ok(bars)
    }
}

/// The port's view of a client error: CryptoCompare's refusal of the pair
/// (`Type` 1, "market does not exist for this coin pair", or a parameter it
/// cannot take) is [`SourceError::UnknownPair`]; anything else is
/// [`SourceError::Unavailable`].
fn source_error(instrument: &Instrument, e: CryptoCompareError) -> SourceError {
    match &e {
        CryptoCompareError::Api(api)
            if matches!(
                api.kind(),
                ApiErrorKind::UnknownPair
                    | ApiErrorKind::NotAvailable
                    | ApiErrorKind::InvalidParameter
            ) =>
        {
            SourceError::UnknownPair {
                instrument: instrument.to_string(),
                message: validate::shorten_to(&api.message, 200),
            }
        }
        _ => SourceError::Unavailable(e.to_string()),
    }
}

/// Starts CryptoCompare live clients with one configuration.
#[derive(Debug, Clone)]
pub struct LiveFeed {
    /// The client configuration.
    pub config: CryptoCompareConfig,
}

impl LiveControl for LiveHandle {
    fn subscribe(&self, instrument: Instrument) {
        LiveHandle::subscribe(self, instrument);
    }

    fn unsubscribe(&self, instrument: Instrument) {
        LiveHandle::unsubscribe(self, instrument);
    }

    fn shutdown(self) {
        // Dropping the handle stops the client; waiting is not needed here.
        drop(self);
    }
}

impl LiveSource for LiveFeed {
    type Control = LiveHandle;

    fn start(
        &self,
        instruments: Vec<Instrument>,
    ) -> Result<(LiveHandle, mpsc::Receiver<Tick>), SourceError> {
        LiveClient::spawn(self.config.clone(), instruments)
            .map_err(|e| SourceError::Unavailable(e.to_string()))
    }
}
