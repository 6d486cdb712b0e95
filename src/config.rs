//! Configuration as one value, loaded once at the edge (defaults < config file < environment <
//! flags, through clap in `cli`) and passed down; no globals. Also where the server secret comes
//! from.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::crypto::{RandomnessUnavailable, ServerSecret, SECRET_LEN};
use crate::domain::client_address::TrustedProxies;
use crate::domain::secret::Secret;
use crate::domain::throttle::ThrottleLimits;
use crate::store::{DatabaseUrl, PoolSettings};
use crate::tls::TlsFiles;

/// Default address: loopback only, so a first `serve` exposes nothing to the network.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
/// Default database: an SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://tokenwarden.db";
/// Largest request body accepted; OAuth requests are a few hundred bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;
/// Default bound of the introspection cache, in entries (~300 bytes each).
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;
/// Default interval of `last_used_at` writes.
pub const DEFAULT_USAGE_FLUSH_SECS: u64 = 2;
/// Default resolution of `last_used_at`: a token in steady use is written once a minute.
pub const DEFAULT_USAGE_RESOLUTION_SECS: u64 = 60;
/// Longest usage resolution: a day, beyond which `last_used_at` says little.
pub const MAX_USAGE_RESOLUTION_SECS: u64 = 86_400;
/// Default lifetime of an admin token: short, since it unlocks every site its admin manages.
pub const DEFAULT_ADMIN_TOKEN_TTL_SECS: u64 = 3600;
/// Default furthest `expires_at` a non-primary token may be given.
pub const DEFAULT_MAX_TOKEN_LIFETIME_DAYS: u64 = 365;
/// Upper bounds of those two settings: an admin token is meant to be short-lived, and every expiry
/// must stay a four-digit year, which both backends store and compare correctly.
pub const MAX_ADMIN_TOKEN_TTL_SECS: u64 = 86_400;
pub const MAX_TOKEN_LIFETIME_DAYS: u64 = 3_650;
/// Default retention of the audit trail, in days.
pub const DEFAULT_AUDIT_RETENTION_DAYS: u64 = 365;
/// Default time requests in flight get to finish after SIGTERM or SIGINT: what
/// `docker stop` and Kubernetes wait before they kill.
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 30;

