//! The yardstick of `scripts/bench`: a bare actix-web server of the same shape as
//! `POST /oauth2/introspect`, with none of tokenwarden behind it.
//!
//! Issue 3 asks introspection to come close to "what the bare HTTP stack can do". This is that
//! stack, measured in the same run, on the same core, with the same load, so the ratio between the
//! two is what the benchmark reports (absolute requests/s depend on the machine and on whatever
//! else it runs). The handler does what every tokenwarden handler must do before its own work:
//! take the whole form body, read the `Authorization` header, and answer a small JSON with the
//! `no-store` headers of RFC 6749 5.1. Same actix-web version and features as the main crate; no
//! middleware, no logging, no database.
//!
//! ```text
//! cargo run --release --example bare_server -- [--bind 127.0.0.1:0] [--workers 1]
//! ```
//! `BARE_SERVER_BIND` and `BARE_SERVER_WORKERS` are read when the flags are absent. The bound
//! address is printed on stdout (`bare_server listening on http://ADDR`), so port 0 works.

use std::io::Write;
use std::net::TcpListener;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::Serialize;

#[derive(Serialize)]
struct Answer {
    active: bool,
    token_type: &'static str,
}

async fn introspect(request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let authorized = request.headers().get(header::AUTHORIZATION).is_some();
    let has_token = body.windows(6).any(|window| window == b"token=");
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")))
        .json(Answer {
            active: authorized && has_token,
            token_type: "Bearer",
        })
}

/// `--name VALUE` from the command line, else the environment variable, else the default.
fn setting(name: &str, env: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == name)
        .and_then(|at| args.get(at + 1).cloned())
        .or_else(|| std::env::var(env).ok())
        .unwrap_or_else(|| default.to_string())
}

fn main() -> std::io::Result<()> {
    let bind = setting("--bind", "BARE_SERVER_BIND", "127.0.0.1:8081");
    let workers: usize = setting("--workers", "BARE_SERVER_WORKERS", "1")
        .parse()
        .map_err(|_| std::io::Error::other("--workers takes a positive number"))?;
    let listener = TcpListener::bind(&bind)?;
    let address = listener.local_addr()?;
    actix_web::rt::System::new().block_on(async move {
        let server =
            HttpServer::new(|| App::new().route("/introspect", web::post().to(introspect)))
                .workers(workers.max(1))
                .listen(listener)?
                .run();
        println!("bare_server listening on http://{address}");
        std::io::stdout().flush()?;
        server.await
    })
}
