//! Site listing at scale, over real HTTP on both backends: `q` (3 or more characters anywhere in
//! the name or key, 1 or 2 at their start), the `cursor` that pages on from `next`, `offset` within
//! the first 10,000 sites, and `total`, estimated (`total_exact: false`) beyond 10,000 matches.
//! The listings past 10,000 are seeded with SQL straight into the test database.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::helpers::{assert_admin_error, Backend, SiteKeys, TestApp};

crate::on_both_backends!(
    fragments_match_anywhere_in_the_name_or_key_whatever_the_case,
    one_or_two_characters_match_only_the_start_of_the_name_or_key,
    renamed_sites_are_found_by_their_new_name_only,
    the_enabled_filter_combines_with_the_search,
    site_managers_search_only_their_own_sites,
    the_cursor_pages_through_every_match_once_in_listing_order,
    sites_created_or_renamed_between_pages_leave_the_others_seen_once,
    offset_pages_reach_ten_thousand_and_hand_over_to_the_cursor,
    bad_search_cursor_and_offset_are_422_naming_the_field,
    beyond_ten_thousand_matches_the_total_is_an_estimate,
);

/// Query parameters of a `GET`.
type Query<'a> = &'a [(&'a str, &'a str)];

/// One page of `GET /admin/v1/sites`.
#[derive(Debug)]
struct Listed {
    names: Vec<String>,
    keys: Vec<String>,
    total: i64,
    total_exact: bool,
    next: Option<String>,
}

/// `GET /admin/v1/sites?QUERY` as `token`, which must answer 200.
fn list(app: &TestApp, token: &str, query: Query) -> Listed {
    let response = app
        .client
        .get(app.url("/admin/v1/sites"))
        .query(query)
        .bearer_auth(token)
        .send()
        .unwrap();
    let status = response.status();
    let text = response.text().unwrap();
    assert_eq!(status, 200, "GET /admin/v1/sites {query:?}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let sites = body["sites"].as_array().unwrap();
    let text_of = |site: &Value, field: &str| site[field].as_str().unwrap().to_string();
    Listed {
        names: sites.iter().map(|site| text_of(site, "name")).collect(),
        keys: sites.iter().map(|site| text_of(site, "site_key")).collect(),
        total: body["total"].as_i64().unwrap(),
        total_exact: body["total_exact"].as_bool().unwrap(),
        next: match &body["next"] {
            Value::Null => None,
            next => Some(next.as_str().unwrap().to_string()),
        },
    }
}

/// Every page of a listing, following `next` with `limit` sites per page.
fn all_pages(app: &TestApp, token: &str, query: Query, limit: usize) -> Vec<Listed> {
    let limit = limit.to_string();
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut paged: Vec<(&str, &str)> = query.to_vec();
        paged.push(("limit", &limit));
        if let Some(cursor) = &cursor {
            paged.push(("cursor", cursor));
        }
        let page = list(app, token, &paged);
        cursor = page.next.clone();
        pages.push(page);
        if cursor.is_none() {
            return pages;
        }
        assert!(pages.len() < 1000, "{query:?}: no end of pages");
    }
}

/// The names of an exact listing, checking that its total counts them.
fn names(app: &TestApp, token: &str, query: Query) -> Vec<String> {
    let listed = list(app, token, query);
    assert!(listed.total_exact, "{query:?}: {listed:?}");
    assert_eq!(listed.total, listed.names.len() as i64, "{query:?}");
    assert_eq!(listed.next, None, "{query:?}");
    listed.names
}

fn platform_token(app: &TestApp) -> String {
    let admin = app.create_platform_admin("Site Lister");
    app.admin_token(&admin)
}

