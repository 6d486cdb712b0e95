//! What an OAuth request says, parsed strictly from untrusted bytes.
//!
//! Every parser here is total: any input yields a value or an [`OAuthError`], never a panic. The
//! HTTP layer hands in the raw body and `Authorization` header; services receive only the typed
//! requests below.

use std::borrow::Cow;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::oauth_error::{OAuthError, OAuthErrorCode};
use super::secret::Secret;

/// Parameters of an `application/x-www-form-urlencoded` body.
///
/// RFC 6749 3.1: "Parameters sent without a value MUST be treated as if they were omitted from the
/// request" and "Request and response parameters MUST NOT be included more than once."
///
/// Names and values borrow from the body unless they had to be decoded: this runs on every OAuth
/// request, and the request types below copy out only what they keep. The pairs are kept sorted
/// by name in one `Vec` (a form has a handful), so a repeated name sits next to itself and a
/// lookup is a binary search; a name sent without a value stays, with an empty value, so that it
/// still counts as sent.
#[derive(Default)]
pub struct Params<'body>(Vec<(Cow<'body, str>, Cow<'body, str>)>);

/// The names only: values include client secrets and tokens.
impl fmt::Debug for Params<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sent = self.0.iter().filter(|(_, value)| !value.is_empty());
        f.debug_tuple("Params")
            .field(&sent.map(|(name, _)| name).collect::<Vec<_>>())
            .finish()
    }
}

impl<'body> Params<'body> {
    /// Decodes a form body: `+` is a space, `%XX` a byte, and the decoded bytes must be UTF-8.
    pub fn parse(body: &'body [u8]) -> Result<Self, OAuthError> {
        let mut pairs = Vec::new();
        for pair in body.split(|&b| b == b'&').filter(|pair| !pair.is_empty()) {
            let (name, value) = match memchr::memchr(b'=', pair) {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &[][..]),
            };
            pairs.push((form_decode(name)?, form_decode(value)?));
        }
        pairs.sort_unstable_by(|(one, _), (other, _)| one.cmp(other));
        if let Some(twice) = pairs.windows(2).find(|next| next[0].0 == next[1].0) {
            return Err(OAuthError::invalid_request(repeated(&twice[0].0)));
        }
        Ok(Self(pairs))
    }

    /// The value of `name`, if it was sent with one.
    pub fn get(&self, name: &str) -> Option<&str> {
        let at = self
            .0
            .binary_search_by(|(sent, _)| (**sent).cmp(name))
            .ok()?;
        Some(&*self.0[at].1).filter(|value| !value.is_empty())
    }

    fn require(&self, name: &'static str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("parameter {name} is required")))
    }
}

/// `+` is a space and `%XX` a byte (an invalid escape stays as it is, as `percent_decode` leaves
/// it); the result must be UTF-8. A value without either, the usual case (tokens and secrets are
/// base64url), is borrowed as it is: this runs for every name and value of every request.
fn form_decode(raw: &[u8]) -> Result<Cow<'_, str>, OAuthError> {
    let not_utf8 = || OAuthError::invalid_request("the request body is not valid UTF-8");
    if memchr::memchr2(b'%', b'+', raw).is_some() {
        // An escape never spans a `+` (not a hex digit), so decoding the pieces between them
        // is decoding the whole with `+` read as a space, in one pass and one buffer.
        let mut bytes = Vec::with_capacity(raw.len());
        for (index, piece) in raw.split(|&b| b == b'+').enumerate() {
            if index > 0 {
                bytes.push(b' ');
            }
            bytes.extend(percent_encoding::percent_decode(piece));
        }
        String::from_utf8(bytes)
            .map(Cow::Owned)
            .map_err(|_| not_utf8())
    } else {
        std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(|_| not_utf8())
    }
}

/// Parameter names of the OAuth endpoints (RFC 6749 4.4.2 and 2.3.1, RFC 7009 2.1, RFC 7662 2.1,
/// and this server's `access_token`): the only names an error description repeats back.
const KNOWN_PARAMETERS: [&str; 7] = [
    "grant_type",
    "client_id",
    "client_secret",
    "scope",
    "access_token",
    "token",
    "token_type_hint",
];

