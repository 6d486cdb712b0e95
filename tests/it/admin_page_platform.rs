//! The admin web page's platform sections, in headless Chromium (`admin_page::Browser`): platform
//! admins create, rename, disable and enable sites and rotate their auth keys, create, inspect and
//! delete resource servers, and create, disable and change admins; site managers see their sites
//! and rotate their auth keys, and nothing of the platform. Every step is checked on the page and
//! against the server: `/oauth2/token` for site credentials, `/oauth2/introspect` for a resource
//! server's, the admin API for the rest.

use serde_json::json;
use tokenwarden::domain::token::{self, SecretKind};

use crate::admin_page::{app_and_browser, sign_in, Browser, DESKTOP};
use crate::helpers::{assert_oauth_error, Backend, SiteKeys, TestApp};

crate::on_both_backends!(
    a_platform_admin_creates_renames_disables_and_enables_a_site,
    rotating_an_auth_key_with_an_overlap_keeps_both_keys_working_until_it_ends,
    a_platform_admin_creates_inspects_and_deletes_a_resource_server,
    a_platform_admin_creates_disables_and_changes_admins,
    a_site_manager_sees_their_sites_rotates_their_auth_keys_and_no_platform_section,
);

/// A button of a row of one of the page's lists (`site-list`, `resource-server-list`,
/// `admin-list`), found by the row's key (site key or client id).
fn row_button(list: &str, key: &str, action: &str) -> String {
    format!("#{list} button[data-key=\"{key}\"][data-action=\"{action}\"]")
}

/// The `data-action` of a row's buttons, in order.
fn row_actions(browser: &Browser, list: &str, key: &str) -> Vec<String> {
    let actions = browser.js(&format!(
        "return [...document.querySelectorAll('#{list} tr[data-key=\"{key}\"] button[data-action]')]
            .map(b => b.dataset.action)"
    ));
    serde_json::from_value(actions).unwrap()
}

/// A row's visible text.
fn row_text(browser: &Browser, list: &str, key: &str) -> String {
    browser.text(&format!("#{list} tr[data-key=\"{key}\"]"))
}

fn wait_row_text(browser: &Browser, list: &str, key: &str, expected: &str) -> String {
    browser.wait_text(&format!("#{list} tr[data-key=\"{key}\"]"), expected)
}

/// Does the site get a token with these credentials? The status of `/oauth2/token`.
fn token_status(app: &TestApp, site_key: &str, auth_key: &str) -> u16 {
    app.post_form(
        "/oauth2/token",
        Some((site_key, auth_key)),
        "grant_type=client_credentials",
    )
    .status()
    .as_u16()
}

/// The one-time value the secret dialog shows, after checking the dialog around it: its title, the
/// warning, the Copy button (focused, and working), the value's label.
fn one_time_value(browser: &Browser, title: &str, label: &str, kind: SecretKind) -> String {
    browser.wait_visible("#secret-dialog");
    browser.wait_text("#secret-title", title);
    browser.wait_text("#secret-warning", "It will not be shown again");
    assert_eq!(browser.text("#secret-label"), label);
    assert_eq!(browser.text("#secret-copy"), "Copy");
    assert_eq!(browser.focused(), json!("secret-copy"));
    let value = browser.text("#secret-value");
    assert_eq!(token::recognise(&value), Ok(kind), "{value:?}");
    browser.click("#secret-copy");
    browser.wait_text("#secret-copied", "Cop");
    value
}

fn close_one_time_value(browser: &Browser, value: &str) {
    browser.click("#secret-dialog [data-close]");
    browser.wait_hidden("#secret-dialog");
    assert!(
        !browser.page_holds(value),
        "the value is gone once the dialog closes"
    );
}

fn header_names(browser: &Browser, name: &str, role: &str) {
    browser.wait_text("#account-name", name);
    assert_eq!(browser.text("#account-role"), role);
    assert_eq!(
        browser.text("#signed-in-as"),
        format!("Signed in as {name} {role}")
    );
}

