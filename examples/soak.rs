//! The load generator and judge of `scripts/soak` (docs/performance.md, "Soak"): a steady mixed
//! load against a running server for a fixed time, every answer checked, while the server's memory
//! and database connections are sampled. It prints a table and exits non-zero on any unexpected
//! answer, on more database connections than the pool allows, or on memory still growing after the
//! warm-up. A soak is about duration, not saturation: requests are paced to `--rate` in total.
//!
//! ```text
//! cargo run --release --example soak -- --url http://127.0.0.1:PORT --pid SERVER_PID --seed DIR \
//!     --minutes 10 [--rate 200] [--pool-size 10] (--sqlite-file PATH | --postgres ADMIN_URL DATABASE)
//! ```
//!
//! DIR holds what `scripts/soak` created with the CLI: `sites.jsonl` (one `site create --json`
//! answer a line), `resource_server.json` and `admin.json` (a platform admin). The load:
//! - integrators (40% of the requests, 3 threads): `/oauth2/token` for their sites, which must answer
//!   the site's current primary token; one request in 20 is `/oauth2/invalidate_token` instead, and
//!   the next token request must mint a new value;
//! - resource servers (50%, 3 threads): `/oauth2/introspect` of current tokens (`active: true`, with
//!   the site and the kind), of invalidated or replaced values (exactly `{"active":false}`) and of a
//!   fixed set of well-formed values that were never stored (fixed, so that the cache of unknown
//!   tokens, bounded by `--cache-capacity`, does not look like a leak in a 10-minute run);
//! - a platform admin (10%, 1 thread): creates non-primary tokens until a site holds nine (from
//!   then on `409 token_limit_reached` is the expected answer), regenerates, invalidates and
//!   validates them, and gets a new admin token every 200 requests.
//!
//! Every request about a site's current tokens is made under that site's lock, so the expected
//! answer is known exactly (a value replaced or invalidated for good needs no lock). Token values
//! and credentials are never printed.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{json, Value};
use tokenwarden::crypto;
use tokenwarden::domain::token::{self, SecretKind};

type Failure = Box<dyn std::error::Error>;

/// Shares of the total rate: integrators, resource servers, admin (thread counts below).
const INTEGRATOR_SHARE: f64 = 0.4;
const INTROSPECTOR_SHARE: f64 = 0.5;
const ADMIN_SHARE: f64 = 0.1;
const INTEGRATOR_THREADS: usize = 3;
const INTROSPECTOR_THREADS: usize = 3;
/// Non-primary tokens a site may hold (docs/admin.md, section 3).
const SECONDARY_LIMIT: usize = 9;
/// Unknown values cycled through by the resource servers.
const UNKNOWN_VALUES: usize = 1000;
/// Replaced or invalidated values kept for introspection: the most recent ones.
const DEAD_VALUES_KEPT: usize = 1000;
/// Admin requests between two admin tokens (well within their one-hour lifetime).
const ADMIN_TOKEN_EVERY: u64 = 200;
/// Unexpected answers printed in full detail; the rest are only counted.
const ERRORS_PRINTED: u64 = 30;
/// Memory judgement: the median RSS of the last third of the post-warm-up samples may exceed the
/// first third's by this fraction plus this many KiB (docs/performance.md, "Soak", says why).
const RSS_TOLERANCE_FRACTION: f64 = 0.10;
const RSS_TOLERANCE_KIB: u64 = 4 * 1024;

fn main() -> ExitCode {
    match Options::parse(std::env::args().skip(1).collect()).and_then(run) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("soak: {error}");
            ExitCode::from(2)
        }
    }
}

/// Where the server's database connections can be counted from outside the server.
enum Database {
    /// Open file descriptors of the server process on the database file.
    Sqlite(PathBuf),
    /// Backends of the database in `pg_stat_activity`, asked through the admin URL.
    Postgres { admin_url: String, name: String },
}

struct Options {
    url: String,
    pid: u32,
    seed: PathBuf,
    duration: Duration,
    rate: f64,
    pool_size: u32,
    database: Database,
}

