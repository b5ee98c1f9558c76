//! The registry's dashboard (`GET /`): one page that loads nothing from elsewhere, and, driven in a headless
//! Chromium through chromedriver, shows every instance with its weight and share, follows registrations,
//! deregistrations, missed heartbeats and evictions live (no reload), keeps its totals right, shows the
//! registry's strings as text, never as markup, backs off, saying so, when the registry is busy, shows on its
//! first load what happened before (with why each instance left), pages a registry larger than a page,
//! filtered by the registry, asks in the page for the token a registry wants, and lets an operator drain,
//! restore and reweigh an instance and roll rules back with the registry's token, and lists each service's
//! methods, calling them through the registry's gateway when it is one. The browser tests skip when chromedriver or Chromium is missing, unless
//! `RPC_REQUIRE_BROWSER=1`. Real time with the default TTL, on two worker threads so that heartbeats keep their
//! pace while the test waits on the page.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rpc_core::Client;
use rpc_registry::{NewInstance, Registration, RegistrationConfig, RegistryClient, RegistryConfig};
use serde::Deserialize;
use tests::calc::start_calc;
use tests::cluster::{start_instance, start_registry};
use tests::prom::http_get;
use tests::webdriver::{Element, WebDriver, browser_required};

/// The default: an instance without heartbeats goes late after 1.5 s and is evicted at 3 s, and one that
/// heartbeats (every second) has 500 ms of slack before it would look late on a busy machine.
const TTL: Duration = Duration::from_secs(3);

/// How often [`until`] looks at the page.
const POLL: Duration = Duration::from_millis(50);

/// How long the page may take to show what the registry already knows (it hears of changes by long poll).
const SHOWN: Duration = Duration::from_secs(5);

fn config() -> RegistryConfig {
    RegistryConfig {
        ttl: TTL,
        ..RegistryConfig::default()
    }
}

/// One instance row of the page, as the browser renders it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
struct Row {
    service: String,
    address: String,
    state: String,
    weight: String,
    share: String,
    metadata: Vec<String>,
}

/// Reads every instance row of the page in one go (so no row changes under the reading).
const ROWS: &str = "return Array.from(document.querySelectorAll('tr[data-address]'), r => ({
    service: r.dataset.service, address: r.dataset.address, state: r.dataset.state || '',
    weight: r.querySelector('[data-testid=weight]').textContent,
    share: r.querySelector('[data-testid=share]').textContent,
    metadata: Array.from(r.querySelectorAll('.chip'), c => c.textContent)}));";

async fn rows(driver: &WebDriver) -> Vec<Row> {
    serde_json::from_value(driver.execute(ROWS, Vec::new()).await.unwrap()).unwrap()
}

fn row<'a>(rows: &'a [Row], service: &str, address: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.service == service && r.address == address)
}

/// The element with `data-testid` `id`.
async fn testid(driver: &WebDriver, id: &str) -> Element {
    let selector = format!("[data-testid={id}]");
    let element = driver.find(&selector).await.unwrap();
    element.unwrap_or_else(|| panic!("no {selector} on the page"))
}

/// The connection indicator's `data-status`: `live`, `reconnecting` (or `connecting` at first).
async fn status(driver: &WebDriver, connection: &Element) -> Option<String> {
    driver.attribute(connection, "data-status").await.unwrap()
}

/// The text of the element with `data-testid` `id`.
async fn text(driver: &WebDriver, id: &str) -> String {
    driver.text(&testid(driver, id).await).await.unwrap()
}

/// Polls `probe` every [`POLL`] until it returns `Ok`, for at most `limit` (so a bounded number of times);
/// panics with what it last saw if it never does.
async fn until<T>(
    what: &str,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    let most = limit.as_millis() / POLL.as_millis() + 1;
    let mut seen = String::new();
    for _ in 0..most {
        match probe().await {
            Ok(done) => return done,
            Err(now) => seen = now,
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("{what}: not within {limit:?}; last seen: {seen}");
}

/// A headless browser showing the dashboard at `http`, or `None` (the test skips) when no browser is installed
/// and none is required.
async fn open(http: SocketAddr) -> Option<WebDriver> {
    match WebDriver::start().await {
        Ok(driver) => {
            driver.goto(&format!("http://{http}/")).await.unwrap();
            Some(driver)
        }
        Err(e) if e.is_not_installed() && !browser_required() => {
            eprintln!(
                "skipping the browser test: {e} (RPC_REQUIRE_BROWSER=1 makes this a failure)"
            );
            None
        }
        Err(e) => panic!("no headless browser: {e}"),
    }
}

/// Saves a screenshot at `path` and checks that it is a PNG.
async fn screenshot(driver: &WebDriver, path: PathBuf) {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, driver.screenshot().await.unwrap()).unwrap();
    let written = std::fs::read(&path).unwrap();
    assert!(written.starts_with(PNG), "{} is a PNG", path.display());
    eprintln!("screenshot: {} ({} bytes)", path.display(), written.len());
}

fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target")
}

