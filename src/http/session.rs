//! `GET /admin/v1/sessions/current`: who the admin token a request carries signs in as, and until
//! when it works (the page's header names the admin with it). Ending the session is
//! `revocation::end_session`, on the same path.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::admin::{answer, rfc3339, Caller};
use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::service::admins::{self, AdminSession};

/// The admin behind an admin token, and the token's expiry.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub client_id: String,
    pub name: String,
    /// `platform-admin` or `site-manager`.
    pub role: &'static str,
    /// A site manager's site keys, sorted; `null` for a platform admin, who manages every site.
    pub sites: Option<Vec<String>>,
    /// RFC 3339, UTC: when this admin token stops working.
    pub expires_at: String,
}

/// Who the current admin token belongs to.
///
/// The admin's client id, name, role and (for a site manager) sites as they are now, and when the
/// token presented stops working. Each admin token answers for itself: another token of the same
/// admin may expire at another time.
#[utoipa::path(
    get,
    path = "/admin/v1/sessions/current",
    tag = "admin",
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 401, description = "Missing, unknown, expired or revoked admin token", body = ErrorBody),
        (status = 403, description = "A site token, not an admin token", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn current(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let token = caller.token.clone();
    let session = caller
        .run(move |context, admin, now| admins::current_session(context, admin, &token, now))
        .await?;
    Ok(answer(SessionView::from(session)))
}

impl From<AdminSession> for SessionView {
    fn from(session: AdminSession) -> Self {
        let admin = session.admin.admin;
        SessionView {
            role: admin.role.as_str(),
            sites: (!admin.manages_every_site()).then_some(session.admin.site_keys),
            expires_at: rfc3339(session.expires_at),
            client_id: admin.client_id,
            name: admin.name,
        }
    }
}
