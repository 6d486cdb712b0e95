//! Rotating a client's secret (a site's auth key, a resource server's or an admin's client
//! secret) with an overlap: how long the secret a rotation replaces keeps working, as the admin API
//! (`overlap_seconds`) and the CLI (`--overlap 24h`) take it, and which stored digests a presented
//! secret may match at a given time ([`SecretDigests`]).
//!
//! The keyed-hash check itself is `service::client_auth::secret_matches`; that a rotation leaves
//! one current secret and at most one previous is the store's single `UPDATE` per rotation.

use chrono::{NaiveDateTime, Timelike};
use serde::de::IgnoredAny;
use serde::Deserialize;

/// The longest overlap: seven days.
pub const MAX_OVERLAP_SECS: u32 = 604_800;

/// How long the replaced auth key keeps working after a rotation; zero: not at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overlap(u32);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverlapError {
    #[error("the overlap must be at most {MAX_OVERLAP_SECS} seconds (7d)")]
    TooLong,
    #[error(
        "the overlap must be a whole number of seconds, or of minutes, hours or days with the \
         unit s, m, h or d (e.g. 90s, 30m, 24h, 7d)"
    )]
    Unreadable,
}

impl Overlap {
    /// No overlap: the replaced key stops working with the rotation.
    pub const NONE: Overlap = Overlap(0);

    pub fn from_secs(secs: i64) -> Result<Self, OverlapError> {
        let secs = u32::try_from(secs).map_err(|_| OverlapError::Unreadable)?;
        if secs > MAX_OVERLAP_SECS {
            return Err(OverlapError::TooLong);
        }
        Ok(Self(secs))
    }

    /// The CLI's form: whole seconds (`3600`), or a whole number with a unit (`90s`, `30m`,
    /// `24h`, `7d`).
    pub fn parse(text: &str) -> Result<Self, OverlapError> {
        let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
            Some(at) => text.split_at(at),
            None => (text, "s"),
        };
        let scale: i64 = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(OverlapError::Unreadable),
        };
        if number.is_empty() {
            return Err(OverlapError::Unreadable);
        }
        // Too many digits for an i64 is too long a duration anyway.
        let count: i64 = number.parse().map_err(|_| OverlapError::TooLong)?;
        Self::from_secs(count.checked_mul(scale).ok_or(OverlapError::TooLong)?)
    }

    pub fn secs(self) -> u32 {
        self.0
    }

    /// When the replaced key stops working after a rotation at `now`, rounded up to a whole
    /// second (as answers show it); `None` without an overlap.
    pub fn previous_valid_until(self, now: NaiveDateTime) -> Option<NaiveDateTime> {
        if self.0 == 0 {
            return None;
        }
        let end = now + chrono::Duration::seconds(i64::from(self.0));
        let whole = end.with_nanosecond(0).unwrap_or(end);
        Some(if whole < end {
            whole + chrono::Duration::seconds(1)
        } else {
            whole
        })
    }
}

/// A client's stored secret digests (keyed hashes, never the secret): the current one and, while
/// the last rotation's overlap lasts, the one it replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDigests {
    pub current: Vec<u8>,
    /// The replaced secret's digest and when it stops working; `None` when the last rotation had
    /// no overlap, or there was none.
    pub previous: Option<(Vec<u8>, NaiveDateTime)>,
}

impl SecretDigests {
    /// The store's columns: a previous digest counts only together with its end.
    pub fn new(
        current: Vec<u8>,
        previous: Option<Vec<u8>>,
        previous_valid_until: Option<NaiveDateTime>,
    ) -> Self {
        Self {
            current,
            previous: previous.zip(previous_valid_until),
        }
    }

    /// The replaced secret's digest while it still works at `now` (before its end, not at it).
    pub fn previous_at(&self, now: NaiveDateTime) -> Option<&[u8]> {
        let (digest, valid_until) = self.previous.as_ref()?;
        overlap_end(Some(*valid_until), now)?;
        Some(digest)
    }
}

