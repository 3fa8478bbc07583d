//! The check stage for relationships: resolves `#[belongs_to]` fields into
//! [`BelongsModel`]s. What needs the other entity's definition (its id type, its
//! fields) is checked by the compiler through generated items; see `gen_relation`.

use quote::ToTokens;
use syn::spanned::Spanned;

use crate::ctx::Ctx;
use crate::model::*;
use crate::names::{self, unraw};
use crate::types::wrapped;

pub fn belongs(ctx: &Ctx, model: &Model, indices: &[IndexModel]) -> Vec<BelongsModel> {
    let parents: Vec<String> = model
        .fields
        .iter()
        .filter_map(|f| f.belongs_to.as_ref())
        .map(|b| b.parent.to_token_stream().to_string())
        .collect();
    let mut out = Vec::new();
    for field in &model.fields {
        let Some(belongs_to) = &field.belongs_to else { continue };
        let (optional, key_ty) = match wrapped(&field.ty, "Option") {
            Some(inner) => (true, inner.clone()),
            None => (false, field.ty.clone()),
        };
        if belongs_to.on_delete == OnDelete::Detach && !optional {
            ctx.error_at(
                belongs_to.on_delete_span.unwrap_or(belongs_to.span),
                format!("`on_delete = detach` sets the key to None, but `{}` is not an Option; make it `Option<...>`, or use `restrict` or `cascade`", unraw(&field.ident)),
            );
        }
        let name = unraw(&field.ident);
        let Some(index) = indices.iter().position(|i| i.name == name && i.parts.len() == 1) else { continue };
        let accessor_name = name.strip_suffix("_id").filter(|s| !s.is_empty()).unwrap_or(&name);
        let Some(accessor) = names::ident(accessor_name, field.ident.span()) else {
            ctx.error(
                &field.ident,
                format!("the accessor of a #[belongs_to] field is named after the field without `_id`, and `{accessor_name}` cannot name a method; rename the field"),
            );
            continue;
        };
        let parent_text = belongs_to.parent.to_token_stream().to_string();
        out.push(BelongsModel {
            field: field.ident.clone(),
            key_ty,
            optional,
            parent: belongs_to.parent.clone(),
            on_delete: belongs_to.on_delete,
            check: belongs_to.check,
            index,
            accessor,
            only_one_to_parent: parents.iter().filter(|p| **p == parent_text).count() == 1,
            ty_span: field.ty.span(),
        });
    }
    out
}
