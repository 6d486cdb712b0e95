//! The admin web page (issue 5): its headers over plain HTTP, and what a site manager does with it
//! in a real browser: Debian's headless Chromium, driven through chromedriver (WebDriver) by
//! fantoccini, against the real server on a database of its own.
//!
//! `scripts/install-browser` (run by `scripts/test`) installs Chromium and chromedriver. Without
//! them the browser tests are skipped with a message, except under `CI=true`, where they fail.
//! Every test asserts on what the page shows (text, state of the table, focus), and cross-checks
//! through the API or `/oauth2/introspect` that the server agrees.
//!
//! The pictures in `docs/images/` come from the ignored test `screenshots_of_the_main_states`:
//! `cargo test --test it admin_page::screenshots_of_the_main_states -- --ignored`.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{Datelike, TimeDelta};
use fantoccini::actions::{InputSource, MouseActions, PointerAction};
use fantoccini::{Client, ClientBuilder, Locator};
use serde::Deserialize;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokenwarden::domain::token::{self, SecretKind};

use crate::helpers::{AdminKeys, Backend, SiteKeys, TestApp, TestDatabase};

crate::on_both_backends!(
    the_page_and_its_assets_carry_security_and_caching_headers,
    an_admin_manages_a_token_from_sign_in_to_history,
);

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The browser's time zone: far from UTC and without daylight saving time, so that the page's
/// local-time to UTC conversion is visible and the expected UTC instant is fixed.
const BROWSER_TIME_ZONE: &str = "Asia/Tokyo";
const TOKYO_OFFSET_HOURS: i64 = 9;
/// How long the page gets to show what a step expects.
const WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(25);
pub(crate) const DESKTOP: (u32, u32) = (1280, 800);
pub(crate) const PHONE: (u32, u32) = (390, 844);
const SESSION_KEY: &str = "tokenwarden.admin-session";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

// ---------------------------------------------------------------------------------------------
// Over plain HTTP: headers, caching, routes
// ---------------------------------------------------------------------------------------------

fn the_page_and_its_assets_carry_security_and_caching_headers(app: TestApp) {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &str, if_none_match: Option<&str>| {
        let mut request = client.get(app.url(path));
        if let Some(tag) = if_none_match {
            request = request.header("If-None-Match", tag);
        }
        request.send().expect("the request reaches the server")
    };
    let header = |response: &reqwest::blocking::Response, name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };

    let redirect = get("/admin", None);
    assert_eq!(redirect.status(), 308, "/admin redirects");
    assert_eq!(header(&redirect, "location").as_deref(), Some("admin/"));

    let assets = [
        ("/admin/", "text/html; charset=utf-8", "<title>API access"),
        (
            "/admin/app.js",
            "text/javascript; charset=utf-8",
            "'use strict';",
        ),
        ("/admin/app.css", "text/css; charset=utf-8", ":root {"),
    ];
    let mut tags = Vec::new();
    for (path, content_type, start_of_content) in assets {
        let response = get(path, None);
        assert_eq!(response.status(), 200, "GET {path}");
        assert_eq!(
            header(&response, "content-type").as_deref(),
            Some(content_type),
            "{path}"
        );
        assert_eq!(
            header(&response, "content-security-policy").as_deref(),
            Some(CSP)
        );
        assert_eq!(
            header(&response, "x-frame-options").as_deref(),
            Some("DENY")
        );
        assert_eq!(
            header(&response, "referrer-policy").as_deref(),
            Some("no-referrer")
        );
        assert_eq!(
            header(&response, "x-content-type-options").as_deref(),
            Some("nosniff")
        );
        assert_eq!(
            header(&response, "cache-control").as_deref(),
            Some("no-cache"),
            "{path}: revalidated on every load, so a new release shows at once"
        );
        let etag = header(&response, "etag").unwrap_or_else(|| panic!("{path}: no ETag"));
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() > 10,
            "{path}: a strong ETag, not {etag}"
        );
        let body = response.text().unwrap();
        assert!(body.contains(start_of_content), "{path}: {body:.200}");

        for validator in [etag.clone(), format!("W/{etag}"), format!("\"x\", {etag}")] {
            let again = get(path, Some(&validator));
            assert_eq!(
                again.status(),
                304,
                "{path} with If-None-Match: {validator}"
            );
            assert_eq!(header(&again, "etag").as_deref(), Some(etag.as_str()));
            assert_eq!(header(&again, "cache-control").as_deref(), Some("no-cache"));
            assert!(again.text().unwrap().is_empty(), "a 304 has no body");
        }
        let changed = get(path, Some("\"an-older-release\""));
        assert_eq!(changed.status(), 200, "{path} after a release");
        assert_eq!(header(&changed, "etag").as_deref(), Some(etag.as_str()));
        tags.push(etag);
    }
    assert!(
        tags[0] != tags[1] && tags[1] != tags[2],
        "one tag per content: {tags:?}"
    );

    // The page itself: no inline script or style (the CSP would block them), nothing from
    // another origin, and the token value only ever as text.
    let html = get("/admin/", None).text().unwrap();
    for forbidden in [
        "<script>", "style=", "<style", "http://", "https://", "//cdn",
    ] {
        assert!(
            !html.contains(forbidden),
            "index.html contains {forbidden:?}"
        );
    }
    assert!(html.contains("<script src=\"app.js\" defer></script>"));
    assert!(html.contains("<link rel=\"stylesheet\" href=\"app.css\">"));
    let script = get("/admin/app.js", None).text().unwrap();
    for forbidden in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!script.contains(forbidden), "app.js uses {forbidden}");
    }
    assert!(
        !script.contains("document.cookie"),
        "the token is never a cookie"
    );

    // Other paths under /admin/ are the JSON 404 of every unknown path; the API is untouched.
    for path in [
        "/admin/index.html",
        "/admin/app.js.map",
        "/admin/v2",
        "/admin//",
    ] {
        crate::helpers::assert_admin_error(get(path, None), 404, "not_found", path);
    }
    crate::helpers::assert_admin_error(
        get("/admin/v1/sites", None),
        401,
        "invalid_token",
        "the admin API without a token",
    );
    let post = client.post(app.url("/admin/")).send().unwrap();
    assert_eq!(header(&post, "allow").as_deref(), Some("GET"));
    crate::helpers::assert_admin_error(post, 405, "method_not_allowed", "POST /admin/");
}

// ---------------------------------------------------------------------------------------------
// In the browser
// ---------------------------------------------------------------------------------------------

