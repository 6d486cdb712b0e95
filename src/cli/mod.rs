//! The command line: `serve`, `site …`, `resource-server …`, `admin …`, `secret generate`. Prints text, or with `--json` exactly
//! one JSON object on stdout, so scripts can read it.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use ipnet::IpNet;
use serde_json::{json, Value};

use crate::config::{self, Config, ConnectionLimits, SecretSource};
use crate::domain::admin::AdminWithSites;
use crate::domain::admin::Role;
use crate::domain::audience::ResourceServer;
use crate::domain::audit::{self, Action, AuditQuery, Requester};
use crate::domain::client_address::{parse_trusted_proxy, ForwardedHeaders, TrustedProxies};
use crate::domain::rotation::{overlap_end, Overlap};
use crate::domain::secret::Secret;
use crate::domain::site::Site;
use crate::domain::throttle::{self, ThrottleLimits};
use crate::logging::{self, LogFormat};
use crate::server;
use crate::service::{self, admins, primary_token, resource_servers, sites, Context};
use crate::store::{DatabaseUrl, PoolSettings};
use crate::tls::TlsFiles;

mod config_file;

#[derive(Debug, Parser)]
#[command(
    name = "tokenwarden",
    version,
    about = "OAuth 2.0 authorization server for sites"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// A TOML file of global and serve settings under their flags' names (defaults < file <
    /// environment < flags); `tokenwarden config show` prints the result
    #[arg(long, global = true, env = "TOKENWARDEN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Database: postgres://…, sqlite://PATH, or a file path (SQLite)
    #[arg(long, global = true, env = "TOKENWARDEN_DATABASE_URL", default_value = config::DEFAULT_DATABASE_URL)]
    database: String,
    /// File holding the server secret (created if missing). Default with SQLite: next to the
    /// database file. Ignored when TOKENWARDEN_SECRET is set.
    #[arg(long, global = true, env = "TOKENWARDEN_SECRET_FILE")]
    secret_file: Option<PathBuf>,
    /// Print exactly one JSON object on stdout instead of text (for scripts)
    #[arg(long, global = true)]
    json: bool,
    /// Most database connections per process
    #[arg(
        long,
        global = true,
        env = "TOKENWARDEN_DB_MAX_CONNECTIONS",
        default_value_t = 10
    )]
    db_max_connections: u32,
    /// How long a request waits for a database connection before it is answered 503, in ms
    #[arg(
        long,
        global = true,
        env = "TOKENWARDEN_DB_TIMEOUT_MS",
        default_value_t = 5000
    )]
    db_timeout_ms: u64,
    /// PostgreSQL: how long a node's caches may answer after its last confirmed renewal with
    /// the database, in ms; a change waits at most this long for a node that stopped confirming.
    /// Must be shorter than --db-timeout-ms
    #[arg(
        long,
        global = true,
        env = "TOKENWARDEN_CACHE_LEASE_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(50..)
    )]
    cache_lease_ms: u64,
    /// Log lines as text, or as one JSON object per line (time, level, target, message; request
    /// lines add method, path, status, latency_ms, client_address and request_id)
    #[arg(
        long,
        global = true,
        env = "TOKENWARDEN_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
}

