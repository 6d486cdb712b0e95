//! Seeds a fresh database for `scripts/bench` and writes the files its load generator reads.
//!
//! Sites and their non-primary tokens are written in batched multi-row inserts inside a few
//! transactions (a million tokens in well under a minute), in exactly the row shape the store
//! writes (`src/store/tokens.rs`): HMAC digests under the server secret from
//! `TOKENWARDEN_SECRET`, never the values. Primary tokens are minted through the real service
//! (`service::primary_token::get_or_mint`) for the first `--primaries` sites, because only it knows
//! how a primary value is sealed; those sites are the ones `/oauth2/token` is loaded with.
//!
//! ```text
//! TOKENWARDEN_SECRET=… cargo run --release --example bench_seed -- seed \
//!     --database URL --out DIR [--sites 10000] [--tokens 10000] [--primaries 1000] \
//!     [--sample 1000] [--unknown 1000]
//! cargo run --release --example bench_seed -- create-postgres-db ADMIN_URL [tw_soak]  # prints the URL
//! cargo run --release --example bench_seed -- drop-postgres-db ADMIN_URL NAME
//! ```
//!
//! `scripts/soak` uses the last two as well, with the prefix `tw_soak`, so that its databases are
//! told apart from the benchmark's.
//!
//! `--tokens` counts every token, primaries included; the rest are spread over the sites in slots
//! 1..9 (so `--tokens` may be at most `--primaries + 9 × --sites`). Files written to `--out`, one
//! value a line: `active_tokens.txt` (a sample spread over the whole table, a tenth of it
//! primaries), `unknown_tokens.txt` (well-formed, minted, never stored), `site_authorizations.txt`
//! (`Basic …` headers of the sites that have a primary token) and
//! `resource_server_authorization.txt` (one `Basic …` header, of a resource server that sees
//! every site). Up to `--sample` non-primary tokens outside the active sample, spread over the
//! table as well, get an audience of one resource server limited to their sites (one site each,
//! in practice): `audience_tokens.txt` holds their values and
//! `limited_resource_server_authorization.txt` its `Basic …` header. Both are empty when every
//! non-primary token is in the active sample.
//!
//! For `scripts/bench-site-search`, `seed-sites` writes `--sites` sites without tokens (one in ten
//! disabled), named like a real platform's ("Nordic Coffee Roasters 48213", from fixed word lists
//! and a fixed-seed generator, so every run seeds the same sites), with proper auth-key digests,
//! in the same batched inserts. It then creates a platform admin and a site manager of `--managed`
//! sites spread over the table (default 5,000) through the service, and writes their credentials
//! to `platform_admin.txt` and `site_manager.txt` in `--out` (client id, then secret, one a line):
//!
//! ```text
//! TOKENWARDEN_SECRET=… cargo run --release --example bench_seed -- seed-sites \
//!     --database URL --out DIR [--sites 10000] [--managed 5000]
//! ```

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::NaiveDateTime;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel::{PgConnection, SqliteConnection};
use tokenwarden::config::{Config, SecretSource};
use tokenwarden::crypto;
use tokenwarden::domain::admin::Role;
use tokenwarden::domain::audit::Requester;
use tokenwarden::domain::secret::Secret;
use tokenwarden::domain::site::{site_key_from_random, Site};
use tokenwarden::domain::token::{self, SecretKind};
use tokenwarden::service::{admins, primary_token, resource_servers, Context};
use tokenwarden::store::schema::{self, sites, token_audiences, tokens};
use tokenwarden::store::DatabaseUrl;

type Failure = Box<dyn std::error::Error>;

