//! The audit trail's vocabulary: who (the actor) did what (the action) to which credential (the
//! target), from which address, and how it ended. `service::audit` records and lists events,
//! `store::audit` keeps them.
//!
//! An event never holds a secret or token value. Text that someone else chose (a site or admin
//! name, a client id that was sent but names no client) is never kept as sent: names are kept in
//! their escaped form ([`printable`]), and an unknown client id is not kept at all, since it may be
//! a secret pasted into the wrong field.

use std::fmt::Write as _;

use chrono::NaiveDateTime;

use super::admin::Admin;
use super::oauth_error::OAuthError;
use super::request::Params;

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActorKind {
    /// A site, through the OAuth endpoints.
    Site,
    /// A resource server, through introspection.
    ResourceServer,
    /// An admin, through the admin API or the page.
    Admin,
    /// Someone with a shell: the `tokenwarden` CLI, named by the operating-system user.
    Operator,
    /// The server itself (throttling, alarms).
    System,
}

impl ActorKind {
    pub const ALL: [ActorKind; 5] = [
        ActorKind::Site,
        ActorKind::ResourceServer,
        ActorKind::Admin,
        ActorKind::Operator,
        ActorKind::System,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Site => "site",
            ActorKind::ResourceServer => "resource_server",
            ActorKind::Admin => "admin",
            ActorKind::Operator => "operator",
            ActorKind::System => "system",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// The actor of an event: a kind, and for clients and admins their id and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditActor {
    pub kind: ActorKind,
    /// A client id (site key, resource-server or admin client id), or the operating-system user
    /// of an operator; `None` when unknown.
    pub id: Option<String>,
    pub name: Option<String>,
}

impl AuditActor {
    pub fn admin(admin: &Admin) -> Self {
        Self {
            kind: ActorKind::Admin,
            id: Some(admin.client_id.clone()),
            name: Some(printable(&admin.name)),
        }
    }

    /// The CLI's user: the name the environment gives (`$USER` or `$LOGNAME`, which the user
    /// can set) and the effective user id the kernel gives (which they cannot).
    pub fn operator(user: Option<&str>, uid: Option<u32>) -> Self {
        Self {
            kind: ActorKind::Operator,
            id: user.map(printable),
            name: uid.map(|uid| format!("uid {uid}")),
        }
    }

    pub fn system() -> Self {
        Self {
            kind: ActorKind::System,
            id: None,
            name: None,
        }
    }

    /// A client that authenticated (or tried to), by kind and id.
    pub fn client(kind: ActorKind, client_id: Option<&str>) -> Self {
        Self {
            kind,
            id: client_id.map(printable),
            name: None,
        }
    }
}

/// What happened. Stored and filtered by [`Action::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// An admin token was issued (a sign-in).
    AdminSignedIn,
    /// An admin token was ended by its holder.
    AdminTokenRevoked,
    AdminCreated,
    AdminEnabled,
    AdminDisabled,
    AdminSitesAssigned,
    AdminSitesUnassigned,
    /// A platform admin made an admin a site manager, or a site manager a platform admin.
    AdminRoleChanged,
    AdminSecretRotated,
    /// The operator wrote a copy of the database (`tokenwarden backup`).
    BackupCreated,
    /// The operator restored a copy, ending the tokens and sessions it held (`tokenwarden restore`).
    BackupRestored,
    SiteCreated,
    SiteRenamed,
    SiteEnabled,
    SiteDisabled,
    AuthKeyRotated,
    /// A site's primary token was invalidated by an admin or the operator (the emergency brake).
    PrimaryTokenInvalidated,
    ResourceServerCreated,
    ResourceServerDeleted,
    ResourceServerSitesAssigned,
    ResourceServerSitesUnassigned,
    ResourceServerSecretRotated,
    TokenCreated,
    TokenRegenerated,
    TokenValidated,
    TokenInvalidated,
    TokenDescriptionChanged,
    /// A non-primary token was retired: refused for good, its slot free, its history kept.
    TokenRetired,
    /// Failed client authentications of one client id from one address in one window.
    ClientAuthFailed,
    /// Failed authentications past the rows one window may hold, counted together.
    ClientAuthFailuresOverflow,
    /// A client id failed authentication more often than the alarm allows in one window.
    ClientUnderAttack,
    /// A (client id, address) pair or an address reached its throttling limit.
    ThrottleLocked,
}

