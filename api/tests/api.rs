//! The HTTP API on the real PostgreSQL and Redis, through the Datastore actors.
//! Expected bars come from the test kit's independent oracle
//! (`candela_testkit::oracle`), every field compared.

use std::sync::Arc;
use std::time::Duration;

use candela_actors::datastore::{start_pool, DatastoreArgs};
use candela_actors::domain::{Instrument, Interval, Side, Tick};
use candela_actors::store::postgres::PgStore;
use candela_actors::store::redis_cache::RedisCache;
use candela_actors::store::redis_feed;
use candela_actors::store::{BarCache, BarStore, WriteBatch};
use candela_actors::supervisor::RestartPolicy;
use candela_api::mirror::Mirror;
use candela_api::server::{ApiConfig, ApiState};
use candela_testkit::cluster::eventually;
use candela_testkit::{convert, oracle, unique, OwnRedis, TestDb};
use poem::test::TestClient;
use rust_decimal::Decimal;
use serde_json::Value;

fn btc() -> Instrument {
    Instrument::new("Coinbase", "BTC", "USD")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Ticks over `minutes` minutes ending in the current minute, every third
/// minute left without trades.
fn ticks(i: &Instrument, minutes: i64) -> Vec<Tick> {
    let start = Interval::M1.floor(now()) - (minutes - 1) * 60;
    let mut out = Vec::new();
    let mut id = 0u64;
    for m in 0..minutes {
        if m % 3 == 1 {
            continue;
        }
        for k in 0..5 {
            id += 1;
            out.push(Tick {
                instrument: i.clone(),
                trade_id: id.to_string(),
                trade_time_ns: (start + m * 60 + k * 11) * 1_000_000_000,
                price: Decimal::new(2_500_000 + ((id * 7_919) % 50_000) as i64, 2),
                quantity: Decimal::new(1 + (id % 997) as i64, 5),
                side: Side::Buy,
                received_ns: 0,
            });
        }
    }
    out
}

const TOKEN: &str = "test-admin-token";

struct Platform {
    prefix: String,
    client: TestClient<poem::endpoint::BoxEndpoint<'static>>,
    store: Arc<PgStore>,
    cache: Arc<RedisCache>,
    mirror: Arc<Mirror>,
    redis_url: String,
    _db: TestDb,
}

impl Platform {
    /// Asks `url` until a read taught the node the versions of `instrument`'s
    /// hours from `from`'s to `to`'s (no event overtook it); that answer.
    async fn read_until_known(
        &self,
        url: &str,
        instrument: &Instrument,
        from: i64,
        to: i64,
    ) -> Value {
        eventually(
            "a read that teaches the node the hours' versions",
            10,
            async || {
                let (_, body) = get_json(&self.client, url).await;
                self.mirror
                    .versions(instrument, from, to, std::time::Instant::now())
                    .map(|_| body)
            },
        )
        .await
    }

    /// Writes `bars` to the cache as a consumer does, and waits until the
    /// API's node has heard the cache's event of it: a fence published on
    /// the events channel after the write (events arrive in order) has
    /// arrived.
    async fn put_and_hear(&self, bars: &[candela_actors::store::StoredBar]) {
        self.cache.put(bars).await.unwrap();
        let fence: Instrument = format!("Fence:F-{}", unique("f").replace('_', ""))
            .parse()
            .unwrap();
        let out = std::process::Command::new("redis-cli")
            .args(["-u", &self.redis_url, "publish"])
            .arg(candela_actors::store::watch::channel(self.cache.prefix()))
            .arg(format!("r {fence}"))
            .output()
            .expect("redis-cli runs");
        assert!(out.status.success(), "{out:?}");
        eventually("the fence after a write", 10, async || {
            (self.mirror.heard_of(&fence) > 0).then_some(())
        })
        .await;
    }
}

async fn platform(redis_url: &str) -> Platform {
    platform_with(redis_url, 10_000).await
}

/// A platform whose `api.max_limit` is `max_limit`.
async fn platform_with(redis_url: &str, max_limit: u32) -> Platform {
    let db = TestDb::new().await;
    let store = Arc::new(PgStore::connect(&db.url, 4).await.unwrap());
    let cache_prefix = unique("candela_api");
    let cache = Arc::new(
        RedisCache::connect(redis_url, &cache_prefix, 86_400)
            .await
            .unwrap(),
    );
    // The mirror of the cache's hours, as a node has it: 1-minute answers
    // come from the memo alone while the cache's events say nothing moved.
    // Trusted for a minute: what these tests check of it is its events
    // (its time bound is the unit tests').
    let mirror = Arc::new(Mirror::new(Duration::from_secs(60)));
    let mut feed = redis_feed::follow(
        redis_url,
        &cache_prefix,
        Arc::default(),
        Some(Arc::clone(&mirror) as _),
    )
    .unwrap();
    tokio::spawn(async move { while feed.recv().await.is_some() {} });
    eventually("the mirror follows the cache's events", 10, async || {
        mirror.is_live().then_some(())
    })
    .await;
    let prefix = unique("datastore");
    let (_sup, pool) = start_pool(
        &prefix,
        2,
        DatastoreArgs {
            instance: String::new(),
            store: Arc::clone(&store),
            cache: Arc::clone(&cache),
            fetcher: None,
            ingested: Default::default(),
            cache_window_secs: 86_400,
            fetch_timeout: Duration::from_secs(5),
            busy: Default::default(),
            restarted: false,
        },
        RestartPolicy {
            max_restarts: 100,
            backoff_min: Duration::from_millis(5),
            ..RestartPolicy::default()
        },
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let s = Arc::clone(&store);
    let s2 = Arc::clone(&store);
    let state = Arc::new(ApiState {
        datastore: Arc::new(pool),
        feed: candela_api::feed::BarHub::new(
            Arc::new(candela_api::feed::StoreFeed(Arc::clone(&store))),
            candela_api::feed::HubConfig::default(),
        ),
        mirror: Some(Arc::clone(&mirror)),
        streams: Arc::new(tokio::sync::Semaphore::new(64)),
        instruments: Arc::new(move || {
            let s = Arc::clone(&s);
            Box::pin(async move { s.instruments().await.map_err(|e| e.to_string()) })
        }),
        ready: Arc::new(move || {
            let s = Arc::clone(&s2);
            Box::pin(async move { s.instruments().await.map(|_| ()).map_err(|e| e.to_string()) })
        }),
        config: ApiConfig {
            stream_grace_secs: 1,
            max_limit,
            ..ApiConfig::default()
        },
        admin: candela_api::server::AdminConfig {
            token: Some(TOKEN.into()),
            supervisors: vec![format!("{prefix}-supervisor")],
            cluster_status: None,
            dynamic: None,
        },
    });
    use poem::EndpointExt;
    let client = TestClient::new(candela_api::routes(state, "http://localhost").boxed());
    Platform {
        prefix,
        client,
        store,
        cache,
        mirror,
        redis_url: redis_url.to_owned(),
        _db: db,
    }
}

async fn get_json(
    client: &TestClient<poem::endpoint::BoxEndpoint<'static>>,
    url: &str,
) -> (u16, Value) {
    let resp = client.get(url).send().await;
    let status = resp.0.status().as_u16();
    let body = resp.0.into_body().into_string().await.unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

const BTC: &str = "Coinbase:BTC-USD";

#[tokio::test]
async fn ohlcv_equals_the_independent_computation_for_every_interval() {
    let p = platform(&candela_testkit::redis_url()).await;
    let i = btc();
    let all = ticks(&i, 180);
    p.store
        .write(WriteBatch {
            ticks: &all,
            history: &[],
        })
        .await
        .unwrap();
    let from = now() - 3 * 3_600;
    let reference = convert::trades(&all);

    for (name, interval) in [
        ("1m", Interval::M1),
        ("5m", Interval::M5),
        ("15m", Interval::M15),
        ("1h", Interval::H1),
        ("1d", Interval::D1),
    ] {
        let asked = now();
        let (status, body) = get_json(
            &p.client,
            &format!(
                "/api/v1/ohlcv?instrument=Coinbase:BTC-USD&interval={name}&from={from}&limit=10000"
            ),
        )
        .await;
        let answered = now();
        assert_eq!(status, 200, "{body}");
        oracle::assert_same_bars(
            name,
            &convert::served_bars(&body, BTC),
            &oracle::bars(&reference, interval.seconds()),
        );
        if interval == Interval::M1 {
            // Minutes of live trades only: every one live.
            oracle::assert_same_minutes(
                name,
                &convert::served_minutes(&body, BTC),
                &oracle::reconcile(&reference, &[]),
            );
        }
        let bars = body["bars"].as_array().unwrap();
        assert_eq!(body["from"].as_i64().unwrap(), interval.floor(from));
        assert_eq!(body["truncated"], false);
        // Only the interval in progress is open: a bar that ended before the
        // request is closed, one that ends after the answer is open (a
        // minute may turn between the two: that bar may be either).
        let step = interval.seconds();
        for b in bars {
            let end = b["time"].as_i64().unwrap() + step;
            if end <= asked {
                assert_eq!(b["closed"], true, "{name}: {b}");
            } else if end > answered {
                assert_eq!(b["closed"], false, "{name}: {b}");
            }
        }
        assert!(
            bars.iter().filter(|b| b["closed"] == false).count() <= 1,
            "{name}"
        );
    }

    // The second 1m request of a recent range is served from the cache, equal.
    let url = format!(
        "/api/v1/ohlcv?instrument=Coinbase:BTC-USD&interval=1m&from={}",
        now() - 1_800
    );
    let (_, first) = get_json(&p.client, &url).await;
    let (_, second) = get_json(&p.client, &url).await;
    assert_eq!(second["served"], "cache");
    assert_eq!(first["bars"], second["bars"]);

    // Fill: no gaps after the first bar; filled bars are flat at the previous close.
    let (_, filled) = get_json(&p.client, &format!("{url}&fill=true")).await;
    let bars = filled["bars"].as_array().unwrap();
    for pair in bars.windows(2) {
        assert_eq!(
            pair[1]["time"].as_i64().unwrap() - pair[0]["time"].as_i64().unwrap(),
            60
        );
        if pair[1]["source"] == "filled" {
            assert_eq!(pair[1]["open"], pair[0]["close"]);
            assert_eq!(pair[1]["volume_base"], "0");
        }
    }
    assert!(bars.iter().any(|b| b["source"] == "filled"));

    // Limit: truncated, and `to` says where to continue.
    let (_, few) = get_json(
        &p.client,
        &format!("/api/v1/ohlcv?instrument=Coinbase:BTC-USD&from={from}&limit=3"),
    )
    .await;
    assert_eq!(few["bars"].as_array().unwrap().len(), 3);
    assert_eq!(few["truncated"], true);
    assert_eq!(few["to"], few["bars"][2]["time"]);

    // Instruments.
    let (status, list) = get_json(&p.client, "/api/v1/instruments").await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["instrument"], "Coinbase:BTC-USD");
    assert_eq!(list[0]["market"], "Coinbase");
    assert_eq!(
        list[0]["bars"].as_i64().unwrap(),
        oracle::bars(&reference, 60).len() as i64
    );
}

#[tokio::test]
async fn bad_parameters_are_4xx_with_a_message() {
    let p = platform(&candela_testkit::redis_url()).await;
    let i = btc();
    p.store
        .write(WriteBatch {
            ticks: &ticks(&i, 3),
            history: &[],
        })
        .await
        .unwrap();
    let cases = [
        ("/api/v1/ohlcv?from=0", 400, "instrument"),
        ("/api/v1/ohlcv?instrument=Coinbase:BTC-USD", 400, "from"),
        (
            "/api/v1/ohlcv?instrument=BTCUSD&from=0",
            400,
            "MARKET:BASE-QUOTE",
        ),
        (
            "/api/v1/ohlcv?instrument=Coinbase:BTC-USD&from=0&interval=2m",
            400,
            "interval",
        ),
        (
            "/api/v1/ohlcv?instrument=Coinbase:BTC-USD&from=0&limit=0",
            400,
            "limit",
        ),
        (
            "/api/v1/ohlcv?instrument=Coinbase:BTC-USD&from=0&limit=100000",
            400,
            "limit",
        ),
        (
            "/api/v1/ohlcv?instrument=Coinbase:BTC-USD&from=0&limit=abc",
            400,
            "limit",
        ),
        (
            "/api/v1/ohlcv?instrument=Coinbase:BTC-USD&from=1700000000000",
            400,
            "from",
        ),
        (
            "/api/v1/ohlcv?instrument=Coinbase:BTC-USD&from=-5",
            400,
            "from",
        ),
        (
            "/api/v1/ohlcv?instrument=Coinbase:BTC-USD&from=0&fill=maybe",
            400,
            "fill",
        ),
        (
            "/api/v1/ohlcv?instrument=Kraken:DOGE-EUR&from=0",
            404,
            "not available",
        ),
        (
            "/api/v1/stream?instrument=nope&from=0",
            400,
            "MARKET:BASE-QUOTE",
        ),
    ];
    for (url, status, needle) in cases {
        let (got, body) = get_json(&p.client, url).await;
        assert_eq!(got, status, "{url}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{url}: {message}");
    }
    // The unknown instrument went through the Data Not Found path; the pool
    // keeps answering while the member that ended in Error is restarted.
    for _ in 0..5 {
        let (got, _) = get_json(
            &p.client,
            "/api/v1/ohlcv?instrument=Coinbase:BTC-USD&from=0",
        )
        .await;
        assert_eq!(got, 200);
        let (got, _) = get_json(&p.client, "/api/v1/ohlcv?instrument=Kraken:DOGE-EUR&from=0").await;
        assert_eq!(got, 404);
    }
}

#[tokio::test]
async fn docs_health_and_readiness() {
    let p = platform(&candela_testkit::redis_url()).await;
    let (status, spec) = get_json(&p.client, "/openapi.json").await;
    assert_eq!(status, 200);
    assert!(spec["paths"]["/api/v1/ohlcv"]["get"].is_object());
    assert!(spec["paths"]["/api/v1/stream"]["get"].is_object());
    let docs = p.client.get("/docs").send().await;
    docs.assert_status_is_ok();
    p.client.get("/health").send().await.assert_status_is_ok();
    p.client.get("/ready").send().await.assert_status_is_ok();

    // The docs page shows the document this node serves: its own maximum.
    let p = platform_with(&candela_testkit::redis_url(), 777).await;
    let (_, spec) = get_json(&p.client, "/openapi.json").await;
    let limit = param_schema(&spec, "/api/v1/ohlcv", "get", "limit");
    assert_eq!(limit["maximum"], 777);
    let docs = p.client.get("/docs").send().await;
    docs.assert_status_is_ok();
    let html = docs.0.into_body().into_string().await.unwrap();
    assert!(html.contains("SwaggerUIBundle"), "not the Swagger UI");
    let embedded = html
        .split_once("let spec = ")
        .and_then(|(_, rest)| rest.split_once(";\n    let oauth2RedirectUrl"))
        .map(|(spec, _)| spec)
        .expect("the page embeds a document");
    let embedded: Value = serde_json::from_str(embedded).expect("the embedded document is JSON");
    assert_eq!(embedded, spec, "the docs page shows another document");
}

/// Bars without their `closed` flag, which turns true when the clock passes
/// the end of the last minute (two answers a moment apart may straddle it).
fn without_closed(bars: &Value) -> Value {
    let mut bars = bars.clone();
    for bar in bars.as_array_mut().into_iter().flatten() {
        if let Some(fields) = bar.as_object_mut() {
            fields.remove("closed");
        }
    }
    bars
}

#[tokio::test]
async fn answers_from_the_database_while_redis_is_down_and_refills_after() {
    let mut redis = OwnRedis::start();
    let p = platform(&redis.url()).await;
    let i = btc();
    let all = ticks(&i, 30);
    p.store
        .write(WriteBatch {
            ticks: &all,
            history: &[],
        })
        .await
        .unwrap();
    let url = format!(
        "/api/v1/ohlcv?instrument=Coinbase:BTC-USD&from={}",
        now() - 3_600
    );
    let expected = oracle::bars(&convert::trades(&all), 60);

    let (_, warm) = get_json(&p.client, &url).await;
    let (_, cached) = get_json(&p.client, &url).await;
    assert_eq!(cached["served"], "cache");

    redis.stop();
    // Until the node notices that its subscription to the cache's events
    // ended (an event: the connection closed), it may answer from its memo
    // of the cache (nothing could change there meanwhile): the same bars.
    // Then from the database.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut from_database = 0;
    while from_database < 3 {
        let (status, body) = get_json(&p.client, &url).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(without_closed(&body["bars"]), without_closed(&warm["bars"]));
        oracle::assert_same_bars("database", &convert::served_bars(&body, BTC), &expected);
        if body["served"] == "database" {
            from_database += 1;
        } else {
            assert_eq!(
                from_database, 0,
                "the memo again after the database: {body}"
            );
            assert_eq!(body["served"], "cache");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node did not notice within 10 s that Redis stopped"
        );
        tokio::task::yield_now().await;
    }

    redis.restart();
    // Within the back-off the cache is not tried; then a miss refills it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get_json(&p.client, &url).await;
        assert_eq!(status, 200);
        assert_eq!(without_closed(&body["bars"]), without_closed(&warm["bars"]));
        if body["served"] == "cache" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cache was not refilled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn admin_shows_live_actors_and_resets_them_and_refuses_without_the_token() {
    let p = platform(&candela_testkit::redis_url()).await;
    let i = btc();
    p.store
        .write(WriteBatch {
            ticks: &ticks(&i, 3),
            history: &[],
        })
        .await
        .unwrap();
    let (status, _) = get_json(
        &p.client,
        "/api/v1/ohlcv?instrument=Coinbase:BTC-USD&from=0",
    )
    .await;
    assert_eq!(status, 200);

    // No token, a wrong token: 401.
    let resp = p.client.get("/admin/actors").send().await;
    assert_eq!(resp.0.status().as_u16(), 401);
    let resp = p
        .client
        .get("/admin/actors")
        .header("authorization", "Bearer nope")
        .send()
        .await;
    assert_eq!(resp.0.status().as_u16(), 401);

    let get = |url: String| {
        let client = &p.client;
        async move {
            let resp = client
                .get(&url)
                .header("authorization", format!("Bearer {TOKEN}"))
                .send()
                .await;
            let status = resp.0.status().as_u16();
            (status, resp.0.into_body().into_string().await.unwrap())
        }
    };
    let (status, body) = get("/admin/actors".into()).await;
    assert_eq!(status, 200, "{body}");
    let actors: Value = serde_json::from_str(&body).unwrap();
    let member = format!("{}/0", p.prefix);
    let a = actors
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == member.as_str())
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(a["machine"], "datastore");
    assert_eq!(a["state"], "Idle");
    assert_eq!(a["running"], true);
    assert_eq!(actors.as_array().unwrap().len(), 2, "both pool members");

    // Its diagram with the current state highlighted, as DOT and SVG.
    let encoded = member.replace('/', "%2F");
    let (status, dot) = get(format!("/admin/actors/{encoded}/diagram")).await;
    assert_eq!(status, 200, "{dot}");
    assert!(
        dot.contains("\"Idle\" [label=\"Idle\", fillcolor=\"#FFD700\", penwidth=3]"),
        "{dot}"
    );
    let (status, svg) = get(format!("/admin/actors/{encoded}/diagram?format=svg")).await;
    assert_eq!(status, 200);
    assert!(svg.contains("<svg"));
    let (status, _) = get(format!("/admin/actors/{encoded}/diagram?format=png")).await;
    assert_eq!(status, 400);
    let (status, _) = get("/admin/actors/nobody/diagram".into()).await;
    assert_eq!(status, 404);

    // A manual RESET: restarted, counted, its new run starts with RESET.
    let resp = p
        .client
        .post(format!("/admin/actors/{encoded}/reset"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await;
    assert_eq!(resp.0.status().as_u16(), 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = get("/admin/actors".into()).await;
        let actors: Value = serde_json::from_str(&body).unwrap();
        let a = actors
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == member.as_str())
            .cloned();
        if let Some(a) = a.filter(|a| a["restarts"] == 1 && a["running"] == true) {
            assert_eq!(a["recent"][0]["event"], "RESET");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no restart seen: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = get("/admin/cluster".into()).await;
    assert_eq!(status, 404, "standalone: no cluster layer");
}

/// What the document says of a parameter of an operation: its schema.
fn param_schema(spec: &Value, path: &str, method: &str, name: &str) -> Value {
    spec["paths"][path][method]["parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("{path} has no parameters"))
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{path} has no parameter {name}"))["schema"]
        .clone()
}

/// The document's enum for a parameter (inline or by `$ref`).
fn enum_values(spec: &Value, schema: &Value) -> Vec<String> {
    let schema = match schema["$ref"]
        .as_str()
        .or(schema["allOf"][0]["$ref"].as_str())
    {
        Some(r) => spec["components"]["schemas"][r.rsplit('/').next().unwrap()].clone(),
        None => schema.clone(),
    };
    schema["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("no enum in {schema}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_document_states_the_bounds_the_server_enforces() {
    let p = platform(&candela_testkit::redis_url()).await;
    p.store
        .write(WriteBatch {
            ticks: &ticks(&btc(), 3),
            history: &[],
        })
        .await
        .unwrap();
    let (_, spec) = get_json(&p.client, "/openapi.json").await;
    let ohlcv = |q: String| format!("/api/v1/ohlcv?{q}");

    // limit: the document's minimum and maximum are accepted, one beyond refused.
    let limit = param_schema(&spec, "/api/v1/ohlcv", "get", "limit");
    let (min, max) = (
        limit["minimum"].as_f64().unwrap() as i64,
        limit["maximum"].as_f64().unwrap() as i64,
    );
    assert_eq!((min, max), (1, 10_000), "{limit}");
    for (l, want) in [(min, 200), (max, 200), (min - 1, 400), (max + 1, 400)] {
        let (got, body) = get_json(
            &p.client,
            &ohlcv(format!("instrument={BTC}&from=0&limit={l}")),
        )
        .await;
        assert_eq!(got, want, "limit={l}: {body}");
    }

    // from: Unix seconds within the integer's bounds, or an RFC 3339 time.
    let time = param_schema(&spec, "/api/v1/ohlcv", "get", "from");
    assert_eq!(time["oneOf"][1]["format"], "date-time", "{time}");
    let from = time["oneOf"][0].clone();
    assert_eq!(from["type"], "integer", "{time}");
    let (min, max) = (
        from["minimum"].as_f64().unwrap() as i64,
        from["maximum"].as_f64().unwrap() as i64,
    );
    for (f, want) in [(min, 200), (max, 200), (min - 1, 400), (max + 1, 400)] {
        let (got, body) = get_json(&p.client, &ohlcv(format!("instrument={BTC}&from={f}"))).await;
        assert_eq!(got, want, "from={f}: {body}");
    }

    for (text, want) in [
        ("2025-01-01T00:00:00Z", 1_735_689_600),
        ("2025-01-01T01:00:00%2B01:00", 1_735_689_600),
        ("1735689600", 1_735_689_600),
    ] {
        let (got, body) = get_json(
            &p.client,
            &ohlcv(format!("instrument={BTC}&from={text}&to={text}")),
        )
        .await;
        assert_eq!(got, 200, "from={text}: {body}");
        assert_eq!(body["from"], want, "from={text}: {body}");
    }
    let (got, body) = get_json(
        &p.client,
        &ohlcv(format!("instrument={BTC}&from=2025-13-01T00:00:00Z")),
    )
    .await;
    assert_eq!(got, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("RFC 3339"),
        "{body}"
    );

    // instrument: what the pattern accepts is never refused as malformed,
    // what it refuses is.
    let pattern = param_schema(&spec, "/api/v1/ohlcv", "get", "instrument")["pattern"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(pattern, candela_api::model::INSTRUMENT_PATTERN);
    let re = regex::Regex::new(&pattern).unwrap();
    for (text, matches) in [
        (BTC, true),
        ("a.b:C1-D.2", true),
        ("", false),
        ("BTCUSD", false),
        ("Coin base:BTC-USD", false),
        ("Coinbase:BTC-USD-X", false),
        (&"A".repeat(33) as &str, false),
    ] {
        assert_eq!(re.is_match(text), matches, "{text:?} against {pattern}");
        let (got, body) = get_json(
            &p.client,
            &ohlcv(format!("instrument={}&from=0", urlencode(text))),
        )
        .await;
        if matches {
            assert_ne!(got, 400, "{text:?} matches the pattern: {body}");
        } else {
            assert_eq!(got, 400, "{text:?} does not match the pattern: {body}");
        }
    }

    // interval: every value of the enum is accepted, no other.
    let intervals = enum_values(
        &spec,
        &param_schema(&spec, "/api/v1/ohlcv", "get", "interval"),
    );
    assert_eq!(intervals, ["1m", "5m", "15m", "1h", "1d"]);
    for i in intervals.iter().map(String::as_str).chain(["2m", "1M", ""]) {
        let (got, body) = get_json(
            &p.client,
            &ohlcv(format!("instrument={BTC}&from=0&interval={i}")),
        )
        .await;
        let documented = intervals.iter().any(|v| v == i);
        assert_eq!(got == 200, documented, "interval={i:?}: {got} {body}");
    }

    // The diagram's format: the same.
    let formats = enum_values(
        &spec,
        &param_schema(&spec, "/admin/actors/{name}/diagram", "get", "format"),
    );
    assert_eq!(formats, ["dot", "svg", "mermaid", "tikz"]);
    let member = format!("{}%2F0", p.prefix);
    for f in formats.iter().map(String::as_str).chain(["png", "DOT"]) {
        let resp = p
            .client
            .get(format!("/admin/actors/{member}/diagram?format={f}"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .send()
            .await;
        let got = resp.0.status().as_u16();
        let documented = formats.iter().any(|v| v == f);
        // svg needs Graphviz: 503 when it is missing is a documented answer.
        assert_eq!(
            got == 200 || (f == "svg" && got == 503),
            documented,
            "format={f}: {got}"
        );
    }

    // A range that starts after its end holds no bars: an answer, not an error.
    let (got, body) = get_json(
        &p.client,
        &ohlcv(format!("instrument={BTC}&from=600&to=60")),
    )
    .await;
    assert_eq!(got, 200, "{body}");
    assert_eq!(body["bars"], serde_json::json!([]));
    assert_eq!(body["served"], "none");
}

#[tokio::test]
async fn framework_errors_are_json_with_their_headers() {
    let p = platform(&candela_testkit::redis_url()).await;
    // No token: 401, JSON, WWW-Authenticate.
    let resp = p.client.get("/admin/actors").send().await;
    assert_eq!(resp.0.status().as_u16(), 401);
    assert!(resp.0.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(resp.0.headers()["www-authenticate"], "Bearer");
    let body: Value =
        serde_json::from_str(&resp.0.into_body().into_string().await.unwrap()).unwrap();
    assert_eq!(body["error"], "unauthorized", "{body}");
    // A method the path does not have: 405, JSON, Allow.
    let resp = p.client.delete("/api/v1/instruments").send().await;
    assert_eq!(resp.0.status().as_u16(), 405);
    assert!(resp.0.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let allow = resp.0.headers()["allow"].to_str().unwrap().to_owned();
    assert!(
        allow.contains("GET") && !allow.contains("DELETE"),
        "{allow}"
    );
    let resp = p.client.get("/admin/actors/x/reset").send().await;
    assert_eq!(resp.0.status().as_u16(), 405);
    assert_eq!(resp.0.headers()["allow"], "POST");
    // A bad parameter says what the parameter must be.
    let (got, body) = get_json(&p.client, "/api/v1/ohlcv?instrument=BTCUSD&from=0").await;
    assert_eq!(got, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("MARKET:BASE-QUOTE"),
        "{body}"
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A request's status, headers and raw body.
async fn get_raw(
    client: &TestClient<poem::endpoint::BoxEndpoint<'static>>,
    url: &str,
    headers: &[(&'static str, &str)],
) -> (u16, poem::http::HeaderMap, Vec<u8>) {
    let mut req = client.get(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await;
    let status = resp.0.status().as_u16();
    let headers = resp.0.headers().clone();
    let body = resp.0.into_body().into_vec().await.unwrap();
    (status, headers, body)
}

#[tokio::test]
async fn answers_from_encoded_hours_follow_every_change_with_tags_and_codings() {
    use std::io::Read;
    let p = platform(&candela_testkit::redis_url()).await;
    let i = btc();
    let mut all = ticks(&i, 180);
    // As the consumer does: the store, then the cache.
    let written = p
        .store
        .write(WriteBatch {
            ticks: &all,
            history: &[],
        })
        .await
        .unwrap();
    p.put_and_hear(&written.touched).await;
    let from = Interval::M1.floor(now()) - 179 * 60;
    let base = format!("/api/v1/ohlcv?instrument={BTC}&interval=1m");
    let url = format!("{base}&from={from}&limit=10000");
    let check = |what: &str, body: &Value, ticks: &[Tick]| {
        oracle::assert_same_bars(
            what,
            &convert::served_bars(body, BTC),
            &oracle::bars(&convert::trades(ticks), 60),
        );
    };
    // The database, then the cache with nothing encoded, then the cache
    // with every hour encoded: one answer.
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let (status, body) = get_json(&p.client, &url).await;
        assert_eq!(status, 200, "{body}");
        check("1m", &body, &all);
        bodies.push(body);
    }
    assert_eq!(bodies[2]["served"], "cache");
    assert_eq!(without_closed(&bodies[1]), without_closed(&bodies[2]));

    // A correction of a closed minute two hours back (a late trade, a new
    // high): the hour is encoded again, the others are not touched.
    let minute = from + 9 * 60;
    let late = Tick {
        trade_id: "late-1".into(),
        trade_time_ns: (minute + 30) * 1_000_000_000,
        price: Decimal::new(99_000_000, 2),
        ..all[0].clone()
    };
    let (_, _, before) = get_raw(&p.client, &url, &[]).await;
    let (_, tagged, _) = get_raw(&p.client, &url, &[]).await;
    let tag = tagged
        .get("etag")
        .expect("an ETag")
        .to_str()
        .unwrap()
        .to_owned();
    let (status, headers, body) = get_raw(&p.client, &url, &[("If-None-Match", &tag)]).await;
    if status == 304 {
        assert!(body.is_empty());
        assert_eq!(headers.get("etag").unwrap(), tag.as_str());
    } else {
        // A minute turned between the two requests: a new answer.
        assert_eq!(status, 200);
    }
    all.push(late.clone());
    let written = p
        .store
        .write(WriteBatch {
            ticks: std::slice::from_ref(&late),
            history: &[],
        })
        .await
        .unwrap();
    // Once this node has heard of it (the write's event), an answer has it.
    p.put_and_hear(&written.touched).await;
    let (status, headers, after) = get_raw(&p.client, &url, &[("If-None-Match", &tag)]).await;
    assert_eq!(status, 200, "a changed answer was called not modified");
    assert_ne!(headers.get("etag").unwrap(), tag.as_str());
    assert_ne!(before, after);
    let body: Value = serde_json::from_slice(&after).unwrap();
    assert_eq!(body["served"], "cache");
    check("1m after a correction", &body, &all);
    let corrected = body["bars"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["time"] == minute)
        .expect("the corrected minute");
    assert_eq!(corrected["high"], "990000");
    assert_eq!(corrected["trades"], 6);

    // Limits cut the same series, whatever hours are encoded.
    for limit in [1, 59, 60, 61, 100] {
        let (_, cut) = get_json(&p.client, &format!("{base}&from={from}&limit={limit}")).await;
        let want: Vec<Value> = body["bars"].as_array().unwrap()[..limit].to_vec();
        assert_eq!(cut["bars"].as_array().unwrap(), &want, "limit {limit}");
        assert_eq!(cut["truncated"], true);
        assert_eq!(cut["to"], want[limit - 1]["time"]);
    }
    // A range starting inside an hour.
    let (_, inside) = get_json(&p.client, &format!("{base}&from={}", from + 3_000)).await;
    let want: Vec<&Value> = body["bars"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["time"].as_i64().unwrap() >= Interval::M1.floor(from + 3_000))
        .collect();
    assert_eq!(
        inside["bars"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        want
    );

    // gzip and brotli when asked, the same JSON.
    let (_, plain_headers, plain) = get_raw(&p.client, &url, &[]).await;
    assert!(plain_headers.get("content-encoding").is_none());
    assert_eq!(plain_headers.get("vary").unwrap(), "Accept-Encoding");
    let (_, gz_headers, gz) = get_raw(&p.client, &url, &[("Accept-Encoding", "gzip")]).await;
    assert_eq!(gz_headers.get("content-encoding").unwrap(), "gzip");
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    let (_, br_headers, br) =
        get_raw(&p.client, &url, &[("Accept-Encoding", "gzip, deflate, br")]).await;
    assert_eq!(br_headers.get("content-encoding").unwrap(), "br");
    let mut unbrotli = Vec::new();
    brotli::BrotliDecompress(&mut &br[..], &mut unbrotli).unwrap();
    let as_json = |b: &[u8]| without_closed(&serde_json::from_slice(b).unwrap());
    assert_eq!(as_json(&unzipped), as_json(&plain));
    assert_eq!(as_json(&unbrotli), as_json(&plain));
    assert!(
        gz.len() * 3 < plain.len(),
        "{} of {}",
        gz.len(),
        plain.len()
    );
}

/// Commands `redis-server` at `port` has processed (`INFO stats`; the
/// `INFO` itself counts once).
fn redis_commands(port: u16) -> u64 {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "info", "stats"])
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO stats has total_commands_processed")
}

/// The speed of the 500-bar answer rests on this: while the cache's events
/// say none of a range's hours moved, the node answers from what it encoded
/// without asking Redis at all; a change heard, or a subscription lost,
/// sends it back to Redis (for the hours that moved, or for all).
#[tokio::test]
async fn answers_come_from_the_memo_without_asking_redis_while_nothing_moved() {
    let redis = OwnRedis::start();
    let p = platform(&redis.url()).await;
    let i = btc();
    let mut all = ticks(&i, 180);
    let written = p
        .store
        .write(WriteBatch {
            ticks: &all,
            history: &[],
        })
        .await
        .unwrap();
    p.put_and_hear(&written.touched).await;
    // Closed hours only: no minute of the range closes meanwhile.
    let t = now();
    let to = t - t.rem_euclid(3_600) - 60;
    let from = to - 119 * 60;
    let url = format!("/api/v1/ohlcv?instrument={BTC}&interval=1m&from={from}&to={to}");
    let expected = |ticks: &[Tick]| {
        let trades: Vec<_> = convert::trades(ticks)
            .into_iter()
            .filter(|t| (from..to + 60).contains(&(t.time_ns / 1_000_000_000)))
            .collect();
        oracle::bars(&trades, 60)
    };
    // The first answers read the cache (a fill from the database first),
    // until one that no event overtook teaches the node the hours'
    // versions.
    let (_, first) = get_json(&p.client, &url).await;
    let second = p.read_until_known(&url, &i, from, to).await;
    assert_eq!(second["served"], "cache");
    oracle::assert_same_bars("read", &convert::served_bars(&second, BTC), &expected(&all));
    let before = redis_commands(redis.port);
    for _ in 0..20 {
        let (status, body) = get_json(&p.client, &url).await;
        assert_eq!(status, 200);
        assert_eq!(body, second);
    }
    assert_eq!(
        redis_commands(redis.port) - before,
        1,
        "20 answers asked Redis (the one command is the INFO)"
    );
    assert!(
        first["bars"] == second["bars"],
        "the database's answer differs"
    );

    // Another node's consumer corrects a minute of the range: once this
    // node heard of it, its answers have it (that hour read again).
    let late = Tick {
        trade_id: "late-memo".into(),
        trade_time_ns: (from + 30 * 60 + 7) * 1_000_000_000,
        price: Decimal::new(99_000_000, 2),
        ..all[0].clone()
    };
    all.push(late.clone());
    let written = p
        .store
        .write(WriteBatch {
            ticks: std::slice::from_ref(&late),
            history: &[],
        })
        .await
        .unwrap();
    p.put_and_hear(&written.touched).await;
    let before = redis_commands(redis.port);
    let (_, corrected) = get_json(&p.client, &url).await;
    assert!(
        redis_commands(redis.port) - before > 1,
        "the moved hour was read again"
    );
    oracle::assert_same_bars(
        "corrected",
        &convert::served_bars(&corrected, BTC),
        &expected(&all),
    );
    // ... and then from the memo again.
    let again = p.read_until_known(&url, &i, from, to).await;
    let before = redis_commands(redis.port);
    let (_, same) = get_json(&p.client, &url).await;
    assert_eq!(redis_commands(redis.port) - before, 1);
    assert_eq!(same, again);

    // A page cut by its limit (the hours after the cut are never read):
    // from the memo as well, once read.
    let page = format!("/api/v1/ohlcv?instrument={BTC}&interval=1m&from={from}&limit=70");
    let (_, first_page) = get_json(&p.client, &page).await;
    assert_eq!(first_page["truncated"], true);
    // (`to` of the first hours only: the hours after the cut stay unknown.)
    let cut_page = p.read_until_known(&page, &i, from, from).await;
    let before = redis_commands(redis.port);
    let (_, again_page) = get_json(&p.client, &page).await;
    assert_eq!(
        redis_commands(redis.port) - before,
        1,
        "the page asked Redis"
    );
    assert_eq!(again_page, cut_page);
    assert_eq!(again_page["bars"].as_array().unwrap().len(), 70);
    assert_eq!(again_page["bars"], first_page["bars"]);

    // The subscription ends (Redis closes it): the node forgets what it
    // knew, and asks Redis again.
    let heard = p.mirror.heard();
    let out = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "client",
            "kill",
            "type",
            "pubsub",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    eventually(
        "the node hears that its subscription ended",
        10,
        async || (p.mirror.heard() > heard).then_some(()),
    )
    .await;
    let before = redis_commands(redis.port);
    let (_, after_loss) = get_json(&p.client, &url).await;
    assert!(
        redis_commands(redis.port) - before > 1,
        "asked Redis after the loss"
    );
    assert_eq!(after_loss, same);
}
