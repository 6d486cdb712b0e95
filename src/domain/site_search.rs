//! What a site listing asks for and answers: the search text and how it matches, where a page
//! starts (an offset, or the position the previous page ended at, which the `next` cursor
//! carries), and the total, exact up to [`EXACT_TOTAL_LIMIT`] matches.
//!
//! Sites are listed by name, then by site key, both compared byte by byte (the code point order
//! of their UTF-8): a total order, the same on both backends, that an index can follow and a page
//! can continue after.

use super::site::{SiteSummary, SITE_KEY_PREFIX};

/// Up to this many matches, `total` is counted exactly; beyond, it is an estimate.
pub const EXACT_TOTAL_LIMIT: i64 = 10_000;
/// Offset paging reaches this far (`offset + limit`); beyond it, pages continue with the cursor.
pub const OFFSET_PAGING_LIMIT: i64 = 10_000;
/// Longest search text, in characters after trimming (a site name has at most 100).
pub const MAX_SEARCH_CHARS: usize = 100;
/// Shortest search text matched anywhere in a name or key; shorter text matches their start.
pub const MIN_FRAGMENT_CHARS: usize = 3;

/// The `q` of a site listing, checked. Both kinds match case-insensitively, in the name or the
/// site key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteSearch {
    /// 1 or 2 characters: the start of the name or of the site key.
    Prefix(String),
    /// 3 or more characters: anywhere in the name or the site key.
    Fragment(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("q must be at most {MAX_SEARCH_CHARS} characters")]
    TooLong,
    #[error("q must not contain control characters")]
    ControlCharacter,
}

impl SiteSearch {
    /// Trims `raw`; `None` when nothing is left (no search).
    pub fn parse(raw: &str) -> Result<Option<Self>, SearchError> {
        let text = raw.trim();
        if text.chars().any(char::is_control) {
            return Err(SearchError::ControlCharacter);
        }
        Ok(match text.chars().count() {
            0 => None,
            1..MIN_FRAGMENT_CHARS => Some(Self::Prefix(text.to_string())),
            MIN_FRAGMENT_CHARS..=MAX_SEARCH_CHARS => Some(Self::Fragment(text.to_string())),
            _ => return Err(SearchError::TooLong),
        })
    }

    /// The text as given, trimmed.
    pub fn text(&self) -> &str {
        match self {
            Self::Prefix(text) | Self::Fragment(text) => text,
        }
    }

    /// Whether every site matches because every site key starts with the prefix: site keys all
    /// begin with `site_` ([`super::site::site_key_from_random`]), so `s` and `si` list every site.
    pub fn matches_every_site_key(&self) -> bool {
        match self {
            Self::Prefix(text) => SITE_KEY_PREFIX.starts_with(&text.to_lowercase()),
            Self::Fragment(_) => false,
        }
    }

    /// For a prefix: the ranges of names that start with it in any mix of upper and lower case,
    /// in byte order and disjoint, so that walking them one after the other lists the matching
    /// names in listing order. `None` for a fragment.
    pub fn name_ranges(&self) -> Option<Vec<NameRange>> {
        let Self::Prefix(text) = self else {
            return None;
        };
        let mut starts = vec![String::new()];
        for c in text.chars() {
            let cases = case_forms(c);
            starts = starts
                .iter()
                .flat_map(|start| cases.iter().map(move |case| format!("{start}{case}")))
                .collect();
        }
        starts.sort_unstable();
        Some(starts.into_iter().map(NameRange::starting_with).collect())
    }
}

/// `c` and its single-character upper and lower case forms, without repeats (`é`, `É`; `1`).
fn case_forms(c: char) -> Vec<char> {
    let mut forms = vec![c];
    for other in [single(c.to_lowercase()), single(c.to_uppercase())]
        .into_iter()
        .flatten()
    {
        if !forms.contains(&other) {
            forms.push(other);
        }
    }
    forms
}