impl Action {
    pub const ALL: [Action; 32] = [
        Action::AdminSignedIn,
        Action::AdminTokenRevoked,
        Action::AdminCreated,
        Action::AdminEnabled,
        Action::AdminDisabled,
        Action::AdminSitesAssigned,
        Action::AdminSitesUnassigned,
        Action::AdminRoleChanged,
        Action::AdminSecretRotated,
        Action::BackupCreated,
        Action::BackupRestored,
        Action::SiteCreated,
        Action::SiteRenamed,
        Action::SiteEnabled,
        Action::SiteDisabled,
        Action::AuthKeyRotated,
        Action::PrimaryTokenInvalidated,
        Action::ResourceServerCreated,
        Action::ResourceServerDeleted,
        Action::ResourceServerSitesAssigned,
        Action::ResourceServerSitesUnassigned,
        Action::ResourceServerSecretRotated,
        Action::TokenCreated,
        Action::TokenRegenerated,
        Action::TokenValidated,
        Action::TokenInvalidated,
        Action::TokenDescriptionChanged,
        Action::TokenRetired,
        Action::ClientAuthFailed,
        Action::ClientAuthFailuresOverflow,
        Action::ClientUnderAttack,
        Action::ThrottleLocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::AdminSignedIn => "admin_signed_in",
            Action::AdminTokenRevoked => "admin_token_revoked",
            Action::AdminCreated => "admin_created",
            Action::AdminEnabled => "admin_enabled",
            Action::AdminDisabled => "admin_disabled",
            Action::AdminSitesAssigned => "admin_sites_assigned",
            Action::AdminSitesUnassigned => "admin_sites_unassigned",
            Action::AdminRoleChanged => "admin_role_changed",
            Action::AdminSecretRotated => "admin_secret_rotated",
            Action::BackupCreated => "backup_created",
            Action::BackupRestored => "backup_restored",
            Action::SiteCreated => "site_created",
            Action::SiteRenamed => "site_renamed",
            Action::SiteEnabled => "site_enabled",
            Action::SiteDisabled => "site_disabled",
            Action::AuthKeyRotated => "auth_key_rotated",
            Action::PrimaryTokenInvalidated => "primary_token_invalidated",
            Action::ResourceServerCreated => "resource_server_created",
            Action::ResourceServerDeleted => "resource_server_deleted",
            Action::ResourceServerSitesAssigned => "resource_server_sites_assigned",
            Action::ResourceServerSitesUnassigned => "resource_server_sites_unassigned",
            Action::ResourceServerSecretRotated => "resource_server_secret_rotated",
            Action::TokenCreated => "token_created",
            Action::TokenRegenerated => "token_regenerated",
            Action::TokenValidated => "token_validated",
            Action::TokenInvalidated => "token_invalidated",
            Action::TokenDescriptionChanged => "token_description_changed",
            Action::TokenRetired => "token_retired",
            Action::ClientAuthFailed => "client_auth_failed",
            Action::ClientAuthFailuresOverflow => "client_auth_failures_overflow",
            Action::ClientUnderAttack => "client_under_attack",
            Action::ThrottleLocked => "throttle_locked",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.as_str() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Outcome::Success, Outcome::Failure]
            .into_iter()
            .find(|outcome| outcome.as_str() == name)
    }
}

