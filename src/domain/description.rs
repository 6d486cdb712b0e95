//! The rule for non-primary token descriptions: what a site manager may type to say what a token
//! is for.
//!
//! Descriptions appear in admin pages, histories and logs, so they are kept to plain text: letters
//! and digits of any script, spaces and `- _ . ,`. Anything else (markup, quotes, control
//! characters, line breaks) is refused rather than escaped.

/// Longest description accepted, in characters after trimming.
pub const MAX_DESCRIPTION_CHARS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DescriptionError {
    #[error("description is required: 1 to 100 characters")]
    Empty,
    #[error("description must be at most {MAX_DESCRIPTION_CHARS} characters")]
    TooLong,
    #[error("description may contain only letters, digits, spaces and - _ . ,")]
    ForbiddenCharacter,
}

/// Trims `raw` and checks it; returns the description to store.
pub fn validate_description(raw: &str) -> Result<String, DescriptionError> {
    let description = raw.trim();
    if description.is_empty() {
        return Err(DescriptionError::Empty);
    }
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(DescriptionError::TooLong);
    }
    if !description.chars().all(is_allowed) {
        return Err(DescriptionError::ForbiddenCharacter);
    }
    Ok(description.to_string())
}

fn is_allowed(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | ',')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_trimmed_plain_text() {
        assert_eq!(
            validate_description("  Partner A, EU-1 feed_v2. "),
            Ok("Partner A, EU-1 feed_v2.".into())
        );
        assert_eq!(
            validate_description("Café Ünïcode 東京"),
            Ok("Café Ünïcode 東京".into())
        );
        assert_eq!(validate_description(&"é".repeat(100)), Ok("é".repeat(100)));
    }

    #[test]
    fn empty_long_and_special_descriptions_are_refused() {
        assert_eq!(validate_description(""), Err(DescriptionError::Empty));
        assert_eq!(validate_description(" \t "), Err(DescriptionError::Empty));
        assert_eq!(
            validate_description(&"x".repeat(101)),
            Err(DescriptionError::TooLong)
        );
        for bad in [
            "<script>",
            "a;b",
            "tab\there",
            "line\nbreak",
            "quote\"",
            "it's",
            "a/b",
            "50%",
        ] {
            assert_eq!(
                validate_description(bad),
                Err(DescriptionError::ForbiddenCharacter),
                "{bad:?}"
            );
        }
    }
}