fn fragments_match_anywhere_in_the_name_or_key_whatever_the_case(app: TestApp) {
    let nordic = app.create_site("Nordic Coffee Roasters");
    app.create_site("Coffee Corner");
    app.create_site("Alpine Tea House");
    app.create_site("Café Été");
    let token = platform_token(&app);
    let both = ["Coffee Corner", "Nordic Coffee Roasters"];
    for q in ["coffee", "COFFEE", "cOfFeE", "ffe", "  coffee  "] {
        assert_eq!(names(&app, &token, &[("q", q)]), both, "q={q:?}");
    }
    // Spaces are part of the text; words need not be whole.
    assert_eq!(
        names(&app, &token, &[("q", "fee r")]),
        ["Nordic Coffee Roasters"]
    );
    assert_eq!(
        names(&app, &token, &[("q", "ea hou")]),
        ["Alpine Tea House"]
    );
    // Letters beyond ASCII fold too.
    assert_eq!(names(&app, &token, &[("q", "ÉTÉ")]), ["Café Été"]);
    assert_eq!(names(&app, &token, &[("q", "fé é")]), ["Café Été"]);
    assert!(names(&app, &token, &[("q", "tea coffee")]).is_empty());
    // Six characters from the middle of a site key, in either case: that site only.
    let middle = &nordic.site_key[10..16];
    for q in [
        middle.to_string(),
        middle.to_uppercase(),
        middle.to_lowercase(),
    ] {
        assert_eq!(
            names(&app, &token, &[("q", &q)]),
            ["Nordic Coffee Roasters"],
            "q={q:?}"
        );
    }
    // Every key holds `site_`: three characters of it match every site.
    assert_eq!(names(&app, &token, &[("q", "ite")]).len(), 4);
}

fn one_or_two_characters_match_only_the_start_of_the_name_or_key(app: TestApp) {
    for name in [
        "Alpha Shop",
        "alpine Gear",
        "Beta Alps",
        "Metal Works",
        "Ångström Labs",
        "ål Bakery",
        "42 Street Food",
    ] {
        app.create_site(name);
    }
    let token = platform_token(&app);
    for q in ["al", "AL", "aL", "a", "A"] {
        assert_eq!(
            names(&app, &token, &[("q", q)]),
            ["Alpha Shop", "alpine Gear"],
            "q={q:?}: the start of the name only, never the middle (Beta Alps, Metal Works)"
        );
    }
    for q in ["å", "Å"] {
        assert_eq!(
            names(&app, &token, &[("q", q)]),
            ["Ångström Labs", "ål Bakery"],
            "q={q:?}"
        );
    }
    for q in ["ål", "ÅL", "Ål"] {
        assert_eq!(names(&app, &token, &[("q", q)]), ["ål Bakery"], "q={q:?}");
    }
    assert_eq!(names(&app, &token, &[("q", "4")]), ["42 Street Food"]);
    assert_eq!(names(&app, &token, &[("q", "42")]), ["42 Street Food"]);
    // In the middle of every key and of names: no match at 1 or 2 characters.
    for q in ["it", "te", "ps", "2"] {
        assert!(names(&app, &token, &[("q", q)]).is_empty(), "q={q:?}");
    }
    // Every site key starts with `site_`, so its first one or two letters match every site.
    for q in ["s", "S", "si", "SI"] {
        assert_eq!(names(&app, &token, &[("q", q)]).len(), 7, "q={q:?}");
    }
}

fn renamed_sites_are_found_by_their_new_name_only(app: TestApp) {
    let site = app.create_site("Old Harbour Books");
    app.create_site("Other Shop");
    let token = platform_token(&app);
    assert_eq!(
        names(&app, &token, &[("q", "harbour")]),
        ["Old Harbour Books"]
    );
    let renamed = app.admin_patch(
        &token,
        &format!("/admin/v1/sites/{}", site.site_key),
        &json!({ "name": "New Lighthouse Books" }),
    );
    assert_eq!(renamed.status(), 200);
    assert!(names(&app, &token, &[("q", "harbour")]).is_empty());
    assert!(names(&app, &token, &[("q", "ol")]).is_empty());
    assert_eq!(
        names(&app, &token, &[("q", "lighthouse")]),
        ["New Lighthouse Books"]
    );
    assert_eq!(
        names(&app, &token, &[("q", "ne")]),
        ["New Lighthouse Books"]
    );
    // The key did not change, and still finds it.
    assert_eq!(
        names(&app, &token, &[("q", &site.site_key)]),
        ["New Lighthouse Books"]
    );
    // Disabling (an update that leaves the text alone) keeps it findable.
    app.set_site_enabled(&site, false);
    assert_eq!(
        names(&app, &token, &[("q", "lighthouse")]),
        ["New Lighthouse Books"]
    );
}

