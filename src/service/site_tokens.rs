//! The admin scope's use cases: an admin lists the sites they manage and manages each site's
//! non-primary tokens (create, regenerate, validate, invalidate, retire, one or many at once, and
//! each token's and the whole site's history), and which resource
//! servers each is meant for (its audience).
//!
//! Every use case first resolves the site through the admin's rights, so a site the admin may not
//! manage is "not found", exactly like a site that does not exist. Every change is logged with the
//! action, the admin, the site and the token id, never the value.

use std::net::IpAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::NaiveDateTime;

use super::{Context, ServiceError};
use crate::crypto;
use crate::domain::admin::{
    check_bulk_ids, sort_for_listing, Admin, AdminRefusal, ManagedToken, EXPIRED_TOKEN_NEEDS_EXPIRY,
};
use crate::domain::audience::{checked_audience, AudienceError, RequestedAudience};
use crate::domain::audit::Requester;
use crate::domain::description::validate_description;
use crate::domain::history::{Actor, HistoryEntry, SiteHistoryEntry};
use crate::domain::secret::Secret;
use crate::domain::site::SiteSummary;
use crate::domain::site::{is_site_key, Site};
use crate::domain::site_search::{
    PageStart, SiteListing, SitePosition, SiteSearch, SiteTotal, OFFSET_PAGING_LIMIT,
};
use crate::domain::token::{self, SecretKind};
use crate::domain::token_policy::TermsError;
use crate::store::{
    Author, BulkChangeOutcome, BulkRefusal, NewSecondaryToken, NewTokenOutcome, TokenChange,
    TokenChangeOutcome,
};

/// What an admin asks for when creating a token, as received (checked here).
#[derive(Debug, Default)]
pub struct TokenOrder {
    pub description: String,
    /// RFC 3339.
    pub expires_at: Option<String>,
    /// Space-separated scopes.
    pub scope: Option<String>,
    /// The resource servers it is meant for; `None`: every resource server.
    pub audience: Option<RequestedAudience>,
}

/// What an admin does to an existing token. Each `expires_at` is as received (RFC 3339, checked
/// here); an expired token needs one to be regenerated or validated.
#[derive(Debug, Clone)]
pub enum TokenAction {
    /// A new value; with `audience`, also a new audience (as received, checked here), else the
    /// token keeps its own.
    Regenerate {
        audience: Option<RequestedAudience>,
        expires_at: Option<String>,
    },
    Validate {
        expires_at: Option<String>,
    },
    Invalidate,
    /// Refused for good, its slot free for a new token; its history stays.
    Retire,
}

impl TokenAction {
    fn as_str(&self) -> &'static str {
        match self {
            TokenAction::Regenerate { .. } => "regenerate",
            TokenAction::Validate { .. } => "validate",
            TokenAction::Invalidate => "invalidate",
            TokenAction::Retire => "retire",
        }
    }

    /// The action a bulk request names: `invalidate`, `validate` or `retire`.
    fn for_bulk(name: &str) -> Option<Self> {
        match name {
            "invalidate" => Some(TokenAction::Invalidate),
            "validate" => Some(TokenAction::Validate { expires_at: None }),
            "retire" => Some(TokenAction::Retire),
            _ => None,
        }
    }
}

/// A bulk action as received (checked here): `action` on each of `ids`, all or nothing.
#[derive(Debug, Default)]
pub struct BulkOrder {
    pub action: String,
    pub ids: Vec<i64>,
}

/// Events per page of a site's history when the request gives no `limit`, and the most.
pub const DEFAULT_HISTORY_PAGE: i64 = 100;
pub const MAX_HISTORY_PAGE: i64 = 1000;

/// One page of a site's history, newest first.
#[derive(Debug)]
pub struct SiteHistory {
    pub events: Vec<SiteHistoryEntry>,
    /// The cursor of the next (older) page; `None` on the last page.
    pub next: Option<String>,
}

