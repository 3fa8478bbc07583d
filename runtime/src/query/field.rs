//! Typed fields: `User::fields().age` is a `Field<User, u32>`, and its methods build
//! predicates and orderings that only accept values of the field's type.

use std::any::Any;
use std::cmp::Ordering;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use super::order::OrderBy;
use super::predicate::{Access, Predicate};

/// A value a field of type `T` can be compared with: a `T`, or a `&str` for a
/// `String` field.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be compared with a field of type `{T}`",
    label = "expected a value of the field's type `{T}`",
    note = "query values must have the field's type `{T}`; a String field also takes &str; an Option field takes the inner type (`score.eq(3)` means `== Some(3)`; use is_some/is_none for presence)"
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

/// A field type queries can order by: one with a total order.
#[diagnostic::on_unimplemented(
    message = "cannot order by a field of type `{Self}`: it has no total order (`Ord`)",
    label = "`{Self}` does not implement `Ord`",
    note = "order_by needs an Ord field; for f64 store an integer (e.g. cents) or a wrapper that implements Ord"
)]
pub trait Orderable: Ord {}
impl<T: Ord> Orderable for T {}

/// A field type with text predicates (`starts_with`, `contains`): `String`.
#[diagnostic::on_unimplemented(
    message = "`starts_with`/`contains` need a String field, and this field has type `{Self}`",
    label = "not a String field",
    note = "compare other types with eq, lt, gt or between"
)]
pub trait Text {
    /// The text.
    fn text(&self) -> &str;
}
impl Text for String {
    fn text(&self) -> &str {
        self
    }
}