/// The description of a repeated parameter. Only a known name is echoed: any other name is the
/// client's own text, which may be a secret sent in the wrong place (a token pasted as the whole
/// body, `twp_…&twp_…`), and RFC 6749 5.2 `error_description` is read and logged by people who
/// must not see it.
fn repeated(name: &str) -> String {
    match KNOWN_PARAMETERS.iter().find(|known| **known == name) {
        Some(known) => format!("parameter {known} is repeated"),
        None => "a parameter is repeated".into(),
    }
}

/// A client's id and secret, from HTTP Basic or the body (RFC 6749 2.3.1; RFC 8414 names the two
/// methods `client_secret_basic` and `client_secret_post`).
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub secret: Secret,
}

/// What the `Authorization` header said, before it is combined with the body.
#[derive(Debug)]
pub enum AuthorizationHeader {
    Absent,
    Basic(ClientCredentials),
    /// A scheme other than Basic: an unsupported authentication method (RFC 6749 5.2
    /// `invalid_client`).
    OtherScheme,
}

impl AuthorizationHeader {
    /// Parses the header of RFC 7617, with the RFC 6749 2.3.1 rule that client id and secret are
    /// form-urlencoded before they are joined by `:` and base64-encoded.
    pub fn parse(header: Option<&[u8]>) -> Result<Self, OAuthError> {
        let Some(header) = header else {
            return Ok(Self::Absent);
        };
        let malformed = || OAuthError::invalid_request("malformed HTTP Basic authorization header");
        let header = std::str::from_utf8(header).map_err(|_| malformed())?.trim();
        let (scheme, encoded) = header.split_once(' ').unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("basic") {
            return Ok(Self::OtherScheme);
        }
        let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
        let at = decoded
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(malformed)?;
        let client_id = form_decode(&decoded[..at]).map_err(|_| malformed())?;
        let secret = form_decode(&decoded[at + 1..]).map_err(|_| malformed())?;
        if client_id.is_empty() || secret.is_empty() {
            return Err(malformed());
        }
        Ok(Self::Basic(ClientCredentials {
            client_id: client_id.into_owned(),
            secret: Secret::new(secret),
        }))
    }
}

/// The access token of an `Authorization: Bearer` header (RFC 6750 2.1). `Ok(None)` when the
/// request carries no bearer credentials at all (no header, or another scheme): RFC 6750 3 then
/// asks for a bare challenge without an error code. A token in a URI query or form body (RFC 6750
/// 2.2, 2.3, both optional) is not accepted.
pub fn bearer_token(header: Option<&[u8]>) -> Result<Option<Secret>, OAuthError> {
    let Some(header) = header else {
        return Ok(None);
    };
    let malformed = || OAuthError::invalid_request("malformed Bearer authorization header");
    let header = std::str::from_utf8(header).map_err(|_| malformed())?.trim();
    let (scheme, token) = header.split_once(' ').unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(malformed());
    }
    Ok(Some(Secret::new(token)))
}

/// Decides which credentials a request carries.
///
/// RFC 6749 2.3: "The client MUST NOT use more than one authentication method in each request."
/// RFC 6749 2.3.1: body parameters `client_id` and `client_secret`, both required.
///
/// RFC 6749 A.1, A.2: `client_id` and `client_secret` are `*VSCHAR` (printable ASCII); anything
/// else (a NUL byte, say) is refused here, before it can reach a database query.
pub fn client_credentials(
    header: AuthorizationHeader,
    params: &Params,
) -> Result<ClientCredentials, OAuthError> {
    let credentials = chosen_credentials(header, params)?;
    let printable = |text: &str| text.bytes().all(|b| (0x20..=0x7E).contains(&b));
    if !printable(&credentials.client_id) || !printable(credentials.secret.expose()) {
        return Err(OAuthError::invalid_request(
            "client_id and client_secret must be printable ASCII (RFC 6749 Appendix A)",
        ));
    }
    Ok(credentials)
}

fn chosen_credentials(
    header: AuthorizationHeader,
    params: &Params,
) -> Result<ClientCredentials, OAuthError> {
    let body = (params.get("client_id"), params.get("client_secret"));
    match (header, body) {
        (AuthorizationHeader::Basic(_), (Some(_), _) | (_, Some(_))) => Err(
            OAuthError::invalid_request("client credentials must be sent in only one way"),
        ),
        (AuthorizationHeader::Basic(credentials), (None, None)) => Ok(credentials),
        (AuthorizationHeader::OtherScheme, _) => Err(OAuthError::new(
            OAuthErrorCode::InvalidClient,
            "unsupported client authentication method: use HTTP Basic or client_id and \
             client_secret in the body",
        )),
        (AuthorizationHeader::Absent, (Some(client_id), Some(secret))) => Ok(ClientCredentials {
            client_id: client_id.to_string(),
            secret: Secret::new(secret),
        }),
        (AuthorizationHeader::Absent, _) => Err(OAuthError::invalid_client()),
    }
}