fn single(mut chars: impl Iterator<Item = char>) -> Option<char> {
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// The names from `from` (included) up to `until` (excluded; `None`: no end), in byte order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRange {
    pub from: String,
    pub until: Option<String>,
}

impl NameRange {
    /// Every name that starts with `start`: up to `start` with its last character replaced by
    /// the next one in code point order.
    fn starting_with(start: String) -> Self {
        let mut until = start.clone();
        let next = until.pop().and_then(|last| {
            // The code point after `last`, skipping the surrogates, which are no characters.
            let after = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32)?;
            until.push(after);
            Some(until)
        });
        Self {
            from: start,
            until: next,
        }
    }
}

/// Where a page ended: the next one lists the sites after it. What the `next` cursor carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitePosition {
    pub name: String,
    pub site_key: String,
}

impl SitePosition {
    /// The name's length in bytes (4, big-endian), the name, the site key.
    pub fn to_bytes(&self) -> Vec<u8> {
        let name = self.name.as_bytes();
        let mut bytes = Vec::with_capacity(4 + name.len() + self.site_key.len());
        // A site name has at most 100 characters, far below what four bytes count.
        bytes.extend_from_slice(&(name.len() as u32).to_be_bytes());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(self.site_key.as_bytes());
        bytes
    }

    /// The position [`SitePosition::to_bytes`] wrote; `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (length, rest) = bytes.split_first_chunk::<4>()?;
        let length = usize::try_from(u32::from_be_bytes(*length)).ok()?;
        if rest.len() < length {
            return None;
        }
        let (name, site_key) = rest.split_at(length);
        Some(Self {
            name: String::from_utf8(name.to_vec()).ok()?,
            site_key: String::from_utf8(site_key.to_vec()).ok()?,
        })
    }
}

/// Where a page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageStart {
    /// After this many matching sites (0: the first page).
    Offset(i64),
    /// Right after this position.
    After(SitePosition),
}

/// One page of the sites an admin may see.
#[derive(Debug, Clone)]
pub struct SiteListing {
    pub search: Option<SiteSearch>,
    /// Only enabled (`true`) or disabled (`false`) sites.
    pub enabled: Option<bool>,
    /// Sites on the page, 1 to 1000.
    pub limit: i64,
    pub start: PageStart,
}

impl SiteListing {
    /// Whether an offset page stays within what offset paging reaches.
    pub fn offset_within_reach(offset: i64, limit: i64) -> bool {
        offset.saturating_add(limit) <= OFFSET_PAGING_LIMIT
    }

    /// What a cursor is bound to besides its position: the search and the filter, so that a
    /// cursor continues only the listing it came from.
    pub fn cursor_context(&self) -> Vec<u8> {
        let enabled = match self.enabled {
            None => "any",
            Some(true) => "true",
            Some(false) => "false",
        };
        let search = self.search.as_ref().map_or("", SiteSearch::text);
        format!("q={search}\0enabled={enabled}").into_bytes()
    }
}

/// How many sites match: exact up to [`EXACT_TOTAL_LIMIT`], an estimate beyond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteTotal {
    pub count: i64,
    pub exact: bool,
}

/// A page of sites in listing order, the total, and where the next page starts (`None` on the
/// last page).
#[derive(Debug)]
pub struct SitePage {
    pub sites: Vec<SiteSummary>,
    pub total: SiteTotal,
    pub next: Option<SitePosition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_are_trimmed_bounded_and_split_by_length() {
        assert_eq!(SiteSearch::parse("   "), Ok(None));
        assert_eq!(
            SiteSearch::parse(" a "),
            Ok(Some(SiteSearch::Prefix("a".into())))
        );
        assert_eq!(
            SiteSearch::parse("Éc"),
            Ok(Some(SiteSearch::Prefix("Éc".into())))
        );
        assert_eq!(
            SiteSearch::parse("é c"),
            Ok(Some(SiteSearch::Fragment("é c".into())))
        );
        assert_eq!(
            SiteSearch::parse(&"é".repeat(100)),
            Ok(Some(SiteSearch::Fragment("é".repeat(100))))
        );
        assert_eq!(
            SiteSearch::parse(&"x".repeat(101)),
            Err(SearchError::TooLong)
        );
        assert_eq!(
            SiteSearch::parse("ab\u{7}c"),
            Err(SearchError::ControlCharacter)
        );
    }

