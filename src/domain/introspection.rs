//! Token introspection (RFC 7662): which tokens are active, for which resource server, and what
//! that resource server learns.

use std::sync::Arc;

use chrono::NaiveDateTime;
use serde::Serialize;

use super::slots::PRIMARY_SLOT;

/// Everything stored about a site token that bears on whether it is active, and for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFacts {
    pub token_id: i64,
    /// `None` once retired (then also inactive).
    pub slot: Option<i32>,
    pub active: bool,
    pub generated_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    pub scope: Option<String>,
    pub site_id: i64,
    pub site_key: String,
    pub site_name: String,
    pub site_enabled: bool,
    /// The resource servers the token is meant for, by client id; `None`: every resource server.
    /// Empty once every one of them was deleted: then no resource server may see the token.
    pub audience: Option<Vec<AudienceMember>>,
}

/// A resource server of a token's audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudienceMember {
    pub resource_server_id: i64,
    pub client_id: String,
}

/// The resource server asking, as far as the judgement needs it: which one it is, and the sites
/// whose tokens it may see (`None`: every site).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Introspector {
    resource_server_id: i64,
    /// Sorted, for a binary search on every introspection.
    sites: Option<Box<[i64]>>,
}

impl Introspector {
    pub fn new(resource_server_id: i64, sites: Option<Vec<i64>>) -> Self {
        let sites = sites.map(|mut sites| {
            sites.sort_unstable();
            sites.into_boxed_slice()
        });
        Self {
            resource_server_id,
            sites,
        }
    }

    fn sees_site(&self, site_id: i64) -> bool {
        self.sites
            .as_ref()
            .is_none_or(|sites| sites.binary_search(&site_id).is_ok())
    }
}

/// A stored token as introspection keeps it: its facts, and its RFC 7662 2.2 answer for while it
/// is active. That answer depends on the facts alone, so it is rendered once, when they are read,
/// and a cached token is answered by copying bytes rather than building and serialising it again
/// on every call (the hot path, docs/performance.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownToken {
    pub facts: TokenFacts,
    active_answer: Box<str>,
}

/// RFC 7662 2.2: "If the introspected token is invalid, ... the authorization server MUST return
/// an introspection response with the "active" field set to "false"" and "SHOULD NOT include any
/// additional information about an inactive token".
const INACTIVE_ANSWER: &str = r#"{"active":false}"#;

impl KnownToken {
    pub fn new(facts: TokenFacts) -> Self {
        let active_answer = render_active_answer(&facts);
        Self {
            facts,
            active_answer,
        }
    }
}

/// Whether a token is active at `now`, with the answer to send; the active answer is shared with
/// the cache entry it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Inactive,
    Active(Arc<KnownToken>),
}

impl Verdict {
    /// The RFC 7662 2.2 JSON answer.
    pub fn json(&self) -> &str {
        match self {
            Verdict::Inactive => INACTIVE_ANSWER,
            Verdict::Active(token) => &token.active_answer,
        }
    }
}

/// RFC 7662 2.2 for a token looked up by its digest (`None`: never stored), as `introspector`
/// asks about it. Memory only: no allocation, so a cached token is judged at the cost of a few
/// comparisons.
pub fn judge(
    token: Option<Arc<KnownToken>>,
    introspector: &Introspector,
    now: NaiveDateTime,
) -> Verdict {
    match token {
        Some(token) if token.facts.is_active(now) && token.facts.is_meant_for(introspector) => {
            Verdict::Active(token)
        }
        _ => Verdict::Inactive,
    }
}

impl TokenFacts {
    /// RFC 7662 2.2: a token is active when it "is currently active" for this server: not
    /// invalidated, not expired, and its site not disabled.
    pub fn is_active(&self, now: NaiveDateTime) -> bool {
        let expired = self.expires_at.is_some_and(|expires_at| expires_at <= now);
        self.active && self.site_enabled && !expired
    }

