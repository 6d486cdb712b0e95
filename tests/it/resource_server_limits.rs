//! Resource servers limited to sites: `tokenwarden resource-server create --site`, `assign`,
//! `unassign` and `list` with the real binary, and what a running server answers such a resource
//! server at once: `{"active": false}` for any other site's token, from memory on a cache hit.

use std::process::Command;

use serde_json::{json, Value};
use tokenwarden::domain::request::{ClientCredentials, IntrospectionRequest};
use tokenwarden::domain::secret::Secret;
use tokenwarden::domain::throttle::Origin;
use tokenwarden::service::introspect::introspect_from_memory;

use crate::cli::{create_site, run, succeed, succeed_json, tokenwarden};
use crate::helpers::{
    assert_eventually, wait_for_live_change_feed, Backend, ResourceServerKeys, TestApp,
    TestDatabase, TestNode,
};

crate::per_backend!(
    a_limited_resource_server_sees_only_its_sites_tokens,
    create_assign_and_unassign_refuse_unknown_names_and_change_nothing,
);

const NOWHERE: &str = "site_AAAAAAAAAAAAAAAAAAAA";
const NO_SERVER: &str = "rs_AAAAAAAAAAAAAAAAAAAA";

/// `tokenwarden --database URL resource-server ARGS…`.
fn resource_server(database: &str, args: &[&str]) -> Command {
    let mut command = tokenwarden(database);
    command.arg("resource-server").args(args);
    command
}

fn resource_server_json(database: &str, args: &[&str]) -> Value {
    let mut command = resource_server(database, args);
    command.arg("--json");
    succeed_json(&mut command)
}

/// Runs a command that must fail with exit code 1, print nothing on stdout, and name `culprit`
/// on stderr.
fn refused(database: &str, args: &[&str], culprit: &str) {
    let mut command = resource_server(database, args);
    command.arg("--json");
    let failed = run(&mut command);
    assert_eq!(failed.status.code(), Some(1), "{args:?}: {failed:?}");
    assert_eq!(failed.stdout, "", "{args:?}: nothing for scripts to parse");
    assert!(
        failed.stderr.contains(culprit),
        "{args:?}: the message does not name {culprit}: {}",
        failed.stderr
    );
}

fn listed(database: &str) -> Vec<Value> {
    let listed = resource_server_json(database, &["list"]);
    listed["resource_servers"]
        .as_array()
        .unwrap_or_else(|| panic!("no resource_servers array: {listed}"))
        .clone()
}

fn listed_sites(database: &str, client_id: &str) -> Value {
    listed(database)
        .into_iter()
        .find(|entry| entry["client_id"] == client_id)
        .unwrap_or_else(|| panic!("{client_id} is not listed"))["sites"]
        .clone()
}

