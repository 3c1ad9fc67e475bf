//! The Datastore actor: answers applications' requests for bars from the cache
//! and the database, or has missing data fetched (the seed's Data Not Found
//! path).
//!
//! ```text
//!  supervisor
//!     └── datastore/0 … datastore/N-1   (a pool; each runs machines::datastore)
//! ```
//!
//! One request is one run of the seed's machine:
//!
//! * `REQUEST_DATA` → Processing Request: validate, read the cache (1-minute
//!   bars of the recent window);
//! * `START_DB_QUERY` → Querying DB: query what the cache did not answer (on a
//!   full cache hit nothing is left to query and the query trivially succeeds);
//! * `DB_QUERY_SUCCESS` → Data Found → `*` → Returning Data; an empty range of an
//!   instrument the platform holds, or ingests (configured, its first bars
//!   perhaps not stored yet), is a success with no bars;
//! * `DB_QUERY_EMPTY` (the platform holds nothing of the instrument) → Data Not
//!   Found → `*` → Requesting Data Fetch → the [`FetchRequester`] (the
//!   Coordinator, in a cluster) → `FETCH_INSTRUCTIONS_SENT` → Waiting for Data →
//!   `DATA_FETCHED` → the query runs again → Returning Data. Otherwise
//!   `DATA_FETCH_FAILED` → Error, and the answer says which failure it was
//!   (the requester's typed [`FetchError`]): no requester, no coordinator, or
//!   the coordinator's refusal is [`DataError::NotAvailable`] (HTTP 404); a
//!   coordinator that stopped before answering (or whose node went away), or
//!   could not be reached, is [`DataError::FetchFailed`] (503), answered as
//!   soon as it happens; no data within `fetch_timeout` (or no answer from
//!   the coordinator in its time) is [`DataError::Timeout`] (504: it may
//!   still arrive). In a cluster the requester is
//!   [`fetch::CoordinatorFetcher`];
//! * `DB_QUERY_FAILURE` → Error, answered "unavailable".
//!
//! An actor in Error fails after answering, and its supervisor restarts it
//! under the same name (`RESET`). The pool keeps answering meanwhile.

pub mod fetch;
mod messages;
pub mod pool;

pub use messages::{BarAnswer, BarQuery, DataError, DatastoreMsg, FetchError, Served};
pub use pool::{start_pool, DatastorePool};

use std::collections::BTreeSet;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::call::CallError;
use crate::domain::{Instrument, Interval};
use crate::fsm::runtime::DEFAULT_HISTORY;
use crate::fsm::Fsm;
use crate::machines::datastore::Event;
use crate::machines::Datastore as Machine;
use crate::store::{BarCache, BarStore, StoredBar};
use crate::supervisor::Transient;

/// Asks the platform to fetch an instrument it does not hold, and resolves
/// once the data is stored (or fails).
pub trait FetchRequester: Send + Sync + 'static {
    /// Sends the instructions; the returned future resolves when the data is
    /// in the store. A request for an instrument already being fetched joins
    /// that fetch (one fetch per instrument, however many ask).
    fn request_fetch(
        &self,
        instrument: &Instrument,
    ) -> Pin<Box<dyn Future<Output = Result<WaitForData, FetchError>> + Send + '_>>;

    /// The fetch of `instrument` in progress, if any.
    fn pending(&self, instrument: &Instrument) -> Option<WaitForData> {
        let _ = instrument;
        None
    }

    /// Whether `instrument` was fetched on demand (it counts as held even
    /// while it has no bar: an illiquid instrument).
    fn fetched(&self, instrument: &Instrument) -> bool {
        let _ = instrument;
        false
    }
}

/// Resolves when fetched data has been stored.
pub type WaitForData = Pin<Box<dyn Future<Output = Result<(), FetchError>> + Send>>;

