//! A real OAuth 2.0 client library (the `oauth2` crate) works against tokenwarden unchanged.

use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, TokenResponse, TokenUrl};

use crate::helpers::{SiteKeys, TestApp};

crate::on_both_backends!(oauth2_crate_obtains_the_primary_token_with_basic_and_body_auth);

fn fetch_with(app: &TestApp, site: &SiteKeys, auth_type: AuthType) -> String {
    let client = BasicClient::new(ClientId::new(site.site_key.clone()))
        .set_client_secret(ClientSecret::new(site.auth_key.clone()))
        .set_token_uri(TokenUrl::new(app.url("/oauth2/token")).expect("a valid URL"))
        .set_auth_type(auth_type);
    let http = oauth2::reqwest::blocking::ClientBuilder::new()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let response = client
        .exchange_client_credentials()
        .request(&http)
        .expect("the client credentials grant succeeds");
    assert_eq!(
        *response.token_type(),
        oauth2::basic::BasicTokenType::Bearer
    );
    assert_eq!(response.expires_in(), None);
    assert!(response.refresh_token().is_none());
    response.access_token().secret().clone()
}

fn oauth2_crate_obtains_the_primary_token_with_basic_and_body_auth(app: TestApp) {
    let site = app.create_site("Library Store");
    let by_basic = fetch_with(&app, &site, AuthType::BasicAuth);
    let by_body = fetch_with(&app, &site, AuthType::RequestBody);
    assert!(by_basic.starts_with("twp_"));
    assert_eq!(by_basic, by_body);
    assert_eq!(app.primary_token(&site), by_basic);

    let wrong = SiteKeys {
        auth_key: "twk_not-the-key".into(),
        ..site
    };
    let client = BasicClient::new(ClientId::new(wrong.site_key.clone()))
        .set_client_secret(ClientSecret::new(wrong.auth_key.clone()))
        .set_token_uri(TokenUrl::new(app.url("/oauth2/token")).unwrap());
    let error = client
        .exchange_client_credentials()
        .request(&oauth2::reqwest::blocking::Client::new())
        .expect_err("a wrong auth key is refused");
    match error {
        oauth2::RequestTokenError::ServerResponse(response) => {
            assert_eq!(
                *response.error(),
                oauth2::basic::BasicErrorResponseType::InvalidClient
            );
        }
        other => panic!("expected an RFC 6749 5.2 error response, got {other:?}"),
    }
}