/// One event of the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// The event's id in the trail; 0 until stored.
    pub id: i64,
    /// When it happened; for an aggregate, the first occurrence.
    pub occurred_at: NaiveDateTime,
    pub actor: AuditActor,
    pub action: Action,
    /// What it was done to: a site key, a client id, a token (`SITE_KEY/tokens/ID`), an address.
    pub target: Option<String>,
    /// The client's address, as throttling sees it (the TCP peer, or the address a trusted proxy
    /// reported).
    pub source_address: Option<String>,
    pub outcome: Outcome,
    /// A short description of what changed, in [`printable`] form.
    pub detail: Option<String>,
    /// How many times it happened (aggregates only count more than one).
    pub occurrences: i64,
    /// The last occurrence (the same as `occurred_at` for a single event).
    pub last_at: NaiveDateTime,
}

impl AuditEvent {
    /// A single successful event at `now`.
    pub fn new(
        now: NaiveDateTime,
        actor: AuditActor,
        action: Action,
        target: Option<String>,
    ) -> Self {
        Self {
            id: 0,
            occurred_at: now,
            actor,
            action,
            target,
            source_address: None,
            outcome: Outcome::Success,
            detail: None,
            occurrences: 1,
            last_at: now,
        }
    }

    pub fn from_address(mut self, address: Option<std::net::IpAddr>) -> Self {
        self.source_address = address.map(|address| address.to_string());
        self
    }

    pub fn with_detail(mut self, detail: impl AsRef<str>) -> Self {
        self.detail = Some(printable(detail.as_ref()));
        self
    }
}

/// Who asks for a change and from where: an admin through the admin API, or the operator at a
/// shell. Every recorded change carries one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    pub actor: AuditActor,
    pub address: Option<std::net::IpAddr>,
}

impl Requester {
    /// The CLI's user (see [`AuditActor::operator`]).
    pub fn operator(user: Option<&str>, uid: Option<u32>) -> Self {
        Self {
            actor: AuditActor::operator(user, uid),
            address: None,
        }
    }

    pub fn admin(admin: &Admin, address: Option<std::net::IpAddr>) -> Self {
        Self {
            actor: AuditActor::admin(admin),
            address,
        }
    }

    /// A successful `action` on `target` at `now`, by this requester.
    pub fn event(
        &self,
        now: NaiveDateTime,
        action: Action,
        target: impl Into<String>,
    ) -> AuditEvent {
        AuditEvent::new(now, self.actor.clone(), action, Some(target.into()))
            .from_address(self.address)
    }
}

/// Which events to list, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub since: Option<NaiveDateTime>,
    pub until: Option<NaiveDateTime>,
    pub actor: Option<String>,
    pub action: Option<Action>,
    /// Only events older than this id (the cursor of the previous page).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Events per page when no limit is given, and the most one page may hold.
pub const DEFAULT_AUDIT_PAGE: i64 = 100;
pub const MAX_AUDIT_PAGE: i64 = 1000;

impl AuditQuery {
    /// `since`, `until` (RFC 3339), `actor`, `action`, `limit` and `cursor` (the `next` of the
    /// previous page), as the admin API takes them.
    pub fn from_params(params: &Params<'_>) -> Result<Self, OAuthError> {
        let time = |name: &str| {
            params
                .get(name)
                .map(|raw| {
                    parse_time(raw).map_err(|_| {
                        OAuthError::invalid_request(format!(
                            "{name} must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"
                        ))
                    })
                })
                .transpose()
        };
        let action = params
            .get("action")
            .map(|raw| {
                Action::parse(raw).ok_or_else(|| {
                    OAuthError::invalid_request("action must be one of the audit trail's actions")
                })
            })
            .transpose()?;
        let limit = match params.get("limit") {
            None => DEFAULT_AUDIT_PAGE,
            Some(raw) => parse_limit(raw).map_err(OAuthError::invalid_request)?,
        };
        let before_id = params
            .get("cursor")
            .map(|raw| {
                raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
                    OAuthError::invalid_request("cursor must be the next value of a previous page")
                })
            })
            .transpose()?;
        let actor = params.get("actor").filter(|actor| !actor.is_empty());
        if actor.is_some_and(|actor| actor.len() > 200 || actor.chars().any(char::is_control)) {
            return Err(OAuthError::invalid_request(
                "actor must be a client id or user name",
            ));
        }
        Ok(Self {
            since: time("since")?,
            until: time("until")?,
            actor: actor.map(str::to_string),
            action,
            before_id,
            limit,
        })
    }
}