fn a_platform_admin_creates_renames_disables_and_enables_a_site(app: TestApp) {
    let Some(browser) = Browser::open(&app, DESKTOP) else {
        return;
    };
    let admin = app.create_platform_admin("Ada Ops");
    let token = app.admin_token(&admin);
    app.create_site("Tea Shop");
    browser.goto("/admin/");
    sign_in(&browser, &admin);
    header_names(&browser, "Ada Ops", "Platform admin");
    assert_eq!(
        browser.texts("#sections a"),
        ["Sites", "Resource servers", "Admins"]
    );
    assert_eq!(
        browser.js("return document.querySelector('#sections [aria-current=page]').textContent"),
        "Sites"
    );
    browser.wait_text("#sites-count", "1 site");

    // Create: the name is required; then the auth key is shown once, with the site key beside it.
    browser.click("#create-site");
    browser.wait_visible("#site-name-dialog");
    assert_eq!(browser.focused(), json!("site-name-name"));
    browser.click("#site-name-submit");
    browser.wait_text("#site-name-name-error", "Enter a name.");
    browser.type_into("#site-name-name", "  Harbour Books  ");
    browser.click("#site-name-submit");
    let auth_key = one_time_value(
        &browser,
        "Site “Harbour Books” created",
        "Auth key",
        SecretKind::AuthKey,
    );
    let listed = app.admin_get_ok(&token, "/admin/v1/sites?q=Harbour");
    let site_key = listed["sites"][0]["site_key"].as_str().unwrap().to_string();
    browser.wait_text("#secret-note", &format!("Its site key is {site_key}"));
    assert_eq!(token_status(&app, &site_key, &auth_key), 200, "it works");
    browser.wait_text("#sites-count", "2 sites");
    close_one_time_value(&browser, &auth_key);
    assert_eq!(browser.focused(), json!("create-site"));
    let row = row_text(&browser, "site-list", &site_key);
    for shown in ["Harbour Books", site_key.as_str(), "Enabled"] {
        assert!(row.contains(shown), "{shown:?} in {row}");
    }
    assert_eq!(
        row_actions(&browser, "site-list", &site_key),
        ["rename", "disable", "rotate"]
    );
    let created = browser.js(&format!(
        "return document.querySelector('#site-list tr[data-key=\"{site_key}\"] time').dateTime"
    ));
    assert_eq!(
        created, listed["sites"][0]["created_at"],
        "the created column"
    );
    browser.refresh();
    wait_row_text(&browser, "site-list", &site_key, "Harbour Books");
    assert!(!browser.page_holds(&auth_key), "not after a reload either");

    // Rename.
    browser.click(&row_button("site-list", &site_key, "rename"));
    browser.wait_text("#site-name-title", "Rename “Harbour Books”");
    assert_eq!(
        browser.js("return document.getElementById('site-name-name').value"),
        "Harbour Books"
    );
    browser.type_into("#site-name-name", "Harbour Books and Maps");
    browser.click("#site-name-submit");
    wait_row_text(&browser, "site-list", &site_key, "Harbour Books and Maps");
    browser.wait_text("#messages", "Site renamed to “Harbour Books and Maps”.");
    assert_eq!(
        browser.focused(),
        json!({"action": "rename", "key": site_key})
    );
    let path = format!("/admin/v1/sites/{site_key}");
    assert_eq!(
        app.admin_get_ok(&token, &path)["name"],
        "Harbour Books and Maps"
    );

    // Disable: Cancel changes nothing; confirmed, the site's credentials stop working.
    let primary = app.primary_token(&SiteKeys {
        site_key: site_key.clone(),
        auth_key: auth_key.clone(),
    });
    browser.click(&row_button("site-list", &site_key, "disable"));
    browser.wait_text("#confirm-title", "Disable “Harbour Books and Maps”?");
    browser.wait_text("#confirm-explanation", "stops working at once");
    assert_eq!(
        browser.focused(),
        json!("confirm-cancel"),
        "Enter alone disables nothing"
    );
    browser.click("#confirm-cancel");
    browser.wait_hidden("#confirm-dialog");
    assert_eq!(
        browser.focused(),
        json!({"action": "disable", "key": site_key})
    );
    assert_eq!(app.admin_get_ok(&token, &path)["enabled"], true);
    browser.click(&row_button("site-list", &site_key, "disable"));
    browser.click("#confirm-submit");
    browser.wait_text("#messages", "disabled. It and its tokens no longer work.");
    wait_row_text(&browser, "site-list", &site_key, "Disabled");
    assert_eq!(
        row_actions(&browser, "site-list", &site_key),
        ["rename", "enable", "rotate"]
    );
    assert_eq!(
        browser.focused(),
        json!({"action": "enable", "key": site_key})
    );
    assert_eq!(token_status(&app, &site_key, &auth_key), 401);

    // Enable: the same primary token comes back.
    browser.click(&row_button("site-list", &site_key, "enable"));
    browser.wait_text("#confirm-title", "Enable “Harbour Books and Maps”?");
    browser.click("#confirm-submit");
    wait_row_text(&browser, "site-list", &site_key, "Enabled");
    browser.wait_text("#messages", "enabled. It works again.");
    assert_eq!(
        app.primary_token(&SiteKeys {
            site_key: site_key.clone(),
            auth_key
        }),
        primary
    );
}