/// A default duration as the whole milliseconds its flag takes.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Subcommand)]
enum Command {
    // Boxed: its flags outweigh every other command's (clippy::large_enum_variant).
    /// Run the HTTP server
    Serve(Box<ServeArgs>),
    /// Manage sites (the OAuth clients)
    #[command(subcommand)]
    Site(SiteCommand),
    /// Manage resource servers (the APIs that introspect tokens)
    #[command(subcommand)]
    ResourceServer(ResourceServerCommand),
    /// Manage admins (platform admins and site managers) of the admin API
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Read the audit trail: sign-ins, changes, throttle locks, alarms, failed authentications
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Server secret utilities
    #[command(subcommand)]
    Secret(SecretCommand),
    /// SQLite: write a consistent copy of the database while servers run (keep the server secret
    /// apart from it)
    Backup {
        /// The file to write; an existing one is refused unless --force
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// Replace FILE if it exists (once the new copy is complete)
        #[arg(long)]
        force: bool,
    },
    /// Restore a backup (stop every server on the database first): ends every token and admin
    /// session of the restored data, which would otherwise bring back tokens invalidated since
    Restore {
        /// SQLite: the backup to put in place of the database; without it, the database is taken
        /// as restored already by other means (a PostgreSQL dump, a copied file)
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
        /// Keep the restored tokens and sessions as they are (only when no token was invalidated
        /// since the backup)
        #[arg(long)]
        keep_tokens: bool,
    },
    /// The configuration: every global and serve setting, from defaults, file, environment, flags
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective global and serve settings and where each came from, as TOML (secrets
    /// redacted); with --json, one JSON object
    Show,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// List audit events, newest first
    List {
        /// Only events at or after this time (RFC 3339, e.g. 2026-12-01T00:00:00Z)
        #[arg(long, value_parser = audit::parse_time)]
        since: Option<chrono::NaiveDateTime>,
        /// Only events before this time (RFC 3339)
        #[arg(long, value_parser = audit::parse_time)]
        until: Option<chrono::NaiveDateTime>,
        /// Only events by this actor (a client id, or an operator's user name)
        #[arg(long)]
        actor: Option<String>,
        /// Only events of this action (e.g. site_created, admin_signed_in, client_auth_failed)
        #[arg(long, value_parser = parse_action)]
        action: Option<Action>,
        /// Most events to print (1 to 1000)
        #[arg(long, default_value_t = audit::DEFAULT_AUDIT_PAGE, value_parser = audit::parse_limit)]
        limit: i64,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on
    #[arg(long, env = "TOKENWARDEN_BIND", default_value = config::DEFAULT_BIND)]
    bind: SocketAddr,
    /// Create a "Demo Store" site on first start and print its credentials
    #[arg(long)]
    demo: bool,
    /// HTTP worker threads (default: one per core)
    #[arg(long, env = "TOKENWARDEN_WORKERS")]
    workers: Option<usize>,
    /// Largest accepted request body, in bytes
    #[arg(long, env = "TOKENWARDEN_MAX_BODY_BYTES", default_value_t = config::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Issuer identifier published in /.well-known/oauth-authorization-server (default:
    /// http://<bound address>); set it to the public https URL behind a proxy
    #[arg(long, env = "TOKENWARDEN_ISSUER")]
    issuer: Option<String>,
    /// Answer introspection and repeat token requests from memory when possible (exact either
    /// way); off reads the database on every request
    #[arg(long, env = "TOKENWARDEN_INTROSPECTION_CACHE", default_value = "on", value_parser = ["on", "off"])]
    introspection_cache: String,
    /// Most entries in each cache (introspected tokens; sites and their primary tokens)
    #[arg(long, env = "TOKENWARDEN_CACHE_CAPACITY", default_value_t = config::DEFAULT_CACHE_CAPACITY)]
    cache_capacity: usize,
    /// Seconds between batched writes of tokens' last-used times
    #[arg(long, env = "TOKENWARDEN_USAGE_FLUSH_SECS", default_value_t = config::DEFAULT_USAGE_FLUSH_SECS)]
    usage_flush_secs: u64,
    /// Once a token's use is written, seconds later uses wait (up to 22% less, to spread the
    /// writes); the latest is written when the wait ends. 0 writes every use at the next flush
    #[arg(long, env = "TOKENWARDEN_USAGE_RESOLUTION_SECS", default_value_t = config::DEFAULT_USAGE_RESOLUTION_SECS,
          value_parser = clap::value_parser!(u64).range(0..=config::MAX_USAGE_RESOLUTION_SECS))]
    usage_resolution_secs: u64,
    /// Lifetime of admin tokens, in seconds
    #[arg(long, env = "TOKENWARDEN_ADMIN_TOKEN_TTL_SECS", default_value_t = config::DEFAULT_ADMIN_TOKEN_TTL_SECS,
          value_parser = clap::value_parser!(u64).range(60..=config::MAX_ADMIN_TOKEN_TTL_SECS))]
    admin_token_ttl_secs: u64,
    /// Furthest ahead a non-primary token's expiry may be set, in days
    #[arg(long, env = "TOKENWARDEN_MAX_TOKEN_LIFETIME_DAYS", default_value_t = config::DEFAULT_MAX_TOKEN_LIFETIME_DAYS,
          value_parser = clap::value_parser!(u64).range(1..=config::MAX_TOKEN_LIFETIME_DAYS))]
    max_token_lifetime_days: u64,
    /// Refuse to create a non-primary token without expires_at (unless
    /// --default-token-lifetime-days gives it one)
    #[arg(long, env = "TOKENWARDEN_REQUIRE_TOKEN_EXPIRY")]
    require_token_expiry: bool,
    /// Days ahead a non-primary token created without expires_at expires (default: never); at
    /// most --max-token-lifetime-days
    #[arg(long, env = "TOKENWARDEN_DEFAULT_TOKEN_LIFETIME_DAYS",
          value_parser = clap::value_parser!(u64).range(1..=config::MAX_TOKEN_LIFETIME_DAYS))]
    default_token_lifetime_days: Option<u64>,
    /// Scopes non-primary tokens may carry, separated by spaces (default: none)
    #[arg(long, env = "TOKENWARDEN_TOKEN_SCOPES", default_value = "")]
    token_scopes: String,
    /// Serve HTTPS with this PEM certificate chain (server certificate first); needs --tls-key
    #[arg(long, env = "TOKENWARDEN_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, RSA or SEC1) of --tls-cert
    #[arg(long, env = "TOKENWARDEN_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds requests in flight get to finish after SIGTERM or SIGINT
    #[arg(long, env = "TOKENWARDEN_SHUTDOWN_TIMEOUT_SECS", default_value_t = config::DEFAULT_SHUTDOWN_TIMEOUT_SECS)]
    shutdown_timeout_secs: u64,
    /// Failed authentications of one client id from one address per window before that pair is
    /// locked; the same client id from other addresses is not (0: off)
    #[arg(long, env = "TOKENWARDEN_THROTTLE_CLIENT_FAILURES", default_value_t = throttle::DEFAULT_CLIENT_FAILURES)]
    throttle_client_failures: u32,
    /// Failed client authentications from one address per window before it is locked, except for
    /// clients that authenticated from it within 30 days (0: off)
    #[arg(long, env = "TOKENWARDEN_THROTTLE_ADDRESS_FAILURES", default_value_t = throttle::DEFAULT_ADDRESS_FAILURES)]
    throttle_address_failures: u32,
    /// Failed authentications of one client id from all addresses per window that raise an alarm
    /// (a warning, an audit event and a metric; never a lock) (0: off)
    #[arg(long, env = "TOKENWARDEN_CLIENT_ATTACK_ALARM", default_value_t = throttle::DEFAULT_CLIENT_ATTACK_ALARM)]
    client_attack_alarm: u32,
    /// Length of the throttling window, and so of a lock, in seconds
    #[arg(long, env = "TOKENWARDEN_THROTTLE_WINDOW_SECS", default_value_t = throttle::DEFAULT_WINDOW.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    throttle_window_secs: u64,
    /// Days audit events are kept before they are pruned (0: keep everything)
    #[arg(long, env = "TOKENWARDEN_AUDIT_RETENTION_DAYS", default_value_t = config::DEFAULT_AUDIT_RETENTION_DAYS,
          value_parser = clap::value_parser!(u64).range(0..=36_500))]
    audit_retention_days: u64,
    /// A proxy (CIDR range or address) whose Forwarded / X-Forwarded-For headers name the
    /// client's address; repeat for several. Requests from anyone else are taken by their TCP peer
    #[arg(long = "trusted-proxy", value_name = "CIDR", env = "TOKENWARDEN_TRUSTED_PROXIES",
          value_delimiter = ',', value_parser = parse_trusted_proxy)]
    trusted_proxies: Vec<IpNet>,
    /// Which header the trusted proxies write: forwarded-first (RFC 7239 Forwarded when present,
    /// else X-Forwarded-For), forwarded, or x-forwarded-for. Behind a proxy that only appends to
    /// X-Forwarded-For and passes a client's Forwarded through, choose x-forwarded-for
    #[arg(long, env = "TOKENWARDEN_FORWARDED_HEADERS", default_value = "forwarded-first",
          value_parser = ForwardedHeaders::NAMES)]
    forwarded_headers: String,
    /// Replaced by --trusted-proxy; refused with a message naming it
    #[arg(long, hide = true, env = "TOKENWARDEN_TRUST_FORWARDED_FOR", num_args = 0..=1,
          default_missing_value = "true")]
    trust_forwarded_for: Option<String>,
    /// Open connections per worker
    #[arg(long, env = "TOKENWARDEN_MAX_CONNECTIONS", default_value_t = ConnectionLimits::default().max_connections)]
    max_connections: usize,
    /// Seconds an idle connection is kept open between requests (0: no keep-alive)
    #[arg(long, env = "TOKENWARDEN_KEEP_ALIVE_SECS", default_value_t = ConnectionLimits::default().keep_alive.as_secs())]
    keep_alive_secs: u64,
    /// Milliseconds a new connection has to send its request head, then 408 and closed
    #[arg(long, env = "TOKENWARDEN_CLIENT_REQUEST_TIMEOUT_MS",
          default_value_t = millis(ConnectionLimits::default().client_request_timeout),
          value_parser = clap::value_parser!(u64).range(1..))]
    client_request_timeout_ms: u64,
    /// Milliseconds a closing connection has to shut down before it is dropped
    #[arg(long, env = "TOKENWARDEN_CLIENT_DISCONNECT_TIMEOUT_MS",
          default_value_t = millis(ConnectionLimits::default().client_disconnect_timeout),
          value_parser = clap::value_parser!(u64).range(1..))]
    client_disconnect_timeout_ms: u64,
}