impl Options {
    fn parse(args: Vec<String>) -> Result<Self, Failure> {
        let (mut url, mut pid, mut seed, mut minutes, mut database) =
            (None, None, None, None, None);
        let (mut rate, mut pool_size) = (200.0, 10);
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                "--url" => url = Some(value()?),
                "--pid" => pid = Some(value()?.parse()?),
                "--seed" => seed = Some(PathBuf::from(value()?)),
                "--minutes" => minutes = Some(value()?.parse::<f64>()?),
                "--rate" => rate = value()?.parse()?,
                "--pool-size" => pool_size = value()?.parse()?,
                "--sqlite-file" => database = Some(Database::Sqlite(fs::canonicalize(value()?)?)),
                "--postgres" => {
                    let admin_url = value()?;
                    let name = value()?;
                    database = Some(Database::Postgres { admin_url, name });
                }
                _ => return Err(format!("unknown argument {flag}").into()),
            }
        }
        let minutes = minutes.ok_or("--minutes is required")?;
        if !(minutes > 0.0 && rate >= 10.0) {
            return Err("--minutes must be positive and --rate at least 10".into());
        }
        Ok(Options {
            url: url.ok_or("--url is required")?,
            pid: pid.ok_or("--pid is required")?,
            seed: seed.ok_or("--seed is required")?,
            duration: Duration::from_secs_f64(minutes * 60.0),
            rate,
            pool_size,
            database: database.ok_or("--sqlite-file or --postgres is required")?,
        })
    }
}

/// A small xorshift generator: the choice of the next request needs no cryptographic quality.
struct Rng(u64);

impl Rng {
    fn new() -> Result<Self, Failure> {
        Ok(Rng(u64::from_le_bytes(crypto::random_bytes()?) | 1))
    }

    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound.max(1) as u64) as usize
    }
}

/// Spaces a thread's requests evenly; after a stall it does not burst to catch up.
struct Pacer {
    next: Instant,
    period: Duration,
}

impl Pacer {
    fn new(rate: f64) -> Self {
        Pacer {
            next: Instant::now(),
            period: Duration::from_secs_f64(1.0 / rate),
        }
    }

    fn wait(&mut self) {
        let now = Instant::now();
        if self.next > now {
            thread::sleep(self.next - now);
        } else if now - self.next > Duration::from_secs(1) {
            self.next = now;
        }
        self.next += self.period;
    }
}

struct Secondary {
    id: u64,
    value: String,
    active: bool,
}

struct SiteState {
    key: String,
    auth_key: String,
    primary: Option<String>,
    /// The value invalidated last, which the next mint must not hand out again.
    previous: Option<String>,
    secondaries: Vec<Secondary>,
    /// Set after an unexpected admin answer: the model of this site's tokens may be wrong, so
    /// the admin leaves it alone (the error is already counted).
    admin_unsure: bool,
}

/// Requests and unexpected answers per kind of request.
#[derive(Default)]
struct Tally {
    counts: Mutex<BTreeMap<&'static str, (u64, u64)>>,
    errors: AtomicU64,
}

impl Tally {
    fn entry(&self) -> MutexGuard<'_, BTreeMap<&'static str, (u64, u64)>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ok(&self, kind: &'static str) {
        self.entry().entry(kind).or_default().0 += 1;
    }

    fn error(&self, kind: &'static str, detail: String) {
        {
            let mut counts = self.entry();
            let entry = counts.entry(kind).or_default();
            entry.0 += 1;
            entry.1 += 1;
        }
        let seen = self.errors.fetch_add(1, Ordering::AcqRel);
        if seen < ERRORS_PRINTED {
            eprintln!("soak: ERROR {kind}: {detail}");
        } else if seen == ERRORS_PRINTED {
            eprintln!("soak: further errors are counted, not printed");
        }
    }

    fn total(&self) -> (u64, u64) {
        self.entry()
            .values()
            .fold((0, 0), |(r, e), (requests, errors)| {
                (r + requests, e + errors)
            })
    }
}

struct Shared {
    base: String,
    sites: Vec<Mutex<SiteState>>,
    rs_id: String,
    rs_secret: String,
    admin_id: String,
    admin_secret: String,
    dead: Mutex<VecDeque<String>>,
    unknown: Vec<String>,
    stop: AtomicBool,
    tally: Tally,
}

/// One answer: its status and its JSON body (`Null` when the body is not JSON).
struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    /// What to print about an unexpected answer: the status and the error fields, never a value.
    fn describe(&self) -> String {
        let field = |name: &str| self.body.get(name).map(Value::to_string);
        match (field("error"), field("error_description")) {
            (Some(error), Some(description)) => {
                format!("status {} {error}: {description}", self.status)
            }
            (Some(error), None) => format!("status {} {error}", self.status),
            _ => format!("status {}", self.status),
        }
    }

    fn str(&self, name: &str) -> Option<&str> {
        self.body.get(name).and_then(Value::as_str)
    }
}