    /// Whether `introspector` may learn about the token: it sees the token's site, and is in the
    /// token's audience when the token has one. RFC 7662 2.2 answers any other resource server as
    /// for an inactive token ("the protected resource is not allowed to introspect this
    /// particular token"), so it cannot tell such a token from an unknown one.
    pub fn is_meant_for(&self, introspector: &Introspector) -> bool {
        introspector.sees_site(self.site_id)
            && self.audience.as_ref().is_none_or(|audience| {
                audience
                    .iter()
                    .any(|member| member.resource_server_id == introspector.resource_server_id)
            })
    }

    pub fn kind(&self) -> TokenKind {
        if self.slot == Some(PRIMARY_SLOT) {
            TokenKind::Primary
        } else {
            TokenKind::Secondary
        }
    }
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

/// The members of an active token's answer, in the order they are sent: RFC 7662 2.2 `active`,
/// `token_type`, `client_id`, `sub` (the site is the resource owner in the client credentials
/// grant, so both are its site key), `aud` (only for tokens with an audience: its resource
/// servers' client ids), `iat`, `exp` (only for tokens that expire) and `scope` (only for tokens
/// that have one); `token_kind` and `site_name` are extensions, which 2.2 allows.
#[derive(Serialize)]
struct ActiveAnswer<'a> {
    active: bool,
    token_type: &'static str,
    client_id: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<Vec<&'a str>>,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    token_kind: &'static str,
    site_name: &'a str,
}

