//! [`closure`]: the transitive closure of a relation, breadth first, with a depth
//! limit and cycle safety.

use std::collections::{BTreeMap, VecDeque};

use crate::error::Result;

/// Every node reachable from `start` by following `next` at most `max_depth` times,
/// each with its distance (the smallest number of steps), in id order. Start nodes
/// are included at depth 0.
///
/// `next` returns a node's direct neighbours; it is typically a `by_*` lookup or a
/// relationship accessor, e.g. `|name| Ok(deps.by_package(name).iter().map(|d|
/// d.target.clone()).collect())`. A node is expanded once, however many paths reach
/// it, so cycles end the walk instead of looping.
///
/// Cost: `next` runs once per reached node closer than `max_depth` (O(V) lookups,
/// each an index probe for a `by_*` lookup), and the result holds O(V) ids; the
/// visited set is a `BTreeMap` (O(log V) per edge). With `usize::MAX` as the limit
/// the walk covers the whole reachable graph.
///
/// ```
/// let edges = [(1, 2), (2, 3), (3, 1), (3, 4), (4, 5)];
/// let next = |n: &u32| -> shelf::Result<Vec<u32>> {
///     Ok(edges.iter().filter(|(a, _)| a == n).map(|(_, b)| *b).collect())
/// };
/// assert_eq!(shelf::closure([1], 2, next)?, [(1, 0), (2, 1), (3, 2)]);
/// assert_eq!(shelf::closure([1], usize::MAX, next)?, [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4)]);
/// # Ok::<(), shelf::Error>(())
/// ```
pub fn closure<I: Ord + Clone>(
    start: impl IntoIterator<Item = I>,
    max_depth: usize,
    mut next: impl FnMut(&I) -> Result<Vec<I>>,
) -> Result<Vec<(I, usize)>> {
    let mut depth: BTreeMap<I, usize> = BTreeMap::new();
    let mut queue = VecDeque::new();
    for node in start {
        if depth.insert(node.clone(), 0).is_none() {
            queue.push_back((node, 0));
        }
    }
    while let Some((node, d)) = queue.pop_front() {
        if d >= max_depth {
            continue;
        }
        for neighbour in next(&node)? {
            if !depth.contains_key(&neighbour) {
                depth.insert(neighbour.clone(), d + 1);
                queue.push_back((neighbour, d + 1));
            }
        }
    }
    Ok(depth.into_iter().collect())
}
