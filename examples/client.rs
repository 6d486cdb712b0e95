//! An integrator's program: obtains the site's primary token once, keeps it in a cache file, calls
//! a protected API with it, and invalidates and renews it on request. `docs/integrators.md` walks
//! through it; `tests/it/examples.rs` runs it against a real server.
//!
//! ```text
//! cargo run --example client -- [OPTIONS] [call | token | renew]
//!
//!   call    (default) GET the API with the cached token; a token the API refuses with
//!           `401 WWW-Authenticate: Bearer error="invalid_token"` is dropped and a fresh one is
//!           obtained, once
//!   token   make sure a token is cached (asks tokenwarden only when none is) and print it masked
//!   renew   invalidate the cached token at tokenwarden (a leak) and obtain and cache a new one
//!
//! Options (each also read from the environment variable named after it):
//!   --server URL    tokenwarden's base URL          TOKENWARDEN_URL  (http://127.0.0.1:8080)
//!   --site-key KEY  the site's key (client id)      SITE_KEY
//!   --cache FILE    the token cache file            TOKEN_CACHE      (tokenwarden-token.json)
//!   --api URL       the protected API to call       API_URL          (http://127.0.0.1:8081/orders)
//!   The auth key (client secret) is read from AUTH_KEY only, so it never shows in `ps`.
//! ```
//!
//! The rules it follows: the primary token does not expire, so it is requested once and kept, not
//! requested per call; it lives in a file only its owner can read (mode 0600); and it is never
//! printed, only a masked form (`twp_…abcd`). Standard output carries the API's answer (or, for
//! `token`, the masked token); progress goes to standard error. Exit status 1 on any failure.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::StatusCode;
use serde_json::{json, Value};

const USAGE: &str = "usage: client [--server URL] [--site-key KEY] [--cache FILE] [--api URL] \
                     [call|token|renew]  (auth key in AUTH_KEY)";

fn main() -> ExitCode {
    match Settings::from_args(std::env::args().skip(1)).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Call,
    Token,
    Renew,
}

struct Settings {
    server: String,
    site_key: String,
    /// The client secret. Never printed, never in `Debug` output.
    auth_key: String,
    cache: PathBuf,
    api: String,
    command: Command,
}

impl Settings {
    fn from_args(args: impl Iterator<Item = String>) -> Result<Self, String> {
        let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let mut server = env("TOKENWARDEN_URL").unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let mut site_key = env("SITE_KEY");
        let mut cache = env("TOKEN_CACHE").unwrap_or_else(|| "tokenwarden-token.json".into());
        let mut api = env("API_URL").unwrap_or_else(|| "http://127.0.0.1:8081/orders".into());
        let mut command = Command::Call;
        let mut args = args;
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
            };
            match arg.as_str() {
                "--server" => server = value()?,
                "--site-key" => site_key = Some(value()?),
                "--cache" => cache = value()?,
                "--api" => api = value()?,
                "call" => command = Command::Call,
                "token" => command = Command::Token,
                "renew" => command = Command::Renew,
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        Ok(Self {
            server: server.trim_end_matches('/').to_string(),
            site_key: site_key.ok_or("set SITE_KEY or --site-key to the site's key")?,
            auth_key: env("AUTH_KEY").ok_or("set AUTH_KEY to the site's auth key")?,
            cache: PathBuf::from(cache),
            api,
            command,
        })
    }
}

fn run(settings: Settings) -> Result<(), String> {
    let tokenwarden = Tokenwarden::new(&settings)?;
    let cache = TokenCache {
        path: &settings.cache,
        server: &settings.server,
        site_key: &settings.site_key,
    };
    match settings.command {
        Command::Token => {
            let (token, _) = current_token(&tokenwarden, &cache)?;
            println!("{}", masked(&token));
            Ok(())
        }
        Command::Renew => renew(&tokenwarden, &cache),
        Command::Call => call(&tokenwarden, &cache, &settings.api),
    }
}

/// The cached token if there is one; otherwise one from tokenwarden, cached before it is used.
/// The flag says whether it was just obtained.
fn current_token(tokenwarden: &Tokenwarden, cache: &TokenCache) -> Result<(String, bool), String> {
    if let Some(token) = cache.load() {
        eprintln!(
            "using the cached token {} from {}",
            masked(&token),
            cache.path.display()
        );
        return Ok((token, false));
    }
    let token = tokenwarden.obtain()?;
    cache.store(&token)?;
    eprintln!(
        "obtained the primary token {} from tokenwarden; cached in {}",
        masked(&token),
        cache.path.display()
    );
    Ok((token, true))
}

/// Calls the API. One retry, and only for the answer RFC 6750 3.1 defines for a token that is no
/// longer valid (invalidated after a leak, or its site disabled): drop it, ask for the current one.
fn call(tokenwarden: &Tokenwarden, cache: &TokenCache, api: &str) -> Result<(), String> {
    let (token, fresh) = current_token(tokenwarden, cache)?;
    let mut response = tokenwarden.call_api(api, &token)?;
    if is_invalid_token(&response) {
        if fresh {
            return Err(format!(
                "the API refused a token just obtained ({}); does it check tokens with the same \
                 tokenwarden?",
                masked(&token)
            ));
        }
        eprintln!(
            "the API refused the cached token {} as invalid_token; dropping it",
            masked(&token)
        );
        cache.remove()?;
        let (token, _) = current_token(tokenwarden, cache)?;
        response = tokenwarden.call_api(api, &token)?;
    }
    let status = response.status();
    let body = response
        .text()
        .map_err(|e| format!("reading the API's answer: {e}"))?;
    println!("{body}");
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the API answered {status}"))
    }
}