impl Shared {
    fn lock_site(&self, index: usize) -> MutexGuard<'_, SiteState> {
        self.sites[index].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bury(&self, value: String) {
        let mut dead = self.dead.lock().unwrap_or_else(|p| p.into_inner());
        if dead.len() == DEAD_VALUES_KEPT {
            dead.pop_front();
        }
        dead.push_back(value);
    }

    fn some_dead(&self, rng: &mut Rng) -> Option<String> {
        let dead = self.dead.lock().unwrap_or_else(|p| p.into_inner());
        dead.get(rng.below(dead.len())).cloned()
    }

    /// Sends a request; a transport failure is counted as an error of `kind` and gives `None`.
    fn send(&self, kind: &'static str, request: RequestBuilder) -> Option<Answer> {
        match request.send() {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response
                    .bytes()
                    .ok()
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                    .unwrap_or(Value::Null);
                Some(Answer { status, body })
            }
            Err(error) => {
                // reqwest's message names the URL and the cause, never a header or a body.
                self.tally.error(kind, format!("request failed: {error}"));
                None
            }
        }
    }

    fn form(
        &self,
        client: &Client,
        path: &str,
        user: &str,
        password: &str,
        body: String,
    ) -> RequestBuilder {
        client
            .post(format!("{}{path}", self.base))
            .basic_auth(user, Some(password))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
    }

    /// Counts the answer of `kind` as expected when `check` finds nothing wrong with it.
    fn judge(&self, kind: &'static str, answer: &Answer, check: Result<(), String>) -> bool {
        match check {
            Ok(()) => {
                self.tally.ok(kind);
                true
            }
            Err(problem) => {
                self.tally
                    .error(kind, format!("{problem} ({})", answer.describe()));
                false
            }
        }
    }
}

fn expect_status(answer: &Answer, status: u16) -> Result<(), String> {
    if answer.status == status {
        Ok(())
    } else {
        Err(format!("expected status {status}"))
    }
}

fn run(options: Options) -> Result<bool, Failure> {
    let shared = Arc::new(load_seed(&options)?);
    let sites = shared.sites.len();
    println!(
        "soak: {sites} sites, {:.0} requests/s for {} s against {} (server PID {})",
        options.rate,
        options.duration.as_secs(),
        options.url,
        options.pid
    );
    let mut workers = Vec::new();
    for number in 0..INTEGRATOR_THREADS {
        let (shared, rate) = (
            shared.clone(),
            options.rate * INTEGRATOR_SHARE / INTEGRATOR_THREADS as f64,
        );
        let owned: Vec<usize> = (number..sites).step_by(INTEGRATOR_THREADS).collect();
        workers.push(thread::spawn(move || integrator(&shared, &owned, rate)));
    }
    for _ in 0..INTROSPECTOR_THREADS {
        let (shared, rate) = (
            shared.clone(),
            options.rate * INTROSPECTOR_SHARE / INTROSPECTOR_THREADS as f64,
        );
        workers.push(thread::spawn(move || introspector(&shared, rate)));
    }
    {
        let (shared, rate) = (shared.clone(), options.rate * ADMIN_SHARE);
        workers.push(thread::spawn(move || admin(&shared, rate)));
    }
    let samples = sample_until_done(&options, &shared)?;
    shared.stop.store(true, Ordering::Release);
    for worker in workers {
        worker.join().map_err(|_| "a load thread panicked")??;
    }
    let settled = pool_settled(&shared);
    Ok(report(&options, &shared, &samples, settled))
}

fn load_seed(options: &Options) -> Result<Shared, Failure> {
    let read = |name: &str| -> Result<String, Failure> {
        let path = options.seed.join(name);
        fs::read_to_string(&path).map_err(|error| format!("{}: {error}", path.display()).into())
    };
    let field = |value: &Value, name: &str| -> Result<String, Failure> {
        value[name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("seed: no {name}").into())
    };
    let mut sites = Vec::new();
    for line in read("sites.jsonl")?.lines().filter(|l| !l.is_empty()) {
        let site: Value = serde_json::from_str(line)?;
        sites.push(Mutex::new(SiteState {
            key: field(&site, "site_key")?,
            auth_key: field(&site, "auth_key")?,
            primary: None,
            previous: None,
            secondaries: Vec::new(),
            admin_unsure: false,
        }));
    }
    if sites.len() < INTEGRATOR_THREADS {
        return Err(format!("seed: {INTEGRATOR_THREADS} sites or more needed").into());
    }
    let rs: Value = serde_json::from_str(&read("resource_server.json")?)?;
    let admin: Value = serde_json::from_str(&read("admin.json")?)?;
    let unknown = (0..UNKNOWN_VALUES)
        .map(|_| {
            Ok(
                token::mint(SecretKind::SecondaryToken, &crypto::random_bytes()?)
                    .expose()
                    .to_string(),
            )
        })
        .collect::<Result<Vec<_>, crypto::RandomnessUnavailable>>()?;
    Ok(Shared {
        base: options.url.trim_end_matches('/').to_string(),
        sites,
        rs_id: field(&rs, "client_id")?,
        rs_secret: field(&rs, "client_secret")?,
        admin_id: field(&admin, "client_id")?,
        admin_secret: field(&admin, "client_secret")?,
        dead: Mutex::new(VecDeque::with_capacity(DEAD_VALUES_KEPT)),
        unknown,
        stop: AtomicBool::new(false),
        tally: Tally::default(),
    })
}

