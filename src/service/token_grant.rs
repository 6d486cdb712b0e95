//! `POST /oauth2/token` with `grant_type=client_credentials` (RFC 6749 4.4), driven by oxide-auth.
//!
//! Two kinds of client use this grant: sites get their primary token (no scope, never expires),
//! admins get a short-lived admin token (scope `admin`, which they may also leave out); the client
//! id's prefix tells which. A site asking for `admin` gets `invalid_scope`.
//!
//! oxide-auth's HTTP-agnostic flow (`code_grant::client_credentials`) runs the protocol steps:
//! authenticate the client through a [`Registrar`], negotiate the scope, ask an [`Issuer`] for the
//! token. Three things it cannot express are wrapped around it here, thinly:
//! - parsing: its frontends do not form-decode HTTP Basic credentials (RFC 6749 2.3.1) and answer
//!   malformed requests without `error_description`, so `domain::request` parses and the flow
//!   receives only well-formed requests;
//! - errors: a refused scope comes out as `Error::Ignore` and a storage failure as a bare
//!   `Primitive`, so the adapters below keep the real cause and [`map_flow_error`] restores it
//!   (`invalid_scope`, database unavailable);
//! - the response: `BearerToken::to_json` always writes `expires_in`, but a primary token never
//!   expires (RFC 6749 5.1 makes `expires_in` optional), so [`issue`] returns a [`GrantedToken`]
//!   and the HTTP layer serialises the response.
//!
//! Repeat requests (integrators asking on every call) are answered from memory: the site's
//! authentication row and its sealed primary token are cached until a change touches them, like
//! introspection's caches, so a hit costs one HMAC check and one AES-GCM open.
//! [`issue_from_memory`] runs the same flow on the HTTP worker with [`Reach::MemoryOnly`]; the
//! adapters give up on a miss and the handler falls back to [`issue`] in `web::block`. Admin tokens
//! are always minted and stored, so they always take that fallback.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::sync::{Arc, LazyLock};

use chrono::{NaiveDateTime, TimeZone, Utc};
use oxide_auth::code_grant::client_credentials::{
    client_credentials, Endpoint as FlowEndpoint, Error as FlowError, Extension, Request,
};
use oxide_auth::code_grant::error::AccessTokenErrorType;
use oxide_auth::frontends::dev::Url;
use oxide_auth::primitives::grant::Grant;
use oxide_auth::primitives::issuer::{self, Issuer, RefreshedToken, TokenType};
use oxide_auth::primitives::registrar::{
    BoundClient, ClientUrl, PreGrant, RegisteredUrl, Registrar, RegistrarError,
};
use oxide_auth::primitives::scope::Scope;

use super::admins::{authenticate_admin, issue_admin_token};
use super::cache::{observe_changes, Observed, Reach, StampedCache};
use super::client_auth::{authenticate_site_cached, throttled};
use super::{primary_token, Context, ServiceError};
use crate::domain::admin::{Admin, ADMIN_CLIENT_ID_PREFIX, ADMIN_SCOPE};
use crate::domain::audit::ActorKind;
use crate::domain::oauth_error::{OAuthError, OAuthErrorCode};
use crate::domain::request::TokenRequest;
use crate::domain::secret::Secret;
use crate::domain::throttle::Origin;
use crate::store::{PrimaryToken, SiteAuthentication};

/// Caches for the token endpoint, switched on and off with introspection's (`--introspection-cache`);
/// `None` caches mean every request reads the database.
#[derive(Debug)]
pub struct GrantCaches {
    /// Site authentication by site key; unknown site keys are cached as `None`.
    pub(super) sites: Option<StampedCache<String, Option<Arc<SiteAuthentication>>>>,
    /// The active primary token by site id, still sealed; `None` when the site has none.
    pub(super) primary_tokens: Option<StampedCache<i64, Option<Arc<PrimaryToken>>>>,
}

impl GrantCaches {
    pub fn new(cache_enabled: bool, capacity: usize) -> Self {
        Self {
            sites: cache_enabled.then(|| StampedCache::new(capacity)),
            primary_tokens: cache_enabled.then(|| StampedCache::new(capacity)),
        }
    }

    /// (hits, misses) of the site cache, for metrics and tests.
    pub fn cache_counts(&self) -> (u64, u64) {
        self.sites.as_ref().map_or((0, 0), StampedCache::counts)
    }
}

