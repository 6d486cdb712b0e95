//! The admin web page at `/admin/`: the files of `web/admin/`, embedded in the binary and served as
//! they are. The page is only a client of `/oauth2/token` and the `/admin/v1` JSON API; no
//! decision about tokens is made here.
//!
//! Every asset carries the page's security headers (a Content-Security-Policy allowing only this
//! origin's script, style and API, no framing, no referrer, no sniffing), a strong `ETag` (a hash
//! of the content, computed once) and `Cache-Control: no-cache`: browsers revalidate on every load,
//! so a new release is picked up at once, and an unchanged asset costs a `304 Not Modified`.

use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// No inline script or style, no other origin, no plugins, forms only through script, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'none'; \
    frame-ancestors 'none'; base-uri 'none'";

/// One embedded file and its validator.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: LazyLock<String>,
}

const INDEX_BYTES: &[u8] = include_bytes!("../../web/admin/index.html");
static INDEX: Asset = Asset {
    body: INDEX_BYTES,
    content_type: "text/html; charset=utf-8",
    etag: LazyLock::new(|| etag(INDEX_BYTES)),
};

const SCRIPT_BYTES: &[u8] = include_bytes!("../../web/admin/app.js");
static SCRIPT: Asset = Asset {
    body: SCRIPT_BYTES,
    content_type: "text/javascript; charset=utf-8",
    etag: LazyLock::new(|| etag(SCRIPT_BYTES)),
};

const STYLESHEET_BYTES: &[u8] = include_bytes!("../../web/admin/app.css");
static STYLESHEET: Asset = Asset {
    body: STYLESHEET_BYTES,
    content_type: "text/css; charset=utf-8",
    etag: LazyLock::new(|| etag(STYLESHEET_BYTES)),
};

/// A strong entity tag (RFC 9110 8.8.3): the first 128 bits of the content's SHA-256.
fn etag(body: &[u8]) -> String {
    let digest = crate::crypto::content_digest(body);
    format!("\"{}\"", URL_SAFE_NO_PAD.encode(&digest[..16]))
}

/// `GET /admin`: the page lives at `/admin/`, so that its relative links resolve under it.
pub async fn redirect() -> HttpResponse {
    // A relative reference (RFC 9110 10.2.2) keeps working behind a proxy that adds a path prefix.
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "admin/"))
        .finish()
}

/// `GET /admin/`
pub async fn index(request: HttpRequest) -> HttpResponse {
    serve(&INDEX, &request)
}

/// `GET /admin/app.js`
pub async fn script(request: HttpRequest) -> HttpResponse {
    serve(&SCRIPT, &request)
}

/// `GET /admin/app.css`
pub async fn stylesheet(request: HttpRequest) -> HttpResponse {
    serve(&STYLESHEET, &request)
}

fn serve(asset: &Asset, request: &HttpRequest) -> HttpResponse {
    let etag = asset.etag.as_str();
    if matches_if_none_match(request, etag) {
        return with_page_headers(HttpResponse::NotModified(), etag).finish();
    }
    with_page_headers(HttpResponse::Ok(), etag)
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ))
        .body(asset.body)
}

fn with_page_headers(mut builder: HttpResponseBuilder, etag: &str) -> HttpResponseBuilder {
    builder
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .insert_header((
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ));
    builder
}

/// RFC 9110 13.1.2: `*` or any listed tag equal to ours under weak comparison.
fn matches_if_none_match(request: &HttpRequest, etag: &str) -> bool {
    request
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_quoted_content_hashes_that_differ_per_asset() {
        let tags = [
            INDEX.etag.as_str(),
            SCRIPT.etag.as_str(),
            STYLESHEET.etag.as_str(),
        ];
        for tag in tags {
            assert!(
                tag.starts_with('"') && tag.ends_with('"') && tag.len() == 24,
                "{tag}"
            );
        }
        assert_ne!(tags[0], tags[1]);
        assert_ne!(tags[1], tags[2]);
        assert_eq!(etag(b"same"), etag(b"same"));
    }

    #[test]
    fn if_none_match_uses_weak_comparison_over_a_list() {
        let tag = "\"abc\"";
        let request = |value: &str| {
            actix_web::test::TestRequest::default()
                .insert_header((header::IF_NONE_MATCH, value.to_string()))
                .to_http_request()
        };
        for matching in ["\"abc\"", "W/\"abc\"", "\"x\", \"abc\"", "*"] {
            assert!(matches_if_none_match(&request(matching), tag), "{matching}");
        }
        for other in ["\"abd\"", "abc", "\"abc", ""] {
            assert!(!matches_if_none_match(&request(other), tag), "{other}");
        }
    }
}
