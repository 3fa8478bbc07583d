//! What a collection gives and takes when a shared backend (PostgreSQL) is the
//! source of truth: a commit's writes as that backend stores them, and applying
//! commits that the backend made (this instance's and others').

use std::any::Any;
use std::sync::Arc;

use super::{change_of, flush, mismatch, Core, LockedCore, State, TypedUndo};
use crate::entity::Entity;
use crate::error::{show_id, Error, Result};
use crate::key::Key;
use crate::relation::OnDelete;

/// One record a commit wrote, as a shared backend stores it.
pub(crate) struct SharedWrite {
    /// The id as compact JSON.
    pub id: String,
    /// The record as compact JSON; `None` for a removal.
    pub value: Option<Vec<u8>>,
    /// `(unique index, key as JSON)` for every unique key the record has.
    pub unique: Vec<(&'static str, String)>,
    /// `(belongs_to field, parent id as JSON)` for every enforced foreign key; the
    /// parent is `None` when the field holds none (or several).
    pub parents: Vec<(&'static str, Option<String>)>,
    /// The typed write, `(T::Id, Option<Arc<T>>)`, to apply once committed.
    pub typed: Box<dyn Any + Send>,
}

/// The foreign keys a shared backend enforces: checked, and not `ignore`d.
pub(crate) fn enforced(spec: &crate::relation::ForeignKeySpec) -> bool {
    spec.check && spec.on_delete != OnDelete::Ignore
}

/// The record `id` of `state`, as a shared backend stores it. `checked`: a value
/// and its JSON, checked loadable when it was written; used if the record is that
/// very value.
fn shared_write_of<T: Entity>(
    name: &str,
    state: &State<T>,
    id: &T::Id,
    checked: Option<&(Arc<T>, Vec<u8>)>,
) -> Result<SharedWrite> {
    let error = |source: serde_json::Error| Error::Serde {
        collection: name.to_owned(),
        id: show_id(&id.encode_key()),
        source: Arc::new(source),
    };
    let id_json = serde_json::to_string(id).map_err(error)?;
    let record = state.records.get(id).cloned();
    let mut write =
        SharedWrite { id: id_json, value: None, unique: Vec::new(), parents: Vec::new(), typed: Box::new(()) };
    if let Some(record) = &record {
        write.value = Some(match checked {
            Some((value, json)) if Arc::ptr_eq(value, record) => json.clone(),
            _ => flush::compact::<T>(name, id, record)?.into_vec(),
        });
        for index in state.indices.iter().filter(|index| index.kind().unique) {
            for key in index.keys_json(record) {
                write.unique.push((index.name(), key));
            }
        }
        for spec in T::__foreign_keys().into_iter().filter(enforced) {
            let Some(index) = state.indices.get(spec.index) else { mismatch::<T>("a foreign key index") };
            let mut keys = index.keys_json(record);
            let parent = if keys.len() == 1 { keys.pop() } else { None };
            write.parents.push((spec.field, parent));
        }
    }
    write.typed = Box::new((id.clone(), record));
    Ok(write)
}

impl<T: Entity> Core<T> {
    /// Every record, as a shared backend stores it (copying a store into one).
    pub(super) fn shared_all(&self) -> Result<Vec<SharedWrite>> {
        let state = self.state.read();
        state.records.keys().map(|id| shared_write_of(self.name, &state, id, None)).collect()
    }
}

impl<T: Entity> LockedCore<'_, T> {
    /// The record `id` as this commit left it, as a shared backend stores it.
    pub(super) fn shared_write_typed(&self, id: &T::Id) -> Result<SharedWrite> {
        shared_write_of(self.core.name, &self.state, id, self.last_json.as_ref())
    }

    /// Applies a committed commit's writes to this collection: every record first
    /// leaves the indices, then the new values come in, so a commit that swapped
    /// two unique keys applies in any order. The changes are published by
    /// `publish`, as a local commit's are.
    pub(super) fn put_all(&mut self, writes: Vec<(T::Id, Option<Arc<T>>)>) {
        // The last write of an id wins; its old value is the one before the commit.
        // (A reload hands over every changed record of a table at once: by hash.)
        let mut last: Vec<(T::Id, Option<Arc<T>>)> = Vec::with_capacity(writes.len());
        let mut at: std::collections::HashMap<T::Id, usize, foldhash::fast::RandomState> =
            std::collections::HashMap::with_capacity_and_hasher(writes.len(), Default::default());
        for (id, value) in writes {
            match at.get(&id) {
                Some(&i) => last[i].1 = value,
                None => {
                    at.insert(id.clone(), last.len());
                    last.push((id, value));
                }
            }
        }
        let olds: Vec<Option<Arc<T>>> = last.iter().map(|(id, _)| self.state.put(id, None, false)).collect();
        for ((id, new), old) in last.into_iter().zip(olds) {
            if let Some(n) = new.as_ref().and_then(|v| crate::entity::EntityInternals::__id_counter(&**v)) {
                self.state.next_auto = self.state.next_auto.max(n.saturating_add(1));
            }
            if new.is_some() {
                self.state.put(&id, new.clone(), false);
            }
            if change_of(old.clone(), new.clone()).is_some() {
                self.applied.push(TypedUndo { id, old, written: new, dirty: None, versions: Vec::new() });
            }
        }
    }

    /// Applies writes given as JSON: `(id, record or None)`.
    pub(super) fn put_json(&mut self, writes: &[(&str, Option<&str>)]) -> std::result::Result<(), String> {
        let mut typed = Vec::with_capacity(writes.len());
        for (id, value) in writes {
            let id: T::Id = serde_json::from_str(id).map_err(|e| format!("bad id {id}: {e}"))?;
            let value: Option<T> = value
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| format!("bad record {}: {e}", id.encode_key()))?;
            typed.push((id, value.map(Arc::new)));
        }
        self.put_all(typed);
        Ok(())
    }

    /// Applies typed writes made by [`shared_write_typed`](Self::shared_write_typed).
    pub(super) fn put_typed(&mut self, writes: Vec<Box<dyn Any + Send>>) {
        let mut typed = Vec::with_capacity(writes.len());
        for write in writes {
            let Ok(write) = write.downcast::<(T::Id, Option<Arc<T>>)>() else { mismatch::<T>("a write") };
            typed.push(*write);
        }
        self.put_all(typed);
    }
}
