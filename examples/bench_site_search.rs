//! Measures `GET /admin/v1/sites` for `scripts/bench-site-search`: a named set of listings, each
//! asked for over HTTP with an admin token, one request at a time, and the latency of every answer
//! from sending the request to the last byte of the body.
//!
//! ```text
//! cargo run --release --example bench_site_search -- --base-url http://127.0.0.1:PORT \
//!     --platform-admin FILE --site-manager FILE [--rounds 5] [--pages 20]
//! ```
//!
//! The files hold a client id and a secret, one a line, as `bench_seed seed-sites` writes them.
//! The query set is written for the names `seed-sites` gives: each query runs once to warm up,
//! then `--rounds` times; each listing of the cursor class is paged `--pages` pages deep with
//! `next`, and every page after the first counts in that class. Prints one line per query (its
//! total as the server answered it, and median latency), then p50, p95 and max per class and
//! overall.

use std::collections::BTreeMap;
use std::fs;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;

type Failure = Box<dyn std::error::Error>;

/// The listings measured: class, then query parameters (`limit` is 100 unless given).
const QUERIES: &[(&str, &[(&str, &str)])] = &[
    ("no search", &[]),
    ("no search", &[("limit", "1000")]),
    ("no search", &[("offset", "9900")]),
    // About 12,500 and 33,000 matches spread over the listing order; every key holds "site".
    ("3+ characters, common", &[("q", "coffee")]),
    ("3+ characters, common", &[("q", "store")]),
    ("3+ characters, common", &[("q", "roasters")]),
    ("3+ characters, common", &[("q", "ore")]),
    ("3+ characters, common", &[("q", "site")]),
    // About 12,500 names that start with it, next to each other in the listing order.
    ("3+ characters, common", &[("q", "nordic")]),
    ("3+ characters, common", &[("q", "zürich")]),
    ("3+ characters, rare", &[("q", "12345")]),
    ("3+ characters, rare", &[("q", "tea hou")]),
    ("3+ characters, rare", &[("q", "zürich coffee")]),
    ("3+ characters, rare", &[("q", "Lunar Vinyl Mart")]),
    ("3+ characters, rare", &[("q", "xyzzy")]),
    ("3+ characters, rare", &[("q", KEY_FRAGMENT)]),
    ("1 character", &[("q", "n")]),
    ("1 character", &[("q", "z")]),
    ("1 character", &[("q", "É")]),
    ("1 character", &[("q", "7")]),
    ("1 character", &[("q", "s")]),
    ("2 characters", &[("q", "no")]),
    ("2 characters", &[("q", "zü")]),
    ("2 characters", &[("q", "ca")]),
    ("2 characters", &[("q", "ly")]),
    ("2 characters", &[("q", "si")]),
    ("enabled filter", &[("enabled", "false")]),
    ("enabled filter", &[("enabled", "true"), ("q", "coffee")]),
    ("enabled filter", &[("enabled", "false"), ("q", "coffee")]),
    ("enabled filter", &[("enabled", "false"), ("q", "nordic")]),
    ("enabled filter", &[("enabled", "false"), ("q", "no")]),
    ("enabled filter", &[("enabled", "true"), ("q", "s")]),
];

/// Stands for 8 characters from the middle of a real site key, taken from the first page.
const KEY_FRAGMENT: &str = "<key fragment>";

/// The site manager's listings (5,000 sites spread over the table).
const MANAGER_QUERIES: &[&[(&str, &str)]] = &[
    &[],
    &[("q", "coffee")],
    &[("q", "no")],
    &[("q", "s")],
    &[("enabled", "false"), ("q", "store")],
];

/// Listings paged with the cursor; `true`: as the site manager.
const PAGED: &[(bool, &[(&str, &str)])] = &[
    (false, &[]),
    (false, &[("q", "coffee")]),
    (false, &[("q", "store")]),
    (false, &[("q", "nordic")]),
    (false, &[("q", "n")]),
    (false, &[("enabled", "false")]),
    (true, &[]),
];

const CURSOR_CLASS: &str = "cursor, pages 2 and on";
const MANAGER_CLASS: &str = "site manager";

struct Options {
    base_url: String,
    platform_admin: String,
    site_manager: String,
    rounds: usize,
    pages: usize,
}

fn main() -> ExitCode {
    match Options::parse().and_then(|options| run(&options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench_site_search: {error}");
            ExitCode::FAILURE
        }
    }
}

impl Options {
    fn parse() -> Result<Self, Failure> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut options = Options {
            base_url: String::new(),
            platform_admin: String::new(),
            site_manager: String::new(),
            rounds: 5,
            pages: 20,
        };
        for pair in args.chunks(2) {
            let [flag, value] = pair else {
                return Err(format!("{} needs a value", pair[0]).into());
            };
            let number = || {
                value
                    .parse::<usize>()
                    .map_err(|_| format!("{flag} takes a number, not {value}"))
            };
            match flag.as_str() {
                "--base-url" => options.base_url = value.clone(),
                "--platform-admin" => options.platform_admin = value.clone(),
                "--site-manager" => options.site_manager = value.clone(),
                "--rounds" => options.rounds = number()?,
                "--pages" => options.pages = number()?,
                _ => return Err(format!("unknown flag {flag}").into()),
            }
        }
        if options.base_url.is_empty()
            || options.platform_admin.is_empty()
            || options.site_manager.is_empty()
        {
            return Err("--base-url, --platform-admin and --site-manager are required".into());
        }
        Ok(options)
    }
}

/// One admin's session: its token, and the client that keeps one connection alive.
struct Session<'a> {
    client: &'a Client,
    base_url: &'a str,
    token: String,
}

