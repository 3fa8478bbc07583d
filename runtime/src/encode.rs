//! The one mapping from key text to file names, used by the store and by `inspect`.
//!
//! The rules, which make a file name safe on every common file system:
//!
//! - `a`-`z`, `0`-`9`, `-` and `_` stand for themselves;
//! - every other byte of the UTF-8 text, upper-case letters included, is written as
//!   `%XX` with upper-case hex digits, so `Ab` becomes `%41b` and `.` becomes `%2E`;
//! - the empty text is written as `%`;
//! - a name that would read as a reserved device name on Windows (`con`, `nul`,
//!   `com1`, ...) has its first letter escaped;
//! - a name that would be longer than [`MAX_STEM_LEN`] bytes is *hashed*: the first
//!   at most [`PREFIX_LEN`] bytes of it (never cutting an escape), then `~`, then
//!   the first 128 bits of the SHA-256 of the key text as 32 lower-case hex digits.
//!
//! Upper-case letters never appear unescaped, and escapes use upper-case hex, so two
//! different ids never map to names that differ only by case: they cannot share a
//! file on a case-insensitive file system either. No name contains `/`, `\`, `.`, NUL
//! or a control character, so no id can leave its collection directory.
//!
//! A full name decodes back to its id ([`decode`]). A hashed name does not: it is only
//! a locator, and the record inside the file holds the real id. Whoever reads the file
//! checks that the id inside has this file name ([`is_name_of`]), so a file moved or
//! renamed onto another id's name, or a hash collision, is reported rather than
//! loaded under the wrong id. `~` is escaped in full names (`%7E`), so a hashed name
//! never reads as a full one.

mod sha256;

/// The longest file name (stem) Shelf writes, in bytes. File systems allow 255; the
/// rest is kept for extensions (`.json.zst`). An id whose full name would be longer
/// gets a hashed name.
pub const MAX_STEM_LEN: usize = 240;

/// The longest readable prefix of a hashed name, in bytes; the whole hashed name is
/// at most this plus 33 bytes (`~` and 32 hex digits).
pub const PREFIX_LEN: usize = 200;

/// The separator between a hashed name's prefix and its hash.
const HASH_MARK: char = '~';
/// Hex digits of the hash in a hashed name (128 bits).
const HASH_HEX: usize = 32;

const RESERVED: [&str; 22] = [
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8", "com9", "lpt1", "lpt2",
    "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

fn plain(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'_'
}

/// Encodes key text as a file-name stem (without extension): the full, reversible
/// name when it fits in [`MAX_STEM_LEN`] bytes, else a hashed name. Every text has a
/// name.
///
/// ```
/// use shelf::encode::{decode, encode, is_name_of, MAX_STEM_LEN};
/// assert_eq!(encode("alice-01"), "alice-01");
/// assert_eq!(encode("Bob.Smith"), "%42ob%2E%53mith");
/// assert_eq!(encode("../etc"), "%2E%2E%2Fetc");
/// assert_eq!(encode("con"), "%63on");
/// assert_eq!(decode(&encode("Ünïcödé ✓")).as_deref(), Some("Ünïcödé ✓"));
///
/// // A long URL gets a readable prefix and a hash; the name does not decode, but
/// // it is recognised as the name of its id.
/// let url = format!("https://example.com/{}", "a".repeat(300));
/// let name = encode(&url);
/// assert!(name.len() <= MAX_STEM_LEN);
/// assert!(name.starts_with("https%3A%2F%2Fexample%2Ecom%2Faaa"));
/// assert_eq!(decode(&name), None);
/// assert!(is_name_of(&name, &url));
/// assert!(!is_name_of(&name, &format!("{url}b")));
/// ```
pub fn encode(text: &str) -> String {
    if text.is_empty() {
        return "%".to_owned();
    }
    let mut out = String::with_capacity(text.len().min(MAX_STEM_LEN + 1));
    // Where the name may be cut for a hashed name: the end of the last whole
    // character (plain byte or escape) that fits in `PREFIX_LEN`.
    let mut cut = 0;
    let reserved = RESERVED.contains(&text);
    for (i, &byte) in text.as_bytes().iter().enumerate() {
        if plain(byte) && !(reserved && i == 0) {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xF)]));
        }
        if out.len() <= PREFIX_LEN {
            cut = out.len();
        }
        if out.len() > MAX_STEM_LEN {
            out.truncate(cut);
            out.push(HASH_MARK);
            out.push_str(&hash_hex(text));
            return out;
        }
    }
    out
}

