//! The Data Not Found path's [`FetchRequester`] in a cluster: asks the
//! Coordinator, by its cluster name, to arrange a dynamic instrument, then
//! waits until the dynamic consumer has stored the history the producer
//! published.
//!
//! * `request_fetch` resolves the Coordinator and puts `REQUEST_CREATE_TOPIC`
//!   in its mailbox ([`call::send`]) — that is the datastore's
//!   `FETCH_INSTRUCTIONS_SENT`. No Coordinator in the cluster is an
//!   immediate, clear failure ([`FetchError::NoCoordinator`]).
//! * **One fetch per instrument.** A request for an instrument already being
//!   fetched joins that fetch ([`FetchRequester::pending`]): one wait,
//!   shared. At most `max_concurrent` instruments are fetched at a time by
//!   one node ([`FetchError::Busy`] beyond), so its datastores are never all
//!   waiting.
//! * The returned future waits for the Coordinator's answer (topic created,
//!   consumer subscribed, history published: a [`DynamicTopic`]), or its
//!   refusal ([`FetchError::Refused`], the Coordinator's typed error). It
//!   watches the Coordinator meanwhile: a Coordinator that stops before
//!   answering, or whose node goes away, fails the wait at once
//!   ([`FetchError::Call`] with `Stopped`), never after the time-out. Then it
//!   polls the store until it holds every minute *with trades* of the
//!   published history (a minute without trades is never stored; stored bars
//!   are never removed, so "at least that many minutes in the range" means
//!   all of them). With no traded minute (an illiquid instrument), there is
//!   nothing to wait for.
//!
//! The datastore bounds the whole wait by its `fetch_timeout`; running out is
//! its `DataError::Timeout`. An instrument fetched here counts as held by
//! this node from then on ([`FetchRequester::fetched`]).

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{FutureExt, Shared};

use super::{FetchError, FetchRequester, WaitForData};
use crate::call;
use crate::coordinator::directory::COORDINATOR_NAME;
use crate::coordinator::{CoordinatorMsg, Directory, DynamicTopic};
use crate::domain::{Instrument, Interval};
use crate::store::BarStore;

type SharedWait = Shared<Pin<Box<dyn Future<Output = Result<(), FetchError>> + Send>>>;

/// Asks the Coordinator, then watches the store.
pub struct CoordinatorFetcher<T> {
    directory: Arc<dyn Directory>,
    store: Arc<T>,
    poll: Duration,
    answer_within: Duration,
    max_concurrent: usize,
    /// The fetches in progress, by instrument.
    in_flight: Arc<Mutex<HashMap<Instrument, SharedWait>>>,
    /// The instruments fetched here.
    done: Arc<Mutex<BTreeSet<Instrument>>>,
}

impl<T: BarStore> CoordinatorFetcher<T> {
    /// A fetcher that finds the Coordinator through `directory`, watches
    /// `store` every `poll`, gives the Coordinator at most `answer_within`
    /// to answer, and fetches at most `max_concurrent` instruments at a time.
    pub fn new(
        directory: Arc<dyn Directory>,
        store: Arc<T>,
        poll: Duration,
        answer_within: Duration,
        max_concurrent: usize,
    ) -> Self {
        Self {
            directory,
            store,
            poll,
            answer_within,
            max_concurrent: max_concurrent.max(1),
            in_flight: Arc::default(),
            done: Arc::default(),
        }
    }
}

fn lock<X>(m: &Mutex<X>) -> std::sync::MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: BarStore> FetchRequester for CoordinatorFetcher<T> {
    fn request_fetch(
        &self,
        instrument: &Instrument,
    ) -> Pin<Box<dyn Future<Output = Result<WaitForData, FetchError>> + Send + '_>> {
        let instrument = instrument.clone();
        Box::pin(async move {
            if let Some(wait) = self.pending(&instrument) {
                return Ok(wait);
            }
            if lock(&self.in_flight).len() >= self.max_concurrent {
                return Err(FetchError::Busy {
                    max: self.max_concurrent,
                });
            }
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
            tracing::info!(%instrument, "asked the coordinator for a dynamic instrument");
            let store = Arc::clone(&self.store);
            let poll = self.poll;
            let (in_flight, done) = (Arc::clone(&self.in_flight), Arc::clone(&self.done));
            let key = instrument.clone();
            let wait: Pin<Box<dyn Future<Output = Result<(), FetchError>> + Send>> = Box::pin(
                async move {
                    let result = async {
                        let grant = answer.reply_result().await?;
                        tracing::info!(%instrument, topic = %grant.topic, traded_minutes = grant.history_bars, "dynamic instrument ready; waiting for the data");
                        loop {
                            if stored(store.as_ref(), &grant).await? {
                                return Ok(());
                            }
                            tokio::time::sleep(poll).await;
                        }
                    }
                    .await;
                    if result.is_ok() {
                        lock(&done).insert(instrument.clone());
                    }
                    lock(&in_flight).remove(&instrument);
                    result
                },
            );
            let shared = wait.shared();
            lock(&self.in_flight).insert(key, shared.clone());
            Ok(Box::pin(shared) as WaitForData)
        })
    }

    fn pending(&self, instrument: &Instrument) -> Option<WaitForData> {
        lock(&self.in_flight)
            .get(instrument)
            .cloned()
            .map(|w| Box::pin(w) as WaitForData)
    }

    fn fetched(&self, instrument: &Instrument) -> bool {
        lock(&self.done).contains(instrument)
    }
}

/// Whether the store holds what the Coordinator's answer promises.
async fn stored<T: BarStore>(store: &T, grant: &DynamicTopic) -> Result<bool, FetchError> {
    let failed = |e: crate::store::StoreError| FetchError::Store {
        reason: e.to_string(),
    };
    if grant.history_bars == 0 {
        // No minute with trades in the history: nothing to wait for.
        return Ok(true);
    }
    let bars = store
        .bars(
            &grant.instrument,
            Interval::M1,
            grant.history_from,
            grant.history_to,
            usize::try_from(grant.history_bars)
                .unwrap_or(usize::MAX)
                .saturating_add(1),
        )
        .await
        .map_err(failed)?;
    Ok(bars.len() as u64 >= grant.history_bars)
}
