//! `GET /admin/v1/audit`: the audit trail for platform admins, newest first, a page at a time.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::admin::{answer, rfc3339, Caller};
use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::domain::audit::{AuditEvent, AuditQuery};
use crate::domain::request::Params;
use crate::service::audit;

/// Who acted.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditActorView {
    /// `site`, `resource_server`, `admin`, `operator` (the CLI) or `system` (the server itself).
    pub kind: &'static str,
    /// A client id, the operator's user name, or `(unknown)` for a client id that names no
    /// client; absent for the system.
    pub id: Option<String>,
    /// An admin's name, escaped.
    pub name: Option<String>,
}

/// One event of the audit trail. Never holds a secret or token value; text others chose is
/// escaped (`\"`, `\n`, `\u{1b}`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditEventView {
    pub id: i64,
    /// RFC 3339, UTC; for an aggregate, the first occurrence.
    pub occurred_at: String,
    /// RFC 3339, UTC: the last occurrence.
    pub last_at: String,
    pub actor: AuditActorView,
    /// e.g. `admin_signed_in`, `site_created`, `token_invalidated`, `client_auth_failed`,
    /// `client_under_attack`, `throttle_locked`.
    pub action: &'static str,
    /// What it was done to: a site key, a client id, `SITE_KEY/tokens/ID`, an address.
    pub target: Option<String>,
    /// The client's address (through trusted proxies, the address they reported).
    pub source_address: Option<String>,
    /// `success` or `failure`.
    pub outcome: &'static str,
    pub detail: Option<String>,
    /// How many times it happened (failed authentications are counted per client id, address
    /// and window).
    pub occurrences: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditResponse {
    pub events: Vec<AuditEventView>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next: Option<String>,
}

impl From<AuditEvent> for AuditEventView {
    fn from(event: AuditEvent) -> Self {
        Self {
            id: event.id,
            occurred_at: rfc3339(event.occurred_at),
            last_at: rfc3339(event.last_at),
            actor: AuditActorView {
                kind: event.actor.kind.as_str(),
                id: event.actor.id,
                name: event.actor.name,
            },
            action: event.action.as_str(),
            target: event.target,
            source_address: event.source_address,
            outcome: event.outcome.as_str(),
            detail: event.detail,
            occurrences: event.occurrences,
        }
    }
}

/// The audit trail (platform admins only).
///
/// Sign-ins and ended admin sessions, every change made through the admin API or the CLI, throttle
/// locks, alarms, and failed client authentications (one row per client id, address and window).
/// Newest first; follow `next` for older events.
#[utoipa::path(
    get,
    path = "/admin/v1/audit",
    tag = "admin",
    params(
        ("since" = Option<String>, Query, description = "RFC 3339: events at or after this time"),
        ("until" = Option<String>, Query, description = "RFC 3339: events before this time"),
        ("actor" = Option<String>, Query, description = "Only this actor id (client id or operator user)"),
        ("action" = Option<String>, Query, description = "Only this action"),
        ("limit" = Option<i64>, Query, description = "Events per page, 1 to 1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "The `next` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of events, newest first", body = AuditResponse),
        (status = 400, description = "A malformed filter, limit or cursor", body = ErrorBody),
        (status = 401, description = "Missing, unknown or expired admin token", body = ErrorBody),
        (status = 403, description = "`forbidden` for site managers; `insufficient_scope` for a site token", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let query = AuditQuery::from_params(&Params::parse(request.query_string().as_bytes())?)?;
    let limit = query.limit;
    let events = caller
        .run(move |context, admin, _| {
            // One more than asked: whether it exists says whether there is a next page.
            let probe = AuditQuery {
                limit: query.limit + 1,
                ..query
            };
            audit::list_for_admin(context, admin, &probe)
        })
        .await?;
    let mut events: Vec<AuditEventView> = events.into_iter().map(AuditEventView::from).collect();
    let next = (events.len() as i64 > limit).then(|| {
        events.truncate(limit as usize);
        events.last().map(|event| event.id.to_string())
    });
    Ok(answer(AuditResponse {
        events,
        next: next.flatten(),
    }))
}