/// What an admin asks of the site listing, as received (checked here).
#[derive(Debug, Default)]
pub struct SiteListRequest {
    /// `q`, untrimmed.
    pub search: Option<String>,
    pub enabled: Option<bool>,
    /// Sites per page, 1 to 1000 (checked by the caller).
    pub limit: i64,
    pub offset: Option<i64>,
    /// The `next` of a previous page.
    pub cursor: Option<String>,
}

/// One page of the site listing.
#[derive(Debug)]
pub struct SiteList {
    pub sites: Vec<SiteSummary>,
    pub total: SiteTotal,
    /// The cursor of the next page; `None` on the last page.
    pub next: Option<String>,
}

/// One page of the sites `admin` manages that match the request, by name, and how many match in
/// all.
pub fn list_sites(
    context: &Context,
    admin: &Admin,
    request: &SiteListRequest,
) -> Result<SiteList, ServiceError> {
    let search = match request.search.as_deref() {
        Some(raw) => SiteSearch::parse(raw)
            .map_err(|error| AdminRefusal::invalid_field("q", error.to_string()))?,
        None => None,
    };
    let mut listing = SiteListing {
        search,
        enabled: request.enabled,
        limit: request.limit,
        start: PageStart::Offset(0),
    };
    listing.start =
        match (request.offset, request.cursor.as_deref()) {
            (Some(_), Some(_)) => return Err(AdminRefusal::invalid_field(
                "offset",
                "offset cannot be combined with cursor, which already says where the page starts",
            )
            .into()),
            (None, Some(cursor)) => PageStart::After(open_cursor(context, &listing, cursor)?),
            (offset, None) => {
                let offset = offset.unwrap_or(0);
                if !SiteListing::offset_within_reach(offset, listing.limit) {
                    return Err(AdminRefusal::invalid_field(
                        "offset",
                        format!(
                        "offset plus limit must be at most {OFFSET_PAGING_LIMIT}; page further \
                         with cursor, the next of the previous page"
                    ),
                    )
                    .into());
                }
                PageStart::Offset(offset)
            }
        };
    let page = context.store.site_page(admin, &listing)?;
    Ok(SiteList {
        next: page
            .next
            .map(|position| seal_cursor(context, &listing, &position)),
        sites: page.sites,
        total: page.total,
    })
}

/// Longest cursor worth decoding: a position holds a name of at most 100 characters.
const MAX_CURSOR_CHARS: usize = 1024;
/// Length of a cursor's tag (HMAC-SHA256).
const CURSOR_TAG_LEN: usize = 32;

/// The cursor of the page after `position`: the position and its tag (`Keys::cursor_tag`) over
/// it and the listing it belongs to, in URL-safe base64.
fn seal_cursor(context: &Context, listing: &SiteListing, position: &SitePosition) -> String {
    let mut cursor = position.to_bytes();
    let tag = context.keys.cursor_tag(&tagged(listing, &cursor));
    cursor.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(cursor)
}

/// The position a cursor from [`seal_cursor`] carries, if it was made for this listing (the
/// same search and filter) by a server with this secret.
fn open_cursor(
    context: &Context,
    listing: &SiteListing,
    cursor: &str,
) -> Result<SitePosition, AdminRefusal> {
    let refused = || {
        AdminRefusal::invalid_field(
            "cursor",
            "cursor must be the next of a previous page, with the same q and enabled",
        )
    };
    if cursor.len() > MAX_CURSOR_CHARS {
        return Err(refused());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| refused())?;
    if bytes.len() < CURSOR_TAG_LEN {
        return Err(refused());
    }
    let (position, tag) = bytes.split_at(bytes.len() - CURSOR_TAG_LEN);
    if !context
        .keys
        .verify_cursor_tag(&tagged(listing, position), tag)
    {
        return Err(refused());
    }
    SitePosition::from_bytes(position).ok_or_else(refused)
}