fn rotating_an_auth_key_with_an_overlap_keeps_both_keys_working_until_it_ends(app: TestApp) {
    let Some(browser) = Browser::open(&app, DESKTOP) else {
        return;
    };
    let admin = app.create_platform_admin("Ada Ops");
    let token = app.admin_token(&admin);
    let site = app.create_site("Tea Shop");
    browser.goto("/admin/");
    sign_in(&browser, &admin);
    browser.wait_text("#sites-count", "1 site");

    browser.click(&row_button("site-list", &site.site_key, "rotate"));
    browser.wait_text("#rotate-title", "Rotate the auth key of “Tea Shop”?");
    let choices = browser.texts("#rotate-form fieldset label");
    assert_eq!(choices.len(), 4, "{choices:?}");
    for (choice, words) in choices
        .iter()
        .zip(["Not at all", "1 hour", "24 hours", "7 days"])
    {
        assert!(choice.starts_with(words), "{choice:?}");
    }
    browser.click("#rotate-form input[value=\"3600\"]");
    browser.click("#rotate-submit");
    let first = one_time_value(
        &browser,
        "New auth key for “Tea Shop”",
        "Auth key",
        SecretKind::AuthKey,
    );
    browser.wait_text("#secret-note", "The old auth key keeps working until");
    assert_eq!(token_status(&app, &site.site_key, &site.auth_key), 200);
    assert_eq!(token_status(&app, &site.site_key, &first), 200);
    let shown = app.admin_get_ok(&token, &format!("/admin/v1/sites/{}", site.site_key));
    let until = chrono::DateTime::parse_from_rfc3339(
        shown["previous_auth_key_valid_until"].as_str().unwrap(),
    )
    .unwrap();
    let hour_from_now = tokenwarden::clock::now().and_utc() + chrono::TimeDelta::hours(1);
    assert!(
        (until.with_timezone(&chrono::Utc) - hour_from_now)
            .num_seconds()
            .abs()
            < 60,
        "an hour's overlap: {shown}"
    );
    close_one_time_value(&browser, &first);
    assert_eq!(
        browser.focused(),
        json!({"action": "rotate", "key": site.site_key})
    );
    wait_row_text(
        &browser,
        "site-list",
        &site.site_key,
        "Old auth key works until",
    );

    // No overlap: only the newest key works, the overlap of the one before ends too.
    browser.click(&row_button("site-list", &site.site_key, "rotate"));
    browser.click("#rotate-form input[value=\"0\"]");
    browser.click("#rotate-submit");
    let second = one_time_value(
        &browser,
        "New auth key for “Tea Shop”",
        "Auth key",
        SecretKind::AuthKey,
    );
    browser.wait_text("#secret-note", "The old auth key no longer works");
    close_one_time_value(&browser, &second);
    assert_eq!(token_status(&app, &site.site_key, &second), 200);
    assert_eq!(token_status(&app, &site.site_key, &first), 401);
    assert_eq!(token_status(&app, &site.site_key, &site.auth_key), 401);
    browser.wait_until("the overlap note to go", |browser| {
        (!row_text(browser, "site-list", &site.site_key).contains("Old auth key")).then_some(())
    });
}