/// What the token endpoint hands out (RFC 6749 5.1).
#[derive(Debug)]
pub struct GrantedToken {
    pub value: Secret,
    /// Seconds until the token stops working; `None` for a primary token, which never expires.
    pub expires_in: Option<i64>,
    /// The granted scope; `None` for a primary token, which carries none.
    pub scope: Option<&'static str>,
}

/// Runs the client credentials grant for a parsed request: a site's primary token, or an admin
/// token. May wait on the database: run it off the async executor.
pub fn issue(
    context: &Context,
    request: &TokenRequest,
    origin: &Origin,
    now: NaiveDateTime,
) -> Result<GrantedToken, ServiceError> {
    issue_within(context, request, origin, now, Reach::Database)?.ok_or(ServiceError::Invariant(
        "the token flow with database access gave no answer",
    ))
}

/// The same answer as [`issue`] when memory alone can give it (the site and its primary token
/// cached under the current generation), else `None`. Never waits on the database pool, so the
/// HTTP worker runs it itself; its only database contact is the change-feed check
/// (`ChangeFeed::generation_without_waiting`, which gives up rather than wait).
pub fn issue_from_memory(
    context: &Context,
    request: &TokenRequest,
    origin: &Origin,
    now: NaiveDateTime,
) -> Result<Option<GrantedToken>, ServiceError> {
    issue_within(context, request, origin, now, Reach::MemoryOnly)
}

/// The whole flow sits behind the throttle: even its first step, the change-feed check, may query.
fn issue_within(
    context: &Context,
    request: &TokenRequest,
    origin: &Origin,
    now: NaiveDateTime,
    reach: Reach,
) -> Result<Option<GrantedToken>, ServiceError> {
    let kind = if request
        .credentials
        .client_id
        .starts_with(ADMIN_CLIENT_ID_PREFIX)
    {
        ActorKind::Admin
    } else {
        ActorKind::Site
    };
    throttled(
        context,
        kind,
        &request.credentials.client_id,
        origin,
        now,
        || run_flow(context, request, origin, now, reach),
    )
}

fn run_flow(
    context: &Context,
    request: &TokenRequest,
    origin: &Origin,
    now: NaiveDateTime,
    reach: Reach,
) -> Result<Option<GrantedToken>, ServiceError> {
    let observed = observe_changes(&context.store, context.grants.sites.is_some())?;
    if observed.is_none() && reach == Reach::MemoryOnly {
        // Caches off, or caches that may not answer: nothing may come from memory.
        return Ok(None);
    }
    let flow_request = FlowRequest {
        request,
        scope: request.scope.as_ref().map(|scope| scope.join(" ")),
    };
    let mut endpoint = FlowAdapter {
        registrar: ClientRegistrar {
            context,
            now,
            observed,
            reach,
            authenticated: RefCell::new(None),
            failure: RefCell::new(None),
            needs_database: Cell::new(false),
        },
        issuer: TokenIssuer {
            context,
            address: origin.address,
            now,
            observed,
            reach,
            client: None,
            issued: None,
            failure: None,
            needs_database: false,
        },
        no_extensions: (),
    };
    let outcome = client_credentials(&mut endpoint, &flow_request).and_then(|pending| {
        endpoint.issuer.client = endpoint.registrar.authenticated.borrow_mut().take();
        let owner_id = request.credentials.client_id.clone();
        pending.issue(&mut endpoint, owner_id, false)
    });
    if let Err(error) = outcome {
        if endpoint.registrar.needs_database.get() || endpoint.issuer.needs_database {
            return Ok(None);
        }
        let failure = endpoint
            .registrar
            .failure
            .into_inner()
            .or(endpoint.issuer.failure);
        return Err(map_flow_error(error, failure));
    }
    endpoint
        .issuer
        .issued
        .ok_or(ServiceError::Invariant(
            "the token flow succeeded without issuing a token",
        ))
        .map(Some)
}

/// Restores the cause of a flow failure that oxide-auth's error type cannot carry.
fn map_flow_error(mut error: FlowError, failure: Option<ServiceError>) -> ServiceError {
    if let Some(failure) = failure {
        return failure;
    }
    match &mut error {
        FlowError::Unauthorized(..) => OAuthError::invalid_client().into(),
        FlowError::Ignore => OAuthError::new(
            OAuthErrorCode::InvalidScope,
            "the requested scope is not available to this client",
        )
        .into(),
        FlowError::Invalid(_) | FlowError::Primitive(_) => {
            let code = match error.description().map(|description| description.kind()) {
                Some(AccessTokenErrorType::UnsupportedGrantType) => {
                    OAuthErrorCode::UnsupportedGrantType
                }
                Some(AccessTokenErrorType::InvalidScope) => OAuthErrorCode::InvalidScope,
                Some(AccessTokenErrorType::InvalidClient) => OAuthErrorCode::InvalidClient,
                Some(AccessTokenErrorType::UnauthorizedClient) => {
                    OAuthErrorCode::UnauthorizedClient
                }
                _ => OAuthErrorCode::InvalidRequest,
            };
            OAuthError::new(code, "the token request is invalid").into()
        }
    }
}