/// How a datastore is configured and what it talks to.
pub struct DatastoreArgs<T, C> {
    /// Instance (registry) name.
    pub instance: String,
    /// System of record.
    pub store: Arc<T>,
    /// Cache.
    pub cache: Arc<C>,
    /// The Data Not Found path's fetcher (none before the cluster is set up).
    pub fetcher: Option<Arc<dyn FetchRequester>>,
    /// The instruments the platform ingests (`ingest.instruments`): held
    /// from the start, so an empty range of one of them, even before its
    /// first bar is stored, is a success with no bars, never a fetch.
    pub ingested: Arc<BTreeSet<Instrument>>,
    /// How long the cache holds 1-minute bars.
    pub cache_window_secs: i64,
    /// Longest wait for fetched data.
    pub fetch_timeout: Duration,
    /// Set while this datastore waits for fetched data (the pool reads it
    /// and asks another).
    pub busy: Arc<AtomicBool>,
    /// True when this instance replaces one that failed.
    pub restarted: bool,
}

impl<T, C> Clone for DatastoreArgs<T, C> {
    fn clone(&self) -> Self {
        Self {
            instance: self.instance.clone(),
            store: Arc::clone(&self.store),
            cache: Arc::clone(&self.cache),
            fetcher: self.fetcher.clone(),
            ingested: Arc::clone(&self.ingested),
            cache_window_secs: self.cache_window_secs,
            fetch_timeout: self.fetch_timeout,
            busy: Arc::clone(&self.busy),
            restarted: self.restarted,
        }
    }
}

type Ports<T, C> = fn() -> (T, C);

/// The Datastore actor.
pub struct Datastore<T, C>(PhantomData<Ports<T, C>>);

impl<T, C> Default for Datastore<T, C> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

/// The actor's state.
pub struct DatastoreState<T, C> {
    args: DatastoreArgs<T, C>,
    fsm: Fsm<Machine>,
    /// The task waiting for fetched data, aborted if the actor goes.
    waiting: Option<WaitTask>,
    span: tracing::Span,
}

/// A waiting task, aborted on drop.
struct WaitTask(tokio::task::JoinHandle<()>);

impl Drop for WaitTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the cache answered.
enum Cached {
    /// The range's bars.
    Bars(Vec<StoredBar>),
    /// The range hour by hour (the query asked `by_hour`).
    Hours(crate::store::HourRange),
}

/// Where a run stands after [`serve`].
enum Served2 {
    /// Answered.
    Answer(Result<BarAnswer, DataError>),
    /// Waiting for Data: the wait runs in a task.
    Waiting(WaitForData),
}

impl<T: BarStore, C: BarCache> Actor for Datastore<T, C> {
    type Msg = DatastoreMsg;
    type State = DatastoreState<T, C>;
    type Arguments = DatastoreArgs<T, C>;

