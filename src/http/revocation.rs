//! Revocation in the admin scope: the emergency invalidation of a site's primary token by a
//! platform admin, and an admin ending its own session (the page's Sign out).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::admin::{answer, Caller};
use super::error::{ApiError, ErrorBody};
use super::oauth::no_store;
use super::AppState;
use crate::service::{admins, primary_token};

/// Answer to the emergency invalidation of a primary token.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PrimaryInvalidatedResponse {
    pub site_key: String,
    /// `true` when an active primary token was invalidated; `false` when the site had none (the
    /// next `/oauth2/token` mints one either way).
    pub invalidated: bool,
}

/// Invalidate a site's primary token (platform admins only).
///
/// The operator's emergency brake for a leaked primary token when the site itself cannot act:
/// the current value is refused from now on, on every node, and the site's next `/oauth2/token`
/// mints a new one. Recorded in the token's history with this admin as actor, and in the audit
/// trail.
#[utoipa::path(
    post,
    path = "/admin/v1/sites/{site_key}/primary/invalidate",
    tag = "admin",
    params(("site_key" = String, Path, description = "The site key")),
    responses(
        (status = 200, description = "Invalidated, or nothing to invalidate", body = PrimaryInvalidatedResponse),
        (status = 401, description = "Missing, unknown or expired admin token", body = ErrorBody),
        (status = 403, description = "`forbidden` for site managers; `insufficient_scope` for a site token", body = ErrorBody),
        (status = 404, description = "No such site", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn invalidate_primary(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let site_key = path.into_inner();
    let address = caller.address;
    let shown = site_key.clone();
    let invalidated = caller
        .run(move |context, admin, now| {
            let by = crate::domain::audit::Requester::admin(admin, address);
            primary_token::invalidate_on_behalf(context, &by, Some(admin), &site_key, now)
        })
        .await?;
    Ok(answer(PrimaryInvalidatedResponse {
        site_key: shown,
        invalidated,
    }))
}

/// End the current admin session.
///
/// The admin token that authorizes this request is revoked: every later request with it is
/// refused (`invalid_token`). The same as RFC 7009 revocation of the admin token at
/// `/oauth2/revoke` with the admin's client credentials.
#[utoipa::path(
    delete,
    path = "/admin/v1/sessions/current",
    tag = "admin",
    responses(
        (status = 204, description = "Ended"),
        (status = 401, description = "Missing, unknown or expired admin token", body = ErrorBody),
        (status = 403, description = "A site token, not an admin token", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn end_session(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let (address, token) = (caller.address, caller.token.clone());
    caller
        .run(move |context, admin, now| {
            admins::revoke_own_token(context, admin, &token, address, now).map(drop)
        })
        .await?;
    Ok(no_store(HttpResponse::NoContent()).finish())
}
