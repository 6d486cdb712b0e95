//! `GET /admin/v1/sessions/current`: who the admin token a request carries signs in as, until
//! when it works (the page's header names the admin with it), and the server's terms for token
//! expiry (the page's date fields). Ending the session is
//! `revocation::end_session`, on the same path.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::admin::{answer, rfc3339, Caller};
use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::domain::token_policy::TokenPolicy;
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
    /// The operator's terms for new non-primary tokens, for forms that set an expiry.
    pub token_terms: TokenTermsView,
}

/// What the server allows and requires of a non-primary token's expiry.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenTermsView {
    /// The furthest ahead `expires_at` may be set, in days (`--max-token-lifetime-days`).
    pub max_lifetime_days: i64,
    /// Whether creating a token without `expires_at` is refused (`--require-token-expiry`, when
    /// there is no default lifetime).
    pub expiry_required: bool,
    /// Days ahead a token created without `expires_at` expires
    /// (`--default-token-lifetime-days`); `null`: it does not expire.
    pub default_lifetime_days: Option<i64>,
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
    let (session, policy) = caller
        .run(move |context, admin, now| {
            admins::current_session(context, admin, &token, now)
                .map(|session| (session, context.policy.clone()))
        })
        .await?;
    Ok(answer(SessionView::new(session, &policy)))
}

impl SessionView {
    fn new(session: AdminSession, policy: &TokenPolicy) -> Self {
        let admin = session.admin.admin;
        SessionView {
            role: admin.role.as_str(),
            sites: (!admin.manages_every_site()).then_some(session.admin.site_keys),
            expires_at: rfc3339(session.expires_at),
            client_id: admin.client_id,
            name: admin.name,
            token_terms: TokenTermsView {
                max_lifetime_days: policy.max_token_lifetime.num_days(),
                expiry_required: policy.require_expiry && policy.default_lifetime.is_none(),
                default_lifetime_days: policy.default_lifetime.map(|lifetime| lifetime.num_days()),
            },
        }
    }
}
