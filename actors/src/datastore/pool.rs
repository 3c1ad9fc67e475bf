//! A handle on the pool of Datastore actors, by registry name: requests go
//! round-robin to `{prefix}/0 … {prefix}/N-1`, skipping a member that is being
//! restarted (absent, or stopping mid-call) or waiting for data fetched on
//! demand (busy), and every call carries a timeout ([`crate::call`]). A
//! request for an instrument being fetched waits for that fetch here, in the
//! caller's task, not in any datastore: one slow fetch never holds requests
//! for instruments the platform holds.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{BarAnswer, BarQuery, DataError, DatastoreMsg, FetchRequester};
use crate::call::{call, CallError};
use crate::fsm::RunView;

/// Sends requests to the datastore pool.
pub struct DatastorePool {
    names: Vec<String>,
    /// Each member's "waiting for fetched data" flag.
    busy: Vec<Arc<AtomicBool>>,
    /// The fetches in progress (requests for an instrument being fetched
    /// wait for it here, outside every datastore).
    fetcher: Option<Arc<dyn FetchRequester>>,
    next: AtomicUsize,
    timeout: Duration,
}

impl std::fmt::Debug for DatastorePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatastorePool")
            .field("names", &self.names)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl DatastorePool {
    /// The pool `{prefix}/0 … {prefix}/{size-1}`; each call waits at most `timeout`.
    pub fn new(prefix: &str, size: usize, timeout: Duration) -> Self {
        let size = size.max(1);
        Self {
            names: (0..size).map(|i| member_name(prefix, i)).collect(),
            busy: (0..size).map(|_| Arc::default()).collect(),
            fetcher: None,
            next: AtomicUsize::new(0),
            timeout,
        }
    }

    /// The members' names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Asks a member for `query`. A member waiting for fetched data is
    /// skipped (it would answer "busy"); a request for an instrument being
    /// fetched waits for that fetch here, then asks. When every member is
    /// busy or being restarted, waits for one (within the timeout) rather
    /// than failing the request.
    pub async fn request(&self, query: BarQuery) -> Result<BarAnswer, DataError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if query.fetch {
                if let Some(wait) = self
                    .fetcher
                    .as_ref()
                    .and_then(|f| f.pending(&query.instrument))
                {
                    // The outcome reaches the request that started the fetch;
                    // this one asks again when it ends, and reads the store.
                    let _ = tokio::time::timeout_at(deadline, wait).await;
                }
            }
            match self.try_members(&query).await {
                Some(Err(DataError::Pending)) | None => {}
                Some(answer) => return answer,
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DataError::Unavailable(format!(
                    "no datastore became available within {} ms",
                    self.timeout.as_millis()
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// One round over the members; `None` when none could take the request.
    async fn try_members(&self, query: &BarQuery) -> Option<Result<BarAnswer, DataError>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..self.names.len() {
            let at = (start + k) % self.names.len();
            if self.busy[at].load(Ordering::Acquire) {
                continue;
            }
            let name = &self.names[at];
            let Some(cell) = ractor::registry::where_is(name.clone()) else {
                continue;
            };
            let q = query.clone();
            match call(
                &cell,
                name,
                |reply| DatastoreMsg::Request(q, reply),
                self.timeout,
            )
            .await
            {
                // Became busy meanwhile: the next.
                Ok(Err(DataError::Busy)) => continue,
                Ok(answer) => return Some(answer),
                Err(err @ CallError::Timeout { .. }) => {
                    return Some(Err(DataError::Unavailable(err.to_string())))
                }
                // The member stopped mid-call (a restart): try the next.
                Err(_) => continue,
            }
        }
        None
    }

    /// The run views of the members that are running.
    pub async fn views(&self) -> Vec<RunView> {
        let mut out = Vec::new();
        for name in &self.names {
            if let Some(cell) = ractor::registry::where_is(name.clone()) {
                if let Ok(view) = call(&cell, name, DatastoreMsg::View, VIEW_TIMEOUT).await {
                    out.push(view);
                }
            }
        }
        out
    }
}

/// Longest wait for a member's run view.
const VIEW_TIMEOUT: Duration = Duration::from_secs(1);

/// The registry name of pool member `i`.
pub fn member_name(prefix: &str, i: usize) -> String {
    format!("{prefix}/{i}")
}

/// Starts `size` Datastore actors named `{prefix}/0…` under a supervisor of
/// their own, restarted (`RESET`) by `policy`, and returns the supervisor and a
/// handle on the pool.
pub async fn start_pool<T: crate::store::BarStore, C: crate::store::BarCache>(
    prefix: &str,
    size: usize,
    args: super::DatastoreArgs<T, C>,
    policy: crate::supervisor::RestartPolicy,
    timeout: Duration,
) -> Result<
    (
        ractor::ActorRef<crate::supervisor::SupervisorMsg>,
        DatastorePool,
    ),
    ractor::SpawnErr,
> {
    use crate::supervisor::{ChildSpec, Supervisor, SupervisorArgs};

    let mut pool = DatastorePool::new(prefix, size, timeout);
    pool.fetcher = args.fetcher.clone();
    let children = (0..size.max(1))
        .map(|i| {
            let name = member_name(prefix, i);
            let mut template = args.clone();
            template.instance = name.clone();
            template.busy = Arc::clone(&pool.busy[i]);
            ChildSpec::of::<super::Datastore<T, C>>(&name, template, |a, r| a.restarted = r > 0)
        })
        .collect();
    let (supervisor, _) = ractor::Actor::spawn(
        Some(format!("{prefix}-supervisor")),
        Supervisor,
        SupervisorArgs { children, policy },
    )
    .await?;
    Ok((supervisor, pool))
}
