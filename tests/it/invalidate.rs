//! `POST /oauth2/invalidate_token` and `POST /oauth2/revoke` (RFC 7009): a site ends its own
//! primary token, learns nothing about anyone else's, and every change is in the token's history.

use diesel::prelude::*;
use diesel::{PgConnection, SqliteConnection};
use reqwest::blocking::Response;
use serde_json::Value;
use tokenwarden::domain::slots::PRIMARY_SLOT;
use tokenwarden::domain::token::{self, SecretKind};
use tokenwarden::store::schema::{sites as sites_table, token_events, tokens};

use crate::helpers::{assert_oauth_error, SiteKeys, TestApp};

crate::on_both_backends!(
    invalidating_the_current_primary_makes_the_next_request_mint_a_new_one,
    invalidating_again_is_a_harmless_200,
    anything_but_this_sites_primary_gets_one_and_the_same_invalid_request,
    invalidation_needs_valid_client_authentication_and_does_nothing_without_it,
    invalidation_without_access_token_is_invalid_request,
    revoking_the_own_primary_replaces_it_on_the_next_request,
    revoking_anything_else_answers_200_and_touches_nothing,
    revocation_without_token_is_invalid_request,
    revocation_with_bad_credentials_is_invalid_client,
    history_records_created_invalidated_created,
);

const CHALLENGE: &str = "Basic realm=\"tokenwarden\"";

fn body_credentials(site: &SiteKeys) -> String {
    format!(
        "client_id={}&client_secret={}",
        site.site_key, site.auth_key
    )
}

fn revoke(app: &TestApp, site: &SiteKeys, body: &str) -> Response {
    app.post_form(
        "/oauth2/revoke",
        Some((&site.site_key, &site.auth_key)),
        body,
    )
}

/// A 200 that may not be cached (RFC 6749 5.1 applies to every answer of these endpoints).
fn assert_ok_no_store(response: &Response) {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
}

/// A value in the primary token format with a valid checksum that the server never issued.
fn never_issued_primary() -> String {
    token::mint(SecretKind::PrimaryToken, &[7u8; token::RANDOM_BYTES])
        .expose()
        .to_string()
}

/// `token` with its last character changed, so its checksum no longer matches.
fn with_bad_checksum(token: &str) -> String {
    let (head, last) = token.split_at(token.len() - 1);
    format!("{head}{}", if last == "A" { "B" } else { "A" })
}

fn invalidating_the_current_primary_makes_the_next_request_mint_a_new_one(app: TestApp) {
    let site = app.create_site("Renew Store");
    let first = app.primary_token(&site);
    let response = app.invalidate(&site, &first);
    assert_ok_no_store(&response);
    let body: Value = response.json().unwrap();
    assert_eq!(body, serde_json::json!({"invalidated": true}));
    let second = app.primary_token(&site);
    assert_ne!(second, first);
    assert!(second.starts_with("twp_"));
    assert_eq!(app.primary_token(&site), second, "minted once, then kept");
    // The same through body credentials.
    let response = app.post_form(
        "/oauth2/invalidate_token",
        None,
        &format!("access_token={second}&{}", body_credentials(&site)),
    );
    assert_ok_no_store(&response);
    let third = app.primary_token(&site);
    assert!(third != first && third != second);
}

fn invalidating_again_is_a_harmless_200(app: TestApp) {
    let site = app.create_site("Again Store");
    let first = app.primary_token(&site);
    for _ in 0..3 {
        assert_ok_no_store(&app.invalidate(&site, &first));
    }
    let second = app.primary_token(&site);
    assert_ne!(second, first);
    // Invalidating the old value once more leaves the new one alone.
    assert_ok_no_store(&app.invalidate(&site, &first));
    assert_eq!(app.primary_token(&site), second);
    // Two generations back is still "once this site's primary".
    assert_ok_no_store(&app.invalidate(&site, &second));
    let third = app.primary_token(&site);
    assert_ok_no_store(&app.invalidate(&site, &first));
    assert_ok_no_store(&app.invalidate(&site, &second));
    assert_eq!(app.primary_token(&site), third);
}