/// Rows per multi-row `INSERT`: 8 bound columns × 1000 stays far below both backends' limits on
/// bound parameters (SQLite 32766, PostgreSQL 65535).
const ROWS_PER_INSERT: usize = 1000;
/// Sites generated, inserted and given their tokens per step.
const SITES_PER_STEP: usize = 1000;
/// Steps per transaction: a few large transactions, not one per row.
const STEPS_PER_TRANSACTION: usize = 25;
/// Highest slot of a non-primary token (slot 0 is the primary's).
const LAST_SLOT: usize = 9;
/// The only names of databases this example creates and drops: the benchmark's (the default) and
/// the soak's, each followed by `_` and random hex.
const DATABASE_PREFIXES: [&str; 2] = ["tw_bench", "tw_soak"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("seed") => Options::parse(&args[1..]).and_then(|options| seed(&options)),
        Some("seed-sites") => Options::parse(&args[1..]).and_then(|options| seed_sites(&options)),
        Some("create-postgres-db") if args.len() == 2 => {
            create_postgres_db(&args[1], DATABASE_PREFIXES[0])
        }
        Some("create-postgres-db") if args.len() == 3 => create_postgres_db(&args[1], &args[2]),
        Some("drop-postgres-db") if args.len() == 3 => drop_postgres_db(&args[1], &args[2]),
        _ => Err(
            "usage: bench_seed seed --database URL --out DIR [--sites N] [--tokens N] \
                  [--primaries N] [--sample N] [--unknown N] | seed-sites --database URL \
                  --out DIR [--sites N] [--managed N] | create-postgres-db ADMIN_URL \
                  [tw_soak] | \
                  drop-postgres-db ADMIN_URL NAME"
                .into(),
        ),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench_seed: {error}");
            ExitCode::FAILURE
        }
    }
}

struct Options {
    database: String,
    out: PathBuf,
    sites: usize,
    tokens: usize,
    primaries: usize,
    sample: usize,
    unknown: usize,
    /// `seed-sites`: how many sites the site manager manages.
    managed: usize,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, Failure> {
        let mut options = Options {
            database: String::new(),
            out: PathBuf::new(),
            sites: 10_000,
            tokens: 10_000,
            primaries: 1_000,
            sample: 1_000,
            unknown: 1_000,
            managed: 5_000,
        };
        for pair in args.chunks(2) {
            let [flag, value] = pair else {
                return Err(format!("{} needs a value", pair[0]).into());
            };
            let number = || {
                value
                    .replace('_', "")
                    .parse::<usize>()
                    .map_err(|_| format!("{flag} takes a number, not {value}"))
            };
            match flag.as_str() {
                "--database" => options.database = value.clone(),
                "--out" => options.out = PathBuf::from(value),
                "--sites" => options.sites = number()?,
                "--tokens" => options.tokens = number()?,
                "--primaries" => options.primaries = number()?,
                "--sample" => options.sample = number()?,
                "--unknown" => options.unknown = number()?,
                "--managed" => options.managed = number()?,
                _ => return Err(format!("unknown flag {flag}").into()),
            }
        }
        if options.database.is_empty() || options.out.as_os_str().is_empty() {
            return Err("--database and --out are required".into());
        }
        options.primaries = options.primaries.min(options.sites).min(options.tokens);
        if options.tokens - options.primaries > LAST_SLOT * options.sites {
            return Err(format!(
                "{} tokens do not fit {} sites ({} primaries + at most {LAST_SLOT} others each)",
                options.tokens, options.sites, options.primaries
            )
            .into());
        }
        Ok(options)
    }
}

#[derive(Insertable)]
#[diesel(table_name = sites)]
struct NewSite {
    site_key: String,
    name: String,
    auth_key_digest: Vec<u8>,
    enabled: bool,
    created_at: NaiveDateTime,
}

impl NewSite {
    /// A site with a new site key and auth key, as `site create` makes them; the auth key is
    /// returned, its digest stored.
    fn generate(
        context: &Context,
        name: String,
        enabled: bool,
        now: NaiveDateTime,
    ) -> Result<(Self, Secret), Failure> {
        let auth_key = token::mint(SecretKind::AuthKey, &crypto::random_bytes()?);
        let site = NewSite {
            site_key: site_key_from_random(&crypto::random_bytes()?),
            name,
            auth_key_digest: context.keys.client_secret_digest(auth_key.expose()),
            enabled,
            created_at: now,
        };
        Ok((site, auth_key))
    }
}

