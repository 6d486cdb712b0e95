//! The only actix code: the route table, thin handlers and the mapping of errors to responses.

use actix_web::dev::HttpServiceFactory;
use actix_web::http::Method;
use std::net::IpAddr;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::domain::client_address::{self, TrustedProxies};
use crate::service::Context;

pub(crate) mod access_log;
mod admin;
mod admin_page;
mod audit;
mod body;
mod discovery;
pub mod error;
mod introspect;
pub mod metrics;
mod oauth;
mod observe;
pub mod openapi;
mod platform;
mod platform_admins;
mod platform_resource_servers;
mod request_id;
mod revocation;
mod session;

use error::ApiError;
use observe::Observe;

/// The admin API's JSON bodies and their parser, for the fuzz targets in `fuzz/`: the handlers
/// stay private, the untrusted-input parsing they share is reachable without an HTTP request.
pub use admin::{BulkBody, CreateTokenBody, RegenerateBody, TokenActionBody, ValidateBody};
pub use body::parse_json;

/// What handlers share: the service context and the HTTP limits.
#[derive(Debug, Clone)]
pub struct AppState {
    pub context: Context,
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive (`ConnectionLimits::client_request_timeout`).
    pub body_timeout: std::time::Duration,
    /// Proxies whose forwarding headers name the client (`client_address`).
    pub trusted_proxies: TrustedProxies,
    /// RFC 8414 issuer identifier, without a trailing slash.
    pub issuer: String,
}

/// The route table, used by the server and the tests alike.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(only(Method::POST, "/oauth2/token", oauth::token))
        .service(only(
            Method::POST,
            "/oauth2/invalidate_token",
            oauth::invalidate_token,
        ))
        .service(only(Method::POST, "/oauth2/revoke", oauth::revoke))
        .service(only(
            Method::POST,
            "/oauth2/introspect",
            introspect::introspect,
        ))
        .service(only(
            Method::GET,
            "/.well-known/oauth-authorization-server",
            discovery::metadata,
        ))
        .service(only(Method::GET, "/healthz", discovery::healthz))
        .service(only(Method::GET, "/readyz", discovery::readyz))
        .service(only(Method::GET, "/metrics", metrics::serve))
        .service(only(Method::GET, "/openapi.json", openapi::serve))
        .service(
            web::resource(SITES)
                .wrap(Observe::route(SITES))
                .route(web::get().to(admin::list_sites))
                .route(web::post().to(platform::create_site))
                .default_service(web::to(|| async {
                    Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow: "GET, POST" })
                })),
        )
        .service(only(Method::GET, "/admin/v1/audit", audit::list))
        .service(only(
            Method::POST,
            "/admin/v1/sites/{site_key}/primary/invalidate",
            revocation::invalidate_primary,
        ))
        .service(only(
            Method::POST,
            "/admin/v1/sites/{site_key}/auth-key",
            platform::rotate_auth_key,
        ))
        .service(only(
            Method::POST,
            "/admin/v1/resource-servers/{client_id}/secret",
            platform_resource_servers::rotate_secret,
        ))
        .service(only(
            Method::POST,
            "/admin/v1/admins/{client_id}/secret",
            platform_admins::rotate_secret,
        ))
        .service(
            web::resource(CURRENT_SESSION)
                .wrap(Observe::route(CURRENT_SESSION))
                .route(web::get().to(session::current))
                .route(web::delete().to(revocation::end_session))
                .default_service(web::to(|| async {
                    Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
                        allow: "GET, DELETE",
                    })
                })),
        )
        .service(
            web::resource(SITE)
                .wrap(Observe::route(SITE))
                .route(web::get().to(admin::site))
                .route(web::patch().to(platform::update_site))
                .default_service(web::to(|| async {
                    Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
                        allow: "GET, PATCH",
                    })
                })),
        )
        .service(
            web::resource(SITE_TOKENS)
                .wrap(Observe::route(SITE_TOKENS))
                .route(web::get().to(admin::list_tokens))
                .route(web::post().to(admin::create_token))
                .default_service(web::to(|| async {
                    Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow: "GET, POST" })
                })),
        )
        .service(only(
            Method::POST,
            "/admin/v1/sites/{site_key}/tokens/bulk",
            admin::bulk,
        ))
        .service(
            web::resource(SITE_TOKEN)
                .wrap(Observe::route(SITE_TOKEN))
                .route(web::get().to(admin::token))
                .route(web::delete().to(admin::retire))
                .default_service(web::to(|| async {
                    Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
                        allow: "GET, DELETE",
                    })
                })),
        )
        .service(only(
            Method::POST,
            "/admin/v1/sites/{site_key}/tokens/{token_id}/regenerate",
            admin::regenerate,
        ))
        .service(only(
            Method::POST,
            "/admin/v1/sites/{site_key}/tokens/{token_id}/validate",
            admin::validate,
        ))
        .service(only(
            Method::POST,
            "/admin/v1/sites/{site_key}/tokens/{token_id}/invalidate",
            admin::invalidate,
        ))
        .service(only(
            Method::GET,
            "/admin/v1/sites/{site_key}/tokens/{token_id}/history",
            admin::history,
        ))
        .service(only(
            Method::GET,
            "/admin/v1/sites/{site_key}/history",
            admin::site_history,
        ))
        .service(
            web::resource(RESOURCE_SERVERS)
                .wrap(Observe::route(RESOURCE_SERVERS))
                .route(web::get().to(platform_resource_servers::list))
                .route(web::post().to(platform_resource_servers::create))
                .default_service(web::to(|| async {
                    Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow: "GET, POST" })
                })),
        )
        .service(
            web::resource(RESOURCE_SERVER)
                .wrap(Observe::route(RESOURCE_SERVER))
                .route(web::get().to(platform_resource_servers::get))
                .route(web::delete().to(platform_resource_servers::delete))
                .default_service(web::to(|| async {
                    Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
                        allow: "GET, DELETE",
                    })
                })),
        )
        .service(
            web::resource(ADMINS)
                .wrap(Observe::route(ADMINS))
                .route(web::get().to(platform_admins::list))
                .route(web::post().to(platform_admins::create))
                .default_service(web::to(|| async {
                    Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow: "GET, POST" })
                })),
        )
        .service(
            web::resource(ADMIN)
                .wrap(Observe::route(ADMIN))
                .route(web::get().to(platform_admins::get))
                .route(web::patch().to(platform_admins::update))
                .default_service(web::to(|| async {
                    Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
                        allow: "GET, PATCH",
                    })
                })),
        )
        .service(only(Method::GET, "/admin", admin_page::redirect))
        .service(only(Method::GET, "/admin/", admin_page::index))
        .service(only(Method::GET, "/admin/app.js", admin_page::script))
        .service(only(Method::GET, "/admin/app.css", admin_page::stylesheet))
        .default_service(web::to(not_found).wrap(Observe::route(observe::UNMATCHED)));
}