fn the_enabled_filter_combines_with_the_search(app: TestApp) {
    app.create_site("Coffee Open");
    let closed_coffee = app.create_site("Coffee Closed");
    app.create_site("Tea Open");
    let closed_tea = app.create_site("Tea Closed");
    app.create_site("Coral Reef Coffee");
    for site in [&closed_coffee, &closed_tea] {
        app.set_site_enabled(site, false);
    }
    let token = platform_token(&app);
    let cases: [(&str, &str, &[&str]); 6] = [
        ("coffee", "true", &["Coffee Open", "Coral Reef Coffee"]),
        ("coffee", "false", &["Coffee Closed"]),
        ("co", "true", &["Coffee Open", "Coral Reef Coffee"]),
        ("co", "false", &["Coffee Closed"]),
        ("closed", "true", &[]),
        ("s", "false", &["Coffee Closed", "Tea Closed"]),
    ];
    for (q, enabled, expected) in cases {
        assert_eq!(
            names(&app, &token, &[("q", q), ("enabled", enabled)]),
            expected,
            "q={q} enabled={enabled}"
        );
    }
    // Paged one site at a time, the filter and the search hold on every page.
    let pages = all_pages(&app, &token, &[("q", "coffee"), ("enabled", "true")], 1);
    let paged: Vec<&str> = pages
        .iter()
        .flat_map(|page| page.names.iter().map(String::as_str))
        .collect();
    assert_eq!(paged, ["Coffee Open", "Coral Reef Coffee"]);
    assert!(pages.iter().all(|page| page.total == 2 && page.total_exact));
}

