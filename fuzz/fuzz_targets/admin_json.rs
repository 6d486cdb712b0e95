//! The admin API's JSON bodies on any bytes: a body or one of the two JSON errors, and an unknown
//! field's name (the client's own text, perhaps a misplaced secret) never in the error message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenwarden::http::error::ApiError;
use tokenwarden::http::{
    parse_json, BulkBody, CreateTokenBody, RegenerateBody, TokenActionBody, ValidateBody,
};

/// Every message serde's "unknown field" error may become: the fixed text and the fields the body
/// expects, nothing of the client's.
const UNKNOWN_FIELD: [&str; 4] = [
    "the body has an unknown field; expected one of `description`, `expires_at`, `scope`, `audience`",
    "the body has an unknown field; expected `description` or `audience`",
    "the body has an unknown field; expected `description`",
    "the body has an unknown field",
];

fn check(result: Result<(), ApiError>) {
    match result {
        Ok(()) | Err(ApiError::MalformedJson(_)) => {}
        Err(ApiError::JsonShape(message)) => {
            if message.contains("unknown field") {
                assert!(UNKNOWN_FIELD.contains(&message.as_str()), "{message}");
            }
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

fuzz_target!(|body: &[u8]| {
    check(parse_json::<CreateTokenBody>(body).map(drop));
    check(parse_json::<RegenerateBody>(body).map(drop));
    check(parse_json::<TokenActionBody>(body).map(drop));
    check(parse_json::<ValidateBody>(body).map(drop));
    check(parse_json::<BulkBody>(body).map(drop));
});