#[derive(Debug, Subcommand)]
enum SiteCommand {
    /// Create a site; prints its site key and auth key (shown this once only)
    Create {
        #[arg(long)]
        name: String,
    },
    /// List sites
    List,
    /// Replace a site's auth key; prints the new one. The old one stops working at once, or when
    /// --overlap has passed; a key an earlier rotation replaced stops at once
    RotateAuthKey {
        site_key: String,
        /// How long the old key keeps working: seconds, or a number with s, m, h or d (90s, 30m,
        /// 24h, 7d); at most 7d
        #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_overlap)]
        overlap: Overlap,
    },
    /// Disable a site: it cannot get tokens and all its tokens stop working
    Disable { site_key: String },
    /// Enable a disabled site again
    Enable { site_key: String },
    /// Invalidate a site's primary token now (a leaked token the site cannot invalidate itself);
    /// its next token request mints a new one
    InvalidatePrimary { site_key: String },
}

#[derive(Debug, Subcommand)]
enum ResourceServerCommand {
    /// Create a resource server; prints its client id and secret (shown this once only)
    Create {
        #[arg(long)]
        name: String,
        /// Limit it to this site's tokens (repeat for several); without --site it sees every site
        #[arg(long = "site", value_name = "SITE_KEY")]
        sites: Vec<String>,
    },
    /// List resource servers and the sites each is limited to
    List,
    /// Limit a resource server to these sites as well; one that saw every site then sees only
    /// these. Takes effect at once
    Assign(SiteAssignment),
    /// Take sites from a limited resource server: their tokens are refused to it at once
    Unassign(SiteAssignment),
    /// Delete a resource server: its credentials stop working at once
    Delete { client_id: String },
    /// Replace a resource server's secret; prints the new one. The old one stops working at once,
    /// or when --overlap has passed; a secret an earlier rotation replaced stops at once
    RotateSecret(SecretRotation),
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an admin; prints their client id and secret (shown this once only)
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["platform-admin", "site-manager"])]
        role: String,
        /// A site a site manager manages (repeat for several)
        #[arg(long = "site", value_name = "SITE_KEY")]
        sites: Vec<String>,
    },
    /// List admins and the sites assigned to them
    List,
    /// Assign sites to a site manager
    Assign(SiteAssignment),
    /// Take sites away from a site manager; takes effect at once
    Unassign(SiteAssignment),
    /// Disable an admin: their admin tokens stop working at once
    Disable { client_id: String },
    /// Enable a disabled admin again (old admin tokens stay revoked)
    Enable { client_id: String },
    /// Replace an admin's secret; prints the new one. The old one stops working at once, or when
    /// --overlap has passed; admin tokens already issued keep working until they expire
    RotateSecret(SecretRotation),
}

/// A client whose secret is replaced, and how long the replaced one keeps working.
#[derive(Debug, Args)]
struct SecretRotation {
    client_id: String,
    /// How long the old secret keeps working: seconds, or a number with s, m, h or d (90s, 30m,
    /// 24h, 7d); at most 7d
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_overlap)]
    overlap: Overlap,
}

