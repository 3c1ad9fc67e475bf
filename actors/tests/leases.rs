//! Partition leases on the real PostgreSQL (`candela_actors::kafka::lease`):
//! a partition is read only by the member holding its lease, so views of
//! the cluster that disagree can no longer leave a partition unread.
//!
//! The members' views are given directly (the shares a node computes from
//! its membership, `Share::of`), and the rounds each node's lessor runs on
//! its own timer are run here in turn, so every step is visible. Waits are
//! for an outcome, with a deadline; nothing is asserted about elapsed time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use candela_actors::kafka::lease::{leases, LeaseConfig, Lessor};
use candela_actors::kafka::Share;
use candela_actors::store::postgres::PgStore;
use candela_testkit::TestDb;

const TOPIC: &str = "tick-data";
const GROUP: &str = "candela-consumers";
const PARTITIONS: i32 = 6;

fn config() -> LeaseConfig {
    LeaseConfig {
        ttl: Duration::from_millis(1_500),
        renew: Duration::from_millis(150),
        grace: Duration::from_millis(300),
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// The partitions `me`'s share gives it when it sees `view`.
fn desired(me: &str, view: &[&str]) -> Vec<i32> {
    Share::of(me, &set(view)).partitions(PARTITIONS)
}

struct Member {
    name: &'static str,
    lessor: Lessor,
    /// What its last round left it holding.
    held: BTreeSet<i32>,
}

async fn members(store: &PgStore, names: &[&'static str]) -> Vec<Member> {
    names
        .iter()
        .map(|name| Member {
            name,
            lessor: Lessor::new(store.pool().clone(), GROUP, name, config()),
            held: BTreeSet::new(),
        })
        .collect()
}

/// One round of every member, each with the view `views` gives it.
async fn round(members: &mut [Member], views: &BTreeMap<&str, Vec<&str>>) {
    for m in members.iter_mut() {
        let want = desired(m.name, &views[m.name]);
        let held = m
            .lessor
            .round(TOPIC, PARTITIONS, &want)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", m.name));
        m.held = held.iter().map(|l| l.partition).collect();
    }
}

/// partition → the members holding it after the last round.
fn readers(members: &[Member]) -> BTreeMap<i32, Vec<&'static str>> {
    let mut out: BTreeMap<i32, Vec<&'static str>> = (0..PARTITIONS).map(|p| (p, vec![])).collect();
    for m in members {
        for p in &m.held {
            out.get_mut(p).unwrap().push(m.name);
        }
    }
    out
}

/// Rounds until every partition has exactly one reader (and, when
/// `exact` is given, each member holds exactly those partitions), or the
/// deadline passes.
async fn settle(
    members: &mut [Member],
    views: &BTreeMap<&str, Vec<&str>>,
    exact: Option<&BTreeMap<&str, Vec<i32>>>,
    what: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        round(members, views).await;
        let once = readers(members).values().all(|r| r.len() == 1);
        let as_wanted = exact.is_none_or(|exact| {
            members
                .iter()
                .all(|m| m.held.iter().copied().collect::<Vec<_>>() == exact[m.name])
        });
        if once && as_wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not settled: {:?}",
            readers(members)
        );
        tokio::time::sleep(config().renew).await;
    }
}

fn views<'a>(list: &[(&'a str, &[&'a str])]) -> BTreeMap<&'a str, Vec<&'a str>> {
    list.iter().map(|(n, v)| (*n, v.to_vec())).collect()
}