fn site_managers_search_only_their_own_sites(app: TestApp) {
    let mine_coffee = app.create_site("Coffee Mine");
    let mine_beans = app.create_site("Beans Mine");
    let mine_closed = app.create_site("Coffee Mine Closed");
    app.create_site("Coffee Theirs");
    let theirs_beans = app.create_site("Beans Theirs");
    app.set_site_enabled(&mine_closed, false);
    let manager =
        app.create_site_manager("Coffee Manager", &[&mine_coffee, &mine_beans, &mine_closed]);
    let token = app.admin_token(&manager);
    let cases: [(Query, &[&str]); 7] = [
        (&[], &["Beans Mine", "Coffee Mine", "Coffee Mine Closed"]),
        (&[("q", "coffee")], &["Coffee Mine", "Coffee Mine Closed"]),
        (&[("q", "co")], &["Coffee Mine", "Coffee Mine Closed"]),
        (&[("q", "theirs")], &[]),
        (&[("q", "be")], &["Beans Mine"]),
        (&[("q", "coffee"), ("enabled", "true")], &["Coffee Mine"]),
        (
            &[("q", "si"), ("enabled", "false")],
            &["Coffee Mine Closed"],
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(names(&app, &token, query), expected, "{query:?}");
    }
    // Another site's key finds nothing.
    assert!(names(&app, &token, &[("q", &theirs_beans.site_key)]).is_empty());
    let pages = all_pages(&app, &token, &[("q", "mine")], 1);
    assert_eq!(pages.len(), 3);
    let paged: Vec<&str> = pages
        .iter()
        .flat_map(|page| page.names.iter().map(String::as_str))
        .collect();
    assert_eq!(paged, ["Beans Mine", "Coffee Mine", "Coffee Mine Closed"]);
}

/// Sites listed by name, then site key, byte by byte: upper case before lower case, and sites of
/// one name in site key order.
fn listing_order(sites: &[(String, String)]) -> Vec<(String, String)> {
    let mut sorted = sites.to_vec();
    sorted.sort();
    sorted
}

fn the_cursor_pages_through_every_match_once_in_listing_order(app: TestApp) {
    let mut created = Vec::new();
    for (index, name) in [
        "delta Shop",
        "Delta Shop",
        "Alpha Shop",
        "Echo Shop",
        "Bravo Shop",
        "Charlie Shop",
        "Same Name",
        "Same Name",
        "Same Name",
        "Zulu Coffee",
        "alpha Coffee",
        "Kilo Coffee",
        "Ärger Coffee",
        "Lima",
        "Mike Coffee",
        "November Coffee",
        "Oscar Shop",
    ]
    .into_iter()
    .enumerate()
    {
        let site = app.create_site(name);
        created.push((name.to_string(), site.site_key, index));
    }
    let token = platform_token(&app);
    let placed: Vec<(String, String)> = created
        .iter()
        .map(|(name, key, _)| (name.clone(), key.clone()))
        .collect();
    let expected = listing_order(&placed);
    for limit in [1, 2, 3, 5, 16, 17, 100] {
        let pages = all_pages(&app, &token, &[], limit);
        let seen: Vec<(String, String)> = pages
            .iter()
            .flat_map(|page| page.names.iter().cloned().zip(page.keys.iter().cloned()))
            .collect();
        assert_eq!(seen, expected, "limit={limit}");
        assert_eq!(pages.len(), expected.len().div_ceil(limit), "limit={limit}");
        assert!(pages
            .iter()
            .all(|page| page.total == 17 && page.total_exact));
        assert!(pages[..pages.len() - 1]
            .iter()
            .all(|page| page.names.len() == limit));
    }
    // The same for a search of each kind.
    let coffee = listing_order(
        &placed
            .iter()
            .filter(|(name, _)| name.to_lowercase().contains("coffee"))
            .cloned()
            .collect::<Vec<_>>(),
    );
    assert_eq!(coffee.len(), 6);
    let starting_sa = listing_order(
        &placed
            .iter()
            .filter(|(name, _)| name.starts_with("Sa"))
            .cloned()
            .collect::<Vec<_>>(),
    );
    for (q, expected) in [("coffee", &coffee), ("sa", &starting_sa)] {
        for limit in [1, 2, 3] {
            let pages = all_pages(&app, &token, &[("q", q)], limit);
            let seen: Vec<(String, String)> = pages
                .iter()
                .flat_map(|page| page.names.iter().cloned().zip(page.keys.iter().cloned()))
                .collect();
            assert_eq!(&seen, expected, "q={q} limit={limit}");
        }
    }
}

fn sites_created_or_renamed_between_pages_leave_the_others_seen_once(app: TestApp) {
    let mut sites: Vec<(String, SiteKeys)> = Vec::new();
    for letter in ["B", "C", "D", "E", "F", "G", "H", "I", "J", "K"] {
        let name = format!("{letter} Store");
        sites.push((name.clone(), app.create_site(&name)));
    }
    let token = platform_token(&app);
    let first = list(&app, &token, &[("limit", "3")]);
    assert_eq!(first.names, ["B Store", "C Store", "D Store"]);
    // Between pages: one site before the cursor (not listed on later pages), one after it (listed
    // in its place), and a site not yet seen renamed to sort at the end.
    app.create_site("A Store");
    app.create_site("Ee Store");
    let renamed = &sites[4].1;
    let response = app.admin_patch(
        &token,
        &format!("/admin/v1/sites/{}", renamed.site_key),
        &json!({ "name": "Z Store" }),
    );
    assert_eq!(response.status(), 200);
    let mut seen = first.keys.clone();
    let mut seen_names = first.names.clone();
    let mut cursor = first.next.clone();
    while let Some(next) = cursor {
        let page = list(&app, &token, &[("limit", "3"), ("cursor", &next)]);
        seen.extend(page.keys.iter().cloned());
        seen_names.extend(page.names.iter().cloned());
        cursor = page.next;
    }
    assert_eq!(
        seen_names,
        [
            "B Store", "C Store", "D Store", "E Store", "Ee Store", "G Store", "H Store",
            "I Store", "J Store", "K Store", "Z Store"
        ]
    );
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(
        distinct.len(),
        seen.len(),
        "a site listed twice: {seen_names:?}"
    );
    for (name, site) in &sites {
        assert!(seen.contains(&site.site_key), "{name} not listed");
    }
}

fn offset_pages_reach_ten_thousand_and_hand_over_to_the_cursor(app: TestApp) {
    for letter in ["A", "B", "C", "D", "E"] {
        app.create_site(&format!("Offset {letter}"));
    }
    let token = platform_token(&app);
    let second = list(&app, &token, &[("limit", "2"), ("offset", "2")]);
    assert_eq!(second.names, ["Offset C", "Offset D"]);
    // Its next continues after it.
    let third = list(
        &app,
        &token,
        &[("limit", "2"), ("cursor", second.next.as_deref().unwrap())],
    );
    assert_eq!(third.names, ["Offset E"]);
    assert_eq!(third.next, None);
    let last = list(&app, &token, &[("limit", "2"), ("offset", "4")]);
    assert_eq!((last.names.len(), last.next), (1, None));
    for (offset, limit) in [("9900", "100"), ("9000", "1000"), ("9999", "1")] {
        let beyond = list(&app, &token, &[("offset", offset), ("limit", limit)]);
        assert!(beyond.names.is_empty() && beyond.next.is_none());
        assert_eq!(beyond.total, 5);
    }
}

fn bad_search_cursor_and_offset_are_422_naming_the_field(app: TestApp) {
    for letter in ["A", "B", "C"] {
        app.create_site(&format!("Refusal {letter}"));
    }
    let token = platform_token(&app);
    let next = list(&app, &token, &[("limit", "1")]).next.unwrap();
    let next_of_search = list(&app, &token, &[("q", "refusal"), ("limit", "1")])
        .next
        .unwrap();
    // A cursor with one character changed, wherever: its tag no longer holds.
    let tampered: Vec<String> = [0, next.len() / 2, next.len() - 1]
        .into_iter()
        .map(|at| {
            let mut bytes = next.clone().into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            String::from_utf8(bytes).unwrap()
        })
        .collect();
    let long_q = "x".repeat(101);
    let long_cursor = "A".repeat(2000);
    let mut cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("q", &long_q)], "q"),
        (vec![("q", "caf\u{7}e")], "q"),
        (vec![("q", "a\tb")], "q"),
        (vec![("cursor", "not a cursor")], "cursor"),
        (vec![("cursor", "AAAA")], "cursor"),
        (vec![("cursor", &long_cursor)], "cursor"),
        // A cursor continues only the listing it came from.
        (vec![("cursor", &next), ("q", "refusal")], "cursor"),
        (vec![("cursor", &next), ("enabled", "true")], "cursor"),
        (vec![("cursor", &next_of_search)], "cursor"),
        (vec![("cursor", &next_of_search), ("q", "refusa")], "cursor"),
        (vec![("cursor", &next), ("offset", "0")], "offset"),
        (vec![("cursor", &next), ("offset", "1")], "offset"),
        (vec![("offset", "9901")], "offset"),
        (vec![("offset", "9001"), ("limit", "1000")], "offset"),
        (vec![("offset", "2147483647")], "offset"),
    ];
    for cursor in &tampered {
        cases.push((vec![("cursor", cursor)], "cursor"));
    }
    for (query, field) in cases {
        let response = app
            .client
            .get(app.url("/admin/v1/sites"))
            .query(&query)
            .bearer_auth(&token)
            .send()
            .unwrap();
        let body = assert_admin_error(response, 422, "validation_failed", &format!("{query:?}"));
        assert_eq!(body["field"], field, "{query:?}: {body}");
        if field == "offset" && !query.iter().any(|(name, _)| *name == "cursor") {
            let description = body["error_description"].as_str().unwrap();
            assert!(description.contains("cursor"), "{query:?}: {description}");
        }
    }
    // At the bounds, and as each cursor's own listing, they are fine.
    let hundred = "x".repeat(100);
    for query in [
        vec![("q", hundred.as_str())],
        vec![("q", "   ")],
        // Empty parameters count as absent, as in OAuth forms.
        vec![("q", ""), ("cursor", ""), ("offset", "")],
        vec![("offset", "9900")],
        vec![("offset", "9000"), ("limit", "1000")],
        vec![("cursor", next.as_str())],
        vec![("cursor", next_of_search.as_str()), ("q", "refusal")],
        vec![("cursor", next_of_search.as_str()), ("q", " refusal ")],
    ] {
        list(&app, &token, &query);
    }
    assert_eq!(
        list(
            &app,
            &token,
            &[("cursor", &next_of_search), ("q", "refusal")]
        )
        .names,
        ["Refusal B", "Refusal C"]
    );
    // Malformed numbers stay 400 invalid_request, as they were.
    let response = app.admin_get(&token, "/admin/v1/sites?limit=0");
    assert_admin_error(response, 400, "invalid_request", "limit=0");
    let response = app.admin_get(
        &token,
        &format!("/admin/v1/sites?cursor={next}&cursor={next}"),
    );
    assert_admin_error(response, 400, "invalid_request", "two cursors");
}

