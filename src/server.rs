//! Builds the application: secret, keys, database pool and migrations, then the HTTP server.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::Logger;
use actix_web::{web, App, HttpServer};

use crate::config::{Config, ConfigError};
use crate::crypto::Keys;
use crate::http::{self, AppState};
use crate::service::Context;
use crate::store::{Store, StoreError};

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
    Ok(Context {
        store,
        keys: Arc::new(Keys::derive(&secret)),
    })
}

/// Binds the listening socket and builds the server; `await` the returned [`Server`] to run it.
/// Binding happens here, before any `await`, so the caller learns the real port (for `:0`) at once.
pub fn start(config: &Config, context: Context) -> Result<(Server, SocketAddr), StartError> {
    let bind_error = |source| StartError::Bind {
        address: config.bind,
        source,
    };
    let listener = TcpListener::bind(config.bind).map_err(bind_error)?;
    let address = listener.local_addr().map_err(bind_error)?;
    let state = web::Data::new(AppState {
        context,
        max_body_bytes: config.max_body_bytes,
    });
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(request_logger())
            .configure(http::configure)
    });
    if let Some(workers) = config.workers {
        server = server.workers(workers);
    }
    let server = server.listen(listener).map_err(bind_error)?.run();
    Ok((server, address))
}

/// One line per request: method, path (never the query string, which could carry a token sent by
/// mistake), status and latency.
fn request_logger() -> Logger {
    Logger::new("%{method}xi %U %s %Dms")
        .custom_request_replace("method", |request| request.method().to_string())
}
