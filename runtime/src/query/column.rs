//! [`Column`]: what projections and aggregates read from a record (a field, or a
//! tuple of fields), and [`Numeric`]: the field types `sum` adds up.

use std::any::Any;

use super::field::{Field, IndexHint, OptField};

/// A value read from each record: a field from `E::fields()` (an `Option` field
/// reads as `Option<T>`), or a tuple of up to three of them.
///
/// `select`, `distinct`, `group_by`, `sum`, `min` and `max` take one; the result
/// types follow from the field types, so `let v: Vec<u32> = q.select(f.name)` does
/// not compile when `name` is a `String`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a field of `{E}`",
    label = "expected a field from `{E}::fields()`, or a tuple of them",
    note = "select/distinct/group_by/sum/min/max read fields: pass e.g. `{E}::fields().name` or `(f.a, f.b)`"
)]
pub trait Column<E> {
    /// The value read from a record.
    type Value: Clone + Send + Sync + 'static;
    /// The column's name, for plans.
    fn column_name(&self) -> String;
    /// The value of one record.
    fn value(&self, record: &E) -> Self::Value;
    /// The single-field index on the column, if any.
    #[doc(hidden)]
    fn index_hint(&self) -> Option<IndexHint> {
        None
    }
    /// The value of records whose index key is `key` (a `&K`, the index key type);
    /// `None` when the key is of another type.
    #[doc(hidden)]
    fn value_of_key(&self, _key: &dyn Any) -> Option<Self::Value> {
        None
    }
    /// The value of records the index does not hold (`None` for an `Option`
    /// field); `None` if every record is in the index.
    #[doc(hidden)]
    fn unindexed_value(&self) -> Option<Self::Value> {
        None
    }
    /// The `TypeId` of the index key the column's values are.
    #[doc(hidden)]
    fn key_type(&self) -> Option<std::any::TypeId> {
        None
    }
}

impl<E, T: Clone + Send + Sync + 'static> Column<E> for Field<E, T> {
    type Value = T;
    fn column_name(&self) -> String {
        self.name().to_owned()
    }
    fn value(&self, record: &E) -> T {
        (self.getter())(record).clone()
    }
    fn index_hint(&self) -> Option<IndexHint> {
        self.hint()
    }
    fn value_of_key(&self, key: &dyn Any) -> Option<T> {
        key.downcast_ref::<T>().cloned()
    }
    fn key_type(&self) -> Option<std::any::TypeId> {
        Some(std::any::TypeId::of::<T>())
    }
}

impl<E, T: Clone + Send + Sync + 'static> Column<E> for OptField<E, T> {
    type Value = Option<T>;
    fn column_name(&self) -> String {
        self.name().to_owned()
    }
    fn value(&self, record: &E) -> Option<T> {
        (self.getter())(record).clone()
    }
    fn index_hint(&self) -> Option<IndexHint> {
        self.hint()
    }
    fn value_of_key(&self, key: &dyn Any) -> Option<Option<T>> {
        key.downcast_ref::<T>().cloned().map(Some)
    }
    fn unindexed_value(&self) -> Option<Option<T>> {
        Some(None)
    }
    fn key_type(&self) -> Option<std::any::TypeId> {
        Some(std::any::TypeId::of::<T>())
    }
}

impl<E, A: Column<E>, B: Column<E>> Column<E> for (A, B) {
    type Value = (A::Value, B::Value);
    fn column_name(&self) -> String {
        format!("({}, {})", self.0.column_name(), self.1.column_name())
    }
    fn value(&self, record: &E) -> Self::Value {
        (self.0.value(record), self.1.value(record))
    }
}

impl<E, A: Column<E>, B: Column<E>, C: Column<E>> Column<E> for (A, B, C) {
    type Value = (A::Value, B::Value, C::Value);
    fn column_name(&self) -> String {
        format!("({}, {}, {})", self.0.column_name(), self.1.column_name(), self.2.column_name())
    }
    fn value(&self, record: &E) -> Self::Value {
        (self.0.value(record), self.1.value(record), self.2.value(record))
    }
}

/// A value type `group_by`, `distinct`, `min` and `max` can use: one with a total
/// order (`Ord`), so groups and distinct values come in key order.
#[diagnostic::on_unimplemented(
    message = "cannot group by, take distinct values of, or take min/max of `{Self}`: it has no total order (`Ord`)",
    label = "`{Self}` does not implement `Ord`",
    note = "group_by/distinct/min/max need an Ord field; for f64 store an integer (e.g. cents) or a wrapper that implements Ord"
)]
pub trait Groupable: Ord {}
impl<T: Ord> Groupable for T {}

/// A field type `sum` adds up: integers (summed as `i128`/`u128`, so no sum of
/// `u64`s overflows), floats (as `f64`) and `Option`s of them (`None` adds nothing,
/// as SQL's `SUM` skips `NULL`).
#[diagnostic::on_unimplemented(
    message = "cannot sum a field of type `{Self}`: `sum` needs a numeric field",
    label = "`{Self}` is not a number",
    note = "sum takes integer or float fields (or Options of them); to count records per group use `.count()`, and for the smallest or largest value of any Ord field use `.min(..)`/`.max(..)`"
)]
pub trait Numeric {
    /// The type of the sum.
    type Sum: Copy + Default + Send + Sync + PartialEq + std::fmt::Debug + 'static;
    /// Adds the value to `sum`.
    fn add_to(&self, sum: &mut Self::Sum);
}

macro_rules! numeric {
    ($sum:ty: $($t:ty),*) => {$(
        impl Numeric for $t {
            type Sum = $sum;
            fn add_to(&self, sum: &mut $sum) {
                *sum += <$sum>::from(*self);
            }
        }
    )*};
}
numeric!(u128: u8, u16, u32, u64);
numeric!(i128: i8, i16, i32, i64);
numeric!(f64: f32, f64);

impl Numeric for usize {
    type Sum = u128;
    fn add_to(&self, sum: &mut u128) {
        // usize is at most 64 bits on every supported target.
        *sum += *self as u128;
    }
}

impl Numeric for isize {
    type Sum = i128;
    fn add_to(&self, sum: &mut i128) {
        *sum += *self as i128;
    }
}

impl<T: Numeric> Numeric for Option<T> {
    type Sum = T::Sum;
    fn add_to(&self, sum: &mut T::Sum) {
        if let Some(v) = self {
            v.add_to(sum);
        }
    }
}