/// Sign in, create a token and see its value once, reload and see it masked, invalidate it (the
/// resource server's introspection refuses it), regenerate, validate, read the history, sign out.
fn an_admin_manages_a_token_from_sign_in_to_history(app: TestApp) {
    let Some(browser) = Browser::open(&app, DESKTOP) else {
        return;
    };
    let site = app.create_site("Tea Shop");
    app.primary_token(&site);
    let admin = app.create_platform_admin("Ada Ops");
    let orders_api = app.create_resource_server("Orders API");

    // Sign in: wrong secret first.
    browser.goto("/admin/");
    browser.wait_text("#sign-in-view h1", "Sign in");
    assert_eq!(
        browser.js("return getComputedStyle(document.querySelector('.topbar')).backgroundColor"),
        "rgb(29, 39, 51)",
        "app.css applies under the Content-Security-Policy"
    );
    assert_eq!(
        browser.focused(),
        json!("client-id"),
        "focus starts in the form"
    );
    browser.type_into("#client-id", &admin.client_id);
    browser.type_into("#client-secret", "twm_not_the_secret");
    browser.click("#sign-in-button");
    browser.wait_text("#sign-in-error", "do not match an admin");
    browser.type_into("#client-secret", &admin.client_secret);
    browser.click("#sign-in-button");
    browser.wait_text("#sites-count", "1 site");
    browser.wait_text("#signed-in-as", "Signed in as Ada Ops Platform admin");
    assert!(
        !browser.is_visible("#sections") || browser.texts("#sections a").len() == 3,
        "the platform's sections"
    );
    let listed = browser.texts("#site-list .site-name");
    assert_eq!(listed, ["Tea Shop"]);

    // The admin token is in sessionStorage only: no cookie, not in the URL, and it works.
    let admin_token = browser.admin_token().expect("a stored admin token");
    assert!(admin_token.starts_with("twa_"), "{admin_token}");
    assert_eq!(browser.js("return document.cookie"), "");
    assert!(!browser.url().contains(&admin_token));
    assert_eq!(
        app.admin_get_ok(&admin_token, "/admin/v1/sites")["total"],
        1
    );
    assert_eq!(
        browser.js("return document.getElementById('client-secret').value"),
        "",
        "the secret does not stay in the page"
    );

    browser.click("#site-list a.site-link");
    browser.wait_text("#site-title", "Tea Shop");
    browser.wait_text("#site-key", &site.site_key);
    let rows = browser.wait_rows("the primary token", |rows| rows.len() == 1);
    let primary = &rows[0];
    assert!(primary.primary, "{primary:?}");
    assert_eq!(primary.description, "Tea Shop Primary Token");
    assert_eq!(
        primary.actions,
        ["history"],
        "the primary offers its history only"
    );
    assert!(primary.text.contains("Managed by the site’s integration"));
    assert_eq!(primary.status, "Active");
    assert!(primary.masked.starts_with("twp_…"), "{primary:?}");
    browser.wait_text(
        "#token-count",
        "1 token of 10: the primary token and 0 more.",
    );
    assert!(browser.is_visible("#create-token"));
    assert!(!browser.is_visible("#limit-reached"));
    browser.js("window.notReloaded = true");

    // Create: the full value once, with Copy and the warning.
    browser.click("#create-token");
    browser.wait_visible("#create-dialog");
    assert_eq!(browser.focused(), json!("create-description"));
    browser.type_into("#create-description", "Acme fulfilment partner");
    browser.click("#create-submit");
    browser.wait_visible("#secret-dialog");
    browser.wait_text("#secret-title", "Token “Acme fulfilment partner” created");
    browser.wait_text("#secret-warning", "It will not be shown again");
    assert_eq!(browser.text("#secret-copy"), "Copy");
    assert_eq!(browser.focused(), json!("secret-copy"));
    let value = browser.text("#secret-value");
    assert_eq!(
        token::recognise(&value),
        Ok(SecretKind::SecondaryToken),
        "{value:?}"
    );
    let introspected = app.introspect(&orders_api, &value);
    assert_eq!(introspected["active"], true, "{introspected}");
    assert_eq!(introspected["token_kind"], "secondary");
    browser.click("#secret-copy");
    browser.wait_text("#secret-copied", "Cop");
    // The table behind the dialog already shows the new token, masked, without a reload.
    let rows = browser.wait_rows("the created token", |rows| rows.len() == 2);
    let created = &rows[1];
    assert_eq!(created.description, "Acme fulfilment partner");
    assert_eq!(created.masked, masked(&value));
    assert_eq!(created.status, "Active");
    assert_eq!(
        created.actions,
        ["regenerate", "invalidate", "history", "retire"]
    );
    assert_eq!(created.cells[5], "Never", "last used: {created:?}");
    assert_eq!(created.cells[6], "Never", "expires: {created:?}");
    assert_eq!(created.cells[8], "Any", "audience: {created:?}");
    let id = created.id;
    browser.click("#secret-dialog [data-close]");
    browser.wait_hidden("#secret-dialog");
    assert!(
        !browser.page_holds(&value),
        "the value is gone once the dialog closes"
    );
    assert_eq!(browser.js("return window.notReloaded === true"), true);
    browser.wait_text(
        "#token-count",
        "2 tokens of 10: the primary token and 1 more.",
    );

    // Reload: still signed in, on the same site, the value masked and nowhere in the page.
    browser.refresh();
    let rows = browser.wait_rows("the list after a reload", |rows| rows.len() == 2);
    assert_eq!(browser.js("return window.notReloaded === undefined"), true);
    assert_eq!(browser.text("#site-title"), "Tea Shop");
    assert_eq!(rows[1].masked, masked(&value));
    assert!(!browser.page_holds(&value));

    // Invalidate, with a new description: confirmed first, then refused by introspection.
    browser.click(&action_button(id, "invalidate"));
    browser.wait_visible("#action-dialog");
    browser.wait_text("#action-title", "Invalidate “Acme fulfilment partner”?");
    browser.wait_text("#action-explanation", "stops working at once");
    browser.type_into("#action-description", "Acme partner, paused");
    browser.click("#action-submit");
    let rows = browser.wait_rows("the invalidated token", |rows| {
        rows.iter()
            .any(|row| row.id == id && row.status == "Inactive")
    });
    let row = rows.iter().find(|row| row.id == id).unwrap();
    assert_eq!(row.description, "Acme partner, paused");
    assert_eq!(row.actions, ["regenerate", "validate", "history", "retire"]);
    browser.wait_text("#messages", "Token “Acme partner, paused” invalidated.");
    assert_eq!(
        app.introspect(&orders_api, &value),
        json!({"active": false}),
        "refused right after the click"
    );
    assert_eq!(
        browser.focused(),
        json!({"action": "validate", "token": id.to_string()}),
        "focus on the button that took Invalidate's place"
    );

    // Regenerate: Cancel changes nothing; confirmed, it shows the new value once.
    browser.click(&action_button(id, "regenerate"));
    browser.wait_text("#action-title", "Regenerate “Acme partner, paused”?");
    browser.wait_text(
        "#action-explanation",
        "stays inactive until you validate it",
    );
    browser.click("#action-dialog [data-close]");
    browser.wait_hidden("#action-dialog");
    assert_eq!(
        browser.focused(),
        json!({"action": "regenerate", "token": id.to_string()})
    );
    assert_eq!(
        browser.rows()[1].masked,
        masked(&value),
        "cancel kept the value"
    );
    browser.click(&action_button(id, "regenerate"));
    browser.wait_visible("#action-dialog");
    browser.click("#action-submit");
    browser.wait_visible("#secret-dialog");
    browser.wait_text("#secret-title", "New value for “Acme partner, paused”");
    let regenerated = browser.text("#secret-value");
    assert_ne!(regenerated, value);
    assert_eq!(
        token::recognise(&regenerated),
        Ok(SecretKind::SecondaryToken)
    );
    assert_eq!(
        app.introspect(&orders_api, &value),
        json!({"active": false})
    );
    assert_eq!(
        app.introspect(&orders_api, &regenerated),
        json!({"active": false}),
        "still inactive until validated"
    );
    browser.click("#secret-dialog [data-close]");
    browser.wait_hidden("#secret-dialog");
    browser.wait_rows("the regenerated value", |rows| {
        rows[1].masked == masked(&regenerated) && rows[1].status == "Inactive"
    });

    // Validate: works again at once.
    browser.click(&action_button(id, "validate"));
    browser.wait_text("#action-title", "Validate “Acme partner, paused”?");
    browser.click("#action-submit");
    browser.wait_rows("the validated token", |rows| rows[1].status == "Active");
    browser.wait_text("#messages", "validated. It works again.");
    assert_eq!(app.introspect(&orders_api, &regenerated)["active"], true);

    // History: what the API records, in words, oldest first; Escape closes it.
    browser.click(&action_button(id, "history"));
    browser.wait_text("#history-title", "History of “Acme partner, paused”");
    let api_events: Vec<String> = app.admin_get_ok(
        &admin_token,
        &format!("/admin/v1/sites/{}/tokens/{id}/history", site.site_key),
    )["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        api_events,
        [
            "created",
            "invalidated",
            "description_changed",
            "regenerated",
            "validated"
        ]
    );
    let shown = browser.wait_until("the history rows", |browser| {
        let events = browser.js(
            "return [...document.querySelectorAll('#history-body tr[data-event]')]
                .map(tr => tr.dataset.event)",
        );
        (events.as_array().map_or(0, Vec::len) == api_events.len()).then_some(events)
    });
    assert_eq!(shown, json!(api_events));
    let history = browser.text("#history-body");
    for words in [
        "Created",
        "Invalidated",
        "Description changed to “Acme partner, paused”",
        "Regenerated (new value)",
        "Validated",
        "Ada Ops",
    ] {
        assert!(history.contains(words), "{words:?} in {history}");
    }
    browser.press_escape();
    browser.wait_hidden("#history-dialog");
    assert_eq!(
        browser.focused(),
        json!({"action": "history", "token": id.to_string()}),
        "focus back where the dialog was opened"
    );

    // Sign out: the token ends on the server, then the page forgets it.
    let signed_in_token = browser
        .admin_token()
        .expect("the page holds an admin token");
    assert_eq!(
        app.admin_get(&signed_in_token, "/admin/v1/sites").status(),
        200
    );
    browser.click("#sign-out");
    browser.wait_visible("#sign-in-view");
    browser.wait_text("#messages", "You have signed out.");
    assert_eq!(browser.admin_token(), None);
    assert_eq!(
        app.admin_get(&signed_in_token, "/admin/v1/sites").status(),
        401,
        "the signed-out token is refused"
    );
    assert!(!browser.is_visible("#tokens-view"));
    assert!(!browser.url().contains('#'), "{}", browser.url());
}