/// A client (resource server or site manager) and the sites given to it or taken from it.
#[derive(Debug, Args)]
struct SiteAssignment {
    client_id: String,
    #[arg(long = "site", value_name = "SITE_KEY", required = true)]
    sites: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum SecretCommand {
    /// Print a new random server secret, for TOKENWARDEN_SECRET or a secret file
    Generate,
}

/// Every command's failure, printed as `error: …` with exit code 1.
type CliResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Parses the command line, runs the command, and turns failure into a message and exit code 1.
pub fn run() -> ExitCode {
    let cli = parse_command_line();
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    logging::init(cli.global.log_format, default_level);
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> CliResult {
    let config = config_from(&cli.global)?;
    match cli.command {
        Command::Serve(args) => serve(config, *args),
        Command::Site(command) => site(&config, command, cli.global.json),
        Command::ResourceServer(command) => resource_server(&config, command, cli.global.json),
        Command::Admin(command) => admin(&config, command, cli.global.json),
        Command::Audit(AuditCommand::List {
            since,
            until,
            actor,
            action,
            limit,
        }) => {
            let query = AuditQuery {
                since,
                until,
                actor,
                action,
                before_id: None,
                limit,
            };
            audit_list(&config, &query, cli.global.json)
        }
        Command::Config(ConfigCommand::Show) => config_show(cli.global.json),
        Command::Backup { to, force } => {
            let context = &server::open_context(&config)?;
            let backup =
                service::backups::backup(context, &operator(), &to, force, crate::clock::now())?;
            let taken_at = utc_seconds(backup.taken_at);
            let output = json!({
                "file": backup.file.display().to_string(),
                "bytes": backup.bytes,
                "taken_at": taken_at,
            });
            print_output(cli.global.json, &output, || {
                format!(
                    "Wrote a backup of the database to {} ({} bytes, taken at {taken_at}). Keep \
                     the server secret apart from it.",
                    backup.file.display(),
                    backup.bytes
                )
            });
            Ok(())
        }
        Command::Restore { from, keep_tokens } => {
            let restored = service::backups::restore(
                &config.database,
                &config.pool,
                from.as_deref(),
                keep_tokens,
                &operator(),
                crate::clock::now(),
            )?;
            let taken_at = restored.taken_at.map(utc_seconds);
            let output = json!({
                "taken_at": taken_at,
                "tokens_ended": restored.ended.map(|ended| ended.tokens),
                "admin_tokens_ended": restored.ended.map(|ended| ended.admin_tokens),
            });
            print_output(cli.global.json, &output, || match restored.ended {
                Some(ended) => format!(
                    "Restored (backup taken at {}). Ended {} tokens and {} admin sessions: \
                     integrators get new primary tokens at their next request, site managers \
                     regenerate the tokens they need, admins sign in again.",
                    taken_at.as_deref().unwrap_or("an unknown time"),
                    ended.tokens,
                    ended.admin_tokens
                ),
                None => "Restored; tokens and sessions kept as the backup had them.".to_string(),
            });
            Ok(())
        }
        Command::Secret(SecretCommand::Generate) => {
            let secret = config::generate_encoded_secret()?;
            println!("{}", secret.expose());
            Ok(())
        }
    }
}

fn config_from(global: &GlobalArgs) -> CliResult<Config> {
    if global.cache_lease_ms >= global.db_timeout_ms {
        // A node that stops confirming must not hold a change's answer longer than a request
        // waits for the database.
        refuse_usage(&format!(
            "--cache-lease-ms ({}) must be shorter than --db-timeout-ms ({})",
            global.cache_lease_ms, global.db_timeout_ms
        ));
    }
    let database = DatabaseUrl::parse(&global.database)?;
    let secret = match (std::env::var("TOKENWARDEN_SECRET"), &global.secret_file) {
        (Ok(value), _) => SecretSource::Value(Secret::new(value)),
        (Err(_), Some(path)) => SecretSource::File(path.clone()),
        (Err(_), None) => SecretSource::NextToDatabase,
    };
    Ok(Config {
        bind: config::DEFAULT_BIND.parse::<SocketAddr>()?,
        database,
        secret,
        pool: PoolSettings {
            max_connections: global.db_max_connections.max(1),
            connection_timeout: Duration::from_millis(global.db_timeout_ms.max(1)),
            cache_lease: Duration::from_millis(global.cache_lease_ms),
            ..PoolSettings::default()
        },
        max_body_bytes: config::DEFAULT_MAX_BODY_BYTES,
        workers: None,
        issuer: None,
        introspection_cache: true,
        cache_capacity: config::DEFAULT_CACHE_CAPACITY,
        usage_flush_interval: Duration::from_secs(config::DEFAULT_USAGE_FLUSH_SECS),
        usage_resolution: Duration::from_secs(config::DEFAULT_USAGE_RESOLUTION_SECS),
        admin_token_ttl: Duration::from_secs(config::DEFAULT_ADMIN_TOKEN_TTL_SECS),
        max_token_lifetime: Duration::from_secs(config::DEFAULT_MAX_TOKEN_LIFETIME_DAYS * 86_400),
        require_token_expiry: false,
        default_token_lifetime: None,
        token_scopes: Vec::new(),
        tls: None,
        shutdown_timeout: Duration::from_secs(config::DEFAULT_SHUTDOWN_TIMEOUT_SECS),
        throttle: ThrottleLimits::default(),
        audit_retention: None,
        audit_flush_interval: Duration::from_secs(1),
        throttle_share_interval: Duration::from_secs(1),
        trusted_proxies: TrustedProxies::default(),
        connections: ConnectionLimits::default(),
    })
}

fn serve(mut config: Config, args: ServeArgs) -> CliResult {
    config.bind = args.bind;
    config.workers = args.workers;
    config.max_body_bytes = args.max_body_bytes;
    config.issuer = args.issuer;
    config.introspection_cache = args.introspection_cache == "on";
    config.cache_capacity = args.cache_capacity;
    config.usage_flush_interval = Duration::from_secs(args.usage_flush_secs.max(1));
    config.usage_resolution = Duration::from_secs(args.usage_resolution_secs);
    config.admin_token_ttl = Duration::from_secs(args.admin_token_ttl_secs);
    config.max_token_lifetime = Duration::from_secs(args.max_token_lifetime_days * 86_400);
    if let Some(days) = args.default_token_lifetime_days {
        if days > args.max_token_lifetime_days {
            refuse_usage(&format!(
                "--default-token-lifetime-days ({days}) must be at most \
                 --max-token-lifetime-days ({})",
                args.max_token_lifetime_days
            ));
        }
    }
    config.require_token_expiry = args.require_token_expiry;
    config.default_token_lifetime = args
        .default_token_lifetime_days
        .map(|days| Duration::from_secs(days * 86_400));
    config.token_scopes = args
        .token_scopes
        .split_whitespace()
        .map(str::to_string)
        .collect();
    config.tls = args
        .tls_cert
        .zip(args.tls_key)
        .map(|(cert, key)| TlsFiles { cert, key });
    config.shutdown_timeout = Duration::from_secs(args.shutdown_timeout_secs);
    config.throttle = ThrottleLimits {
        client_failures: args.throttle_client_failures,
        address_failures: args.throttle_address_failures,
        client_attack_alarm: args.client_attack_alarm,
        window: Duration::from_secs(args.throttle_window_secs),
        ..ThrottleLimits::default()
    };
    config.audit_retention = (args.audit_retention_days > 0)
        .then(|| Duration::from_secs(args.audit_retention_days * 86_400));
    if args.trust_forwarded_for.is_some() {
        refuse_usage(
            "--trust-forwarded-for and TOKENWARDEN_TRUST_FORWARDED_FOR are gone: name the proxies \
             whose forwarding headers to believe with --trusted-proxy CIDR (repeatable; \
             TOKENWARDEN_TRUSTED_PROXIES, comma-separated)",
        );
    }
    let headers = ForwardedHeaders::parse(&args.forwarded_headers)
        .ok_or("--forwarded-headers takes forwarded-first, forwarded or x-forwarded-for")?;
    config.trusted_proxies = TrustedProxies::new(args.trusted_proxies, headers);
    config.connections = ConnectionLimits {
        max_connections: args.max_connections.max(1),
        keep_alive: Duration::from_secs(args.keep_alive_secs),
        client_request_timeout: Duration::from_millis(args.client_request_timeout_ms),
        client_disconnect_timeout: Duration::from_millis(args.client_disconnect_timeout_ms),
    };
    let context = server::open_context(&config)?;
    let system = actix_web::rt::System::new();
    let address = system.block_on(async {
        let started = server::start(&config, context.clone())?;
        let address = started.address;
        let base_url = format!("{}://{address}", config.scheme());
        log::info!(
            "tokenwarden listening on {base_url} (database {:?})",
            config.database
        );
        if args.demo {
            print_demo_site(&context, &base_url)?;
        }
        let outcome = started.server.await;
        started.background.shutdown();
        outcome?;
        Ok::<_, Box<dyn std::error::Error>>(address)
    })?;
    log::info!("tokenwarden on {address} stopped");
    Ok(())
}

/// The person at the shell, as the audit trail records them: the user name the environment gives,
/// and the effective user id (`/proc/self/status`), which the user cannot choose.
fn operator() -> Requester {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok();
    Requester::operator(user.as_deref(), effective_uid())
}

/// The second field of `/proc/self/status`'s `Uid:` line (real, effective, saved, filesystem).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|line| line.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

/// The command line, parsed. Help never shows the value of an environment variable (clap would
/// print `[env: TOKENWARDEN_DATABASE_URL=postgres://user:password@…]`): only its name.
fn parse_command_line() -> Cli {
    let command = hide_env_values(Cli::command());
    let arguments: Vec<OsString> = std::env::args_os().collect();
    let (arguments, _) =
        with_config_file(&command, arguments).unwrap_or_else(|message| refuse_usage(&message));
    let matches = command.get_matches_from(arguments);
    Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
}

/// `arguments` with the config file's settings added (see `config_file`), and the names of the
/// settings the file gave. The first parse only finds the file and where each value came from:
/// it ignores errors, so a setting that needs another (`--tls-cert` and `--tls-key`) may have
/// its pair in another layer; the caller's parse of the result checks everything.
fn with_config_file(
    command: &clap::Command,
    arguments: Vec<OsString>,
) -> Result<(Vec<OsString>, std::collections::BTreeSet<String>), String> {
    // `--help` and `--version` end even a lenient parse: the strict parse shows them.
    let Ok(lenient) = command
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&arguments)
    else {
        return Ok((arguments, Default::default()));
    };
    let Some(path) = lenient.get_one::<PathBuf>(config_file::CONFIG).cloned() else {
        return Ok((arguments, Default::default()));
    };
    let table = config_file::read(command, &path)?;
    let (from_file, names) = config_file::arguments(command, &lenient, &table);
    // Before a standalone `--`, after which every argument is positional.
    let end = arguments
        .iter()
        .position(|argument| argument == "--")
        .unwrap_or(arguments.len());
    let mut combined = arguments;
    combined.splice(end..end, from_file);
    Ok((combined, names))
}

/// `config show`: the settings `serve` would run with, given this command line's global flags,
/// the environment and the config file. The database URL's password is never printed, nor any
/// secret (the server secret is not a setting: it comes from `TOKENWARDEN_SECRET` or a file).
fn config_show(json: bool) -> CliResult {
    let command = hide_env_values(Cli::command());
    let given = command.clone().get_matches_from(std::env::args_os());
    let mut serving: Vec<OsString> = vec![OsString::from("tokenwarden")];
    for arg in command.get_arguments().filter(|arg| arg.is_global_set()) {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if long == "json" || given.value_source(id) != Some(clap::parser::ValueSource::CommandLine)
        {
            continue;
        }
        for value in given.get_raw(id).into_iter().flatten() {
            let mut flag = OsString::from(format!("--{long}="));
            flag.push(value);
            serving.push(flag);
        }
    }
    serving.push(OsString::from(config_file::SERVE));
    let (serving, from_file) =
        with_config_file(&command, serving).unwrap_or_else(|message| refuse_usage(&message));
    let matches = command
        .clone()
        .try_get_matches_from(serving)
        .unwrap_or_else(|error| error.exit());
    let settings = config_file::effective(&command, &matches, &from_file);
    let shown = |name: &str, value: &str| match name {
        "database" => DatabaseUrl::parse(value)
            .map_or_else(|_| "<unparsable>".to_string(), |url| format!("{url:?}")),
        _ => value.to_string(),
    };
    if json {
        let rows: serde_json::Map<String, Value> = settings
            .iter()
            .map(|setting| {
                let values: Vec<String> = setting
                    .values
                    .iter()
                    .map(|value| shown(&setting.name, value))
                    .collect();
                let value = match values.as_slice() {
                    [] => Value::Null,
                    [one] => Value::from(one.clone()),
                    many => Value::from(many.to_vec()),
                };
                (
                    setting.name.clone(),
                    json!({ "value": value, "source": setting.source }),
                )
            })
            .collect();
        println!("{}", json!({ "settings": rows }));
        return Ok(());
    }
    for setting in &settings {
        let values: Vec<toml::Value> = setting
            .values
            .iter()
            .map(|value| match (setting.switch, value.as_str()) {
                (true, "true") => toml::Value::from(true),
                (true, "false") => toml::Value::from(false),
                _ => toml::Value::from(shown(&setting.name, value)),
            })
            .collect();
        let value = match values.len() {
            0 => {
                println!("# {} is not set", setting.name);
                continue;
            }
            1 => values[0].to_string(),
            _ => toml::Value::from(values).to_string(),
        };
        println!("{} = {value}  # {}", setting.name, setting.source);
    }
    Ok(())
}

fn hide_env_values(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| arg.hide_env_values(true))
        .mut_subcommands(hide_env_values)
}

