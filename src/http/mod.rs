//! The only actix code: the route table, thin handlers and the mapping of errors to responses.

use actix_web::dev::HttpServiceFactory;
use actix_web::http::Method;
use actix_web::{web, HttpResponse};

use crate::server::BackgroundHandle;
use crate::service::Context;

pub(crate) mod access_log;
mod admin;
mod admin_page;
mod body;
mod discovery;
pub mod error;
mod introspect;
pub mod metrics;
mod oauth;
mod observe;
pub mod openapi;

use error::ApiError;
use observe::Observe;

/// The admin API's JSON bodies and their parser, for the fuzz targets in `fuzz/`: the handlers
/// stay private, the untrusted-input parsing they share is reachable without an HTTP request.
pub use admin::{CreateTokenBody, RegenerateBody, TokenActionBody};
pub use body::parse_json;

/// What handlers share: the service context, the HTTP limits and the background tasks.
#[derive(Debug, Clone)]
pub struct AppState {
    pub context: Context,
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive (`ConnectionLimits::client_request_timeout`).
    pub body_timeout: std::time::Duration,
    /// Whether `oauth::origin` takes the source address from `X-Forwarded-For`.
    pub trust_forwarded_for: bool,
    /// RFC 8414 issuer identifier, without a trailing slash.
    pub issuer: String,
    pub background: BackgroundHandle,
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
        .service(only(Method::GET, "/admin/v1/sites", admin::list_sites))
        .service(only(Method::GET, "/admin/v1/sites/{site_key}", admin::site))
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
            Method::GET,
            "/admin/v1/sites/{site_key}/tokens/{token_id}",
            admin::token,
        ))
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
        .service(only(Method::GET, "/admin", admin_page::redirect))
        .service(only(Method::GET, "/admin/", admin_page::index))
        .service(only(Method::GET, "/admin/app.js", admin_page::script))
        .service(only(Method::GET, "/admin/app.css", admin_page::stylesheet))
        .default_service(web::to(not_found).wrap(Observe::route(observe::UNMATCHED)));
}

const SITE_TOKENS: &str = "/admin/v1/sites/{site_key}/tokens";

/// A resource answering one method, observed under its pattern; any other method gets 405 JSON
/// with `Allow` (RFC 9110 15.5.6).
fn only<F, Args>(method: Method, path: &'static str, handler: F) -> impl HttpServiceFactory
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    let allow = if method == Method::GET { "GET" } else { "POST" };
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
