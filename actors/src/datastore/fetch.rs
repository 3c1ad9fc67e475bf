//! The Data Not Found path's [`FetchRequester`] in a cluster: asks the
//! Coordinator, by its cluster name, to arrange a dynamic topic for the
//! instrument, then waits until the dynamic consumer has stored the history
//! the producer published.
//!
//! * `request_fetch` resolves the Coordinator and puts `REQUEST_CREATE_TOPIC`
//!   in its mailbox ([`call::send`]) — that is the datastore's
//!   `FETCH_INSTRUCTIONS_SENT`. No Coordinator in the cluster is an
//!   immediate, clear failure ([`FetchError::NoCoordinator`]).
//! * The returned future waits for the Coordinator's answer (topic created,
//!   consumer subscribed, history published: a [`DynamicTopic`]), or its
//!   refusal ([`FetchError::Refused`], the Coordinator's typed error). It
//!   watches the Coordinator meanwhile: a Coordinator that stops before
//!   answering, or whose node goes away, fails the wait at once
//!   ([`FetchError::Call`] with `Stopped`), never after the time-out. Then it polls
//!   the store until it holds every minute of the published history (each
//!   history bar is a distinct minute of `history_from..=history_to`, and
//!   stored bars are never removed, so "at least that many minutes in the
//!   range" means all of them); with no history, until the store holds the
//!   instrument at all (its first live trade).
//!
//! The datastore bounds the whole wait by its `fetch_timeout`; running out is
//! its `DataError::Timeout`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::{FetchError, FetchRequester, WaitForData};
use crate::call;
use crate::coordinator::directory::COORDINATOR_NAME;
use crate::coordinator::{CoordinatorMsg, Directory, DynamicTopic};
use crate::domain::{Instrument, Interval};
use crate::store::BarStore;

/// Asks the Coordinator, then watches the store.
pub struct CoordinatorFetcher<T> {
    directory: Arc<dyn Directory>,
    store: Arc<T>,
    poll: Duration,
    answer_within: Duration,
}

impl<T: BarStore> CoordinatorFetcher<T> {
    /// A fetcher that finds the Coordinator through `directory`, watches
    /// `store` every `poll`, and gives the Coordinator at most
    /// `answer_within` to answer.
    pub fn new(
        directory: Arc<dyn Directory>,
        store: Arc<T>,
        poll: Duration,
        answer_within: Duration,
    ) -> Self {
        Self {
            directory,
            store,
            poll,
            answer_within,
        }
    }
}

impl<T: BarStore> FetchRequester for CoordinatorFetcher<T> {
    fn request_fetch(
        &self,
        instrument: &Instrument,
    ) -> Pin<Box<dyn Future<Output = Result<WaitForData, FetchError>> + Send + '_>> {
        let instrument = instrument.clone();
        Box::pin(async move {
            let coordinator = self
                .directory
                .resolve(COORDINATOR_NAME)
                .map_err(FetchError::NoCoordinator)?;
            let i = instrument.clone();
            let answer = call::send(
                &coordinator,
                COORDINATOR_NAME,
                |reply| CoordinatorMsg::RequestCreateTopic(i, reply),
                self.answer_within,
            )
            .map_err(FetchError::Call)?;
            tracing::info!(%instrument, "asked the coordinator for a dynamic topic");
            let store = Arc::clone(&self.store);
            let poll = self.poll;
            let wait: WaitForData = Box::pin(async move {
                let grant = answer.reply_result().await?;
                tracing::info!(%instrument, topic = %grant.topic, bars = grant.history_bars, "dynamic topic ready; waiting for the data");
                loop {
                    if stored(store.as_ref(), &grant).await? {
                        return Ok(());
                    }
                    tokio::time::sleep(poll).await;
                }
            });
            Ok(wait)
        })
    }
}

/// Whether the store holds what the Coordinator's answer promises.
async fn stored<T: BarStore>(store: &T, grant: &DynamicTopic) -> Result<bool, FetchError> {
    let failed = |e: crate::store::StoreError| FetchError::Store {
        reason: e.to_string(),
    };
    if grant.history_bars == 0 {
        return store.holds(&grant.instrument).await.map_err(failed);
    }
    let bars = store
        .bars(
            &grant.instrument,
            Interval::M1,
            grant.history_from,
            grant.history_to,
            usize::try_from(grant.history_bars).unwrap_or(usize::MAX) + 1,
        )
        .await
        .map_err(failed)?;
    Ok(bars.len() as u64 >= grant.history_bars)
}
