//! Choosing how a query runs, and showing it: [`Plan`].

use std::fmt;

use super::order::OrderBy;
use super::predicate::{Access, Predicate};
use crate::index::CompositeInfo;

/// An ordered walk of a sorted composite index `(a, b, ..)` within one value of
/// its first field, for `a == x` plus `order_by(b)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PrefixWalk {
    /// The composite index's position.
    pub pos: usize,
    /// The filter (`a == x`) whose value is the first part walked.
    pub filter: usize,
    pub desc: bool,
}

/// How a query runs, from [`Query::explain`](super::Query::explain). Printable.
///
/// Rules: an equality on a unique index uses it; an equality on `a` plus an
/// `order_by` on `b`, with a sorted composite index `(a, b, ..)`, walks that index
/// within `a`'s value in order and stops once the page is full; another equality on
/// an indexed field uses that index; a range on a sorted index walks that range;
/// with no such filter, an `order_by` on a sorted index plus a `limit` walks the
/// index in order and stops early; anything else scans. Every filter is still applied to the candidates, so the plan never
/// changes the results, only their cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub(crate) access: Option<Access>,
    /// `(index position, descending)` of an ordered walk.
    pub(crate) walk: Option<(usize, bool)>,
    /// An ordered walk of a composite index within one first part.
    pub(crate) prefix: Option<PrefixWalk>,
    pub(crate) index: Option<&'static str>,
    source: String,
    filters: Vec<String>,
    sort: Option<String>,
    offset: usize,
    limit: Option<usize>,
    after: Option<String>,
}

impl PartialEq for Access {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other) || format!("{self:?}") == format!("{other:?}")
    }
}
impl Eq for Access {}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::None => write!(f, "none"),
            Access::Eq { hint, .. } => write!(f, "eq({})", hint.name),
            Access::In { hint, .. } => write!(f, "in({})", hint.name),
            Access::Range { hint, .. } => write!(f, "range({})", hint.name),
            Access::Element { field, .. } => write!(f, "element({field})"),
            Access::Ids { count, .. } => write!(f, "ids({count})"),
        }
    }
}

impl Plan {
    /// The same plan, described as `source` and naming `index`.
    pub(crate) fn with_source(mut self, source: String, index: Option<&'static str>) -> Plan {
        self.source = source;
        self.index = index;
        self
    }

    /// The same plan, for a keyset page after the record with this id.
    pub(crate) fn with_after(mut self, after: Option<String>) -> Plan {
        self.after = after;
        self
    }

    /// The index the plan uses, if any.
    pub fn index(&self) -> Option<&str> {
        self.index
    }

    /// Whether the plan reads every record.
    pub fn is_scan(&self) -> bool {
        self.index.is_none()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        for filter in &self.filters {
            write!(f, "\nfilter: {filter}")?;
        }
        if let Some(sort) = &self.sort {
            write!(f, "\nsort: {sort}")?;
        }
        if let Some(after) = &self.after {
            write!(f, "\nafter: {after}")?;
        }
        if self.offset > 0 {
            write!(f, "\noffset: {}", self.offset)?;
        }
        if let Some(limit) = self.limit {
            write!(f, "\nlimit: {limit}")?;
        }
        Ok(())
    }
}

/// Picks the plan for the given query parts. `indexed` is false for a transaction's
/// view, which has no indices; `composites` are the collection's composite indices
/// with their positions.
pub(crate) fn choose<E>(
    indexed: bool,
    filters: &[Predicate<E>],
    order: &[OrderBy<E>],
    offset: usize,
    limit: Option<usize>,
    composites: &[(usize, CompositeInfo)],
) -> Plan {
    let mut plan = Plan {
        access: None,
        walk: None,
        prefix: None,
        index: None,
        source: if indexed { "scan".to_owned() } else { "scan (transaction view)".to_owned() },
        filters: filters.iter().map(|f| f.text.clone()).collect(),
        sort: (!order.is_empty())
            .then(|| format!("{}, then id", order.iter().map(|o| format!("{o:?}")).collect::<Vec<_>>().join(", "))),
        offset,
        limit,
        after: None,
    };
    if !indexed {
        return plan;
    }
    let best = filters
        .iter()
        .filter(|f| !matches!(f.access, Access::None | Access::Element { .. }))
        .min_by_key(|f| f.access.rank());
    if best.is_none_or(|b| b.access.rank() > 0) {
        if let Some(walk) = prefix_walk(filters, order, composites) {
            let (filter, first) = (&filters[walk.filter], &order[0]);
            let info = composites.iter().find(|(pos, _)| *pos == walk.pos).map(|(_, info)| *info);
            let name = info.map_or("?", |i| i.name);
            plan.index = Some(name);
            plan.prefix = Some(walk);
            plan.source = format!(
                "walk sorted index `{name}` within {}, {} {}",
                filter.text,
                first.name,
                if first.desc { "descending" } else { "ascending" }
            );
            // Ties on the walked field come in id order only from a two-field index.
            if order.len() == 1 && info.is_some_and(|i| i.parts.len() == 2) {
                plan.sort = None;
            }
            return plan;
        }
    }
    if let Some(best) = best {
        let hint = match &best.access {
            Access::Eq { hint, .. } | Access::In { hint, .. } | Access::Range { hint, .. } => *hint,
            Access::Ids { .. } => {
                // Looked up by id: the records' own map, no secondary index.
                plan.index = Some("id");
                plan.source = format!("get by id: {}", best.text);
                plan.access = Some(best.access.clone());
                return plan;
            }
            Access::None | Access::Element { .. } => return plan,
        };
        plan.index = Some(hint.name);
        plan.source = format!("index `{}`: {}", hint.name, best.text);
        plan.access = Some(best.access.clone());
        return plan;
    }
    if let ([only], Some(_)) = (order, limit) {
        if let Some(hint) = only.hint {
            plan.index = Some(hint.name);
            plan.walk = Some((hint.pos, only.desc));
            let absent = match (only.absent.is_some(), only.desc) {
                (false, _) => "",
                (true, false) => " (None first)",
                (true, true) => " (None last)",
            };
            plan.source = format!(
                "walk sorted index `{}` {}{absent}",
                hint.name,
                if only.desc { "descending" } else { "ascending" }
            );
            plan.sort = None;
        }
    }
    plan
}

/// A filter `a == x` and a first ordering on `b` that a sorted composite index
/// `(a, b, ..)` of the same types serves.
fn prefix_walk<E>(
    filters: &[Predicate<E>],
    order: &[OrderBy<E>],
    composites: &[(usize, CompositeInfo)],
) -> Option<PrefixWalk> {
    let first = order.first()?;
    filters.iter().enumerate().find_map(|(filter, f)| {
        let (Some(field), Access::Eq { key, .. }) = (f.eq_field, &f.access) else { return None };
        let head_type = (**key).type_id();
        composites.iter().find_map(|(pos, c)| {
            let fits = c.sorted
                && c.parts.len() >= 2
                && c.parts[0] == field
                && c.parts[1] == first.name
                && c.head == head_type
                && c.next == first.key_type;
            fits.then_some(PrefixWalk { pos: *pos, filter, desc: first.desc })
        })
    })
}