/// The columns `src/store/tokens.rs` writes for a token; `sealed_value`, `last_used_at`,
/// `expires_at` and `scope` stay NULL, as they are for a non-primary token without expiry or scope.
/// A token with an audience gets its `token_audiences` row once the limited resource server exists.
#[derive(Insertable)]
#[diesel(table_name = tokens)]
struct NewToken {
    site_id: i64,
    slot: i32,
    description: String,
    value_digest: Vec<u8>,
    value_hint: String,
    active: bool,
    generated_at: NaiveDateTime,
    audience_restricted: bool,
}

/// A direct connection for the bulk load; the server's own pool is not reachable from outside the
/// crate, and needs not be: these are plain inserts into the public schema.
enum BulkConnection {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// Runs `$body` with `$conn` bound to the connection of either backend (compiled once per backend).
macro_rules! on_connection {
    ($connection:expr, |$conn:ident| $body:expr) => {
        match $connection {
            BulkConnection::Sqlite($conn) => $body,
            BulkConnection::Postgres($conn) => $body,
        }
    };
}

impl BulkConnection {
    fn open(url: &DatabaseUrl) -> Result<Self, Failure> {
        Ok(match url {
            DatabaseUrl::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(&path.to_string_lossy())?;
                // A throwaway database: durability of each commit does not matter, speed does.
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; \
                     PRAGMA foreign_keys = ON; PRAGMA cache_size = -262144;",
                )?;
                BulkConnection::Sqlite(conn)
            }
            DatabaseUrl::Postgres(url) => {
                let mut conn = PgConnection::establish(url.as_str())?;
                conn.batch_execute("SET synchronous_commit = off")?;
                BulkConnection::Postgres(conn)
            }
        })
    }

    /// Opens a transaction through diesel's transaction manager (not a raw `BEGIN`), so that
    /// diesel, which wraps some statements in savepoints of its own, knows one is open.
    fn begin(&mut self) -> Result<(), Failure> {
        on_connection!(self, |conn| AnsiTransactionManager::begin_transaction(
            conn
        )?);
        Ok(())
    }

    fn commit(&mut self) -> Result<(), Failure> {
        on_connection!(self, |conn| AnsiTransactionManager::commit_transaction(
            conn
        )?);
        Ok(())
    }

    /// Inserts the sites and answers each one's id, by site key.
    fn insert_sites(&mut self, rows: &[NewSite]) -> Result<HashMap<String, i64>, Failure> {
        let mut ids = HashMap::with_capacity(rows.len());
        for batch in rows.chunks(ROWS_PER_INSERT) {
            let inserted: Vec<(String, i64)> = on_connection!(self, |conn| {
                diesel::insert_into(sites::table)
                    .values(batch)
                    .returning((sites::site_key, sites::id))
                    .get_results(conn)?
            });
            ids.extend(inserted);
        }
        Ok(ids)
    }

    fn insert_tokens(&mut self, rows: &[NewToken]) -> Result<(), Failure> {
        for batch in rows.chunks(ROWS_PER_INSERT) {
            on_connection!(self, |conn| {
                diesel::insert_into(tokens::table)
                    .values(batch)
                    .execute(conn)?
            });
        }
        Ok(())
    }

    /// Puts every token with an audience into the audience of the resource server `client_id`.
    fn fill_audiences(&mut self, client_id: &str) -> Result<(), Failure> {
        on_connection!(self, |conn| {
            let resource_server_id = schema::resource_servers::table
                .filter(schema::resource_servers::client_id.eq(client_id))
                .select(schema::resource_servers::id)
                .get_result::<i64>(conn)?;
            diesel::insert_into(token_audiences::table)
                .values(
                    tokens::table
                        .filter(tokens::audience_restricted.eq(true))
                        .select((tokens::id, resource_server_id.into_sql::<BigInt>())),
                )
                .into_columns((
                    token_audiences::token_id,
                    token_audiences::resource_server_id,
                ))
                .execute(conn)?
        });
        Ok(())
    }

    /// Leaves the database as a long-running server would have it: statistics gathered (what
    /// PostgreSQL's autovacuum does on its own, done here so it does not run during the
    /// measurement) and SQLite's write-ahead log folded into the main file.
    fn settle(&mut self) -> Result<(), Failure> {
        match self {
            BulkConnection::Sqlite(conn) => {
                conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)")?
            }
            BulkConnection::Postgres(conn) => conn.batch_execute("VACUUM ANALYZE")?,
        }
        Ok(())
    }
}