/// A scope as RFC 6749 3.3 defines it: space-delimited tokens of `%x21 / %x23-5B / %x5D-7E`.
pub fn parse_scope(raw: &str) -> Result<Vec<String>, OAuthError> {
    let valid_char = |c: char| matches!(c, '\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E');
    let mut tokens: Vec<String> = raw
        .split(' ')
        .filter(|token| !token.is_empty())
        .map(str::to_string)
        .collect();
    if tokens.is_empty() || tokens.iter().any(|token| !token.chars().all(valid_char)) {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidScope,
            "scope is malformed",
        ));
    }
    tokens.sort();
    tokens.dedup();
    Ok(tokens)
}

/// The request of an OAuth endpoint, from its `Authorization` header and form body: what the HTTP
/// layer's `read_form` returns, owning what it keeps of the body.
pub trait FormRequest: Sized {
    fn parse(header: AuthorizationHeader, params: &Params) -> Result<Self, OAuthError>;
}

/// An access token request with the client credentials grant (RFC 6749 4.4.2).
#[derive(Debug)]
pub struct TokenRequest {
    pub credentials: ClientCredentials,
    /// The requested scope, normalised (sorted, without duplicates); `None` when absent.
    pub scope: Option<Vec<String>>,
}

impl FormRequest for TokenRequest {
    fn parse(header: AuthorizationHeader, params: &Params) -> Result<Self, OAuthError> {
        match params.require("grant_type")? {
            "client_credentials" => {}
            _ => {
                return Err(OAuthError::new(
                    OAuthErrorCode::UnsupportedGrantType,
                    "only grant_type=client_credentials is supported",
                ))
            }
        }
        let scope = params.get("scope").map(parse_scope).transpose()?;
        let credentials = client_credentials(header, params)?;
        Ok(Self { credentials, scope })
    }
}

/// `POST /oauth2/invalidate_token`: a site invalidates its own primary token.
#[derive(Debug)]
pub struct InvalidateRequest {
    pub credentials: ClientCredentials,
    pub access_token: Secret,
}

impl FormRequest for InvalidateRequest {
    fn parse(header: AuthorizationHeader, params: &Params) -> Result<Self, OAuthError> {
        let access_token = Secret::new(params.require("access_token")?);
        let credentials = client_credentials(header, params)?;
        Ok(Self {
            credentials,
            access_token,
        })
    }
}

/// `POST /oauth2/revoke` (RFC 7009 2.1).
#[derive(Debug)]
pub struct RevocationRequest {
    pub credentials: ClientCredentials,
    pub token: Secret,
}

impl FormRequest for RevocationRequest {
    /// `token_type_hint` is optional and advisory: RFC 7009 2.1 lets the server search all its
    /// token types regardless, and an unknown hint value is ignored, so it is not even read.
    fn parse(header: AuthorizationHeader, params: &Params) -> Result<Self, OAuthError> {
        let token = Secret::new(params.require("token")?);
        let credentials = client_credentials(header, params)?;
        Ok(Self { credentials, token })
    }
}

/// `POST /oauth2/introspect` (RFC 7662 2.1): a resource server asks about a token.
#[derive(Debug)]
pub struct IntrospectionRequest {
    pub credentials: ClientCredentials,
    pub token: Secret,
}

