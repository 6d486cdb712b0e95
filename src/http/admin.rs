//! The admin API under `/admin/v1`: JSON endpoints for site managers and platform admins, each
//! requiring an admin token (`Authorization: Bearer`, RFC 6750 2.1) from `/oauth2/token`.
//!
//! Handlers only parse, call `service::site_tokens` as the admin the token belongs to (one
//! `web::block` for both), and shape the answer. Every answer is `Cache-Control: no-store`: some
//! carry token values, and all describe credentials.

use std::net::IpAddr;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::NaiveDateTime;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::body::read_json;
use super::error::{ApiError, ErrorBody};
use super::oauth::no_store;
use super::request_id;
use super::AppState;
use crate::domain::admin::{Admin, AdminRefusal, ManagedToken};
use crate::domain::audience::RequestedAudience;
use crate::domain::history::{HistoryEntry, SiteHistoryEntry};
use crate::domain::oauth_error::OAuthError;
use crate::domain::request::{bearer_token, Params};
use crate::domain::rotation::overlap_end;
use crate::domain::secret::Secret;
use crate::domain::site::SiteSummary;
use crate::service::site_tokens::{
    self, Acting, BulkOrder, SiteListRequest, TokenAction, TokenOrder, DEFAULT_HISTORY_PAGE,
    MAX_HISTORY_PAGE,
};
use crate::service::{admins, Context, ServiceError};

/// Sites per page when `limit` is not given, and the most one page may hold.
const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 1000;

/// A site as the admin API lists it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SiteView {
    pub site_key: String,
    pub name: String,
    /// A disabled site cannot get tokens, and its tokens do not work.
    pub enabled: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Tokens the site holds: its primary (once issued) and up to nine others.
    pub token_count: i64,
    /// RFC 3339, UTC: until when the auth key the last rotation replaced also works; `null` when
    /// no replaced key works.
    pub previous_auth_key_valid_until: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SitesResponse {
    pub sites: Vec<SiteView>,
    /// How many sites match in all (the page holds at most `limit`): exact up to 10,000, an
    /// estimate beyond (see `total_exact`).
    pub total: i64,
    /// `false` when more than 10,000 sites match and `total` is an estimate.
    pub total_exact: bool,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next: Option<String>,
}

