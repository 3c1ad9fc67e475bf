//! The API's own web pages in a real browser: headless Chromium, driven
//! through chromedriver with the W3C WebDriver HTTP protocol (plain reqwest),
//! against a whole node started in-process on the quick start's defaults (the
//! imitation of CryptoCompare and the embedded backends: in-process bus,
//! SQLite, in-memory cache — the same actors as on Kafka, PostgreSQL and
//! Redis), with the cluster layer on and an admin token.
//!
//! * The chart (`/ui/`) draws bars: its canvas reports bars and its pixels
//!   show candles in the up/down colours.
//! * It goes live: the bar in progress changes while the imitation streams.
//! * The cluster page (`/ui/cluster`, token from the URL fragment) shows
//!   every actor `/admin/actors` lists, with the same machine and state, and a
//!   diagram for each; a wrong token gets a clear 401 message.
//!
//! Screenshots of each page are written to `<workspace>/artifacts/screenshots/`
//! and their paths printed. Missing Chromium or chromedriver fails the test
//! with the command that installs them (`bash scripts/services`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use candela_node::config::Config;
use candela_node::{cluster, platform};
use candela_testkit::unique;
use serde_json::{json, Value};

/// How to get the browser.
const INSTALL_HINT: &str = "run `bash scripts/services` (it installs the Debian packages \
     chromium and chromium-driver; CI runs it), or point CANDELA_CHROMIUM and \
     CANDELA_CHROMEDRIVER at the binaries";