/// An RFC 3339 time (any offset), as UTC.
pub fn parse_time(raw: &str) -> Result<NaiveDateTime, String> {
    chrono::DateTime::parse_from_rfc3339(raw.trim())
        .map(|at| at.naive_utc())
        .map_err(|_| format!("not an RFC 3339 time: {raw:?} (e.g. 2026-12-01T00:00:00Z)"))
}

/// A page size from 1 to [`MAX_AUDIT_PAGE`].
pub fn parse_limit(raw: &str) -> Result<i64, String> {
    raw.parse::<i64>()
        .ok()
        .filter(|limit| (1..=MAX_AUDIT_PAGE).contains(limit))
        .ok_or_else(|| format!("limit must be a whole number from 1 to {MAX_AUDIT_PAGE}"))
}

/// Whether text sent as a client id could be one: client ids are 23 to 25 URL-safe characters and
/// every secret is longer, so anything else names no client (it may be a secret sent in the wrong
/// field, or text meant to forge log lines) and is neither shown nor kept.
pub fn looks_like_client_id(client_id: &str) -> bool {
    (1..=32).contains(&client_id.len())
        && client_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Text someone else chose, made safe to store, print and log: control characters, quotes and
/// backslashes escaped as Rust escapes them (`\n`, `\"`, `\u{1b}`), other characters kept, and at
/// most 200 characters.
pub fn printable(text: &str) -> String {
    let mut shown = String::with_capacity(text.len().min(256));
    for (count, c) in text.chars().enumerate() {
        if count == 200 {
            shown.push('…');
            break;
        }
        let _ = write!(shown, "{}", c.escape_debug());
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        for kind in ActorKind::ALL {
            assert_eq!(ActorKind::parse(kind.as_str()), Some(kind));
        }
        for outcome in [Outcome::Success, Outcome::Failure] {
            assert_eq!(Outcome::parse(outcome.as_str()), Some(outcome));
        }
        assert_eq!(Action::parse("dropped_tables"), None);
    }

    #[test]
    fn queries_parse_strictly() {
        let query = |text: &str| AuditQuery::from_params(&Params::parse(text.as_bytes()).unwrap());
        let parsed = query("since=2026-12-01T00:00:00Z&until=2026-12-02T01:00:00%2B01:00&actor=adm_x&action=site_created&limit=5&cursor=42").unwrap();
        assert_eq!(parsed.since.unwrap().to_string(), "2026-12-01 00:00:00");
        assert_eq!(parsed.until.unwrap().to_string(), "2026-12-02 00:00:00");
        assert_eq!(parsed.action, Some(Action::SiteCreated));
        assert_eq!((parsed.limit, parsed.before_id), (5, Some(42)));
        assert_eq!(query("").unwrap().limit, DEFAULT_AUDIT_PAGE);
        for bad in [
            "since=yesterday",
            "until=2026-13-01T00:00:00Z",
            "limit=0",
            "limit=1001",
            "limit=ten",
            "cursor=abc",
            "cursor=-1",
            "action=dropped_tables",
        ] {
            let error = query(bad).unwrap_err();
            assert_eq!(
                error.code,
                super::super::oauth_error::OAuthErrorCode::InvalidRequest,
                "{bad}"
            );
        }
    }

    #[test]
    fn printable_text_escapes_what_could_forge_lines_or_break_quotes() {
        assert_eq!(printable("Café Nord"), "Café Nord");
        assert_eq!(
            printable("a\"b\\c\nd\u{1b}[31m"),
            "a\\\"b\\\\c\\nd\\u{1b}[31m"
        );
        assert_eq!(printable(&"x".repeat(500)).chars().count(), 201);
    }
}