/// A token as the admin API shows it. `value` is present only in the answer that created or
/// regenerated it, and is never shown again.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: i64,
    /// `primary` or `secondary`.
    pub kind: &'static str,
    pub description: String,
    /// Prefix and last four characters, e.g. `tws_…9xQw`.
    pub masked_value: String,
    /// Whether it is marked active (validated). An active token past its `expires_at` is still
    /// refused: see `expired`.
    pub active: bool,
    /// Whether its `expires_at` has passed: it is refused until regenerated or validated with a
    /// new `expires_at` (or retired).
    pub expired: bool,
    /// RFC 3339, UTC.
    pub generated_at: String,
    /// RFC 3339, UTC: the last introspection of this value, at most the server's
    /// `--usage-resolution-secs` (a minute by default) plus a few seconds behind.
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
    pub scope: Option<String>,
    /// Client ids of the resource servers that may introspect it, sorted; `null`: every resource
    /// server. Empty once each of them was deleted: then no resource server may.
    pub audience: Option<Vec<String>>,
    /// RFC 3339, UTC: when it was retired (refused for good, no longer among the site's tokens);
    /// `null` for a token that was not.
    pub retired_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokensResponse {
    /// The primary token first, then active tokens, then inactive ones.
    pub tokens: Vec<TokenView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ActorView {
    /// `admin` (through this API) or `site` (through the OAuth endpoints).
    pub kind: &'static str,
    /// The admin's name, or the site key.
    pub name: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HistoryEventView {
    pub occurred_at: String,
    /// `created`, `validated`, `invalidated`, `regenerated`, `description_changed` or `retired`.
    pub event: &'static str,
    pub actor: ActorView,
    /// For `description_changed`: the new description.
    pub detail: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HistoryResponse {
    /// Oldest first.
    pub events: Vec<HistoryEventView>,
}

/// One event of a site's history.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SiteHistoryEventView {
    /// The token the event is about (retired tokens included).
    pub token_id: i64,
    /// The token's description when the event happened; `null` when not recorded (some events
    /// from before descriptions were kept with each event).
    pub description: Option<String>,
    pub occurred_at: String,
    /// `created`, `validated`, `invalidated`, `regenerated`, `description_changed` or `retired`.
    pub event: &'static str,
    pub actor: ActorView,
    /// For `description_changed`: the new description.
    pub detail: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SiteHistoryResponse {
    /// Newest first.
    pub events: Vec<SiteHistoryEventView>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next: Option<String>,
}

/// Body of `POST /admin/v1/sites/{site_key}/tokens/bulk`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    /// `invalidate`, `validate` or `retire`.
    #[serde(default)]
    pub action: String,
    /// 1 to 9 ids of the site's non-primary tokens, each once.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 9)]
    pub ids: Vec<i64>,
}

/// Body of `POST /admin/v1/sites/{site_key}/tokens`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenBody {
    /// Required: 1 to 100 characters after trimming; letters, digits, spaces and `- _ . ,`.
    // Missing reads as empty, so it is refused by the description rule, naming the field.
    #[serde(default)]
    pub description: String,
    /// RFC 3339; in the future and at most the configured maximum (default 365 days) ahead.
    /// Without it, the server's default lifetime applies if it has one; a server started with
    /// `--require-token-expiry` and no default refuses a token without it.
    pub expires_at: Option<String>,
    /// Space-separated scopes, each one the operator offers.
    pub scope: Option<String>,
    /// Client ids of the resource servers that may introspect the token (RFC 7662 2.2 `aud`):
    /// 1 to 20, each an existing resource server's; a repeated one counts once. Any other
    /// resource server is answered `{"active": false}`. Without it (or `null`), every resource
    /// server may.
    #[schema(value_type = Option<Vec<String>>, min_items = 1, max_items = 20)]
    pub audience: Option<RequestedAudience>,
}

/// Optional body of the regenerate action.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegenerateBody {
    /// A new description (same rules as on creation); the change is recorded in the history.
    pub description: Option<String>,
    /// A new audience, replacing the token's (same rules as on creation). Without it (or `null`),
    /// the token keeps its audience, or keeps having none.
    #[schema(value_type = Option<Vec<String>>, min_items = 1, max_items = 20)]
    pub audience: Option<RequestedAudience>,
    /// A new expiry (same rules as on creation); required when the token has expired.
    pub expires_at: Option<String>,
}

/// Optional body of the validate action.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateBody {
    /// A new description (same rules as on creation); the change is recorded in the history.
    pub description: Option<String>,
    /// A new expiry (same rules as on creation); required when the token has expired.
    pub expires_at: Option<String>,
}

/// Optional body of the invalidate action.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenActionBody {
    /// A new description (same rules as on creation); the change is recorded in the history.
    pub description: Option<String>,
}

