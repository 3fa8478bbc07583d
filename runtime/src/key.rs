//! Id types: the [`Key`] trait and its implementations.

use std::fmt::Debug;
use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A type that can serve as an entity id (`#[id]`).
///
/// Implemented for `String`, every integer type and, with the `uuid` feature,
/// `uuid::Uuid`. A key has a canonical text form, used for file names (after
/// [encoding](crate::encode)) and in error messages. `decode_key(encode_key(k))`
/// must give `k` back.
///
/// # A newtype id
///
/// ```
/// use shelf::Key;
///
/// #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
/// struct UserId(u64);
///
/// impl Key for UserId {
///     fn encode_key(&self) -> String {
///         self.0.encode_key()
///     }
///     fn decode_key(text: &str) -> Option<Self> {
///         u64::decode_key(text).map(UserId)
///     }
/// }
///
/// assert_eq!(UserId::decode_key(&UserId(7).encode_key()), Some(UserId(7)));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as an entity id",
    label = "this type does not implement `shelf::Key`",
    note = "ids may be String, an integer type, uuid::Uuid (feature `uuid`), or a newtype that implements `shelf::Key`"
)]
pub trait Key: Clone + Eq + Ord + Hash + Debug + Send + Sync + Serialize + DeserializeOwned + 'static {
    /// The canonical text form of the key.
    fn encode_key(&self) -> String;
    /// Parses the canonical text form back; `None` if it is not one.
    fn decode_key(text: &str) -> Option<Self>;
}

/// An id type that `#[id(auto)]` can assign: the integer types.
#[diagnostic::on_unimplemented(
    message = "`#[id(auto)]` needs an integer id type, and `{Self}` is not one",
    label = "ids of this type cannot be assigned automatically",
    note = "use an integer type such as u64 for `#[id(auto)]`, or drop `(auto)` and assign ids yourself"
)]
pub trait AutoKey: Key {
    /// The key for counter value `n`, or `None` when `n` is out of range.
    fn from_counter(n: u64) -> Option<Self>;
    /// The counter value of this key, or `None` when it is negative.
    fn to_counter(&self) -> Option<u64>;
}

impl Key for String {
    fn encode_key(&self) -> String {
        self.clone()
    }
    fn decode_key(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
}

macro_rules! int_keys {
    ($($t:ty),*) => {$(
        impl Key for $t {
            fn encode_key(&self) -> String {
                self.to_string()
            }
            fn decode_key(text: &str) -> Option<Self> {
                let value: $t = text.parse().ok()?;
                // Only the canonical form: "007" or "+7" would alias "7".
                (value.to_string() == text).then_some(value)
            }
        }
        impl AutoKey for $t {
            fn from_counter(n: u64) -> Option<Self> {
                <$t>::try_from(n).ok()
            }
            fn to_counter(&self) -> Option<u64> {
                u64::try_from(*self).ok()
            }
        }
    )*};
}
int_keys!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);

#[cfg(feature = "uuid")]
impl Key for uuid::Uuid {
    fn encode_key(&self) -> String {
        self.hyphenated().to_string()
    }
    fn decode_key(text: &str) -> Option<Self> {
        let value = uuid::Uuid::parse_str(text).ok()?;
        (value.hyphenated().to_string() == text).then_some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_keys_round_trip_and_reject_aliases() {
        assert_eq!(u64::decode_key(&42u64.encode_key()), Some(42));
        assert_eq!(i32::decode_key(&(-5i32).encode_key()), Some(-5));
        assert_eq!(u64::decode_key("007"), None);
        assert_eq!(u64::decode_key("+7"), None);
        assert_eq!(u8::decode_key("256"), None);
    }

    #[test]
    fn auto_counter_respects_the_type_range() {
        assert_eq!(u8::from_counter(255), Some(255));
        assert_eq!(u8::from_counter(256), None);
        assert_eq!((-1i64).to_counter(), None);
    }
}
