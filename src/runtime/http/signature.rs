//! Webhook authenticity: Shopify's HMAC-SHA256 over the raw body and Twilio's HMAC-SHA1 over the
//! URL plus the sorted POST parameters. Both compare in constant time (`Mac::verify_slice`, which
//! uses `subtle`): a byte-by-byte early exit would let an attacker learn a valid tag by timing.

use base64::Engine as _;
use hmac::{Hmac, Mac};

type HmacSha256 = Hmac<sha2::Sha256>;
type HmacSha1 = Hmac<sha1::Sha1>;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Shopify: `X-Shopify-Hmac-Sha256` = base64(HMAC-SHA256(app secret, raw request body)),
/// computed over the bytes as received, before any parsing
/// (<https://shopify.dev/docs/apps/build/webhooks/subscribe/https#step-5-verify-the-webhook>).
pub fn shopify_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    b64().encode(mac.finalize().into_bytes())
}

/// Whether `header` is the valid Shopify signature of `body` (constant-time comparison).
pub fn shopify_valid(secret: &str, body: &[u8], header: &str) -> bool {
    let Ok(tag) = b64().decode(header.trim()) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// The string Twilio signs: the full URL as configured, then every POST parameter's name and
/// value concatenated, sorted by name (values of a repeated name sorted too). All parameters
/// count, not a fixed list: Twilio adds parameters without notice
/// (<https://www.twilio.com/docs/usage/security#validating-requests>).
fn twilio_signed_string(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut s = String::from(url);
    for (k, v) in sorted {
        s.push_str(k);
        s.push_str(v);
    }
    s
}

/// `X-Twilio-Signature` = base64(HMAC-SHA1(auth token, signed string)).
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut mac = HmacSha1::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key");
    mac.update(twilio_signed_string(url, params).as_bytes());
    b64().encode(mac.finalize().into_bytes())
}

/// The URL as given, plus: without its port when it has one, else with the scheme's default
/// port (`:443` for https, `:80` for http) added. Twilio's helper libraries (e.g.
/// twilio-python's `RequestValidator.validate`) accept a signature over either form, because
/// what Twilio signed depends on how the webhook URL was configured.
fn port_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    let (scheme, default) = if let Some(rest) = url.strip_prefix("https://") {
        (("https://", rest), "443")
    } else if let Some(rest) = url.strip_prefix("http://") {
        (("http://", rest), "80")
    } else {
        return out;
    };
    let (prefix, rest) = scheme;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => authority.split_at(i + 1),
        None => ("", authority),
    };
    // An IPv6 literal holds colons: only a colon after the closing bracket starts a port.
    let port_at = match hostport.rfind(']') {
        Some(b) => hostport[b..].find(':').map(|i| b + i),
        None => hostport.rfind(':'),
    };
    match port_at {
        Some(i) => out.push(format!("{prefix}{userinfo}{}{tail}", &hostport[..i])),
        None => out.push(format!("{prefix}{userinfo}{hostport}:{default}{tail}")),
    }
    out
}

/// Whether `header` is a valid Twilio signature for a POST to `url` with `params`, with the
/// URL as given or with its default port toggled, and with `'` percent-encoded as a WHATWG URL
/// parser does in the query of an http(s) URL (Twilio's Node library normalises that way);
/// constant-time comparison per candidate.
pub fn twilio_valid(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    header: &str,
) -> bool {
    let Ok(tag) = b64().decode(header.trim()) else {
        return false;
    };
    let mut candidates = port_variants(url);
    if url.contains('\'') {
        candidates.extend(port_variants(&url.replace('\'', "%27")));
    }
    candidates.iter().any(|u| {
        let mut mac = HmacSha1::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key");
        mac.update(twilio_signed_string(u, params).as_bytes());
        mac.verify_slice(&tag).is_ok()
    })
}

/// Decode an `application/x-www-form-urlencoded` body into (name, value) pairs in order
/// (WHATWG URL standard: `+` is a space, `%XX` a byte, then UTF-8). Bad UTF-8 is an error so
/// that the signature is checked over exactly what Twilio sent.
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    fn decode(s: &[u8]) -> Result<String, String> {
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < s.len() => {
                    let hex = std::str::from_utf8(&s[i + 1..i + 3]).unwrap_or("zz");
                    match u8::from_str_radix(hex, 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| "a form field is not valid UTF-8".to_string())
    }
    let mut out = Vec::new();
    for part in body.split(|b| *b == b'&') {
        if part.is_empty() {
            continue;
        }
        let (k, v) = match part.iter().position(|b| *b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &b""[..]),
        };
        out.push((decode(k)?, decode(v)?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_variants_strip_a_port_or_add_the_default() {
        assert_eq!(
            port_variants("https://a.com/x?y=1"),
            ["https://a.com/x?y=1", "https://a.com:443/x?y=1"]
        );
        assert_eq!(
            port_variants("https://u:p@a.com:443/x"),
            ["https://u:p@a.com:443/x", "https://u:p@a.com/x"]
        );
        assert_eq!(
            port_variants("http://a.com:1234/x"),
            ["http://a.com:1234/x", "http://a.com/x"]
        );
    }

    #[test]
    fn form_decoding() {
        let f = parse_form(b"Body=It%27s+amazing&From=%2B1555&Empty=&Flag").unwrap();
        assert_eq!(
            f,
            [
                ("Body".into(), "It's amazing".into()),
                ("From".into(), "+1555".into()),
                ("Empty".into(), String::new()),
                ("Flag".into(), String::new()),
            ]
        );
        assert_eq!(
            parse_form(b"a=100%").unwrap(),
            [("a".into(), "100%".into())]
        );
        assert!(parse_form(b"a=%ff").is_err());
    }
}