/// The worked example. Three consumer nodes, 6 partitions; gamma
/// and delta lose each other but both still reach beta. From the views
/// alone nobody reads 2 and 4; with leases every partition keeps exactly
/// one reader throughout, and after the heal each member reads its share.
#[tokio::test]
async fn the_partial_partition_example_leaves_no_partition_unread() {
    let all = ["beta", "delta", "gamma"];
    let agreed = views(&[("beta", &all), ("delta", &all), ("gamma", &all)]);
    let cut = views(&[
        ("beta", &all),
        ("gamma", &["beta", "gamma"]),
        ("delta", &["beta", "delta"]),
    ]);

    // The defect, from the views alone: 2 and 4 are in nobody's share.
    let by_view: BTreeSet<i32> = all.iter().flat_map(|m| desired(m, &cut[m])).collect();
    assert_eq!(by_view, BTreeSet::from([0, 1, 3, 5]));

    let db = TestDb::new().await;
    let store = PgStore::connect(&db.url, 4).await.unwrap();
    let mut ms = members(&store, &all).await;
    let shares: BTreeMap<&str, Vec<i32>> = all.iter().map(|m| (*m, desired(m, &all))).collect();
    settle(&mut ms, &agreed, Some(&shares), "agreed views").await;

    // The cut: every round, every partition has exactly one reader; it
    // lasts well past the lease time (leases are renewed, never lost).
    let until = Instant::now() + config().ttl * 3;
    while Instant::now() < until {
        round(&mut ms, &cut).await;
        let r = readers(&ms);
        assert!(r.values().all(|r| r.len() == 1), "during the cut: {r:?}");
        tokio::time::sleep(config().renew).await;
    }

    // The heal: each member ends up with exactly its share.
    settle(&mut ms, &agreed, Some(&shares), "after the heal").await;
}

/// Views that disagree from the start (no lease taken yet): partitions in
/// nobody's share are free, and some member takes each within the lease
/// grace; two members whose shares overlap never both hold a partition.
#[tokio::test]
async fn partitions_in_nobodys_share_are_taken_by_someone() {
    let all = ["beta", "delta", "gamma"];
    let cut = views(&[
        ("beta", &all),
        ("gamma", &["beta", "gamma"]),
        ("delta", &["beta", "delta"]),
    ]);
    let db = TestDb::new().await;
    let store = PgStore::connect(&db.url, 4).await.unwrap();
    let mut ms = members(&store, &all).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        round(&mut ms, &cut).await;
        let r = readers(&ms);
        assert!(
            r.values().all(|r| r.len() <= 1),
            "a partition read twice: {r:?}"
        );
        if r.values().all(|r| r.len() == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "still unread: {r:?}");
        tokio::time::sleep(config().renew).await;
    }
}

/// A member that stops renewing (its node died) keeps its partitions only
/// until its lease lapses; then the survivor, whose view now holds only
/// itself, takes them, and never while the lease is live.
#[tokio::test]
async fn a_dead_members_partitions_are_taken_when_its_lease_lapses() {
    let both = ["beta", "gamma"];
    let db = TestDb::new().await;
    let store = PgStore::connect(&db.url, 4).await.unwrap();
    let mut ms = members(&store, &both).await;
    let agreed = views(&[("beta", &both), ("gamma", &both)]);
    let shares: BTreeMap<&str, Vec<i32>> = both.iter().map(|m| (*m, desired(m, &both))).collect();
    settle(&mut ms, &agreed, Some(&shares), "two members").await;

    // gamma dies: only beta runs rounds, seeing only itself.
    let mut beta = ms.remove(0);
    let alone = vec!["beta"];
    let gamma_share: BTreeSet<i32> = shares["gamma"].iter().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held = beta
            .lessor
            .round(TOPIC, PARTITIONS, &desired("beta", &alone))
            .await
            .unwrap();
        beta.held = held.iter().map(|l| l.partition).collect();
        // Whatever beta holds of gamma's, gamma's lease has lapsed.
        let table = leases(store.pool(), GROUP, TOPIC).await.unwrap();
        for lease in &table {
            if gamma_share.contains(&lease.partition) && lease.owner.as_deref() == Some("gamma") {
                assert!(
                    !beta.held.contains(&lease.partition) || !lease.live,
                    "beta took {} while gamma's lease was live",
                    lease.partition
                );
            }
        }
        if beta.held.len() == PARTITIONS as usize {
            break;
        }
        assert!(Instant::now() < deadline, "beta holds {:?}", beta.held);
        tokio::time::sleep(config().renew).await;
    }
    // Each partition of gamma's was taken anew: its token moved on.
    let table = leases(store.pool(), GROUP, TOPIC).await.unwrap();
    assert!(table
        .iter()
        .all(|l| l.owner.as_deref() == Some("beta") && l.live));
    assert!(table
        .iter()
        .filter(|l| gamma_share.contains(&l.partition))
        .all(|l| l.token >= 2));
}

