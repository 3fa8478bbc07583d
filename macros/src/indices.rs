//! The check stage for indices: resolves each `#[index]` on a field and each
//! struct-level composite `#[index((a, b))]` into an [`IndexModel`], reporting what
//! cannot work. Whether a key type is usable (`Ord + Hash + ...`) is checked by the
//! compiler through a generated `IndexKey` bound, spanned on the field's type; only
//! `f32`/`f64`, the common mistake, are refused here by name, with one clear error.

use std::collections::BTreeMap;

use proc_macro2::Span;

use crate::ctx::Ctx;
use crate::model::*;
use crate::names::unraw;
use crate::types::{is_copy_primitive, is_string, wrapped};

pub fn indices(ctx: &Ctx, model: &Model) -> Vec<IndexModel> {
    let mut out = Vec::new();
    let id_field = model.id.as_ref().map(|id| &id.ident);
    for field in &model.fields {
        // A #[belongs_to] field is indexed (non-unique unless it says otherwise), so
        // children are found in time proportional to their number.
        let implied;
        let is_id = Some(&field.ident) == id_field;
        let index = match (&field.index, &field.belongs_to) {
            (Some(index), _) => index,
            // One-to-one: the id is the foreign key. Its index is unique (ids are)
            // and hidden: children are found through it, users use `get`.
            (None, Some(belongs_to)) if is_id => {
                out.push(IndexModel {
                    name: unraw(&field.ident),
                    hidden: true,
                    unique: true,
                    sorted: false,
                    shape: KeyShape::Plain,
                    parts: vec![part(field.ident.clone(), field.ty.clone())],
                    span: belongs_to.span,
                });
                continue;
            }
            (None, Some(belongs_to)) => {
                implied = FieldIndex { unique: None, sorted: None, each: None, span: belongs_to.span };
                &implied
            }
            (None, None) => continue,
        };
        if let (Some(each), Some(_)) = (index.each, &field.belongs_to) {
            ctx.error_at(each, "a #[belongs_to] key holds one parent id; `each` cannot be used on it");
            continue;
        }
        if is_id {
            ctx.error_at(
                index.span,
                "the #[id] field needs no #[index]: records are already looked up by id with `get`",
            );
            continue;
        }
        let (shape, key_ty) = if let Some(each) = index.each {
            match wrapped(&field.ty, "Vec") {
                Some(inner) => (KeyShape::Each, inner.clone()),
                None => {
                    ctx.error_at(
                        each,
                        format!("`each` indexes every element of a `Vec<T>` field, but `{}` is not declared as `Vec<...>`; remove `each` to index the whole value", field.ident),
                    );
                    continue;
                }
            }
        } else if let Some(inner) = wrapped(&field.ty, "Option") {
            (KeyShape::Optional, inner.clone())
        } else {
            (KeyShape::Plain, field.ty.clone())
        };
        if let Some(float) = float_name(&key_ty) {
            ctx.error(&key_ty, format!("`{}` is an `{float}`, and a float cannot be an index key: NaN breaks equality and order. Store an integer instead (e.g. cents as `i64`), or a newtype that implements `Eq`, `Ord` and `Hash`", unraw(&field.ident)));
            continue;
        }
        out.push(IndexModel {
            name: unraw(&field.ident),
            hidden: false,
            unique: index.unique.is_some(),
            sorted: index.sorted.is_some(),
            shape,
            parts: vec![part(field.ident.clone(), key_ty)],
            span: index.span,
        });
    }
    for composite in &model.composites {
        let mut parts = Vec::new();
        for name in &composite.fields {
            let text = unraw(name);
            match model.fields.iter().find(|f| unraw(&f.ident) == text) {
                None => ctx.error(
                    name,
                    format!(
                        "composite index names `{text}`, but `{}` has no field `{text}`; its fields are {}",
                        unraw(&model.ident),
                        model.fields.iter().map(|f| format!("`{}`", unraw(&f.ident))).collect::<Vec<_>>().join(", ")
                    ),
                ),
                Some(field) if float_name(&field.ty).is_some() => ctx.error(
                    name,
                    format!("`{text}` is a float, and a float cannot be part of an index key: NaN breaks equality and order. Store an integer instead (e.g. cents as `i64`), or a newtype that implements `Eq`, `Ord` and `Hash`"),
                ),
                Some(field) if wrapped(&field.ty, "Option").is_some() || wrapped(&field.ty, "Vec").is_some() => ctx.error(
                    name,
                    format!("`{text}` is an Option or a Vec; a composite index takes plain fields (index it on its own with #[index] or #[index(each)])"),
                ),
                Some(field) => parts.push(part(field.ident.clone(), field.ty.clone())),
            }
        }
        if parts.len() != composite.fields.len() {
            continue;
        }
        let name = composite.fields.iter().map(unraw).collect::<Vec<_>>().join("_and_");
        // The composite serves an equality on its first field through an auxiliary
        // map on that field, unless the field has an index of its own.
        let first = parts[0].field.clone();
        let first_ty = parts[0].key_ty.clone();
        let covered = out.iter().any(|i| i.parts.len() == 1 && i.parts[0].field == first && i.shape != KeyShape::Each);
        if !covered {
            out.push(IndexModel {
                name: format!("{name}_prefix"),
                hidden: true,
                unique: false,
                sorted: false,
                shape: KeyShape::Plain,
                parts: vec![part(first, first_ty)],
                span: composite.span,
            });
        }
        out.push(IndexModel {
            name,
            hidden: false,
            unique: composite.unique.is_some(),
            sorted: composite.sorted.is_some(),
            shape: KeyShape::Plain,
            parts,
            span: composite.span,
        });
    }
    let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
    for index in &out {
        if seen.insert(&index.name, index.span).is_some() {
            ctx.error_at(
                index.span,
                format!("two indices are named `{}`; their lookup methods would clash", index.name),
            );
        }
    }
    out
}

/// `"f64"` or `"f32"` when the type is spelled as one of them.
fn float_name(ty: &syn::Type) -> Option<&'static str> {
    let syn::Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    ["f64", "f32"].into_iter().find(|name| path.path.is_ident(name))
}

fn part(field: syn::Ident, key_ty: syn::Type) -> KeyPart {
    let arg = if is_string(&key_ty) {
        ArgKind::Str
    } else if is_copy_primitive(&key_ty) {
        ArgKind::Value
    } else {
        ArgKind::Ref
    };
    KeyPart { field, key_ty, arg }
}
