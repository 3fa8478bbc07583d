//! A collection's part of a flush.
//!
//! The snapshot is taken under the writer lock and costs no more than moving the map
//! of dirty marks. Everything else happens after the writer lock is let go: the
//! values as of the snapshot are read under short read locks (a write since the
//! snapshot saved the value it replaced, its *preimage*), then serialized,
//! compressed and staged. Writers go on at memory speed meanwhile.
//!
//! A mark taken by a flush is gone once that flush is durable; if the flush fails,
//! each mark goes back unless a later write set a newer one. A whole-file collection
//! keeps the line of every record (`Core::lines`), so a flush serializes only the
//! records that changed and rewrites the file from the lines.

use std::sync::Arc;

use super::lines::Lines;
use super::{to_json, with_room, Core, Marks};
use crate::backend::{RawRecord, RecordChange, Stage, Staged};
use crate::entity::Entity;
use crate::error::{show_id, Error, Result};
use crate::index_file;
use crate::key::Key;

/// One collection's part of a flush in progress; see the module docs.
/// Its [`Staged::stage`] reads the snapshot's values and stages them; call it
/// without the writer lock.
pub(crate) trait FlushPart: Staged + Send {
    /// Ends the part once the batch is durable. Dropping a part without this puts
    /// its dirty marks back (the flush failed).
    fn durable(self: Box<Self>);
}

/// Ids read per read lock while a flush collects the values of its snapshot.
const READ_CHUNK: usize = 512;

pub(super) struct Snapshot<'a, T: Entity> {
    core: &'a Core<T>,
    /// The dirty marks the snapshot took.
    taken: Marks<T::Id>,
    /// The whole-file rewrite request the snapshot covers.
    rewrite: Option<u64>,
    /// Whether to write the index files that changed.
    index_files: bool,
    /// `(index position, version)` of each index file staged.
    indices: Vec<(usize, u64)>,
    durable: bool,
    /// Ids and values to hand back to the writers (see `Garbage`) when the part
    /// ends, all at once: see [`hand_over`].
    back_ids: Vec<T::Id>,
    back_values: Vec<Arc<T>>,
}

impl<'a, T: Entity> Snapshot<'a, T> {
    /// Takes the dirty marks; `None` when nothing is due. Under the writer lock.
    pub fn take(core: &'a Core<T>, index_files: bool) -> Option<Self> {
        let mut state = core.write_state();
        let index_due =
            index_files && core.index_files && state.index_versions.iter().any(|(version, written)| version != written);
        if state.dirty.is_empty() && state.rewrite.is_none() && !index_due {
            return None;
        }
        // Both new maps start large enough that no write grows them under the lock
        // (see `State::marks_capacity`): a write during the flush saves a preimage
        // of any record it replaces, at most one per record.
        // The last flush's emptied maps serve when they are large enough (see `Spare`).
        let capacity = state.marks_capacity();
        let marks = with_room(state.spare.marks.take(), capacity);
        let taken = std::mem::replace(&mut state.dirty, marks);
        state.in_flight = taken.len();
        state.preimages = Some(with_room(state.spare.preimages.take(), capacity));
        Some(Snapshot {
            core,
            taken,
            rewrite: state.rewrite,
            index_files,
            indices: Vec::new(),
            durable: false,
            back_ids: Vec::new(),
            back_values: Vec::new(),
        })
    }

    /// Stages the index files whose index changed since they were written. Only the
    /// final flush of `close` asks, when no writer is left to wait for the read lock.
    fn stage_index_files(&mut self, out: &mut dyn Stage) -> Result<()> {
        let state = self.core.state.read();
        for (pos, index) in state.indices.iter().enumerate() {
            let (version, written) = state.index_versions[pos];
            if !self.core.index_files || version == written {
                continue;
            }
            let bytes = index_file::write(index.as_ref(), state.fingerprint, state.records.len()).map_err(|e| {
                Error::Serde {
                    collection: self.core.name.to_owned(),
                    id: format!("index {}", index.name()),
                    source: Arc::new(e),
                }
            })?;
            out.index(index.name(), bytes)?;
            self.indices.push((pos, version));
        }
        Ok(())
    }
}