/// The tenth token makes the Create button disappear; a create that loses the race for the last
/// slot gets the 409 in words, and the table catches up.
#[test]
fn the_create_button_disappears_at_the_ten_token_limit() {
    let Some((app, browser)) = app_and_browser(Backend::Sqlite, DESKTOP) else {
        return;
    };
    let admin = app.create_platform_admin("Ada Ops");
    let token = app.admin_token(&admin);
    let site = app.create_site("Tea Shop");
    app.primary_token(&site);
    for n in 1..=7 {
        create_via_api(&app, &token, &site, &format!("Partner {n}"));
    }

    browser.goto(&format!("/admin/#site={}", site.site_key));
    sign_in(&browser, &admin);
    browser.wait_text("#site-title", "Tea Shop");
    browser.wait_rows("eight tokens", |rows| rows.len() == 8);
    browser.wait_text(
        "#token-count",
        "8 tokens of 10: the primary token and 7 more.",
    );
    for (n, remaining_button) in [(8, true), (9, false)] {
        assert!(browser.is_visible("#create-token"), "before token {n}");
        browser.click("#create-token");
        browser.type_into("#create-description", &format!("Partner {n}"));
        browser.click("#create-submit");
        browser.wait_visible("#secret-dialog");
        browser.click("#secret-dialog [data-close]");
        browser.wait_hidden("#secret-dialog");
        browser.wait_rows("one more token", |rows| rows.len() == n + 1);
        assert_eq!(browser.is_visible("#create-token"), remaining_button);
    }
    browser.wait_text(
        "#token-count",
        "10 tokens of 10: the primary token and 9 more.",
    );
    browser.wait_text("#limit-reached", "the most it may hold");
    assert_eq!(
        browser.focused(),
        json!("site-title"),
        "focus has somewhere to go"
    );
    browser.refresh();
    browser.wait_rows("ten tokens after a reload", |rows| rows.len() == 10);
    assert!(!browser.is_visible("#create-token"));
    assert!(browser.is_visible("#limit-reached"));

    // Another site, one slot left; someone else takes it while the dialog is open.
    let other = app.create_site("Book Nook");
    app.primary_token(&other);
    for n in 1..=8 {
        create_via_api(&app, &token, &other, &format!("Reader {n}"));
    }
    browser.goto(&format!("/admin/#site={}", other.site_key));
    browser.wait_text("#site-title", "Book Nook");
    browser.wait_rows("nine tokens", |rows| rows.len() == 9);
    browser.click("#create-token");
    browser.type_into("#create-description", "Late Reader");
    create_via_api(&app, &token, &other, "Quick Reader");
    browser.click("#create-submit");
    browser.wait_text("#create-error", "This site already holds 10 tokens");
    browser.wait_rows("the other admin's token", |rows| {
        rows.len() == 10 && rows.iter().any(|row| row.description == "Quick Reader")
    });
    assert!(!browser.is_visible("#create-token"), "the table caught up");
    browser.press_escape();
    browser.wait_hidden("#create-dialog");
    assert_eq!(browser.focused(), json!("site-title"));
    assert_eq!(token_count(&app, &token, &other), 10);
}

