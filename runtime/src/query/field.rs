//! Typed fields: `User::fields().age` is a `Field<User, u32>`, and its methods build
//! predicates and orderings that only accept values of the field's type.

use std::any::Any;
use std::cmp::Ordering;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use super::predicate::{Access, Predicate};
use super::OrderBy;

/// A value a field of type `T` can be compared with: a `T`, or a `&str` for a
/// `String` field.
#[diagnostic::on_unimplemented(
    message = "a `{Self}` cannot be compared with a field of type `{T}`",
    label = "expected a value of the field's type `{T}`",
    note = "query values must have the field's type; a String field also takes &str"
)]
pub trait Value<T> {
    /// The value as the field's type.
    fn into_value(self) -> T;
}

impl<T> Value<T> for T {
    fn into_value(self) -> T {
        self
    }
}

impl Value<String> for &str {
    fn into_value(self) -> String {
        self.to_owned()
    }
}

impl Value<String> for &String {
    fn into_value(self) -> String {
        self.clone()
    }
}

/// A single-field index that can serve a field's predicates.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexHint {
    /// The index position in the entity's index list.
    pub pos: usize,
    /// The index name.
    pub name: &'static str,
    /// Whether the index is sorted (serves ranges and ordered walks).
    pub sorted: bool,
    /// Whether the index is unique.
    pub unique: bool,
}

/// A field of entity `E` with type `T`, from the generated `E::fields()`.
///
/// Comparisons take values of type `T` (a `&str` for `String`); `age.gt("x")` does
/// not compile. Option fields are [`OptField`]s.
pub struct Field<E, T> {
    name: &'static str,
    get: fn(&E) -> &T,
    index: Option<IndexHint>,
}

impl<E, T> Clone for Field<E, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E, T> Copy for Field<E, T> {}

impl<E, T> Debug for Field<E, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Field({})", self.name)
    }
}

/// Where field predicates test values: everything they need is `'static` and shareable.
fn shared<V: Send + Sync + 'static>(v: V) -> Arc<dyn Any + Send + Sync> {
    Arc::new(v)
}

impl<E, T> Field<E, T> {
    #[doc(hidden)]
    pub const fn new(name: &'static str, get: fn(&E) -> &T, index: Option<IndexHint>) -> Self {
        Field { name, get, index }
    }

    /// The field name (the Rust name, whatever serde calls it).
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl<E: 'static, T: PartialOrd + Debug + Clone + Send + Sync + 'static> Field<E, T> {
    fn compare(self, op: &'static str, value: T, keep: fn(Ordering) -> bool, access: Access) -> Predicate<E> {
        let get = self.get;
        let text = format!("{} {op} {value:?}", self.name);
        Predicate::leaf(text, access, move |e: &E| get(e).partial_cmp(&value).is_some_and(keep))
    }

    fn range_access(&self, lo: Bound<T>, hi: Bound<T>) -> Access {
        match self.index {
            Some(hint) if hint.sorted => Access::Range { hint, lo: lo.map(shared), hi: hi.map(shared) },
            _ => Access::None,
        }
    }

    /// `field == value`. Served by an index on the field.
    pub fn eq(self, value: impl Value<T>) -> Predicate<E> {
        let value = value.into_value();
        let access = self.index.map_or(Access::None, |hint| Access::Eq { hint, key: shared(value.clone()) });
        self.compare("==", value, Ordering::is_eq, access)
    }

    /// `field != value`.
    pub fn ne(self, value: impl Value<T>) -> Predicate<E> {
        self.compare("!=", value.into_value(), Ordering::is_ne, Access::None)
    }

    /// `field < value`. Served by a sorted index.
    pub fn lt(self, value: impl Value<T>) -> Predicate<E> {
        let value = value.into_value();
        let access = self.range_access(Bound::Unbounded, Bound::Excluded(value.clone()));
        self.compare("<", value, Ordering::is_lt, access)
    }

    /// `field <= value`. Served by a sorted index.
    pub fn le(self, value: impl Value<T>) -> Predicate<E> {
        let value = value.into_value();
        let access = self.range_access(Bound::Unbounded, Bound::Included(value.clone()));
        self.compare("<=", value, Ordering::is_le, access)
    }

    /// `field > value`. Served by a sorted index.
    pub fn gt(self, value: impl Value<T>) -> Predicate<E> {
        let value = value.into_value();
        let access = self.range_access(Bound::Excluded(value.clone()), Bound::Unbounded);
        self.compare(">", value, Ordering::is_gt, access)
    }

    /// `field >= value`. Served by a sorted index.
    pub fn ge(self, value: impl Value<T>) -> Predicate<E> {
        let value = value.into_value();
        let access = self.range_access(Bound::Included(value.clone()), Bound::Unbounded);
        self.compare(">=", value, Ordering::is_ge, access)
    }

    /// `field` within `range` (`a..b`, `a..=b`, `a..`, ...). Served by a sorted index.
    pub fn between<V: Value<T> + Clone>(self, range: impl RangeBounds<V>) -> Predicate<E> {
        let lo = range.start_bound().cloned().map(Value::into_value);
        let hi = range.end_bound().cloned().map(Value::into_value);
        let get = self.get;
        let text = format!("{} in {:?}..{:?}", self.name, lo, hi);
        let access = self.range_access(lo.clone(), hi.clone());
        Predicate::leaf(text, access, move |e: &E| {
            let v = get(e);
            let above = match &lo {
                Bound::Included(lo) => v >= lo,
                Bound::Excluded(lo) => v > lo,
                Bound::Unbounded => true,
            };
            let below = match &hi {
                Bound::Included(hi) => v <= hi,
                Bound::Excluded(hi) => v < hi,
                Bound::Unbounded => true,
            };
            above && below
        })
    }

    /// `field` equal to one of `values`. Served by an index on the field.
    pub fn is_in<V: Value<T>>(self, values: impl IntoIterator<Item = V>) -> Predicate<E> {
        let values: Vec<T> = values.into_iter().map(Value::into_value).collect();
        let access = match self.index {
            Some(hint) => Access::In { hint, keys: values.iter().cloned().map(shared).collect() },
            None => Access::None,
        };
        let get = self.get;
        let text = format!("{} in {:?}", self.name, values);
        Predicate::leaf(text, access, move |e: &E| {
            values.iter().any(|v| get(e).partial_cmp(v) == Some(Ordering::Equal))
        })
    }

    /// Ascending order by this field (then by id).
    pub fn asc(self) -> OrderBy<E>
    where
        T: Ord,
    {
        OrderBy::new(self.name, self.get, false, self.index)
    }

    /// Descending order by this field (then by id, ascending).
    pub fn desc(self) -> OrderBy<E>
    where
        T: Ord,
    {
        OrderBy::new(self.name, self.get, true, self.index)
    }
}

impl<E: 'static> Field<E, String> {
    /// The string starts with `prefix`.
    pub fn starts_with(self, prefix: &str) -> Predicate<E> {
        let get = self.get;
        let prefix = prefix.to_owned();
        Predicate::leaf(format!("{} starts with {prefix:?}", self.name), Access::None, move |e: &E| {
            get(e).starts_with(&prefix)
        })
    }