/// What a cursor's tag covers: the listing's context (its length first, so no other split of
/// the same bytes reads the same) and the position.
fn tagged(listing: &SiteListing, position: &[u8]) -> Vec<u8> {
    let context = listing.cursor_context();
    let mut message = Vec::with_capacity(4 + context.len() + position.len());
    message.extend_from_slice(&(context.len() as u32).to_be_bytes());
    message.extend_from_slice(&context);
    message.extend_from_slice(position);
    message
}

pub fn site(context: &Context, admin: &Admin, site_key: &str) -> Result<SiteSummary, ServiceError> {
    let site = managed_site(context, admin, site_key)?;
    let token_count = context.store.site_tokens(site.id)?.len() as i64;
    Ok(SiteSummary { site, token_count })
}

/// The site's tokens in listing order: primary, usable, then inactive or expired.
pub fn tokens(
    context: &Context,
    admin: &Admin,
    site_key: &str,
    now: NaiveDateTime,
) -> Result<Vec<ManagedToken>, ServiceError> {
    let site = managed_site(context, admin, site_key)?;
    let mut tokens = context.store.site_tokens(site.id)?;
    sort_for_listing(&mut tokens, now);
    Ok(tokens)
}

pub fn token(
    context: &Context,
    admin: &Admin,
    site_key: &str,
    token_id: i64,
) -> Result<ManagedToken, ServiceError> {
    let site = managed_site(context, admin, site_key)?;
    context
        .store
        .site_token(site.id, token_id)?
        .ok_or(AdminRefusal::TokenNotFound.into())
}

/// Creates an active non-primary token; its value exists in clear only in the return value.
pub fn create(
    context: &Context,
    acting: &Acting,
    site_key: &str,
    order: &TokenOrder,
    now: NaiveDateTime,
) -> Result<(ManagedToken, Secret), ServiceError> {
    let description = checked_description(&order.description)?;
    let expires_at = context
        .policy
        .new_token_expiry(order.expires_at.as_deref(), now)
        .map_err(refused_terms)?;
    let scope = order
        .scope
        .as_deref()
        .map(|raw| context.policy.check_scope(raw))
        .transpose()
        .map_err(refused_terms)?;
    let audience = order
        .audience
        .as_ref()
        .map(checked_audience)
        .transpose()
        .map_err(refused_audience)?;
    let admin = acting.admin;
    let requester = Requester::admin(admin, acting.address);
    let site = managed_site(context, admin, site_key)?;
    let value = token::mint(SecretKind::SecondaryToken, &crypto::random_bytes()?);
    let value_digest = context.keys.token_digest(value.expose());
    let new = NewSecondaryToken {
        value_digest: &value_digest,
        value_hint: &token::hint(&value),
        description: &description,
        expires_at,
        scope: scope.as_deref(),
        audience: audience.as_deref(),
    };
    let outcome =
        context
            .store
            .create_secondary_token(site.id, &new, &author(acting, &requester), now)?;
    let created = match outcome {
        NewTokenOutcome::Created(created) => created,
        NewTokenOutcome::LimitReached => return Err(AdminRefusal::TokenLimitReached.into()),
        NewTokenOutcome::UnknownResourceServer(client_id) => {
            return Err(refused_audience(AudienceError::UnknownResourceServer(client_id)).into())
        }
    };
    context.counters.count_minted();
    log_action(admin, "create", &site, created.id);
    Ok((created, value))
}