/// A member that stops reading (its consumer closed, or its node is
/// leaving) gives its leases back at once; its share's new owner takes
/// them on its next round, without waiting for the lease time.
#[tokio::test]
async fn released_leases_are_taken_at_once() {
    let both = ["beta", "gamma"];
    let db = TestDb::new().await;
    let store = PgStore::connect(&db.url, 4).await.unwrap();
    let mut ms = members(&store, &both).await;
    let agreed = views(&[("beta", &both), ("gamma", &both)]);
    settle(&mut ms, &agreed, None, "two members").await;
    ms[1].lessor.release_all().await.unwrap();
    let held = ms[0]
        .lessor
        .round(TOPIC, PARTITIONS, &desired("beta", &["beta"]))
        .await
        .unwrap();
    assert_eq!(held.len(), PARTITIONS as usize, "{held:?}");
}

/// A request whose member stopped asking (it died, or lost the database,
/// while still in the others' views) goes stale after the lease time: the
/// holder then keeps the partition instead of giving it back every round
/// and retaking it after the grace.
#[tokio::test]
async fn a_stale_request_does_not_make_the_holder_let_go_forever() {
    let db = TestDb::new().await;
    let store = PgStore::connect(&db.url, 4).await.unwrap();
    let mut ms = members(&store, &["beta", "gamma"]).await;
    // beta alone first: it holds every partition.
    settle(
        &mut ms[..1],
        &views(&[("beta", &["beta"])]),
        None,
        "beta alone",
    )
    .await;
    assert_eq!(ms[0].held.len(), PARTITIONS as usize);
    // gamma asks once for its share, then stops (it lost the database),
    // while beta still sees it: beta's share is 0, 2, 4.
    let both = ["beta", "gamma"];
    let gamma_share = desired("gamma", &both);
    ms[1]
        .lessor
        .round(TOPIC, PARTITIONS, &gamma_share)
        .await
        .unwrap();
    // beta gives gamma's share back (the request is fresh), then, once the
    // request is stale, takes it again after the grace and keeps it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut kept = 0;
    while kept < 10 {
        let held = ms[0]
            .lessor
            .round(TOPIC, PARTITIONS, &desired("beta", &both))
            .await
            .unwrap();
        if held.len() == PARTITIONS as usize {
            kept += 1;
        } else {
            kept = 0;
        }
        assert!(
            Instant::now() < deadline,
            "beta keeps letting go of gamma's share: {held:?}"
        );
        tokio::time::sleep(config().renew).await;
    }
}

/// A restarted consumer opens its new stream before the old one's thread
/// has closed: the old stream's late `left` must not stop the new one's
/// leases.
#[tokio::test]
async fn a_late_close_of_an_old_stream_keeps_the_new_ones_leases() {
    use candela_actors::kafka::lease::Leased;
    use candela_actors::kafka::Placement;
    use std::sync::Arc;

    let db = TestDb::new().await;
    let store = PgStore::connect(&db.url, 4).await.unwrap();
    let lessor = Lessor::new(store.pool().clone(), GROUP, "beta#000", config());
    let placement = Leased::start(Arc::new(|| Share::ALL), lessor);
    placement.counts(&BTreeMap::from([(TOPIC.to_owned(), PARTITIONS)]));
    let all: Vec<i32> = (0..PARTITIONS).collect();
    placement.joined();
    let deadline = Instant::now() + Duration::from_secs(30);
    while placement.partitions(TOPIC, PARTITIONS) != all {
        assert!(Instant::now() < deadline, "no leases taken");
        tokio::time::sleep(config().renew).await;
    }
    // The restart: the new stream joins, then the old one leaves.
    placement.joined();
    placement.left();
    // Several rounds later the member still holds every lease.
    tokio::time::sleep(config().renew * 6).await;
    assert_eq!(placement.partitions(TOPIC, PARTITIONS), all);
    let table = leases(store.pool(), GROUP, TOPIC).await.unwrap();
    assert!(
        table
            .iter()
            .all(|l| l.live && l.owner.as_deref() == Some("beta#000")),
        "{table:?}"
    );
    // The last stream leaves: the leases are given back.
    placement.left();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let table = leases(store.pool(), GROUP, TOPIC).await.unwrap();
        if table.iter().all(|l| !l.live && l.owner.is_none()) {
            break;
        }
        assert!(Instant::now() < deadline, "not given back: {table:?}");
        tokio::time::sleep(config().renew).await;
    }
}