fn instance(service: &str, address: &str, weight: u32, metadata: &[(&str, &str)]) -> NewInstance {
    NewInstance {
        service: service.to_owned(),
        address: address.to_owned(),
        weight,
        metadata: metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// Registers `new` with heartbeats.
async fn register(registry: SocketAddr, new: NewInstance) -> Registration {
    Registration::register(registry, new, RegistrationConfig::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_dashboard_is_one_page_that_loads_nothing_from_elsewhere() {
    let registry = start_registry(config(), 0).await.unwrap();
    let (status, headers, body) = http_get(registry.http, "/").await.unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    let content_type = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str());
    assert_eq!(content_type, Some("text/html; charset=utf-8"));
    assert!(
        body.contains("/v1/overview"),
        "the page follows the overview"
    );
    let lower = body.to_ascii_lowercase();
    for outside in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "url(http",
        "url(\"http",
        "url('http",
        "@import",
        "//cdn",
        "<link",
        " src=",
    ] {
        assert!(!lower.contains(outside), "the page loads {outside}…");
    }
    assert!(
        lower.contains("<style>") && lower.contains("<script>"),
        "its styles and script are inline"
    );
    for markup in [
        "innerhtml",
        "outerhtml",
        "insertadjacenthtml",
        "document.write",
    ] {
        assert!(
            !lower.contains(markup),
            "the page never parses strings as markup: {markup}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_registrations_missed_heartbeats_and_evictions_live() {
    let registry = start_registry(config(), 0).await.unwrap();
    let rpc = registry.addr;
    let calc = [
        ("10.0.1.11:7001", 5, "eu-west-1a", "1.4.2"),
        ("10.0.1.12:7001", 1, "eu-west-1b", "1.4.2"),
        ("10.0.1.13:7001", 1, "eu-west-1c", "1.5.0-rc1"),
    ];
    let mut calc_registrations = Vec::new();
    for (address, weight, zone, version) in calc {
        let meta = [("version", version), ("zone", zone)];
        calc_registrations.push(register(rpc, instance("Calc", address, weight, &meta)).await);
    }
    let mut billing = Vec::new();
    for (address, weight, zone) in [
        ("10.0.2.21:8080", 3, "eu-west-1a"),
        ("10.0.2.22:8080", 2, "eu-west-1b"),
    ] {
        let meta = [("version", "2.0.1"), ("zone", zone)];
        billing.push(register(rpc, instance("Billing", address, weight, &meta)).await);
    }
    let start_where = |weight| start_instance(rpc, weight, RegistrationConfig::default());
    let where_1 = start_where(4).await.unwrap();
    let where_2 = start_where(2).await.unwrap();

    // Every registered instance appears, with its weight and its share of the service's calls.
    let Some(driver) = open(registry.http).await else {
        return;
    };
    let shown = until("the 7 registered instances", SHOWN, async || {
        let rows = rows(&driver).await;
        if rows.len() == 7 {
            Ok(rows)
        } else {
            Err(format!("{rows:?}"))
        }
    })
    .await;
    let expected = [
        ("Calc", "10.0.1.11:7001", "5", "71%"),
        ("Calc", "10.0.1.12:7001", "1", "14%"),
        ("Calc", "10.0.1.13:7001", "1", "14%"),
        ("Billing", "10.0.2.21:8080", "3", "60%"),
        ("Billing", "10.0.2.22:8080", "2", "40%"),
        ("Where", where_1.address.as_str(), "4", "67%"),
        ("Where", where_2.address.as_str(), "2", "33%"),
    ];
    for (service, address, weight, share) in expected {
        let r = row(&shown, service, address)
            .unwrap_or_else(|| panic!("{service} {address} in {shown:?}"));
        assert_eq!(
            (r.weight.as_str(), r.share.as_str(), r.state.as_str()),
            (weight, share, "up"),
            "{r:?}"
        );
    }
    let canary = row(&shown, "Calc", "10.0.1.13:7001").unwrap();
    assert_eq!(canary.metadata, ["version=1.5.0-rc1", "zone=eu-west-1c"]);
    assert_eq!(text(&driver, "total-instances").await, "7");
    assert_eq!(text(&driver, "total-services").await, "3");
    // The store card: this registry keeps its state in memory, alone.
    assert_eq!(text(&driver, "store").await, "memory");
    assert_eq!(text(&driver, "replicas").await, "this process");
    let connection = testid(&driver, "connection").await;
    assert_eq!(status(&driver, &connection).await.as_deref(), Some("live"));
    driver
        .execute("window.loadedOnce = true;", Vec::new())
        .await
        .unwrap();

    // Registered while the page is open: a heartbeating instance, and one registered by hand that never
    // heartbeats. Both appear without a reload.
    let where_3 = start_where(2).await.unwrap();
    let client = RegistryClient::new(Client::lazy_with(rpc, Default::default()).await.unwrap());
    let ghost = instance(
        "Ledger",
        "10.0.3.31:9000",
        1,
        &[("heartbeats", "none"), ("zone", "eu-west-1c")],
    );
    client.register(ghost).await.unwrap().unwrap();
    until("the new instances", SHOWN, async || {
        let rows = rows(&driver).await;
        match (
            row(&rows, "Where", &where_3.address),
            row(&rows, "Ledger", "10.0.3.31:9000"),
        ) {
            (Some(_), Some(_)) => Ok(()),
            _ => Err(format!("{rows:?}")),
        }
    })
    .await;

    // Deregistered: gone at once. Killed (no deregistration): late, then evicted like the ghost.
    calc_registrations
        .pop()
        .unwrap()
        .deregister()
        .await
        .unwrap();
    until("the deregistered instance gone", SHOWN, async || {
        let rows = rows(&driver).await;
        match row(&rows, "Calc", "10.0.1.13:7001") {
            None => Ok(()),
            Some(r) => Err(format!("{r:?}")),
        }
    })
    .await;
    let killed = where_1.address.clone();
    where_1.kill();
    // Meanwhile, every instance that heartbeats stays up on the page, at each look.
    let rows_up = async || {
        let rows = rows(&driver).await;
        let late: Vec<&Row> = rows
            .iter()
            .filter(|r| r.state != "up" && r.service != "Ledger" && r.address != killed)
            .collect();
        assert!(
            late.is_empty(),
            "instances that heartbeat are shown late: {late:?}"
        );
        rows
    };
    until(
        "the ghost and the killed instance late",
        TTL * 2,
        async || {
            let rows = rows_up().await;
            let states = (
                row(&rows, "Ledger", "10.0.3.31:9000"),
                row(&rows, "Where", &killed),
            );
            match states {
                (Some(g), Some(k)) if g.state == "late" && k.state == "late" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let rows_now = rows(&driver).await;
    let calc_now = row(&rows_now, "Calc", "10.0.1.11:7001").unwrap();
    assert_eq!(
        (calc_now.share.as_str(), calc_now.state.as_str()),
        ("83%", "up")
    );
    let docs = std::env::var_os("RPC_DASHBOARD_SCREENSHOT").map(PathBuf::from);
    screenshot(
        &driver,
        docs.unwrap_or_else(|| target_dir().join("dashboard.png")),
    )
    .await;

    until(
        "the ghost and the killed instance evicted",
        TTL * 2,
        async || {
            let rows = rows_up().await;
            match (
                row(&rows, "Ledger", "10.0.3.31:9000"),
                row(&rows, "Where", &killed),
            ) {
                (None, None) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let finally = until("the totals after the evictions", SHOWN, async || {
        let totals = (
            text(&driver, "total-instances").await,
            text(&driver, "total-services").await,
            text(&driver, "total-evictions").await,
        );
        match &totals {
            (i, s, e) if i == "6" && s == "3" && e == "2" => Ok(rows(&driver).await),
            _ => Err(format!("{totals:?}")),
        }
    })
    .await;
    assert_eq!(finally.len(), 6, "{finally:?}");
    assert!(finally.iter().all(|r| r.state == "up"), "{finally:?}");
    let instance_rows = driver.find_all("tr[data-address]").await.unwrap();
    assert_eq!(instance_rows.len(), 6);

    // The log says what happened to each instance, newest first.
    let log = text(&driver, "changes").await;
    for entry in [
        format!("Where {}\nregistered · weight 2", where_3.address),
        String::from("Ledger 10.0.3.31:9000\nregistered · weight 1"),
        String::from("Calc 10.0.1.13:7001\nderegistered"),
        String::from("Ledger 10.0.3.31:9000\nevicted"),
        format!("Where {killed}\nevicted"),
    ] {
        assert!(log.contains(&entry), "the log shows {entry:?}: {log}");
    }
    let kept = driver
        .execute("return window.loadedOnce === true;", Vec::new())
        .await
        .unwrap();
    assert_eq!(
        kept,
        serde_json::Value::Bool(true),
        "the page followed every change without a reload"
    );
    screenshot(&driver, target_dir().join("dashboard-end.png")).await;

    driver.close().await.unwrap();
    drop((calc_registrations, billing, where_2, where_3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_registry_says_so_and_registry_strings_stay_text() {
    let registry = start_registry(config(), 0).await.unwrap();
    let Some(driver) = open(registry.http).await else {
        return;
    };
    until("the empty state", SHOWN, async || {
        let shown = text(&driver, "empty").await;
        if shown.contains("No services registered") {
            Ok(())
        } else {
            Err(shown)
        }
    })
    .await;
    assert_eq!(text(&driver, "total-instances").await, "0");

    let name = "<img src=x onerror=\"document.title='pwned'\">";
    let address = "<b>10.0.0.1:1</b>";
    let meta = [("<em>k</em>", "<script>document.title='pwned'</script>")];
    let _hostile = register(registry.addr, instance(name, address, 3, &meta)).await;
    let shown = until("the hostile instance", SHOWN, async || {
        let rows = rows(&driver).await;
        rows.first().cloned().ok_or_else(|| String::from("no rows"))
    })
    .await;
    assert_eq!(
        (shown.service.as_str(), shown.address.as_str()),
        (name, address)
    );
    assert_eq!(shown.metadata, [format!("{}={}", meta[0].0, meta[0].1)]);
    let heading = driver
        .find("[data-service-card] h2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(driver.text(&heading).await.unwrap(), name);
    let markup = driver
        .execute(
            "return [document.querySelectorAll('img, em').length, document.querySelectorAll('#services b').length,
                     document.scripts.length, document.title];",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        markup[0], 0,
        "no element was made from the registry's strings: {markup}"
    );
    assert_eq!(markup[1], 0, "{markup}");
    assert_eq!(markup[2], 1, "only the page's own script: {markup}");
    assert!(
        !markup[3].as_str().unwrap_or_default().contains("pwned"),
        "{markup}"
    );
    let empty = driver.find("[data-testid=empty]").await.unwrap().unwrap();
    assert_eq!(
        driver.attribute(&empty, "hidden").await.unwrap().as_deref(),
        Some("true")
    );
    driver.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_registry_makes_the_page_back_off_and_say_so() {
    // No long poll may wait: the first overview (which does not wait) is served, every later poll is refused.
    let busy = RegistryConfig {
        max_http_watchers: 0,
        ..config()
    };
    let registry = start_registry(busy, 0).await.unwrap();
    let _calc = register(registry.addr, instance("Calc", "10.0.1.11:7001", 5, &[])).await;
    let Some(driver) = open(registry.http).await else {
        return;
    };
    let connection = testid(&driver, "connection").await;
    let said = until("the page backing off", SHOWN, async || {
        match status(&driver, &connection).await.as_deref() {
            Some("reconnecting") => Ok(driver.text(&connection).await.unwrap()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        said.starts_with("registry busy, retry in "),
        "it waits as Retry-After says: {said}"
    );
    let kept = rows(&driver).await;
    assert_eq!(kept.len(), 1, "it keeps showing what it knew: {kept:?}");
    assert_eq!(
        (kept[0].service.as_str(), kept[0].weight.as_str()),
        ("Calc", "5")
    );
    driver.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_what_happened_before_it_opened_with_why_each_instance_left() {
    let registry = start_registry(config(), 0).await.unwrap();
    let rpc = registry.addr;
    // Before any page is open: one instance stays, one deregisters, one never heartbeats and is evicted.
    let _staying = register(rpc, instance("Calc", "10.0.1.11:7001", 5, &[])).await;
    let leaving = register(rpc, instance("Calc", "10.0.1.12:7001", 1, &[])).await;
    leaving.deregister().await.unwrap();
    let client = RegistryClient::new(Client::lazy_with(rpc, Default::default()).await.unwrap());
    let ghost = instance("Ledger", "10.0.3.31:9000", 1, &[]);
    client.register(ghost).await.unwrap().unwrap();
    until("the ghost evicted", TTL * 3, async || {
        let left = client.instances("Ledger".into()).await.unwrap();
        match left.instances.is_empty() {
            true => Ok(()),
            false => Err(format!("{left:?}")),
        }
    })
    .await;

    let Some(driver) = open(registry.http).await else {
        return;
    };
    let log = until("the registry's history", SHOWN, async || {
        let log = text(&driver, "changes").await;
        match log.contains("evicted") {
            true => Ok(log),
            false => Err(log),
        }
    })
    .await;
    let at = |entry: &str| {
        log.find(entry)
            .unwrap_or_else(|| panic!("the log shows {entry:?}: {log}"))
    };
    // Newest first, each with why the instance left.
    let evicted = at("Ledger 10.0.3.31:9000\nevicted: no heartbeat within the TTL");
    let registered = at("Ledger 10.0.3.31:9000\nregistered · weight 1");
    let deregistered = at("Calc 10.0.1.12:7001\nderegistered");
    let first = at("Calc 10.0.1.11:7001\nregistered · weight 5");
    assert!(
        evicted < registered && registered < deregistered && deregistered < first,
        "{log}"
    );
    let shown = rows(&driver).await;
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0].address, "10.0.1.11:7001");
    driver.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_larger_than_a_page_is_paged_and_filtered_by_the_registry() {
    // A long TTL: the instances registered by hand never heartbeat, and stay up for the whole test.
    let long = RegistryConfig {
        ttl: Duration::from_secs(120),
        ..config()
    };
    let registry = start_registry(long, 0).await.unwrap();
    let client = RegistryClient::new(
        Client::lazy_with(registry.addr, Default::default())
            .await
            .unwrap(),
    );
    // 600 instances in two services: more than the page's 500.
    for i in 0..600u32 {
        let (n, address) = (i.to_string(), format!("10.0.{}.{}:7000", i / 256, i % 256));
        let new = instance(&format!("S{}", i / 300), &address, 1, &[("n", &n)]);
        client.register(new).await.unwrap().unwrap();
    }
    let Some(driver) = open(registry.http).await else {
        return;
    };
    let pager_shown = "return getComputedStyle(document.getElementById('pager')).display;";
    // The pager's text, shown or not.
    let range = "return document.getElementById('range').textContent;";
    let page = async |rows_wanted: usize, range_wanted: &str| {
        until(range_wanted, SHOWN, async || {
            let shown = rows(&driver).await;
            let said = driver.execute(range, Vec::new()).await.unwrap();
            match shown.len() == rows_wanted && said == range_wanted {
                true => Ok(shown),
                false => Err(format!("{} rows, {said:?}", shown.len())),
            }
        })
        .await
    };
    let first = page(500, "1–500 of 600 instances").await;
    let display = driver.execute(pager_shown, Vec::new()).await.unwrap();
    assert_eq!(display, "flex", "the pager shows");
    assert_eq!(text(&driver, "total-instances").await, "600");
    assert_eq!(
        first.iter().filter(|r| r.service == "S1").count(),
        200,
        "S0 whole, then S1's first 200"
    );
    let click = |id: &str| format!("document.getElementById('{id}').click();");
    driver.execute(&click("next"), Vec::new()).await.unwrap();
    let second = page(100, "501–600 of 600 instances").await;
    assert!(second.iter().all(|r| r.service == "S1"), "{second:?}");
    assert!(
        second.iter().all(|r| !first.contains(r)),
        "the second page holds the rest"
    );
    driver.execute(&click("prev"), Vec::new()).await.unwrap();
    page(500, "1–500 of 600 instances").await;

    // A filter goes to the registry: the one instance it matches is on the next page, and shows.
    let set_filter = "const input = document.getElementById('filter');
        input.value = 'n=599'; input.dispatchEvent(new Event('input'));";
    driver.execute(set_filter, Vec::new()).await.unwrap();
    let found = page(1, "1–1 of 1 instance").await;
    assert_eq!(
        (found[0].service.as_str(), found[0].address.as_str()),
        ("S1", "10.0.2.87:7000")
    );
    let display = driver.execute(pager_shown, Vec::new()).await.unwrap();
    assert_eq!(display, "none", "one page needs no pager");
    driver.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_instance_shows_the_load_it_reports_and_its_share_of_the_traffic() {
    use rpc_core::server::layer::LoadMeter;
    use tests::cluster::WhereClient;

    let registry = start_registry(config(), 0).await.unwrap();
    let Some(driver) = open(registry.http).await else {
        return;
    };
    // Two servers that report their load, called 30 and 10 times, and one that reports nothing.
    let mut reporting = Vec::new();
    for calls in [30, 10] {
        let config = RegistrationConfig {
            load: Some(LoadMeter::new()),
            ..RegistrationConfig::default()
        };
        let instance = start_instance(registry.addr, 1, config).await.unwrap();
        let address = instance.address.clone();
        let client = WhereClient::connect(address.as_str()).await.unwrap();
        for n in 0..calls {
            client.serve(n).await.unwrap();
        }
        reporting.push((address, instance));
    }
    let _silent = register(registry.addr, instance("Where", "127.0.0.1:9", 1, &[])).await;
    let load_of = |address: &str| {
        format!(
            "return (r => r ? r.querySelector('[data-testid=load]').textContent : null)(document.querySelector('tr[data-address=\"{address}\"]'));"
        )
    };
    // A share of the traffic: the number before `% of traffic`.
    let share = |text: &str| -> Option<u32> {
        let before = text.split("% of traffic").next()?;
        before.rsplit('(').next()?.parse().ok()
    };
    // Heartbeats (every second at this TTL) bring the reports, then the page's long poll the change.
    let shares = until("both reported loads", SHOWN + TTL, async || {
        let mut shares = Vec::new();
        for (address, _) in &reporting {
            let shown = driver.execute(&load_of(address), Vec::new()).await.unwrap();
            let text = shown.as_str().unwrap_or_default().to_owned();
            if !text.contains("% of traffic) · 0.0% err · p99 ") {
                return Err(text);
            }
            shares.push(share(&text).ok_or(text)?);
        }
        // Both reports of the calls must have come: the shares then split about 3 to 1.
        if shares[1] == 0 {
            return Err(format!("{shares:?}"));
        }
        Ok(shares)
    })
    .await;
    // Windows of the two reports may differ by a heartbeat: the share is about 75%, not exactly.
    assert!((50..=90).contains(&shares[0]), "30 of 40 calls: {shares:?}");
    assert!((99..=101).contains(&(shares[0] + shares[1])), "{shares:?}");
    let silent = driver
        .execute(&load_of("127.0.0.1:9"), Vec::new())
        .await
        .unwrap();
    assert_eq!(silent.as_str(), Some("–"), "no report, no load");
    driver.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_shows_its_rules_in_force_and_the_diff_of_their_last_change() {
    let registry = start_registry(config(), 0).await.unwrap();
    let admin = RegistryClient::new(Client::connect(registry.addr).await.unwrap());
    for route in ["first-route", "second-route"] {
        let rules = format!(
            r#"{{"service": "Calc", "routes": [{{"name": "{route}", "to": [{{"subset": "version=v1", "weight": 1}}]}}]}}"#
        );
        admin.apply_rules(rules).await.unwrap().unwrap();
    }
    let _calc = register(registry.addr, instance("Calc", "127.0.0.1:7001", 1, &[])).await;
    let _plain = register(registry.addr, instance("Billing", "127.0.0.1:7002", 1, &[])).await;
    let Some(driver) = open(registry.http).await else {
        return;
    };
    let rules_of = |service: &str| {
        format!(
            "return (c => c ? [c.querySelector('[data-testid=rules-summary]').textContent, c.querySelector('[data-testid=rules] pre').textContent] : null)(document.querySelector('[data-service-card=\"{service}\"]'));"
        )
    };
    let shown = until("the rules of Calc", SHOWN, async || {
        let shown = driver.execute(&rules_of("Calc"), Vec::new()).await.unwrap();
        match shown[0].as_str() {
            Some(summary) if summary.starts_with("rules revision 2 (apply, ") => Ok(shown),
            _ => Err(shown.to_string()),
        }
    })
    .await;
    let summary = shown[0].as_str().unwrap();
    assert!(summary.ends_with(" · changes from revision 1"), "{summary}");
    let diff = shown[1].as_str().unwrap();
    assert!(
        diff.lines()
            .any(|l| l.starts_with("- ") && l.contains("first-route")),
        "{diff}"
    );
    assert!(
        diff.lines()
            .any(|l| l.starts_with("+ ") && l.contains("second-route")),
        "{diff}"
    );
    assert!(
        diff.lines()
            .any(|l| l.starts_with("  ") && l.contains("\"service\": \"Calc\"")),
        "{diff}"
    );
    let billing = driver
        .execute(&rules_of("Billing"), Vec::new())
        .await
        .unwrap();
    assert_eq!(billing[0].as_str(), Some("no rules"));
    driver.close().await.unwrap();
}

/// Runs `script` (which may use `arguments`) on the page and returns what it returns.
async fn run(driver: &WebDriver, script: &str) -> serde_json::Value {
    driver.execute(script, Vec::new()).await.unwrap()
}

/// Types `token` into the page's credential form and submits it, once the form asks for one saying `why`.
async fn give_token(driver: &WebDriver, why: &str, token: &str) {
    until("the page asks for a token", SHOWN, async || {
        let asked = run(driver, "return document.getElementById('credential').hidden ? null : document.getElementById('credential-why').textContent;").await;
        match asked.as_str() {
            Some(text) if text.contains(why) => Ok(()),
            _ => Err(asked.to_string()),
        }
    })
    .await;
    let script = format!(
        "document.getElementById('credential-token').value = {}; document.getElementById('credential').requestSubmit();",
        serde_json::Value::from(token)
    );
    run(driver, &script).await;
}

/// The weight clients see of the instance of `Calc` at `address`, and its own, as the registry says.
async fn weights(admin: &RegistryClient, address: &str) -> Option<(u32, u32)> {
    let reports = admin.report(Some(String::from("Calc"))).await.unwrap();
    let service = reports.into_iter().next()?;
    let instance = service
        .instances
        .into_iter()
        .find(|i| i.status.instance.address == address)?;
    Some((instance.status.instance.weight, instance.registered_weight))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_drains_restores_and_reweighs_instances_and_rolls_rules_back_from_the_page() {
    const TOKEN: &str = "dashboard-admin-token";
    let config = RegistryConfig {
        token: Some(TOKEN.to_owned()),
        ..config()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let admin = RegistryClient::new(Client::connect(registry.addr).await.unwrap()).with_metadata(
        rpc_core::Metadata::from_pairs([("authorization", format!("Bearer {TOKEN}"))]).unwrap(),
    );
    for route in ["first-route", "second-route"] {
        let rules = format!(
            r#"{{"service": "Calc", "routes": [{{"name": "{route}", "to": [{{"subset": "version=v1", "weight": 1}}]}}]}}"#
        );
        admin.apply_rules(rules).await.unwrap().unwrap();
    }
    let registration = RegistrationConfig {
        token: Some(TOKEN.to_owned()),
        ..RegistrationConfig::default()
    };
    let mut held = Vec::new();
    for (address, weight) in [("127.0.0.1:7001", 5), ("127.0.0.1:7002", 1)] {
        let new = instance("Calc", address, weight, &[]);
        held.push(
            Registration::register(registry.addr, new, registration.clone())
                .await
                .unwrap(),
        );
    }
    let Some(driver) = open(registry.http).await else {
        return;
    };
    let row = |part: &str| {
        format!(
            "return (r => r ? r.querySelector('{part}').textContent : null)(document.querySelector('tr[data-address=\"127.0.0.1:7001\"]'));"
        )
    };
    until("the instance's row", SHOWN, async || {
        let weight = run(&driver, &row("[data-testid=weight]")).await;
        (weight == "5").then_some(()).ok_or(weight.to_string())
    })
    .await;

    // Drain: the registry wants its token, which the page asks for; a wrong one is refused and asked again.
    run(&driver, "document.querySelector('tr[data-address=\"127.0.0.1:7001\"] [data-testid=drain]').click();").await;
    give_token(
        &driver,
        "needs the registry's own token",
        "not-the-admin-token",
    )
    .await;
    give_token(&driver, "That token was refused", TOKEN).await;
    until("the drain reaches the registry", SHOWN, async || {
        let now = weights(&admin, "127.0.0.1:7001").await;
        (now == Some((0, 5)))
            .then_some(())
            .ok_or(format!("{now:?}"))
    })
    .await;
    until("the page shows the drain", SHOWN, async || {
        let shown = [
            run(&driver, &row("[data-testid=weight]")).await,
            run(&driver, &row("[data-testid=own-weight]")).await,
            run(&driver, &row("[data-testid=drain]")).await,
        ];
        (shown == ["0", "drained (own 5)", "restore"])
            .then_some(())
            .ok_or(format!("{shown:?}"))
    })
    .await;
    let notice = text(&driver, "notice").await;
    assert_eq!(notice, "drained Calc 127.0.0.1:7001: no client picks it");
    let urls = run(
        &driver,
        "return [location.href].concat(performance.getEntriesByType('resource').map(e => e.name));",
    )
    .await;
    let urls: Vec<String> = serde_json::from_value(urls).unwrap();
    assert!(urls.iter().any(|u| u.contains("/weights")), "{urls:?}");
    assert!(
        urls.iter().all(|u| !u.contains(TOKEN)),
        "no credential in any URL the page used: {urls:?}"
    );

    // Restore, then a weight of 3, with the token the tab keeps.
    run(&driver, "document.querySelector('tr[data-address=\"127.0.0.1:7001\"] [data-testid=drain]').click();").await;
    until("the restore reaches the registry", SHOWN, async || {
        let now = weights(&admin, "127.0.0.1:7001").await;
        (now == Some((5, 5)))
            .then_some(())
            .ok_or(format!("{now:?}"))
    })
    .await;
    run(
        &driver,
        "const r = document.querySelector('tr[data-address=\"127.0.0.1:7001\"]'); r.querySelector('[data-testid=weight-input]').value = '3'; r.querySelector('form').requestSubmit();",
    )
    .await;
    until("the new weight reaches the registry", SHOWN, async || {
        let now = weights(&admin, "127.0.0.1:7001").await;
        (now == Some((3, 5)))
            .then_some(())
            .ok_or(format!("{now:?}"))
    })
    .await;
    until("the page shows the new weight", SHOWN, async || {
        let shown = run(&driver, &row("[data-testid=own-weight]")).await;
        (shown == "own 5").then_some(()).ok_or(shown.to_string())
    })
    .await;

    // Roll the rules back to the revision before.
    let rollback = "return (b => b && !b.hidden ? b.textContent : null)(document.querySelector('[data-service-card=\"Calc\"] [data-testid=rollback]'));";
    until("the rollback button", SHOWN, async || {
        let shown = run(&driver, rollback).await;
        (shown == "roll back to revision 1")
            .then_some(())
            .ok_or(shown.to_string())
    })
    .await;
    run(
        &driver,
        "document.querySelector('[data-service-card=\"Calc\"] [data-testid=rollback]').click();",
    )
    .await;
    until("the rollback reaches the registry", SHOWN, async || {
        let current = admin.rules(String::from("Calc")).await.unwrap();
        let current = current.map(|r| (r.revision, r.origin));
        (current == Some((3, String::from("rollback to 1"))))
            .then_some(())
            .ok_or(format!("{current:?}"))
    })
    .await;
    until("the page shows the rules rolled back", SHOWN, async || {
        let shown = text(&driver, "notice").await;
        (shown == "rolled the rules of Calc back to revision 1, as revision 3")
            .then_some(())
            .ok_or(shown)
    })
    .await;
    screenshot(&driver, target_dir().join("dashboard-actions.png")).await;
    driver.close().await.unwrap();
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_whose_reads_need_a_credential_asks_for_it_in_the_page() {
    const READER: &str = "a-reader-token";
    let credentials = rpc_registry::Credentials::from_json(
        &format!(r#"{{"readers": {{"tokens": ["{READER}"]}}}}"#),
        "test",
    )
    .unwrap();
    let config = RegistryConfig {
        credentials,
        token: Some(String::from("dashboard-admin-token")),
        ..config()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let registration = RegistrationConfig {
        token: Some(String::from("dashboard-admin-token")),
        ..RegistrationConfig::default()
    };
    let _calc = Registration::register(
        registry.addr,
        instance("Calc", "127.0.0.1:7001", 2, &[]),
        registration,
    )
    .await
    .unwrap();
    let Some(driver) = open(registry.http).await else {
        return;
    };
    give_token(
        &driver,
        "This registry needs a token to read it.",
        "wrong-reader",
    )
    .await;
    give_token(&driver, "This registry needs a token to read it.", READER).await;
    until(
        "the instances, once read with the token",
        SHOWN,
        async || {
            let rows = rows(&driver).await;
            match row(&rows, "Calc", "127.0.0.1:7001") {
                Some(r) if r.weight == "2" => Ok(()),
                _ => Err(format!("{rows:?}")),
            }
        },
    )
    .await;
    let connection = testid(&driver, "connection").await;
    assert_eq!(status(&driver, &connection).await.as_deref(), Some("live"));
    driver.close().await.unwrap();
}

/// The signatures of the methods the page lists for `service`.
fn signatures_of(service: &str) -> String {
    format!(
        "return Array.from(document.querySelectorAll('[data-service-card=\"{service}\"] [data-testid=signature]'), e => e.textContent);"
    )
}

/// Fills the form of `Calc.div` with `a` and `b`, submits it, and waits until its answer reads `expected`.
async fn divide(driver: &WebDriver, a: &str, b: &str, expected: &str) -> String {
    let form = "document.querySelector('[data-service-card=\"Calc\"] [data-method=div] [data-testid=call-form]')";
    run(
        driver,
        &format!(
            "const f = {form}; f.querySelector('[data-arg=a]').value = '{a}'; f.querySelector('[data-arg=b]').value = '{b}'; f.requestSubmit();"
        ),
    )
    .await;
    let result = "return (p => p && !p.hidden ? p.textContent : null)(document.querySelector('[data-service-card=\"Calc\"] [data-method=div] [data-testid=call-result]'));";
    until(&format!("div({a}, {b}) answered"), SHOWN, async || {
        let shown = run(driver, result).await;
        match shown.as_str() {
            Some(text) if text.contains(expected) => Ok(text.to_owned()),
            _ => Err(shown.to_string()),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_lists_its_methods_and_calls_them_through_the_gateway() {
    let config = RegistryConfig {
        gateway: true,
        ..config()
    };
    let registry = start_registry(config, 0).await.unwrap();
    let calc = start_calc(registry.addr, 1, RegistrationConfig::default())
        .await
        .unwrap();
    let Some(driver) = open(registry.http).await else {
        return;
    };
    let methods = "document.querySelector('[data-service-card=\"Calc\"] [data-testid=methods]')";
    until("Calc's card", SHOWN, async || {
        let found = run(&driver, &format!("return !!{methods};")).await;
        (found == true).then_some(()).ok_or(found.to_string())
    })
    .await;
    // Opened, the list asks the registry for the methods.
    run(&driver, &format!("{methods}.open = true;")).await;
    until("Calc's methods", SHOWN, async || {
        let shown = run(&driver, &signatures_of("Calc")).await;
        let expected = serde_json::json!([
            "add(a: i64, b: i64) -> Answer",
            "div(a: i64, b: i64) -> Result<Answer, CalcError>"
        ]);
        (shown == expected).then_some(()).ok_or(shown.to_string())
    })
    .await;

    let answer = divide(&driver, "6", "3", "HTTP 200").await;
    assert!(answer.contains("\"value\": 2"), "{answer}");
    assert!(answer.contains(&calc.address), "{answer}");
    let refused = divide(&driver, "1", "0", "HTTP 422").await;
    assert!(refused.contains("\"error\": \"CalcError\""), "{refused}");
    assert!(refused.contains("DivisionByZero"), "{refused}");
    screenshot(&driver, target_dir().join("dashboard-methods.png")).await;

    // A registry that is not a gateway lists the methods, and offers no form to call them.
    let plain = start_registry(config_without_gateway(), 0).await.unwrap();
    let _other = start_calc(plain.addr, 1, RegistrationConfig::default())
        .await
        .unwrap();
    driver
        .goto(&format!("http://{}/", plain.http))
        .await
        .unwrap();
    until("Calc's card", SHOWN, async || {
        let found = run(&driver, &format!("return !!{methods};")).await;
        (found == true).then_some(()).ok_or(found.to_string())
    })
    .await;
    run(&driver, &format!("{methods}.open = true;")).await;
    until("Calc's methods", SHOWN, async || {
        let shown = run(&driver, &signatures_of("Calc")).await;
        (shown.as_array().is_some_and(|s| s.len() == 2))
            .then_some(())
            .ok_or(shown.to_string())
    })
    .await;
    let forms = run(
        &driver,
        "return Array.from(document.querySelectorAll('[data-testid=call-form]'), f => f.hidden);",
    )
    .await;
    assert_eq!(
        forms,
        serde_json::json!([true, true]),
        "no call without the gateway"
    );
    driver.close().await.unwrap();
}

fn config_without_gateway() -> RegistryConfig {
    config()
}