/// What the load generator will be given, collected while seeding.
#[derive(Default)]
struct Collected {
    active: Vec<String>,
    primary_sites: Vec<(Site, Secret)>,
    /// Values of the tokens with an audience, and the keys of their sites.
    audience: Vec<String>,
    audience_sites: Vec<String>,
}

/// The database `options` names, and a context on it with the server secret from
/// `TOKENWARDEN_SECRET`. Opening the context runs the migrations, as `serve` would.
fn open(options: &Options) -> Result<(DatabaseUrl, Context), Failure> {
    let secret = std::env::var("TOKENWARDEN_SECRET")
        .map_err(|_| "set TOKENWARDEN_SECRET (`tokenwarden secret generate` makes one)")?;
    let url = DatabaseUrl::parse(&options.database)?;
    let mut config = Config::for_tests(url.clone());
    config.secret = SecretSource::Value(Secret::new(secret));
    config.introspection_cache = false;
    let context = tokenwarden::server::open_context(&config)?;
    Ok((url, context))
}

fn seed(options: &Options) -> Result<(), Failure> {
    let started = Instant::now();
    let (url, context) = open(options)?;
    let now = tokenwarden::clock::now();
    let (resource_server, rs_secret) = resource_servers::create(
        &context,
        &Requester::operator(Some("bench"), None),
        "bench resource server",
        &[],
        now,
    )?;

    let secondaries = options.tokens - options.primaries;
    let primary_samples = (options.sample / 10).min(options.primaries);
    let secondary_samples = (options.sample - primary_samples).min(secondaries);
    let stride = secondaries
        .checked_div(secondary_samples)
        .unwrap_or(usize::MAX)
        .max(1);
    // The tokens with an audience, among those the active sample leaves.
    let unsampled = secondaries - secondary_samples;
    let audience_samples = options.sample.min(unsampled);
    let audience_stride = unsampled
        .checked_div(audience_samples)
        .unwrap_or(usize::MAX)
        .max(1);
    let mut unsampled_index = 0usize;
    let (per_site, extra) = (secondaries / options.sites, secondaries % options.sites);

    let mut connection = BulkConnection::open(&url)?;
    let mut collected = Collected::default();
    let mut secondary_index = 0usize;
    for (step, first) in (0..options.sites).step_by(SITES_PER_STEP).enumerate() {
        if step % STEPS_PER_TRANSACTION == 0 {
            if step > 0 {
                connection.commit()?;
            }
            connection.begin()?;
        }
        let last = (first + SITES_PER_STEP).min(options.sites);
        let mut new_sites = Vec::with_capacity(last - first);
        let mut auth_keys = Vec::with_capacity(last - first);
        for number in first..last {
            let (site, auth_key) =
                NewSite::generate(&context, format!("Bench site {number:06}"), true, now)?;
            new_sites.push(site);
            auth_keys.push(auth_key);
        }
        let ids = connection.insert_sites(&new_sites)?;
        let mut new_tokens = Vec::new();
        for (offset, (site, auth_key)) in new_sites.into_iter().zip(auth_keys).enumerate() {
            let number = first + offset;
            let site_id = ids[&site.site_key];
            // The remainder goes to the last sites, so the first ones (which get a primary) do
            // not also get the extra token while others get none.
            let count = per_site + usize::from(number >= options.sites - extra);
            for slot in 1..=count {
                let value = token::mint(SecretKind::SecondaryToken, &crypto::random_bytes()?);
                let mut audience_restricted = false;
                if secondary_index % stride == stride / 2
                    && collected.active.len() < secondary_samples
                {
                    collected.active.push(value.expose().to_string());
                } else {
                    if unsampled_index % audience_stride == audience_stride / 2
                        && collected.audience.len() < audience_samples
                    {
                        audience_restricted = true;
                        collected.audience.push(value.expose().to_string());
                        if collected.audience_sites.last() != Some(&site.site_key) {
                            collected.audience_sites.push(site.site_key.clone());
                        }
                    }
                    unsampled_index += 1;
                }
                new_tokens.push(NewToken {
                    site_id,
                    slot: slot as i32,
                    description: format!("bench token {slot}"),
                    value_digest: context.keys.token_digest(value.expose()),
                    value_hint: token::hint(&value),
                    active: true,
                    generated_at: now,
                    audience_restricted,
                });
                secondary_index += 1;
            }
            if number < options.primaries {
                let site = Site {
                    id: site_id,
                    site_key: site.site_key,
                    name: site.name,
                    enabled: site.enabled,
                    created_at: site.created_at,
                    previous_auth_key_valid_until: None,
                };
                collected.primary_sites.push((site, auth_key));
            }
        }
        connection.insert_tokens(&new_tokens)?;
    }
    connection.commit()?;
    let bulk_seconds = started.elapsed().as_secs_f64();

    let primaries = mint_primaries(&context, &url, &collected.primary_sites, now)?;
    collected
        .active
        .extend(primaries.iter().take(primary_samples).cloned());
    // Created through the service, as `resource-server create --site` would.
    let limited = if collected.audience.is_empty() {
        None
    } else {
        let (limited, secret) = resource_servers::create(
            &context,
            &Requester::operator(Some("bench"), None),
            "bench limited resource server",
            &collected.audience_sites,
            now,
        )?;
        connection.fill_audiences(&limited.client_id)?;
        Some((limited.client_id, secret))
    };
    connection.settle()?;
    write_files(
        options,
        (&resource_server.client_id, &rs_secret),
        limited.as_ref().map(|(id, secret)| (id.as_str(), secret)),
        &collected,
    )?;
    eprintln!(
        "bench_seed: {} sites, {} tokens ({} primaries, {} with an audience) in {:.1} s ({:.1} s \
         bulk insert); files in {}",
        options.sites,
        secondaries + primaries.len(),
        primaries.len(),
        collected.audience.len(),
        started.elapsed().as_secs_f64(),
        bulk_seconds,
        options.out.display()
    );
    Ok(())
}