/// A field type that can be absent: `Option<T>`.
#[diagnostic::on_unimplemented(
    message = "`is_none`/`is_some` need an Option field, and this field has type `{Self}`",
    label = "this field is never None",
    note = "only fields of type `Option<T>` can be None"
)]
pub trait Nullable {
    /// Whether the value is `None`.
    fn is_null(&self) -> bool;
}
impl<T> Nullable for Option<T> {
    fn is_null(&self) -> bool {
        self.is_none()
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

/// Whether `v` lies within the bounds.
pub(super) fn within<T: PartialOrd>(v: &T, lo: &Bound<T>, hi: &Bound<T>) -> bool {
    let above = match lo {
        Bound::Included(lo) => v >= lo,
        Bound::Excluded(lo) => v > lo,
        Bound::Unbounded => true,
    };
    let below = match hi {
        Bound::Included(hi) => v <= hi,
        Bound::Excluded(hi) => v < hi,
        Bound::Unbounded => true,
    };
    above && below
}

/// Where field predicates test values: everything they need is `'static` and shareable.
pub(super) fn shared<V: Send + Sync + 'static>(v: V) -> Arc<dyn Any + Send + Sync> {
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

    pub(super) fn getter(&self) -> fn(&E) -> &T {
        self.get
    }

    pub(super) fn hint(&self) -> Option<IndexHint> {
        self.index
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

    /// `field == value`. Served by an index on the field, or by a sorted composite
    /// index that starts with the field when the query orders by its next field.
    pub fn eq(self, value: impl Value<T>) -> Predicate<E> {
        let value = value.into_value();
        let access = self.index.map_or(Access::None, |hint| Access::Eq { hint, key: shared(value.clone()) });
        let name = self.name;
        self.compare("==", value, Ordering::is_eq, access).on_field(name)
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
        Predicate::leaf(text, access, move |e: &E| within(get(e), &lo, &hi))
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
        T: Orderable,
    {
        OrderBy::new(self.name, self.get, false, self.index)
    }

    /// Descending order by this field (then by id, ascending).
    pub fn desc(self) -> OrderBy<E>
    where
        T: Orderable,
    {
        OrderBy::new(self.name, self.get, true, self.index)
    }

    /// The text starts with `prefix` (String fields).
    pub fn starts_with(self, prefix: &str) -> Predicate<E>
    where
        T: Text,
    {
        let get = self.get;
        let prefix = prefix.to_owned();
        let text = format!("{} starts with {prefix:?}", self.name);
        Predicate::leaf(text, Access::None, move |e: &E| get(e).text().starts_with(&prefix))
    }

    /// The text contains `part` (String fields).
    pub fn contains(self, part: &str) -> Predicate<E>
    where
        T: Text,
    {
        let get = self.get;
        let part = part.to_owned();
        Predicate::leaf(format!("{} contains {part:?}", self.name), Access::None, move |e: &E| {
            get(e).text().contains(&part)
        })
    }

    /// The value is `None` (for an Option type the derive did not recognize as one,
    /// e.g. behind a type alias).
    pub fn is_none(self) -> Predicate<E>
    where
        T: Nullable,
    {
        let get = self.get;
        Predicate::leaf(format!("{} is none", self.name), Access::None, move |e: &E| get(e).is_null())
    }

    /// The value is `Some`.
    pub fn is_some(self) -> Predicate<E>
    where
        T: Nullable,
    {
        let get = self.get;
        Predicate::leaf(format!("{} is some", self.name), Access::None, move |e: &E| !get(e).is_null())
    }
}

impl<E: 'static, T: PartialEq + Debug + Clone + Send + Sync + 'static> Field<E, Vec<T>> {
    /// The `Vec` holds an element equal to `value` (not the whole-vector equality of
    /// `eq`). Served by an `#[index(each)]` on the field, exactly.
    pub fn includes(self, value: impl Value<T>) -> Predicate<E> {
        let value = value.into_value();
        let get = self.get;
        let text = format!("{} includes {value:?}", self.name);
        let access =
            Access::Element { field: self.name, key: shared(value.clone()), key_type: std::any::TypeId::of::<T>() };
        Predicate::leaf(text, access, move |e: &E| get(e).contains(&value))
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

    pub(super) fn getter(&self) -> fn(&E) -> &Option<T> {
        self.get
    }

    pub(super) fn hint(&self) -> Option<IndexHint> {
        self.index
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

    fn range_access(&self, lo: Bound<T>, hi: Bound<T>) -> Access {
        match self.index {
            Some(hint) if hint.sorted => Access::Range { hint, lo: lo.map(shared), hi: hi.map(shared) },
            _ => Access::None,
        }
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

    /// `field` is `Some(v)` with `v < value`. Served by a sorted index.
    pub fn lt(self, value: impl Value<T>) -> Predicate<E> {
        let value = value.into_value();
        let access = self.range_access(Bound::Unbounded, Bound::Excluded(value.clone()));
        self.compare("<", value, Ordering::is_lt, access)
    }

    /// `field` is `Some(v)` with `v <= value`. Served by a sorted index.
    pub fn le(self, value: impl Value<T>) -> Predicate<E> {
        let value = value.into_value();
        let access = self.range_access(Bound::Unbounded, Bound::Included(value.clone()));
        self.compare("<=", value, Ordering::is_le, access)
    }

    /// `field` is `Some(v)` with `v > value`. Served by a sorted index.
    pub fn gt(self, value: impl Value<T>) -> Predicate<E> {
        let value = value.into_value();
        let access = self.range_access(Bound::Excluded(value.clone()), Bound::Unbounded);
        self.compare(">", value, Ordering::is_gt, access)
    }

    /// `field` is `Some(v)` with `v >= value`. Served by a sorted index.
    pub fn ge(self, value: impl Value<T>) -> Predicate<E> {
        let value = value.into_value();
        let access = self.range_access(Bound::Included(value.clone()), Bound::Unbounded);
        self.compare(">=", value, Ordering::is_ge, access)
    }

    /// `field` is `Some(v)` with `v` in `range`. Served by a sorted index.
    pub fn between<V: Value<T> + Clone>(self, range: impl RangeBounds<V>) -> Predicate<E> {
        let lo = range.start_bound().cloned().map(Value::into_value);
        let hi = range.end_bound().cloned().map(Value::into_value);
        let get = self.get;
        let text = format!("{} in {:?}..{:?}", self.name, lo, hi);
        let access = self.range_access(lo.clone(), hi.clone());
        Predicate::leaf(text, access, move |e: &E| get(e).as_ref().is_some_and(|v| within(v, &lo, &hi)))
    }

    /// `field` is `Some(v)` with `v` one of `values`. Served by an index on the field.
    pub fn is_in<V: Value<T>>(self, values: impl IntoIterator<Item = V>) -> Predicate<E> {
        let values: Vec<T> = values.into_iter().map(Value::into_value).collect();
        let access = match self.index {
            Some(hint) => Access::In { hint, keys: values.iter().cloned().map(shared).collect() },
            None => Access::None,
        };
        let get = self.get;
        let text = format!("{} in {:?}", self.name, values);
        Predicate::leaf(text, access, move |e: &E| {
            get(e).as_ref().is_some_and(|v| values.iter().any(|x| v.partial_cmp(x) == Some(Ordering::Equal)))
        })
    }

    /// The text is `Some` and starts with `prefix` (`Option<String>` fields).
    pub fn starts_with(self, prefix: &str) -> Predicate<E>
    where
        T: Text,
    {
        let get = self.get;
        let prefix = prefix.to_owned();
        let text = format!("{} starts with {prefix:?}", self.name);
        Predicate::leaf(text, Access::None, move |e: &E| get(e).as_ref().is_some_and(|v| v.text().starts_with(&prefix)))
    }

    /// The text is `Some` and contains `part` (`Option<String>` fields).
    pub fn contains(self, part: &str) -> Predicate<E>
    where
        T: Text,
    {
        let get = self.get;
        let part = part.to_owned();
        let text = format!("{} contains {part:?}", self.name);
        Predicate::leaf(text, Access::None, move |e: &E| get(e).as_ref().is_some_and(|v| v.text().contains(&part)))
    }

    /// Ascending order by this field, `None` first (then by id). With a `limit`, a
    /// sorted index on the field is walked in order (records without a value, which
    /// the index does not hold, are looked for only when some exist).
    pub fn asc(self) -> OrderBy<E>
    where
        T: Orderable,
    {
        OrderBy::new_opt(self.name, self.get, false, self.index)
    }

    /// Descending order by this field, `None` last (then by id, ascending). With a
    /// `limit`, a sorted index on the field is walked backwards and stops early.
    pub fn desc(self) -> OrderBy<E>
    where
        T: Orderable,
    {
        OrderBy::new_opt(self.name, self.get, true, self.index)
    }
}
