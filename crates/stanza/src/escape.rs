//! XML escaping for text and attribute values, and the hex encoding of
//! ids and keys.
//!
//! Attribute values are always written in single quotes, as the rest of the
//! serializers do, so both quote characters are escaped in attributes and the
//! output is safe whichever quote a later edit chooses.

use std::borrow::Cow;

// Whitespace other than a space is written as a character reference in
// attributes, and CR everywhere: a parser normalizes them otherwise
// (XML 1.0 §3.3.3 and §2.11), and the value would not round-trip.
#[inline]
fn needs_attr(c: u8) -> bool {
    matches!(c, b'<' | b'>' | b'&' | b'\'' | b'"' | b'\t' | b'\n' | b'\r')
}
#[inline]
fn needs_text(c: u8) -> bool {
    matches!(c, b'<' | b'>' | b'&' | b'\r')
}

/// Appends `s` escaped for an attribute value.
pub fn escape_attr_into(out: &mut Vec<u8>, s: &str) {
    escape_into(out, s, needs_attr)
}

/// Appends `s` escaped for character data.
pub fn escape_text_into(out: &mut Vec<u8>, s: &str) {
    escape_into(out, s, needs_text)
}

fn escape_into(out: &mut Vec<u8>, s: &str, needs: impl Fn(u8) -> bool) {
    let bytes = s.as_bytes();
    let mut last = 0;
    for (i, &c) in bytes.iter().enumerate() {
        if !needs(c) {
            continue;
        }
        out.extend_from_slice(&bytes[last..i]);
        out.extend_from_slice(match c {
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'&' => b"&amp;",
            b'\'' => b"&apos;",
            b'"' => b"&quot;",
            b'\t' => b"&#9;",
            b'\n' => b"&#10;",
            _ => b"&#13;",
        });
        last = i + 1;
    }
    out.extend_from_slice(&bytes[last..]);
}

/// `s` escaped for an attribute value; borrows when nothing needs escaping.
pub fn escape_attr(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(needs_attr) {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len() + 8);
    escape_attr_into(&mut out, s);
    Cow::Owned(String::from_utf8(out).expect("escaping keeps UTF-8"))
}

/// `s` escaped for character data; borrows when nothing needs escaping.
pub fn escape_text(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(needs_text) {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len() + 8);
    escape_text_into(&mut out, s);
    Cow::Owned(String::from_utf8(out).expect("escaping keeps UTF-8"))
}

/// Resolves the five predefined entities and character references.
pub fn unescape(s: &str) -> Result<Cow<'_, str>, quick_xml::escape::EscapeError> {
    quick_xml::escape::unescape(s)
}

/// Lower-case hexadecimal of `bytes` (stream ids, dialback keys), without
/// formatting machinery per digit.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes() {
        assert_eq!(escape_attr("a'b\"<&>"), "a&apos;b&quot;&lt;&amp;&gt;");
        assert_eq!(escape_text("a'b\"<&>"), "a'b\"&lt;&amp;&gt;");
        assert!(matches!(escape_attr("plain"), Cow::Borrowed(_)));
    }

    proptest! {
        #[test]
        fn attr_round_trips(s in "\\PC*") {
            let e = escape_attr(&s);
            prop_assert_eq!(unescape(&e).unwrap(), s.as_str());
        }
        #[test]
        fn text_round_trips(s in "\\PC*") {
            let e = escape_text(&s);
            prop_assert_eq!(unescape(&e).unwrap(), s.as_str());
        }
    }
}
