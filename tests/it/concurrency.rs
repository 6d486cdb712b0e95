//! Concurrency is decided by the database: one primary token per site however many requests race.

use std::sync::Arc;

use crate::helpers::{race, SiteKeys, TestApp};

crate::on_both_backends!(
    concurrent_first_requests_all_receive_the_one_primary_token,
    racing_mints_and_invalidations_leave_one_slot_with_consistent_history,
);

fn token_request(app: &TestApp, site: &SiteKeys) -> (u16, String) {
    let response = app.post_form(
        "/oauth2/token",
        Some((&site.site_key, &site.auth_key)),
        "grant_type=client_credentials",
    );
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().expect("a JSON body");
    (
        status,
        body["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

fn concurrent_first_requests_all_receive_the_one_primary_token(app: TestApp) {
    let app = Arc::new(app);
    let site = app.create_site("Rush Store");
    let (racer_app, racer_site) = (app.clone(), site.clone());
    let results = race(100, move |_| token_request(&racer_app, &racer_site));
    let first = &results[0].1;
    assert!(first.starts_with("twp_"));
    for (status, token) in &results {
        assert_eq!(*status, 200);
        assert_eq!(token, first, "every racer must get the same token");
    }
    assert_eq!(app.db.count("SELECT COUNT(*) AS n FROM tokens"), 1);
    assert_eq!(
        app.db
            .count("SELECT COUNT(*) AS n FROM token_events WHERE event = 'created'"),
        1
    );
    assert_eq!(app.primary_token(&site), *first);
}

fn racing_mints_and_invalidations_leave_one_slot_with_consistent_history(app: TestApp) {
    let app = Arc::new(app);
    let site = app.create_site("Churn Store");
    let initial = app.primary_token(&site);
    let (racer_app, racer_site) = (app.clone(), site.clone());
    let results = race(40, move |index| {
        let mut statuses = Vec::new();
        for _ in 0..5 {
            let (status, token) = token_request(&racer_app, &racer_site);
            statuses.push(status);
            if index % 2 == 0 {
                statuses.push(racer_app.invalidate(&racer_site, &token).status().as_u16());
            }
        }
        statuses
    });
    assert!(
        results.iter().flatten().all(|&status| status == 200),
        "{results:?}"
    );
    assert_eq!(app.db.count("SELECT COUNT(*) AS n FROM tokens"), 1);
    let created = app
        .db
        .count("SELECT COUNT(*) AS n FROM token_events WHERE event = 'created'");
    let invalidated = app
        .db
        .count("SELECT COUNT(*) AS n FROM token_events WHERE event = 'invalidated'");
    let active = app
        .db
        .count("SELECT COUNT(*) AS n FROM tokens WHERE active");
    assert!(created > 1, "the race should have minted several values");
    assert_eq!(
        created,
        invalidated + active,
        "each value created once, invalidated at most once"
    );
    let current = app.primary_token(&site);
    assert_ne!(current, initial);
    assert_eq!(app.primary_token(&site), current);
}
