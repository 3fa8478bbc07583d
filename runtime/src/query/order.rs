//! [`OrderBy`]: one ordering key of a query.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use super::field::IndexHint;

/// An ordering of records of `E` by one field, from `Field::asc`/`desc`.
pub struct OrderBy<E> {
    pub(super) name: &'static str,
    pub(super) desc: bool,
    pub(super) hint: Option<IndexHint>,
    pub(super) cmp: Compare<E>,
    /// For an `Option` field: whether a record has `None` there (such records are
    /// not in the field's index, so an ordered walk looks for them apart).
    pub(super) absent: Option<Absent<E>>,
    /// The record's key in the field's index (`None` for an Option field's `None`),
    /// where a keyset page's walk starts.
    pub(super) seek: Seek<E>,
    /// The field's type, so a plan uses a composite index only if its part has it.
    pub(super) key_type: std::any::TypeId,
}

/// Reads a record's index key for [`OrderBy::seek`].
type Seek<E> = Arc<dyn Fn(&E) -> Option<Arc<dyn std::any::Any + Send + Sync>> + Send + Sync>;

/// Tells whether a record has no value in an `Option` ordering field.
type Absent<E> = Arc<dyn Fn(&E) -> bool + Send + Sync>;

/// Compares two records by one ordering key.
type Compare<E> = Arc<dyn Fn(&E, &E) -> Ordering + Send + Sync>;

impl<E> Clone for OrderBy<E> {
    fn clone(&self) -> Self {
        OrderBy {
            name: self.name,
            desc: self.desc,
            hint: self.hint,
            cmp: Arc::clone(&self.cmp),
            absent: self.absent.clone(),
            seek: Arc::clone(&self.seek),
            key_type: self.key_type,
        }
    }
}

impl<E> fmt::Debug for OrderBy<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, if self.desc { "desc" } else { "asc" })
    }
}

impl<E: 'static> OrderBy<E> {
    pub(crate) fn new<T: Ord + Clone + Send + Sync + 'static>(
        name: &'static str,
        get: fn(&E) -> &T,
        desc: bool,
        hint: Option<IndexHint>,
    ) -> Self {
        let cmp = move |a: &E, b: &E| {
            let order = get(a).cmp(get(b));
            if desc {
                order.reverse()
            } else {
                order
            }
        };
        let seek = move |e: &E| Some(Arc::new(get(e).clone()) as Arc<dyn std::any::Any + Send + Sync>);
        OrderBy {
            name,
            desc,
            hint: hint.filter(|h| h.sorted),
            cmp: Arc::new(cmp),
            absent: None,
            seek: Arc::new(seek),
            key_type: std::any::TypeId::of::<T>(),
        }
    }

    /// An ordering by an `Option` field: `None` first ascending, last descending.
    pub(crate) fn new_opt<T: Ord + Clone + Send + Sync + 'static>(
        name: &'static str,
        get: fn(&E) -> &Option<T>,
        desc: bool,
        hint: Option<IndexHint>,
    ) -> Self {
        let mut order = OrderBy::new(name, get, desc, hint);
        order.absent = Some(Arc::new(move |e: &E| get(e).is_none()));
        order.seek = Arc::new(move |e: &E| get(e).clone().map(|v| Arc::new(v) as Arc<dyn std::any::Any + Send + Sync>));
        // A composite index has no Option parts.
        order.key_type = std::any::TypeId::of::<Option<T>>();
        order
    }
}
