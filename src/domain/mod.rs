//! Pure types and rules: no actix, no diesel, no I/O.
//!
//! What a token looks like ([`token`]), how many a site may hold ([`slots`]), what a site key and a
//! site name are ([`site`]), how long a replaced auth key or client secret keeps working
//! ([`rotation`]), what a token request says ([`request`]), what is recorded in a token's history
//! ([`history`]) and the OAuth 2.0 error vocabulary ([`oauth_error`]). For the admin scope: who may
//! manage which sites ([`admin`]), how a listing of them searches and pages ([`site_search`]), what
//! a token description may say ([`description`]) and the operator's limits on expiry and scope
//! ([`token_policy`]). Which resource servers a token is meant for is its [`audience`]; when a
//! token is active, and for which resource server, is [`introspection`]. Brute-force throttling of
//! client authentication lives in [`throttle`].

pub mod admin;
pub mod audience;
pub mod audit;
pub mod client_address;
pub mod description;
pub mod history;
pub mod introspection;
pub mod oauth_error;
pub mod request;
pub mod rotation;
pub mod secret;
pub mod site;
pub mod site_search;
pub mod slots;
pub mod throttle;
pub mod token;
pub mod token_policy;