/// The parsed request as oxide-auth reads it: credentials always come as "authorization", since
/// `domain::request` has already decided which single method the client used.
struct FlowRequest<'a> {
    request: &'a TokenRequest,
    scope: Option<String>,
}

impl Request for FlowRequest<'_> {
    fn valid(&self) -> bool {
        true
    }

    fn authorization(&self) -> Option<(Cow<'_, str>, Cow<'_, [u8]>)> {
        let credentials = &self.request.credentials;
        Some((
            Cow::Borrowed(credentials.client_id.as_str()),
            Cow::Borrowed(credentials.secret.expose().as_bytes()),
        ))
    }

    fn scope(&self) -> Option<Cow<'_, str>> {
        self.scope.as_deref().map(Cow::Borrowed)
    }

    fn grant_type(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed("client_credentials"))
    }

    fn extension(&self, _key: &str) -> Option<Cow<'_, str>> {
        None
    }
}

struct FlowAdapter<'a> {
    registrar: ClientRegistrar<'a>,
    issuer: TokenIssuer<'a>,
    /// oxide-auth's stateless "no extensions" (no PKCE or the like in this grant).
    no_extensions: (),
}

impl FlowEndpoint for FlowAdapter<'_> {
    fn registrar(&self) -> &dyn Registrar {
        &self.registrar
    }

    fn issuer(&mut self) -> &mut dyn Issuer {
        &mut self.issuer
    }

    fn extension(&mut self) -> &mut dyn Extension {
        &mut self.no_extensions
    }
}

/// An authenticated client of the grant.
enum Client {
    Site(Arc<SiteAuthentication>),
    Admin(Admin),
}

/// Authenticates sites and admins with a keyed-hash check (`client_auth`, `admins`) instead of
/// oxide-auth's `ClientMap`, whose Argon2 costs ~165 ms per request: auth keys and admin secrets
/// are 256 random bits and need no password-stretching.
struct ClientRegistrar<'a> {
    context: &'a Context,
    /// When the request arrived: a replaced auth key works only before its overlap ends.
    now: NaiveDateTime,
    observed: Option<Observed<'a>>,
    reach: Reach,
    authenticated: RefCell<Option<Client>>,
    failure: RefCell<Option<ServiceError>>,
    /// Set when a memory-only attempt missed the cache: the flow stops, the caller retries.
    needs_database: Cell<bool>,
}

/// oxide-auth insists on a redirect URI even for this grant, which never redirects. RFC 2606
/// reserves `.invalid`, so this one cannot point anywhere. Parsed once: it is a constant, and
/// parsing a URL on every token request showed in profiles (docs/performance.md). It is bound as
/// a semantic (already parsed) URL, because oxide-auth parses an exact one again when it builds
/// the grant.
static UNUSED_REDIRECT_URI: LazyLock<Url> = LazyLock::new(|| {
    Url::parse("https://client-credentials.invalid/").expect("a valid literal URL")
});