fn a_platform_admin_creates_inspects_and_deletes_a_resource_server(app: TestApp) {
    let Some(browser) = Browser::open(&app, DESKTOP) else {
        return;
    };
    let admin = app.create_platform_admin("Ada Ops");
    let token = app.admin_token(&admin);
    let tea = app.create_site("Tea Shop");
    let books = app.create_site("Book Nook");
    browser.goto("/admin/");
    sign_in(&browser, &admin);
    browser.click("#sections a[data-section=\"resource-servers\"]");
    browser.wait_text(
        "#resource-servers-count",
        "No resource server yet. Create one for each API that checks tokens.",
    );
    assert!(browser.url().ends_with("#resource-servers"));
    assert_eq!(
        browser.js("return document.querySelector('#sections [aria-current=page]').textContent"),
        "Resource servers"
    );

    // A site key that is no site is refused next to the field; nothing is created.
    browser.click("#create-resource-server");
    browser.wait_visible("#resource-server-dialog");
    assert_eq!(browser.focused(), json!("resource-server-name"));
    browser.type_into("#resource-server-name", "Orders API");
    browser.type_into("#resource-server-sites", "site_AAAAAAAAAAAAAAAAAAAA");
    browser.click("#resource-server-submit");
    browser.wait_text(
        "#resource-server-sites-error",
        "The site list names site_AAAAAAAAAAAAAAAAAAAA, which is no site.",
    );
    assert_eq!(browser.focused(), json!("resource-server-sites"));
    let none = app.admin_get_ok(&token, "/admin/v1/resource-servers");
    assert_eq!(none["resource_servers"], json!([]));

    browser.type_into("#resource-server-sites", &tea.site_key);
    browser.click("#resource-server-submit");
    let secret = one_time_value(
        &browser,
        "Resource server “Orders API” created",
        "Client secret",
        SecretKind::ResourceServerSecret,
    );
    let listed = app.admin_get_ok(&token, "/admin/v1/resource-servers");
    let client_id = listed["resource_servers"][0]["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    browser.wait_text("#secret-note", &format!("Its client ID is {client_id}"));
    let orders_api = crate::helpers::ResourceServerKeys {
        client_id: client_id.clone(),
        client_secret: secret.clone(),
    };
    let tea_token = app.primary_token(&tea);
    assert_eq!(app.introspect(&orders_api, &tea_token)["active"], true);
    assert_eq!(
        app.introspect(&orders_api, &app.primary_token(&books)),
        json!({"active": false}),
        "limited to Tea Shop"
    );
    close_one_time_value(&browser, &secret);
    assert_eq!(browser.focused(), json!("create-resource-server"));
    browser.wait_text("#resource-servers-count", "1 resource server");
    let row = wait_row_text(&browser, "resource-server-list", &client_id, "Orders API");
    assert!(row.contains("1 site"), "{row}");
    assert_eq!(
        row_actions(&browser, "resource-server-list", &client_id),
        ["sites", "rotate", "delete"]
    );

    // Rotate its secret with an hour's overlap: both secrets introspect until then.
    browser.click(&row_button("resource-server-list", &client_id, "rotate"));
    browser.wait_text("#rotate-title", "Rotate the client secret of “Orders API”?");
    browser.wait_text(
        "#rotate-legend",
        "How long may the current client secret keep working?",
    );
    browser.click("#rotate-form input[value=\"3600\"]");
    browser.click("#rotate-submit");
    let rotated = one_time_value(
        &browser,
        "New client secret for “Orders API”",
        "Client secret",
        SecretKind::ResourceServerSecret,
    );
    browser.wait_text("#secret-note", "The old client secret keeps working until");
    close_one_time_value(&browser, &rotated);
    assert_eq!(
        browser.focused(),
        json!({"action": "rotate", "key": client_id})
    );
    wait_row_text(
        &browser,
        "resource-server-list",
        &client_id,
        "Old secret works until",
    );
    let rotated_api = crate::helpers::ResourceServerKeys {
        client_id: client_id.clone(),
        client_secret: rotated.clone(),
    };
    assert_eq!(app.introspect(&rotated_api, &tea_token)["active"], true);
    assert_eq!(app.introspect(&orders_api, &tea_token)["active"], true);

    // Its site limit, as the server has it.
    browser.click(&row_button("resource-server-list", &client_id, "sites"));
    browser.wait_text(
        "#resource-server-sites-title",
        "Sites “Orders API” may check",
    );
    browser.wait_text(
        "#resource-server-sites-summary",
        "It may check the tokens of 1 site only:",
    );
    assert_eq!(
        browser.texts("#resource-server-site-keys li"),
        [tea.site_key.as_str()]
    );
    browser.press_escape();
    browser.wait_hidden("#resource-server-sites-dialog");
    assert_eq!(
        browser.focused(),
        json!({"action": "sites", "key": client_id})
    );

    // Delete, confirmed first: its credentials stop working.
    browser.click(&row_button("resource-server-list", &client_id, "delete"));
    browser.wait_text("#confirm-title", "Delete “Orders API”?");
    browser.click("#confirm-submit");
    browser.wait_text("#messages", "Resource server “Orders API” deleted.");
    browser.wait_text(
        "#resource-servers-count",
        "No resource server yet. Create one for each API that checks tokens.",
    );
    assert_eq!(browser.focused(), json!("create-resource-server"));
    for secret in [&secret, &rotated] {
        let refused = app.post_form(
            "/oauth2/introspect",
            Some((&client_id, secret)),
            &format!("token={tea_token}"),
        );
        assert_oauth_error(refused, 401, "invalid_client");
    }
}

fn a_platform_admin_creates_disables_and_changes_admins(app: TestApp) {
    let Some(browser) = Browser::open(&app, DESKTOP) else {
        return;
    };
    let admin = app.create_platform_admin("Ada Ops");
    let token = app.admin_token(&admin);
    let tea = app.create_site("Tea Shop");
    browser.goto("/admin/#admins");
    sign_in(&browser, &admin);
    browser.wait_text("#admins-count", "1 admin");
    let own = wait_row_text(&browser, "admin-list", &admin.client_id, "Ada Ops");
    for shown in ["you", "Platform admin", "Every site", "Enabled"] {
        assert!(own.contains(shown), "{shown:?} in {own}");
    }

    // Create a site manager: sites are required for one; an unknown key is the server's to refuse.
    browser.click("#create-admin");
    browser.wait_visible("#admin-dialog");
    assert_eq!(browser.focused(), json!("admin-name"));
    browser.type_into("#admin-name", "Bea Books");
    assert!(
        browser.is_visible("#admin-sites"),
        "site manager is the default"
    );
    browser.click("#admin-submit");
    browser.wait_text("#admin-sites-error", "Enter the site keys");
    browser.type_into("#admin-sites", "site_AAAAAAAAAAAAAAAAAAAA");
    browser.click("#admin-submit");
    browser.wait_text(
        "#admin-sites-error",
        "The site list names site_AAAAAAAAAAAAAAAAAAAA, which is no site.",
    );
    browser.type_into("#admin-sites", &tea.site_key);
    browser.click("#admin-submit");
    let secret = one_time_value(
        &browser,
        "Admin “Bea Books” created",
        "Client secret",
        SecretKind::AdminSecret,
    );
    let admins = app.admin_get_ok(&token, "/admin/v1/admins");
    let bea_id = admins["admins"][1]["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    browser.wait_text("#secret-note", &format!("Their client ID is {bea_id}"));
    close_one_time_value(&browser, &secret);
    let bea = crate::helpers::AdminKeys {
        client_id: bea_id.clone(),
        client_secret: secret,
        name: "Bea Books".into(),
    };
    let bea_token = app.admin_token(&bea);
    let session = app.admin_get_ok(&bea_token, "/admin/v1/sessions/current");
    assert_eq!(session["role"], "site-manager");
    assert_eq!(session["sites"], json!([tea.site_key]));
    browser.wait_text("#admins-count", "2 admins");
    let row = wait_row_text(&browser, "admin-list", &bea_id, "Bea Books");
    for shown in ["Site manager", tea.site_key.as_str(), "Enabled"] {
        assert!(row.contains(shown), "{shown:?} in {row}");
    }

    // Disable: Bea's session ends at once; enable again.
    browser.click(&row_button("admin-list", &bea_id, "disable"));
    browser.wait_text("#confirm-title", "Disable “Bea Books”?");
    browser.click("#confirm-submit");
    wait_row_text(&browser, "admin-list", &bea_id, "Disabled");
    browser.wait_text("#messages", "“Bea Books” disabled.");
    assert_eq!(
        browser.focused(),
        json!({"action": "enable", "key": bea_id})
    );
    assert_oauth_error(
        app.admin_get(&bea_token, "/admin/v1/sites"),
        401,
        "invalid_token",
    );
    assert_eq!(app.admin_token_request(&bea).status(), 401);
    browser.click(&row_button("admin-list", &bea_id, "enable"));
    browser.click("#confirm-submit");
    wait_row_text(&browser, "admin-list", &bea_id, "Enabled");
    assert_eq!(app.admin_token_request(&bea).status(), 200);

    // Rotate Bea's secret without an overlap: only the new one signs in.
    browser.click(&row_button("admin-list", &bea_id, "rotate"));
    browser.wait_text("#rotate-title", "Rotate the client secret of “Bea Books”?");
    browser.click("#rotate-form input[value=\"0\"]");
    browser.click("#rotate-submit");
    let renewed = one_time_value(
        &browser,
        "New client secret for “Bea Books”",
        "Client secret",
        SecretKind::AdminSecret,
    );
    browser.wait_text("#secret-note", "The old client secret no longer works");
    close_one_time_value(&browser, &renewed);
    assert_eq!(app.admin_token_request(&bea).status(), 401);
    let bea = crate::helpers::AdminKeys {
        client_secret: renewed,
        ..bea
    };
    assert_eq!(app.admin_token_request(&bea).status(), 200);

    // Change access: a platform admin manages every site.
    browser.click(&row_button("admin-list", &bea_id, "access"));
    browser.wait_text("#admin-title", "Change the access of “Bea Books”");
    assert!(!browser.is_visible("#admin-name"), "no name to change");
    assert_eq!(
        browser.js("return document.getElementById('admin-sites').value"),
        tea.site_key
    );
    browser.click("#admin-role input[value=\"platform-admin\"]");
    browser.wait_hidden("#admin-sites");
    browser.click("#admin-submit");
    let row = wait_row_text(&browser, "admin-list", &bea_id, "Platform admin");
    assert!(row.contains("Every site"), "{row}");
    assert_eq!(
        app.admin_get_ok(&token, &format!("/admin/v1/admins/{bea_id}"))["role"],
        "platform-admin"
    );

    // An admin cannot disable or demote itself: the server's 409 is said plainly.
    let own_access = "You cannot disable yourself or give up being a platform admin. Ask another \
                      platform admin to do it.";
    browser.click(&row_button("admin-list", &admin.client_id, "disable"));
    browser.wait_text("#confirm-title", "Disable “Ada Ops”?");
    browser.click("#confirm-submit");
    browser.wait_text("#confirm-error", own_access);
    assert!(
        browser.is_visible("#confirm-dialog"),
        "the dialog stays open"
    );
    browser.press_escape();
    browser.wait_hidden("#confirm-dialog");
    browser.click(&row_button("admin-list", &admin.client_id, "access"));
    browser.click("#admin-role input[value=\"site-manager\"]");
    browser.type_into("#admin-sites", &tea.site_key);
    browser.click("#admin-submit");
    browser.wait_text("#admin-error", own_access);
    browser.press_escape();
    let own = app.admin_get_ok(&token, &format!("/admin/v1/admins/{}", admin.client_id));
    assert_eq!(
        (own["enabled"].clone(), own["role"].clone()),
        (json!(true), json!("platform-admin"))
    );
    assert!(row_text(&browser, "admin-list", &admin.client_id).contains("Enabled"));
}

fn a_site_manager_sees_their_sites_rotates_their_auth_keys_and_no_platform_section(app: TestApp) {
    let Some(browser) = Browser::open(&app, DESKTOP) else {
        return;
    };
    let tea = app.create_site("Tea Shop");
    let garden = app.create_site("Garden Supplies");
    app.create_site("Book Nook");
    let manager = app.create_site_manager("Tea Manager", &[&tea, &garden]);
    browser.goto("/admin/");
    sign_in(&browser, &manager);
    header_names(&browser, "Tea Manager", "Site manager");
    browser.wait_text("#sites-count", "2 sites");
    assert!(!browser.is_visible("#sections"), "no platform sections");
    assert!(!browser.is_visible("#create-site"));
    for site in [&tea, &garden] {
        assert!(row_text(&browser, "site-list", &site.site_key).contains(&site.site_key));
        assert_eq!(
            row_actions(&browser, "site-list", &site.site_key),
            ["rotate"]
        );
    }

    // The platform's addresses show the sites instead, and ask the server nothing about them.
    browser.js(
        "window.asked = [];
         const fetched = window.fetch;
         window.fetch = (url, options) => { window.asked.push(String(url)); return fetched(url, options); };",
    );
    for address in ["#admins", "#resource-servers"] {
        browser.goto(&format!("/admin/{address}"));
        browser.wait_text("#sites-count", "2 sites");
        assert!(!browser.is_visible("#admins-view"));
        assert!(!browser.is_visible("#resource-servers-view"));
        assert!(!browser.url().contains('#'), "{}", browser.url());
    }
    let asked = browser.js("return window.asked || []");
    assert!(
        !asked.to_string().contains("admins") && !asked.to_string().contains("resource-servers"),
        "{asked}"
    );

    // Rotation with the preselected overlap (24 hours): both keys work meanwhile.
    browser.click(&row_button("site-list", &tea.site_key, "rotate"));
    browser.wait_visible("#rotate-dialog");
    assert_eq!(
        browser.js("return document.querySelector('#rotate-form input:checked').value"),
        "86400"
    );
    browser.click("#rotate-submit");
    let rotated = one_time_value(
        &browser,
        "New auth key for “Tea Shop”",
        "Auth key",
        SecretKind::AuthKey,
    );
    browser.wait_text("#secret-note", "The old auth key keeps working until");
    close_one_time_value(&browser, &rotated);
    assert_eq!(token_status(&app, &tea.site_key, &tea.auth_key), 200);
    assert_eq!(token_status(&app, &tea.site_key, &rotated), 200);
    wait_row_text(
        &browser,
        "site-list",
        &tea.site_key,
        "Old auth key works until",
    );
}

/// A platform admin made a site manager while signed in: the next platform action is refused, and
/// the page follows the new role instead of signing out.
#[test]
fn an_admin_demoted_meanwhile_loses_the_platform_sections() {
    let Some((app, browser)) = app_and_browser(Backend::Sqlite, DESKTOP) else {
        return;
    };
    let admin = app.create_platform_admin("Ada Ops");
    let colleague = app.create_platform_admin("Bea Ops");
    let tea = app.create_site("Tea Shop");
    browser.goto("/admin/#admins");
    sign_in(&browser, &admin);
    browser.wait_text("#admins-count", "2 admins");

    let demoted = app.admin_patch(
        &app.admin_token(&colleague),
        &format!("/admin/v1/admins/{}", admin.client_id),
        &json!({ "role": "site-manager", "sites": [tea.site_key] }),
    );
    assert_eq!(demoted.status(), 200);
    browser.click("#create-admin");
    browser.type_into("#admin-name", "Cleo Ops");
    browser.click("#admin-role input[value=\"platform-admin\"]");
    browser.click("#admin-submit");
    browser.wait_text(
        "#messages",
        "Only platform admins may do this, and you are no longer one.",
    );
    header_names(&browser, "Ada Ops", "Site manager");
    browser.wait_text("#sites-count", "1 site");
    assert!(!browser.is_visible("#sections"));
    assert!(!browser.is_visible("#admin-dialog"));
    assert!(browser.admin_token().is_some(), "still signed in");
    assert_eq!(
        app.admin_get_ok(&app.admin_token(&colleague), "/admin/v1/admins")["admins"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "nobody was created"
    );
}

/// The list is ready for a server that pages with a cursor and estimates large totals: an answer
/// with `next` offers more sites, fetched with `cursor=`; `total_exact: false` reads "more than
/// 10,000"; a refused search is shown at the search box. (The answers are stubbed in the page.)
#[test]
fn the_sites_list_follows_the_cursor_and_says_when_the_total_is_estimated() {
    let Some((app, browser)) = app_and_browser(Backend::Sqlite, DESKTOP) else {
        return;
    };
    let admin = app.create_platform_admin("Ada Ops");
    app.create_site("Tea Shop");
    browser.goto("/admin/");
    sign_in(&browser, &admin);
    browser.wait_text("#sites-count", "1 site");
    assert!(!browser.is_visible("#more-sites"), "no next, no more");

    browser.js("window.asked = [];
         const json = (status, body) => new Response(JSON.stringify(body),
             { status, headers: { 'Content-Type': 'application/json' } });
         const page = (from, next) => json(200, {
             sites: Array.from({ length: 100 }, (_, i) => ({
                 site_key: 'site_stub' + String(from + i).padStart(15, '0'),
                 name: 'Stub Store ' + String(from + i).padStart(6, '0'),
                 enabled: true, created_at: '2026-12-01T10:00:00Z', token_count: 0,
                 previous_auth_key_valid_until: null })),
             total: 987654, total_exact: false, next });
         const fetched = window.fetch;
         window.fetch = (url, options) => {
             const address = new URL(url);
             if (!address.pathname.endsWith('/v1/sites')) return fetched(url, options);
             window.asked.push(address.search);
             const q = address.searchParams.get('q') || '';
             if (q.length > 100) return Promise.resolve(json(422, { error: 'validation_failed',
                 error_description: 'q must be 1 to 100 characters', field: 'q' }));
             const cursor = address.searchParams.get('cursor');
             return Promise.resolve(cursor === 'page+2/x' ? page(100, null) : page(0, 'page+2/x'));
         };");
    browser.type_into("#site-search", "store");
    browser.wait_text(
        "#sites-count",
        "Showing 100 of more than 10,000 sites. Search to narrow the list.",
    );
    browser.click("#more-sites");
    browser.wait_text(
        "#sites-count",
        "Showing 200 of more than 10,000 sites. Search to narrow the list.",
    );
    assert!(!browser.is_visible("#more-sites"), "the last page");
    let names = browser.texts("#site-list .site-name");
    assert_eq!(names.len(), 200);
    assert_eq!(
        (names[0].as_str(), names[199].as_str()),
        ("Stub Store 000000", "Stub Store 000199")
    );
    assert_eq!(
        browser.js("return document.activeElement.textContent"),
        "Stub Store 000100",
        "focus on the first site loaded"
    );
    let asked: Vec<String> = serde_json::from_value(browser.js("return window.asked")).unwrap();
    assert_eq!(
        asked[asked.len() - 2..],
        [
            "?limit=100&q=store",
            "?limit=100&q=store&cursor=page%2B2%2Fx"
        ],
        "the cursor goes back as given, with the search"
    );

    let long = "x".repeat(101);
    browser.type_into("#site-search", &long);
    browser.wait_text(
        "#site-search-error",
        "The search must be 1 to 100 characters.",
    );
    assert_eq!(
        browser.js("return document.getElementById('sites-count').textContent"),
        ""
    );
    assert!(browser.texts("#site-list .site-name").is_empty());
    assert!(!browser.is_visible("#more-sites"));
}