fn client() -> Result<Client, Failure> {
    Ok(Client::builder().timeout(Duration::from_secs(10)).build()?)
}

/// An integration working for the sites `owned`: asks for the primary token (mostly a repeat),
/// sometimes invalidates it.
fn integrator(shared: &Shared, owned: &[usize], rate: f64) -> Result<(), String> {
    let client = client().map_err(|e| e.to_string())?;
    let mut rng = Rng::new().map_err(|e| e.to_string())?;
    let mut pacer = Pacer::new(rate);
    while !shared.stop.load(Ordering::Acquire) {
        pacer.wait();
        let mut site = shared.lock_site(owned[rng.below(owned.len())]);
        match site.primary.clone() {
            Some(current) if rng.below(20) == 0 => {
                let kind = "oauth2/invalidate_token";
                let request = shared.form(
                    &client,
                    "/oauth2/invalidate_token",
                    &site.key,
                    &site.auth_key,
                    format!("access_token={current}"),
                );
                // Whatever the answer, the next token request may mint a new value.
                site.primary = None;
                let Some(answer) = shared.send(kind, request) else {
                    continue;
                };
                let check = expect_status(&answer, 200).and_then(|()| {
                    match answer.body.get("invalidated") {
                        Some(Value::Bool(true)) => Ok(()),
                        _ => Err("no \"invalidated\": true".into()),
                    }
                });
                if shared.judge(kind, &answer, check) {
                    site.previous = Some(current.clone());
                    shared.bury(current);
                }
            }
            known => {
                let kind = if known.is_some() {
                    "oauth2/token (repeat)"
                } else {
                    "oauth2/token (mint)"
                };
                let request = shared.form(
                    &client,
                    "/oauth2/token",
                    &site.key,
                    &site.auth_key,
                    "grant_type=client_credentials".into(),
                );
                let Some(answer) = shared.send(kind, request) else {
                    continue;
                };
                let value = answer.str("access_token").unwrap_or_default().to_string();
                let check = expect_status(&answer, 200).and_then(|()| {
                    if !value.starts_with("twp_") {
                        Err("no twp_ access_token".into())
                    } else if known.as_ref().is_some_and(|known| *known != value) {
                        Err("a repeat request got a different token".into())
                    } else if known.is_none() && site.previous.as_ref() == Some(&value) {
                        Err("the invalidated token was handed out again".into())
                    } else {
                        Ok(())
                    }
                });
                if shared.judge(kind, &answer, check) {
                    site.primary = Some(value);
                }
            }
        }
    }
    Ok(())
}

