//! `token::recognise` on any string, and on minted values with one character changed: a value is
//! recognised only in the token shape, and the checksum refuses every single substitution.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenwarden::domain::token::{mint, recognise, SecretKind, RANDOM_BYTES, VALUE_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(kind) = recognise(text) {
            assert_eq!(text.len(), VALUE_LEN);
            assert!(text.starts_with(kind.prefix()));
        }
    }
    // [kind, 32 random bytes, position, replacement]: a minted value, then one substitution.
    let Some((&[pick, at, replacement], rest)) = data.split_first_chunk::<3>() else {
        return;
    };
    let Some(random) = rest.first_chunk::<RANDOM_BYTES>() else {
        return;
    };
    let kind = SecretKind::ALL[usize::from(pick) % SecretKind::ALL.len()];
    let minted = mint(kind, random);
    let value = minted.expose();
    assert_eq!(recognise(value), Ok(kind));
    let mut bytes = value.as_bytes().to_vec();
    let at = usize::from(at) % VALUE_LEN;
    if bytes[at] != replacement {
        bytes[at] = replacement;
        if let Ok(altered) = String::from_utf8(bytes) {
            assert!(recognise(&altered).is_err(), "{altered:?} was recognised");
        }
    }
});
