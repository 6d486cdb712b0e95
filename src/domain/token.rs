//! The format of every secret tokenwarden mints: access tokens and client secrets alike.
//!
//! `<prefix><body><checksum>`: a fixed 4-character prefix naming the kind (so secret scanners can
//! recognise a leaked value and people can tell an auth key from a token), 43 base64url characters
//! carrying 256 random bits, and 6 base64url characters of CRC-32 over prefix and body. The
//! checksum lets malformed and mistyped values be refused without a database query; it is not a
//! security control (the 256 random bits are). Full description: `docs/token-format.md`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::secret::Secret;

/// Random bytes in every minted value (RFC 6749 10.10 asks for unguessable tokens; RFC 9700 does
/// not set a number, 256 bits is far beyond any online guessing).
pub const RANDOM_BYTES: usize = 32;
const PREFIX_LEN: usize = 4;
const BODY_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
/// Length of every well-formed value.
pub const VALUE_LEN: usize = PREFIX_LEN + BODY_LEN + CHECKSUM_LEN;
/// How many trailing characters an admin view may show of a value.
pub const HINT_LEN: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecretKind {
    /// A site's primary access token, issued by `/oauth2/token`.
    PrimaryToken,
    /// A non-primary access token, created in the admin scope.
    SecondaryToken,
    /// A short-lived token that unlocks the admin API.
    AdminToken,
    /// A site's client secret (its auth key).
    AuthKey,
    /// A resource server's client secret, for introspection.
    ResourceServerSecret,
    /// An admin principal's client secret.
    AdminSecret,
}

impl SecretKind {
    /// Every kind, for code that must consider each (parsing by prefix, the fuzz target).
    pub const ALL: [SecretKind; 6] = [
        SecretKind::PrimaryToken,
        SecretKind::SecondaryToken,
        SecretKind::AdminToken,
        SecretKind::AuthKey,
        SecretKind::ResourceServerSecret,
        SecretKind::AdminSecret,
    ];

    pub fn prefix(self) -> &'static str {
        match self {
            SecretKind::PrimaryToken => "twp_",
            SecretKind::SecondaryToken => "tws_",
            SecretKind::AdminToken => "twa_",
            SecretKind::AuthKey => "twk_",
            SecretKind::ResourceServerSecret => "twr_",
            SecretKind::AdminSecret => "twm_",
        }
    }

    fn from_prefix(prefix: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.prefix() == prefix)
    }
}

/// The presented string is not a value tokenwarden could have minted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the value is not in tokenwarden's token format")]
pub struct MalformedValue;

/// Builds a value of `kind` from fresh random bytes (the caller draws them from the CSPRNG).
pub fn mint(kind: SecretKind, random: &[u8; RANDOM_BYTES]) -> Secret {
    let mut value = String::with_capacity(VALUE_LEN);
    value.push_str(kind.prefix());
    URL_SAFE_NO_PAD.encode_string(random, &mut value);
    let checksum = checksum(&value);
    value.push_str(&checksum);
    Secret::new(value)
}

/// Checks the format and the checksum; says which kind of value it is. Touches nothing else.
pub fn recognise(value: &str) -> Result<SecretKind, MalformedValue> {
    if value.len() != VALUE_LEN || !value.is_ascii() {
        return Err(MalformedValue);
    }
    let kind = SecretKind::from_prefix(&value[..PREFIX_LEN]).ok_or(MalformedValue)?;
    let (signed, presented_checksum) = value.split_at(PREFIX_LEN + BODY_LEN);
    let body = &signed[PREFIX_LEN..];
    if !body.bytes().all(is_base64url) || !checksum_matches(signed, presented_checksum) {
        return Err(MalformedValue);
    }
    Ok(kind)
}

/// The last characters of a value, which admin views may show next to the prefix.
pub fn hint(value: &Secret) -> String {
    let value = value.expose();
    value[value.len().saturating_sub(HINT_LEN)..].to_string()
}

/// What an admin sees instead of a value: prefix and last four characters.
pub fn masked(kind: SecretKind, hint: &str) -> String {
    format!("{}…{}", kind.prefix(), hint)
}

