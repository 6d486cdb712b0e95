//! The only actix code: the route table, thin handlers and the mapping of errors to responses.

use actix_web::{web, HttpResponse};

use crate::service::Context;

mod body;
pub mod error;
mod oauth;
pub mod openapi;

use error::ApiError;

/// What handlers share: the service context and the HTTP limits.
#[derive(Debug, Clone)]
pub struct AppState {
    pub context: Context,
    pub max_body_bytes: usize,
}

/// The route table, used by the server and the tests alike.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(post_only("/oauth2/token", oauth::token))
        .service(post_only(
            "/oauth2/invalidate_token",
            oauth::invalidate_token,
        ))
        .service(post_only("/oauth2/revoke", oauth::revoke))
        .route("/openapi.json", web::get().to(openapi::serve))
        .default_service(web::to(not_found));
}

fn post_only<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::post().to(handler))
        .default_service(web::to(method_not_allowed))
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}