    async fn pre_start(
        &self,
        _myself: ActorRef<DatastoreMsg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let fsm = if args.restarted {
            Fsm::after_reset(args.instance.clone(), DEFAULT_HISTORY, Event::Reset)
        } else {
            Fsm::new(args.instance.clone())
        };
        args.busy.store(false, Ordering::Release);
        Ok(DatastoreState {
            span: crate::telemetry::actor_span("datastore", &args.instance),
            args,
            fsm,
            waiting: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<DatastoreMsg>,
        message: DatastoreMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let span = state.span.clone();
        crate::telemetry::in_span(&span, async {
            match message {
                DatastoreMsg::Request(query, reply) => {
                    if state.waiting.is_some() {
                        // Waiting for Data: another datastore takes it.
                        let _ = reply.send(Err(DataError::Busy));
                        return Ok(());
                    }
                    match serve(state, &query).await {
                        Served2::Answer(answer) => {
                            let _ = reply.send(answer);
                            end_of_run(state, &query)?;
                        }
                        Served2::Waiting(wait) => {
                            // The wait runs outside the mailbox: status calls
                            // are answered meanwhile, other requests go to other
                            // datastores (`busy`).
                            state.args.busy.store(true, Ordering::Release);
                            let timeout = state.args.fetch_timeout;
                            let me = myself.clone();
                            let task = crate::telemetry::spawn_in_span(async move {
                                let result = match tokio::time::timeout(timeout, wait).await {
                                    Ok(result) => result,
                                    Err(_) => Err(FetchError::TimedOut {
                                        secs: timeout.as_secs(),
                                    }),
                                };
                                let _ = me.cast(DatastoreMsg::FetchDone {
                                    query,
                                    result,
                                    reply,
                                });
                            });
                            state.waiting = Some(WaitTask(task));
                        }
                    }
                }
                DatastoreMsg::FetchDone {
                    query,
                    result,
                    reply,
                } => {
                    state.waiting = None;
                    state.args.busy.store(false, Ordering::Release);
                    let answer = fetched(state, &query, result).await;
                    let _ = reply.send(answer);
                    end_of_run(state, &query)?;
                }
                DatastoreMsg::View(reply) => {
                    let _ = reply.send(state.fsm.view());
                }
            }
            Ok(())
        })
        .await
    }
}

/// After an answer: a run that ended in Error fails the actor (`RESET`
/// through the supervisor). A datastore fails only for its environment (the
/// database, a coordinator), never for the request: not counted as a crash.
fn end_of_run<T, C>(
    state: &DatastoreState<T, C>,
    query: &BarQuery,
) -> Result<(), ActorProcessingErr> {
    if state.fsm.in_error() {
        return Err(Box::new(Transient(format!(
            "request for {} ended in Error",
            query.instrument
        ))));
    }
    Ok(())
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// One run of the machine for `query`, up to its answer or to Waiting for
/// Data.
async fn serve<T: BarStore, C: BarCache>(
    state: &mut DatastoreState<T, C>,
    query: &BarQuery,
) -> Served2 {
    match serve_inner(state, query).await {
        Ok(served) => served,
        Err(err) => Served2::Answer(Err(err)),
    }
}

async fn serve_inner<T: BarStore, C: BarCache>(
    state: &mut DatastoreState<T, C>,
    query: &BarQuery,
) -> Result<Served2, DataError> {
    let fsm = &mut state.fsm;
    let step = |fsm: &mut Fsm<Machine>, e: Event| {
        fsm.fire(e)
            .map(|_| ())
            .map_err(|r| DataError::Internal(r.to_string()))
    };
    step(fsm, Event::RequestData)?;

    // Processing Request: the cache answers recent 1-minute ranges.
    // Whether the cache answered at all: when it is unreachable, refilling it
    // (loading the whole recent window) would be wasted work on every request.
    let mut cache_up = true;
    let cached = if query.interval == Interval::M1 {
        let read = match &query.by_hour {
            Some(known) => state
                .args
                .cache
                .hours(&query.instrument, query.from, query.to, query.limit, known)
                .await
                .map(|hit| hit.map(Cached::Hours)),
            None => state
                .args
                .cache
                .get(&query.instrument, query.from, query.to)
                .await
                .map(|hit| hit.map(Cached::Bars)),
        };
        match read {
            Ok(hit) => {
                let outcome = if hit.is_some() { "hit" } else { "miss" };
                metrics::counter!(crate::telemetry::CACHE_READS, "outcome" => outcome).increment(1);
                hit
            }
            Err(err) => {
                metrics::counter!(crate::telemetry::CACHE_READS, "outcome" => "error").increment(1);
                cache_up = false;
                tracing::warn!(error = %err, "cache read failed; asking the database");
                None
            }
        }
    } else {
        None
    };
    step(fsm, Event::StartDbQuery)?;

    // Querying DB.
    let mut hours = None;
    let result = match cached {
        Some(Cached::Bars(mut bars)) => {
            bars.truncate(query.limit);
            Ok((bars, Served::Cache))
        }
        Some(Cached::Hours(range)) => {
            hours = Some(range);
            Ok((Vec::new(), Served::Cache))
        }
        None => query_db(&state.args, query, cache_up)
            .await
            .map(|b| (b, Served::Database)),
    };
    let (bars, served) = match result {
        Ok(found) => {
            let label = match found.1 {
                Served::Cache => "cache",
                Served::Database => "store",
                Served::Fetched => "fetched",
            };
            metrics::counter!(crate::telemetry::DATASTORE_REQUESTS, "served" => label).increment(1);
            found
        }
        Err(err) => {
            metrics::counter!(crate::telemetry::DATASTORE_REQUESTS, "served" => "error")
                .increment(1);
            step(fsm, Event::DbQueryFailure)?;
            return Ok(Served2::Answer(Err(err)));
        }
    };
    let fetcher = state.args.fetcher.clone();
    let i = &query.instrument;
    let held = !bars.is_empty()
        || hours.as_ref().is_some_and(|h| !h.hours.is_empty())
        || state.args.ingested.contains(i)
        || fetcher.as_ref().is_some_and(|f| f.fetched(i));
    let known = if held {
        Ok(true)
    } else {
        state
            .args
            .store
            .holds(i)
            .await
            .map_err(|e| DataError::Unavailable(e.to_string()))
    };
    let known = match known {
        Ok(k) => k,
        Err(err) => {
            step(fsm, Event::DbQueryFailure)?;
            return Ok(Served2::Answer(Err(err)));
        }
    };
    // Not held, but being fetched by another request, or not to be fetched
    // (a live stream's poll): no second fetch.
    let pending = !known && fetcher.as_ref().is_some_and(|f| f.pending(i).is_some());
    if known || pending || !query.fetch {
        step(fsm, Event::DbQuerySuccess)?;
        step(fsm, Event::Proceed)?; // Data Found → Returning Data
        let answer = if pending && query.fetch {
            Err(DataError::Pending)
        } else {
            Ok(BarAnswer {
                bars,
                served,
                hours,
            })
        };
        let fsm = &mut state.fsm;
        step(
            fsm,
            if answer.is_ok() {
                Event::ReturnDataSuccess
            } else {
                Event::ReturnDataFailure
            },
        )?;
        return Ok(Served2::Answer(answer));
    }
    step(fsm, Event::DbQueryEmpty)?;
    step(fsm, Event::Proceed)?; // Data Not Found → Requesting Data Fetch
    request_fetch(state, query).await
}

/// Requesting Data Fetch → Waiting for Data (or Error).
async fn request_fetch<T: BarStore, C: BarCache>(
    state: &mut DatastoreState<T, C>,
    query: &BarQuery,
) -> Result<Served2, DataError> {
    let instrument = &query.instrument;
    let Some(fetcher) = state.args.fetcher.clone() else {
        let _ = state.fsm.fire(Event::DataFetchFailed);
        return Ok(Served2::Answer(Err(DataError::NotAvailable(format!("{instrument}: the platform does not hold this instrument, and fetching on demand is not available here")))));
    };
    let wait = match fetcher.request_fetch(instrument).await {
        Ok(wait) => wait,
        Err(err) => {
            let _ = state.fsm.fire(Event::DataFetchFailed);
            tracing::warn!(%instrument, error = %err, "fetch on demand not sent");
            return Ok(Served2::Answer(Err(fetch_failed(instrument, err))));
        }
    };
    state
        .fsm
        .fire(Event::FetchInstructionsSent)
        .map_err(|r| DataError::Internal(r.to_string()))?;
    Ok(Served2::Waiting(wait))
}

/// Waiting for Data → the query again → Returning Data (or Error).
async fn fetched<T: BarStore, C: BarCache>(
    state: &mut DatastoreState<T, C>,
    query: &BarQuery,
    result: Result<(), FetchError>,
) -> Result<BarAnswer, DataError> {
    let instrument = &query.instrument;
    let internal = |r: crate::fsm::Rejected<_, _>| DataError::Internal(r.to_string());
    let answer = match result {
        Ok(()) => match query_db(&state.args, query, true).await {
            Ok(bars) => {
                state.fsm.fire(Event::DataFetched).map_err(internal)?;
                Ok(BarAnswer {
                    bars,
                    served: Served::Fetched,
                    hours: None,
                })
            }
            Err(err) => {
                let _ = state.fsm.fire(Event::DataFetchFailed);
                return Err(err);
            }
        },
        // A definite answer about the instrument (the source does not list
        // it, a limit): the fetch ended, with nothing. No Error.
        Err(FetchError::Refused(err)) if err.is_refusal() => {
            state.fsm.fire(Event::DataFetched).map_err(internal)?;
            Err(fetch_failed(instrument, FetchError::Refused(err)))
        }
        Err(err) => {
            let _ = state.fsm.fire(Event::DataFetchFailed);
            tracing::warn!(%instrument, error = %err, "fetch on demand failed");
            return Err(fetch_failed(instrument, err));
        }
    };
    state
        .fsm
        .fire(if answer.is_ok() {
            Event::ReturnDataSuccess
        } else {
            Event::ReturnDataFailure
        })
        .map_err(internal)?;
    answer
}

/// What a failed fetch means for the request: the source does not list the
/// pair, or there is no coordinator, is "not available" (404); a limit is
/// 403, too many at once 429; no answer in time may still bring the data
/// (504); a coordinator that stopped before answering, or could not be
/// reached, broke the fetch off (503, at once: ask again).
fn fetch_failed(instrument: &Instrument, err: FetchError) -> DataError {
    use crate::coordinator::CoordinatorError;
    match &err {
        FetchError::Refused(CoordinatorError::LimitReached { .. }) => {
            DataError::LimitReached(format!("{instrument}: {err}"))
        }
        FetchError::Refused(CoordinatorError::RateLimited { retry_after_ms }) => {
            DataError::RateLimited {
                message: format!("{instrument}: {err}"),
                retry_after_ms: *retry_after_ms,
            }
        }
        FetchError::Busy { .. } => DataError::RateLimited {
            message: format!("{instrument}: {err}"),
            retry_after_ms: 1_000,
        },
        FetchError::NoCoordinator(_) | FetchError::Refused(_) => {
            DataError::NotAvailable(format!("{instrument}: {err}"))
        }
        FetchError::Call(CallError::Timeout { .. }) | FetchError::TimedOut { .. } => {
            DataError::Timeout(format!(
                "{instrument}: {err}; the data may still arrive, ask again later"
            ))
        }
        FetchError::Call(_) => DataError::FetchFailed(format!("{instrument}: {err}; ask again")),
        FetchError::Store { .. } => DataError::Unavailable(format!("{instrument}: {err}")),
    }
}

/// Queries the store; for a recent 1-minute range, also refills the cache
/// (when `refill` and the cache is up).
async fn query_db<T: BarStore, C: BarCache>(
    args: &DatastoreArgs<T, C>,
    query: &BarQuery,
    refill: bool,
) -> Result<Vec<StoredBar>, DataError> {
    let window_start = Interval::M1.floor(now_secs() - args.cache_window_secs);
    if refill && query.interval == Interval::M1 && query.to >= window_start {
        // Load the whole recent window once, fill the cache, answer from it
        // when the request lies inside. The cache's generation is read
        // before the query: the fill marks the cache complete only if no
        // invalidation came in between.
        let generation = match args.cache.generation(&query.instrument).await {
            Ok(g) => Some(g),
            Err(err) => {
                tracing::debug!(error = %err, "cache generation unknown; no fill");
                None
            }
        };
        let recent = args
            .store
            .bars(
                &query.instrument,
                Interval::M1,
                window_start,
                now_secs() + 86_400,
                usize::MAX / 2,
            )
            .await
            .map_err(|e| DataError::Unavailable(e.to_string()))?;
        if let (false, Some(generation)) = (recent.is_empty(), generation) {
            if let Err(err) = args
                .cache
                .fill(&query.instrument, window_start, &recent, generation)
                .await
            {
                tracing::warn!(error = %err, "cache fill failed");
            }
        }
        if query.from >= window_start {
            return Ok(recent
                .into_iter()
                .filter(|b| b.bar.open_time >= query.from && b.bar.open_time <= query.to)
                .take(query.limit)
                .collect());
        }
    }
    args.store
        .bars(
            &query.instrument,
            query.interval,
            query.from,
            query.to,
            query.limit,
        )
        .await
        .map_err(|e| DataError::Unavailable(e.to_string()))
}