fn is_base64url(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

fn checksum(signed: &str) -> String {
    URL_SAFE_NO_PAD.encode(crc32(signed.as_bytes()).to_be_bytes())
}

/// [`checksum`] compared on the stack: every presented token and secret is checked.
fn checksum_matches(signed: &str, presented: &str) -> bool {
    let mut expected = [0u8; CHECKSUM_LEN];
    URL_SAFE_NO_PAD
        .encode_slice(crc32(signed.as_bytes()).to_be_bytes(), &mut expected)
        .is_ok_and(|len| expected[..len] == *presented.as_bytes())
}

/// CRC-32 (IEEE 802.3, the zlib polynomial), a byte per step from a table built at compile time:
/// it runs on every presented value, and the bit-by-bit loop cost ~3,000 instructions per value.
fn crc32(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |crc, &byte| {
        CRC32_TABLE[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8)
    })
}

/// The CRC of each byte value, eight bit steps each, for [`crc32`].
const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut crc = index as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
            bit += 1;
        }
        table[index] = crc;
        index += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind: SecretKind) -> String {
        mint(kind, &[7u8; RANDOM_BYTES]).expose().to_string()
    }

    /// The bit-by-bit CRC-32 the table replaced.
    fn bitwise_crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                let mask = (crc & 1).wrapping_neg();
                crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
            }
        }
        !crc
    }

    #[test]
    fn crc32_matches_the_reference_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn table_crc32_equals_the_bitwise_one() {
        let bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for start in 0..bytes.len() {
            for len in [0, 1, 2, 3, 47, 64, 255] {
                let data = &bytes[start..(start + len).min(bytes.len())];
                assert_eq!(crc32(data), bitwise_crc32(data), "{data:?}");
            }
        }
        let value = sample(SecretKind::AuthKey);
        assert_eq!(crc32(value.as_bytes()), bitwise_crc32(value.as_bytes()));
    }

    #[test]
    fn checksums_compare_exactly() {
        let value = sample(SecretKind::ResourceServerSecret);
        let (signed, presented) = value.split_at(PREFIX_LEN + BODY_LEN);
        assert!(checksum_matches(signed, presented));
        assert_eq!(checksum(signed), presented);
        assert!(!checksum_matches(signed, &presented[..CHECKSUM_LEN - 1]));
        assert!(!checksum_matches(signed, &format!("{presented}A")));
        assert!(!checksum_matches(signed, ""));
    }

    /// A value computed outside Rust (Python's `zlib.crc32` and base64url), also the fuzz seed in
    /// `fuzz/seeds/token_format/`.
    #[test]
    fn minting_matches_an_independent_implementation() {
        let random: [u8; RANDOM_BYTES] = std::array::from_fn(|at| at as u8);
        let expected = "twp_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8O9eHXQ";
        assert_eq!(mint(SecretKind::PrimaryToken, &random).expose(), expected);
        assert_eq!(recognise(expected), Ok(SecretKind::PrimaryToken));
    }

    #[test]
    fn minted_values_have_the_documented_shape_and_are_recognised() {
        for kind in SecretKind::ALL {
            let value = sample(kind);
            assert_eq!(value.len(), VALUE_LEN);
            assert!(value.starts_with(kind.prefix()));
            assert_eq!(recognise(&value), Ok(kind));
        }
    }

    #[test]
    fn any_single_character_change_is_refused() {
        let value = sample(SecretKind::PrimaryToken);
        for position in PREFIX_LEN..VALUE_LEN {
            let mut bytes = value.clone().into_bytes();
            bytes[position] = if bytes[position] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            assert_eq!(
                recognise(&altered),
                Err(MalformedValue),
                "position {position}"
            );
        }
    }

    #[test]
    fn wrong_length_prefix_alphabet_and_non_ascii_are_refused() {
        let value = sample(SecretKind::SecondaryToken);
        assert_eq!(recognise(""), Err(MalformedValue));
        assert_eq!(recognise(&value[..VALUE_LEN - 1]), Err(MalformedValue));
        assert_eq!(recognise(&format!("{value}A")), Err(MalformedValue));
        assert_eq!(
            recognise(&value.replacen("tws_", "xyz_", 1)),
            Err(MalformedValue)
        );
        assert_eq!(recognise(&value.replacen('_', "=", 1)), Err(MalformedValue));
        let with_plus = format!(
            "tws_{}{}",
            "+".repeat(BODY_LEN),
            &value[PREFIX_LEN + BODY_LEN..]
        );
        assert_eq!(recognise(&with_plus), Err(MalformedValue));
        let non_ascii = format!("tws_é{}", &value[PREFIX_LEN + 2..]);
        assert_eq!(recognise(&non_ascii), Err(MalformedValue));
    }

    #[test]
    fn masking_shows_only_prefix_and_hint() {
        let value = mint(SecretKind::PrimaryToken, &[9u8; RANDOM_BYTES]);
        let hint = hint(&value);
        assert_eq!(hint.len(), HINT_LEN);
        assert!(value.expose().ends_with(&hint));
        assert_eq!(
            masked(SecretKind::PrimaryToken, &hint),
            format!("twp_…{hint}")
        );
    }
}

