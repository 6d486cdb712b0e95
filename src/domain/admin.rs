//! Admin principals and the admin scope: who may manage which sites' non-primary tokens, and the
//! refusals the admin API answers with.

use chrono::NaiveDateTime;

use super::introspection::TokenKind;
use super::slots::MAX_TOKENS_PER_SITE;
use super::token::{self, SecretKind};

/// Prefix of admin client ids (public, like site keys).
pub const ADMIN_CLIENT_ID_PREFIX: &str = "adm_";

/// The one scope an admin token carries, and the only scope admin credentials may ask for.
pub const ADMIN_SCOPE: &str = "admin";

/// What an admin may manage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every site.
    PlatformAdmin,
    /// Only the sites assigned to them.
    SiteManager,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform-admin",
            Role::SiteManager => "site-manager",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Role::PlatformAdmin, Role::SiteManager]
            .into_iter()
            .find(|role| role.as_str() == name)
    }
}

/// An admin principal as the rest of the program sees it (no credentials in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub id: i64,
    pub client_id: String,
    pub name: String,
    pub role: Role,
    pub enabled: bool,
    pub created_at: NaiveDateTime,
    /// When the secret its last rotation replaced stops (or stopped) working; `None` when that
    /// rotation had no overlap, or there was none.
    pub previous_secret_valid_until: Option<NaiveDateTime>,
}

impl Admin {
    /// Platform admins manage every site; site managers only those assigned to them.
    pub fn manages_every_site(&self) -> bool {
        self.role == Role::PlatformAdmin
    }
}

/// An admin with the site keys assigned to them (always empty for platform admins).
#[derive(Debug)]
pub struct AdminWithSites {
    pub admin: Admin,
    pub site_keys: Vec<String>,
}

/// A site token as the admin scope shows it: everything but its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedToken {
    pub id: i64,
    pub kind: TokenKind,
    pub description: String,
    /// The last characters of the value (`token::hint`).
    pub value_hint: String,
    pub active: bool,
    pub generated_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
    pub expires_at: Option<NaiveDateTime>,
    pub scope: Option<String>,
    /// Client ids of the resource servers it is meant for, in order; `None`: every resource
    /// server. Empty once every one of them was deleted: then no resource server may see it.
    pub audience: Option<Vec<String>>,
    /// When it was retired: refused for good, out of the site's slots and listings.
    pub retired_at: Option<NaiveDateTime>,
}

impl ManagedToken {
    /// Whether introspection accepts it at `now`: active and not expired (the site aside).
    pub fn is_usable(&self, now: NaiveDateTime) -> bool {
        self.active && !self.has_expired(now)
    }

    pub fn has_expired(&self, now: NaiveDateTime) -> bool {
        self.expires_at.is_some_and(|expires_at| expires_at <= now)
    }

    /// Prefix and last characters only (STYLE: views never carry secrets).
    pub fn masked_value(&self) -> String {
        let kind = match self.kind {
            TokenKind::Primary => SecretKind::PrimaryToken,
            TokenKind::Secondary => SecretKind::SecondaryToken,
        };
        token::masked(kind, &self.value_hint)
    }
}

/// The order site managers see a site's tokens in: the primary token, then usable tokens, then
/// the others (inactive or expired), each group oldest first.
pub fn sort_for_listing(tokens: &mut [ManagedToken], now: NaiveDateTime) {
    tokens.sort_by_key(|token| {
        (
            token.kind != TokenKind::Primary,
            !token.is_usable(now),
            token.id,
        )
    });
}

/// Whether regenerating or validating a token that expires at `expires_at` needs a new expiry:
/// an expired token stays refused whatever else changes, so without `new_expiry` the change
/// would only look like it helped.
pub fn revival_needs_new_expiry(
    expires_at: Option<NaiveDateTime>,
    new_expiry: Option<NaiveDateTime>,
    now: NaiveDateTime,
) -> bool {
    new_expiry.is_none() && expires_at.is_some_and(|expires_at| expires_at <= now)
}

/// What an expired token needs before regenerating or validating it.
pub const EXPIRED_TOKEN_NEEDS_EXPIRY: &str =
    "this token has expired; give a new expiry or retire it";

/// The most tokens one bulk action may name: every non-primary token of a site.
pub const MAX_BULK_TOKENS: usize = (MAX_TOKENS_PER_SITE - 1) as usize;