/// Regenerates, validates or invalidates a non-primary token, optionally with a new description.
/// Regeneration returns the new value, in clear only here.
pub fn act(
    context: &Context,
    acting: &Acting,
    site_key: &str,
    token_id: i64,
    action: &TokenAction,
    description: Option<&str>,
    now: NaiveDateTime,
) -> Result<(ManagedToken, Option<Secret>), ServiceError> {
    let description = description.map(checked_description).transpose()?;
    let new_audience = match action {
        TokenAction::Regenerate {
            audience: Some(requested),
            ..
        } => Some(checked_audience(requested).map_err(refused_audience)?),
        _ => None,
    };
    let new_expiry = match action {
        TokenAction::Regenerate { expires_at, .. } | TokenAction::Validate { expires_at } => {
            expires_at
                .as_deref()
                .map(|raw| context.policy.check_expiry(raw, now))
                .transpose()
                .map_err(refused_terms)?
        }
        TokenAction::Invalidate | TokenAction::Retire => None,
    };
    let admin = acting.admin;
    let requester = Requester::admin(admin, acting.address);
    let site = managed_site(context, admin, site_key)?;
    let new_value = match action {
        TokenAction::Regenerate { .. } => Some(token::mint(
            SecretKind::SecondaryToken,
            &crypto::random_bytes()?,
        )),
        TokenAction::Validate { .. } | TokenAction::Invalidate | TokenAction::Retire => None,
    };
    let new_digest = new_value
        .as_ref()
        .map(|value| context.keys.token_digest(value.expose()));
    let new_hint = new_value.as_ref().map(token::hint);
    let change = match (action, &new_digest, &new_hint) {
        (TokenAction::Regenerate { .. }, Some(value_digest), Some(value_hint)) => {
            TokenChange::Regenerate {
                value_digest,
                value_hint,
                audience: new_audience.as_deref(),
                expires_at: new_expiry,
            }
        }
        (TokenAction::Validate { .. }, ..) => TokenChange::Validate {
            expires_at: new_expiry,
        },
        (TokenAction::Retire, ..) => TokenChange::Retire,
        _ => TokenChange::Invalidate,
    };
    let outcome = context.store.change_token(
        site.id,
        token_id,
        &change,
        description.as_deref(),
        &author(acting, &requester),
        now,
    )?;
    let changed = match outcome {
        TokenChangeOutcome::Changed(token) => token,
        // Nothing happened, so nothing is counted or logged.
        TokenChangeOutcome::Unchanged(token) => return Ok((token, new_value)),
        TokenChangeOutcome::NotFound => return Err(AdminRefusal::TokenNotFound.into()),
        TokenChangeOutcome::Primary => return Err(AdminRefusal::PrimaryTokenManagedByOAuth.into()),
        TokenChangeOutcome::UnknownResourceServer(client_id) => {
            return Err(refused_audience(AudienceError::UnknownResourceServer(client_id)).into())
        }
        TokenChangeOutcome::Expired => return Err(expired_token().into()),
    };
    count(context, action);
    log_action(admin, action.as_str(), &site, token_id);
    Ok((changed, new_value))
}

/// Applies one action (`invalidate`, `validate` or `retire`) to 1 to 9 tokens of the site, all
/// or nothing: when any id is unknown, the primary, another site's, or (validating) expired,
/// nothing changes and the refusal names it. The tokens as left, in ascending id order.
pub fn bulk(
    context: &Context,
    acting: &Acting,
    site_key: &str,
    order: &BulkOrder,
    now: NaiveDateTime,
) -> Result<Vec<ManagedToken>, ServiceError> {
    let action = TokenAction::for_bulk(&order.action).ok_or_else(|| {
        AdminRefusal::invalid_field("action", "action must be invalidate, validate or retire")
    })?;
    check_bulk_ids(&order.ids).map_err(|reason| AdminRefusal::invalid_field("ids", reason))?;
    let admin = acting.admin;
    let requester = Requester::admin(admin, acting.address);
    let site = managed_site(context, admin, site_key)?;
    let change = match action {
        TokenAction::Validate { .. } => TokenChange::Validate { expires_at: None },
        TokenAction::Retire => TokenChange::Retire,
        _ => TokenChange::Invalidate,
    };
    let outcome = context.store.change_tokens(
        site.id,
        &order.ids,
        &change,
        &author(acting, &requester),
        now,
    )?;
    let tokens = match outcome {
        BulkChangeOutcome::Changed(tokens) => tokens,
        BulkChangeOutcome::Refused(token_id, refusal) => {
            return Err(match refusal {
                BulkRefusal::NotFound => AdminRefusal::BulkTokenNotFound(token_id),
                BulkRefusal::Primary => AdminRefusal::BulkPrimaryToken(token_id),
                BulkRefusal::OtherSite => AdminRefusal::invalid_field(
                    "ids",
                    format!("ids names token {token_id}, another site's; nothing was changed"),
                ),
                BulkRefusal::Expired => AdminRefusal::invalid_field(
                    "ids",
                    format!(
                        "ids names token {token_id}: {EXPIRED_TOKEN_NEEDS_EXPIRY} (validate it \
                         alone with expires_at); nothing was changed"
                    ),
                ),
            }
            .into())
        }
    };
    for token in &tokens {
        count(context, &action);
        log_action(admin, action.as_str(), &site, token.id);
    }
    Ok(tokens)
}