/// Invalidates the token this program holds (or, with an empty cache, the site's current one)
/// and caches its successor. Run it when the token may have leaked.
fn renew(tokenwarden: &Tokenwarden, cache: &TokenCache) -> Result<(), String> {
    let old = match cache.load() {
        Some(token) => token,
        None => tokenwarden.obtain()?,
    };
    tokenwarden.invalidate(&old)?;
    cache.remove()?;
    eprintln!("invalidated {}", masked(&old));
    let new = tokenwarden.obtain()?;
    cache.store(&new)?;
    eprintln!(
        "obtained the primary token {} from tokenwarden; cached in {}",
        masked(&new),
        cache.path.display()
    );
    Ok(())
}

/// `WWW-Authenticate: Bearer … error="invalid_token"` on a 401 (RFC 6750 3).
fn is_invalid_token(response: &Response) -> bool {
    response.status() == StatusCode::UNAUTHORIZED
        && response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|value| {
                value
                    .get(..7)
                    .is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer "))
                    && value.contains("error=\"invalid_token\"")
            })
}

/// tokenwarden's endpoints, with the site's credentials.
struct Tokenwarden<'a> {
    http: Client,
    settings: &'a Settings,
}

impl<'a> Tokenwarden<'a> {
    fn new(settings: &'a Settings) -> Result<Self, String> {
        let http = Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Self { http, settings })
    }

    /// RFC 6749 4.4: client credentials grant with HTTP Basic client authentication (2.3.1; site
    /// and auth keys use only characters that need no form-encoding first). tokenwarden answers
    /// with the same primary token until it is invalidated; it has no `expires_in`.
    fn obtain(&self) -> Result<String, String> {
        let answer = self.post("/oauth2/token", &[("grant_type", "client_credentials")])?;
        answer["access_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "tokenwarden's answer has no access_token".into())
    }

    /// tokenwarden's `/oauth2/invalidate_token`: the token stops working at once, everywhere.
    /// Repeating it for a value that was once the site's primary token is harmless.
    fn invalidate(&self, token: &str) -> Result<(), String> {
        self.post("/oauth2/invalidate_token", &[("access_token", token)])
            .map(drop)
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> Result<Value, String> {
        let url = format!("{}{path}", self.settings.server);
        let response = self
            .http
            .post(&url)
            .basic_auth(&self.settings.site_key, Some(&self.settings.auth_key))
            .form(form)
            .send()
            .map_err(|e| format!("POST {url}: {}", without_url(&e)))?;
        let status = response.status();
        let body: Value = response.json().unwrap_or_else(|_| json!({}));
        if status.is_success() {
            return Ok(body);
        }
        // RFC 6749 5.2 error answer; its description never contains a secret.
        let error = body["error"].as_str().unwrap_or("error");
        let description = body["error_description"].as_str().unwrap_or_default();
        let hint = if status == StatusCode::UNAUTHORIZED {
            " (check SITE_KEY and AUTH_KEY)"
        } else {
            ""
        };
        Err(format!(
            "{error}: {description} [{status} from {path}]{hint}"
        ))
    }

    /// RFC 6750 2.1: the token goes in the `Authorization` header, never in the URL.
    fn call_api(&self, api: &str, token: &str) -> Result<Response, String> {
        self.http
            .get(api)
            .bearer_auth(token)
            .send()
            .map_err(|e| format!("GET {api}: {}", without_url(&e)))
    }
}

/// reqwest errors, without the URL they repeat.
fn without_url(error: &reqwest::Error) -> String {
    let mut error = error.to_string();
    if let Some(start) = error.find(" for url (") {
        error.truncate(start);
    }
    error
}

/// The cache file: one JSON object naming the server and site the token belongs to, so a changed
/// configuration never sends one site's token on behalf of another.
struct TokenCache<'a> {
    path: &'a Path,
    server: &'a str,
    site_key: &'a str,
}

impl TokenCache<'_> {
    fn load(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.path).ok()?;
        let cached: Value = serde_json::from_str(&text).ok()?;
        if cached["server"] != self.server || cached["site_key"] != self.site_key {
            eprintln!(
                "{} holds a token for another server or site; ignoring it",
                self.path.display()
            );
            return None;
        }
        cached["access_token"].as_str().map(str::to_string)
    }

    /// Writes a temporary file readable by its owner only and renames it over the cache, so a
    /// crash never leaves half a token and the token is never readable by others, not even briefly.
    fn store(&self, token: &str) -> Result<(), String> {
        let contents = json!({
            "server": self.server,
            "site_key": self.site_key,
            "access_token": token,
        });
        let mut temporary = self.path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let _ = std::fs::remove_file(&temporary);
        let fail = |e: std::io::Error| format!("writing {}: {e}", temporary.display());
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary).map_err(fail)?;
        writeln!(file, "{contents}").map_err(fail)?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&temporary, self.path)
            .map_err(|e| format!("replacing {}: {e}", self.path.display()))
    }

    fn remove(&self) -> Result<(), String> {
        match std::fs::remove_file(self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("removing {}: {e}", self.path.display()))
            }
            _ => Ok(()),
        }
    }
}

/// What may be shown of a token: its kind prefix and last four characters, as tokenwarden's own
/// admin views show it.
fn masked(token: &str) -> String {
    match (token.get(..4), token.len().checked_sub(4)) {
        (Some(prefix), Some(start)) if token.len() >= 16 && token.is_ascii() => {
            format!("{prefix}…{}", &token[start..])
        }
        _ => "…".into(),
    }
}