/// Properties of the format check: total over any string, exact for minted values, and the
/// CRC-32 catches every single-character error (it detects every burst of up to 32 bits).
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn kind() -> impl Strategy<Value = SecretKind> {
        prop::sample::select(SecretKind::ALL.to_vec())
    }

    fn minted() -> impl Strategy<Value = (SecretKind, [u8; RANDOM_BYTES], String)> {
        (kind(), any::<[u8; RANDOM_BYTES]>())
            .prop_map(|(kind, random)| (kind, random, mint(kind, &random).expose().to_string()))
    }

    proptest! {
        #[test]
        fn any_string_is_recognised_only_in_the_token_shape(value in ".{0,64}") {
            if let Ok(kind) = recognise(&value) {
                prop_assert_eq!(value.len(), VALUE_LEN);
                prop_assert!(value.starts_with(kind.prefix()));
            }
        }

        #[test]
        fn near_misses_of_the_shape_never_panic(
            prefix in prop::sample::select(vec!["twp_", "tws_", "twa_", "twk_", "twr_", "twm_", "twx_", "tw\u{e9}"]),
            rest in "[A-Za-z0-9_\\-=+/é]{0,52}",
        ) {
            let _ = recognise(&format!("{prefix}{rest}"));
        }

        #[test]
        fn minted_values_round_trip((kind, random, value) in minted()) {
            prop_assert_eq!(value.len(), VALUE_LEN);
            prop_assert_eq!(recognise(&value), Ok(kind));
            let body = &value[PREFIX_LEN..PREFIX_LEN + BODY_LEN];
            prop_assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap(), random.to_vec());
        }

        #[test]
        fn any_single_character_substitution_is_refused(
            (_, _, value) in minted(),
            at in 0..VALUE_LEN,
            replacement in any::<char>(),
        ) {
            let mut chars: Vec<char> = value.chars().collect();
            prop_assume!(chars[at] != replacement);
            chars[at] = replacement;
            let altered: String = chars.into_iter().collect();
            prop_assert_eq!(recognise(&altered), Err(MalformedValue));
        }

        /// Swapping two different neighbours is a burst of at most 16 bits: CRC-32 sees it.
        #[test]
        fn swapping_neighbours_before_the_checksum_is_refused(
            (_, _, value) in minted(),
            at in 0..PREFIX_LEN + BODY_LEN - 1,
        ) {
            let mut bytes = value.into_bytes();
            prop_assume!(bytes[at] != bytes[at + 1]);
            bytes.swap(at, at + 1);
            let altered = String::from_utf8(bytes).unwrap();
            prop_assert_eq!(recognise(&altered), Err(MalformedValue));
        }

        /// The checksum covers the prefix: a value cannot be passed off as another kind.
        #[test]
        fn another_kinds_prefix_is_refused((kind, _, value) in minted(), other in kind()) {
            prop_assume!(kind != other);
            let relabelled = format!("{}{}", other.prefix(), &value[PREFIX_LEN..]);
            prop_assert_eq!(recognise(&relabelled), Err(MalformedValue));
        }

        #[test]
        fn insertions_and_deletions_are_refused(
            (_, _, value) in minted(),
            at in 0..VALUE_LEN,
            inserted in any::<char>(),
            insert: bool,
        ) {
            let mut chars: Vec<char> = value.chars().collect();
            if insert {
                chars.insert(at, inserted);
            } else {
                chars.remove(at);
            }
            let altered: String = chars.into_iter().collect();
            prop_assert_eq!(recognise(&altered), Err(MalformedValue));
        }
    }
}