/// List the sites the caller manages.
///
/// Platform admins see every site, site managers the sites assigned to them. Sorted by name, then
/// by site key, both compared character by character (upper case before lower case). Page with
/// `cursor`, passing each page's `next`, which continues where the page ended even when sites are
/// created or renamed meanwhile; `offset` reaches the first 10,000 sites.
#[utoipa::path(
    get,
    path = "/admin/v1/sites",
    tag = "admin",
    params(
        ("q" = Option<String>, Query, description = "Search, 1 to 100 characters after trimming, \
            case-insensitive: 3 or more match anywhere in the name or site key, 1 or 2 the start \
            of either (every site key starts with `site_`)", max_length = 100),
        ("enabled" = Option<bool>, Query, description = "Only enabled (`true`) or disabled (`false`) sites"),
        ("limit" = Option<i64>, Query, description = "Sites per page, 1 to 1000 (default 100)"),
        ("offset" = Option<i64>, Query, description = "Sites to skip (default 0); `offset` plus \
            `limit` at most 10,000, and not with `cursor`"),
        ("cursor" = Option<String>, Query, description = "The `next` of the previous page, listed \
            with the same `q` and `enabled`"),
    ),
    responses(
        (status = 200, description = "The sites", body = SitesResponse),
        (status = 400, description = "Malformed query", body = ErrorBody),
        (status = 401, description = "Missing, unknown or expired admin token", body = ErrorBody),
        (status = 403, description = "A site token, not an admin token", body = ErrorBody),
        (status = 422, description = "`validation_failed`: `q` too long or with control \
            characters, a `cursor` this listing did not give, `offset` with `cursor` or beyond \
            10,000", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list_sites(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let page = PageQuery::parse(request.query_string())?;
    let now = caller.now;
    let listed = caller
        .run(move |context, admin, _| {
            let request = SiteListRequest {
                search: page.search,
                enabled: page.enabled,
                limit: page.limit,
                offset: page.offset,
                cursor: page.cursor,
            };
            site_tokens::list_sites(context, admin, &request)
        })
        .await?;
    Ok(answer(SitesResponse {
        sites: listed
            .sites
            .into_iter()
            .map(|site| SiteView::new(site, now))
            .collect(),
        total: listed.total.count,
        total_exact: listed.total.exact,
        next: listed.next,
    }))
}

/// One site the caller manages.
#[utoipa::path(
    get,
    path = "/admin/v1/sites/{site_key}",
    tag = "admin",
    params(("site_key" = String, Path, description = "The site key")),
    responses(
        (status = 200, description = "The site", body = SiteView),
        (status = 401, description = "Missing, unknown or expired admin token", body = ErrorBody),
        (status = 403, description = "A site token, not an admin token", body = ErrorBody),
        (status = 404, description = "No such site, or not one the caller manages", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn site(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let site_key = path.into_inner();
    let now = caller.now;
    let site = caller
        .run(move |context, admin, _| site_tokens::site(context, admin, &site_key))
        .await?;
    Ok(answer(SiteView::new(site, now)))
}

/// List a site's tokens: primary first, then active, then inactive.
#[utoipa::path(
    get,
    path = "/admin/v1/sites/{site_key}/tokens",
    tag = "admin",
    params(("site_key" = String, Path, description = "The site key")),
    responses(
        (status = 200, description = "The site's tokens, values masked", body = TokensResponse),
        (status = 401, description = "Missing, unknown or expired admin token", body = ErrorBody),
        (status = 403, description = "A site token, not an admin token", body = ErrorBody),
        (status = 404, description = "No such site, or not one the caller manages", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list_tokens(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let site_key = path.into_inner();
    let now = caller.now;
    let tokens = caller
        .run(move |context, admin, now| site_tokens::tokens(context, admin, &site_key, now))
        .await?;
    Ok(answer(TokensResponse {
        tokens: tokens
            .iter()
            .map(|token| TokenView::new(token, None, now))
            .collect(),
    }))
}

/// Create a non-primary token.
///
/// The answer holds the full value, shown this once only. A site holds at most 10 tokens: its
/// primary and nine others.
#[utoipa::path(
    post,
    path = "/admin/v1/sites/{site_key}/tokens",
    tag = "admin",
    params(("site_key" = String, Path, description = "The site key")),
    request_body(content = CreateTokenBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; `value` is shown this once only", body = TokenView,
            headers(("Location" = String, description = "The new token's URL"))),
        (status = 403, description = "A site token, not an admin token", body = ErrorBody),
        (status = 404, description = "No such site, or not one the caller manages", body = ErrorBody),
        (status = 409, description = "`token_limit_reached`: the site holds 10 tokens", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a field breaks a rule", body = ErrorBody),
        JsonBodyRefusals,
    ),
    security(("admin_token" = []))
)]
pub async fn create_token(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (caller, body): (_, CreateTokenBody) = Caller::with_json(&state, &request, payload).await?;
    let site_key = path.into_inner();
    let order = TokenOrder {
        description: body.description,
        expires_at: body.expires_at,
        scope: body.scope,
        audience: body.audience,
    };
    let location_site = site_key.clone();
    let (now, address) = (caller.now, caller.address);
    let (token, value) = caller
        .run(move |context, admin, now| {
            site_tokens::create(context, &Acting { admin, address }, &site_key, &order, now)
        })
        .await?;
    Ok(no_store(HttpResponse::Created())
        .insert_header((
            header::LOCATION,
            format!("/admin/v1/sites/{location_site}/tokens/{}", token.id),
        ))
        .json(TokenView::new(&token, Some(value), now)))
}

/// One token of a site.
#[utoipa::path(
    get,
    path = "/admin/v1/sites/{site_key}/tokens/{token_id}",
    tag = "admin",
    params(
        ("site_key" = String, Path, description = "The site key"),
        ("token_id" = i64, Path, description = "The token's id"),
    ),
    responses(
        (status = 200, description = "The token, value masked", body = TokenView),
        (status = 401, description = "Missing, unknown or expired admin token", body = ErrorBody),
        (status = 403, description = "A site token, not an admin token", body = ErrorBody),
        (status = 404, description = "No such site or token", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn token(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let (site_key, token_id) = token_path(path)?;
    let now = caller.now;
    let token = caller
        .run(move |context, admin, _| site_tokens::token(context, admin, &site_key, token_id))
        .await?;
    Ok(answer(TokenView::new(&token, None, now)))
}

/// The refusals regenerate, validate and invalidate share, documented once.
struct TokenActionRefusals;

impl utoipa::IntoResponses for TokenActionRefusals {
    fn responses() -> Responses {
        documented_errors(&[
            ("400", "Malformed JSON or Authorization header"),
            ("401", "Missing, unknown or expired admin token"),
            ("403", "A site token, not an admin token"),
            ("404", "No such site or token"),
            ("409", "`primary_token_managed_by_oauth`"),
            ("413", "Body over the size limit"),
            ("415", "A body that is not application/json"),
            ("422", "`validation_failed`"),
        ])
    }
}

/// The refusals every endpoint with a JSON body shares (the admin token, the body's size, media
/// type and syntax), documented once; each endpoint documents its own 403, 404 and 422.
pub(super) struct JsonBodyRefusals;

impl utoipa::IntoResponses for JsonBodyRefusals {
    fn responses() -> Responses {
        documented_errors(&[
            ("400", "Malformed JSON"),
            ("401", "Missing, unknown or expired admin token"),
            ("413", "Body over the size limit"),
            ("415", "Not application/json"),
        ])
    }
}

type Responses =
    std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>>;

/// Error answers by status, each an `ErrorBody` with this description.
fn documented_errors(errors: &[(&str, &str)]) -> Responses {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder, ResponsesBuilder};
    errors
        .iter()
        .fold(
            ResponsesBuilder::new(),
            |responses, (status, description)| {
                responses.response(
                    *status,
                    ResponseBuilder::new().description(*description).content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    ),
                )
            },
        )
        .build()
        .into()
}

/// Give a non-primary token a new value.
///
/// The old value stops working at once; the new one is in the answer, shown this once only. An
/// inactive token stays inactive until validated. When the body has no `audience`, the token
/// keeps its audience (or keeps having none); when it has one, that replaces the token's.
#[utoipa::path(
    post,
    path = "/admin/v1/sites/{site_key}/tokens/{token_id}/regenerate",
    tag = "admin",
    params(
        ("site_key" = String, Path, description = "The site key"),
        ("token_id" = i64, Path, description = "The token's id"),
    ),
    request_body(content = Option<RegenerateBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "Regenerated; `value` is shown this once only", body = TokenView),
        TokenActionRefusals,
    ),
    security(("admin_token" = []))
)]
pub async fn regenerate(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let (site_key, token_id) = token_path(path)?;
    let body: RegenerateBody =
        read_json(&request, payload, state.max_body_bytes, state.body_timeout).await?;
    let action = TokenAction::Regenerate {
        audience: body.audience,
        expires_at: body.expires_at,
    };
    perform(caller, site_key, token_id, action, body.description).await
}

/// Mark a non-primary token active.
#[utoipa::path(
    post,
    path = "/admin/v1/sites/{site_key}/tokens/{token_id}/validate",
    tag = "admin",
    params(
        ("site_key" = String, Path, description = "The site key"),
        ("token_id" = i64, Path, description = "The token's id"),
    ),
    request_body(content = Option<ValidateBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "The token is active", body = TokenView),
        TokenActionRefusals,
    ),
    security(("admin_token" = []))
)]
pub async fn validate(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let (site_key, token_id) = token_path(path)?;
    let body: ValidateBody =
        read_json(&request, payload, state.max_body_bytes, state.body_timeout).await?;
    let action = TokenAction::Validate {
        expires_at: body.expires_at,
    };
    perform(caller, site_key, token_id, action, body.description).await
}