/// A resource server checking tokens: current ones, replaced or invalidated ones, unknown ones.
fn introspector(shared: &Shared, rate: f64) -> Result<(), String> {
    let client = client().map_err(|e| e.to_string())?;
    let mut rng = Rng::new().map_err(|e| e.to_string())?;
    let mut pacer = Pacer::new(rate);
    let mut turn = rng.below(shared.unknown.len());
    while !shared.stop.load(Ordering::Acquire) {
        pacer.wait();
        let roll = rng.below(100);
        if roll < 65 {
            // A site's current token, or one of its invalidated non-primary tokens, under its lock.
            let site = shared.lock_site(rng.below(shared.sites.len()));
            let mut candidates: Vec<(&str, bool, &str)> = site
                .secondaries
                .iter()
                .filter(|s| s.active == (roll < 50))
                .map(|s| (s.value.as_str(), s.active, "secondary"))
                .collect();
            if let (Some(primary), true) = (&site.primary, roll < 50) {
                candidates.push((primary.as_str(), true, "primary"));
            }
            if candidates.is_empty() {
                continue;
            }
            let (value, active, token_kind) = candidates[rng.below(candidates.len())];
            let kind = if active {
                "oauth2/introspect (active)"
            } else {
                "oauth2/introspect (invalidated)"
            };
            let Some(answer) = introspect(shared, &client, kind, value) else {
                continue;
            };
            let check = expect_status(&answer, 200).and_then(|()| {
                if !active {
                    return expect_inactive(&answer);
                }
                let site_key = Some(site.key.as_str());
                if answer.body.get("active") != Some(&Value::Bool(true)) {
                    Err("an active token was reported inactive".into())
                } else if answer.str("client_id") != site_key
                    || answer.str("token_kind") != Some(token_kind)
                {
                    Err(format!(
                        "expected client_id of its site and token_kind {token_kind}"
                    ))
                } else {
                    Ok(())
                }
            });
            shared.judge(kind, &answer, check);
        } else if roll < 80 {
            let Some(value) = shared.some_dead(&mut rng) else {
                continue;
            };
            let kind = "oauth2/introspect (replaced)";
            let Some(answer) = introspect(shared, &client, kind, &value) else {
                continue;
            };
            let check = expect_status(&answer, 200).and_then(|()| expect_inactive(&answer));
            shared.judge(kind, &answer, check);
        } else {
            turn = (turn + 1) % shared.unknown.len();
            let kind = "oauth2/introspect (unknown)";
            let Some(answer) = introspect(shared, &client, kind, &shared.unknown[turn]) else {
                continue;
            };
            let check = expect_status(&answer, 200).and_then(|()| expect_inactive(&answer));
            shared.judge(kind, &answer, check);
        }
    }
    Ok(())
}

fn introspect(shared: &Shared, client: &Client, kind: &'static str, value: &str) -> Option<Answer> {
    let request = shared.form(
        client,
        "/oauth2/introspect",
        &shared.rs_id,
        &shared.rs_secret,
        format!("token={value}"),
    );
    shared.send(kind, request)
}

/// RFC 7662 section 2.2: an inactive token gets `{"active": false}` and nothing else.
fn expect_inactive(answer: &Answer) -> Result<(), String> {
    if answer.body == json!({ "active": false }) {
        Ok(())
    } else {
        Err("expected exactly {\"active\":false}".into())
    }
}

