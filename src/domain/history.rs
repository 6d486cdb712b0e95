//! What a token's history records: who did what, and when. History is append-only.

/// A change to a token, as listed in its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEvent {
    /// A value was minted into an empty slot, or into the primary slot after invalidation.
    Created,
    Validated,
    Invalidated,
    Regenerated,
    DescriptionChanged,
}

impl TokenEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenEvent::Created => "created",
            TokenEvent::Validated => "validated",
            TokenEvent::Invalidated => "invalidated",
            TokenEvent::Regenerated => "regenerated",
            TokenEvent::DescriptionChanged => "description_changed",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [
            TokenEvent::Created,
            TokenEvent::Validated,
            TokenEvent::Invalidated,
            TokenEvent::Regenerated,
            TokenEvent::DescriptionChanged,
        ]
        .into_iter()
        .find(|event| event.as_str() == name)
    }
}

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The site itself, through the OAuth endpoints (`/oauth2/token`, `/oauth2/invalidate_token`,
    /// `/oauth2/revoke`), named by its site key.
    Site { site_key: String },
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Site { .. } => "site",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Actor::Site { site_key } => site_key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_round_trip() {
        for event in [
            TokenEvent::Created,
            TokenEvent::Validated,
            TokenEvent::Invalidated,
            TokenEvent::Regenerated,
            TokenEvent::DescriptionChanged,
        ] {
            assert_eq!(TokenEvent::parse(event.as_str()), Some(event));
        }
        assert_eq!(TokenEvent::parse("deleted"), None);
    }
}
