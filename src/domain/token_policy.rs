//! The operator's limits on tokens: how long admin tokens live, how far ahead a non-primary token
//! may expire, and which scopes non-primary tokens may carry.

use chrono::{DateTime, Duration, NaiveDateTime};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    /// `expires_in` of every admin token.
    pub admin_token_ttl: Duration,
    /// The furthest ahead a non-primary token's `expires_at` may be set.
    pub max_token_lifetime: Duration,
    /// Whether a new non-primary token must expire (`expires_at`, or `default_lifetime`).
    pub require_expiry: bool,
    /// How far ahead a non-primary token created without `expires_at` expires; at most
    /// `max_token_lifetime`.
    pub default_lifetime: Option<Duration>,
    /// The scopes a non-primary token may carry (any subset); empty means none.
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TermsError {
    #[error("expires_at must be an RFC 3339 date-time such as 2027-01-31T12:00:00Z")]
    UnreadableExpiry,
    #[error("expires_at must be in the future")]
    ExpiryInPast,
    #[error("expires_at must be at most {0} days ahead")]
    ExpiryTooFar(i64),
    #[error("expires_at is required: this server gives every new token an expiry")]
    ExpiryRequired,
    #[error("scope must list one or more scopes separated by spaces")]
    EmptyScope,
    #[error("scope {0:?} is not offered by this server (offered: {1})")]
    UnknownScope(String, String),
}

impl TermsError {
    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            TermsError::UnreadableExpiry
            | TermsError::ExpiryInPast
            | TermsError::ExpiryTooFar(_)
            | TermsError::ExpiryRequired => "expires_at",
            TermsError::EmptyScope | TermsError::UnknownScope(..) => "scope",
        }
    }
}

impl TokenPolicy {
    /// When an admin token issued at `now` stops working.
    pub fn admin_token_expiry(&self, now: NaiveDateTime) -> NaiveDateTime {
        now.checked_add_signed(self.admin_token_ttl)
            .unwrap_or(NaiveDateTime::MAX)
    }

    /// Parses an RFC 3339 `expires_at` and checks it lies in `(now, now + max_token_lifetime]`.
    pub fn check_expiry(&self, raw: &str, now: NaiveDateTime) -> Result<NaiveDateTime, TermsError> {
        let expires_at = DateTime::parse_from_rfc3339(raw.trim())
            .map_err(|_| TermsError::UnreadableExpiry)?
            .naive_utc();
        // chrono reads a leap second (`:60`) as a nanosecond overflow; no stored time can hold it.
        if expires_at.and_utc().timestamp_subsec_nanos() >= 1_000_000_000 {
            return Err(TermsError::UnreadableExpiry);
        }
        if expires_at <= now {
            return Err(TermsError::ExpiryInPast);
        }
        let furthest = now
            .checked_add_signed(self.max_token_lifetime)
            .unwrap_or(NaiveDateTime::MAX);
        if expires_at > furthest {
            return Err(TermsError::ExpiryTooFar(self.max_token_lifetime.num_days()));
        }
        Ok(expires_at)
    }

    /// The expiry of a new non-primary token: `raw` checked as [`Self::check_expiry`], else the
    /// default lifetime from `now`, else none unless the policy requires one.
    pub fn new_token_expiry(
        &self,
        raw: Option<&str>,
        now: NaiveDateTime,
    ) -> Result<Option<NaiveDateTime>, TermsError> {
        match (raw, self.default_lifetime) {
            (Some(raw), _) => self.check_expiry(raw, now).map(Some),
            (None, Some(lifetime)) => Ok(now.checked_add_signed(lifetime)),
            (None, None) if self.require_expiry => Err(TermsError::ExpiryRequired),
            (None, None) => Ok(None),
        }
    }