/// `seed-sites`: sites only, with names to search, and the two admins who list them.
fn seed_sites(options: &Options) -> Result<(), Failure> {
    if options.managed == 0 || options.managed > options.sites {
        return Err("--managed must be from 1 to --sites".into());
    }
    let started = Instant::now();
    let (url, context) = open(options)?;
    let now = tokenwarden::clock::now();
    let mut mix = SiteMix::new();
    // Every `stride`-th site is the site manager's, so its sites spread over the whole table.
    let stride = options.sites / options.managed;
    let mut managed = Vec::with_capacity(options.managed);
    let mut connection = BulkConnection::open(&url)?;
    for (step, first) in (0..options.sites).step_by(SITES_PER_STEP).enumerate() {
        if step % STEPS_PER_TRANSACTION == 0 {
            if step > 0 {
                connection.commit()?;
            }
            connection.begin()?;
        }
        let last = (first + SITES_PER_STEP).min(options.sites);
        let mut new_sites = Vec::with_capacity(last - first);
        for number in first..last {
            let enabled = !mix.disabled();
            let (site, _) = NewSite::generate(&context, mix.name(), enabled, now)?;
            if number % stride == 0 && managed.len() < options.managed {
                managed.push(site.site_key.clone());
            }
            new_sites.push(site);
        }
        connection.insert_sites(&new_sites)?;
    }
    connection.commit()?;
    let bulk_seconds = started.elapsed().as_secs_f64();
    let by = Requester::operator(Some("bench"), None);
    let (platform_admin, platform_secret) = admins::create(
        &context,
        &by,
        "Bench platform admin",
        Role::PlatformAdmin,
        &[],
        now,
    )?;
    let (site_manager, manager_secret) = admins::create(
        &context,
        &by,
        "Bench site manager",
        Role::SiteManager,
        &managed,
        now,
    )?;
    connection.settle()?;
    fs::create_dir_all(&options.out)?;
    for (file, admin, secret) in [
        ("platform_admin.txt", &platform_admin, &platform_secret),
        ("site_manager.txt", &site_manager, &manager_secret),
    ] {
        let path = Path::new(&options.out).join(file);
        let text = format!("{}\n{}\n", admin.admin.client_id, secret.expose());
        fs::write(&path, text).map_err(|error| format!("{}: {error}", path.display()))?;
    }
    eprintln!(
        "bench_seed: {} sites ({} managed) in {:.1} s ({:.1} s bulk insert); files in {}",
        options.sites,
        managed.len(),
        started.elapsed().as_secs_f64(),
        bulk_seconds,
        options.out.display()
    );
    Ok(())
}

