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
    /// Refused for good and out of the site's slots; its history stays.
    Retired,
}

impl TokenEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenEvent::Created => "created",
            TokenEvent::Validated => "validated",
            TokenEvent::Invalidated => "invalidated",
            TokenEvent::Regenerated => "regenerated",
            TokenEvent::DescriptionChanged => "description_changed",
            TokenEvent::Retired => "retired",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [
            TokenEvent::Created,
            TokenEvent::Validated,
            TokenEvent::Invalidated,
            TokenEvent::Regenerated,
            TokenEvent::DescriptionChanged,
            TokenEvent::Retired,
        ]
        .into_iter()
        .find(|event| event.as_str() == name)
    }
}

/// One line of a token's history, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub occurred_at: chrono::NaiveDateTime,
    pub event: TokenEvent,
    pub actor: Actor,
    /// For `description_changed`: the new description.
    pub detail: Option<String>,
}

/// One line of a site's history: a token's event, which token, and what it was called then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteHistoryEntry {
    /// The event's id: the site history's order, newest first, and its cursor.
    pub id: i64,
    pub token_id: i64,
    /// The token's description when the event happened; `None` when it was not recorded (some
    /// events written before descriptions were kept with each event).
    pub description: Option<String>,
    pub entry: HistoryEntry,
}

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The site itself, through the OAuth endpoints (`/oauth2/token`, `/oauth2/invalidate_token`,
    /// `/oauth2/revoke`), named by its site key.
    Site { site_key: String },
    /// An admin, through the admin API, named by their (unique) admin name.
    Admin { name: String },
    /// Someone at a shell, through the `tokenwarden` CLI, named by their user name.
    Operator { name: String },
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Site { .. } => "site",
            Actor::Admin { .. } => "admin",
            Actor::Operator { .. } => "operator",
        }
    }

    /// Rebuilds an actor from its stored `kind` and `name`.
    pub fn from_parts(kind: &str, name: String) -> Option<Self> {
        match kind {
            "site" => Some(Actor::Site { site_key: name }),
            "admin" => Some(Actor::Admin { name }),
            "operator" => Some(Actor::Operator { name }),
            _ => None,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Actor::Site { site_key } => site_key,
            Actor::Admin { name } | Actor::Operator { name } => name,
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
            TokenEvent::Retired,
        ] {
            assert_eq!(TokenEvent::parse(event.as_str()), Some(event));
        }
        assert_eq!(TokenEvent::parse("deleted"), None);
    }

    #[test]
    fn actors_round_trip_through_their_stored_parts() {
        for actor in [
            Actor::Site {
                site_key: "site_abc".into(),
            },
            Actor::Admin { name: "Ada".into() },
            Actor::Operator {
                name: "root".into(),
            },
        ] {
            let rebuilt = Actor::from_parts(actor.kind(), actor.name().to_string());
            assert_eq!(rebuilt, Some(actor));
        }
        assert_eq!(Actor::from_parts("robot", "x".into()), None);
    }
}