/// The value of every taken id as of the snapshot (`None`: removed), and the
/// preimages writers saved meanwhile (taken out of the collection: once the values
/// are read, writes no longer need to save them).
#[allow(clippy::type_complexity)]
fn read_values<'m, T: Entity>(
    core: &Core<T>,
    taken: &'m Marks<T::Id>,
) -> (Vec<(&'m T::Id, Option<Arc<T>>)>, Vec<(T::Id, Option<Arc<T>>)>) {
    let ids: Vec<&T::Id> = taken.keys().collect();
    let mut values = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(READ_CHUNK) {
        let state = core.state.read();
        for &id in chunk {
            let value = match state.preimages.as_ref().and_then(|p| p.get(id)) {
                Some(before) => before.clone(),
                None => state.records.get(id).cloned(),
            };
            values.push((id, value));
        }
    }
    let mut replaced = Vec::new();
    let preimages = core.write_state().preimages.take();
    if let Some(mut preimages) = preimages {
        replaced.extend(preimages.drain());
        core.write_state().spare.preimages = Some(preimages);
    }
    (values, replaced)
}

impl<T: Entity> Staged for Snapshot<'_, T> {
    fn stage(&mut self, out: &mut dyn Stage) -> Result<()> {
        let core = self.core;
        let (values, replaced) = read_values(core, &self.taken);
        // What the flush is done with goes back to the writers that allocated it
        // (see `Garbage`), when the part ends.
        for (id, value) in replaced {
            self.back_ids.push(id);
            self.back_values.extend(value);
        }
        if core.whole_file {
            let mut lines = core.lines.lock();
            for (id, value) in &values {
                match value {
                    Some(value) => lines.insert((*id).clone(), compact::<T>(core.name, id, value)?),
                    None => lines.remove(*id),
                };
            }
            let any = !values.is_empty();
            self.back_values.extend(values.into_iter().filter_map(|(_, value)| value));
            if any || self.rewrite.is_some() {
                out.whole(lines.jsonl())?;
            }
        } else {
            let mut changes = Vec::with_capacity(values.len());
            for (id, value) in &values {
                let bytes = match value {
                    Some(value) => Some(to_json(core.name, *id, &**value)?),
                    None => None,
                };
                changes.push(RecordChange { stem: core.stem(*id), bytes });
            }
            self.back_values.extend(values.into_iter().filter_map(|(_, value)| value));
            if !changes.is_empty() {
                out.records(changes)?;
            }
        }
        if self.index_files {
            self.stage_index_files(out)?;
        }
        Ok(())
    }
}

impl<T: Entity> FlushPart for Snapshot<'_, T> {
    fn durable(mut self: Box<Self>) {
        self.durable = true;
    }
}

impl<T: Entity> Drop for Snapshot<'_, T> {
    fn drop(&mut self) {
        if self.durable {
            // The marks' ids go back to the writers that cloned them (see `Garbage`).
            self.back_ids.extend(self.taken.drain().map(|(id, _)| id));
        }
        let mut state = self.core.write_state();
        state.in_flight = 0;
        // Under the writer lock, once per flush: into an empty list (the writers
        // dropped the last flush's long since, as a rule) by a swap, in constant
        // time; appending a flush's 100,000 values copied 800 KB there. The
        // buffers swapped out are freed with the part, after the lock.
        hand_over(&mut state.garbage.ids, &mut self.back_ids);
        hand_over(&mut state.garbage.values, &mut self.back_values);
        if let Some(mut preimages) = state.preimages.take() {
            // Only when `stage` did not run, or failed before it read the values.
            preimages.clear();
            state.spare.preimages = Some(preimages);
        }
        if self.durable {
            for &(pos, version) in &self.indices {
                state.index_versions[pos].1 = version;
            }
            if self.rewrite.is_some() && state.rewrite == self.rewrite {
                state.rewrite = None;
            }
        } else {
            // Not durable: the marks go back, except where a later write set a newer one.
            for (id, seq) in self.taken.drain() {
                state.dirty.entry(id).or_insert(seq);
            }
        }
        state.spare.marks = Some(std::mem::take(&mut self.taken));
    }
}

/// Moves `from` to the end of `to`: by swapping them when `to` is empty.
fn hand_over<V>(to: &mut Vec<V>, from: &mut Vec<V>) {
    if to.is_empty() {
        std::mem::swap(to, from);
    } else {
        to.append(from);
    }
}

/// A record's line in a collection file: compact JSON.
pub(super) fn compact<T: Entity>(collection: &str, id: &T::Id, value: &T) -> Result<Box<[u8]>> {
    serde_json::to_vec(value).map(Vec::into_boxed_slice).map_err(|source| Error::Serde {
        collection: collection.to_owned(),
        id: show_id(&id.encode_key()),
        source: Arc::new(source),
    })
}

/// Keeps the line of a record just loaded: the line as read from a collection file
/// (unknown fields and all, until the record changes), or its compact JSON when it
/// came from another layout (a migration).
pub(super) fn load_line<T: Entity>(
    lines: &mut Lines<T::Id>,
    value: &T,
    raw: &RawRecord<'_>,
    from_whole_file: bool,
) -> Result<()> {
    if from_whole_file {
        lines.load(value.id().clone(), raw.bytes.trim_ascii());
    } else {
        lines.load(value.id().clone(), &compact(std::any::type_name::<T>(), value.id(), value)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::hand_over;

    #[test]
    fn handing_over_swaps_into_an_empty_list_and_appends_to_a_full_one() {
        let mut to: Vec<u32> = Vec::with_capacity(1);
        let mut from = vec![1, 2, 3];
        let buffer = from.as_ptr();
        hand_over(&mut to, &mut from);
        assert_eq!(to, [1, 2, 3]);
        assert_eq!(to.as_ptr(), buffer, "the list was swapped, not copied");
        assert!(from.is_empty());
        let mut more = vec![4];
        hand_over(&mut to, &mut more);
        assert_eq!(to, [1, 2, 3, 4]);
        assert!(more.is_empty());
    }
}