/// Mark a non-primary token inactive; the very next introspection refuses it.
#[utoipa::path(
    post,
    path = "/admin/v1/sites/{site_key}/tokens/{token_id}/invalidate",
    tag = "admin",
    params(
        ("site_key" = String, Path, description = "The site key"),
        ("token_id" = i64, Path, description = "The token's id"),
    ),
    request_body(content = Option<TokenActionBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "The token is inactive", body = TokenView),
        TokenActionRefusals,
    ),
    security(("admin_token" = []))
)]
pub async fn invalidate(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let (site_key, token_id) = token_path(path)?;
    let body: TokenActionBody =
        read_json(&request, payload, state.max_body_bytes, state.body_timeout).await?;
    perform(
        caller,
        site_key,
        token_id,
        TokenAction::Invalidate,
        body.description,
    )
    .await
}

/// Retire a non-primary token.
///
/// The very next introspection, on every node, refuses it for good; it leaves the site's tokens
/// and its slot is free for a new one. Its history stays readable in the site's history. Retiring
/// it again answers 404.
#[utoipa::path(
    delete,
    path = "/admin/v1/sites/{site_key}/tokens/{token_id}",
    tag = "admin",
    params(
        ("site_key" = String, Path, description = "The site key"),
        ("token_id" = i64, Path, description = "The token's id"),
    ),
    responses(
        (status = 204, description = "Retired"),
        (status = 401, description = "Missing, unknown or expired admin token", body = ErrorBody),
        (status = 403, description = "A site token, not an admin token", body = ErrorBody),
        (status = 404, description = "No such site or token, or already retired", body = ErrorBody),
        (status = 409, description = "`primary_token_managed_by_oauth`", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn retire(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let (site_key, token_id) = token_path(path)?;
    let address = caller.address;
    caller
        .run(move |context, admin, now| {
            site_tokens::act(
                context,
                &Acting { admin, address },
                &site_key,
                token_id,
                &TokenAction::Retire,
                None,
                now,
            )
        })
        .await?;
    Ok(no_store(HttpResponse::NoContent()).finish())
}

/// Invalidate, validate or retire several non-primary tokens at once, all or nothing.
///
/// Either every token changes, in one transaction, or none does: when an id is unknown (or
/// retired), the primary token, another site's, or an expired token to validate, the answer
/// names it and nothing changed. Each token's history records its own event.
#[utoipa::path(
    post,
    path = "/admin/v1/sites/{site_key}/tokens/bulk",
    tag = "admin",
    params(("site_key" = String, Path, description = "The site key")),
    request_body(content = BulkBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Every token as left, by ascending id", body = TokensResponse),
        (status = 403, description = "A site token, not an admin token", body = ErrorBody),
        (status = 404, description = "No such site, or an id that is none of its tokens", body = ErrorBody),
        (status = 409, description = "`primary_token_managed_by_oauth`: an id is the primary token", body = ErrorBody),
        (status = 422, description = "`validation_failed`: an unknown action; 0, 10 or more, or repeated ids; another site's token; an expired token to validate", body = ErrorBody),
        JsonBodyRefusals,
    ),
    security(("admin_token" = []))
)]
pub async fn bulk(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (caller, body): (_, BulkBody) = Caller::with_json(&state, &request, payload).await?;
    let site_key = path.into_inner();
    let order = BulkOrder {
        action: body.action,
        ids: body.ids,
    };
    let (now, address) = (caller.now, caller.address);
    let tokens = caller
        .run(move |context, admin, now| {
            site_tokens::bulk(context, &Acting { admin, address }, &site_key, &order, now)
        })
        .await?;
    Ok(answer(TokensResponse {
        tokens: tokens
            .iter()
            .map(|token| TokenView::new(token, None, now))
            .collect(),
    }))
}

