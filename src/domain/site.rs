//! Sites and their public identifier, the site key (the OAuth `client_id`).

use super::secret::Secret;

/// Prefix of every site key; site keys are public, so they carry no checksum.
pub const SITE_KEY_PREFIX: &str = "site_";
/// Longest site name accepted, in characters.
pub const MAX_SITE_NAME_CHARS: usize = 100;

/// A site as the rest of the program sees it (no credentials in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub id: i64,
    pub site_key: String,
    pub name: String,
    pub enabled: bool,
    pub created_at: chrono::NaiveDateTime,
    /// When the auth key the last rotation replaced stops (or stopped) working; `None` when that
    /// rotation had no overlap, or there was none. See [`crate::domain::rotation::overlap_end`].
    pub previous_auth_key_valid_until: Option<chrono::NaiveDateTime>,
}

/// A new site's credentials, shown to the operator once.
#[derive(Debug)]
pub struct SiteCredentials {
    pub site_key: String,
    pub auth_key: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name must not be empty")]
    Empty,
    #[error("name must be at most {MAX_SITE_NAME_CHARS} characters")]
    TooLong,
    #[error("name must not contain control characters")]
    ControlCharacter,
}

/// Trims and checks the name of a site or resource server: it shows up in token descriptions, admin
/// pages and logs.
pub fn validate_name(name: &str) -> Result<String, NameError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.chars().count() > MAX_SITE_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    Ok(name.to_string())
}

/// The fixed description of a site's primary token.
pub fn primary_token_description(site_name: &str) -> String {
    format!("{site_name} Primary Token")
}

/// Builds a site key from random bytes drawn by the caller.
pub fn site_key_from_random(random: &[u8; 15]) -> String {
    format!("{SITE_KEY_PREFIX}{}", encode_identifier(random))
}

/// Whether `text` has the shape of a site key (prefix and 20 URL-safe characters). Anything else
/// names no site, so it need not be looked up.
pub fn is_site_key(text: &str) -> bool {
    text.strip_prefix(SITE_KEY_PREFIX).is_some_and(|random| {
        random.len() == 20
            && random
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The random part of a public client identifier: 120 bits as 20 URL-safe characters.
pub fn encode_identifier(random: &[u8; 15]) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    URL_SAFE_NO_PAD.encode(random)
}

/// A site with how many token slots it uses.
#[derive(Debug)]
pub struct SiteSummary {
    pub site: Site,
    pub token_count: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(validate_name("  Demo Store "), Ok("Demo Store".into()));
        assert_eq!(validate_name("   "), Err(NameError::Empty));
        assert_eq!(validate_name(&"x".repeat(101)), Err(NameError::TooLong));
        assert_eq!(validate_name(&"é".repeat(100)), Ok("é".repeat(100)));
        assert_eq!(validate_name("a\nb"), Err(NameError::ControlCharacter));
    }

    #[test]
    fn site_keys_are_prefixed_and_url_safe() {
        let key = site_key_from_random(&[0xFF; 15]);
        assert!(key.starts_with(SITE_KEY_PREFIX));
        assert_eq!(key.len(), SITE_KEY_PREFIX.len() + 20);
        assert!(key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    }

    #[test]
    fn only_site_key_shapes_are_site_keys() {
        assert!(is_site_key(&site_key_from_random(&[7; 15])));
        for other in [
            "",
            "site_",
            "site_%00",
            "site_\0aaaaaaaaaaaaaaaaaaa",
            "rs_aaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(!is_site_key(other), "{other:?}");
        }
    }

    #[test]
    fn primary_description_follows_the_site_name() {
        assert_eq!(
            primary_token_description("Demo Store"),
            "Demo Store Primary Token"
        );
    }
}
