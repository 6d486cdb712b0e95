//! Table definitions shared by both backends: only column types SQLite and PostgreSQL both map
//! (`BigInt`, `Integer`, `Text`, `Binary`, `Bool`, `Timestamp` holding UTC).

diesel::table! {
    sites (id) {
        id -> BigInt,
        site_key -> Text,
        name -> Text,
        auth_key_digest -> Binary,
        enabled -> Bool,
        created_at -> Timestamp,
        previous_auth_key_digest -> Nullable<Binary>,
        previous_auth_key_valid_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    tokens (id) {
        id -> BigInt,
        site_id -> BigInt,
        slot -> Nullable<Integer>,
        description -> Text,
        value_digest -> Binary,
        sealed_value -> Nullable<Binary>,
        value_hint -> Text,
        active -> Bool,
        generated_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        expires_at -> Nullable<Timestamp>,
        scope -> Nullable<Text>,
        audience_restricted -> Bool,
        retired_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    token_events (id) {
        id -> BigInt,
        token_id -> BigInt,
        occurred_at -> Timestamp,
        event -> Text,
        actor_kind -> Text,
        actor_name -> Text,
        value_digest -> Nullable<Binary>,
        detail -> Nullable<Text>,
        description -> Nullable<Text>,
    }
}

diesel::joinable!(tokens -> sites (site_id));
diesel::joinable!(token_events -> tokens (token_id));

diesel::table! {
    resource_servers (id) {
        id -> BigInt,
        client_id -> Text,
        name -> Text,
        secret_digest -> Binary,
        created_at -> Timestamp,
        site_limited -> Bool,
        previous_secret_digest -> Nullable<Binary>,
        previous_secret_valid_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    resource_server_sites (resource_server_id, site_id) {
        resource_server_id -> BigInt,
        site_id -> BigInt,
    }
}

diesel::table! {
    token_audiences (token_id, resource_server_id) {
        token_id -> BigInt,
        resource_server_id -> BigInt,
    }
}

diesel::joinable!(resource_server_sites -> resource_servers (resource_server_id));
diesel::joinable!(resource_server_sites -> sites (site_id));
diesel::joinable!(token_audiences -> tokens (token_id));
diesel::joinable!(token_audiences -> resource_servers (resource_server_id));

diesel::table! {
    admins (id) {
        id -> BigInt,
        client_id -> Text,
        name -> Text,
        role -> Text,
        secret_digest -> Binary,
        enabled -> Bool,
        created_at -> Timestamp,
        previous_secret_digest -> Nullable<Binary>,
        previous_secret_valid_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    admin_sites (admin_id, site_id) {
        admin_id -> BigInt,
        site_id -> BigInt,
    }
}

diesel::table! {
    admin_tokens (id) {
        id -> BigInt,
        admin_id -> BigInt,
        value_digest -> Binary,
        issued_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::joinable!(admin_sites -> admins (admin_id));
diesel::joinable!(admin_sites -> sites (site_id));
diesel::joinable!(admin_tokens -> admins (admin_id));

diesel::allow_tables_to_appear_in_same_query!(
    sites,
    tokens,
    token_events,
    resource_servers,
    resource_server_sites,
    token_audiences,
    admins,
    admin_sites,
    admin_tokens,
);

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        occurred_at -> Timestamp,
        actor_kind -> Text,
        actor_id -> Nullable<Text>,
        actor_name -> Nullable<Text>,
        action -> Text,
        target -> Nullable<Text>,
        source_address -> Nullable<Text>,
        outcome -> Text,
        detail -> Nullable<Text>,
        occurrences -> BigInt,
        last_at -> Timestamp,
    }
}

diesel::table! {
    /// SQLite only: what each write changed, for other processes' caches (`changes.rs`).
    change_log (seq) {
        seq -> BigInt,
        tags -> Text,
        recorded_at -> Timestamp,
    }
}

diesel::table! {
    /// Failed client authentications counted by every node together (`throttle.rs`).
    throttle_failures (key) {
        key -> Binary,
        window_start -> Timestamp,
        failures -> Integer,
        updated_at -> Timestamp,
    }
}
