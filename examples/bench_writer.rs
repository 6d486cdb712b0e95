//! The writer of `scripts/bench --under-writes`: a steady stream of writes over HTTP, as a busy
//! platform makes them, while the load generator introspects other sites' tokens.
//!
//! ```text
//! cargo run --release --example bench_writer -- --base-url http://127.0.0.1:PORT \
//!     --sites FILE --admin-id ID --admin-secret SECRET [--rate 100] [--seconds 10]
//! ```
//!
//! `--sites` holds `Basic …` headers of the sites it writes to, one a line. Writes cycle: the
//! next site's primary token is invalidated and minted again (a mint is a token request after an
//! invalidation), and every fifth write creates a site through the platform API. Prints
//! `WRITES done=N errors=E invalidation_p50_ms=… invalidation_p99_ms=…` at the end (the time
//! from sending an invalidation to its answer, which includes waiting until every node's caches
//! have applied it); exits 1 if no write succeeded.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;

type Failure = Box<dyn std::error::Error>;

struct Options {
    base_url: String,
    sites: Vec<String>,
    admin_id: String,
    admin_secret: String,
    rate: u32,
    seconds: u64,
}

fn main() -> ExitCode {
    match parse().and_then(run) {
        Ok(done) if done > 0 => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!("bench_writer: no write succeeded");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("bench_writer: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse() -> Result<Options, Failure> {
    let mut args = std::env::args().skip(1);
    let (mut base_url, mut sites, mut admin_id, mut admin_secret) = (None, None, None, None);
    let (mut rate, mut seconds) = (100, 10);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--base-url" => base_url = Some(value()?),
            "--sites" => sites = Some(value()?),
            "--admin-id" => admin_id = Some(value()?),
            "--admin-secret" => admin_secret = Some(value()?),
            "--rate" => rate = value()?.parse()?,
            "--seconds" => seconds = value()?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let sites: Vec<String> = std::fs::read_to_string(sites.ok_or("--sites is required")?)?
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect();
    if sites.is_empty() || rate == 0 {
        return Err("--sites must name a site and --rate must be above 0".into());
    }
    Ok(Options {
        base_url: base_url.ok_or("--base-url is required")?,
        sites,
        admin_id: admin_id.ok_or("--admin-id is required")?,
        admin_secret: admin_secret.ok_or("--admin-secret is required")?,
        rate,
        seconds,
    })
}

fn run(options: Options) -> Result<u64, Failure> {
    let client = Client::new();
    let url = |path: &str| format!("{}{path}", options.base_url);
    let token_for = |authorization: &str| -> Result<String, Failure> {
        let answer: Value = client
            .post(url("/oauth2/token"))
            .header("Authorization", authorization)
            .form(&[("grant_type", "client_credentials")])
            .send()?
            .error_for_status()?
            .json()?;
        Ok(answer["access_token"]
            .as_str()
            .ok_or("no access_token")?
            .to_string())
    };
    let admin_answer: Value = client
        .post(url("/oauth2/token"))
        .basic_auth(&options.admin_id, Some(&options.admin_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()?
        .error_for_status()?
        .json()?;
    let admin_token = admin_answer["access_token"]
        .as_str()
        .ok_or("no admin token")?
        .to_string();

    let interval = Duration::from_secs(1) / options.rate;
    let started = Instant::now();
    let (mut done, mut errors) = (0u64, 0u64);
    let mut invalidations = Vec::new();
    let mut write = 0u64;
    while started.elapsed() < Duration::from_secs(options.seconds) {
        let due = started + interval * u32::try_from(write).unwrap_or(u32::MAX);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let site = &options.sites[(write / 2) as usize % options.sites.len()];
        let outcome: Result<(), Failure> = if write % 5 == 4 {
            client
                .post(url("/admin/v1/sites"))
                .bearer_auth(&admin_token)
                .json(&serde_json::json!({ "name": format!("Written {write}") }))
                .send()
                .and_then(|response| response.error_for_status())
                .map(drop)
                .map_err(Failure::from)
        } else if write.is_multiple_of(2) {
            // After the previous invalidation this mints.
            token_for(site).map(drop)
        } else {
            token_for(site).and_then(|token| {
                let sent = Instant::now();
                client
                    .post(url("/oauth2/invalidate_token"))
                    .header("Authorization", site)
                    .form(&[("access_token", token)])
                    .send()?
                    .error_for_status()?;
                invalidations.push(sent.elapsed());
                Ok(())
            })
        };
        match outcome {
            Ok(()) => done += 1,
            Err(error) => {
                errors += 1;
                if errors <= 3 {
                    eprintln!("bench_writer: {error}");
                }
            }
        }
        write += 1;
    }
    invalidations.sort_unstable();
    let percentile = |p: usize| {
        invalidations
            .get((invalidations.len() * p / 100).min(invalidations.len().saturating_sub(1)))
            .map_or(0.0, |latency| latency.as_secs_f64() * 1000.0)
    };
    println!(
        "WRITES done={done} errors={errors} invalidation_p50_ms={:.2} invalidation_p99_ms={:.2}",
        percentile(50),
        percentile(99)
    );
    Ok(done)
}
