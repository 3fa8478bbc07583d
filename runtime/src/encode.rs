//! Reversible, collision-free mapping from key text to file names.
//!
//! The rules, which make a file name safe on every common file system:
//!
//! - `a`-`z`, `0`-`9`, `-` and `_` stand for themselves;
//! - every other byte of the UTF-8 text, upper-case letters included, is written as
//!   `%XX` with upper-case hex digits, so `Ab` becomes `%41b` and `.` becomes `%2E`;
//! - the empty text is written as `%`;
//! - a name that would read as a reserved device name on Windows (`con`, `nul`,
//!   `com1`, ...) has its first letter escaped.
//!
//! Upper-case letters never appear unescaped, and escapes use upper-case hex, so two
//! different ids never map to names that differ only by case: they cannot share a
//! file on a case-insensitive file system either. No name contains `/`, `\`, `.`, NUL
//! or a control character, so no id can leave its collection directory. Names longer
//! than [`MAX_STEM_LEN`] bytes are refused rather than truncated.

/// The longest encoded name Shelf accepts, in bytes. File systems allow 255; the
/// rest is kept for extensions (`.json.zst`).
pub const MAX_STEM_LEN: usize = 240;

const RESERVED: [&str; 22] = [
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8", "com9", "lpt1", "lpt2",
    "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

fn plain(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'_'
}

/// Encodes key text as a file-name stem. Errors (with a reason) when the result
/// would be longer than [`MAX_STEM_LEN`].
///
/// ```
/// use shelf::encode::{encode, decode};
/// assert_eq!(encode("alice-01").unwrap(), "alice-01");
/// assert_eq!(encode("Bob.Smith").unwrap(), "%42ob%2E%53mith");
/// assert_eq!(encode("../etc").unwrap(), "%2E%2E%2Fetc");
/// assert_eq!(encode("con").unwrap(), "%63on");
/// assert_eq!(decode(&encode("Ünïcödé ✓").unwrap()).as_deref(), Some("Ünïcödé ✓"));
/// ```
pub fn encode(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Ok("%".to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let reserved = RESERVED.contains(&text);
    for (i, &byte) in text.as_bytes().iter().enumerate() {
        if plain(byte) && !(reserved && i == 0) {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xF)]));
        }
        if out.len() > MAX_STEM_LEN {
            return Err(format!(
                "its file name would be longer than {MAX_STEM_LEN} bytes (ids of up to {} plain characters fit)",
                MAX_STEM_LEN
            ));
        }
    }
    Ok(out)
}

const HEX: [u8; 16] = *b"0123456789ABCDEF";

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes a stem made by [`encode`]. Returns `None` for any name `encode` cannot
/// produce, so a stray file is never mistaken for a record.
pub fn decode(stem: &str) -> Option<String> {
    if stem == "%" {
        return Some(String::new());
    }
    let bytes = stem.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else if plain(byte) {
            out.push(byte);
            i += 1;
        } else {
            return None;
        }
    }
    let text = String::from_utf8(out).ok()?;
    // Only the canonical encoding decodes: this keeps the mapping one-to-one.
    (encode(&text).ok()?.as_str() == stem).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_ids_stay_inside_the_directory() {
        let long = "x".repeat(10 * 1024);
        for id in ["..", ".", "/", "a/b", "\\", "a\\..\\b", "\0", "CON", "con", "Nul", "lpt9", "", " ", "a.", "é"] {
            let stem = encode(id).unwrap();
            assert!(!stem.is_empty());
            assert!(stem.bytes().all(|b| plain(b) || b == b'%' || b.is_ascii_uppercase()), "{stem}");
            assert!(!stem.contains(['/', '\\', '.', '\0', ' ']), "{stem}");
            assert!(!RESERVED.contains(&stem.to_ascii_lowercase().as_str()), "{stem}");
            assert_eq!(decode(&stem).as_deref(), Some(id));
        }
        assert!(encode(&long).is_err());
    }

    #[test]
    fn non_canonical_names_do_not_decode() {
        assert_eq!(decode("%61"), None); // 'a' must be plain
        assert_eq!(decode("%2e"), None); // lower-case hex
        assert_eq!(decode("A"), None);
        assert_eq!(decode("a.json"), None);
        assert_eq!(decode("%FF"), None); // not UTF-8
        assert_eq!(decode("con"), None); // reserved, must be escaped
    }

    proptest! {
        #[test]
        fn round_trips(id in any::<String>()) {
            if let Ok(stem) = encode(&id) {
                prop_assert_eq!(decode(&stem), Some(id));
            }
        }

        #[test]
        fn distinct_ids_never_share_a_file_even_case_insensitively(a in any::<String>(), b in any::<String>()) {
            prop_assume!(a != b);
            if let (Ok(x), Ok(y)) = (encode(&a), encode(&b)) {
                prop_assert_ne!(x.to_ascii_lowercase(), y.to_ascii_lowercase());
            }
        }

        #[test]
        fn case_variants_never_collide(id in "[a-zA-Z]{1,12}") {
            let lower = id.to_ascii_lowercase();
            prop_assume!(lower != id);
            prop_assert_ne!(encode(&id).unwrap().to_ascii_lowercase(), encode(&lower).unwrap().to_ascii_lowercase());
        }
    }
}