/// Where the server secret (the root of every key in `crypto::Keys`) comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// `TOKENWARDEN_SECRET`: 32 bytes, base64url. Every node of a cluster must use the same.
    Value(Secret),
    /// `--secret-file`: a file holding that value; created (mode 0600) if missing.
    File(PathBuf),
    /// SQLite default: the database path with its extension replaced by `.secret`
    /// (`data/tokenwarden.db` → `data/tokenwarden.secret`), created (0600) if missing.
    NextToDatabase,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub database: DatabaseUrl,
    pub secret: SecretSource,
    pub pool: PoolSettings,
    pub max_body_bytes: usize,
    /// HTTP worker threads; `None` lets actix use one per core.
    pub workers: Option<usize>,
    /// The issuer identifier published in the RFC 8414 metadata; `None` derives `http(s)://<bind>`.
    pub issuer: Option<String>,
    /// Whether introspection and repeat token requests may answer from memory (exact either way;
    /// see `store::ChangeFeed`).
    pub introspection_cache: bool,
    /// Most entries each cache holds (introspected tokens and unknown values; sites; primary
    /// tokens).
    pub cache_capacity: usize,
    /// How often batched `last_used_at` times are written.
    pub usage_flush_interval: Duration,
    /// How long later uses of a token wait once one is written, the latest then written
    /// (`service::usage`'s quiet time); zero writes every use at the next flush.
    pub usage_resolution: Duration,
    /// How long an admin token works after it is issued (`expires_in` of the admin grant).
    pub admin_token_ttl: Duration,
    /// The furthest ahead an admin may set a non-primary token's `expires_at`.
    pub max_token_lifetime: Duration,
    /// Whether creating a non-primary token needs an expiry (given, or from
    /// `default_token_lifetime`).
    pub require_token_expiry: bool,
    /// How far ahead a non-primary token created without `expires_at` expires; `None`: never.
    /// At most `max_token_lifetime`.
    pub default_token_lifetime: Option<Duration>,
    /// The scopes non-primary tokens may carry; empty means tokens carry no scope.
    pub token_scopes: Vec<String>,
    /// HTTPS served directly; `None` serves plain HTTP (behind a TLS-terminating proxy).
    pub tls: Option<TlsFiles>,
    /// How long requests in flight may take to finish after a stop signal.
    pub shutdown_timeout: Duration,
    /// Brute-force throttling of failed client authentication.
    pub throttle: ThrottleLimits,
    /// How long audit events are kept; `None` keeps everything.
    pub audit_retention: Option<Duration>,
    /// How often throttle locks, alarms and the aggregated failed authentications noted in memory
    /// are written to the audit trail (aggregates once their window is over).
    pub audit_flush_interval: Duration,
    /// How often this node hands its failed-authentication counts to the other nodes and takes
    /// theirs (`domain::throttle`): the most their counts lag behind one another.
    pub throttle_share_interval: Duration,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` headers name the client's address
    /// (`domain::client_address`); empty: the TCP peer is the client.
    pub trusted_proxies: TrustedProxies,
    pub connections: ConnectionLimits,
}

/// Bounds on HTTP connections, so slow or idle clients cannot hold the server (actix-web's
/// `HttpServer` settings). Request heads have fixed bounds in actix-http 3: 128 KiB (else 431)
/// and 96 headers (else 431).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections per worker; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// How long an idle connection is kept open between requests; zero turns keep-alive off.
    pub keep_alive: Duration,
    /// How long a new connection may take to send its first request's line and headers, and any
    /// request its body (then 408 and closed): the bound on slowloris clients.
    pub client_request_timeout: Duration,
    /// How long a closing connection may take to shut down before it is dropped.
    pub client_disconnect_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            keep_alive: Duration::from_secs(5),
            client_request_timeout: Duration::from_secs(5),
            client_disconnect_timeout: Duration::from_secs(1),
        }
    }
}

impl Config {
    /// Loopback on an OS-chosen port, the given database, a fixed test secret. Throttling is on
    /// with limits no functional test reaches (some poll with failing requests); the throttling
    /// tests set their own.
    pub fn for_tests(database: DatabaseUrl) -> Self {
        Self {
            bind: "127.0.0.1:0".parse().expect("a valid literal address"),
            database,
            secret: SecretSource::Value(Secret::new(URL_SAFE_NO_PAD.encode([42u8; SECRET_LEN]))),
            pool: PoolSettings::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            workers: Some(2),
            issuer: None,
            introspection_cache: true,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            usage_flush_interval: Duration::from_millis(200),
            // Every use written, so tests can watch each flush; the resolution has its own tests.
            usage_resolution: Duration::ZERO,
            admin_token_ttl: Duration::from_secs(DEFAULT_ADMIN_TOKEN_TTL_SECS),
            max_token_lifetime: Duration::from_secs(DEFAULT_MAX_TOKEN_LIFETIME_DAYS * 86_400),
            require_token_expiry: false,
            default_token_lifetime: None,
            token_scopes: Vec::new(),
            tls: None,
            shutdown_timeout: Duration::from_secs(DEFAULT_SHUTDOWN_TIMEOUT_SECS),
            throttle: ThrottleLimits {
                client_failures: 1_000,
                address_failures: 10_000,
                ..ThrottleLimits::default()
            },
            audit_retention: Some(Duration::from_secs(DEFAULT_AUDIT_RETENTION_DAYS * 86_400)),
            audit_flush_interval: Duration::from_millis(200),
            throttle_share_interval: Duration::from_millis(200),
            trusted_proxies: TrustedProxies::default(),
            connections: ConnectionLimits::default(),
        }
    }

    /// The issuer identifier (RFC 8414 2): configured, or derived from the bound address.
    pub fn issuer(&self, bound: SocketAddr) -> String {
        self.issuer
            .clone()
            .unwrap_or_else(|| format!("{}://{bound}", self.scheme()))
            .trim_end_matches('/')
            .to_string()
    }

    /// `https` when the server itself terminates TLS.
    pub fn scheme(&self) -> &'static str {
        match self.tls {
            Some(_) => "https",
            None => "http",
        }
    }

    /// Reads, or on first use creates, the server secret.
    pub fn server_secret(&self) -> Result<ServerSecret, ConfigError> {
        match &self.secret {
            SecretSource::Value(value) => decode_secret(value.expose().trim()),
            SecretSource::File(path) => load_or_create_secret_file(path),
            SecretSource::NextToDatabase => match &self.database {
                DatabaseUrl::Sqlite(path) => load_or_create_secret_file(&secret_path_for(path)),
                DatabaseUrl::Postgres(_) => Err(ConfigError::SecretRequired),
            },
        }
    }
}

/// `data/tokenwarden.db` keeps its secret in `data/tokenwarden.secret`.
pub fn secret_path_for(database_path: &Path) -> PathBuf {
    database_path.with_extension("secret")
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "a PostgreSQL deployment needs an explicit server secret shared by every node: set \
         TOKENWARDEN_SECRET or --secret-file (generate one with `tokenwarden secret generate`)"
    )]
    SecretRequired,
    #[error("the server secret must be {SECRET_LEN} bytes encoded as base64url")]
    MalformedSecret,
    #[error("cannot read or create the secret file {path}: {source}")]
    SecretFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Anyone who can read the secret file can mint every key the server derives from it.
    #[error(
        "the secret file {path} is readable by group or others (mode {mode:o}): whoever can read \
         it can forge every credential; make it private with `chmod 600 {path}` and check who \
         may have read it"
    )]
    SecretFileExposed { path: PathBuf, mode: u32 },
    #[error(transparent)]
    Randomness(#[from] RandomnessUnavailable),
}

/// A newly generated secret, encoded for `TOKENWARDEN_SECRET` or a secret file.
pub fn generate_encoded_secret() -> Result<Secret, RandomnessUnavailable> {
    Ok(Secret::new(
        URL_SAFE_NO_PAD.encode(ServerSecret::generate()?.expose()),
    ))
}

fn decode_secret(encoded: &str) -> Result<ServerSecret, ConfigError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| ConfigError::MalformedSecret)?;
    let bytes: [u8; SECRET_LEN] = bytes.try_into().map_err(|_| ConfigError::MalformedSecret)?;
    Ok(ServerSecret::from_bytes(bytes))
}

/// Two processes starting at once (a server and a CLI command) must end up with the same secret,
/// and neither may read a half-written file. The secret is written to a private temporary file,
/// synced, then hard-linked to `path`, which fails if `path` exists: the name only ever appears
/// with its full content, and whoever loses the race reads the winner's.
fn load_or_create_secret_file(path: &Path) -> Result<ServerSecret, ConfigError> {
    let file_error = |source| ConfigError::SecretFile {
        path: path.to_path_buf(),
        source,
    };
    if !path.exists() {
        let encoded = generate_encoded_secret()?;
        let suffix: [u8; 8] = crate::crypto::random_bytes()?;
        let staging = path.with_extension(format!("secret.{}.tmp", URL_SAFE_NO_PAD.encode(suffix)));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staging)
            .and_then(|mut file| {
                file.write_all(format!("{}\n", encoded.expose()).as_bytes())?;
                file.sync_all()
            })
            .and_then(|()| fs::hard_link(&staging, path));
        let _ = fs::remove_file(&staging);
        match written {
            Ok(()) => {
                log::info!("generated a new server secret in {}", path.display());
                return decode_secret(encoded.expose());
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(file_error(err)),
        }
    }
    let mode = fs::metadata(path).map_err(file_error)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(ConfigError::SecretFileExposed {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    let encoded = fs::read_to_string(path).map_err(file_error)?;
    decode_secret(encoded.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_created_private_and_read_back_identically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tw.secret");
        let first = load_or_create_secret_file(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = load_or_create_secret_file(&path).unwrap();
        assert_eq!(first.expose(), second.expose());
    }

    #[test]
    fn concurrent_creators_all_read_the_one_complete_secret() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("tw.secret");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let readers: Vec<_> = (0..8)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        load_or_create_secret_file(&path).unwrap().expose().to_vec()
                    })
                })
                .collect();
            let secrets: Vec<Vec<u8>> = readers.into_iter().map(|r| r.join().unwrap()).collect();
            assert!(secrets.iter().all(|secret| *secret == secrets[0]));
            let leftovers = fs::read_dir(dir.path()).unwrap().count();
            assert_eq!(leftovers, 1, "staging files must be removed");
        }
    }

    #[test]
    fn a_secret_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tw.secret");
        load_or_create_secret_file(&path).unwrap();
        for mode in [0o640, 0o604, 0o660] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let refused = load_or_create_secret_file(&path).unwrap_err();
            assert!(
                matches!(refused, ConfigError::SecretFileExposed { mode: m, .. } if m == mode),
                "{refused}"
            );
            let message = refused.to_string();
            assert!(
                message.contains("chmod 600") && message.contains("tw.secret"),
                "{message}"
            );
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(load_or_create_secret_file(&path).is_ok());
    }

    #[test]
    fn malformed_secrets_are_refused() {
        for bad in ["", "short", &"A".repeat(44), "!!!!"] {
            assert!(matches!(
                decode_secret(bad),
                Err(ConfigError::MalformedSecret)
            ));
        }
        let good = generate_encoded_secret().unwrap();
        assert!(decode_secret(good.expose()).is_ok());
    }

    #[test]
    fn postgres_needs_an_explicit_secret() {
        let mut config = Config::for_tests(DatabaseUrl::parse("postgres://h/db").unwrap());
        config.secret = SecretSource::NextToDatabase;
        assert!(matches!(
            config.server_secret(),
            Err(ConfigError::SecretRequired)
        ));
    }

    #[test]
    fn the_derived_issuer_is_https_when_the_server_terminates_tls() {
        let mut config = Config::for_tests(DatabaseUrl::parse("postgres://h/db").unwrap());
        let bound: SocketAddr = "10.0.0.7:8443".parse().unwrap();
        assert_eq!(config.issuer(bound), "http://10.0.0.7:8443");
        config.tls = Some(TlsFiles {
            cert: "cert.pem".into(),
            key: "key.pem".into(),
        });
        assert_eq!(config.issuer(bound), "https://10.0.0.7:8443");
        config.issuer = Some("https://auth.example.com/".into());
        assert_eq!(config.issuer(bound), "https://auth.example.com");
    }

    #[test]
    fn the_secret_file_sits_next_to_the_database() {
        assert_eq!(
            secret_path_for(Path::new("data/tokenwarden.db")),
            PathBuf::from("data/tokenwarden.secret")
        );
    }
}