/// Issue 2 point 4: unknown, malformed, another site's, never issued: one answer for all, so the
/// endpoint cannot be used to probe for other sites' tokens.
fn anything_but_this_sites_primary_gets_one_and_the_same_invalid_request(app: TestApp) {
    let site = app.create_site("Own Store");
    let other = app.create_site("Neighbour Store");
    let own = app.primary_token(&site);
    let others = app.primary_token(&other);
    let third_party = app.primary_token(&app.create_site("Third Store"));
    // Another site's primary that is no longer active.
    let retired_owner = app.create_site("Retired Owner");
    let retired_of_owner = app.primary_token(&retired_owner);
    assert_ok_no_store(&app.invalidate(&retired_owner, &retired_of_owner));
    let never_secondary = token::mint(SecretKind::SecondaryToken, &[9u8; token::RANDOM_BYTES])
        .expose()
        .to_string();
    let candidates = [
        "unknown".to_string(),
        "x".repeat(200),
        "tw%C3%A9".to_string(),
        with_bad_checksum(&own),
        own[..own.len() - 1].to_string(),
        format!("{own}A"),
        own.to_uppercase(),
        others.clone(),
        third_party,
        retired_of_owner,
        never_issued_primary(),
        never_secondary,
        site.auth_key.clone(),
    ];
    let mut descriptions = Vec::new();
    for candidate in &candidates {
        let response = app.invalidate(&site, candidate);
        assert!(
            response.headers().get("www-authenticate").is_none(),
            "{candidate}"
        );
        descriptions.push(assert_oauth_error(response, 400, "invalid_request"));
    }
    assert_eq!(
        descriptions[0],
        "access_token is not this site's primary token"
    );
    assert!(
        descriptions.iter().all(|d| d == &descriptions[0]),
        "{descriptions:?}"
    );
    // Nothing was invalidated: neither the site's own token nor the neighbour's.
    assert_eq!(app.primary_token(&site), own);
    assert_eq!(app.primary_token(&other), others);
}

fn invalidation_needs_valid_client_authentication_and_does_nothing_without_it(app: TestApp) {
    let site = app.create_site("Guarded Store");
    let other = app.create_site("Guarded Neighbour");
    let token = app.primary_token(&site);
    let body = format!("access_token={token}");
    let attempts = [
        app.post_form("/oauth2/invalidate_token", None, &body),
        app.post_form(
            "/oauth2/invalidate_token",
            Some((&site.site_key, "twk_wrong")),
            &body,
        ),
        app.post_form(
            "/oauth2/invalidate_token",
            Some((&site.site_key, &other.auth_key)),
            &body,
        ),
        app.post_form(
            "/oauth2/invalidate_token",
            Some(("tws_no_such_site", &site.auth_key)),
            &body,
        ),
        app.post_form(
            "/oauth2/invalidate_token",
            None,
            &format!("{body}&client_id={}", site.site_key),
        ),
        app.post_form(
            "/oauth2/invalidate_token",
            None,
            &format!(
                "{body}&client_id={}&client_secret={}",
                site.site_key, other.auth_key
            ),
        ),
    ];
    for response in attempts {
        let challenge = response.headers().get("www-authenticate").cloned();
        assert_oauth_error(response, 401, "invalid_client");
        assert_eq!(challenge.unwrap(), CHALLENGE);
    }
    // A disabled site cannot invalidate either.
    app.set_site_enabled(&site, false);
    assert_oauth_error(app.invalidate(&site, &token), 401, "invalid_client");
    app.set_site_enabled(&site, true);
    // The token survived every attempt.
    assert_eq!(app.primary_token(&site), token);
    assert_ok_no_store(&app.invalidate(&site, &token));
    assert_ne!(app.primary_token(&site), token);
}

fn invalidation_without_access_token_is_invalid_request(app: TestApp) {
    let site = app.create_site("Forgetful Store");
    let token = app.primary_token(&site);
    for body in ["", "access_token=", "token=x", "accesstoken=x"] {
        let description = assert_oauth_error(
            app.post_form(
                "/oauth2/invalidate_token",
                Some((&site.site_key, &site.auth_key)),
                body,
            ),
            400,
            "invalid_request",
        );
        assert_eq!(description, "parameter access_token is required", "{body}");
    }
    // A token sent as `token` (the RFC 7009 name) is not read by this endpoint.
    assert_oauth_error(
        app.post_form(
            "/oauth2/invalidate_token",
            Some((&site.site_key, &site.auth_key)),
            &format!("token={token}"),
        ),
        400,
        "invalid_request",
    );
    assert_eq!(app.primary_token(&site), token);
}