impl Registrar for ClientRegistrar<'_> {
    fn bound_redirect<'b>(&self, bound: ClientUrl<'b>) -> Result<BoundClient<'b>, RegistrarError> {
        Ok(BoundClient {
            client_id: bound.client_id,
            redirect_uri: Cow::Owned(RegisteredUrl::Semantic(UNUSED_REDIRECT_URI.clone())),
        })
    }

    /// A site's primary token carries no scope: asking for any is `invalid_scope` (RFC 6749 5.2).
    /// An admin token always has the scope `admin`, asked for or not (RFC 6749 3.3 lets the server
    /// apply a default); any other scope is `invalid_scope`.
    fn negotiate(
        &self,
        client: BoundClient,
        scope: Option<Scope>,
    ) -> Result<PreGrant, RegistrarError> {
        let parse = |scope: &str| {
            scope
                .parse::<Scope>()
                .map_err(|_| RegistrarError::PrimitiveError)
        };
        let granted = match self.authenticated.borrow().as_ref() {
            Some(Client::Admin(_)) => parse(ADMIN_SCOPE)?,
            Some(Client::Site(_)) => parse("")?,
            None => return Err(RegistrarError::PrimitiveError),
        };
        match scope {
            Some(requested) if requested != granted => Err(RegistrarError::Unspecified),
            _ => Ok(PreGrant {
                client_id: client.client_id.into_owned(),
                redirect_uri: client.redirect_uri.into_owned(),
                scope: granted,
            }),
        }
    }

    fn check(&self, client_id: &str, passphrase: Option<&[u8]>) -> Result<(), RegistrarError> {
        let secret = std::str::from_utf8(passphrase.unwrap_or_default())
            .map_err(|_| RegistrarError::Unspecified)?;
        let secret = Secret::new(secret);
        let authenticated = if client_id.starts_with(ADMIN_CLIENT_ID_PREFIX) {
            match self.reach {
                Reach::MemoryOnly => Ok(None),
                Reach::Database => authenticate_admin(self.context, client_id, &secret, self.now)
                    .map(|a| Some(Client::Admin(a))),
            }
        } else {
            authenticate_site_cached(
                self.context,
                client_id,
                &secret,
                self.now,
                self.observed,
                self.reach,
            )
            .map(|site| site.map(Client::Site))
        };
        match authenticated {
            Ok(Some(client)) => {
                *self.authenticated.borrow_mut() = Some(client);
                Ok(())
            }
            Ok(None) => {
                self.needs_database.set(true);
                Err(RegistrarError::PrimitiveError)
            }
            Err(ServiceError::OAuth(_)) => Err(RegistrarError::Unspecified),
            Err(other) => {
                *self.failure.borrow_mut() = Some(other);
                Err(RegistrarError::PrimitiveError)
            }
        }
    }
}

/// Issues a site's primary token (`primary_token::get_or_mint_cached`) or an admin token
/// (`admins::issue_admin_token`).
struct TokenIssuer<'a> {
    context: &'a Context,
    /// Where the client signs in from, for the audit trail.
    address: Option<std::net::IpAddr>,
    now: NaiveDateTime,
    observed: Option<Observed<'a>>,
    reach: Reach,
    client: Option<Client>,
    issued: Option<GrantedToken>,
    failure: Option<ServiceError>,
    /// Set when a memory-only attempt missed the cache or would have to mint.
    needs_database: bool,
}

impl TokenIssuer<'_> {
    fn grant(&self) -> Result<Option<GrantedToken>, ServiceError> {
        match self.client.as_ref() {
            Some(Client::Site(site)) => Ok(primary_token::get_or_mint_cached(
                self.context,
                &site.site,
                self.now,
                self.observed,
                self.reach,
            )?
            .map(|value| GrantedToken {
                value,
                expires_in: None,
                scope: None,
            })),
            Some(Client::Admin(admin)) => {
                let issued = issue_admin_token(self.context, admin, self.address, self.now)?;
                Ok(Some(GrantedToken {
                    value: issued.value,
                    expires_in: Some(issued.expires_in),
                    scope: Some(ADMIN_SCOPE),
                }))
            }
            None => Err(ServiceError::Invariant(
                "the token flow issued before authenticating",
            )),
        }
    }
}

impl Issuer for TokenIssuer<'_> {
    fn issue(&mut self, _grant: Grant) -> Result<issuer::IssuedToken, ()> {
        match self.grant() {
            Ok(None) => {
                self.needs_database = true;
                Err(())
            }
            Ok(Some(granted)) => {
                let until = granted.expires_in.map_or(NaiveDateTime::MAX, |seconds| {
                    self.now
                        .checked_add_signed(chrono::Duration::seconds(seconds))
                        .unwrap_or(NaiveDateTime::MAX)
                });
                let token = granted.value.expose().to_string();
                self.issued = Some(granted);
                Ok(issuer::IssuedToken {
                    token,
                    refresh: None,
                    until: Utc.from_utc_datetime(&until),
                    token_type: TokenType::Bearer,
                })
            }
            Err(failure) => {
                self.failure = Some(failure);
                Err(())
            }
        }
    }

    fn refresh(&mut self, _refresh: &str, _grant: Grant) -> Result<RefreshedToken, ()> {
        Err(())
    }

    fn recover_token(&self, _token: &str) -> Result<Option<Grant>, ()> {
        Ok(None)
    }

    fn recover_refresh(&self, _token: &str) -> Result<Option<Grant>, ()> {
        Ok(None)
    }
}