/// The first 128 bits of the SHA-256 of `text`, as lower-case hex.
fn hash_hex(text: &str) -> String {
    let digest = sha256::sha256(text.as_bytes());
    let mut hex = String::with_capacity(HASH_HEX);
    for byte in &digest[..HASH_HEX / 2] {
        hex.push(char::from(HEX_LOWER[usize::from(byte >> 4)]));
        hex.push(char::from(HEX_LOWER[usize::from(byte & 0xF)]));
    }
    hex
}

const HEX_LOWER: [u8; 16] = *b"0123456789abcdef";

/// Whether `stem` is the file name of the id whose key text is `text`: exactly
/// `encode(text) == stem`. This is the check that makes a hashed name safe: the
/// name only locates a record, and the id inside it must have this name.
pub fn is_name_of(stem: &str, text: &str) -> bool {
    encode(text) == stem
}

/// What a file name says about the id it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Name {
    /// A full name: the id's key text.
    Id(String),
    /// A hashed name (a long id): its readable prefix, still encoded. The id is the
    /// one inside the file, if [`is_name_of`] agrees.
    Hashed {
        /// The encoded prefix (at most [`PREFIX_LEN`] bytes, before the `~`).
        prefix: String,
    },
}

/// Reads a file name: a full name (which must be canonical) or a hashed one (a
/// canonical-looking prefix, `~`, 32 lower-case hex digits). `None` for any name
/// [`encode`] cannot produce, so a stray file is never mistaken for a record.
///
/// ```
/// use shelf::encode::{encode, read_name, Name};
/// assert_eq!(read_name("%41b"), Some(Name::Id("Ab".to_owned())));
/// assert!(matches!(read_name(&encode(&"x".repeat(500))), Some(Name::Hashed { .. })));
/// assert_eq!(read_name("notes.txt"), None);
/// assert_eq!(read_name("abc~123"), None); // not 32 hex digits
/// ```
pub fn read_name(stem: &str) -> Option<Name> {
    let Some((prefix, hash)) = stem.split_once(HASH_MARK) else {
        return decode(stem).map(Name::Id);
    };
    let hash_ok = hash.len() == HASH_HEX && hash.bytes().all(|b| HEX_LOWER.contains(&b));
    let prefix_ok = prefix.len() <= PREFIX_LEN && escapes_ok(prefix);
    (hash_ok && prefix_ok).then(|| Name::Hashed { prefix: prefix.to_owned() })
}