/// Inserts `count` sites named `{prefix} 000001`… with keys `site_{tag}000001`… straight into the
/// database, every third one disabled, in one statement.
fn seed_sites(app: &TestApp, prefix: &str, tag: &str, count: usize) {
    let width = 20 - tag.len();
    let sql = match app.db.backend {
        Backend::Sqlite => format!(
            "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) \
             INSERT INTO sites (site_key, name, auth_key_digest, enabled, created_at) \
             SELECT printf('site_{tag}%0{width}d', i), printf('{prefix} %06d', i), x'00', \
             i % 3 <> 0, '2026-12-08 00:00:00' FROM n"
        ),
        Backend::Postgres => format!(
            "INSERT INTO sites (site_key, name, auth_key_digest, enabled, created_at) \
             SELECT 'site_{tag}' || lpad(i::text, {width}, '0'), '{prefix} ' || lpad(i::text, 6, '0'), \
             '\\x00'::bytea, i % 3 <> 0, TIMESTAMP '2026-12-08 00:00:00' \
             FROM generate_series(1, {count}) AS i; ANALYZE sites"
        ),
    };
    app.db.execute(&sql);
}

fn beyond_ten_thousand_matches_the_total_is_an_estimate(app: TestApp) {
    // 28,000 "Alpha Store" sites, then 14,000 "Zulu Coffee" sites, which all sort after them;
    // 42,000 in all, so an estimate samples a part of them.
    seed_sites(&app, "Alpha Store", "alpha", 28_000);
    seed_sites(&app, "Zulu Coffee", "zulu", 14_000);
    let token = platform_token(&app);
    let plausible = |listed: &Listed, actual: i64, what: &str| {
        assert!(!listed.total_exact, "{what}: {listed:?}");
        assert!(
            listed.total > 10_000 && (listed.total - actual).abs() <= actual / 5,
            "{what}: total {} for {actual}",
            listed.total
        );
    };
    let everything = list(&app, &token, &[]);
    plausible(&everything, 42_000, "no q");
    assert_eq!(
        everything.names[..2],
        ["Alpha Store 000001", "Alpha Store 000002"]
    );
    let coffee = list(&app, &token, &[("q", "coffee"), ("limit", "3")]);
    plausible(&coffee, 14_000, "q=coffee");
    // The first 20,000 sites in listing order hold no match: the page is found all the same.
    assert_eq!(
        coffee.names,
        [
            "Zulu Coffee 000001",
            "Zulu Coffee 000002",
            "Zulu Coffee 000003"
        ]
    );
    let prefix = list(&app, &token, &[("q", "zu"), ("limit", "2")]);
    plausible(&prefix, 14_000, "q=zu");
    assert_eq!(prefix.names, ["Zulu Coffee 000001", "Zulu Coffee 000002"]);
    // Below the threshold again with the filter: exact.
    let disabled = list(&app, &token, &[("q", "coffee"), ("enabled", "false")]);
    assert!(disabled.total_exact);
    assert_eq!(disabled.total, 14_000 / 3);
    assert_eq!(disabled.names[0], "Zulu Coffee 000003");
    let enabled = list(&app, &token, &[("q", "store"), ("enabled", "true")]);
    plausible(&enabled, 28_000 - 28_000 / 3, "q=store enabled=true");
    // Paging on with the cursor through the estimated listing: in order, each site once.
    let mut cursor = coffee.next.clone().unwrap();
    let mut seen = coffee.names.clone();
    for _ in 0..5 {
        let page = list(
            &app,
            &token,
            &[("q", "coffee"), ("limit", "3"), ("cursor", &cursor)],
        );
        seen.extend(page.names.iter().cloned());
        cursor = page.next.unwrap();
    }
    let expected: Vec<String> = (1..=18).map(|i| format!("Zulu Coffee {i:06}")).collect();
    assert_eq!(seen, expected);
    // Through to the end, a thousand at a time: each once, in order, and no next after the last.
    let pages = all_pages(&app, &token, &[("q", "coffee")], 1000);
    assert_eq!(pages.len(), 14);
    let keys: Vec<&String> = pages.iter().flat_map(|page| &page.keys).collect();
    let expected: Vec<String> = (1..=14_000).map(|i| format!("site_zulu{i:016}")).collect();
    assert!(
        keys.into_iter().eq(expected.iter()),
        "q=coffee paged by 1000"
    );
    assert!(pages.iter().all(|page| !page.total_exact));
    // A site manager of every Zulu site: the same, within its own sites only.
    let first_zulu = SiteKeys {
        site_key: expected[0].clone(),
        auth_key: String::new(),
    };
    let manager = app.create_site_manager("Zulu Manager", &[&first_zulu]);
    app.db.execute(&format!(
        "INSERT INTO admin_sites (admin_id, site_id) \
         SELECT (SELECT id FROM admins WHERE client_id = '{}'), id FROM sites \
         WHERE site_key LIKE 'site_zulu%' AND site_key <> '{}'",
        manager.client_id, first_zulu.site_key
    ));
    let manager_token = app.admin_token(&manager);
    let managed = list(&app, &manager_token, &[("q", "o"), ("limit", "2")]);
    assert!(managed.names.is_empty() && managed.total == 0 && managed.total_exact);
    let managed = list(&app, &manager_token, &[("q", "coffee"), ("limit", "2")]);
    plausible(&managed, 14_000, "site manager, q=coffee");
    assert_eq!(managed.names, ["Zulu Coffee 000001", "Zulu Coffee 000002"]);
    let next = list(
        &app,
        &manager_token,
        &[
            ("q", "coffee"),
            ("limit", "2"),
            ("cursor", managed.next.as_deref().unwrap()),
        ],
    );
    assert_eq!(next.names, ["Zulu Coffee 000003", "Zulu Coffee 000004"]);
    let disabled = list(
        &app,
        &manager_token,
        &[("enabled", "false"), ("limit", "1")],
    );
    assert_eq!((disabled.total, disabled.total_exact), (14_000 / 3, true));
}
