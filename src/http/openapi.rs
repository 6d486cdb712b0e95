//! `GET /openapi.json`: the OpenAPI 3 description of every endpoint, generated from the handlers'
//! annotations so it cannot drift from the route table.

use actix_web::HttpResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::admin::{
    self, ActorView, BulkBody, CreateTokenBody, HistoryEventView, HistoryResponse, RegenerateBody,
    SiteHistoryEventView, SiteHistoryResponse, SiteView, SitesResponse, TokenActionBody, TokenView,
    TokensResponse, ValidateBody,
};
use super::audit::{self, AuditActorView, AuditEventView, AuditResponse};
use super::discovery::{self, Health, Metadata};
use super::error::ErrorBody;
use super::introspect::{self, IntrospectForm, IntrospectionResponse};
use super::metrics;
use super::oauth::{
    self, InvalidateForm, InvalidatedResponse, RevokeForm, TokenForm, TokenResponse,
};
use super::platform::{
    self, CreateSiteBody, CreatedSiteView, RotatedAuthKeyView, RotatedSecretView, RotationBody,
    UpdateSiteBody,
};
use super::platform_admins::{
    self, AdminView, AdminsResponse, CreateAdminBody, CreatedAdminView, UpdateAdminBody,
};
use super::platform_resource_servers::{
    self, CreateResourceServerBody, CreatedResourceServerView, ResourceServerView,
    ResourceServersResponse,
};
use super::revocation::{self, PrimaryInvalidatedResponse};
use super::session::{self, SessionView, TokenTermsView};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tokenwarden",
        description = "OAuth 2.0 authorization server: primary tokens for sites (RFC 6749 4.4), \
                       invalidation and revocation (RFC 7009), introspection for resource servers \
                       (RFC 7662), server metadata (RFC 8414), and the admin API through which \
                       site managers manage each site's non-primary tokens."
    ),
    paths(
        oauth::token,
        oauth::invalidate_token,
        oauth::revoke,
        introspect::introspect,
        discovery::metadata,
        discovery::healthz,
        discovery::readyz,
        metrics::serve,
        serve,
        admin::list_sites,
        admin::site,
        admin::list_tokens,
        admin::create_token,
        admin::token,
        admin::regenerate,
        admin::validate,
        admin::invalidate,
        admin::history,
        admin::retire,
        admin::bulk,
        admin::site_history,
        audit::list,
        revocation::invalidate_primary,
        revocation::end_session,
        session::current,
        platform::create_site,
        platform::update_site,
        platform::rotate_auth_key,
        platform_resource_servers::list,
        platform_resource_servers::create,
        platform_resource_servers::get,
        platform_resource_servers::delete,
        platform_resource_servers::rotate_secret,
        platform_admins::list,
        platform_admins::create,
        platform_admins::get,
        platform_admins::update,
        platform_admins::rotate_secret
    ),
    components(schemas(
        TokenForm,
        InvalidateForm,
        RevokeForm,
        IntrospectForm,
        TokenResponse,
        InvalidatedResponse,
        IntrospectionResponse,
        Metadata,
        Health,
        ErrorBody,
        SiteView,
        SitesResponse,
        TokenView,
        TokensResponse,
        ActorView,
        HistoryEventView,
        HistoryResponse,
        SiteHistoryEventView,
        SiteHistoryResponse,
        BulkBody,
        ValidateBody,
        CreateTokenBody,
        RegenerateBody,
        TokenActionBody,
        AuditActorView,
        AuditEventView,
        AuditResponse,
        PrimaryInvalidatedResponse,
        CreateSiteBody,
        UpdateSiteBody,
        CreatedSiteView,
        RotationBody,
        RotatedAuthKeyView,
        RotatedSecretView,
        CreateResourceServerBody,
        ResourceServerView,
        ResourceServersResponse,
        CreatedResourceServerView,
        CreateAdminBody,
        UpdateAdminBody,
        AdminView,
        AdminsResponse,
        CreatedAdminView,
        SessionView,
        TokenTermsView
    )),
    modifiers(&ClientAuthentication),
    tags(
        (name = "oauth2", description = "OAuth 2.0 endpoints for integrators"),
        (name = "resource servers", description = "Token introspection for the APIs tokens unlock"),
        (name = "discovery", description = "Server metadata"),
        (name = "operations", description = "Health checks"),
        (name = "admin", description = "The admin API: site managers and platform admins manage \
                                          non-primary tokens (admin token required)")
    )
)]
pub struct ApiDoc;

/// Declares HTTP Basic client authentication (RFC 6749 2.3.1 `client_secret_basic`) and the admin
/// API's bearer tokens (RFC 6750). Resource servers authenticate the same way as sites, but with
/// credentials of another kind, so introspection names its own scheme.
struct ClientAuthentication;

impl Modify for ClientAuthentication {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "client_secret_basic",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
            );
            components.add_security_scheme(
                "resource_server_basic",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
            );
            components.add_security_scheme(
                "admin_token",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 description of every endpoint")))]
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