impl FormRequest for IntrospectionRequest {
    /// `token_type_hint` is optional and, as for revocation, only a hint: it is not read.
    fn parse(header: AuthorizationHeader, params: &Params) -> Result<Self, OAuthError> {
        let token = Secret::new(params.require("token")?);
        let credentials = client_credentials(header, params)?;
        Ok(Self { credentials, token })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_pass: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_pass))
    }

    /// The credentials of an `Authorization` header that must parse as Basic.
    pub(super) fn basic_credentials(header: &str) -> ClientCredentials {
        match AuthorizationHeader::parse(Some(header.as_bytes())) {
            Ok(AuthorizationHeader::Basic(credentials)) => credentials,
            other => panic!("expected Basic credentials, got {other:?}"),
        }
    }

    #[test]
    fn form_bodies_decode_plus_percent_and_drop_empty_values() {
        let params =
            Params::parse(b"grant_type=client_credentials&scope=a+b%20c&empty=&flag").unwrap();
        assert_eq!(params.get("grant_type"), Some("client_credentials"));
        assert_eq!(params.get("scope"), Some("a b c"));
        assert_eq!(params.get("empty"), None);
        assert_eq!(params.get("flag"), None);
        assert!(Params::parse(b"").unwrap().get("x").is_none());
    }

    #[test]
    fn debug_shows_parameter_names_only() {
        let params = Params::parse(b"client_id=site&client_secret=twk_secret&token=twp_x").unwrap();
        let shown = format!("{params:?}");
        assert_eq!(shown, r#"Params(["client_id", "client_secret", "token"])"#);
    }

    #[test]
    fn repeated_parameters_are_refused_even_when_empty() {
        for body in [&b"a=1&a=2"[..], b"a=&a=2", b"a=1&a"] {
            let err = Params::parse(body).unwrap_err();
            assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
            assert!(err.description.contains("repeated"));
        }
    }

    #[test]
    fn non_utf8_bodies_are_refused() {
        for body in [&b"a=%FF"[..], b"a=\xff", b"%C3=1"] {
            assert_eq!(
                Params::parse(body).unwrap_err().code,
                OAuthErrorCode::InvalidRequest
            );
        }
    }

    #[test]
    fn only_known_parameter_names_are_echoed() {
        let err = Params::parse(b"scope=a&scope=b").unwrap_err();
        assert_eq!(err.description, "parameter scope is repeated");
        let token = "twp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        for body in [
            format!("{token}&{token}"),
            format!("{token}=1&{token}=2"),
            "%22%3Cx%3E=1&%22%3Cx%3E=2".to_string(),
        ] {
            let err = Params::parse(body.as_bytes()).unwrap_err();
            assert_eq!(err.description, "a parameter is repeated");
        }
    }

    /// The form decoding before the copy-through fast path: every `+` made a space, then the
    /// whole percent-decoded.
    fn reference_form_decode(raw: &[u8]) -> Option<String> {
        let plus_as_space: Vec<u8> = raw
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        String::from_utf8(percent_encoding::percent_decode(&plus_as_space).collect()).ok()
    }

    #[test]
    fn form_decoding_copies_plain_values_and_decodes_escapes() {
        for (raw, decoded) in [
            (&b""[..], Some("")),
            (b"twp_abc-_XYZ09", Some("twp_abc-_XYZ09")),
            (b"a+b", Some("a b")),
            (b"+", Some(" ")),
            (b"++a++", Some("  a  ")),
            (b"%2B", Some("+")),
            (b"%2b+%2B", Some("+ +")),
            (b"%20%41", Some(" A")),
            (b"%", Some("%")),
            (b"%4", Some("%4")),
            (b"%4+1", Some("%4 1")),
            (b"%+41", Some("% 41")),
            (b"%zz", Some("%zz")),
            (b"100%", Some("100%")),
            (b"%%41", Some("%A")),
            (b"caf%C3%A9", Some("caf\u{e9}")),
            ("caf\u{e9}".as_bytes(), Some("caf\u{e9}")),
            (b"%C3", None),
            (b"\xff", None),
            (b"a+%FF", None),
        ] {
            assert_eq!(form_decode(raw).ok().as_deref(), decoded, "{raw:?}");
            assert_eq!(reference_form_decode(raw).as_deref(), decoded, "{raw:?}");
        }
        let err = form_decode(b"%FF").unwrap_err();
        assert_eq!(err.description, "the request body is not valid UTF-8");
    }

    #[test]
    fn form_decoding_matches_the_two_pass_reference() {
        let alphabet = b"a+%2BF0zg\xc3\xa9=&";
        // Every string of up to four bytes over escapes, hex digits, UTF-8 and plain bytes.
        let mut inputs: Vec<Vec<u8>> = vec![Vec::new()];
        let mut longest: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..4 {
            longest = longest
                .iter()
                .flat_map(|input| alphabet.iter().map(|&b| [&input[..], &[b]].concat()))
                .collect();
            inputs.extend(longest.iter().cloned());
        }
        for input in &inputs {
            assert_eq!(
                form_decode(input).ok().map(Cow::into_owned),
                reference_form_decode(input),
                "{input:?}"
            );
        }
    }

    #[test]
    fn empty_values_are_omitted_but_count_as_sent() {
        let params = Params::parse(b"token=&token_type_hint=x&&scope").unwrap();
        assert_eq!(params.get("token"), None);
        assert_eq!(params.get("token_type_hint"), Some("x"));
        for body in [
            &b"token=&token=a"[..],
            b"token=a&token=",
            b"token&token",
            b"a+b=1&a%20b=",
        ] {
            let err = Params::parse(body).unwrap_err();
            assert!(err.description.contains("repeated"), "{body:?}");
        }
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = basic("site%3Aone:p%40ss+word");
        let credentials = basic_credentials(&header);
        assert_eq!(credentials.client_id, "site:one");
        assert_eq!(credentials.secret.expose(), "p@ss word");
        let header = basic("twr_plain-id_09:twk_plain-secret_09");
        let credentials = basic_credentials(&header);
        assert_eq!(credentials.client_id, "twr_plain-id_09");
        assert_eq!(credentials.secret.expose(), "twk_plain-secret_09");
        for (user_pass, id, secret) in [("a:b:c", "a", "b:c"), ("a+b:%3A", "a b", ":")] {
            let credentials = basic_credentials(&basic(user_pass));
            assert_eq!(credentials.client_id, id, "{user_pass}");
            assert_eq!(credentials.secret.expose(), secret, "{user_pass}");
        }
    }

    #[test]
    fn malformed_basic_headers_are_invalid_requests() {
        for header in [
            "Basic".to_string(),
            "Basic !!!".to_string(),
            basic("no-colon"),
            basic(":secret"),
            basic("id:"),
            format!("Basic {}", STANDARD.encode(b"id:\xff")),
        ] {
            let err = AuthorizationHeader::parse(Some(header.as_bytes())).unwrap_err();
            assert_eq!(err.code, OAuthErrorCode::InvalidRequest, "{header}");
        }
        let err = AuthorizationHeader::parse(Some(b"Basic \xff")).unwrap_err();
        assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
    }

    #[test]
    fn other_schemes_are_unsupported_methods() {
        let header = AuthorizationHeader::parse(Some(b"Bearer abc")).unwrap();
        let err = client_credentials(header, &Params::default()).unwrap_err();
        assert_eq!(err.code, OAuthErrorCode::InvalidClient);
    }

    #[test]
    fn credentials_in_both_places_are_refused() {
        let header = AuthorizationHeader::parse(Some(basic("a:b").as_bytes())).unwrap();
        let params = Params::parse(b"client_id=a").unwrap();
        let err = client_credentials(header, &params).unwrap_err();
        assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
    }

    #[test]
    fn missing_or_partial_credentials_fail_authentication() {
        for body in [&b""[..], b"client_id=a", b"client_secret=b"] {
            let params = Params::parse(body).unwrap();
            let err = client_credentials(AuthorizationHeader::Absent, &params).unwrap_err();
            assert_eq!(err, OAuthError::invalid_client());
        }
    }

    #[test]
    fn token_requests_check_grant_type_and_scope() {
        let parse = |body: &[u8]| {
            TokenRequest::parse(AuthorizationHeader::Absent, &Params::parse(body).unwrap())
        };
        assert_eq!(
            parse(b"client_id=a&client_secret=b").unwrap_err().code,
            OAuthErrorCode::InvalidRequest
        );
        assert_eq!(
            parse(b"grant_type=password&client_id=a&client_secret=b")
                .unwrap_err()
                .code,
            OAuthErrorCode::UnsupportedGrantType
        );
        assert_eq!(
            parse(b"grant_type=client_credentials&scope=%22&client_id=a&client_secret=b")
                .unwrap_err()
                .code,
            OAuthErrorCode::InvalidScope
        );
        let request =
            parse(b"grant_type=client_credentials&scope=b+a+b&client_id=a&client_secret=s")
                .unwrap();
        assert_eq!(request.scope, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(request.credentials.secret.expose(), "s");
    }

    #[test]
    fn scope_tokens_follow_rfc_6749_section_3_3() {
        assert_eq!(parse_scope("read  write").unwrap(), vec!["read", "write"]);
        for bad in ["", "   ", "a\\b", "a\"b", "caf\u{e9}", "a\tb"] {
            assert_eq!(
                parse_scope(bad).unwrap_err().code,
                OAuthErrorCode::InvalidScope,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn invalidate_and_revoke_require_their_token_parameter() {
        let params = Params::parse(b"client_id=a&client_secret=b").unwrap();
        let err = InvalidateRequest::parse(AuthorizationHeader::Absent, &params).unwrap_err();
        assert_eq!(err.description, "parameter access_token is required");
        let err = RevocationRequest::parse(AuthorizationHeader::Absent, &params).unwrap_err();
        assert_eq!(err.description, "parameter token is required");
    }

    #[test]
    fn bearer_tokens_follow_rfc_6750_section_2_1() {
        let token = bearer_token(Some(b"Bearer twa_abc")).unwrap().unwrap();
        assert_eq!(token.expose(), "twa_abc");
        let token = bearer_token(Some(b"bearer   twa_abc ")).unwrap().unwrap();
        assert_eq!(token.expose(), "twa_abc");
        assert!(bearer_token(None).unwrap().is_none());
        assert!(bearer_token(Some(b"Basic YTpi")).unwrap().is_none());
        for malformed in [&b"Bearer"[..], b"Bearer   ", b"Bearer a b", b"Bearer \xff"] {
            assert_eq!(
                bearer_token(Some(malformed)).unwrap_err().code,
                OAuthErrorCode::InvalidRequest,
                "{malformed:?}"
            );
        }
    }

    #[test]
    fn client_credentials_must_be_printable_ascii() {
        for body in [
            &b"client_id=site_%00&client_secret=s"[..],
            b"client_id=site_a&client_secret=s%0A",
            b"client_id=caf%C3%A9&client_secret=s",
        ] {
            let params = Params::parse(body).unwrap();
            let err = client_credentials(AuthorizationHeader::Absent, &params).unwrap_err();
            assert_eq!(err.code, OAuthErrorCode::InvalidRequest, "{body:?}");
        }
        let header = AuthorizationHeader::parse(Some(basic("a%00b:s").as_bytes())).unwrap();
        let err = client_credentials(header, &Params::default()).unwrap_err();
        assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
    }
}

/// Properties of the parsers over generated input: any bytes end in a value or an `OAuthError` of
/// the expected class, and what a client encodes by the RFC rules decodes back to what it meant.
#[cfg(test)]
mod properties {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::tests::basic_credentials;
    use super::*;

    /// A way of writing one character in a form body. Every character may be sent `%XX`-encoded;
    /// a space may also be sent as `+`; and characters without meaning in a form may be sent as
    /// they are (`%`, `+`, `&`, `=` and `:` must be encoded: `:` only matters in Basic credentials).
    fn form_encode(text: &str, style: &[u8]) -> String {
        let mut encoded = String::new();
        for (at, c) in text.chars().enumerate() {
            let pick = style.get(at % style.len().max(1)).copied().unwrap_or(0);
            let literal = c.is_ascii_graphic() && !matches!(c, '%' | '+' | '&' | '=' | ':');
            match (c, pick % 3) {
                (' ', 0) => encoded.push('+'),
                (_, 1) if literal => encoded.push(c),
                _ => {
                    let mut bytes = [0u8; 4];
                    for byte in c.encode_utf8(&mut bytes).bytes() {
                        if pick % 2 == 0 {
                            encoded.push_str(&format!("%{byte:02X}"));
                        } else {
                            encoded.push_str(&format!("%{byte:02x}"));
                        }
                    }
                }
            }
        }
        encoded
    }

    fn style() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 1..8)
    }

    fn form_body(pairs: &BTreeMap<String, String>, style: &[u8], empty_pairs: bool) -> String {
        let mut body: Vec<String> = pairs
            .iter()
            .map(|(name, value)| {
                format!("{}={}", form_encode(name, style), form_encode(value, style))
            })
            .collect();
        if empty_pairs {
            body.insert(0, String::new());
            body.push(String::new());
        }
        body.join("&")
    }

    /// UTF-8 that is not: a lone continuation byte, a start byte without its continuation, a byte
    /// that never occurs, an encoded surrogate and an overlong form.
    fn invalid_utf8() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "%80",
            "%C3",
            "%FF",
            "%ED%A0%80",
            "%C0%AF",
            "%F4%90%80%80",
        ])
    }

    /// Client credentials that are printable ASCII (RFC 6749 Appendix A) or anything at all.
    fn credential_text() -> impl Strategy<Value = String> {
        prop_oneof!["[!-~]{1,12}", ".{1,12}"]
    }

    proptest! {
        #[test]
        fn any_form_body_parses_or_is_an_invalid_request(body in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Err(err) = Params::parse(&body) {
                prop_assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
            }
        }

        #[test]
        fn form_encoded_pairs_decode_to_what_was_encoded(
            pairs in prop::collection::btree_map(".{0,12}", ".{0,24}", 0..8),
            style in style(),
            empty_pairs: bool,
        ) {
            let body = form_body(&pairs, &style, empty_pairs);
            let params = Params::parse(body.as_bytes()).unwrap();
            let expected: BTreeMap<String, String> =
                pairs.into_iter().filter(|(_, value)| !value.is_empty()).collect();
            let parsed: BTreeMap<String, String> = params
                .0
                .into_iter()
                .filter(|(_, value)| !value.is_empty())
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect();
            prop_assert_eq!(parsed, expected);
        }

        #[test]
        fn plus_is_a_space_and_only_an_encoded_plus_is_a_plus(
            pieces in prop::collection::vec(prop::sample::select(vec!["a", "+", "%2B", "%2b", "%20"]), 1..16),
        ) {
            let raw: String = pieces.concat();
            let expected: String = pieces
                .iter()
                .map(|piece| match *piece {
                    "a" => "a",
                    "%2B" | "%2b" => "+",
                    _ => " ",
                })
                .collect();
            let body = format!("v={raw}");
            let params = Params::parse(body.as_bytes()).unwrap();
            prop_assert_eq!(params.get("v"), Some(expected.as_str()));
        }

        #[test]
        fn a_repeated_name_is_refused_without_echoing_an_unknown_name(
            pairs in prop::collection::btree_map(".{1,12}", ".{0,12}", 1..6),
            pick: prop::sample::Index,
            first in style(),
            second in style(),
        ) {
            let name = pick.get(&pairs.keys().collect::<Vec<_>>()).to_string();
            let body = format!(
                "{}&{}={}",
                form_body(&pairs, &first, false),
                form_encode(&name, &second),
                form_encode("again", &second),
            );
            let err = Params::parse(body.as_bytes()).unwrap_err();
            prop_assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
            prop_assert!(err.description.contains("repeated"));
            if !KNOWN_PARAMETERS.contains(&name.as_str()) {
                prop_assert_eq!(err.description.as_ref(), "a parameter is repeated");
            }
        }

        #[test]
        fn invalid_utf8_in_a_name_or_a_value_is_refused(
            before in "[a-z]{0,6}",
            bad in invalid_utf8(),
            after in ".{0,6}",
            in_name: bool,
            style in style(),
        ) {
            let broken = format!("{before}{bad}{}", form_encode(&after, &style));
            let body = if in_name { format!("{broken}=1") } else { format!("v={broken}") };
            let err = Params::parse(body.as_bytes()).unwrap_err();
            prop_assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
            prop_assert!(err.description.contains("UTF-8"));
        }

        #[test]
        fn any_authorization_header_parses_or_is_an_invalid_request(
            header in prop::option::of(prop::collection::vec(any::<u8>(), 0..128)),
        ) {
            if let Err(err) = AuthorizationHeader::parse(header.as_deref()) {
                prop_assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
            }
            if let Err(err) = bearer_token(header.as_deref()) {
                prop_assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
            }
        }

        /// RFC 7617 2 with RFC 6749 2.3.1: form-encode id and secret, join them with `:`,
        /// base64-encode; the scheme is case-insensitive (RFC 7235 2.1).
        #[test]
        fn basic_credentials_round_trip(
            client_id in ".{1,16}",
            secret in ".{1,32}",
            style in style(),
            scheme in "[bB][aA][sS][iI][cC]",
            padding in "[ ]{0,3}",
        ) {
            let user_pass = format!("{}:{}", form_encode(&client_id, &style), form_encode(&secret, &style));
            let header = format!("{padding}{scheme} {padding}{}{padding}", STANDARD.encode(user_pass));
            let credentials = basic_credentials(&header);
            prop_assert_eq!(credentials.client_id, client_id);
            prop_assert_eq!(credentials.secret.expose(), secret.as_str());
        }

        /// RFC 7617 2: the user-id cannot contain a colon, the password can; a client that does
        /// not form-encode a secret with a colon in it is still understood.
        #[test]
        fn only_the_first_colon_separates_id_and_secret(
            client_id in "[a-z_]{1,12}",
            secret in "[a-z:]{0,16}:[a-z:]{0,16}",
        ) {
            let header = format!("Basic {}", STANDARD.encode(format!("{client_id}:{secret}")));
            let credentials = basic_credentials(&header);
            prop_assert_eq!(credentials.client_id, client_id);
            prop_assert_eq!(credentials.secret.expose(), secret.as_str());
        }

        #[test]
        fn another_scheme_is_not_basic(scheme in "[A-Za-z]{1,10}", rest in "[ -~]{0,40}") {
            prop_assume!(!scheme.eq_ignore_ascii_case("basic"));
            let header = format!("{scheme} {rest}");
            prop_assert!(matches!(
                AuthorizationHeader::parse(Some(header.as_bytes())),
                Ok(AuthorizationHeader::OtherScheme)
            ));
        }

        #[test]
        fn basic_with_a_character_outside_base64_is_malformed(
            before in "[A-Za-z0-9]{0,8}",
            bad in "[!-*,.:-@\\[-`{-~]",
            after in "[A-Za-z0-9]{0,8}",
        ) {
            let header = format!("Basic {before}{bad}{after}");
            let err = AuthorizationHeader::parse(Some(header.as_bytes())).unwrap_err();
            prop_assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
        }

        /// Whatever credentials arrive, in the header, the body or both, a request either fails
        /// with an OAuth error or carries exactly the credentials sent, and they are printable
        /// ASCII (RFC 6749 Appendix A), so nothing else reaches a query.
        #[test]
        fn parsed_requests_carry_only_the_printable_credentials_sent(
            in_header in prop::option::of((credential_text(), credential_text())),
            in_body in prop::option::of((credential_text(), credential_text())),
            style in style(),
        ) {
            let mut body = "grant_type=client_credentials&token=t&access_token=a".to_string();
            if let Some((client_id, secret)) = &in_body {
                body += &format!(
                    "&client_id={}&client_secret={}",
                    form_encode(client_id, &style),
                    form_encode(secret, &style)
                );
            }
            let params = Params::parse(body.as_bytes()).unwrap();
            let header = in_header.as_ref().map(|(client_id, secret)| {
                let user_pass = format!("{}:{}", form_encode(client_id, &style), form_encode(secret, &style));
                format!("Basic {}", STANDARD.encode(user_pass))
            });
            let header = || AuthorizationHeader::parse(header.as_deref().map(str::as_bytes)).unwrap();
            let sent = match (&in_header, &in_body) {
                (Some(credentials), None) | (None, Some(credentials)) => Some(credentials),
                _ => None,
            };
            let printable = |text: &str| text.bytes().all(|b| (0x20..=0x7E).contains(&b));
            let results = [
                TokenRequest::parse(header(), &params).map(|request| request.credentials),
                InvalidateRequest::parse(header(), &params).map(|request| request.credentials),
                RevocationRequest::parse(header(), &params).map(|request| request.credentials),
                IntrospectionRequest::parse(header(), &params).map(|request| request.credentials),
            ];
            for result in results {
                match (result, sent) {
                    (Ok(credentials), Some((client_id, secret))) => {
                        prop_assert_eq!(&credentials.client_id, client_id);
                        prop_assert_eq!(credentials.secret.expose(), secret.as_str());
                        prop_assert!(printable(client_id) && printable(secret));
                    }
                    (Ok(_), None) => prop_assert!(false, "accepted without one set of credentials"),
                    (Err(err), Some((client_id, secret))) => {
                        prop_assert!(!printable(client_id) || !printable(secret));
                        prop_assert_eq!(err.code, OAuthErrorCode::InvalidRequest);
                    }
                    (Err(err), None) => {
                        let expected = if in_header.is_some() {
                            OAuthErrorCode::InvalidRequest
                        } else {
                            OAuthErrorCode::InvalidClient
                        };
                        prop_assert_eq!(err.code, expected);
                    }
                }
            }
        }

        #[test]
        fn bearer_tokens_round_trip(token in "[!-~]{1,64}", scheme in "[bB][eE][aA][rR][eE][rR]", padding in "[ ]{0,3}") {
            let header = format!("{padding}{scheme} {padding}{token}{padding}");
            let parsed = bearer_token(Some(header.as_bytes())).unwrap().unwrap();
            prop_assert_eq!(parsed.expose(), token.as_str());
        }
    }
}