/// A usage error found after parsing: printed like clap's own, exit code 2.
fn refuse_usage(message: &str) -> ! {
    Cli::command()
        .error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
}

const DEMO_SITE_NAME: &str = "Demo Store";

/// `serve --demo`: creates the demo site once; later starts can only name it, because its auth key
/// is stored hashed.
fn print_demo_site(context: &Context, base_url: &str) -> CliResult {
    let existing = sites::find_by_name(context, DEMO_SITE_NAME)?;
    match existing {
        Some(site) => println!(
            "Demo site \"{DEMO_SITE_NAME}\" exists: site key {}. Its auth key was printed when it \
             was created; get a new one with `tokenwarden site rotate-auth-key {}`.",
            site.site_key, site.site_key
        ),
        None => {
            let (_, credentials) =
                sites::create(context, &operator(), DEMO_SITE_NAME, crate::clock::now())?;
            println!(
                "Created demo site \"{DEMO_SITE_NAME}\" (the auth key is shown this once only):\n  \
                 site key: {}\n  auth key: {}\nGet its primary token:\n  curl -s -X POST \
                 {base_url}/oauth2/token -d grant_type=client_credentials -d client_id={} \
                 -d client_secret={}",
                credentials.site_key,
                credentials.auth_key.expose(),
                credentials.site_key,
                credentials.auth_key.expose()
            );
        }
    }
    Ok(())
}

