//! A resource server: a small actix-web API whose routes accept a site's bearer token (RFC 6750)
//! and check it on every call with tokenwarden's introspection endpoint (RFC 7662), using the
//! API's own resource-server credentials. `docs/resource-servers.md` walks through it;
//! `tests/it/examples.rs` runs it against a real server.
//!
//! ```text
//! cargo run --example resource_server -- [OPTIONS]
//!
//! Options (each also read from the environment variable named after it):
//!   --tokenwarden URL    tokenwarden's issuer URL          TOKENWARDEN_URL  (http://127.0.0.1:8080)
//!   --client-id ID       this API's resource-server id     RS_CLIENT_ID
//!   --bind ADDRESS       where the API listens             BIND             (127.0.0.1:8081)
//!   --cache-ttl-ms MS    keep positive answers this long   CACHE_TTL_MS     (0: off)
//!   The client secret is read from RS_CLIENT_SECRET only, so it never shows in `ps`.
//! ```
//!
//! Routes: `GET /orders` (protected; answers JSON naming the calling site) and `GET /healthz`
//! (open). On start it reads tokenwarden's RFC 8414 metadata for the introspection endpoint and
//! prints `listening on http://ADDRESS` on standard output; everything else goes to standard error.
//!
//! Answers to callers (RFC 6750 3 and 3.1):
//! - no bearer token: 401, `WWW-Authenticate: Bearer realm="example"` (no error code);
//! - a malformed `Authorization` header: 400, `error="invalid_request"`;
//! - a token tokenwarden calls inactive: 401, `error="invalid_token"`; the caller should drop it
//!   and get the site's current token;
//! - tokenwarden unreachable or refusing this API's credentials: 503. Not 401: the token is not
//!   known to be bad, and a 401 would make every caller throw away a good token.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, App, FromRequest, HttpRequest, HttpResponse, HttpServer, ResponseError};
use serde_json::{json, Value};

const USAGE: &str = "usage: resource_server [--tokenwarden URL] [--client-id ID] [--bind ADDRESS] \
                     [--cache-ttl-ms MS]  (secret in RS_CLIENT_SECRET)";
const REALM: &str = "example";

fn main() -> ExitCode {
    match Settings::from_args(std::env::args().skip(1)).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

struct Settings {
    tokenwarden: String,
    client_id: String,
    /// Never printed.
    client_secret: String,
    bind: SocketAddr,
    cache_ttl: Duration,
}

impl Settings {
    fn from_args(args: impl Iterator<Item = String>) -> Result<Self, String> {
        let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let mut tokenwarden =
            env("TOKENWARDEN_URL").unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let mut client_id = env("RS_CLIENT_ID");
        let mut bind = env("BIND").unwrap_or_else(|| "127.0.0.1:8081".into());
        let mut cache_ttl_ms = env("CACHE_TTL_MS").unwrap_or_else(|| "0".into());
        let mut args = args;
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
            };
            match arg.as_str() {
                "--tokenwarden" => tokenwarden = value()?,
                "--client-id" => client_id = Some(value()?),
                "--bind" => bind = value()?,
                "--cache-ttl-ms" => cache_ttl_ms = value()?,
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        Ok(Self {
            tokenwarden: tokenwarden.trim_end_matches('/').to_string(),
            client_id: client_id.ok_or("set RS_CLIENT_ID or --client-id")?,
            client_secret: env("RS_CLIENT_SECRET").ok_or("set RS_CLIENT_SECRET")?,
            bind: bind
                .parse()
                .map_err(|e| format!("bind address {bind:?}: {e}"))?,
            cache_ttl: Duration::from_millis(
                cache_ttl_ms
                    .parse()
                    .map_err(|e| format!("cache TTL {cache_ttl_ms:?}: {e}"))?,
            ),
        })
    }
}

fn run(settings: Settings) -> Result<(), String> {
    // A blocking client must be built, and finally dropped, outside the async runtime: this one
    // lives until the server has stopped, and the workers use clones of it.
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))?;
    let introspection_endpoint = discover(&http, &settings.tokenwarden)?;
    let introspector = web::Data::new(Introspector {
        http: http.clone(),
        endpoint: introspection_endpoint,
        client_id: settings.client_id,
        client_secret: settings.client_secret,
        cache: (!settings.cache_ttl.is_zero()).then(|| PositiveCache::new(settings.cache_ttl)),
    });
    let outcome = actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(introspector.clone())
                .route("/orders", web::get().to(orders))
                .route("/healthz", web::get().to(|| async { "ok" }))
        })
        .bind(settings.bind)
        .map_err(|e| format!("binding {}: {e}", settings.bind))?;
        for address in server.addrs() {
            println!("listening on http://{address}");
        }
        server.run().await.map_err(|e| e.to_string())
    });
    drop(http);
    outcome
}