/// RFC 7009 2.1, 2.2: the primary token is revoked like `/oauth2/invalidate_token` would; the
/// hint only guides the search, so a wrong hint does not spare the token.
fn revoking_the_own_primary_replaces_it_on_the_next_request(app: TestApp) {
    let site = app.create_site("Revoking Store");
    let first = app.primary_token(&site);
    let response = revoke(&app, &site, &format!("token={first}"));
    assert_ok_no_store(&response);
    let second = app.primary_token(&site);
    assert_ne!(second, first);
    assert_eq!(app.primary_token(&site), second);
    // Revoking the already revoked value: 200, and the new one stays.
    assert_ok_no_store(&revoke(&app, &site, &format!("token={first}")));
    assert_eq!(app.primary_token(&site), second);
    for hint in ["access_token", "refresh_token", "unknown_hint"] {
        let current = app.primary_token(&site);
        assert_ok_no_store(&revoke(
            &app,
            &site,
            &format!("token={current}&token_type_hint={hint}"),
        ));
        assert_ne!(app.primary_token(&site), current, "hint {hint}");
    }
    // Body credentials work as well.
    let current = app.primary_token(&site);
    let response = app.post_form(
        "/oauth2/revoke",
        None,
        &format!("token={current}&{}", body_credentials(&site)),
    );
    assert_ok_no_store(&response);
    assert_ne!(app.primary_token(&site), current);
}

/// RFC 7009 2.2: "invalid tokens do not cause an error response", and a client cannot revoke
/// another client's token.
fn revoking_anything_else_answers_200_and_touches_nothing(app: TestApp) {
    let site = app.create_site("Careless Store");
    let other = app.create_site("Bystander Store");
    let own = app.primary_token(&site);
    let others = app.primary_token(&other);
    let tokens = [
        others.clone(),
        "garbage".to_string(),
        with_bad_checksum(&own),
        never_issued_primary(),
        other.auth_key.clone(),
        "%C3%A9".to_string(),
    ];
    for candidate in &tokens {
        for hint in [
            None,
            Some("access_token"),
            Some("refresh_token"),
            Some("bogus"),
        ] {
            let body = match hint {
                Some(hint) => format!("token={candidate}&token_type_hint={hint}"),
                None => format!("token={candidate}"),
            };
            let response = revoke(&app, &site, &body);
            assert_ok_no_store(&response);
            assert_eq!(response.text().unwrap(), "", "{body}");
        }
    }
    assert_eq!(app.primary_token(&other), others, "the other site's token");
    assert_eq!(app.primary_token(&site), own, "the site's own token");
}

fn revocation_without_token_is_invalid_request(app: TestApp) {
    let site = app.create_site("Empty Handed Store");
    let token = app.primary_token(&site);
    for body in [
        String::new(),
        "token=".to_string(),
        "token_type_hint=access_token".to_string(),
        format!("access_token={token}"),
    ] {
        let response = revoke(&app, &site, &body);
        assert!(response.headers().get("www-authenticate").is_none());
        let description = assert_oauth_error(response, 400, "invalid_request");
        assert_eq!(description, "parameter token is required", "{body}");
    }
    assert_eq!(app.primary_token(&site), token);
}

/// RFC 7009 2.1 requires client authentication; RFC 7009 2.2.1 / RFC 6749 5.2 answer failures.
fn revocation_with_bad_credentials_is_invalid_client(app: TestApp) {
    let site = app.create_site("Locked Store");
    let other = app.create_site("Locked Neighbour");
    let token = app.primary_token(&site);
    let body = format!("token={token}");
    let attempts = [
        app.post_form("/oauth2/revoke", None, &body),
        app.post_form("/oauth2/revoke", Some((&site.site_key, "twk_wrong")), &body),
        app.post_form(
            "/oauth2/revoke",
            Some((&site.site_key, &other.auth_key)),
            &body,
        ),
        app.post_form(
            "/oauth2/revoke",
            Some(("tws_no_such_site", &site.auth_key)),
            &body,
        ),
        app.post_form(
            "/oauth2/revoke",
            None,
            &format!(
                "{body}&client_id={}&client_secret={}",
                other.site_key, site.auth_key
            ),
        ),
    ];
    let mut descriptions = Vec::new();
    for response in attempts {
        let challenge = response.headers().get("www-authenticate").cloned();
        descriptions.push(assert_oauth_error(response, 401, "invalid_client"));
        assert_eq!(challenge.unwrap(), CHALLENGE);
    }
    assert!(descriptions.iter().all(|d| d == &descriptions[0]));
    assert_eq!(app.primary_token(&site), token, "nothing was revoked");
}