/// What one answer said.
struct Answer {
    elapsed: Duration,
    body: Value,
}

impl<'a> Session<'a> {
    /// Signs in with the credentials in `file` (client id, then secret).
    fn open(client: &'a Client, base_url: &'a str, file: &str) -> Result<Self, Failure> {
        let text = fs::read_to_string(file).map_err(|error| format!("{file}: {error}"))?;
        let mut lines = text.lines();
        let (Some(client_id), Some(secret)) = (lines.next(), lines.next()) else {
            return Err(format!("{file}: expected a client id and a secret").into());
        };
        let answer: Value = client
            .post(format!("{base_url}/oauth2/token"))
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials"), ("scope", "admin")])
            .send()?
            .error_for_status()?
            .json()?;
        let token = answer["access_token"]
            .as_str()
            .ok_or("no access_token in the token answer")?
            .to_string();
        Ok(Self {
            client,
            base_url,
            token,
        })
    }

    fn list(&self, query: &[(&str, &str)]) -> Result<Answer, Failure> {
        let started = Instant::now();
        let response = self
            .client
            .get(format!("{}/admin/v1/sites", self.base_url))
            .query(query)
            .bearer_auth(&self.token)
            .send()?;
        let status = response.status();
        let text = response.text()?;
        let elapsed = started.elapsed();
        if !status.is_success() {
            return Err(format!("GET /admin/v1/sites {query:?}: {status} {text}").into());
        }
        Ok(Answer {
            elapsed,
            body: serde_json::from_str(&text)?,
        })
    }
}

/// Latencies by class, in the order classes first appear.
#[derive(Default)]
struct Latencies {
    order: Vec<String>,
    by_class: BTreeMap<String, Vec<Duration>>,
}

impl Latencies {
    fn add(&mut self, class: &str, elapsed: Duration) {
        if !self.by_class.contains_key(class) {
            self.order.push(class.to_string());
        }
        self.by_class
            .entry(class.to_string())
            .or_default()
            .push(elapsed);
    }
}

fn run(options: &Options) -> Result<(), Failure> {
    let client = Client::builder().timeout(Duration::from_secs(60)).build()?;
    let platform = Session::open(&client, &options.base_url, &options.platform_admin)?;
    let manager = Session::open(&client, &options.base_url, &options.site_manager)?;
    let first_page = platform.list(&[])?;
    let key = first_page.body["sites"][7]["site_key"]
        .as_str()
        .ok_or("the first page holds fewer than 8 sites")?;
    let fragment = key[9..17].to_string();
    let mut latencies = Latencies::default();
    println!(
        "{:<24} {:<44} {:>9} {:>7} {:>9}",
        "class", "query", "total", "exact", "p50 ms"
    );
    let mut measure = |session: &Session, class: &str, query: &[(&str, &str)]| {
        let query: Vec<(&str, &str)> = query
            .iter()
            .map(|&(name, value)| match value {
                KEY_FRAGMENT => (name, fragment.as_str()),
                _ => (name, value),
            })
            .collect();
        let warm = session.list(&query)?;
        let mut times = Vec::with_capacity(options.rounds);
        for _ in 0..options.rounds {
            let answer = session.list(&query)?;
            latencies.add(class, answer.elapsed);
            times.push(answer.elapsed);
        }
        times.sort_unstable();
        println!(
            "{:<24} {:<44} {:>9} {:>7} {:>9.2}",
            class,
            shown(&query),
            warm.body["total"].to_string(),
            warm.body["total_exact"].to_string(),
            millis(percentile(&times, 50))
        );
        Ok::<_, Failure>(())
    };
    for (class, query) in QUERIES {
        measure(&platform, class, query)?;
    }
    for query in MANAGER_QUERIES {
        measure(&manager, MANAGER_CLASS, query)?;
    }
    for (as_manager, query) in PAGED {
        let session = if *as_manager { &manager } else { &platform };
        for round in 0..=options.rounds {
            let mut cursor = session.list(query)?.body["next"].as_str().map(String::from);
            for _ in 1..options.pages {
                let Some(next) = cursor else { break };
                let mut paged = query.to_vec();
                paged.push(("cursor", &next));
                let answer = session.list(&paged)?;
                // Round 0 warms up.
                if round > 0 {
                    latencies.add(CURSOR_CLASS, answer.elapsed);
                }
                cursor = answer.body["next"].as_str().map(String::from);
            }
        }
        let who = if *as_manager { "site manager " } else { "" };
        println!(
            "{:<24} {who}{} paged {} deep",
            CURSOR_CLASS,
            shown(query),
            options.pages
        );
    }
    report(&latencies);
    Ok(())
}

fn shown(query: &[(&str, &str)]) -> String {
    if query.is_empty() {
        return "(none)".into();
    }
    query
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The nearest-rank percentile of sorted latencies.
fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn report(latencies: &Latencies) {
    println!();
    println!(
        "{:<24} {:>8} {:>9} {:>9} {:>9}",
        "class", "requests", "p50 ms", "p95 ms", "max ms"
    );
    let mut all = Vec::new();
    let line = |class: &str, times: &mut [Duration]| {
        times.sort_unstable();
        let (p50, p95, max) = (
            millis(percentile(times, 50)),
            millis(percentile(times, 95)),
            millis(times[times.len() - 1]),
        );
        println!(
            "{class:<24} {:>8} {p50:>9.2} {p95:>9.2} {max:>9.2}",
            times.len()
        );
    };
    for class in &latencies.order {
        let mut times = latencies.by_class[class].clone();
        all.extend_from_slice(&times);
        line(class, &mut times);
    }
    line("overall", &mut all);
}