const SITES: &str = "/admin/v1/sites";
const SITE: &str = "/admin/v1/sites/{site_key}";
const SITE_TOKENS: &str = "/admin/v1/sites/{site_key}/tokens";
const SITE_TOKEN: &str = "/admin/v1/sites/{site_key}/tokens/{token_id}";
const RESOURCE_SERVERS: &str = "/admin/v1/resource-servers";
const RESOURCE_SERVER: &str = "/admin/v1/resource-servers/{client_id}";
const ADMINS: &str = "/admin/v1/admins";
const ADMIN: &str = "/admin/v1/admins/{client_id}";
const CURRENT_SESSION: &str = "/admin/v1/sessions/current";

/// A resource answering one method, observed under its pattern; any other method gets 405 JSON
/// with `Allow` (RFC 9110 15.5.6).
fn only<F, Args>(method: Method, path: &'static str, handler: F) -> impl HttpServiceFactory
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    let allow = match method {
        Method::GET => "GET",
        Method::DELETE => "DELETE",
        _ => "POST",
    };
    web::resource(path)
        .wrap(Observe::route(path))
        .route(web::method(method).to(handler))
        .default_service(web::to(move || async move {
            Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow })
        }))
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// The client's address (`domain::client_address`): the TCP peer, or what the trusted proxies in
/// front of it report. What throttling, the access log and the audit trail use. `None` only when
/// the transport has no peer address.
pub(crate) fn client_address(trusted: &TrustedProxies, request: &HttpRequest) -> Option<IpAddr> {
    let peer = client_address::canonical(request.peer_addr()?.ip());
    if trusted.is_empty() {
        return Some(peer);
    }
    let headers = request.headers();
    let resolved = client_address::resolve(
        peer,
        headers
            .get_all(header::FORWARDED)
            .map(HeaderValue::as_bytes),
        headers
            .get_all("x-forwarded-for")
            .map(HeaderValue::as_bytes),
        trusted,
    );
    if let Some(fallback) = resolved.fallback {
        log::debug!(
            "forwarding headers from trusted proxy {peer} gave no usable client address \
             ({fallback:?}); using the last trusted hop {}",
            resolved.address
        );
    }
    Some(resolved.address)
}