    /// Checks a space-separated scope (RFC 6749 3.3 syntax) against the offered scopes; returns it
    /// normalised: single spaces, each scope once, in the order given.
    pub fn check_scope(&self, raw: &str) -> Result<String, TermsError> {
        let mut accepted: Vec<&str> = Vec::new();
        // RFC 6749 3.3: scopes are separated by single spaces (0x20), no other whitespace.
        for scope in raw.split(' ').filter(|scope| !scope.is_empty()) {
            if !self.scopes.iter().any(|offered| offered == scope) {
                let offered = if self.scopes.is_empty() {
                    "none".to_string()
                } else {
                    self.scopes.join(" ")
                };
                return Err(TermsError::UnknownScope(scope.to_string(), offered));
            }
            if !accepted.contains(&scope) {
                accepted.push(scope);
            }
        }
        if accepted.is_empty() {
            return Err(TermsError::EmptyScope);
        }
        Ok(accepted.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> TokenPolicy {
        TokenPolicy {
            admin_token_ttl: Duration::hours(1),
            max_token_lifetime: Duration::days(365),
            require_expiry: false,
            default_lifetime: None,
            scopes: vec!["read".into(), "write".into()],
        }
    }

    fn now() -> NaiveDateTime {
        DateTime::from_timestamp(1_800_000_000, 0)
            .unwrap()
            .naive_utc()
    }

    #[test]
    fn expiry_must_lie_between_now_and_the_maximum() {
        let policy = policy();
        let in_a_day = now() + Duration::days(1);
        let raw = in_a_day.and_utc().to_rfc3339();
        assert_eq!(policy.check_expiry(&raw, now()), Ok(in_a_day));
        let last_allowed = (now() + Duration::days(365)).and_utc().to_rfc3339();
        assert!(policy.check_expiry(&last_allowed, now()).is_ok());
        let too_far = (now() + Duration::days(365) + Duration::seconds(1))
            .and_utc()
            .to_rfc3339();
        assert_eq!(
            policy.check_expiry(&too_far, now()),
            Err(TermsError::ExpiryTooFar(365))
        );
        let past = now().and_utc().to_rfc3339();
        assert_eq!(
            policy.check_expiry(&past, now()),
            Err(TermsError::ExpiryInPast)
        );
        for bad in [
            "",
            "tomorrow",
            "2027-01-01",
            "2027-01-01 12:00:00",
            "2027-06-30T23:59:60Z",
        ] {
            assert_eq!(
                policy.check_expiry(bad, now()),
                Err(TermsError::UnreadableExpiry),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_new_token_expires_as_given_else_by_default_else_as_required() {
        let in_a_day = (now() + Duration::days(1)).and_utc().to_rfc3339();
        let free = policy();
        assert_eq!(free.new_token_expiry(None, now()), Ok(None));
        assert_eq!(
            free.new_token_expiry(Some(&in_a_day), now()),
            Ok(Some(now() + Duration::days(1)))
        );
        let required = TokenPolicy {
            require_expiry: true,
            ..policy()
        };
        assert_eq!(
            required.new_token_expiry(None, now()),
            Err(TermsError::ExpiryRequired)
        );
        let defaulted = TokenPolicy {
            default_lifetime: Some(Duration::days(30)),
            ..required
        };
        assert_eq!(
            defaulted.new_token_expiry(None, now()),
            Ok(Some(now() + Duration::days(30)))
        );
        assert_eq!(
            defaulted.new_token_expiry(Some(&in_a_day), now()),
            Ok(Some(now() + Duration::days(1)))
        );
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        let expected = now() + Duration::days(1);
        let with_offset = expected
            .and_utc()
            .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
            .to_rfc3339();
        assert_eq!(policy().check_expiry(&with_offset, now()), Ok(expected));
    }

    #[test]
    fn scopes_must_be_offered_and_are_normalised() {
        let policy = policy();
        assert_eq!(
            policy.check_scope(" write  read write "),
            Ok("write read".into())
        );
        assert_eq!(
            policy.check_scope("read admin"),
            Err(TermsError::UnknownScope(
                "admin".into(),
                "read write".into()
            ))
        );
        assert_eq!(policy.check_scope("  "), Err(TermsError::EmptyScope));
        assert!(matches!(
            policy.check_scope("read\u{3000}write"),
            Err(TermsError::UnknownScope(..))
        ));
        let none = TokenPolicy {
            scopes: Vec::new(),
            ..policy
        };
        assert_eq!(
            none.check_scope("read"),
            Err(TermsError::UnknownScope("read".into(), "none".into()))
        );
    }
}