/// When a replaced secret stops working (its stored `valid_until`), if it still works at `now`;
/// `None` once it has stopped, which is what the views show.
pub fn overlap_end(
    valid_until: Option<NaiveDateTime>,
    now: NaiveDateTime,
) -> Option<NaiveDateTime> {
    valid_until.filter(|end| now < *end)
}

/// The `overlap_seconds` member of the admin API's rotation body, as sent: any JSON value, so that
/// a value of the wrong type is refused by [`checked_overlap`], naming the field, rather than by
/// the JSON parser.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RequestedOverlap {
    Seconds(i64),
    NotAWholeNumber(IgnoredAny),
}

/// The overlap an admin asked for: a whole number of seconds from 0 to [`MAX_OVERLAP_SECS`].
pub fn checked_overlap(requested: &RequestedOverlap) -> Result<Overlap, OverlapError> {
    match requested {
        RequestedOverlap::Seconds(secs) => Overlap::from_secs(*secs),
        RequestedOverlap::NotAWholeNumber(_) => Err(OverlapError::Unreadable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_whole_numbers_with_an_optional_unit() {
        for (text, secs) in [
            ("0", 0),
            ("90", 90),
            ("90s", 90),
            ("30m", 1_800),
            ("24h", 86_400),
            ("7d", 604_800),
            ("604800", 604_800),
            ("0d", 0),
        ] {
            assert_eq!(Overlap::parse(text), Ok(Overlap(secs)), "{text}");
        }
        for text in ["8d", "604801", "169h", "99999999999999999999", "10080m1"] {
            assert!(Overlap::parse(text).is_err(), "{text}");
        }
        for text in [
            "", "h", "-1", "1.5h", "1 h", "1H", "1w", "24hours", " 5", "+5",
        ] {
            assert_eq!(
                Overlap::parse(text),
                Err(OverlapError::Unreadable),
                "{text}"
            );
        }
        assert_eq!(Overlap::parse("8d"), Err(OverlapError::TooLong));
    }

    #[test]
    fn requested_seconds_must_be_a_whole_number_in_range() {
        let requested = |json: &str| serde_json::from_str::<RequestedOverlap>(json).unwrap();
        assert_eq!(checked_overlap(&requested("3600")), Ok(Overlap(3_600)));
        assert_eq!(checked_overlap(&requested("0")), Ok(Overlap::NONE));
        assert_eq!(
            checked_overlap(&requested("604801")),
            Err(OverlapError::TooLong)
        );
        for json in [
            "-1",
            "1.5",
            "60.0",
            "\"60\"",
            "null",
            "[60]",
            "18446744073709551615",
        ] {
            assert_eq!(
                checked_overlap(&requested(json)),
                Err(OverlapError::Unreadable),
                "{json}"
            );
        }
    }

    #[test]
    fn the_replaced_digest_counts_until_its_end_only() {
        let end = chrono::DateTime::from_timestamp(1_800_000_000, 0)
            .unwrap()
            .naive_utc();
        let second = chrono::Duration::seconds(1);
        let digests = SecretDigests::new(vec![1], Some(vec![2]), Some(end));
        assert_eq!(digests.previous_at(end - second), Some(&[2u8][..]));
        assert_eq!(digests.previous_at(end), None);
        assert_eq!(digests.previous_at(end + second), None);
        let without_end = SecretDigests::new(vec![1], Some(vec![2]), None);
        assert_eq!(without_end.previous_at(end - second), None);
    }

    #[test]
    fn the_previous_key_ends_on_a_whole_second_no_earlier_than_asked() {
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 250_000_000)
            .unwrap()
            .naive_utc();
        assert_eq!(Overlap::NONE.previous_valid_until(now), None);
        let end = Overlap(60).previous_valid_until(now).unwrap();
        assert_eq!(end.and_utc().timestamp(), 1_800_000_061);
        assert_eq!(end.nanosecond(), 0);
        let exact = now.with_nanosecond(0).unwrap();
        assert_eq!(
            Overlap(60).previous_valid_until(exact),
            Some(exact + chrono::Duration::seconds(60))
        );
    }
}