fn site(config: &Config, command: SiteCommand, json: bool) -> CliResult {
    let context = &server::open_context(config)?;
    match command {
        SiteCommand::Create { name } => {
            let (site, credentials) =
                sites::create(context, &operator(), &name, crate::clock::now())?;
            let output = json!({
                "site_key": credentials.site_key,
                "auth_key": credentials.auth_key.expose(),
                "name": site.name,
            });
            print_output(json, &output, || {
                format!(
                    "Created site \"{}\"\nsite key: {}\nauth key: {}\n(the auth key is shown \
                     this once only; store it now)",
                    site.name,
                    credentials.site_key,
                    credentials.auth_key.expose()
                )
            });
        }
        SiteCommand::List => {
            let summaries = sites::list(context)?;
            let now = crate::clock::now();
            let previous_until =
                |site: &Site| overlap_end(site.previous_auth_key_valid_until, now).map(utc_seconds);
            let rows: Vec<Value> = summaries
                .iter()
                .map(|summary| {
                    json!({
                        "site_key": summary.site.site_key,
                        "name": summary.site.name,
                        "enabled": summary.site.enabled,
                        "token_count": summary.token_count,
                        "created_at": summary.site.created_at.and_utc().to_rfc3339(),
                        "previous_auth_key_valid_until": previous_until(&summary.site),
                    })
                })
                .collect();
            print_output(json, &json!({ "sites": rows }), || {
                let mut text = format!(
                    "{:<26} {:<8} {:>6}  {:<20}  NAME",
                    "SITE KEY", "ENABLED", "TOKENS", "OLD KEY UNTIL (UTC)"
                );
                for summary in &summaries {
                    text.push_str(&format!(
                        "\n{:<26} {:<8} {:>6}  {:<20}  {}",
                        summary.site.site_key,
                        if summary.site.enabled { "yes" } else { "no" },
                        summary.token_count,
                        previous_until(&summary.site).unwrap_or_else(|| "-".to_string()),
                        summary.site.name
                    ));
                }
                text
            });
        }
        SiteCommand::RotateAuthKey { site_key, overlap } => {
            let rotated = sites::rotate_auth_key(
                context,
                &operator(),
                &site_key,
                overlap,
                crate::clock::now(),
            )?;
            print_rotated(
                json,
                ("site_key", &site_key),
                ("auth_key", &rotated.auth_key),
                rotated.site.previous_auth_key_valid_until,
            );
        }
        SiteCommand::Disable { site_key } => {
            sites::set_enabled(context, &operator(), &site_key, false, crate::clock::now())?;
            let output = json!({ "site_key": site_key, "enabled": false });
            print_output(json, &output, || format!("Site {site_key} disabled"));
        }
        SiteCommand::InvalidatePrimary { site_key } => {
            let invalidated = primary_token::invalidate_on_behalf(
                context,
                &operator(),
                None,
                &site_key,
                crate::clock::now(),
            )?;
            let output = json!({ "site_key": site_key, "invalidated": invalidated });
            print_output(json, &output, || {
                if invalidated {
                    format!(
                        "The primary token of site {site_key} is invalidated; its next token \
                         request gets a new one"
                    )
                } else {
                    format!("Site {site_key} has no active primary token")
                }
            });
        }
        SiteCommand::Enable { site_key } => {
            sites::set_enabled(context, &operator(), &site_key, true, crate::clock::now())?;
            let output = json!({ "site_key": site_key, "enabled": true });
            print_output(json, &output, || format!("Site {site_key} enabled"));
        }
    }
    Ok(())
}