/// One history row of the primary slot: event, actor kind, actor name, value digest.
type EventRow = (String, String, String, Option<Vec<u8>>);

/// The site's primary-slot history, oldest first, and how many token rows the slot has.
fn primary_history(app: &TestApp, site_key: &str) -> (Vec<EventRow>, i64) {
    macro_rules! query {
        ($conn:expr) => {{
            let conn = $conn;
            let events = token_events::table
                .inner_join(tokens::table.inner_join(sites_table::table))
                .filter(sites_table::site_key.eq(site_key))
                .filter(tokens::slot.eq(PRIMARY_SLOT))
                .order(token_events::id.asc())
                .select((
                    token_events::event,
                    token_events::actor_kind,
                    token_events::actor_name,
                    token_events::value_digest,
                ))
                .load::<EventRow>(conn)
                .expect("read the history");
            let rows = tokens::table
                .inner_join(sites_table::table)
                .filter(sites_table::site_key.eq(site_key))
                .filter(tokens::slot.eq(PRIMARY_SLOT))
                .count()
                .get_result::<i64>(conn)
                .expect("count the primary slot rows");
            (events, rows)
        }};
    }
    match app.db.sqlite_path() {
        Some(path) => {
            let mut conn =
                SqliteConnection::establish(path.to_str().unwrap()).expect("open the SQLite file");
            query!(&mut conn)
        }
        None => {
            let mut conn = PgConnection::establish(&app.db.url).expect("connect to PostgreSQL");
            query!(&mut conn)
        }
    }
}

/// Issue 2 point 6: `created` when a value is minted, `invalidated` when it is invalidated, each
/// with the site as actor; the slot keeps one row across values; refused attempts leave no trace.
fn history_records_created_invalidated_created(app: TestApp) {
    let site = app.create_site("Historic Store");
    let other = app.create_site("Unrelated Store");
    let first = app.primary_token(&site);
    app.primary_token(&site);
    assert_ok_no_store(&app.invalidate(&site, &first));
    // Harmless repeats and refusals add nothing.
    assert_ok_no_store(&app.invalidate(&site, &first));
    assert_oauth_error(app.invalidate(&site, "garbage"), 400, "invalid_request");
    let second = app.primary_token(&site);
    assert_eq!(app.primary_token(&site), second);
    assert_oauth_error(
        app.post_form(
            "/oauth2/invalidate_token",
            Some((&site.site_key, "twk_wrong")),
            &format!("access_token={second}"),
        ),
        401,
        "invalid_client",
    );
    assert_ok_no_store(&revoke(&app, &site, "token=garbage"));
    let other_token = app.primary_token(&other);
    assert_oauth_error(app.invalidate(&site, &other_token), 400, "invalid_request");

    let (events, rows) = primary_history(&app, &site.site_key);
    assert_eq!(rows, 1, "the primary slot keeps its row");
    let summary: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|(event, kind, name, _)| (event.as_str(), kind.as_str(), name.as_str()))
        .collect();
    let key = site.site_key.as_str();
    assert_eq!(
        summary,
        [
            ("created", "site", key),
            ("invalidated", "site", key),
            ("created", "site", key),
        ]
    );
    let first_digest = events[0]
        .3
        .as_ref()
        .expect("a created event names its value");
    let second_digest = events[2]
        .3
        .as_ref()
        .expect("a created event names its value");
    assert_ne!(first_digest, second_digest, "two different values");

    // The other site's history is its own.
    let (other_events, _) = primary_history(&app, &other.site_key);
    let other_summary: Vec<(&str, &str)> = other_events
        .iter()
        .map(|(event, _, name, _)| (event.as_str(), name.as_str()))
        .collect();
    assert_eq!(other_summary, [("created", other.site_key.as_str())]);

    // Revocation writes the same history.
    assert_ok_no_store(&revoke(&app, &site, &format!("token={second}")));
    app.primary_token(&site);
    let (events, rows) = primary_history(&app, &site.site_key);
    assert_eq!(rows, 1);
    let names: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "created",
            "invalidated",
            "created",
            "invalidated",
            "created"
        ]
    );
}