/// RFC 8414 3: the metadata lives at a well-known path under the issuer, and its `issuer` must be
/// the URL it was fetched for (3.3), or the endpoints in it are not to be trusted.
fn discover(http: &reqwest::blocking::Client, issuer: &str) -> Result<String, String> {
    let url = format!("{issuer}/.well-known/oauth-authorization-server");
    let metadata: Value = http
        .get(&url)
        .send()
        .and_then(|response| response.error_for_status())
        .and_then(|response| response.json())
        .map_err(|e| format!("reading {url}: {e}"))?;
    if metadata["issuer"] != issuer {
        return Err(format!(
            "{url} names the issuer {}; use that as the tokenwarden URL, or set the server's \
             TOKENWARDEN_ISSUER to {issuer}",
            metadata["issuer"]
        ));
    }
    metadata["introspection_endpoint"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{url} has no introspection_endpoint"))
}

/// The caller, as tokenwarden describes its token: a handler that takes a `Site` argument runs
/// only for an active token.
#[derive(Debug, Clone)]
struct Site {
    /// The site key (RFC 7662 `client_id`).
    key: String,
    name: String,
}

async fn orders(site: Site) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "site": site.key,
        "site_name": site.name,
        "orders": [
            {"id": 1001, "item": "green tea", "quantity": 2},
            {"id": 1002, "item": "teapot", "quantity": 1},
        ],
    }))
}

impl FromRequest for Site {
    type Error = Refusal;
    type Future = Pin<Box<dyn Future<Output = Result<Site, Refusal>>>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let token = bearer_token(request);
        let introspector = request.app_data::<web::Data<Introspector>>().cloned();
        Box::pin(async move {
            let token = token?;
            let introspector = introspector.ok_or(Refusal::Unavailable)?;
            if let Some(site) = introspector.cache.as_ref().and_then(|c| c.get(&token)) {
                return Ok(site);
            }
            let checker = introspector.clone();
            let token_for_check = token.clone();
            // (clippy.toml steers tokenwarden's own handlers to a `web::block` that carries
            // request ids; a resource server has none of those.)
            #[allow(clippy::disallowed_methods)]
            let answer = web::block(move || checker.introspect(&token_for_check))
                .await
                .map_err(|_| Refusal::Unavailable)??;
            let (site, expires) = answer.ok_or(Refusal::InvalidToken)?;
            if let Some(cache) = &introspector.cache {
                cache.put(token, site.clone(), expires);
            }
            Ok(site)
        })
    }
}