/// Sites as a real platform has them: names like "Nordic Coffee Roasters 48213" (a place or
/// quality, a trade, a kind of business and a number) and one in ten disabled, drawn from a
/// fixed-seed generator (SplitMix64), so every run seeds the same sites. With a million of them, a
/// trade is in about 12,500 names, a kind of business in about 33,000, and a first word in about
/// 12,500 that sort next to each other.
struct SiteMix {
    state: u64,
    words: [Vec<&'static str>; 3],
}

/// The first word of a seeded name: a place or a quality.
const FIRST_WORDS: &str = "\
    Nordic Alpine Golden Urban Coastal Royal Little Silver Green Blue Red Happy Sunny Wild Old New \
    Northern Southern Eastern Western Crystal Velvet Iron Copper Maple Cedar Oak Pine Willow River \
    Lake Mountain Valley Prairie Harbor Bay Island Desert Forest Meadow Stone Amber Ivory Scarlet \
    Cobalt Emerald Jade Ruby Sapphire Onyx Pearl Coral Misty Rustic Modern Classic Vintage Bright \
    Clever Swift Brave Noble Lucky Cosmic Lunar Polar Tropical Zen Pacific Atlantic Baltic \
    Highland Kyoto Lisbon Oslo Dublin Zürich Ångström Éclair Café";
/// The second: a trade.
const TRADES: &str = "\
    Coffee Tea Bakery Books Garden Bikes Shoes Toys Games Music Art Wine Beer Cheese Flowers Pets \
    Sports Outdoor Camping Fishing Tools Hardware Kitchen Home Decor Fashion Jewelry Watches \
    Records Comics Candles Soap Spices Chocolate Candy Noodles Pizza Burgers Tacos Sushi Ramen \
    Bagels Donuts Juice Smoothie Yoga Fitness Dental Optics Pharmacy Print Photo Studio Design \
    Media Robotics Software Cloud Data Security Travel Tours Hotels Rentals Motors Auto Marine \
    Aviation Energy Solar Farm Organics Crafts Pottery Textiles Leather Glass Lighting Furniture \
    Vinyl";
/// The third: a kind of business.
const KINDS: &str = "\
    Roasters Shop Store Co Company Collective Supply Traders Emporium Outlet Market Boutique Works \
    Gallery House Club Lab Depot Warehouse Hub Corner Place Express Direct Online Partners Group \
    Goods Mart Exchange";

impl SiteMix {
    fn new() -> Self {
        Self {
            state: 0,
            words: [FIRST_WORDS, TRADES, KINDS].map(|words| words.split(' ').collect()),
        }
    }

    fn disabled(&mut self) -> bool {
        self.below(10) == 0
    }

    fn name(&mut self) -> String {
        let [first, trade, kind] = [0, 1, 2].map(|part| {
            let choice = self.below(self.words[part].len());
            self.words[part][choice]
        });
        let number = 1 + self.below(99_999);
        format!("{first} {trade} {kind} {number}")
    }

    /// A number below `bound`.
    fn below(&mut self, bound: usize) -> usize {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % bound as u64) as usize
    }
}

