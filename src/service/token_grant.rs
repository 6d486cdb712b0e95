//! `POST /oauth2/token` with `grant_type=client_credentials` (RFC 6749 4.4), driven by oxide-auth.
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
//!   expires (RFC 6749 5.1 makes `expires_in` optional), so [`issue`] returns the token itself and
//!   the HTTP layer serialises the response.

use std::borrow::Cow;
use std::cell::RefCell;

use chrono::{NaiveDateTime, TimeZone, Utc};
use oxide_auth::code_grant::client_credentials::{
    client_credentials, Endpoint as FlowEndpoint, Error as FlowError, Extension, Request,
};
use oxide_auth::code_grant::error::AccessTokenErrorType;
use oxide_auth::primitives::grant::Grant;
use oxide_auth::primitives::issuer::{self, Issuer, RefreshedToken, TokenType};
use oxide_auth::primitives::registrar::{
    BoundClient, ClientUrl, ExactUrl, PreGrant, RegisteredUrl, Registrar, RegistrarError,
};
use oxide_auth::primitives::scope::Scope;

use super::{authenticate_site, primary_token, Context, ServiceError};
use crate::domain::oauth_error::{OAuthError, OAuthErrorCode};
use crate::domain::request::TokenRequest;
use crate::domain::secret::Secret;
use crate::domain::site::Site;

/// Runs the client credentials grant for a parsed request; returns the site's primary token.
pub fn issue(
    context: &Context,
    request: &TokenRequest,
    now: NaiveDateTime,
) -> Result<Secret, ServiceError> {
    let flow_request = FlowRequest {
        request,
        scope: request.scope.as_ref().map(|scope| scope.join(" ")),
    };
    let mut endpoint = FlowAdapter {
        registrar: SiteRegistrar {
            context,
            authenticated: RefCell::new(None),
            failure: RefCell::new(None),
        },
        issuer: PrimaryTokenIssuer {
            context,
            now,
            site: None,
            issued: None,
            failure: None,
        },
        no_extensions: (),
    };
    let outcome = client_credentials(&mut endpoint, &flow_request).and_then(|pending| {
        endpoint.issuer.site = endpoint.registrar.authenticated.borrow_mut().take();
        let owner_id = request.credentials.client_id.clone();
        pending.issue(&mut endpoint, owner_id, false)
    });
    if let Err(error) = outcome {
        let failure = endpoint
            .registrar
            .failure
            .into_inner()
            .or(endpoint.issuer.failure);
        return Err(map_flow_error(error, failure));
    }
    endpoint.issuer.issued.ok_or(ServiceError::Invariant(
        "the token flow succeeded without issuing a token",
    ))
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
    registrar: SiteRegistrar<'a>,
    issuer: PrimaryTokenIssuer<'a>,
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

/// Authenticates sites with the keyed-hash check of `authenticate_site`, instead of oxide-auth's
/// `ClientMap`, whose Argon2 costs ~165 ms per request: auth keys are 256 random bits and need no
/// password-stretching.
struct SiteRegistrar<'a> {
    context: &'a Context,
    authenticated: RefCell<Option<Site>>,
    failure: RefCell<Option<ServiceError>>,
}

/// oxide-auth insists on a redirect URI even for this grant, which never redirects. RFC 2606
/// reserves `.invalid`, so this one cannot point anywhere.
const UNUSED_REDIRECT_URI: &str = "https://client-credentials.invalid/";

impl Registrar for SiteRegistrar<'_> {
    fn bound_redirect<'b>(&self, bound: ClientUrl<'b>) -> Result<BoundClient<'b>, RegistrarError> {
        let redirect_uri = ExactUrl::new(UNUSED_REDIRECT_URI.to_string())
            .map_err(|_| RegistrarError::PrimitiveError)?;
        Ok(BoundClient {
            client_id: bound.client_id,
            redirect_uri: Cow::Owned(RegisteredUrl::Exact(redirect_uri)),
        })
    }

    /// A site's primary token carries no scope; asking for any is `invalid_scope` (RFC 6749 5.2).
    fn negotiate(
        &self,
        client: BoundClient,
        scope: Option<Scope>,
    ) -> Result<PreGrant, RegistrarError> {
        let empty: Scope = "".parse().map_err(|_| RegistrarError::PrimitiveError)?;
        match scope {
            Some(requested) if requested != empty => Err(RegistrarError::Unspecified),
            _ => Ok(PreGrant {
                client_id: client.client_id.into_owned(),
                redirect_uri: client.redirect_uri.into_owned(),
                scope: empty,
            }),
        }
    }

    fn check(&self, client_id: &str, passphrase: Option<&[u8]>) -> Result<(), RegistrarError> {
        let secret = std::str::from_utf8(passphrase.unwrap_or_default())
            .map_err(|_| RegistrarError::Unspecified)?;
        match authenticate_site(self.context, client_id, &Secret::new(secret)) {
            Ok(site) => {
                *self.authenticated.borrow_mut() = Some(site);
                Ok(())
            }
            Err(ServiceError::OAuth(_)) => Err(RegistrarError::Unspecified),
            Err(other) => {
                *self.failure.borrow_mut() = Some(other);
                Err(RegistrarError::PrimitiveError)
            }
        }
    }
}

/// Issues the site's primary token through `primary_token::get_or_mint`.
struct PrimaryTokenIssuer<'a> {
    context: &'a Context,
    now: NaiveDateTime,
    site: Option<Site>,
    issued: Option<Secret>,
    failure: Option<ServiceError>,
}

impl Issuer for PrimaryTokenIssuer<'_> {
    fn issue(&mut self, _grant: Grant) -> Result<issuer::IssuedToken, ()> {
        let site = self.site.as_ref().ok_or(())?;
        match primary_token::get_or_mint(self.context, site, self.now) {
            Ok(value) => {
                let token = value.expose().to_string();
                self.issued = Some(value);
                Ok(issuer::IssuedToken {
                    token,
                    refresh: None,
                    until: Utc.from_utc_datetime(&NaiveDateTime::MAX),
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
