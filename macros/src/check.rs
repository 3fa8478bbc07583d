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
    not_built_yet(ctx, model);
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

/// Parsed, but not implemented yet: a clear error instead of a silent no-op.
fn not_built_yet(ctx: &Ctx, model: &Model) {
    let storage = &model.storage;
    if storage.kind == StorageKind::CollectionFile {
        if let Some(span) = storage.kind_span {
            ctx.error_at(
                span,
                "`collection_file` storage is not built yet in this version of Shelf; use per_record or memory",
            );
        }
    }
    if storage.kind != StorageKind::Memory {
        if let Some(span) = storage.compress {
            ctx.error_at(span, "the `compress` modifier is not built yet in this version of Shelf; remove it");
        }
    }
    if let Some((_, span)) = storage.shard {
        ctx.error_at(span, "`shard` is not built yet in this version of Shelf; remove it");
    }
}
