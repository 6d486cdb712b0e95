//! `GET /openapi.json` describes every endpoint, with the form bodies and error shape they use.

use std::collections::BTreeSet;

use crate::helpers::TestApp;

crate::on_both_backends!(
    the_openapi_document_covers_every_endpoint,
    an_active_introspection_answer_has_the_documented_members,
);

fn the_openapi_document_covers_every_endpoint(app: TestApp) {
    let document = app.get_json("/openapi.json");
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/oauth2/token",
        "/oauth2/invalidate_token",
        "/oauth2/revoke",
        "/oauth2/introspect",
    ] {
        let post = &document["paths"][path]["post"];
        assert!(post.is_object(), "{path} is not documented");
        assert!(
            post["requestBody"]["content"]["application/x-www-form-urlencoded"].is_object(),
            "{path} does not document its form body"
        );
        for status in ["200", "400", "401", "413"] {
            assert!(
                post["responses"][status].is_object(),
                "{path} lacks {status}"
            );
        }
    }
    for path in [
        "/.well-known/oauth-authorization-server",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(
            document["paths"][path]["get"].is_object(),
            "{path} is not documented"
        );
    }
    assert!(document["paths"]["/readyz"]["get"]["responses"]["503"].is_object());
    let schemas = &document["components"]["schemas"];
    for schema in [
        "TokenResponse",
        "ErrorBody",
        "TokenForm",
        "IntrospectForm",
        "IntrospectionResponse",
        "Metadata",
    ] {
        assert!(schemas[schema].is_object(), "schema {schema} missing");
    }
    assert_eq!(
        document["components"]["securitySchemes"]["client_secret_basic"]["scheme"],
        "basic"
    );
    assert_eq!(
        document["components"]["securitySchemes"]["resource_server_basic"]["scheme"],
        "basic"
    );
    assert_eq!(
        document["paths"]["/oauth2/introspect"]["post"]["security"][1]["resource_server_basic"],
        serde_json::json!([])
    );
    // What a schema can say of the forms (scripts/schemathesis checks the rest against the server).
    assert_eq!(
        schemas["TokenForm"]["properties"]["grant_type"]["pattern"],
        "^client_credentials$"
    );
    assert_eq!(
        schemas["IntrospectForm"]["properties"]["token"]["minLength"],
        1
    );
    assert_eq!(
        schemas["TokenForm"]["properties"]["client_id"]["type"],
        "string"
    );
    let admin_operations = [
        ("/admin/v1/sites", "get"),
        ("/admin/v1/sites/{site_key}", "get"),
        ("/admin/v1/sites/{site_key}/tokens", "get"),
        ("/admin/v1/sites/{site_key}/tokens", "post"),
        ("/admin/v1/sites/{site_key}/tokens/{token_id}", "get"),
        (
            "/admin/v1/sites/{site_key}/tokens/{token_id}/regenerate",
            "post",
        ),
        (
            "/admin/v1/sites/{site_key}/tokens/{token_id}/validate",
            "post",
        ),
        (
            "/admin/v1/sites/{site_key}/tokens/{token_id}/invalidate",
            "post",
        ),
        (
            "/admin/v1/sites/{site_key}/tokens/{token_id}/history",
            "get",
        ),
        ("/admin/v1/sites/{site_key}/tokens/{token_id}", "delete"),
        ("/admin/v1/sites/{site_key}/tokens/bulk", "post"),
        ("/admin/v1/sites/{site_key}/history", "get"),
        ("/admin/v1/sites/{site_key}", "patch"),
        ("/admin/v1/sites/{site_key}/auth-key", "post"),
        ("/admin/v1/resource-servers", "get"),
        ("/admin/v1/resource-servers", "post"),
        ("/admin/v1/resource-servers/{client_id}", "get"),
        ("/admin/v1/resource-servers/{client_id}", "delete"),
        ("/admin/v1/admins", "get"),
        ("/admin/v1/admins", "post"),
        ("/admin/v1/admins/{client_id}", "get"),
        ("/admin/v1/admins/{client_id}", "patch"),
        ("/admin/v1/sessions/current", "get"),
        ("/admin/v1/sessions/current", "delete"),
    ];
    for (path, method) in admin_operations {
        let operation = &document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        assert_eq!(
            operation["security"][0]["admin_token"],
            serde_json::json!([]),
            "{method} {path} does not require an admin token"
        );
        assert!(
            operation["responses"]["404"].is_object() || !path.contains('{'),
            "{method} {path} lacks 404"
        );
    }
    for (path, method, status) in [
        ("/admin/v1/resource-servers", "post", "422"),
        ("/admin/v1/admins", "post", "422"),
        ("/admin/v1/admins/{client_id}", "patch", "409"),
    ] {
        assert!(
            document["paths"][path][method]["responses"][status].is_object(),
            "{method} {path} lacks {status}"
        );
    }
    let create = &document["paths"]["/admin/v1/sites/{site_key}/tokens"]["post"];
    assert!(create["requestBody"]["content"]["application/json"].is_object());
    for status in ["201", "409", "415", "422"] {
        assert!(
            create["responses"][status].is_object(),
            "create lacks {status}"
        );
    }
    assert_eq!(
        document["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );
    for body in ["CreateTokenBody", "RegenerateBody"] {
        let audience = &schemas[body]["properties"]["audience"];
        assert_eq!(audience["items"]["type"], "string", "{body}: {audience}");
        assert_eq!(audience["minItems"], 1, "{body}: {audience}");
        assert_eq!(audience["maxItems"], 20, "{body}: {audience}");
    }
    let regenerate =
        &document["paths"]["/admin/v1/sites/{site_key}/tokens/{token_id}/regenerate"]["post"];
    let words: Vec<&str> = regenerate["description"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .collect();
    assert!(
        words
            .join(" ")
            .contains("When the body has no `audience`, the token keeps its audience"),
        "{regenerate}"
    );
    assert!(schemas["TokenView"]["properties"]["audience"].is_object());
    for path in [
        "/admin/v1/sites/{site_key}/auth-key",
        "/admin/v1/resource-servers/{client_id}/secret",
        "/admin/v1/admins/{client_id}/secret",
    ] {
        let rotate = &document["paths"][path]["post"];
        assert!(rotate["requestBody"]["content"]["application/json"].is_object());
        for status in ["200", "404", "415", "422"] {
            assert!(
                rotate["responses"][status].is_object(),
                "{path} lacks {status}"
            );
        }
    }
    let overlap = &schemas["RotationBody"]["properties"]["overlap_seconds"];
    assert_eq!(overlap["minimum"], 0, "{overlap}");
    assert_eq!(overlap["maximum"], 604_800, "{overlap}");
    for (schema, member) in [
        ("RotatedAuthKeyView", "auth_key"),
        ("RotatedAuthKeyView", "previous_valid_until"),
        ("SiteView", "previous_auth_key_valid_until"),
        ("RotatedSecretView", "client_secret"),
        ("RotatedSecretView", "previous_valid_until"),
        ("ResourceServerView", "previous_secret_valid_until"),
        ("AdminView", "previous_secret_valid_until"),
        ("SiteView", "created_at"),
        ("SessionView", "role"),
        ("SessionView", "sites"),
        ("SessionView", "expires_at"),
    ] {
        assert!(
            schemas[schema]["properties"][member].is_object(),
            "{schema}.{member} is not documented"
        );
    }
    assert!(schemas["IntrospectionResponse"]["properties"]["aud"].is_object());
}

/// The introspection answer is rendered by `domain::introspection`, the schema stated by
/// `http::introspect::IntrospectionResponse`: the two must name the same members. A primary token
/// has neither expiry, scope nor audience, so it carries every member but those three.
fn an_active_introspection_answer_has_the_documented_members(app: TestApp) {
    let document = app.get_json("/openapi.json");
    let schema = &document["components"]["schemas"]["IntrospectionResponse"];
    let documented: BTreeSet<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .filter(|member| !["exp", "scope", "aud"].contains(member))
        .collect();
    let site = app.create_site("Documented Shop");
    let resource_server = app.create_resource_server("Documented API");
    let answer = app.introspect(&resource_server, &app.primary_token(&site));
    let sent: BTreeSet<&str> = answer
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(sent, documented, "{answer}");
}