/// Runs a token action as the caller and answers the token's view (with the new value, if any).
async fn perform(
    caller: Caller,
    site_key: String,
    token_id: i64,
    action: TokenAction,
    description: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let (now, address) = (caller.now, caller.address);
    let (token, value) = caller
        .run(move |context, admin, now| {
            site_tokens::act(
                context,
                &Acting { admin, address },
                &site_key,
                token_id,
                &action,
                description.as_deref(),
                now,
            )
        })
        .await?;
    Ok(answer(TokenView::new(&token, value, now)))
}

/// A token's history, oldest first.
#[utoipa::path(
    get,
    path = "/admin/v1/sites/{site_key}/tokens/{token_id}/history",
    tag = "admin",
    params(
        ("site_key" = String, Path, description = "The site key"),
        ("token_id" = i64, Path, description = "The token's id"),
    ),
    responses(
        (status = 200, description = "Every change, oldest first", body = HistoryResponse),
        (status = 401, description = "Missing, unknown or expired admin token", body = ErrorBody),
        (status = 403, description = "A site token, not an admin token", body = ErrorBody),
        (status = 404, description = "No such site or token", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn history(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let (site_key, token_id) = token_path(path)?;
    let entries = caller
        .run(move |context, admin, _| site_tokens::history(context, admin, &site_key, token_id))
        .await?;
    Ok(answer(HistoryResponse {
        events: entries.into_iter().map(HistoryEventView::from).collect(),
    }))
}

/// The site's history: every event of every token it has had, retired ones included.
///
/// Newest first, `limit` events per page (1 to 1000, default 100); page with `cursor`, passing
/// each page's `next`.
#[utoipa::path(
    get,
    path = "/admin/v1/sites/{site_key}/history",
    tag = "admin",
    params(
        ("site_key" = String, Path, description = "The site key"),
        ("limit" = Option<i64>, Query, description = "Events per page, 1 to 1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "The `next` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of events, newest first", body = SiteHistoryResponse),
        (status = 400, description = "`invalid_request`: a malformed or repeated query parameter", body = ErrorBody),
        (status = 401, description = "Missing, unknown or expired admin token", body = ErrorBody),
        (status = 403, description = "A site token, not an admin token", body = ErrorBody),
        (status = 404, description = "No such site, or not one the caller manages", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a cursor that is no page's `next`", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn site_history(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = Caller::authenticate(&state, &request).await?;
    let query = HistoryQuery::parse(request.query_string()).map_err(ApiError::OAuth)?;
    let site_key = path.into_inner();
    let page = caller
        .run(move |context, admin, _| {
            site_tokens::site_history(
                context,
                admin,
                &site_key,
                query.cursor.as_deref(),
                query.limit,
            )
        })
        .await?;
    Ok(answer(SiteHistoryResponse {
        events: page
            .events
            .into_iter()
            .map(SiteHistoryEventView::from)
            .collect(),
        next: page.next,
    }))
}

/// The admin a request's bearer token belongs to. Handlers establish it before they read anything
/// else of the request: without a valid admin token the answer is the RFC 6750 3 challenge,
/// whatever else is wrong with the request, and an unauthenticated body is never parsed.
pub(super) struct Caller {
    context: Context,
    admin: Admin,
    /// When the request arrived (`clock::now`), passed to the service.
    pub(super) now: NaiveDateTime,
    /// The client's address (`super::client_address`), for the audit trail.
    pub(super) address: Option<IpAddr>,
    /// The admin token the request carried.
    pub(super) token: Secret,
}

impl Caller {
    pub(super) async fn authenticate(
        state: &AppState,
        request: &HttpRequest,
    ) -> Result<Self, ApiError> {
        let presented: Secret = bearer_token(
            request
                .headers()
                .get(header::AUTHORIZATION)
                .map(|value| value.as_bytes()),
        )
        .map_err(ApiError::MalformedBearer)?
        .ok_or(ApiError::BearerTokenMissing)?;
        let context = state.context.clone();
        let now = crate::clock::now();
        let checked = context.clone();
        let token = presented.clone();
        let admin = request_id::block(move || admins::admin_for_bearer(&checked, &presented, now))
            .await??;
        Ok(Self {
            context,
            admin,
            now,
            address: super::client_address(&state.trusted_proxies, request),
            token,
        })
    }

    /// [`Caller::authenticate`], then the request's JSON body ([`read_json`]): a body is read only
    /// once its admin token holds.
    pub(super) async fn with_json<T: DeserializeOwned + Default>(
        state: &AppState,
        request: &HttpRequest,
        payload: web::Payload,
    ) -> Result<(Self, T), ApiError> {
        let caller = Self::authenticate(state, request).await?;
        let body = read_json(request, payload, state.max_body_bytes, state.body_timeout).await?;
        Ok((caller, body))
    }

    /// Runs `action` as this admin, off the async executor.
    pub(super) async fn run<T, F>(self, action: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Context, &Admin, NaiveDateTime) -> Result<T, ServiceError> + Send + 'static,
    {
        Ok(request_id::block(move || action(&self.context, &self.admin, self.now)).await??)
    }
}

/// A token id that is not a number names no token: 404, like an unknown one.
fn token_path(path: web::Path<(String, String)>) -> Result<(String, i64), ApiError> {
    let (site_key, token_id) = path.into_inner();
    let token_id = token_id
        .parse()
        .map_err(|_| ServiceError::from(AdminRefusal::TokenNotFound))?;
    Ok((site_key, token_id))
}

pub(super) fn answer(body: impl Serialize) -> HttpResponse {
    no_store(HttpResponse::Ok()).json(body)
}

/// `?q=&enabled=&limit=&offset=&cursor=`, parsed as strictly as OAuth forms (a repeated
/// parameter is an error). The rules for `q`, `cursor` and how far `offset` reaches are the
/// listing's own (`site_tokens::list_sites`).
struct PageQuery {
    search: Option<String>,
    enabled: Option<bool>,
    limit: i64,
    offset: Option<i64>,
    cursor: Option<String>,
}

impl PageQuery {
    fn parse(query: &str) -> Result<Self, OAuthError> {
        let params = Params::parse(query.as_bytes())?;
        let number = |name: &str, range: std::ops::RangeInclusive<i64>| {
            params
                .get(name)
                .map(|raw| {
                    raw.parse::<i64>()
                        .ok()
                        .filter(|value| range.contains(value))
                        .ok_or_else(|| {
                            OAuthError::invalid_request(format!(
                                "{name} must be a whole number from {} to {}",
                                range.start(),
                                range.end()
                            ))
                        })
                })
                .transpose()
        };
        let enabled = match params.get("enabled") {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => return Err(OAuthError::invalid_request("enabled must be true or false")),
        };
        Ok(Self {
            search: params.get("q").map(str::to_string),
            enabled,
            limit: number("limit", 1..=MAX_PAGE)?.unwrap_or(DEFAULT_PAGE),
            offset: number("offset", 0..=i64::from(i32::MAX))?,
            cursor: params.get("cursor").map(str::to_string),
        })
    }
}

/// `?limit=&cursor=` of the site history, parsed as strictly as [`PageQuery`].
struct HistoryQuery {
    limit: i64,
    cursor: Option<String>,
}

impl HistoryQuery {
    fn parse(query: &str) -> Result<Self, OAuthError> {
        let params = Params::parse(query.as_bytes())?;
        let limit = match params.get("limit") {
            None => DEFAULT_HISTORY_PAGE,
            Some(raw) => raw
                .parse::<i64>()
                .ok()
                .filter(|limit| (1..=MAX_HISTORY_PAGE).contains(limit))
                .ok_or_else(|| {
                    OAuthError::invalid_request(format!(
                        "limit must be a whole number from 1 to {MAX_HISTORY_PAGE}"
                    ))
                })?,
        };
        Ok(Self {
            limit,
            cursor: params.get("cursor").map(str::to_string),
        })
    }
}

impl SiteView {
    /// The site as shown at `now`.
    pub(super) fn new(summary: SiteSummary, now: NaiveDateTime) -> Self {
        SiteView {
            previous_auth_key_valid_until: overlap_end(
                summary.site.previous_auth_key_valid_until,
                now,
            )
            .map(rfc3339),
            site_key: summary.site.site_key,
            name: summary.site.name,
            enabled: summary.site.enabled,
            created_at: rfc3339(summary.site.created_at),
            token_count: summary.token_count,
        }
    }
}

impl TokenView {
    fn new(token: &ManagedToken, value: Option<Secret>, now: NaiveDateTime) -> Self {
        TokenView {
            id: token.id,
            kind: token.kind.as_str(),
            description: token.description.clone(),
            masked_value: token.masked_value(),
            active: token.active,
            expired: token.has_expired(now),
            generated_at: rfc3339(token.generated_at),
            last_used_at: token.last_used_at.map(rfc3339),
            expires_at: token.expires_at.map(rfc3339),
            scope: token.scope.clone(),
            audience: token.audience.clone(),
            retired_at: token.retired_at.map(rfc3339),
            value: value.map(|value| value.expose().to_string()),
        }
    }
}

impl From<HistoryEntry> for HistoryEventView {
    fn from(entry: HistoryEntry) -> Self {
        HistoryEventView {
            occurred_at: rfc3339(entry.occurred_at),
            event: entry.event.as_str(),
            actor: ActorView {
                kind: entry.actor.kind(),
                name: entry.actor.name().to_string(),
            },
            detail: entry.detail,
        }
    }
}

impl From<SiteHistoryEntry> for SiteHistoryEventView {
    fn from(event: SiteHistoryEntry) -> Self {
        let view = HistoryEventView::from(event.entry);
        SiteHistoryEventView {
            token_id: event.token_id,
            description: event.description,
            occurred_at: view.occurred_at,
            event: view.event,
            actor: view.actor,
            detail: view.detail,
        }
    }
}

pub(super) fn rfc3339(at: NaiveDateTime) -> String {
    at.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
