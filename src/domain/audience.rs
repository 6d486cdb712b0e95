//! Who a site token is meant for: the resource servers of a non-primary token's audience (RFC 7662
//! 2.2 `aud`), the rules for the list an admin sends, resource-server client ids, and a resource server as listed
//! (its client id, name and site limit; never its secret).
//!
//! Whether a given resource server may see a token (its audience, the resource server's site
//! limit) is judged in `introspection`; that the named resource servers exist is checked by the
//! store, in the transaction that stores the audience.

use serde::de::IgnoredAny;
use serde::Deserialize;

/// Prefix of resource-server client ids (public, like site keys).
pub const RESOURCE_SERVER_ID_PREFIX: &str = "rs_";

/// A resource server as listed to the operator (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceServer {
    pub client_id: String,
    pub name: String,
    pub created_at: chrono::NaiveDateTime,
    /// The keys of the sites whose tokens it may introspect, in order; `None`: every site.
    pub site_keys: Option<Vec<String>>,
    /// When the secret its last rotation replaced stops (or stopped) working; `None` when that
    /// rotation had no overlap, or there was none.
    pub previous_secret_valid_until: Option<chrono::NaiveDateTime>,
}

impl ResourceServer {
    /// `all`, or the site keys of its limit (`none` when it is empty), for the CLI, the log and the
    /// audit trail.
    pub fn sites_text(&self) -> String {
        match &self.site_keys {
            None => "all".to_string(),
            Some(keys) if keys.is_empty() => "none".to_string(),
            Some(keys) => keys.join(", "),
        }
    }
}

/// Most resource servers one audience may name.
pub const MAX_AUDIENCE: usize = 20;

/// Whether `text` has the shape of a resource server's client id (prefix and 20 URL-safe
/// characters, `site::encode_identifier`). Such a text holds only characters that RFC 6749 5.2
/// allows in an error description, so a refusal may name it.
pub fn is_resource_server_id(text: &str) -> bool {
    text.strip_prefix(RESOURCE_SERVER_ID_PREFIX)
        .is_some_and(|random| {
            random.len() == 20
                && random
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The `audience` member of an admin API body, as sent: any JSON value, so that a value of the
/// wrong shape is refused by [`checked_audience`], naming the field, rather than by the JSON
/// parser (whose messages quote the client's text).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RequestedAudience {
    List(Vec<RequestedMember>),
    NotAList(IgnoredAny),
}

/// One entry of a [`RequestedAudience`] list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RequestedMember {
    ClientId(String),
    NotAString(IgnoredAny),
}

/// Why an audience is refused. No message holds the client's text unless it has the shape of a
/// client id ([`is_resource_server_id`]); entries are otherwise named by their position, from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudienceError {
    #[error("audience must be an array of 1 to {MAX_AUDIENCE} resource-server client ids")]
    NotAList,
    #[error("audience must name at least one resource server")]
    Empty,
    #[error("audience must name at most {MAX_AUDIENCE} resource servers")]
    TooMany,
    #[error("audience entry {0} is not a string")]
    NotAString(usize),
    #[error("audience entry {0} is not a resource-server client id")]
    NotAClientId(usize),
    #[error("audience names {0}, which is no resource server")]
    UnknownResourceServer(String),
}

/// The client ids of a requested audience, each once, in the order first named: 1 to
/// [`MAX_AUDIENCE`] entries, each a string shaped like a client id.
pub fn checked_audience(requested: &RequestedAudience) -> Result<Vec<String>, AudienceError> {
    let RequestedAudience::List(entries) = requested else {
        return Err(AudienceError::NotAList);
    };
    if entries.is_empty() {
        return Err(AudienceError::Empty);
    }
    if entries.len() > MAX_AUDIENCE {
        return Err(AudienceError::TooMany);
    }
    let mut client_ids: Vec<String> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let position = index + 1;
        let RequestedMember::ClientId(client_id) = entry else {
            return Err(AudienceError::NotAString(position));
        };
        if !is_resource_server_id(client_id) {
            return Err(AudienceError::NotAClientId(position));
        }
        if !client_ids.contains(client_id) {
            client_ids.push(client_id.clone());
        }
    }
    Ok(client_ids)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ONE: &str = "rs_AAAAAAAAAAAAAAAAAAAA";
    const TWO: &str = "rs_BBBBBBBBBBBBBBBBBB-_";

    fn check(value: serde_json::Value) -> Result<Vec<String>, AudienceError> {
        checked_audience(&serde_json::from_value(value).expect("any JSON is a requested audience"))
    }

    #[test]
    fn duplicates_are_collapsed_in_the_order_first_named() {
        assert_eq!(check(json!([TWO, ONE, TWO, ONE])).unwrap(), [TWO, ONE]);
        let twenty: Vec<&str> = std::iter::repeat_n(ONE, MAX_AUDIENCE).collect();
        assert_eq!(check(json!(twenty)).unwrap(), [ONE]);
    }

    #[test]
    fn anything_but_a_list_of_1_to_20_client_ids_is_refused() {
        for not_a_list in [json!(ONE), json!({ "id": ONE }), json!(5), json!(true)] {
            assert_eq!(check(not_a_list), Err(AudienceError::NotAList));
        }
        assert_eq!(check(json!([])), Err(AudienceError::Empty));
        let too_many: Vec<&str> = std::iter::repeat_n(ONE, MAX_AUDIENCE + 1).collect();
        assert_eq!(check(json!(too_many)), Err(AudienceError::TooMany));
        assert_eq!(check(json!([ONE, 7])), Err(AudienceError::NotAString(2)));
        assert_eq!(
            check(json!([ONE, TWO, [ONE]])),
            Err(AudienceError::NotAString(3))
        );
        for not_an_id in [
            "",
            "rs_",
            "site_AAAAAAAAAAAAAAAAAAAA",
            "rs_AAAAAAAAAAAAAAAAAAA\"",
            "rs_AAAAAAAAAAAAAAAAAAAé",
        ] {
            assert_eq!(
                check(json!([not_an_id])),
                Err(AudienceError::NotAClientId(1)),
                "{not_an_id}"
            );
        }
    }

    /// RFC 6749 5.2: `error_description` holds %x20-21 / %x23-5B / %x5D-7E only.
    #[test]
    fn refusals_stay_within_the_error_description_charset() {
        let refusals = [
            AudienceError::NotAList,
            AudienceError::Empty,
            AudienceError::TooMany,
            AudienceError::NotAString(20),
            AudienceError::NotAClientId(1),
            AudienceError::UnknownResourceServer(TWO.into()),
        ];
        for refusal in refusals {
            let message = refusal.to_string();
            assert!(message.starts_with("audience "), "{message}");
            assert!(
                message
                    .bytes()
                    .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)),
                "{message}"
            );
        }
    }
}