fn resource_server(config: &Config, command: ResourceServerCommand, json: bool) -> CliResult {
    let context = &server::open_context(config)?;
    let assigns = matches!(command, ResourceServerCommand::Assign(_));
    match command {
        ResourceServerCommand::Create { name, sites } => {
            let (created, secret) =
                resource_servers::create(context, &operator(), &name, &sites, crate::clock::now())?;
            let mut output = resource_server_json(&created);
            output["client_secret"] = Value::from(secret.expose());
            print_output(json, &output, || {
                format!(
                    "Created resource server \"{}\"\nclient id: {}\nclient secret: {}\nsites: \
                     {}\n(the secret is shown this once only; store it now)",
                    created.name,
                    created.client_id,
                    secret.expose(),
                    created.sites_text()
                )
            });
        }
        ResourceServerCommand::List => {
            let servers = resource_servers::list(context)?;
            let rows: Vec<Value> = servers.iter().map(resource_server_json).collect();
            print_output(json, &json!({ "resource_servers": rows }), || {
                let mut text = format!("{:<24}  NAME (SITES)", "CLIENT ID");
                for server in &servers {
                    text.push_str(&format!(
                        "\n{:<24}  {} ({})",
                        server.client_id,
                        server.name,
                        server.sites_text()
                    ));
                }
                text
            });
        }
        ResourceServerCommand::Assign(change) | ResourceServerCommand::Unassign(change) => {
            let changed = resource_servers::change_sites(
                context,
                &operator(),
                &change.client_id,
                &change.sites,
                assigns,
                crate::clock::now(),
            )?;
            print_resource_server_sites(json, &changed);
        }
        ResourceServerCommand::Delete { client_id } => {
            resource_servers::delete(context, &operator(), &client_id, crate::clock::now())?;
            let output = json!({ "client_id": client_id, "deleted": true });
            print_output(json, &output, || {
                format!("Resource server {client_id} deleted")
            });
        }
        ResourceServerCommand::RotateSecret(SecretRotation { client_id, overlap }) => {
            let (rotated, secret) = resource_servers::rotate_secret(
                context,
                &operator(),
                &client_id,
                overlap,
                crate::clock::now(),
            )?;
            print_rotated(
                json,
                ("client_id", &client_id),
                ("client_secret", &secret),
                rotated.previous_secret_valid_until,
            );
        }
    }
    Ok(())
}

/// What a rotation prints: the client, its new secret (shown this once) and until when the
/// replaced one works.
fn print_rotated(
    json: bool,
    (id_name, id): (&str, &str),
    (secret_name, secret): (&str, &Secret),
    previous_valid_until: Option<chrono::NaiveDateTime>,
) {
    let previous_valid_until = previous_valid_until.map(utc_seconds);
    let output = json!({
        id_name: id,
        secret_name: secret.expose(),
        "previous_valid_until": previous_valid_until,
    });
    let what = secret_name.replace('_', " ");
    print_output(json, &output, || {
        let old = match &previous_valid_until {
            Some(until) => format!("the old {what} works until {until}"),
            None => format!("the old {what} no longer works"),
        };
        format!(
            "New {what} for {id}: {}\n({old}; shown this once only, store it now)",
            secret.expose()
        )
    });
}

/// `sites` is `null` for a resource server that sees every site, else the site keys it may see.
fn resource_server_json(server: &ResourceServer) -> Value {
    json!({
        "client_id": server.client_id,
        "name": server.name,
        "sites": server.site_keys,
        "created_at": server.created_at.and_utc().to_rfc3339(),
    })
}

fn print_resource_server_sites(json: bool, server: &ResourceServer) {
    print_output(json, &resource_server_json(server), || {
        format!(
            "Resource server {} ({}): sites: {}",
            server.client_id,
            server.name,
            server.sites_text()
        )
    });
}