/// One page of the site's history, newest first: every event of every token it has had, retired
/// ones included. `cursor` is the `next` of the previous page.
pub fn site_history(
    context: &Context,
    admin: &Admin,
    site_key: &str,
    cursor: Option<&str>,
    limit: i64,
) -> Result<SiteHistory, ServiceError> {
    let before = cursor
        .map(|raw| {
            raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
                AdminRefusal::invalid_field("cursor", "cursor must be the next of a previous page")
            })
        })
        .transpose()?;
    let site = managed_site(context, admin, site_key)?;
    let mut events = context.store.site_history(site.id, before, limit + 1)?;
    let next = if events.len() as i64 > limit {
        events.truncate(limit as usize);
        events.last().map(|event| event.id.to_string())
    } else {
        None
    };
    Ok(SiteHistory { events, next })
}

fn count(context: &Context, action: &TokenAction) {
    match action {
        TokenAction::Regenerate { .. } => context.counters.count_minted(),
        TokenAction::Invalidate | TokenAction::Retire => context.counters.count_invalidated(),
        TokenAction::Validate { .. } => {}
    }
}

fn expired_token() -> AdminRefusal {
    AdminRefusal::invalid_field(
        "expires_at",
        format!("{EXPIRED_TOKEN_NEEDS_EXPIRY} (expires_at, in the future)"),
    )
}

/// The token's history, oldest first.
pub fn history(
    context: &Context,
    admin: &Admin,
    site_key: &str,
    token_id: i64,
) -> Result<Vec<HistoryEntry>, ServiceError> {
    let site = managed_site(context, admin, site_key)?;
    context
        .store
        .token_history(site.id, token_id)?
        .ok_or(AdminRefusal::TokenNotFound.into())
}

pub(super) fn managed_site(
    context: &Context,
    admin: &Admin,
    site_key: &str,
) -> Result<Site, ServiceError> {
    if !is_site_key(site_key) {
        return Err(AdminRefusal::SiteNotFound.into());
    }
    context
        .store
        .site_for_admin(admin, site_key)?
        .ok_or(AdminRefusal::SiteNotFound.into())
}

fn checked_description(raw: &str) -> Result<String, AdminRefusal> {
    validate_description(raw)
        .map_err(|error| AdminRefusal::invalid_field("description", error.to_string()))
}

fn refused_terms(error: TermsError) -> AdminRefusal {
    AdminRefusal::invalid_field(error.field(), error.to_string())
}

fn refused_audience(error: AudienceError) -> AdminRefusal {
    AdminRefusal::invalid_field("audience", error.to_string())
}

/// An admin changing a token through the admin API, and where the request came from.
#[derive(Debug, Clone, Copy)]
pub struct Acting<'a> {
    pub admin: &'a Admin,
    pub address: Option<IpAddr>,
}

fn author<'a>(acting: &Acting, audit: &'a Requester) -> Author<'a> {
    Author {
        history: Actor::Admin {
            name: acting.admin.name.clone(),
        },
        audit,
    }
}

fn log_action(admin: &Admin, action: &str, site: &Site, token_id: i64) {
    log::info!(
        "admin action={action} admin={:?} site={} token_id={token_id}",
        admin.name,
        site.site_key
    );
}