    #[test]
    fn only_the_start_of_site_key_prefix_matches_every_key() {
        for every in ["s", "S", "si", "Si", "sI"] {
            let search = SiteSearch::parse(every).unwrap().unwrap();
            assert!(search.matches_every_site_key(), "{every}");
        }
        for other in ["i", "it", "st", "_"] {
            let search = SiteSearch::parse(other).unwrap().unwrap();
            assert!(!search.matches_every_site_key(), "{other}");
        }
        let fragment = SiteSearch::parse("sit").unwrap().unwrap();
        assert!(!fragment.matches_every_site_key());
        assert_eq!(fragment.name_ranges(), None);
    }

    fn range(from: &str, until: &str) -> NameRange {
        NameRange {
            from: from.into(),
            until: Some(until.into()),
        }
    }

    #[test]
    fn prefix_ranges_cover_every_case_in_byte_order() {
        let ranges = |q: &str| {
            SiteSearch::parse(q)
                .unwrap()
                .unwrap()
                .name_ranges()
                .unwrap()
        };
        assert_eq!(
            ranges("ab"),
            [
                range("AB", "AC"),
                range("Ab", "Ac"),
                range("aB", "aC"),
                range("ab", "ac")
            ]
        );
        assert_eq!(ranges("1"), [range("1", "2")]);
        assert_eq!(ranges("É"), [range("É", "Ê"), range("é", "ê")]);
        // ß has no one-character upper case form.
        assert_eq!(ranges("ß"), [range("ß", "à")]);
        // The character before the surrogates is followed by the first after them.
        assert_eq!(ranges("\u{D7FF}"), [range("\u{D7FF}", "\u{E000}")]);
        assert_eq!(
            ranges("\u{10FFFF}"),
            [NameRange {
                from: "\u{10FFFF}".into(),
                until: None
            }]
        );
    }

    #[test]
    fn positions_round_trip_and_nothing_else_decodes() {
        let position = SitePosition {
            name: "Café Ø".into(),
            site_key: "site_AAAAAAAAAAAAAAAAAAAA".into(),
        };
        assert_eq!(
            SitePosition::from_bytes(&position.to_bytes()),
            Some(position.clone())
        );
        let bytes = position.to_bytes();
        assert_eq!(SitePosition::from_bytes(&bytes[..3]), None);
        assert_eq!(SitePosition::from_bytes(&[0, 0, 0, 200, b'a']), None);
        // "Café" cut inside the é.
        assert_eq!(
            SitePosition::from_bytes(&[0, 0, 0, 4, b'C', b'a', b'f', 0xC3]),
            None
        );
    }

    #[test]
    fn offsets_reach_the_first_ten_thousand_sites() {
        assert!(SiteListing::offset_within_reach(9_900, 100));
        assert!(!SiteListing::offset_within_reach(9_901, 100));
        assert!(!SiteListing::offset_within_reach(i64::MAX, 1));
    }

    #[test]
    fn cursors_are_bound_to_the_search_and_the_filter() {
        let listing = |q: &str, enabled| SiteListing {
            search: SiteSearch::parse(q).unwrap(),
            enabled,
            limit: 10,
            start: PageStart::Offset(0),
        };
        let contexts = [
            listing("", None).cursor_context(),
            listing("cof", None).cursor_context(),
            listing("cof", Some(true)).cursor_context(),
            listing("cof", Some(false)).cursor_context(),
            listing("co", None).cursor_context(),
        ];
        for (i, a) in contexts.iter().enumerate() {
            for b in &contexts[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(
            listing(" cof ", None).cursor_context(),
            listing("cof", None).cursor_context()
        );
    }
}