/// Whether `text` is made of plain bytes and well-formed `%XX` escapes.
fn escapes_ok(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if bytes.get(i + 1).and_then(|&b| hex_value(b)).is_none()
                || bytes.get(i + 2).and_then(|&b| hex_value(b)).is_none()
            {
                return false;
            }
            i += 3;
        } else if plain(bytes[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

const HEX: [u8; 16] = *b"0123456789ABCDEF";

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes a full name made by [`encode`]. Returns `None` for a hashed name (whose
/// id is only inside the file; see [`read_name`]) and for any name `encode` cannot
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
    (encode(&text) == stem).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_ids_stay_inside_the_directory() {
        let long = "x".repeat(10 * 1024);
        for id in ["..", ".", "/", "a/b", "\\", "a\\..\\b", "\0", "CON", "con", "Nul", "lpt9", "", " ", "a.", "é"] {
            let stem = encode(id);
            assert!(!stem.is_empty());
            assert!(stem.bytes().all(|b| plain(b) || b == b'%' || b.is_ascii_uppercase()), "{stem}");
            assert!(!stem.contains(['/', '\\', '.', '\0', ' ']), "{stem}");
            assert!(!RESERVED.contains(&stem.to_ascii_lowercase().as_str()), "{stem}");
            assert_eq!(decode(&stem).as_deref(), Some(id));
        }
        let stem = encode(&long);
        assert!(stem.len() <= MAX_STEM_LEN);
        assert!(stem.starts_with(&"x".repeat(PREFIX_LEN)));
        assert_eq!(decode(&stem), None);
        assert!(is_name_of(&stem, &long));
    }

    #[test]
    fn names_switch_to_hashed_exactly_past_the_limit() {
        let fits = "a".repeat(MAX_STEM_LEN);
        assert_eq!(encode(&fits), fits);
        let over = "a".repeat(MAX_STEM_LEN + 1);
        let name = encode(&over);
        assert_eq!(name.len(), PREFIX_LEN + 1 + HASH_HEX);
        assert!(matches!(read_name(&name), Some(Name::Hashed { .. })));
        // Escapes are never cut: 67 escaped bytes (201 bytes) leave a 198-byte prefix.
        let name = encode(&"/".repeat(100));
        let (prefix, hash) = name.split_once('~').unwrap();
        assert_eq!(prefix, "%2F".repeat(66));
        assert_eq!(hash.len(), HASH_HEX);
    }

    #[test]
    fn long_ids_sharing_a_prefix_get_different_names() {
        let base = "https://example.com/".to_owned() + &"p".repeat(400);
        let names: std::collections::BTreeSet<String> =
            ["", "a", "b", "A", "/"].iter().map(|tail| encode(&format!("{base}{tail}"))).collect();
        assert_eq!(names.len(), 5);
        for name in &names {
            assert!(!is_name_of(name, &format!("{base}z")));
        }
    }

    #[test]
    fn hashed_names_are_read_strictly() {
        let good = encode(&"z".repeat(300));
        assert!(read_name(&good).is_some());
        let (prefix, hash) = good.split_once('~').unwrap();
        assert_eq!(read_name(&format!("{prefix}~{}", hash.to_ascii_uppercase())), None);
        assert_eq!(read_name(&format!("{prefix}~{}", &hash[1..])), None);
        assert_eq!(read_name(&format!("{prefix}Z~{hash}")), None);
        assert_eq!(read_name(&format!("{prefix}%2~{hash}")), None);
        assert_eq!(read_name(&format!("{}~{hash}", "z".repeat(PREFIX_LEN + 1))), None);
        assert_eq!(read_name(&format!("{prefix}~{hash}~")), None);
        // `~` in a short id is escaped, so its name is a full one.
        assert_eq!(encode("a~b"), "a%7Eb");
        assert_eq!(read_name("a%7Eb"), Some(Name::Id("a~b".to_owned())));
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
        fn long_ids_are_named_by_their_hash(tail in any::<String>(), len in 70usize..400) {
            let id = format!("{}{tail}", "é".repeat(len));
            let stem = encode(&id);
            prop_assert!(stem.len() <= MAX_STEM_LEN);
            prop_assert!(stem.contains('~'));
            let hashed = matches!(read_name(&stem), Some(Name::Hashed { .. }));
            prop_assert!(hashed);
            prop_assert!(is_name_of(&stem, &id));
            let longer = format!("{id}x");
            prop_assert!(!is_name_of(&stem, &longer));
        }

        #[test]
        fn round_trips(id in any::<String>()) {
            let stem = encode(&id);
            prop_assert!(stem.len() <= MAX_STEM_LEN);
            prop_assert!(is_name_of(&stem, &id));
            if !stem.contains('~') {
                prop_assert_eq!(decode(&stem), Some(id));
            }
        }

        #[test]
        fn distinct_ids_never_share_a_file_even_case_insensitively(a in any::<String>(), b in any::<String>()) {
            prop_assume!(a != b);
            prop_assert_ne!(encode(&a).to_ascii_lowercase(), encode(&b).to_ascii_lowercase());
        }

        #[test]
        fn case_variants_never_collide(id in "[a-zA-Z]{1,12}") {
            let lower = id.to_ascii_lowercase();
            prop_assume!(lower != id);
            prop_assert_ne!(encode(&id).to_ascii_lowercase(), encode(&lower).to_ascii_lowercase());
        }
    }
}