/// A platform admin managing every site's non-primary tokens.
fn admin(shared: &Shared, rate: f64) -> Result<(), String> {
    let client = client().map_err(|e| e.to_string())?;
    let mut rng = Rng::new().map_err(|e| e.to_string())?;
    let mut pacer = Pacer::new(rate);
    let mut bearer: Option<String> = None;
    let mut requests = 0u64;
    let mut description = 0u64;
    while !shared.stop.load(Ordering::Acquire) {
        pacer.wait();
        requests += 1;
        if bearer.is_none() || requests.is_multiple_of(ADMIN_TOKEN_EVERY) {
            let kind = "oauth2/token (admin)";
            let request = shared.form(
                &client,
                "/oauth2/token",
                &shared.admin_id,
                &shared.admin_secret,
                "grant_type=client_credentials&scope=admin".into(),
            );
            let Some(answer) = shared.send(kind, request) else {
                continue;
            };
            let value = answer.str("access_token").unwrap_or_default().to_string();
            let check = expect_status(&answer, 200).and_then(|()| {
                if value.starts_with("twa_")
                    && answer.str("scope") == Some("admin")
                    && answer.body.get("expires_in").is_some()
                {
                    Ok(())
                } else {
                    Err("expected a twa_ token with scope admin and expires_in".into())
                }
            });
            if shared.judge(kind, &answer, check) {
                bearer = Some(value);
            }
            continue;
        }
        let Some(bearer) = bearer.as_deref() else {
            continue;
        };
        let mut site = shared.lock_site(rng.below(shared.sites.len()));
        if site.admin_unsure {
            continue;
        }
        let tokens = format!("{}/admin/v1/sites/{}/tokens", shared.base, site.key);
        let roll = rng.below(100);
        let expected = if roll < 30 || site.secondaries.is_empty() {
            description += 1;
            let full = site.secondaries.len() >= SECONDARY_LIMIT;
            let kind = if full {
                "admin create (at limit)"
            } else {
                "admin create"
            };
            let request = client
                .post(&tokens)
                .bearer_auth(bearer)
                .json(&json!({ "description": format!("soak token {description}") }));
            let Some(answer) = shared.send(kind, request) else {
                site.admin_unsure = true;
                continue;
            };
            if full {
                let check = expect_status(&answer, 409).and_then(|()| match answer.str("error") {
                    Some("token_limit_reached") => Ok(()),
                    _ => Err("expected token_limit_reached".into()),
                });
                shared.judge(kind, &answer, check)
            } else {
                let value = answer.str("value").unwrap_or_default().to_string();
                let id = answer.body.get("id").and_then(Value::as_u64);
                let check = expect_status(&answer, 201).and_then(|()| match id {
                    Some(_)
                        if value.starts_with("tws_")
                            && answer.body.get("active") == Some(&Value::Bool(true)) =>
                    {
                        Ok(())
                    }
                    _ => Err("expected an active token with an id and a tws_ value".into()),
                });
                let good = shared.judge(kind, &answer, check);
                if let (true, Some(id)) = (good, id) {
                    site.secondaries.push(Secondary {
                        id,
                        value,
                        active: true,
                    });
                }
                good
            }
        } else {
            let chosen = rng.below(site.secondaries.len());
            let (id, active) = (site.secondaries[chosen].id, site.secondaries[chosen].active);
            let (kind, action) = if roll < 65 {
                ("admin regenerate", "regenerate")
            } else if active {
                ("admin invalidate", "invalidate")
            } else {
                ("admin validate", "validate")
            };
            let request = client
                .post(format!("{tokens}/{id}/{action}"))
                .bearer_auth(bearer);
            let Some(answer) = shared.send(kind, request) else {
                site.admin_unsure = true;
                continue;
            };
            let now_active = match action {
                "regenerate" => active,
                "invalidate" => false,
                _ => true,
            };
            let value = answer.str("value").map(str::to_string);
            let check = expect_status(&answer, 200).and_then(|()| {
                if answer.body.get("id").and_then(Value::as_u64) != Some(id)
                    || answer.body.get("active") != Some(&Value::Bool(now_active))
                {
                    Err(format!("expected token {id} with active {now_active}"))
                } else if (action == "regenerate")
                    != value.as_deref().is_some_and(|v| v.starts_with("tws_"))
                {
                    Err("a new tws_ value comes with regenerate only".into())
                } else {
                    Ok(())
                }
            });
            let good = shared.judge(kind, &answer, check);
            if good {
                let secondary = &mut site.secondaries[chosen];
                secondary.active = now_active;
                if let Some(value) = value {
                    shared.bury(std::mem::replace(&mut secondary.value, value));
                }
            }
            good
        };
        if !expected {
            site.admin_unsure = true;
        }
    }
    Ok(())
}

/// One reading of the server's state.
struct Sample {
    at: Duration,
    memory: Memory,
    pool_open: u64,
    db_connections: u64,
}

/// The server's memory, split so that a rise can be placed: anonymous memory is the heap (Rust's
/// and SQLite's), file-backed and shared memory are mapped files (SQLite's `-shm` index).
#[derive(Clone, Copy)]
struct Memory {
    rss_kib: u64,
    anon_kib: u64,
    file_kib: u64,
    shmem_kib: u64,
    /// `tokenwarden_sqlite_memory_bytes` from `/metrics`, on SQLite: page caches, statements.
    sqlite_kib: Option<u64>,
}

/// Samples every few seconds until the run's time is up; prints a progress line each minute.
fn sample_until_done(options: &Options, shared: &Shared) -> Result<Vec<Sample>, Failure> {
    let interval =
        Duration::from_secs_f64((options.duration.as_secs_f64() / 120.0).clamp(1.0, 5.0));
    let client = client()?;
    let mut counter = DatabaseCounter::open(&options.database)?;
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut next_progress = Duration::from_secs(60);
    while started.elapsed() < options.duration {
        thread::sleep(interval.min(options.duration.saturating_sub(started.elapsed())));
        let gauges = server_gauges(shared, &client);
        let sample = Sample {
            at: started.elapsed(),
            memory: memory(options.pid, gauges.as_ref().and_then(|g| g.sqlite_bytes))?,
            pool_open: gauges.map_or(0, |g| g.pool_open),
            db_connections: counter.count(options.pid)?,
        };
        if sample.at >= next_progress {
            next_progress += Duration::from_secs(60);
            let (requests, errors) = shared.tally.total();
            eprintln!(
                "soak: {:>4} s, {requests} requests, {errors} errors, RSS {:.1} MiB, {} database connections",
                sample.at.as_secs(),
                mib(sample.memory.rss_kib),
                sample.db_connections
            );
        }
        samples.push(sample);
    }
    Ok(samples)
}

