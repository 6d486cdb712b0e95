//! Builds the application: secret, keys, database pool and migrations, caches, background tasks,
//! then the HTTP server.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::KeepAlive;
use actix_web::{web, App, HttpServer};
use futures_util::future::{select, Either};

use crate::config::{Config, ConfigError};
use crate::crypto::Keys;
use crate::domain::throttle::Throttle;
use crate::domain::token_policy::TokenPolicy;
use crate::http::metrics::Metrics;
use crate::http::{self, AppState};
use crate::service::audit::AuditTrail;
use crate::service::background::{Runner, Schedule, Wakeup};
use crate::service::introspect::Introspection;
use crate::service::token_grant::GrantCaches;
use crate::service::{Context, Counters};
use crate::store::{Store, StoreError};
use crate::tls::TlsError;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open the database {url}: {source}")]
    Database {
        url: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start a background thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen for stop signals: {0}")]
    Signals(#[source] std::io::Error),
}

/// A configured span as chrono's type; anything beyond its range (about 292 million years) means
/// "never".
fn time_delta(span: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(span).unwrap_or(chrono::TimeDelta::MAX)
}

/// Loads the server secret and opens (and migrates) the database: what the server and every CLI
/// command need before doing anything.
pub fn open_context(config: &Config) -> Result<Context, StartError> {
    let secret = config.server_secret()?;
    let store =
        Store::open(&config.database, &config.pool).map_err(|source| StartError::Database {
            url: format!("{:?}", config.database),
            source,
        })?;
    let keys = Keys::derive(&secret);
    let throttle_hash_keys = keys.throttle_hash_keys();
    Ok(Context {
        store,
        keys: Arc::new(keys),
        introspection: Arc::new(Introspection::new(
            config.introspection_cache,
            config.cache_capacity,
            time_delta(config.usage_resolution),
        )),
        grants: Arc::new(GrantCaches::new(
            config.introspection_cache,
            config.cache_capacity,
        )),
        counters: Arc::new(Counters::default()),
        policy: Arc::new(TokenPolicy {
            admin_token_ttl: time_delta(config.admin_token_ttl),
            max_token_lifetime: time_delta(config.max_token_lifetime),
            require_expiry: config.require_token_expiry,
            default_lifetime: config.default_token_lifetime.map(time_delta),
            scopes: config.token_scopes.clone(),
        }),
        throttle: Arc::new(Throttle::new(config.throttle, throttle_hash_keys)),
        audit: Arc::new(AuditTrail::new(
            config.audit_retention.map(time_delta),
            time_delta(config.throttle.window),
        )),
        background: Arc::new(Wakeup::default()),
    })
}

/// A running server and the background work that lives as long as it does.
pub struct Started {
    /// `await` it to run the server; it finishes after a stop signal.
    pub server: Server,
    pub address: SocketAddr,
    /// Stop and drain with [`BackgroundTasks::shutdown`] once `server` has finished.
    pub background: BackgroundTasks,
}

/// Binds the listening socket, starts the background tasks and builds the server. Binding happens
/// before any `await`, so the caller learns the real port (for `:0`) at once.
pub fn start(config: &Config, context: Context) -> Result<Started, StartError> {
    let bind_error = |source| StartError::Bind {
        address: config.bind,
        source,
    };
    let tls = config
        .tls
        .as_ref()
        .map(|files| files.server_config())
        .transpose()?;
    let listener = TcpListener::bind(config.bind).map_err(bind_error)?;
    let address = listener.local_addr().map_err(bind_error)?;
    if tls.is_none() && !address.ip().is_loopback() {
        warn_plaintext(address);
    }
    let background = BackgroundTasks {
        runner: Runner::start(
            &context,
            Schedule::new(
                config.usage_flush_interval,
                config.audit_flush_interval,
                config.throttle_share_interval,
            ),
        )
        .map_err(StartError::Thread)?,
    };
    let state = web::Data::new(AppState {
        context: context.clone(),
        max_body_bytes: config.max_body_bytes,
        body_timeout: config.connections.client_request_timeout,
        trusted_proxies: config.trusted_proxies.clone(),
        issuer: config.issuer(address),
    });
    let metrics = web::Data::new(Metrics::new(context));
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(metrics.clone())
            .configure(http::configure)
    });
    if let Some(workers) = config.workers {
        server = server.workers(workers);
    }
    let limits = &config.connections;
    let keep_alive = match limits.keep_alive {
        Duration::ZERO => KeepAlive::Disabled,
        idle => KeepAlive::Timeout(idle),
    };
    let server = server
        .max_connections(limits.max_connections)
        .keep_alive(keep_alive)
        .client_request_timeout(limits.client_request_timeout)
        .client_disconnect_timeout(limits.client_disconnect_timeout)
        .shutdown_timeout(config.shutdown_timeout.as_secs())
        .shutdown_signal(stop_signal(config.shutdown_timeout)?);
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls),
        None => server.listen(listener),
    };
    let server = server.map_err(bind_error)?.run();
    Ok(Started {
        server,
        address,
        background,
    })
}

/// RFC 6749 1.6 and 10.9 require TLS on every request to the authorization server: client
/// secrets and tokens travel in these requests and bodies, and whoever reads them can use them.
/// Plain HTTP is fine on loopback (a proxy on the same host terminates TLS); elsewhere it is
/// right only behind a TLS-terminating proxy on a trusted network, which the server cannot see,
/// so it warns rather than refuses.
fn warn_plaintext(address: SocketAddr) {
    log::warn!(
        "serving plain HTTP on {address}, which is not a loopback address: client secrets and \
         tokens must not cross an untrusted network in clear (RFC 6749 1.6, 10.9); serve HTTPS \
         with --tls-cert and --tls-key, or keep a TLS-terminating proxy in front"
    );
}

/// SIGTERM (what systemd, Docker and Kubernetes send) and SIGINT (Ctrl-C) both stop gracefully:
/// the listener closes, so new connections are refused, and requests in flight get up to
/// `timeout` to finish (keep-alive connections close after their current response). actix's
/// own handlers would treat SIGINT as a forced stop, so they are replaced. Registered here,
/// before the server runs, so no signal is missed; SIGKILL still ends the process at once.
fn stop_signal(timeout: Duration) -> Result<impl Future<Output = ()>, StartError> {
    use actix_web::rt::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).map_err(StartError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(StartError::Signals)?;
    Ok(async move {
        let name = match select(pin!(terminate.recv()), pin!(interrupt.recv())).await {
            Either::Left(_) => "SIGTERM",
            Either::Right(_) => "SIGINT",
        };
        log::info!(
            "{name} received: refusing new connections, finishing requests in flight (for at \
             most {}s)",
            timeout.as_secs()
        );
    })
}

/// The background runner, and the access-log lines still pending at a stop.
pub struct BackgroundTasks {
    runner: Runner,
}

impl BackgroundTasks {
    /// Runs the background jobs' last passes, writes the access-log lines still pending, and
    /// stops the threads. Call it once the server has stopped.
    pub fn shutdown(self) {
        self.runner.shutdown();
        http::access_log::write_out_all();
    }
}