/// Checks the token ids of a bulk action: 1 to [`MAX_BULK_TOKENS`], each once.
pub fn check_bulk_ids(ids: &[i64]) -> Result<(), String> {
    if ids.is_empty() || ids.len() > MAX_BULK_TOKENS {
        return Err(format!(
            "ids must list 1 to {MAX_BULK_TOKENS} token ids (a site's non-primary tokens)"
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    match ids.iter().find(|id| !seen.insert(**id)) {
        Some(repeated) => Err(format!("ids lists token {repeated} more than once")),
        None => Ok(()),
    }
}

/// Why the admin API refused an action. Unknown sites and sites the admin may not manage are the
/// same refusal, so a site manager cannot learn which other sites exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminRefusal {
    #[error("no site with this key is managed by this admin")]
    SiteNotFound,
    #[error("this site has no token with this id")]
    TokenNotFound,
    #[error(
        "the site already holds {MAX_TOKENS_PER_SITE} tokens (its primary token and the most \
         others it may have); retire one it no longer needs, or regenerate an expired one with a \
         new expiry"
    )]
    TokenLimitReached,
    #[error(
        "the primary token is managed only through /oauth2/token and /oauth2/invalidate_token"
    )]
    PrimaryTokenManagedByOAuth,
    /// A bulk action named a token id the site does not have (or no longer: it was retired).
    #[error("this site has no token with id {0}; nothing was changed")]
    BulkTokenNotFound(i64),
    /// A bulk action named the site's primary token.
    #[error(
        "token {0} is the primary token, managed only through /oauth2/token and \
         /oauth2/invalidate_token; nothing was changed"
    )]
    BulkPrimaryToken(i64),
    /// Platform admins only: the audit trail, the emergency invalidation of a primary token.
    #[error("only platform admins may do this")]
    PlatformAdminsOnly,
    #[error("no resource server has this client id")]
    ResourceServerNotFound,
    #[error("no admin has this client id")]
    AdminNotFound,
    /// An admin may not disable or demote itself: another platform admin must.
    #[error("an admin cannot disable itself or give up being a platform admin; ask another platform admin")]
    CannotChangeOwnAccess,
    /// The change would leave no enabled platform admin, and nobody able to undo it over HTTP.
    #[error("this would leave no enabled platform admin; enable or promote another one first")]
    LastPlatformAdmin,
    /// A request field breaks a rule; `reason` names the field.
    #[error("{reason}")]
    InvalidField { field: String, reason: String },
}

impl AdminRefusal {
    pub fn invalid_field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        AdminRefusal::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: i64, kind: TokenKind, active: bool) -> ManagedToken {
        ManagedToken {
            id,
            kind,
            description: format!("token {id}"),
            value_hint: "AbCd".into(),
            active,
            generated_at: NaiveDateTime::default(),
            last_used_at: None,
            expires_at: None,
            scope: None,
            audience: None,
            retired_at: None,
        }
    }

    #[test]
    fn listing_shows_primary_then_active_then_inactive() {
        let now = NaiveDateTime::default() + chrono::Duration::days(1);
        let mut expired = token(1, TokenKind::Secondary, true);
        expired.expires_at = Some(now);
        let mut tokens = vec![
            token(5, TokenKind::Secondary, false),
            token(4, TokenKind::Secondary, true),
            expired,
            token(3, TokenKind::Secondary, false),
            token(9, TokenKind::Primary, false),
            token(2, TokenKind::Secondary, true),
        ];
        sort_for_listing(&mut tokens, now);
        let order: Vec<i64> = tokens.iter().map(|token| token.id).collect();
        assert_eq!(order, [9, 2, 4, 1, 3, 5]);
    }

    #[test]
    fn only_an_expired_token_without_a_new_expiry_needs_one() {
        let now = NaiveDateTime::default() + chrono::Duration::days(10);
        let past = Some(now - chrono::Duration::seconds(1));
        let future = Some(now + chrono::Duration::days(1));
        assert!(revival_needs_new_expiry(past, None, now));
        assert!(revival_needs_new_expiry(Some(now), None, now));
        assert!(!revival_needs_new_expiry(past, future, now));
        assert!(!revival_needs_new_expiry(future, None, now));
        assert!(!revival_needs_new_expiry(None, None, now));
    }

    #[test]
    fn bulk_ids_are_one_to_nine_distinct_ids() {
        assert!(check_bulk_ids(&[1]).is_ok());
        assert!(check_bulk_ids(&[1, 2, 3, 4, 5, 6, 7, 8, 9]).is_ok());
        assert!(check_bulk_ids(&[]).is_err());
        assert!(check_bulk_ids(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]).is_err());
        let repeated = check_bulk_ids(&[4, 5, 4]).unwrap_err();
        assert!(repeated.contains("token 4"), "{repeated}");
    }

    #[test]
    fn masked_values_show_prefix_and_hint_only() {
        assert_eq!(
            token(1, TokenKind::Secondary, true).masked_value(),
            "tws_…AbCd"
        );
        assert_eq!(
            token(1, TokenKind::Primary, true).masked_value(),
            "twp_…AbCd"
        );
    }

    #[test]
    fn role_names_round_trip() {
        for role in [Role::PlatformAdmin, Role::SiteManager] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