/// RFC 6750 2.1: `Authorization: Bearer <token>`, the scheme case-insensitive. Tokens in the query
/// string or body (2.2, 2.3) are not accepted: they end up in logs.
fn bearer_token(request: &HttpRequest) -> Result<String, Refusal> {
    let mut values = request.headers().get_all(header::AUTHORIZATION);
    let Some(value) = values.next() else {
        return Err(Refusal::NoToken);
    };
    if values.next().is_some() {
        return Err(Refusal::Malformed("more than one Authorization header"));
    }
    let value = value
        .to_str()
        .map_err(|_| Refusal::Malformed("the Authorization header is not ASCII"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another scheme carries no bearer token: answered like a request without one.
        return Err(Refusal::NoToken);
    }
    let token = token.trim();
    // RFC 6750 2.1 b64token syntax.
    let b64token = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    if token.is_empty() || !token.chars().all(b64token) {
        return Err(Refusal::Malformed("the bearer token is empty or malformed"));
    }
    Ok(token.to_string())
}

/// Asks tokenwarden about tokens, as this resource server.
struct Introspector {
    http: reqwest::blocking::Client,
    endpoint: String,
    client_id: String,
    client_secret: String,
    cache: Option<PositiveCache>,
}

impl Introspector {
    /// RFC 7662 2.1, blocking (run it in `web::block`). `None` for an inactive token; with the
    /// site, the token's expiry if it has one.
    fn introspect(&self, token: &str) -> Result<Option<(Site, Option<SystemTime>)>, Refusal> {
        let response = self
            .http
            .post(&self.endpoint)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .map_err(|e| {
                eprintln!("introspection failed: {e}");
                Refusal::Unavailable
            })?;
        let status = response.status();
        let answer: Value = response.json().unwrap_or(Value::Null);
        if !status.is_success() {
            // 401 invalid_client means this API's credentials are wrong or it was deleted.
            eprintln!("introspection answered {status}: {}", answer["error"]);
            return Err(Refusal::Unavailable);
        }
        // RFC 7662 2.2: `active` is the only member that matters for an inactive token.
        if answer["active"] != true {
            return Ok(None);
        }
        let expires = answer["exp"]
            .as_u64()
            .map(|exp| UNIX_EPOCH + Duration::from_secs(exp));
        Ok(Some((
            Site {
                key: answer["client_id"].as_str().unwrap_or_default().to_string(),
                name: answer["site_name"].as_str().unwrap_or_default().to_string(),
            },
            expires,
        )))
    }
}

/// Remembers active answers for a short time, so a burst of calls with one token costs one
/// introspection.
///
/// The trade-off: while an answer is cached, the token keeps working here even after it has been
/// invalidated (a leak reported, the site disabled) — for up to the TTL. tokenwarden itself never
/// does that: its answer reflects an invalidation on the very next request. So the cache is off by
/// default; turn it on only when the round trip matters more than that window, and keep the TTL
/// short (a few hundred ms). Inactive answers are never cached, so a freshly obtained token works
/// at once and guessing does not fill memory.
struct PositiveCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Site)>>,
}

/// Past this many entries, expired ones are swept before another is added.
const CACHE_SWEEP_AT: usize = 10_000;

impl PositiveCache {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, token: &str) -> Option<Site> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(token)
            .filter(|(until, _)| Instant::now() < *until)
            .map(|(_, site)| site.clone())
    }

    /// Never past the token's own expiry.
    fn put(&self, token: String, site: Site, expires: Option<SystemTime>) {
        let mut ttl = self.ttl;
        if let Some(expires) = expires {
            ttl = ttl.min(
                expires
                    .duration_since(SystemTime::now())
                    .unwrap_or_default(),
            );
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_SWEEP_AT {
            entries.retain(|_, (until, _)| now < *until);
            if entries.len() >= CACHE_SWEEP_AT {
                entries.clear();
            }
        }
        entries.insert(token, (now + ttl, site));
    }
}

/// Why a request is refused, as RFC 6750 3 says to answer it.
#[derive(Debug)]
enum Refusal {
    NoToken,
    Malformed(&'static str),
    InvalidToken,
    Unavailable,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::NoToken => "a bearer token is required",
            Refusal::Malformed(why) => why,
            Refusal::InvalidToken => "the access token is not active",
            Refusal::Unavailable => "the token cannot be checked right now; retry shortly",
        })
    }
}

impl ResponseError for Refusal {
    fn status_code(&self) -> StatusCode {
        match self {
            Refusal::NoToken | Refusal::InvalidToken => StatusCode::UNAUTHORIZED,
            Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
            Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let code = match self {
            Refusal::NoToken => None,
            Refusal::Malformed(_) => Some("invalid_request"),
            Refusal::InvalidToken => Some("invalid_token"),
            Refusal::Unavailable => Some("temporarily_unavailable"),
        };
        let mut response = HttpResponse::build(self.status_code());
        let challenge = match code {
            // RFC 6750 3.1: no error code when the request had no authentication at all.
            None => Some(format!("Bearer realm=\"{REALM}\"")),
            Some("temporarily_unavailable") => None,
            Some(code) => Some(format!(
                "Bearer realm=\"{REALM}\", error=\"{code}\", error_description=\"{self}\""
            )),
        };
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.insert_header((header::WWW_AUTHENTICATE, value));
        }
        response.json(json!({
            "error": code.unwrap_or("unauthorized"),
            "error_description": self.to_string(),
        }))
    }
}
