//! How many tokens a site may hold: the 10-token limit.
//!
//! Every token of a site lives in one of ten numbered slots: slot 0 is the primary token (issued
//! through `/oauth2/token`), slots 1 to 9 hold the non-primary tokens that the admin scope manages.
//! The rule is stated here; the database makes it hold under concurrency with
//! `UNIQUE (site_id, slot)` and `CHECK (slot BETWEEN 0 AND 9)` on the `tokens` table
//! (`migrations/*/..._create_sites_and_tokens`), so two concurrent creates can never both take the
//! last slot.

/// The most tokens one site can hold: one primary and nine non-primary.
pub const MAX_TOKENS_PER_SITE: i32 = 10;

/// The slot the primary token always occupies.
pub const PRIMARY_SLOT: i32 = 0;

/// Slots available to non-primary tokens, in the order they are handed out.
pub fn secondary_slots() -> impl Iterator<Item = i32> {
    PRIMARY_SLOT + 1..MAX_TOKENS_PER_SITE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_has_one_primary_and_nine_secondary_slots() {
        let secondary: Vec<i32> = secondary_slots().collect();
        assert_eq!(secondary, (1..=9).collect::<Vec<_>>());
        assert!(!secondary.contains(&PRIMARY_SLOT));
        assert_eq!(secondary.len() as i32 + 1, MAX_TOKENS_PER_SITE);
    }
}