fn admin(config: &Config, command: AdminCommand, json: bool) -> CliResult {
    let context = &server::open_context(config)?;
    let assigns = matches!(command, AdminCommand::Assign(_));
    let changed = match command {
        AdminCommand::Create { name, role, sites } => {
            let role = Role::parse(&role).ok_or("unknown role")?;
            let (created, secret) = admins::create(
                context,
                &operator(),
                &name,
                role,
                &sites,
                crate::clock::now(),
            )?;
            let mut output = admin_json(&created);
            output["client_secret"] = Value::from(secret.expose());
            print_output(json, &output, || {
                format!(
                    "Created {} \"{}\"\nclient id: {}\nclient secret: {}\n(the secret is shown \
                     this once only; store it now)",
                    role.as_str(),
                    created.admin.name,
                    created.admin.client_id,
                    secret.expose()
                )
            });
            return Ok(());
        }
        AdminCommand::List => {
            let listed = admins::list(context)?;
            let rows: Vec<Value> = listed.iter().map(admin_json).collect();
            print_output(json, &json!({ "admins": rows }), || {
                let mut text = format!(
                    "{:<26} {:<15} {:<8} NAME (SITES)",
                    "CLIENT ID", "ROLE", "ENABLED"
                );
                for entry in &listed {
                    text.push_str(&format!(
                        "\n{:<26} {:<15} {:<8} {} ({})",
                        entry.admin.client_id,
                        entry.admin.role.as_str(),
                        if entry.admin.enabled { "yes" } else { "no" },
                        entry.admin.name,
                        managed_sites_text(entry)
                    ));
                }
                text
            });
            return Ok(());
        }
        AdminCommand::Assign(change) | AdminCommand::Unassign(change) => admins::change_sites(
            context,
            &operator(),
            &change.client_id,
            &change.sites,
            assigns,
            crate::clock::now(),
        )?,
        AdminCommand::Disable { client_id } => {
            admins::set_enabled(context, &operator(), &client_id, false, crate::clock::now())?
        }
        AdminCommand::Enable { client_id } => {
            admins::set_enabled(context, &operator(), &client_id, true, crate::clock::now())?
        }
        AdminCommand::RotateSecret(SecretRotation { client_id, overlap }) => {
            let (rotated, secret) = admins::rotate_secret(
                context,
                &operator(),
                &client_id,
                overlap,
                crate::clock::now(),
            )?;
            print_rotated(
                json,
                ("client_id", &client_id),
                ("client_secret", &secret),
                rotated.admin.previous_secret_valid_until,
            );
            return Ok(());
        }
    };
    print_output(json, &admin_json(&changed), || {
        format!(
            "Admin {} ({}): {}, sites: {}",
            changed.admin.client_id,
            changed.admin.name,
            if changed.admin.enabled {
                "enabled"
            } else {
                "disabled"
            },
            managed_sites_text(&changed)
        )
    });
    Ok(())
}

/// `--overlap`: refused with the value named (clap adds it), exit code 2.
fn parse_overlap(text: &str) -> Result<Overlap, String> {
    Overlap::parse(text).map_err(|error| error.to_string())
}

/// An instant as the CLI prints it: RFC 3339, UTC, whole seconds.
fn utc_seconds(at: chrono::NaiveDateTime) -> String {
    at.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn parse_action(name: &str) -> Result<Action, String> {
    Action::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Action::ALL.iter().map(|action| action.as_str()).collect();
        format!("unknown action {name:?}; one of: {}", names.join(", "))
    })
}

fn audit_list(config: &Config, query: &AuditQuery, json: bool) -> CliResult {
    let context = &server::open_context(config)?;
    let events = service::audit::list(context, query)?;
    let time = utc_seconds;
    let rows: Vec<Value> = events
        .iter()
        .map(|event| {
            json!({
                "id": event.id,
                "occurred_at": time(event.occurred_at),
                "last_at": time(event.last_at),
                "actor": {
                    "kind": event.actor.kind.as_str(),
                    "id": event.actor.id,
                    "name": event.actor.name,
                },
                "action": event.action.as_str(),
                "target": event.target,
                "source_address": event.source_address,
                "outcome": event.outcome.as_str(),
                "detail": event.detail,
                "occurrences": event.occurrences,
            })
        })
        .collect();
    print_output(json, &json!({ "events": rows }), || {
        let mut text = format!(
            "{:<20}  {:<32} {:<30} {:<8} {:>5}  TARGET / ADDRESS / DETAIL",
            "TIME (UTC)", "ACTOR", "ACTION", "OUTCOME", "COUNT"
        );
        for event in &events {
            let actor = format!(
                "{}:{}",
                event.actor.kind.as_str(),
                event.actor.id.as_deref().unwrap_or("-")
            );
            let extra: Vec<&str> = [&event.target, &event.source_address, &event.detail]
                .into_iter()
                .filter_map(|part| part.as_deref())
                .collect();
            text.push_str(&format!(
                "\n{:<20}  {:<32} {:<30} {:<8} {:>5}  {}",
                time(event.occurred_at),
                actor,
                event.action.as_str(),
                event.outcome.as_str(),
                event.occurrences,
                extra.join(" / ")
            ));
        }
        text
    });
    Ok(())
}

fn managed_sites_text(entry: &AdminWithSites) -> String {
    if entry.admin.manages_every_site() {
        "all".to_string()
    } else {
        entry.site_keys.join(", ")
    }
}

fn admin_json(entry: &AdminWithSites) -> Value {
    json!({
        "client_id": entry.admin.client_id,
        "name": entry.admin.name,
        "role": entry.admin.role.as_str(),
        "enabled": entry.admin.enabled,
        "sites": entry.site_keys,
        "created_at": entry.admin.created_at.and_utc().to_rfc3339(),
    })
}

fn print_output(json: bool, value: &Value, text: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
}