/// Mints each site's primary token through the service, as `/oauth2/token` would: one write
/// transaction per site. PostgreSQL takes them from a few threads; SQLite has one writer anyway.
fn mint_primaries(
    context: &Context,
    url: &DatabaseUrl,
    sites: &[(Site, Secret)],
    now: NaiveDateTime,
) -> Result<Vec<String>, Failure> {
    let threads = match url {
        DatabaseUrl::Sqlite(_) => 1,
        DatabaseUrl::Postgres(_) => 4,
    };
    let per_thread = sites.len().div_ceil(threads).max(1);
    let minted: Vec<Result<Vec<String>, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = sites
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|(site, _)| {
                            primary_token::get_or_mint(context, site, now)
                                .map(|value| value.expose().to_string())
                                .map_err(|error| error.to_string())
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err("a minting thread panicked".into()))
            })
            .collect()
    });
    let mut values = Vec::with_capacity(sites.len());
    for chunk in minted {
        values.extend(chunk?);
    }
    Ok(values)
}

/// `resource_server` sees every site; `limited` (if any tokens have an audience) only theirs.
fn write_files(
    options: &Options,
    resource_server: (&str, &Secret),
    limited: Option<(&str, &Secret)>,
    collected: &Collected,
) -> Result<(), Failure> {
    fs::create_dir_all(&options.out)?;
    let write = |name: &str, lines: &[String]| -> Result<(), Failure> {
        let path: PathBuf = Path::new(&options.out).join(name);
        let mut text = lines.join("\n");
        text.push('\n');
        fs::write(&path, text).map_err(|error| format!("{}: {error}", path.display()).into())
    };
    let basic =
        |id: &str, secret: &str| format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
    let unknown = (0..options.unknown)
        .map(|_| {
            let value = token::mint(SecretKind::SecondaryToken, &crypto::random_bytes()?);
            Ok(value.expose().to_string())
        })
        .collect::<Result<Vec<_>, crypto::RandomnessUnavailable>>()?;
    let site_authorizations: Vec<String> = collected
        .primary_sites
        .iter()
        .map(|(site, auth_key)| basic(&site.site_key, auth_key.expose()))
        .collect();
    write("active_tokens.txt", &collected.active)?;
    write("unknown_tokens.txt", &unknown)?;
    write("site_authorizations.txt", &site_authorizations)?;
    write(
        "resource_server_authorization.txt",
        &[basic(resource_server.0, resource_server.1.expose())],
    )?;
    write("audience_tokens.txt", &collected.audience)?;
    let limited: Vec<String> = limited
        .map(|(id, secret)| basic(id, secret.expose()))
        .into_iter()
        .collect();
    write("limited_resource_server_authorization.txt", &limited)?;
    Ok(())
}

/// Creates `<prefix>_<random>` next to the database `admin_url` names; prints the new URL.
fn create_postgres_db(admin_url: &str, prefix: &str) -> Result<(), Failure> {
    if !DATABASE_PREFIXES.contains(&prefix) {
        return Err(format!("the prefix must be one of {DATABASE_PREFIXES:?}").into());
    }
    let mut admin = PgConnection::establish(admin_url)?;
    let random: [u8; 6] = crypto::random_bytes()?;
    let name = format!(
        "{prefix}_{}",
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
    println!("{}", replace_database_name(admin_url, &name));
    Ok(())
}

fn drop_postgres_db(admin_url: &str, name: &str) -> Result<(), Failure> {
    let ours = DATABASE_PREFIXES.iter().any(|prefix| {
        name.strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('_'))
    });
    if !ours || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("refusing to drop {name}: not a benchmark or soak database").into());
    }
    let mut admin = PgConnection::establish(admin_url)?;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
    Ok(())
}

/// `postgres://user@host:port/db?opts` with `db` replaced.
fn replace_database_name(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base));
    let authority = rest.split('/').next().unwrap_or_default();
    match query {
        Some(query) => format!("{scheme}://{authority}/{name}?{query}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}