fn keys(created: &Value) -> ResourceServerKeys {
    let field = |name: &str| {
        created[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {created}"))
            .to_string()
    };
    ResourceServerKeys {
        client_id: field("client_id"),
        client_secret: field("client_secret"),
    }
}

fn sorted(keys: &[&str]) -> Value {
    let mut keys = keys.to_vec();
    keys.sort_unstable();
    json!(keys)
}

/// Introspects `token` as `resource_server` through the service's memory-only entry point, as the
/// HTTP worker does first: once both of its lookups are cache hits it answers without the
/// database. Retries over HTTP (which refills the caches) until it does: on PostgreSQL a node's
/// own notification moves the generation once more some milliseconds after a write.
pub(crate) fn answer_from_memory(
    node: &TestNode,
    resource_server: &ResourceServerKeys,
    token: &str,
) -> Value {
    let request = IntrospectionRequest {
        credentials: ClientCredentials {
            client_id: resource_server.client_id.clone(),
            secret: Secret::new(resource_server.client_secret.clone()),
        },
        token: Secret::new(token.to_string()),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let over_http = node.introspect(resource_server, token);
        let origin = Origin {
            address: None,
            at: std::time::Instant::now(),
        };
        let now = tokenwarden::clock::now();
        let answered = introspect_from_memory(&node.context, &request, &origin, now)
            .expect("introspection from memory");
        if let Some(verdict) = answered {
            let answer: Value = serde_json::from_str(verdict.json()).unwrap();
            assert_eq!(answer, over_http, "memory and database agree");
            return answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never answered from memory"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn a_limited_resource_server_sees_only_its_sites_tokens(backend: Backend) {
    let Some(app) = TestApp::spawn(backend) else {
        return;
    };
    wait_for_live_change_feed(&app);
    let url = app.db.url.clone();
    let tea = app.create_site("Tea Shop");
    let pen = app.create_site("Pen Shop");
    let tea_token = app.primary_token(&tea);
    let pen_token = app.primary_token(&pen);
    let everywhere = app.create_resource_server("Everywhere API");

    let created = resource_server_json(
        &url,
        &["create", "--name", "Tea API", "--site", &tea.site_key],
    );
    assert_eq!(created["sites"], json!([tea.site_key]), "{created}");
    let tea_api = keys(&created);
    let inactive = json!({"active": false});
    assert_eventually(&app, || {
        app.introspect(&tea_api, &tea_token)["active"] == true
    });
    assert_eq!(app.introspect(&tea_api, &pen_token), inactive);
    for token in [&tea_token, &pen_token] {
        assert_eq!(app.introspect(&everywhere, token)["active"], true);
    }
    // Both the resource server's site limit and the token's site come from memory.
    assert_eq!(
        answer_from_memory(&app, &tea_api, &tea_token)["active"],
        true
    );
    assert_eq!(answer_from_memory(&app, &tea_api, &pen_token), inactive);
    assert_eq!(
        answer_from_memory(&app, &everywhere, &pen_token)["active"],
        true
    );

    let assigned = resource_server_json(
        &url,
        &["assign", &tea_api.client_id, "--site", &pen.site_key],
    );
    assert_eq!(assigned["sites"], sorted(&[&tea.site_key, &pen.site_key]));
    assert_eventually(&app, || {
        app.introspect(&tea_api, &pen_token)["active"] == true
    });

    let unassigned = resource_server_json(
        &url,
        &["unassign", &tea_api.client_id, "--site", &tea.site_key],
    );
    assert_eq!(unassigned["sites"], json!([pen.site_key]));
    assert_eventually(&app, || app.introspect(&tea_api, &tea_token) == inactive);
    assert_eq!(app.introspect(&tea_api, &pen_token)["active"], true);

    // Its last site taken, it stays limited: to no site at all.
    let emptied = resource_server_json(
        &url,
        &["unassign", &tea_api.client_id, "--site", &pen.site_key],
    );
    assert_eq!(emptied["sites"], json!([]));
    assert_eventually(&app, || app.introspect(&tea_api, &pen_token) == inactive);
    assert_eq!(app.introspect(&tea_api, &tea_token), inactive);
    assert_eq!(listed_sites(&url, &tea_api.client_id), json!([]));
    assert_eq!(listed_sites(&url, &everywhere.client_id), Value::Null);

    // Assigning again narrows a resource server that saw every site.
    let narrowed = resource_server_json(
        &url,
        &["assign", &everywhere.client_id, "--site", &tea.site_key],
    );
    assert_eq!(narrowed["sites"], json!([tea.site_key]));
    assert_eventually(&app, || app.introspect(&everywhere, &pen_token) == inactive);
    assert_eq!(app.introspect(&everywhere, &tea_token)["active"], true);

    let text = succeed(&mut resource_server(&url, &["list"])).stdout;
    let line = |client_id: &str| {
        text.lines()
            .find(|line| line.starts_with(client_id))
            .unwrap_or_else(|| panic!("{client_id} is not listed: {text}"))
            .to_string()
    };
    assert!(
        line(&tea_api.client_id).ends_with("Tea API (none)"),
        "{text}"
    );
    assert!(
        line(&everywhere.client_id).ends_with(&format!("Everywhere API ({})", tea.site_key)),
        "{text}"
    );
}

fn create_assign_and_unassign_refuse_unknown_names_and_change_nothing(backend: Backend) {
    let Some(db) = TestDatabase::create(backend) else {
        return;
    };
    let url = db.url.clone();
    let site = create_site(&url, "Known Store");
    let key = site.site_key.as_str();

    refused(
        &url,
        &["create", "--name", "Lost API", "--site", NOWHERE],
        NOWHERE,
    );
    refused(
        &url,
        &[
            "create", "--name", "Lost API", "--site", key, "--site", NOWHERE,
        ],
        NOWHERE,
    );
    assert_eq!(listed(&url), Vec::<Value>::new(), "nothing was created");

    let limited = keys(&resource_server_json(
        &url,
        &["create", "--name", "Limited API", "--site", key],
    ));
    let everywhere = keys(&resource_server_json(
        &url,
        &["create", "--name", "Open API"],
    ));
    for args in [
        vec!["assign", NO_SERVER, "--site", key],
        vec!["unassign", NO_SERVER, "--site", key],
        vec!["delete", NO_SERVER],
    ] {
        refused(&url, &args, NO_SERVER);
    }
    for args in [
        vec!["assign", &limited.client_id, "--site", NOWHERE],
        vec![
            "unassign",
            &limited.client_id,
            "--site",
            key,
            "--site",
            NOWHERE,
        ],
        vec!["assign", &everywhere.client_id, "--site", NOWHERE],
    ] {
        refused(&url, &args, NOWHERE);
    }
    // Nothing to take from a resource server that sees every site: said, not ignored.
    refused(
        &url,
        &["unassign", &everywhere.client_id, "--site", key],
        &everywhere.client_id,
    );
    assert_eq!(listed_sites(&url, &limited.client_id), json!([key]));
    assert_eq!(listed_sites(&url, &everywhere.client_id), Value::Null);

    // clap itself refuses assign and unassign without a site.
    for action in ["assign", "unassign"] {
        let failed = run(&mut resource_server(&url, &[action, &limited.client_id]));
        assert!(!failed.status.success(), "{action} without --site");
        assert!(failed.stderr.contains("--site"), "{}", failed.stderr);
    }
}
