//! Predicates: a test on a record, plus what an index could answer of it.

use std::any::Any;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use super::field::IndexHint;

/// What an index can answer of a predicate: a superset of the records it matches.
#[derive(Clone)]
pub(crate) enum Access {
    None,
    Eq {
        hint: IndexHint,
        key: Arc<dyn Any + Send + Sync>,
    },
    In {
        hint: IndexHint,
        keys: Vec<Arc<dyn Any + Send + Sync>>,
    },
    Range {
        hint: IndexHint,
        lo: Bound<Arc<dyn Any + Send + Sync>>,
        hi: Bound<Arc<dyn Any + Send + Sync>>,
    },
    /// Records with one of `count` ids (an `Arc<Vec<E::Id>>`, sorted and without
    /// repeats), looked up by id: a `through` relationship's targets.
    Ids {
        ids: Arc<dyn Any + Send + Sync>,
        count: usize,
    },
    /// An element of a `Vec` field, answered by an `#[index(each)]` on the field if
    /// the collection has one (the query resolves it into `Eq` when filtering).
    Element {
        field: &'static str,
        key: Arc<dyn Any + Send + Sync>,
        key_type: std::any::TypeId,
    },
}

impl Access {
    /// Lower is better: a unique equality, an equality, a list, a range.
    pub fn rank(&self) -> u8 {
        match self {
            Access::Eq { hint, .. } if hint.unique => 0,
            Access::Ids { .. } => 0,
            Access::Eq { .. } | Access::Element { .. } => 1,
            Access::In { .. } => 2,
            Access::Range { .. } => 3,
            Access::None => 4,
        }
    }
}

/// A condition on records of `E`, built from typed fields:
/// `User::fields().age.gt(17)`, combined with [`and`](Predicate::and),
/// [`or`](Predicate::or) and [`not`](Predicate::not).
pub struct Predicate<E> {
    pub(crate) test: Arc<dyn Fn(&E) -> bool + Send + Sync>,
    pub(crate) access: Access,
    /// Whether `access` finds exactly the matching records (not a superset), so an
    /// index count answers `count()` for this predicate alone.
    pub(crate) exact: bool,
    pub(crate) text: String,
    /// For `field == value` on a plain field: the field's name, so a plan can find a
    /// composite index that starts with it.
    pub(crate) eq_field: Option<&'static str>,
}

impl<E> Clone for Predicate<E> {
    fn clone(&self) -> Self {
        Predicate {
            test: Arc::clone(&self.test),
            access: self.access.clone(),
            exact: self.exact,
            text: self.text.clone(),
            eq_field: self.eq_field,
        }
    }
}

impl<E> fmt::Debug for Predicate<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<E: 'static> Predicate<E> {
    /// A predicate; an `access` other than `None` must find exactly the records that
    /// `test` accepts (combinators that only narrow it clear `exact`).
    pub(crate) fn leaf(text: String, access: Access, test: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self {
        let exact = !matches!(access, Access::None);
        Predicate { test: Arc::new(test), access, exact, text, eq_field: None }
    }

    /// The same predicate, marked as `field == value` on the named field.
    pub(crate) fn on_field(mut self, field: &'static str) -> Self {
        self.eq_field = Some(field);
        self
    }

    /// Whether a record matches.
    pub fn matches(&self, record: &E) -> bool {
        (self.test)(record)
    }

    /// Both conditions. An index that serves either side serves the whole.
    pub fn and(self, other: Predicate<E>) -> Predicate<E> {
        let (a, b) = (self.test, other.test);
        let access = if self.access.rank() <= other.access.rank() { self.access } else { other.access };
        let mut both =
            Predicate::leaf(format!("({} and {})", self.text, other.text), access, move |e: &E| a(e) && b(e));
        both.exact = false;
        both
    }

    /// Either condition.
    pub fn or(self, other: Predicate<E>) -> Predicate<E> {
        let (a, b) = (self.test, other.test);
        Predicate::leaf(format!("({} or {})", self.text, other.text), Access::None, move |e: &E| a(e) || b(e))
    }

    /// The opposite condition.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Predicate<E> {
        let a = self.test;
        Predicate::leaf(format!("not {}", self.text), Access::None, move |e: &E| !a(e))
    }
}
