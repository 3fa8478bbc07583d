//! Case-insensitive text predicates, folding ASCII letters only.
//!
//! `name.eq_ignore_ascii_case("bob")` matches `"Bob"` and `"BOB"`. Only `A`-`Z`
//! fold to `a`-`z`: `"É"` does not match `"é"`, `"ß"` does not match `"SS"` and the
//! Turkish dotted `İ` is not `i`. Full Unicode case folding depends on language and
//! normalization (and changes string lengths), so it is left to the caller: store a
//! folded copy of the field (for example with `str::to_lowercase`, or a crate such
//! as `caseless`) and index that copy. These predicates scan; no index serves them.

use super::field::{Field, OptField, Text};
use super::predicate::{Access, Predicate};

/// Whether `hay` contains `needle`, ASCII letters compared without case.
fn contains_folded(hay: &str, needle: &str) -> bool {
    let (hay, needle) = (hay.as_bytes(), needle.as_bytes());
    needle.is_empty() || hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Whether `text` starts with `prefix`, ASCII letters compared without case.
fn starts_folded(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len() && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

impl<E: 'static, T: Text + 'static> Field<E, T> {
    /// The text equals `value`, ignoring ASCII case (see the module notes on Unicode).
    pub fn eq_ignore_ascii_case(self, value: &str) -> Predicate<E> {
        let get = self.getter();
        let value = value.to_owned();
        let text = format!("{} == {value:?} (ASCII case ignored)", self.name());
        Predicate::leaf(text, Access::None, move |e: &E| get(e).text().eq_ignore_ascii_case(&value))
    }

    /// The text starts with `prefix`, ignoring ASCII case.
    pub fn starts_with_ignore_ascii_case(self, prefix: &str) -> Predicate<E> {
        let get = self.getter();
        let prefix = prefix.to_owned();
        let text = format!("{} starts with {prefix:?} (ASCII case ignored)", self.name());
        Predicate::leaf(text, Access::None, move |e: &E| starts_folded(get(e).text(), &prefix))
    }

    /// The text contains `part`, ignoring ASCII case.
    pub fn contains_ignore_ascii_case(self, part: &str) -> Predicate<E> {
        let get = self.getter();
        let part = part.to_owned();
        let text = format!("{} contains {part:?} (ASCII case ignored)", self.name());
        Predicate::leaf(text, Access::None, move |e: &E| contains_folded(get(e).text(), &part))
    }
}

impl<E: 'static, T: Text + 'static> OptField<E, T> {
    /// The text is `Some` and equals `value`, ignoring ASCII case.
    pub fn eq_ignore_ascii_case(self, value: &str) -> Predicate<E> {
        let get = self.getter();
        let value = value.to_owned();
        let text = format!("{} == {value:?} (ASCII case ignored)", self.name());
        Predicate::leaf(text, Access::None, move |e: &E| {
            get(e).as_ref().is_some_and(|v| v.text().eq_ignore_ascii_case(&value))
        })
    }

    /// The text is `Some` and starts with `prefix`, ignoring ASCII case.
    pub fn starts_with_ignore_ascii_case(self, prefix: &str) -> Predicate<E> {
        let get = self.getter();
        let prefix = prefix.to_owned();
        let text = format!("{} starts with {prefix:?} (ASCII case ignored)", self.name());
        Predicate::leaf(text, Access::None, move |e: &E| {
            get(e).as_ref().is_some_and(|v| starts_folded(v.text(), &prefix))
        })
    }

    /// The text is `Some` and contains `part`, ignoring ASCII case.
    pub fn contains_ignore_ascii_case(self, part: &str) -> Predicate<E> {
        let get = self.getter();
        let part = part.to_owned();
        let text = format!("{} contains {part:?} (ASCII case ignored)", self.name());
        Predicate::leaf(text, Access::None, move |e: &E| {
            get(e).as_ref().is_some_and(|v| contains_folded(v.text(), &part))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{contains_folded, starts_folded};

    #[test]
    fn folding_is_ascii_only() {
        assert!(contains_folded("Hello World", "o wO"));
        assert!(contains_folded("abc", ""));
        assert!(!contains_folded("ab", "abc"));
        assert!(starts_folded("Tokio-Util", "tOKIO"));
        assert!(!starts_folded("Émile", "é"));
        assert!(!contains_folded("STRASSE", "ß"));
    }
}