/// Retiring on the page: one token from its row, several through the checkboxes and the bulk bar
/// (each confirmed, naming the count), the primary's history, the site's history with every
/// token, and an expired token that needs a new expiry to be validated.
#[test]
fn tokens_are_retired_one_or_many_and_the_site_history_keeps_them() {
    let Some((app, browser)) = app_and_browser(Backend::Sqlite, DESKTOP) else {
        return;
    };
    let admin = app.create_platform_admin("Ada Ops");
    let token = app.admin_token(&admin);
    let site = app.create_site("Tea Shop");
    app.primary_token(&site);
    let orders_api = app.create_resource_server("Orders API");
    let tokens_path = format!("/admin/v1/sites/{}/tokens", site.site_key);
    let created: Vec<(i64, String)> = (1..=4)
        .map(|n| {
            let response = app.admin_post(
                &token,
                &tokens_path,
                Some(&json!({ "description": format!("Partner {n}") })),
            );
            assert_eq!(response.status(), 201);
            let body: Value = response.json().unwrap();
            (
                body["id"].as_i64().unwrap(),
                body["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();

    browser.goto(&format!("/admin/#site={}", site.site_key));
    sign_in(&browser, &admin);
    let rows = browser.wait_rows("five tokens", |rows| rows.len() == 5);
    assert!(!browser.is_visible("#bulk-bar"), "nothing selected yet");
    assert!(
        browser.js(
            "return document.querySelector('#tokens-body tr.primary input[data-select]') === null"
        ) == json!(true),
        "the primary has no checkbox"
    );

    // The primary's history.
    browser.click(&action_button(rows[0].id, "history"));
    browser.wait_visible("#history-dialog");
    browser.wait_text("#history-title", "History of “Tea Shop Primary Token”");
    browser.wait_text("#history-body", "Created");
    browser.click("#history-dialog [data-close]");
    browser.wait_hidden("#history-dialog");

    // Retire one from its row: confirmed first, then refused by introspection.
    let (first, first_value) = created[0].clone();
    browser.click(&action_button(first, "retire"));
    browser.wait_visible("#confirm-dialog");
    browser.wait_text("#confirm-title", "Retire “Partner 1”?");
    browser.wait_text("#confirm-explanation", "frees its place for a new token");
    assert_eq!(
        browser.focused(),
        json!("confirm-cancel"),
        "Enter alone retires nothing"
    );
    browser.click("#confirm-submit");
    browser.wait_rows("the retired token gone", |rows| {
        rows.len() == 4 && rows.iter().all(|row| row.id != first)
    });
    browser.wait_text("#messages", "Token “Partner 1” retired.");
    assert_eq!(
        app.introspect(&orders_api, &first_value),
        json!({"active": false})
    );

    // Select two: the bar names the count; Invalidate asks first, naming it too.
    let (second, second_value) = created[1].clone();
    let (third, third_value) = created[2].clone();
    browser.click(&format!("#tokens-body input[data-select=\"{second}\"]"));
    browser.wait_text("#bulk-count", "1 token selected");
    browser.click(&format!("#tokens-body input[data-select=\"{third}\"]"));
    browser.wait_text("#bulk-count", "2 tokens selected");
    browser.click("#bulk-bar button[data-bulk=\"invalidate\"]");
    browser.wait_text("#confirm-title", "Invalidate 2 tokens?");
    browser.wait_text(
        "#confirm-explanation",
        "Either all 2 selected tokens change, or none does.",
    );
    browser.click("#confirm-submit");
    browser.wait_rows("two invalidated tokens", |rows| {
        rows.iter()
            .filter(|row| row.id == second || row.id == third)
            .all(|row| row.status == "Inactive")
    });
    browser.wait_text("#messages", "2 tokens invalidated.");
    assert!(
        !browser.is_visible("#bulk-bar"),
        "the selection ends with the action"
    );
    for value in [&second_value, &third_value] {
        assert_eq!(app.introspect(&orders_api, value), json!({"active": false}));
    }

    // Select them again and retire both.
    browser.click(&format!("#tokens-body input[data-select=\"{second}\"]"));
    browser.click(&format!("#tokens-body input[data-select=\"{third}\"]"));
    browser.wait_text("#bulk-count", "2 tokens selected");
    browser.click("#bulk-bar button[data-bulk=\"retire\"]");
    browser.wait_text("#confirm-title", "Retire 2 tokens?");
    assert_eq!(browser.text("#confirm-submit"), "Retire 2 tokens");
    browser.click("#confirm-submit");
    browser.wait_rows("two retired tokens gone", |rows| rows.len() == 2);
    browser.wait_text("#messages", "2 tokens retired.");
    assert_eq!(token_count(&app, &token, &site), 2);

    // The site's history keeps every token, the retired ones with what they were called.
    browser.click("#site-history");
    browser.wait_visible("#history-dialog");
    browser.wait_text("#history-title", "History of Tea Shop");
    let shown = browser.wait_until("the site's history", |browser| {
        let rows = browser.js(
            "return [...document.querySelectorAll('#history-body tr[data-event]')]
                .map(tr => [tr.dataset.event, tr.cells[1].innerText.trim()])",
        );
        (rows.as_array().map_or(0, Vec::len) == 10).then_some(rows)
    });
    let shown: Vec<(String, String)> = serde_json::from_value(shown).unwrap();
    assert_eq!(
        shown[0],
        ("retired".into(), "“Partner 3”".into()),
        "{shown:?}"
    );
    assert_eq!(
        shown[1],
        ("retired".into(), "“Partner 2”".into()),
        "{shown:?}"
    );
    assert!(
        shown.contains(&("retired".into(), "“Partner 1”".into())),
        "{shown:?}"
    );
    assert!(
        shown.contains(&("created".into(), "“Tea Shop Primary Token”".into())),
        "{shown:?}"
    );
    assert!(browser.is_visible("#history-head th[data-site-only]"));
    browser.click("#history-dialog [data-close]");
    browser.wait_hidden("#history-dialog");

    // An expired token: Validate needs a new expiry, then it works again.
    let (fourth, fourth_value) = created[3].clone();
    app.db.execute(&format!(
        "UPDATE tokens SET expires_at = '2020-01-01 00:00:00', active = false WHERE id = {fourth}"
    ));
    browser.refresh();
    browser.wait_rows("the expired token", |rows| {
        rows.iter().any(|row| row.id == fourth)
    });
    browser.click(&action_button(fourth, "validate"));
    browser.wait_visible("#action-dialog");
    browser.wait_text("#action-explanation", "give it a new expiry");
    browser.wait_text("#action-expires-field", "required: the token has expired");
    browser.click("#action-submit");
    browser.wait_text(
        "#action-expires-error",
        "This token has expired; give a new expiry or retire it",
    );
    let day = (tokenwarden::clock::now() + TimeDelta::days(30)).date();
    browser.set_value(
        "#action-expires",
        &format!(
            "{:04}-{:02}-{:02}T12:00",
            day.year(),
            day.month(),
            day.day()
        ),
    );
    browser.click("#action-submit");
    browser.wait_rows("the revived token", |rows| {
        rows.iter()
            .any(|row| row.id == fourth && row.status == "Active")
    });
    assert_eq!(app.introspect(&orders_api, &fourth_value)["active"], true);

    // The create form limits its expiry to the server's maximum, and says so.
    browser.click("#create-token");
    browser.wait_visible("#create-dialog");
    browser.wait_text("#create-expires-hint", "At most 365 days ahead.");
    let limit = (tokenwarden::clock::now() + TimeDelta::days(365)).date();
    let max = browser.js("return document.getElementById('create-expires').max");
    assert!(
        max.as_str().is_some_and(|max| {
            // The browser's local day may be the next one (Tokyo).
            let next = limit + TimeDelta::days(1);
            max.starts_with(&limit.format("%Y-%m-%d").to_string())
                || max.starts_with(&next.format("%Y-%m-%d").to_string())
        }),
        "max {max}"
    );
}

/// A token created with an audience on the page: an unknown client id is refused next to the
/// field, then the token works for the named resource server only, and its row lists it.
#[test]
fn a_token_created_with_an_audience_works_only_for_those_resource_servers() {
    let Some((app, browser)) = app_and_browser(Backend::Sqlite, DESKTOP) else {
        return;
    };
    let admin = app.create_platform_admin("Ada Ops");
    let token = app.admin_token(&admin);
    let site = app.create_site("Tea Shop");
    let stock_api = app.create_resource_server("Stock API");
    let orders_api = app.create_resource_server("Orders API");
    browser.goto(&format!("/admin/#site={}", site.site_key));
    sign_in(&browser, &admin);
    browser.wait_text("#token-count", "0 tokens");

    browser.click("#create-token");
    browser.wait_visible("#create-dialog");
    browser.type_into("#create-description", "Stock feed");
    let unknown = "rs_AAAAAAAAAAAAAAAAAAAA";
    browser.type_into(
        "#create-audience",
        &format!("{}, {unknown}", stock_api.client_id),
    );
    browser.click("#create-submit");
    browser.wait_text(
        "#create-audience-error",
        &format!("The audience names {unknown}, which is no resource server."),
    );
    assert_eq!(browser.focused(), json!("create-audience"));
    assert_eq!(token_count(&app, &token, &site), 0, "nothing was created");

    // Spaces and commas separate ids; a repeated one counts once.
    browser.type_into(
        "#create-audience",
        &format!(" {id} ,{id}  ", id = stock_api.client_id),
    );
    browser.click("#create-submit");
    browser.wait_visible("#secret-dialog");
    let value = browser.text("#secret-value");
    let answer = app.introspect(&stock_api, &value);
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["aud"], json!([stock_api.client_id]), "{answer}");
    assert_eq!(
        app.introspect(&orders_api, &value),
        json!({"active": false}),
        "outside the audience"
    );
    browser.click("#secret-dialog [data-close]");
    let rows = browser.wait_rows("the created token", |rows| rows.len() == 1);
    assert_eq!(rows[0].description, "Stock feed");
    assert_eq!(rows[0].cells[8], stock_api.client_id, "{:?}", rows[0]);
}

/// What the API refuses is shown next to the field it names; plain text only, even in errors.
#[test]
fn descriptions_and_expiry_are_checked_and_errors_are_shown_next_to_the_field() {
    let Some((app, browser)) = app_and_browser(Backend::Sqlite, DESKTOP) else {
        return;
    };
    let admin = app.create_platform_admin("Ada Ops");
    let token = app.admin_token(&admin);
    let site = app.create_site("Tea Shop");
    browser.goto(&format!("/admin/#site={}", site.site_key));
    sign_in(&browser, &admin);
    browser.wait_text("#token-count", "0 tokens");

    browser.click("#create-token");
    browser.wait_visible("#create-dialog");
    browser.click("#create-submit");
    browser.wait_text("#create-description-error", "Enter a description");

    let special = "<b>Acme</b> & \"Partner\" <img src=x>";
    browser.type_into("#create-description", special);
    browser.click("#create-submit");
    browser.wait_text(
        "#create-description-error",
        "The description may contain only letters, digits, spaces and - _ . ,",
    );
    assert_eq!(
        browser.js(
            "return document.getElementById('create-description').getAttribute('aria-invalid')"
        ),
        "true"
    );
    assert_eq!(browser.focused(), json!("create-description"));
    assert_eq!(
        browser.js("return document.querySelectorAll('#create-dialog b, img').length"),
        0,
        "nothing typed became markup"
    );
    assert_eq!(token_count(&app, &token, &site), 0, "nothing was created");

    // An expiry in the past is the server's to refuse; the error moves to that field.
    browser.type_into("#create-description", "Café partner, 東京");
    browser.set_value("#create-expires", "2020-01-01T10:00");
    browser.click("#create-submit");
    browser.wait_text("#create-expires-error", "The expiry must be in the future.");
    assert!(!browser.is_visible("#create-description-error"));
    // No scopes are configured on this server: the scope field gets the refusal.
    browser.set_value("#create-expires", "");
    browser.type_into("#create-scope", "orders:read");
    browser.click("#create-submit");
    browser.wait_text("#create-scope-error", "is not offered by this server");
    assert!(!browser.is_visible("#create-expires-error"));
    assert_eq!(token_count(&app, &token, &site), 0);

    // A valid local expiry (Tokyo, UTC+9) arrives as the same instant in UTC.
    let day = (tokenwarden::clock::now() + TimeDelta::days(30)).date();
    let local = format!(
        "{:04}-{:02}-{:02}T12:00",
        day.year(),
        day.month(),
        day.day()
    );
    browser.type_into("#create-scope", "");
    browser.set_value("#create-expires", &local);
    browser.click("#create-submit");
    browser.wait_visible("#secret-dialog");
    browser.click("#secret-dialog [data-close]");
    let rows = browser.wait_rows("the created token", |rows| rows.len() == 1);
    assert_eq!(rows[0].description, "Café partner, 東京");
    assert!(
        rows[0].cells[6].contains("12:00"),
        "expires in local time: {:?}",
        rows[0]
    );
    let listed = app.admin_get_ok(&token, &format!("/admin/v1/sites/{}/tokens", site.site_key));
    let expected = format!(
        "{:04}-{:02}-{:02}T{:02}:00:00Z",
        day.year(),
        day.month(),
        day.day(),
        12 - TOKYO_OFFSET_HOURS
    );
    assert_eq!(listed["tokens"][0]["expires_at"], expected, "{listed}");

    // The same rule on an action's new description.
    let id = rows[0].id;
    browser.click(&action_button(id, "invalidate"));
    browser.type_into("#action-description", "Partner; DROP TABLE tokens");
    browser.click("#action-submit");
    browser.wait_text("#action-description-error", "may contain only letters");
    browser.press_escape();
    browser.wait_hidden("#action-dialog");
    assert_eq!(
        browser.rows()[0].status,
        "Active",
        "nothing was invalidated"
    );
    assert_eq!(
        app.admin_get_ok(
            &token,
            &format!("/admin/v1/sites/{}/tokens/{id}", site.site_key)
        )["active"],
        true
    );

    // A request that never reaches the server (simulated: the page's fetch fails as it does
    // offline) is said in words, and the dialog stays open with what was typed.
    browser.click("#create-token");
    browser.type_into("#create-description", "Offline Partner");
    browser.js("window.fetch = () => Promise.reject(new TypeError('Failed to fetch'))");
    browser.click("#create-submit");
    browser.wait_text(
        "#create-error",
        "Could not reach tokenwarden. Check your network connection and try again.",
    );
    assert_eq!(
        browser.js("return document.getElementById('create-description').value"),
        "Offline Partner"
    );
    assert_eq!(token_count(&app, &token, &site), 1);
}

/// A site manager sees only the sites assigned to them, and a site key typed into the URL does
/// not open another one.
#[test]
fn a_site_manager_sees_only_assigned_sites() {
    let Some((app, browser)) = app_and_browser(Backend::Sqlite, DESKTOP) else {
        return;
    };
    let tea = app.create_site("Tea Shop");
    let books = app.create_site("Book Nook");
    let garden = app.create_site("Garden Supplies");
    let manager = app.create_site_manager("Tea Manager", &[&tea, &garden]);

    browser.goto("/admin/");
    sign_in(&browser, &manager);
    browser.wait_text("#sites-count", "2 sites");
    assert_eq!(
        browser.texts("#site-list .site-name"),
        ["Garden Supplies", "Tea Shop"]
    );
    browser.type_into("#site-search", "book");
    browser.wait_text("#sites-count", "No site matches “book”.");
    assert!(browser.texts("#site-list .site-name").is_empty());

    browser.goto(&format!("/admin/#site={}", books.site_key));
    browser.wait_text(
        "#messages",
        "That site does not exist, or it is not assigned to you.",
    );
    browser.wait_visible("#sites-view");
    assert!(!browser.page_text().contains("Book Nook"));

    browser.type_into("#site-search", "");
    browser.wait_text("#sites-count", "2 sites");
    browser.click(&format!("#site-list a[data-site-key=\"{}\"]", tea.site_key));
    browser.wait_text("#site-title", "Tea Shop");
    browser.wait_text("#token-count", "0 tokens");
    assert!(browser.is_visible("#create-token"));
}

/// An admin token that stops working (expired, or its admin disabled) sends the admin back to
/// sign-in with a clear message; signing in again returns to the same site.
#[test]
fn an_expired_session_goes_back_to_sign_in_and_returns_to_the_site() {
    let Some((app, browser)) = app_and_browser(Backend::Sqlite, DESKTOP) else {
        return;
    };
    let admin = app.create_platform_admin("Ada Ops");
    let site = app.create_site("Tea Shop");
    browser.goto("/admin/");
    sign_in(&browser, &admin);
    browser.click("#site-list a.site-link");
    browser.wait_text("#site-title", "Tea Shop");

    // The server refuses the token (as after expiry): 401 on the next action.
    browser.js(&format!(
        "const s = JSON.parse(sessionStorage.getItem('{SESSION_KEY}'));
         s.token = 'twa_' + 'A'.repeat(49);
         sessionStorage.setItem('{SESSION_KEY}', JSON.stringify(s));"
    ));
    browser.click("#create-token");
    browser.type_into("#create-description", "Acme Partner");
    browser.click("#create-submit");
    browser.wait_visible("#sign-in-view");
    browser.wait_text("#messages", "Your session expired, please sign in again.");
    assert!(!browser.is_visible("#create-dialog"));
    assert_eq!(browser.admin_token(), None);
    assert!(browser.url().ends_with(&format!("#site={}", site.site_key)));

    sign_in(&browser, &admin);
    browser.wait_text("#site-title", "Tea Shop");
    browser.wait_text("#token-count", "0 tokens");

    // A stored token past its expiry is not even tried.
    browser.js(&format!(
        "const s = JSON.parse(sessionStorage.getItem('{SESSION_KEY}'));
         s.expiresAt = Date.now() - 1000;
         sessionStorage.setItem('{SESSION_KEY}', JSON.stringify(s));"
    ));
    browser.refresh();
    browser.wait_visible("#sign-in-view");
    browser.wait_text("#messages", "Your session expired, please sign in again.");
}

/// With 10,000 sites the picker shows the first 100 and the total, and search is answered by the
/// server while typing.
#[test]
fn the_site_picker_searches_ten_thousand_sites_on_the_server() {
    let Some((app, browser)) = app_and_browser(Backend::Sqlite, DESKTOP) else {
        return;
    };
    let admin = app.create_platform_admin("Ada Ops");
    app.db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
         INSERT INTO sites (site_key, name, auth_key_digest, enabled, created_at)
         SELECT printf('site_bulk%05d', i), printf('Bulk Store %05d', i), x'00', 1,
                CURRENT_TIMESTAMP
         FROM n",
    );
    browser.goto("/admin/");
    sign_in(&browser, &admin);
    browser.wait_text(
        "#sites-count",
        "Showing 100 of 10,000 sites. Search to narrow the list.",
    );
    let names = browser.texts("#site-list .site-name");
    assert_eq!(names.len(), 100);
    assert_eq!(names[0], "Bulk Store 00001");

    let typed = Instant::now();
    browser.type_into("#site-search", "store 0777");
    browser.wait_text("#sites-count", "10 sites");
    let names = browser.texts("#site-list .site-name");
    assert_eq!(names.len(), 10);
    assert!(
        names.iter().all(|name| name.starts_with("Bulk Store 0777")),
        "{names:?}"
    );
    browser.type_into("#site-search", "site_bulk09999");
    browser.wait_text("#sites-count", "1 site");
    assert_eq!(browser.texts("#site-list .site-name"), ["Bulk Store 09999"]);
    assert!(
        typed.elapsed() < Duration::from_secs(4),
        "two searches took {:?}",
        typed.elapsed()
    );
}

/// Writes the pictures of docs/admin.md into docs/images/ (desktop 1280x800, one phone-width).
#[test]
#[ignore = "writes docs/images/; run it on purpose (see the module docs)"]
fn screenshots_of_the_main_states() {
    let db = TestDatabase::create(Backend::Sqlite).unwrap();
    let app = TestApp::spawn_with(db, |config| {
        config.token_scopes = vec!["orders:read".into(), "orders:write".into()];
    });
    let Some(browser) = Browser::open(&app, DESKTOP) else {
        panic!("the screenshots need {CHROMIUM} and {CHROMEDRIVER}");
    };
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/images");
    std::fs::create_dir_all(&images).unwrap();
    let shoot = |browser: &Browser, name: &str| browser.screenshot(&images.join(name));

    let admin = app.create_platform_admin("Ada Ops");
    let token = app.admin_token(&admin);
    let tea = app.create_site("Tea Shop");
    for name in [
        "Book Nook",
        "Garden Supplies",
        "Coffee Roasters",
        "Bike Repair Co",
        "Harbour Fish Market",
    ] {
        let other = app.create_site(name);
        app.primary_token(&other);
    }
    app.primary_token(&tea);
    let in_days = |days: i64| {
        (tokenwarden::clock::now() + TimeDelta::days(days))
            .and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let tokens_path = format!("/admin/v1/sites/{}/tokens", tea.site_key);
    let orders_api = app.create_resource_server("Orders API");
    let mut values = Vec::new();
    for body in [
        json!({"description": "Acme fulfilment partner", "expires_at": in_days(180), "scope": "orders:read"}),
        json!({"description": "Shipping label printer", "scope": "orders:read orders:write",
               "audience": [orders_api.client_id]}),
        json!({"description": "Old analytics export"}),
    ] {
        let response = app.admin_post(&token, &tokens_path, Some(&body));
        assert_eq!(response.status(), 201);
        let created: Value = response.json().unwrap();
        values.push(created["value"].as_str().unwrap().to_string());
    }
    // "Last used" filled in for two of them.
    for value in &values[..2] {
        assert_eq!(app.introspect(&orders_api, value)["active"], true);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.admin_get_ok(&token, &tokens_path)["tokens"][2]["last_used_at"].is_null() {
        assert!(Instant::now() < deadline, "last_used_at was never written");
        std::thread::sleep(Duration::from_millis(50));
    }
    let tokens = app.admin_get_ok(&token, &tokens_path);
    let old_id = tokens["tokens"][3]["id"].as_i64().unwrap();
    let response = app.admin_post(&token, &format!("{tokens_path}/{old_id}/invalidate"), None);
    assert_eq!(response.status(), 200);

    browser.goto("/admin/");
    browser.wait_visible("#sign-in-view");
    browser.type_into("#client-id", &admin.client_id);
    shoot(&browser, "admin-sign-in.png");
    browser.type_into("#client-secret", &admin.client_secret);
    browser.click("#sign-in-button");
    browser.wait_text("#sites-count", "6 sites");
    browser.focus_nothing();
    shoot(&browser, "admin-sites.png");

    browser.click(&format!("#site-list a[data-site-key=\"{}\"]", tea.site_key));
    browser.wait_rows("four tokens", |rows| rows.len() == 4);
    browser.focus_nothing();
    shoot(&browser, "admin-tokens.png");

    browser.click("#create-token");
    browser.type_into("#create-description", "Marketplace sync, EU");
    browser.type_into("#create-scope", "orders:read");
    browser.type_into("#create-audience", &orders_api.client_id);
    shoot(&browser, "admin-create.png");
    browser.click("#create-submit");
    browser.wait_visible("#secret-dialog");
    browser.click("#secret-copy");
    browser.wait_text("#secret-copied", "Cop");
    shoot(&browser, "admin-new-token.png");
    browser.click("#secret-dialog [data-close]");
    let rows = browser.wait_rows("five tokens", |rows| rows.len() == 5);

    let acme = rows
        .iter()
        .find(|row| row.description == "Acme fulfilment partner")
        .unwrap()
        .id;
    browser.click(&action_button(acme, "regenerate"));
    browser.click("#action-submit");
    browser.wait_visible("#secret-dialog");
    browser.click("#secret-dialog [data-close]");
    browser.wait_hidden("#secret-dialog");
    browser.click(&action_button(acme, "history"));
    browser.wait_until("history rows", |browser| {
        (browser.texts("#history-body tr[data-event]").len() == 2).then_some(())
    });
    shoot(&browser, "admin-history.png");
    browser.press_escape();
    browser.wait_hidden("#history-dialog");

    let rows = browser.wait_rows("five tokens", |rows| rows.len() == 5);
    for row in rows.iter().filter(|row| !row.primary).take(2) {
        browser.click(&format!("#tokens-body input[data-select=\"{}\"]", row.id));
    }
    browser.wait_text("#bulk-count", "2 tokens selected");
    browser.focus_nothing();
    shoot(&browser, "admin-bulk.png");
    browser.click("#bulk-clear");
    browser.wait_hidden("#bulk-bar");
    browser.click("#site-history");
    browser.wait_until("site history rows", |browser| {
        (browser.texts("#history-body tr[data-event]").len() >= 6).then_some(())
    });
    shoot(&browser, "admin-site-history.png");
    browser.press_escape();
    browser.wait_hidden("#history-dialog");

    for n in 5..=9 {
        create_via_api(&app, &token, &tea, &format!("Partner feed {n}"));
    }
    browser.refresh();
    browser.wait_rows("ten tokens", |rows| rows.len() == 10);
    browser.wait_visible("#limit-reached");
    browser.focus_nothing();
    shoot(&browser, "admin-limit.png");

    browser.resize(PHONE);
    browser.refresh();
    browser.wait_rows("ten tokens on a phone", |rows| rows.len() == 10);
    browser.focus_nothing();
    shoot(&browser, "admin-phone.png");

    // The platform's sections.
    browser.resize(DESKTOP);
    browser.goto("/admin/#sites");
    browser.wait_text("#sites-count", "6 sites");
    browser.click("#create-site");
    browser.type_into("#site-name-name", "Lakeside Bakery");
    browser.click("#site-name-submit");
    browser.wait_visible("#secret-dialog");
    browser.wait_text("#sites-count", "7 sites");
    shoot(&browser, "admin-site-created.png");
    browser.click("#secret-dialog [data-close]");
    browser.wait_hidden("#secret-dialog");
    let rotate = format!(
        "#site-list button[data-key=\"{}\"][data-action=\"rotate\"]",
        tea.site_key
    );
    browser.click(&rotate);
    browser.wait_visible("#rotate-dialog");
    shoot(&browser, "admin-rotate.png");
    browser.click("#rotate-submit");
    browser.wait_text("#secret-note", "The old auth key keeps working until");
    shoot(&browser, "admin-rotated.png");
    browser.click("#secret-dialog [data-close]");
    browser.wait_hidden("#secret-dialog");

    app.create_limited_resource_server("Stock API", &[&tea]);
    app.create_resource_server("Analytics API");
    browser.click("#sections a[data-section=\"resource-servers\"]");
    browser.wait_text("#resource-servers-count", "3 resource servers");
    browser.focus_nothing();
    shoot(&browser, "admin-resource-servers.png");

    let garden = app.create_site("Garden Centre");
    let manager = app.create_site_manager("Tea Manager", &[&tea, &garden]);
    let leaver = app.create_site_manager("Former Partner Desk", &[&garden]);
    app.admin_cli(&["disable", &leaver.client_id]);
    browser.click("#sections a[data-section=\"admins\"]");
    browser.wait_text("#admins-count", "3 admins");
    browser.focus_nothing();
    shoot(&browser, "admin-admins.png");

    browser.click("#sign-out");
    sign_in(&browser, &manager);
    browser.wait_text("#sites-count", "2 sites");
    browser.focus_nothing();
    shoot(&browser, "admin-site-manager.png");
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A row of the tokens table, as the page shows it.
#[derive(Debug, Deserialize)]
struct Row {
    id: i64,
    description: String,
    primary: bool,
    masked: String,
    status: String,
    /// `data-action` of the row's buttons, in order.
    actions: Vec<String>,
    /// Each cell's visible text.
    cells: Vec<String>,
    /// The whole row's visible text.
    text: String,
}

fn masked(value: &str) -> String {
    format!("{}…{}", &value[..4], &value[value.len() - 4..])
}

fn action_button(token_id: i64, action: &str) -> String {
    format!("#tokens-body button[data-token-id=\"{token_id}\"][data-action=\"{action}\"]")
}

pub(crate) fn app_and_browser(backend: Backend, size: (u32, u32)) -> Option<(TestApp, Browser)> {
    let app = TestApp::spawn(backend)?;
    let browser = Browser::open(&app, size)?;
    Some((app, browser))
}

pub(crate) fn sign_in(browser: &Browser, admin: &AdminKeys) {
    browser.wait_visible("#sign-in-view");
    browser.type_into("#client-id", &admin.client_id);
    browser.type_into("#client-secret", &admin.client_secret);
    browser.click("#sign-in-button");
    browser.wait_hidden("#sign-in-view");
}

fn create_via_api(app: &TestApp, admin_token: &str, site: &SiteKeys, description: &str) {
    let response = app.admin_post(
        admin_token,
        &format!("/admin/v1/sites/{}/tokens", site.site_key),
        Some(&json!({ "description": description })),
    );
    assert_eq!(response.status(), 201, "create {description}");
}

fn token_count(app: &TestApp, admin_token: &str, site: &SiteKeys) -> usize {
    app.admin_get_ok(
        admin_token,
        &format!("/admin/v1/sites/{}/tokens", site.site_key),
    )["tokens"]
        .as_array()
        .unwrap()
        .len()
}

/// Is the browser there? Skips (None) outside CI; under `CI=true` a missing browser fails.
fn browser_installed() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|path| !Path::new(path).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but {missing:?} missing: run scripts/install-browser");
    }
    eprintln!("skipped: {missing:?} missing (scripts/install-browser installs them)");
    false
}

/// Headless Chromium in a fresh profile, driven through a chromedriver of its own on a free port.
/// Dropping it ends the WebDriver session (which quits Chromium) and kills that chromedriver.
pub(crate) struct Browser {
    client: Option<Client>,
    runtime: actix_web::rt::Runtime,
    driver: Child,
    base_url: String,
    _profile: TempDir,
}

impl Browser {
    pub(crate) fn open(app: &TestApp, (width, height): (u32, u32)) -> Option<Self> {
        if !browser_installed() {
            return None;
        }
        let profile = tempfile::tempdir().expect("a profile directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .env("TZ", BROWSER_TIME_ZONE)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut browser = Browser {
            client: None,
            runtime: actix_web::rt::Runtime::new().expect("a runtime"),
            driver,
            base_url: app.base_url.clone(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--lang=en-US",
            "--hide-scrollbars",
        ]
        .into_iter()
        .map(String::from)
        .chain([
            format!("--user-data-dir={}", browser._profile.path().display()),
            format!("--window-size={width},{height}"),
        ])
        .collect::<Vec<_>>();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = browser
            .runtime
            .block_on(
                ClientBuilder::new(connector)
                    .capabilities(capabilities)
                    .connect(&format!("http://127.0.0.1:{port}")),
            )
            .expect("a Chromium session");
        browser.client = Some(client);
        browser.resize((width, height));
        Some(browser)
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("an open session")
    }

    fn block<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Makes the viewport (not the window) `width` x `height`.
    pub(crate) fn resize(&self, (width, height): (u32, u32)) {
        let inner = self.js("return [window.innerWidth, window.innerHeight]");
        let (inner_w, inner_h) = (inner[0].as_u64().unwrap(), inner[1].as_u64().unwrap());
        let (outer_w, outer_h) = self.block(self.client().get_window_size()).unwrap();
        let width = u64::from(width) + outer_w.saturating_sub(inner_w);
        let height = u64::from(height) + outer_h.saturating_sub(inner_h);
        self.block(self.client().set_window_size(width as u32, height as u32))
            .expect("resize the window");
    }

    pub(crate) fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base_url);
        self.block(self.client().goto(&url))
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    pub(crate) fn refresh(&self) {
        self.block(self.client().refresh()).expect("reload");
    }

    pub(crate) fn url(&self) -> String {
        self.block(self.client().current_url())
            .expect("the URL")
            .to_string()
    }

    /// Runs `script` (a function body; `return` gives the result) in the page.
    pub(crate) fn js(&self, script: &str) -> Value {
        self.block(self.client().execute(script, Vec::new()))
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    pub(crate) fn page_text(&self) -> String {
        self.js("return document.body.innerText")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Polls `probe` until it gives `Some`, for up to `WAIT`; fails with the page's text.
    pub(crate) fn wait_until<T>(&self, what: &str, mut probe: impl FnMut(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(found) = probe(self) {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "waited {WAIT:?} for {what}; the page shows:\n{}",
                    self.page_text()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The first element matching `css` that is displayed.
    pub(crate) fn visible(&self, css: &str) -> Option<fantoccini::elements::Element> {
        self.block(async {
            for element in self.client().find_all(Locator::Css(css)).await.ok()? {
                if element.is_displayed().await.unwrap_or(false) {
                    return Some(element);
                }
            }
            None
        })
    }

    pub(crate) fn is_visible(&self, css: &str) -> bool {
        self.visible(css).is_some()
    }

    pub(crate) fn wait_visible(&self, css: &str) -> fantoccini::elements::Element {
        self.wait_until(&format!("{css} to show"), |browser| browser.visible(css))
    }

    pub(crate) fn wait_hidden(&self, css: &str) {
        self.wait_until(&format!("{css} to go away"), |browser| {
            (!browser.is_visible(css)).then_some(())
        });
    }

    /// Waits until a visible `css` element's text contains `expected`; returns the text.
    pub(crate) fn wait_text(&self, css: &str, expected: &str) -> String {
        self.wait_until(&format!("{css} to read {expected:?}"), |browser| {
            let element = browser.visible(css)?;
            let text = browser.block(element.text()).ok()?;
            text.contains(expected).then_some(text)
        })
    }

    /// The visible text of the first visible `css` element.
    pub(crate) fn text(&self, css: &str) -> String {
        let element = self.wait_visible(css);
        self.block(element.text()).expect("the element's text")
    }

    /// The visible texts of every `css` element, in document order.
    pub(crate) fn texts(&self, css: &str) -> Vec<String> {
        self.block(async {
            let mut texts = Vec::new();
            for element in self.client().find_all(Locator::Css(css)).await.unwrap() {
                if element.is_displayed().await.unwrap() {
                    texts.push(element.text().await.unwrap());
                }
            }
            texts
        })
    }

    /// Clicks the first visible, enabled `css` element, retrying while something covers it.
    pub(crate) fn click(&self, css: &str) {
        self.wait_until(&format!("{css} to be clicked"), |browser| {
            let element = browser.visible(css)?;
            if !browser.block(element.is_enabled()).unwrap_or(false) {
                return None;
            }
            browser.block(element.click()).ok()
        });
    }

    /// Replaces the text of the visible input `css` by `text`, as typed.
    pub(crate) fn type_into(&self, css: &str, text: &str) {
        let element = self.wait_visible(css);
        let handle = serde_json::to_value(&element).expect("an element reference");
        self.block(async {
            element.clear().await?;
            if !text.is_empty() {
                element.send_keys(text).await?;
            }
            // clear() alone does not fire `input`; the search box listens for it.
            self.client()
                .execute(
                    "arguments[0].dispatchEvent(new Event('input', {bubbles: true}))",
                    vec![handle],
                )
                .await
                .map(drop)
        })
        .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Sets an input's value directly (a datetime-local field's keyboard entry is locale-bound).
    pub(crate) fn set_value(&self, css: &str, value: &str) {
        let element = self.wait_visible(css);
        self.block(self.client().execute(
            "arguments[0].value = arguments[1];
             arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
            vec![serde_json::to_value(&element).unwrap(), json!(value)],
        ))
        .expect("set the value");
    }

    pub(crate) fn press_escape(&self) {
        self.block(async {
            let focused = self.client().active_element().await?;
            focused.send_keys("\u{e00c}").await
        })
        .expect("press Escape");
    }

    /// The focused element: its id, or the action and token (or other row key) of a table button.
    pub(crate) fn focused(&self) -> Value {
        self.js("const e = document.activeElement;
             if (!e) return null;
             if (e.dataset && e.dataset.action) {
                 const button = {action: e.dataset.action};
                 if (e.dataset.tokenId) button.token = e.dataset.tokenId;
                 if (e.dataset.key) button.key = e.dataset.key;
                 return button;
             }
             return e.id || e.tagName;")
    }

    /// For pictures: no focus ring, no hover highlight.
    pub(crate) fn focus_nothing(&self) {
        self.js("document.activeElement && document.activeElement.blur()");
        let park = MouseActions::new("mouse".into()).then(PointerAction::MoveTo {
            duration: None,
            x: 0.0,
            y: 0.0,
        });
        self.block(self.client().perform_actions(park))
            .expect("move the mouse away");
    }

    /// The admin token the page keeps in sessionStorage, if any.
    pub(crate) fn admin_token(&self) -> Option<String> {
        let stored = self.js(&format!("return sessionStorage.getItem('{SESSION_KEY}')"));
        let stored: Value = serde_json::from_str(stored.as_str()?).expect("stored JSON");
        stored["token"].as_str().map(str::to_string)
    }

    /// Does `secret` appear anywhere in the page: markup, text, input values or storage?
    pub(crate) fn page_holds(&self, secret: &str) -> bool {
        self.block(self.client().execute(
            "const s = arguments[0];
             return document.documentElement.outerHTML.includes(s)
                 || document.body.innerText.includes(s)
                 || [...document.querySelectorAll('input')].some(i => i.value.includes(s))
                 || JSON.stringify(Object.assign({}, sessionStorage, localStorage)).includes(s)",
            vec![json!(secret)],
        ))
        .expect("search the page")
            == json!(true)
    }

    /// The tokens table as shown.
    fn rows(&self) -> Vec<Row> {
        let rows = self.js(
            "return [...document.querySelectorAll('#tokens-body tr')].map(tr => ({
                id: Number(tr.dataset.tokenId),
                description: tr.querySelector('.description').textContent,
                primary: tr.querySelector('.badge.primary') !== null,
                masked: tr.querySelector('code.masked').textContent,
                status: tr.querySelector('[data-status]').textContent,
                actions: [...tr.querySelectorAll('button[data-action]')].map(b => b.dataset.action),
                cells: [...tr.cells].map(td => td.innerText.trim()),
                text: tr.innerText,
            }))",
        );
        serde_json::from_value(rows).expect("rows")
    }

    /// Waits until the visible tokens table satisfies `condition`.
    fn wait_rows(&self, what: &str, condition: impl Fn(&[Row]) -> bool) -> Vec<Row> {
        self.wait_until(what, |browser| {
            if !browser.is_visible("#tokens-table") {
                return None;
            }
            let rows = browser.rows();
            condition(&rows).then_some(rows)
        })
    }

    pub(crate) fn screenshot(&self, path: &Path) {
        let png = self
            .block(self.client().screenshot())
            .expect("a screenshot");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