/// What the soak reads from the server's `/metrics`.
struct ServerGauges {
    pool_open: u64,
    pool_idle: u64,
    sqlite_bytes: Option<u64>,
}

/// The pool gauges and, on SQLite, SQLite's heap, from `/metrics`.
fn server_gauges(shared: &Shared, client: &Client) -> Option<ServerGauges> {
    let kind = "metrics";
    let answer = client.get(format!("{}/metrics", shared.base)).send();
    let text = match answer {
        Ok(response) if response.status().as_u16() == 200 => response.text().ok()?,
        Ok(response) => {
            shared
                .tally
                .error(kind, format!("status {}", response.status().as_u16()));
            return None;
        }
        Err(error) => {
            shared.tally.error(kind, format!("request failed: {error}"));
            return None;
        }
    };
    shared.tally.ok(kind);
    let gauge = |name: &str| {
        text.lines().find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    };
    Some(ServerGauges {
        pool_open: gauge("tokenwarden_db_pool_connections")?,
        pool_idle: gauge("tokenwarden_db_pool_idle_connections")?,
        sqlite_bytes: gauge("tokenwarden_sqlite_memory_bytes"),
    })
}

/// The resident set and its parts from `/proc/PID/status`.
fn memory(pid: u32, sqlite_bytes: Option<u64>) -> Result<Memory, Failure> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|error| format!("the server (PID {pid}) is gone: {error}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(':')?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .ok_or_else(|| format!("no {name} in /proc/PID/status"))
    };
    Ok(Memory {
        rss_kib: field("VmRSS")?,
        anon_kib: field("RssAnon")?,
        file_kib: field("RssFile")?,
        shmem_kib: field("RssShmem")?,
        sqlite_kib: sqlite_bytes.map(|bytes| bytes / 1024),
    })
}

#[derive(QueryableByName)]
struct Backends {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// Counts the server's database connections from outside: what the pool gauge cannot show is a
/// connection opened beside the pool.
enum DatabaseCounter {
    Sqlite(PathBuf),
    Postgres {
        connection: PgConnection,
        name: String,
    },
}

impl DatabaseCounter {
    fn open(database: &Database) -> Result<Self, Failure> {
        Ok(match database {
            Database::Sqlite(path) => DatabaseCounter::Sqlite(path.clone()),
            Database::Postgres { admin_url, name } => DatabaseCounter::Postgres {
                connection: PgConnection::establish(admin_url)?,
                name: name.clone(),
            },
        })
    }

