//! Checks of meaning that need only this struct. Checks that need another entity's
//! definition are left to the compiler, through generated items (see `generate`).

use crate::ctx::Ctx;
use crate::model::*;

const RESERVED_COLLECTIONS: [&str; 3] = ["wal", "indices", "shelf"];
const WINDOWS_RESERVED: [&str; 4] = ["con", "prn", "aux", "nul"];

pub fn check(ctx: &Ctx, model: &Model) {
    if model.id.is_none() {
        ctx.error(
            &model.ident,
            format!("`{}` has no #[id] field; mark the field that identifies a record with #[id] (or #[id(auto)] for an assigned integer)", model.ident),
        );
    }
    check_collection_name(ctx, model);
    check_storage(ctx, &model.storage);
    check_shard(ctx, &model.storage);
}

fn check_collection_name(ctx: &Ctx, model: &Model) {
    let name = &model.collection;
    let valid_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    let starts_with_letter = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if !valid_chars || !starts_with_letter || name.len() > 64 {
        ctx.error_at(
            model.collection_span,
            format!("collection name `{name}` is not usable as a directory name; use 1 to 64 characters a-z, 0-9, `_` or `-`, starting with a letter, e.g. #[entity(collection = \"users\")]"),
        );
    } else if RESERVED_COLLECTIONS.contains(&name.as_str())
        || WINDOWS_RESERVED.contains(&name.as_str())
        || ((name.starts_with("com") || name.starts_with("lpt"))
            && name.len() == 4
            && name.ends_with(|c: char| c.is_ascii_digit()))
    {
        ctx.error_at(
            model.collection_span,
            format!("collection name `{name}` is reserved; choose another with #[entity(collection = \"...\")]"),
        );
    }
}

fn check_storage(ctx: &Ctx, storage: &Storage) {
    if let (Some((_, span)), false) = (storage.ttl, storage.kind == StorageKind::Memory) {
        ctx.error_at(
            span,
            "`ttl` expires the records of a `memory` collection; write #[storage(memory, ttl = \"...\")], or remove `ttl` (persisted records do not expire)",
        );
    }
    if storage.kind == StorageKind::Memory {
        if let Some(span) = storage.wal {
            ctx.error_at(
                span,
                "`wal` cannot be combined with `memory`: a memory collection is never written to disk; remove `wal`",
            );
        }
        if let Some(span) = storage.compress {
            ctx.error_at(
                span,
                "`compress` cannot be combined with `memory`: a memory collection is never written to disk; remove `compress`",
            );
        }
    }
}

/// `shard = N` needs per-record files, and N from 1 to 3 (16 to 4096 directories).
fn check_shard(ctx: &Ctx, storage: &Storage) {
    let Some((n, span)) = storage.shard else { return };
    if storage.kind != StorageKind::PerRecord {
        ctx.error_at(span, "`shard` spreads per-record files over subdirectories; it needs `per_record` storage");
    } else if !(1..=3).contains(&n) {
        ctx.error_at(span, format!("`shard = {n}` is out of range: use 1 (16 directories), 2 (256) or 3 (4096)"));
    }
}