    /// The string contains `part`.
    pub fn contains(self, part: &str) -> Predicate<E> {
        let get = self.get;
        let part = part.to_owned();
        Predicate::leaf(format!("{} contains {part:?}", self.name), Access::None, move |e: &E| get(e).contains(&part))
    }
}

/// An `Option<T>` field of entity `E`, from the generated `E::fields()`.
///
/// Comparisons take a `T` and, like SQL's `NULL`, never match `None`:
/// `nick.eq("x")` is `nick == Some("x")`, and `score.lt(5)` does not match a
/// record without a score. Use [`is_none`](OptField::is_none) and
/// [`is_some`](OptField::is_some) for presence.
pub struct OptField<E, T> {
    name: &'static str,
    get: fn(&E) -> &Option<T>,
    index: Option<IndexHint>,
}

impl<E, T> Clone for OptField<E, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E, T> Copy for OptField<E, T> {}

impl<E, T> Debug for OptField<E, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OptField({})", self.name)
    }
}

impl<E, T> OptField<E, T> {
    #[doc(hidden)]
    pub const fn new(name: &'static str, get: fn(&E) -> &Option<T>, index: Option<IndexHint>) -> Self {
        OptField { name, get, index }
    }

    /// The field name (the Rust name, whatever serde calls it).
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl<E: 'static, T: PartialOrd + Debug + Clone + Send + Sync + 'static> OptField<E, T> {
    fn compare(self, op: &'static str, value: T, keep: fn(Ordering) -> bool, access: Access) -> Predicate<E> {
        let get = self.get;
        let text = format!("{} {op} {value:?}", self.name);
        Predicate::leaf(text, access, move |e: &E| {
            get(e).as_ref().and_then(|v| v.partial_cmp(&value)).is_some_and(keep)
        })
    }

    /// The field is `Some`.
    pub fn is_some(self) -> Predicate<E> {
        let get = self.get;
        Predicate::leaf(format!("{} is some", self.name), Access::None, move |e: &E| get(e).is_some())
    }

    /// The field is `None`.
    pub fn is_none(self) -> Predicate<E> {
        let get = self.get;
        Predicate::leaf(format!("{} is none", self.name), Access::None, move |e: &E| get(e).is_none())
    }

    /// `field == Some(value)`. Served by an index on the field.
    pub fn eq(self, value: impl Value<T>) -> Predicate<E> {
        let value = value.into_value();
        let access = self.index.map_or(Access::None, |hint| Access::Eq { hint, key: shared(value.clone()) });
        self.compare("==", value, Ordering::is_eq, access)
    }

    /// `field` is `Some` and not `value`.
    pub fn ne(self, value: impl Value<T>) -> Predicate<E> {
        self.compare("!=", value.into_value(), Ordering::is_ne, Access::None)
    }

    /// `field` is `Some(v)` with `v < value`.
    pub fn lt(self, value: impl Value<T>) -> Predicate<E> {
        self.compare("<", value.into_value(), Ordering::is_lt, Access::None)
    }

    /// `field` is `Some(v)` with `v <= value`.
    pub fn le(self, value: impl Value<T>) -> Predicate<E> {
        self.compare("<=", value.into_value(), Ordering::is_le, Access::None)
    }

    /// `field` is `Some(v)` with `v > value`.
    pub fn gt(self, value: impl Value<T>) -> Predicate<E> {
        self.compare(">", value.into_value(), Ordering::is_gt, Access::None)
    }

    /// `field` is `Some(v)` with `v >= value`.
    pub fn ge(self, value: impl Value<T>) -> Predicate<E> {
        self.compare(">=", value.into_value(), Ordering::is_ge, Access::None)
    }

    /// Ascending order by this field, `None` first (then by id).
    pub fn asc(self) -> OrderBy<E>
    where
        T: Ord,
    {
        OrderBy::new(self.name, self.get, false, None)
    }

    /// Descending order by this field, `None` last (then by id, ascending).
    pub fn desc(self) -> OrderBy<E>
    where
        T: Ord,
    {
        OrderBy::new(self.name, self.get, true, None)
    }
}