    fn count(&mut self, pid: u32) -> Result<u64, Failure> {
        Ok(match self {
            // Each SQLite connection holds the database file open once (its -wal and -shm files
            // are other names).
            DatabaseCounter::Sqlite(path) => fs::read_dir(format!("/proc/{pid}/fd"))?
                .filter_map(Result::ok)
                .filter(|entry| fs::read_link(entry.path()).is_ok_and(|target| target == *path))
                .count() as u64,
            DatabaseCounter::Postgres { connection, name } => {
                let backends: Backends = diesel::sql_query(
                    "SELECT count(*) AS count FROM pg_stat_activity WHERE datname = $1",
                )
                .bind::<Text, _>(name.as_str())
                .get_result(connection)?;
                backends.count as u64
            }
        })
    }
}

/// Whether every pooled connection is back in the pool once the load has stopped (a connection
/// checked out and never returned would stay missing). The `last_used_at` flusher borrows one for
/// a moment every few seconds, hence a few tries.
fn pool_settled(shared: &Shared) -> Result<(u64, u64), String> {
    let client = client().map_err(|e| e.to_string())?;
    let mut last = (0, 0);
    for _ in 0..20 {
        thread::sleep(Duration::from_millis(250));
        if let Some(gauges) = server_gauges(shared, &client) {
            last = (gauges.pool_open, gauges.pool_idle);
            if gauges.pool_open == gauges.pool_idle {
                return Ok(last);
            }
        }
    }
    Err(format!(
        "after the load, {} of {} pooled connections still checked out",
        last.0 - last.1.min(last.0),
        last.0
    ))
}

/// Memory at about a tenth of the run apart: where a rise is (heap or mapped files, SQLite's
/// share of the heap).
fn print_memory_table(samples: &[Sample]) {
    let Some(last) = samples.last() else { return };
    println!(
        "{:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "time s", "RSS", "anon", "file", "shmem", "sqlite", "anon-sq"
    );
    let step = (samples.len() / 10).max(1);
    // Every `step`th sample, and the last one unless it is one of those.
    let last_again = !(samples.len() - 1).is_multiple_of(step);
    let rows = samples.iter().step_by(step);
    for sample in rows.chain(last_again.then_some(last)) {
        let memory = sample.memory;
        let sqlite = memory.sqlite_kib.unwrap_or(0);
        println!(
            "{:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            sample.at.as_secs(),
            mib(memory.rss_kib),
            mib(memory.anon_kib),
            mib(memory.file_kib),
            mib(memory.shmem_kib),
            mib(sqlite),
            mib(memory.anon_kib.saturating_sub(sqlite)),
        );
    }
    println!("(MiB; sqlite = tokenwarden_sqlite_memory_bytes, 0 on PostgreSQL)");
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

/// Prints the table and the verdict; true when the run passed.
fn report(
    options: &Options,
    shared: &Shared,
    samples: &[Sample],
    settled: Result<(u64, u64), String>,
) -> bool {
    let mut failures = Vec::new();
    println!("{:<34} {:>9} {:>7}", "request", "count", "errors");
    let (mut requests, mut errors) = (0, 0);
    for (kind, (count, failed)) in shared.tally.entry().iter() {
        println!("{kind:<34} {count:>9} {failed:>7}");
        requests += count;
        errors += failed;
    }
    println!("{:<34} {requests:>9} {errors:>7}", "total");
    let seconds = samples.last().map_or(1.0, |s| s.at.as_secs_f64());
    println!(
        "rate: {:.0} requests/s over {:.0} s",
        requests as f64 / seconds,
        seconds
    );
    if errors > 0 {
        failures.push(format!("{errors} unexpected answers"));
    }

    print_memory_table(samples);

    // Memory: the samples after the warm-up (the first fifth), in thirds.
    let warm = options.duration / 5;
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at >= warm).collect();
    if after.len() < 6 {
        failures.push("too few samples after the warm-up to judge memory".into());
    } else {
        let third = after.len() / 3;
        let first = median(
            &mut after[..third]
                .iter()
                .map(|s| s.memory.rss_kib)
                .collect::<Vec<_>>(),
        );
        let last = median(
            &mut after[after.len() - third..]
                .iter()
                .map(|s| s.memory.rss_kib)
                .collect::<Vec<_>>(),
        );
        let limit = (first as f64 * (1.0 + RSS_TOLERANCE_FRACTION)) as u64 + RSS_TOLERANCE_KIB;
        let max = samples.iter().map(|s| s.memory.rss_kib).max().unwrap_or(0);
        println!(
            "RSS MiB: warm-up end {:.1}, max {:.1}, end {:.1}; median of first / last post-warm-up third \
             {:.1} / {:.1} (limit {:.1})",
            mib(after[0].memory.rss_kib),
            mib(max),
            mib(after[after.len() - 1].memory.rss_kib),
            mib(first),
            mib(last),
            mib(limit)
        );
        if last > limit {
            failures.push(format!(
                "RSS grew after the warm-up: {:.1} -> {:.1} MiB",
                mib(first),
                mib(last)
            ));
        }
    }

    // Connections: the pool's own gauge, and what the database (or the file table) sees.
    let (what, allowed) = match options.database {
        Database::Sqlite(_) => (
            "open files on the database (pool + data_version probe + change-log reader)",
            options.pool_size + 2,
        ),
        Database::Postgres { .. } => (
            "backends in pg_stat_activity (pool + change listener)",
            options.pool_size + 1,
        ),
    };
    let counts = samples.iter().map(|s| s.db_connections);
    let (min, max) = (counts.clone().min().unwrap_or(0), counts.max().unwrap_or(0));
    let pool_max = samples.iter().map(|s| s.pool_open).max().unwrap_or(0);
    println!("database connections, {what}: min {min}, max {max} (limit {allowed}); pool gauge max {pool_max} of {}", options.pool_size);
    if max > u64::from(allowed) || pool_max > u64::from(options.pool_size) {
        failures.push(format!("{max} database connections, more than {allowed}"));
    }
    match settled {
        Ok((open, idle)) => println!("after the load: {idle} of {open} pooled connections idle"),
        Err(problem) => failures.push(problem),
    }

    if failures.is_empty() {
        println!("verdict: PASS");
        true
    } else {
        println!("verdict: FAIL: {}", failures.join("; "));
        false
    }
}
