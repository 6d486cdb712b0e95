//! Token introspection (RFC 7662): which tokens are active and what a resource server learns.

use chrono::NaiveDateTime;

use super::slots::PRIMARY_SLOT;

/// Everything stored about a site token that bears on whether it is active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFacts {
    pub token_id: i64,
    pub slot: i32,
    pub active: bool,
    pub generated_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    pub scope: Option<String>,
    pub site_key: String,
    pub site_name: String,
    pub site_enabled: bool,
}

/// What introspection says about an active token (RFC 7662 2.2 members, plus `token_kind` and
/// `site_name`, which RFC 7662 2.2 allows as extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveToken {
    pub token_id: i64,
    pub site_key: String,
    pub site_name: String,
    pub issued_at: i64,
    pub expires_at: Option<i64>,
    pub scope: Option<String>,
    pub kind: TokenKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Primary,
    Secondary,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Primary => "primary",
            TokenKind::Secondary => "secondary",
        }
    }
}

/// RFC 7662 2.2: a token is active when it "is currently active" for this server: not invalidated,
/// not expired, and its site not disabled. `None` means `{"active": false}`.
pub fn judge(facts: &TokenFacts, now: NaiveDateTime) -> Option<ActiveToken> {
    let expired = facts.expires_at.is_some_and(|expires_at| expires_at <= now);
    if !facts.active || !facts.site_enabled || expired {
        return None;
    }
    Some(ActiveToken {
        token_id: facts.token_id,
        site_key: facts.site_key.clone(),
        site_name: facts.site_name.clone(),
        issued_at: facts.generated_at.and_utc().timestamp(),
        expires_at: facts.expires_at.map(|at| at.and_utc().timestamp()),
        scope: facts.scope.clone(),
        kind: if facts.slot == PRIMARY_SLOT {
            TokenKind::Primary
        } else {
            TokenKind::Secondary
        },
    })
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration};

    use super::*;

    fn at(seconds: i64) -> NaiveDateTime {
        DateTime::from_timestamp(seconds, 0).unwrap().naive_utc()
    }

    fn facts() -> TokenFacts {
        TokenFacts {
            token_id: 7,
            slot: 0,
            active: true,
            generated_at: at(1_000),
            expires_at: None,
            scope: None,
            site_key: "site_x".into(),
            site_name: "X".into(),
            site_enabled: true,
        }
    }

    #[test]
    fn an_active_primary_token_reports_its_site_and_issue_time() {
        let active = judge(&facts(), at(5_000)).unwrap();
        assert_eq!(active.kind, TokenKind::Primary);
        assert_eq!(active.issued_at, 1_000);
        assert_eq!(active.expires_at, None);
        assert_eq!(active.site_key, "site_x");
    }

    #[test]
    fn invalidated_disabled_and_expired_tokens_are_inactive() {
        assert!(judge(
            &TokenFacts {
                active: false,
                ..facts()
            },
            at(5_000)
        )
        .is_none());
        assert!(judge(
            &TokenFacts {
                site_enabled: false,
                ..facts()
            },
            at(5_000)
        )
        .is_none());
        let expiring = TokenFacts {
            slot: 3,
            expires_at: Some(at(5_000)),
            ..facts()
        };
        assert!(judge(&expiring, at(5_000)).is_none());
        let still = judge(&expiring, at(5_000) - Duration::seconds(1)).unwrap();
        assert_eq!(still.kind, TokenKind::Secondary);
        assert_eq!(still.expires_at, Some(5_000));
    }
}