fn render_active_answer(facts: &TokenFacts) -> Box<str> {
    let answer = ActiveAnswer {
        active: true,
        token_type: "Bearer",
        client_id: &facts.site_key,
        sub: &facts.site_key,
        aud: facts.audience.as_ref().map(|audience| {
            audience
                .iter()
                .map(|member| member.client_id.as_str())
                .collect()
        }),
        iat: facts.generated_at.and_utc().timestamp(),
        exp: facts.expires_at.map(|at| at.and_utc().timestamp()),
        scope: facts.scope.as_deref(),
        token_kind: facts.kind().as_str(),
        site_name: &facts.site_name,
    };
    // Strings, integers and `&'static str`s: serialising them cannot fail.
    serde_json::to_string(&answer)
        .unwrap_or_else(|_| INACTIVE_ANSWER.to_string())
        .into_boxed_str()
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
            slot: Some(0),
            active: true,
            generated_at: at(1_000),
            expires_at: None,
            scope: None,
            site_id: 3,
            site_key: "site_x".into(),
            site_name: "X".into(),
            site_enabled: true,
            audience: None,
        }
    }

    /// A resource server that sees every site.
    fn anyone() -> Introspector {
        Introspector::new(1, None)
    }

    fn answer_at(facts: TokenFacts, now: NaiveDateTime) -> serde_json::Value {
        serde_json::from_str(judge(Some(Arc::new(KnownToken::new(facts))), &anyone(), now).json())
            .unwrap()
    }

    fn member(resource_server_id: i64, client_id: &str) -> AudienceMember {
        AudienceMember {
            resource_server_id,
            client_id: client_id.into(),
        }
    }

    #[test]
    fn a_site_limited_resource_server_sees_only_its_sites_tokens() {
        let now = at(5_000);
        let token = Arc::new(KnownToken::new(facts()));
        for (introspector, sees) in [
            (Introspector::new(1, Some(vec![9, 3, 5])), true),
            (Introspector::new(1, Some(vec![4, 2])), false),
            (Introspector::new(1, Some(Vec::new())), false),
            (Introspector::new(1, None), true),
        ] {
            let verdict = judge(Some(token.clone()), &introspector, now);
            assert_eq!(verdict != Verdict::Inactive, sees, "{introspector:?}");
        }
    }

    #[test]
    fn a_token_with_an_audience_is_active_for_its_members_only_and_names_them() {
        let now = at(5_000);
        let token = Arc::new(KnownToken::new(TokenFacts {
            slot: Some(2),
            audience: Some(vec![member(4, "rs_four"), member(7, "rs_seven")]),
            ..facts()
        }));
        for (resource_server_id, active) in [(4, true), (7, true), (1, false)] {
            let introspector = Introspector::new(resource_server_id, None);
            let verdict = judge(Some(token.clone()), &introspector, now);
            assert_eq!(verdict != Verdict::Inactive, active, "{resource_server_id}");
        }
        let answer: serde_json::Value = serde_json::from_str(
            judge(
                Some(token.clone()),
                &Introspector::new(7, Some(vec![3])),
                now,
            )
            .json(),
        )
        .unwrap();
        assert_eq!(answer["aud"], serde_json::json!(["rs_four", "rs_seven"]));
        let limited_elsewhere = Introspector::new(7, Some(vec![8]));
        assert_eq!(
            judge(Some(token), &limited_elsewhere, now),
            Verdict::Inactive,
            "both the audience and the site limit must let the resource server see it"
        );
    }

    /// Every resource server of the audience was deleted: the token is refused by all of them,
    /// including those that see every site.
    #[test]
    fn an_emptied_audience_lets_no_resource_server_see_the_token() {
        let token = Arc::new(KnownToken::new(TokenFacts {
            slot: Some(2),
            audience: Some(Vec::new()),
            ..facts()
        }));
        for resource_server_id in [1, 4] {
            let introspector = Introspector::new(resource_server_id, None);
            assert_eq!(
                judge(Some(token.clone()), &introspector, at(5_000)),
                Verdict::Inactive
            );
        }
    }

    #[test]
    fn an_active_primary_token_reports_its_site_and_issue_time() {
        assert_eq!(
            answer_at(facts(), at(5_000)),
            serde_json::json!({
                "active": true,
                "token_type": "Bearer",
                "client_id": "site_x",
                "sub": "site_x",
                "iat": 1_000,
                "token_kind": "primary",
                "site_name": "X",
            })
        );
    }

    #[test]
    fn expiry_and_scope_are_sent_only_when_the_token_has_them() {
        let answer = answer_at(
            TokenFacts {
                slot: Some(3),
                expires_at: Some(at(9_000)),
                scope: Some("orders:read".into()),
                ..facts()
            },
            at(5_000),
        );
        assert_eq!(answer["exp"], 9_000);
        assert_eq!(answer["scope"], "orders:read");
        assert_eq!(answer["token_kind"], "secondary");
    }

    /// Site names are the site manager's own text: whatever they hold stays one JSON string.
    #[test]
    fn a_site_name_with_quotes_and_control_characters_stays_one_string() {
        let name = "A \"quoted\" \\ name\u{0}\n</script>";
        let answer = answer_at(
            TokenFacts {
                site_name: name.into(),
                ..facts()
            },
            at(5_000),
        );
        assert_eq!(answer["site_name"], name);
    }

    #[test]
    fn invalidated_disabled_and_expired_tokens_are_inactive() {
        let inactive: serde_json::Value = serde_json::from_str(INACTIVE_ANSWER).unwrap();
        assert_eq!(inactive, serde_json::json!({ "active": false }));
        for facts in [
            TokenFacts {
                active: false,
                ..facts()
            },
            TokenFacts {
                site_enabled: false,
                ..facts()
            },
        ] {
            assert!(!facts.is_active(at(5_000)));
            let token = Arc::new(KnownToken::new(facts));
            assert_eq!(judge(Some(token), &anyone(), at(5_000)), Verdict::Inactive);
        }
        assert_eq!(judge(None, &anyone(), at(5_000)), Verdict::Inactive);
        let expiring = Arc::new(KnownToken::new(TokenFacts {
            expires_at: Some(at(5_000)),
            ..facts()
        }));
        assert_eq!(
            judge(Some(expiring.clone()), &anyone(), at(5_000)),
            Verdict::Inactive
        );
        let still = judge(
            Some(expiring.clone()),
            &anyone(),
            at(5_000) - Duration::seconds(1),
        );
        assert_eq!(still, Verdict::Active(expiring));
        assert!(still.json().starts_with(r#"{"active":true,"#));
    }
}