/// The candle colours of `api/assets/chart.js`.
const UP: [u8; 3] = [0x26, 0xa6, 0x9a];
const DOWN: [u8; 3] = [0xef, 0x53, 0x50];

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `var` if set, else the first of `names` on `PATH` or in `/usr/bin`.
fn find_binary(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .collect();
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

/// Decodes standard base64 (WebDriver screenshots).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let Some(v) = value(c) else { continue };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// chromedriver with one headless Chromium session. Dropping it kills
/// chromedriver's process group (chromedriver and the browsers it started).
struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver leads its own process group (process_group(0)).
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session
    /// with a fresh profile; panics with [`INSTALL_HINT`] when either is missing.
    async fn start() -> Browser {
        let chromium = find_binary("CANDELA_CHROMIUM", &["chromium", "chromium-browser"])
            .unwrap_or_else(|| panic!("Chromium is not installed: {INSTALL_HINT}"));
        let driver = find_binary("CANDELA_CHROMEDRIVER", &["chromedriver"])
            .unwrap_or_else(|| panic!("chromedriver is not installed: {INSTALL_HINT}"));
        let profile = tempfile::tempdir().unwrap();
        let log_path = profile.path().join("chromedriver.log");
        let log = std::fs::File::create(&log_path).unwrap();
        use std::os::unix::process::CommandExt;
        let child = Command::new(&driver)
            // Port 0: chromedriver binds a free one and says which.
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {INSTALL_HINT}", driver.display()));
        let mut child = child;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let port: u16 = loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(port) = text
                .lines()
                .find_map(|l| l.strip_prefix("ChromeDriver was started successfully on port "))
                .and_then(|p| p.trim().trim_end_matches('.').parse().ok())
            {
                break port;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("chromedriver exited at start ({status}): {text}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not say its port within 30 s: {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut browser = Browser {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            child,
            _profile: profile,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = async {
                let v: Value = browser
                    .http
                    .get(format!("{}/status", browser.base))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                v["value"]["ready"].as_bool()
            };
            if ready.await == Some(true) {
                break;
            }
            if let Ok(Some(status)) = browser.child.try_wait() {
                panic!("chromedriver exited at start ({status}); see its log");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not answer on port {port} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let user_data = browser._profile.path().join("profile");
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-quic", "--no-first-run",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--window-size=1400,900", "--hide-scrollbars",
                    format!("--user-data-dir={}", user_data.display()),
                ],
            },
        }}});
        let session = browser.command("POST", "/session", Some(caps)).await;
        browser.session = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {session}"))
            .to_owned();
        browser
    }

    /// One WebDriver command; its `value`, or a panic naming the error.
    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .json(&body.unwrap_or_else(|| json!({}))),
        };
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: {status}: {}",
            v["value"]
        );
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    async fn run(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Runs `script` until `done` accepts its answer; returns that answer,
    /// or panics after `secs` with the last answer and the page's status.
    async fn wait_for(
        &self,
        what: &str,
        secs: u64,
        script: &str,
        args: Value,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.run(script, args.clone()).await;
            if done(&v) {
                return v;
            }
            if tokio::time::Instant::now() >= deadline {
                let page = self
                    .run(
                        "return (document.getElementById('status')||{}).textContent + ' | ' + \
                         (document.getElementById('message')||{}).textContent",
                        json!([]),
                    )
                    .await;
                panic!("timed out after {secs} s waiting for {what}: last answer {v}; the page says: {page}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Saves a screenshot of the viewport as PNG; returns its path.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.command("GET", "/screenshot", None).await;
        let png = base64_decode(b64.as_str().expect("base64 screenshot"));
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../artifacts/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        let path = path.canonicalize().unwrap();
        println!("screenshot: {}", path.display());
        path
    }

    async fn resize(&self, width: i64, height: i64) {
        self.command(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    async fn quit(self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
    }
}

/// A node's configuration for this test: the defaults (embedded backends),
/// with its own node name, data folder, API and cluster ports; two hours of
/// history; the admin token from a variable of its own.
fn config(data_dir: &Path, token_env: &str) -> Config {
    let node = unique("node").replace('_', "-");
    let env = vec![
        ("CANDELA__NODE__NAME", node),
        (
            "CANDELA__BACKENDS__DATA_DIR",
            data_dir.display().to_string(),
        ),
        ("CANDELA__SOURCE__KIND", "imitation".into()),
        ("CANDELA__SOURCE__IMITATION__TRADES_PER_SEC", "10.0".into()),
        (
            "CANDELA__INGEST__INSTRUMENTS",
            "[\"Coinbase:BTC-USD\", \"Kraken:ETH-EUR\"]".into(),
        ),
        ("CANDELA__INGEST__BACKFILL_MINUTES", "120".into()),
        ("CANDELA__API__LISTEN", "127.0.0.1:0".into()),
        ("CANDELA__API__STREAM_GRACE_SECS", "1".into()),
        // No peers: any port, the listener's own choice.
        ("CANDELA__CLUSTER__LISTEN", "127.0.0.1:0".into()),
        ("CANDELA__CLUSTER__PEERS", "[]".into()),
        ("CANDELA__CLUSTER__TRANSPORT", "plain".into()),
        ("CANDELA__ADMIN__TOKEN_ENV", token_env.into()),
    ];
    Config::parse("", env.into_iter().map(|(k, v)| (k.to_owned(), v))).unwrap()
}

/// Counts the plot area's pixels in the up and down candle colours (the
/// price axis, where the last price's label is, is left out), and the
/// canvas's pixels that differ from the background.
const PIXELS: &str = "
    const c = document.getElementById('chart');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const near = (i, rgb) => Math.abs(d[i] - rgb[0]) <= 6 && Math.abs(d[i + 1] - rgb[1]) <= 6
        && Math.abs(d[i + 2] - rgb[2]) <= 6;
    const bg = [d[0], d[1], d[2]];
    const plotRight = c.width - 90 * (window.devicePixelRatio || 1);
    let up = 0, down = 0, drawn = 0;
    for (let i = 0; i < d.length; i += 4) {
        if ((i / 4) % c.width >= plotRight) { if (!near(i, bg)) drawn++; continue; }
        if (near(i, arguments[0])) up++;
        else if (near(i, arguments[1])) down++;
        if (!near(i, bg)) drawn++;
    }
    return { up, down, drawn, width: c.width, height: c.height };";

/// The canvas's state attributes.
const CHART_STATE: &str = "
    const d = document.getElementById('chart').dataset;
    return { bars: +d.bars, state: d.state, lastClose: d.lastClose, lastTime: +d.lastTime,
             lastUpdate: d.lastUpdate, updates: +d.updates };";

/// What the cluster page shows: each actor row's name, machine and state, and
/// each card's diagram state.
const CLUSTER_ROWS: &str = "
    const rows = [...document.querySelectorAll('#actors tbody tr')].map(r =>
        ({ name: r.dataset.actor, machine: r.dataset.machine, state: r.dataset.state }));
    const cards = [...document.querySelectorAll('#diagrams .card')].map(c => ({
        name: c.dataset.actor,
        svg: !!c.querySelector('.diagram svg'),
        diagram: c.querySelector('.diagram').dataset.diagramState }));
    const nodes = [...document.querySelectorAll('#nodes tbody tr')].map(r => r.dataset.node);
    return { rows, cards, nodes, refreshed: document.body.dataset.refreshed || '' };";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pages_draw_the_chart_live_and_show_every_actor() {
    // The browser first: without it there is nothing to test (and no reason
    // to start a node).
    let browser = Browser::start().await;

    let token = unique("admin-token");
    let token_env = unique("CANDELA_BROWSER_TEST_TOKEN").to_uppercase();
    // Read once by platform::start; no other test in this binary reads it.
    std::env::set_var(&token_env, &token);
    let data = tempfile::tempdir().unwrap();
    let config = config(data.path(), &token_env);
    let node = config.node.name.clone();
    let cluster = cluster::start(&config, unique("cookie-of-the-browser-test-cluster"))
        .await
        .unwrap();
    let p = platform::start(&config).await.unwrap();
    let api = format!("http://{}", p.api_addr.unwrap());
    let http = reqwest::Client::new();

    // History first: the backfill puts about two hours of minutes in.
    let from = now() - 7_200;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let n = async {
            let v: Value = http
                .get(format!(
                    "{api}/api/v1/ohlcv?instrument=Coinbase:BTC-USD&from={from}&limit=10000"
                ))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            Some(v["bars"].as_array()?.len())
        }
        .await
        .unwrap_or(0);
        if n >= 60 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backfill did not arrive ({n} bars)"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // --- the chart ---------------------------------------------------------
    browser
        .goto(&format!("{api}/?instrument=Coinbase:BTC-USD&interval=1m"))
        .await;
    let state = browser
        .wait_for(
            "the chart to draw bars and go live",
            60,
            CHART_STATE,
            json!([]),
            |s| s["bars"].as_i64() > Some(0) && s["state"] == "live",
        )
        .await;
    println!("chart: {state}");
    assert!(
        state["bars"].as_i64().unwrap() >= 60,
        "the history is drawn: {state}"
    );
    assert!(
        state["lastTime"].as_i64().unwrap() >= now() - 180,
        "the last bar is current: {state}"
    );
    let pixels = browser.run(PIXELS, json!([UP, DOWN])).await;
    println!("chart pixels: {pixels}");
    let (up, down) = (
        pixels["up"].as_i64().unwrap(),
        pixels["down"].as_i64().unwrap(),
    );
    // Rising and falling candles both (the dashed last-price line has one
    // colour only), and more than a line's worth.
    assert!(
        up > 150 && down > 150 && up + down > 1_500,
        "the canvas shows candles in the up/down colours: {pixels}"
    );
    let candles = up + down;
    assert!(
        pixels["drawn"].as_i64().unwrap() > candles,
        "axes and volume are drawn too: {pixels}"
    );

    // Live: the bar in progress changes while the imitation streams.
    let before = state["lastUpdate"].as_str().unwrap_or("").to_owned();
    let updates = state["updates"].as_i64().unwrap();
    let live = browser
        .wait_for(
            "a live update of the chart",
            90,
            CHART_STATE,
            json!([]),
            |s| s["lastUpdate"] != before.as_str() && s["updates"].as_i64() > Some(updates),
        )
        .await;
    println!("chart after a live update: {live}");
    assert_eq!(live["state"], "live");
    browser.screenshot("chart.png").await;

    // The interval picker reloads the series: 5-minute bars.
    browser
        .run(
            "const s = document.getElementById('interval'); s.value = '5m'; \
             s.dispatchEvent(new Event('change'));",
            json!([]),
        )
        .await;
    let five = browser
        .wait_for(
            "5-minute bars",
            60,
            "const d = document.getElementById('chart').dataset; \
             return { state: d.state, bars: +d.bars, lastTime: +d.lastTime, search: location.search };",
            json!([]),
            |s| {
                s["state"] == "live"
                    && s["bars"].as_i64() > Some(0)
                    && s["lastTime"].as_i64().is_some_and(|t| t % 300 == 0)
                    && s["search"].as_str().is_some_and(|q| q.contains("interval=5m"))
            },
        )
        .await;
    assert!(
        five["bars"].as_i64().unwrap() >= 12,
        "two hours of 5-minute bars: {five}"
    );

    // --- the cluster page ----------------------------------------------------
    browser.resize(1400, 2400).await;
    browser
        .goto(&format!("{api}/ui/cluster#token={token}"))
        .await;
    let hidden = browser
        .wait_for(
            "the cluster page's first refresh",
            30,
            "return { refreshed: document.body.dataset.refreshed || '', hash: location.hash, \
                      stored: sessionStorage.getItem('candela.adminToken') };",
            json!([]),
            |s| s["refreshed"] != "",
        )
        .await;
    assert_eq!(hidden["hash"], "", "the token left the address bar");
    assert_eq!(
        hidden["stored"],
        token.as_str(),
        "the token is in sessionStorage"
    );

    // Every actor of /admin/actors, with its machine and state, and a diagram
    // highlighting that state. States change as requests come and go, so
    // compare until one refresh agrees with the endpoint.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (actors, shown) = loop {
        let actors: Vec<Value> = http
            .get(format!("{api}/admin/actors"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let shown = browser.run(CLUSTER_ROWS, json!([])).await;
        let want: Vec<(String, String, String)> = {
            let mut v: Vec<_> = actors
                .iter()
                .map(|a| {
                    (
                        a["name"].as_str().unwrap().to_owned(),
                        a["machine"].as_str().unwrap().to_owned(),
                        a["state"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        let got: Vec<(String, String, String)> = {
            let mut v: Vec<_> = shown["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["name"].as_str().unwrap_or("").to_owned(),
                        r["machine"].as_str().unwrap_or("").to_owned(),
                        r["state"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        let diagrams_agree = shown["cards"].as_array().unwrap().iter().all(|c| {
            c["svg"] == true
                && got
                    .iter()
                    .any(|(n, _, s)| c["name"] == n.as_str() && c["diagram"] == s.as_str())
        });
        if !want.is_empty() && want == got && diagrams_agree {
            break (actors, shown);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cluster page never agreed with /admin/actors:\n want {want:?}\n  got {got:?}\n cards {}",
            shown["cards"]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "cluster page: {} actors, nodes {}",
        actors.len(),
        shown["nodes"]
    );
    assert_eq!(
        shown["cards"].as_array().unwrap().len(),
        actors.len(),
        "one diagram per actor"
    );
    for machine in ["producer", "consumer-fixed", "datastore"] {
        assert!(
            actors.iter().any(|a| a["machine"] == machine),
            "/admin/actors lists a {machine}"
        );
    }
    assert!(
        shown["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == node.as_str()),
        "the nodes table shows this node ({node}): {}",
        shown["nodes"]
    );
    // The backfill table: both instruments, all 120 minutes done (the
    // page reads this node's /admin/backfill; the cluster view carries the
    // same per node).
    let backfill = browser
        .wait_for(
            "the backfill table to show both instruments done",
            60,
            "return [...document.querySelectorAll('#backfill tbody tr')].map(r => \
                ({ instrument: r.dataset.instrument, done: +r.dataset.done, total: +r.dataset.total, \
                   left: r.lastChild.textContent }));",
            json!([]),
            |rows| {
                rows.as_array().is_some_and(|rows| {
                    rows.len() == 2
                        && rows
                            .iter()
                            .all(|r| r["done"] == 120 && r["total"] == 120 && r["left"] == "done")
                })
            },
        )
        .await;
    let instruments: Vec<&str> = backfill
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["instrument"].as_str().unwrap())
        .collect();
    assert!(
        instruments.contains(&"Coinbase:BTC-USD") && instruments.contains(&"Kraken:ETH-EUR"),
        "{backfill}"
    );
    let height = browser
        .run(
            "return Math.min(4000, document.documentElement.scrollHeight);",
            json!([]),
        )
        .await;
    browser
        .resize(1400, height.as_i64().unwrap_or(2400).max(900))
        .await;
    browser.screenshot("cluster.png").await;

    // A wrong token: a clear 401 message, and the page stops asking.
    browser.resize(1400, 900).await;
    browser.goto(&format!("{api}/ui/cluster#token=wrong")).await;
    let message = browser
        .wait_for(
            "the 401 message",
            30,
            "const m = document.getElementById('message'); \
             return m.hidden ? '' : m.textContent;",
            json!([]),
            |m| m.as_str().is_some_and(|m| m.contains("401")),
        )
        .await;
    assert!(
        message.as_str().unwrap().contains("refused the token"),
        "{message}"
    );
    browser.screenshot("cluster-401.png").await;

    browser.quit().await;
    p.shutdown().await;
    cluster.shutdown().await;
}
