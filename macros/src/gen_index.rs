//! Generation for indices: the `__indices()` list of the `Entity` impl, the
//! `IndexKey` assertions, and the typed lookup methods on the handle.
//!
//! Lookup methods are named `by_<index>`, `count_by_<index>` (non-unique) and
//! `range_by_<index>` (sorted); a unique index adds `update_by_<index>` and (on
//! plain fields) `upsert_by_<index>`. `Collection` has no methods with these
//! prefixes, so generated names never shadow the handle's own.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::model::*;

/// The key type of an index: the part's type, or a tuple for a composite.
fn key_type(index: &IndexModel) -> TokenStream {
    match index.parts.as_slice() {
        [one] => {
            let ty = &one.key_ty;
            quote!(#ty)
        }
        parts => {
            let tys = parts.iter().map(|p| &p.key_ty);
            quote!((#(#tys,)*))
        }
    }
}

/// Where errors about an index's key type belong: the field's type for a one-field
/// index, the struct-level attribute for a composite.
fn key_span(index: &IndexModel) -> proc_macro2::Span {
    match index.parts.as_slice() {
        [one] => one.key_ty.span(),
        _ => index.span,
    }
}

/// The body of `__indices()`: one boxed `Index` per declared index.
pub fn index_list(p: &TokenStream, indices: &[IndexModel]) -> TokenStream {
    let items = indices.iter().map(|index| {
        let name = &index.name;
        let unique = index.unique;
        let sorted = index.sorted;
        let key_ty = key_type(index);
        let visit = match (index.shape, index.parts.as_slice()) {
            (KeyShape::Plain, [one]) => {
                let f = &one.field;
                quote!(visit(&entity.#f))
            }
            (KeyShape::Optional, [one]) => {
                let f = &one.field;
                quote!(if let ::core::option::Option::Some(key) = &entity.#f { visit(key) })
            }
            (KeyShape::Each, [one]) => {
                let f = &one.field;
                quote!(for key in &entity.#f { visit(key) })
            }
            (_, parts) => {
                let fs = parts.iter().map(|p| &p.field);
                quote!(visit(&(#(::core::clone::Clone::clone(&entity.#fs),)*)))
            }
        };
        let span = key_span(index);
        // Through the key probe: a key type that is not an `IndexKey` is reported
        // once, by `key_assertions`, not here too.
        let kind = quote!(#p::IndexKind { unique: #unique, sorted: #sorted });
        let keys_of = quote!(|entity: &Self, visit: &mut dyn ::core::ops::FnMut(&#key_ty)| { #visit });
        if index.parts.len() > 1 {
            // A composite: its field names let plans walk it by its first field.
            let parts = index.parts.iter().map(|part| crate::names::unraw(&part.field));
            return quote_spanned! {span=>
                (&#p::KeyProbe::<#key_ty>::new()).composite(#name, #kind, &[#(#parts),*], #keys_of)
            };
        }
        quote_spanned! {span=>
            (&#p::KeyProbe::<#key_ty>::new()).index(#name, #kind, #keys_of)
        }
    });
    quote!(::std::vec![#(#items),*])
}

/// The body of `__index_fields()`: per index name, its fields and whether it is
/// `each`; and the same for every `through` pair index the entity may have (see
/// [`through_pair_indices`]; an entry whose index is absent is never looked up).
pub fn index_fields(model: &Model, indices: &[IndexModel]) -> TokenStream {
    let mut items: Vec<TokenStream> = indices
        .iter()
        .map(|index| {
            let name = &index.name;
            let fields = index.parts.iter().map(|part| model.key_of(&part.field));
            let each = index.shape == KeyShape::Each;
            quote!((#name, &[#(#fields),*], #each))
        })
        .collect();
    for (name, a, b) in pair_names(model, indices) {
        items.push(quote!((#name, &[#a, #b], false)));
    }
    quote!(&[#(#items),*])
}

/// The plain `#[belongs_to]` fields, in pairs that may form a `through` pair, with
/// the name of their implied index: `(name, field a, field b)`, by their JSON keys.
fn pair_names(model: &Model, indices: &[IndexModel]) -> Vec<(String, String, String)> {
    pairs(model, indices)
        .into_iter()
        .map(|(name, a, b, _, _)| (name, model.key_of(&a.ident), model.key_of(&b.ident)))
        .collect()
}

/// The pairs of plain `#[belongs_to]` fields not already under a declared unique
/// index, with the name of their implied index.
fn pairs<'a>(
    model: &'a Model,
    indices: &[IndexModel],
) -> Vec<(String, &'a Field, &'a Field, &'a BelongsTo, &'a BelongsTo)> {
    let id_field = model.id.as_ref().map(|id| &id.ident);
    let keys: Vec<(&Field, &BelongsTo)> = model
        .fields
        .iter()
        .filter(|f| Some(&f.ident) != id_field && crate::types::wrapped(&f.ty, "Option").is_none())
        .filter_map(|f| f.belongs_to.as_ref().map(|b| (f, b)))
        .collect();
    let mut out = Vec::new();
    for (i, (a, pa)) in keys.iter().enumerate() {
        for (b, pb) in &keys[i + 1..] {
            let declared_unique = indices.iter().any(|index| {
                index.unique
                    && index.parts.len() == 2
                    && index.parts.iter().any(|part| part.field == a.ident)
                    && index.parts.iter().any(|part| part.field == b.ident)
            });
            if declared_unique {
                continue;
            }
            let pair = format!("{}_and_{}", crate::names::unraw(&a.ident), crate::names::unraw(&b.ident));
            let name = if indices.iter().any(|index| index.name == pair) { format!("{pair}_pair") } else { pair };
            out.push((name, *a, *b, *pa, *pb));
        }
    }
    out
}

/// Statements that append to `list` (the `__indices()` vector) the implied unique
/// index of each pair of plain `#[belongs_to]` fields that is the pair of a `through`
/// relationship. Which pairs are is known only to the entities that declare
/// `#[has_many(.., through = Self)]`: their derive implements `ThroughPair<A, B>` for
/// this entity, and a probe here (autoref specialization) picks the index only then.
/// A pair already under a declared unique index needs none. Appended after the
/// declared indices, so their positions do not move.
pub fn through_pair_indices(p: &TokenStream, model: &Model, indices: &[IndexModel]) -> TokenStream {
    let mut out = TokenStream::new();
    for (name, a, b, pa, pb) in pairs(model, indices) {
        let (fa, fb, ta, tb) = (&a.ident, &b.ident, &a.ty, &b.ty);
        let (parent_a, parent_b) = (&pa.parent, &pb.parent);
        out.extend(quote! {
            if (&#p::PairProbe::<Self, #parent_a, #parent_b>::new()).is_through()
                || (&#p::PairProbe::<Self, #parent_b, #parent_a>::new()).is_through()
            {
                list.push((&#p::KeyProbe::<(#ta, #tb)>::new()).index(
                    #name,
                    #p::IndexKind { unique: true, sorted: false },
                    |entity: &Self, visit: &mut dyn ::core::ops::FnMut(&(#ta, #tb))| {
                        visit(&(::core::clone::Clone::clone(&entity.#fa), ::core::clone::Clone::clone(&entity.#fb)))
                    },
                ));
            }
        });
    }
    out
}

/// Assertions that each key type is an `IndexKey`, spanned on the user's field type
/// so that e.g. an `f64` index is reported there.
pub fn key_assertions(p: &TokenStream, indices: &[IndexModel]) -> TokenStream {
    let checks = indices.iter().flat_map(|index| index.parts.iter()).map(|part| {
        let ty = &part.key_ty;
        quote_spanned!(ty.span()=> __assert_index_key::<#ty>();)
    });
    quote! {
        const _: fn() = || {
            fn __assert_index_key<K: #p::IndexKey>() {}
            #(#checks)*
        };
    }
}

/// The typed lookup methods for the handle's `impl` block.
pub fn lookups(p: &TokenStream, entity: &syn::Ident, indices: &[IndexModel]) -> TokenStream {
    let methods = indices.iter().enumerate().filter(|(_, index)| !index.hidden).map(|(pos, index)| {
        let key_ty = key_type(index);
        let by = format_ident!("by_{}", index.name);
        let count_by = format_ident!("count_by_{}", index.name);
        let range_by = format_ident!("range_by_{}", index.name);
        let params: Vec<TokenStream> = index
            .parts
            .iter()
            .map(|part| {
                let name = &part.field;
                let ty = &part.key_ty;
                match part.arg {
                    ArgKind::Str => quote!(#name: &str),
                    ArgKind::Value => quote!(#name: #ty),
                    ArgKind::Ref => quote!(#name: &#ty),
                }
            })
            .collect();
        // The borrowed form the index is probed with, and its type.
        let (probe, probe_ty) = match index.parts.as_slice() {
            [one] => {
                let name = &one.field;
                match one.arg {
                    ArgKind::Str => (quote!(#name), quote!(str)),
                    ArgKind::Value => (quote!(&#name), key_ty.clone()),
                    ArgKind::Ref => (quote!(#name), key_ty.clone()),
                }
            }
            parts => {
                let owned = parts.iter().map(|part| {
                    let name = &part.field;
                    match part.arg {
                        ArgKind::Str => quote!(::std::borrow::ToOwned::to_owned(#name)),
                        ArgKind::Value => quote!(#name),
                        ArgKind::Ref => quote!(::core::clone::Clone::clone(#name)),
                    }
                });
                (quote!(&(#(#owned,)*)), key_ty.clone())
            }
        };
        let field_list =
            index.parts.iter().map(|p| format!("`{}`", crate::names::unraw(&p.field))).collect::<Vec<_>>().join(" and ");
        let entity_name = crate::names::unraw(entity);
        let mut out = if index.unique {
            let doc = format!("The `{entity_name}` whose {field_list} equals the given key (unique index `{}`).", index.name);
            let update_by = format_ident!("update_by_{}", index.name);
            let update_doc = format!(
                "Changes the `{entity_name}` whose {field_list} equals the given key, like `update` (unique index `{}`): the lookup and the change are one step. `Error::KeyNotFound` when no record has the key.",
                index.name
            );
            // Mixed-site hygiene: a field named `change` cannot clash with it.
            let change = proc_macro2::Ident::new("change", proc_macro2::Span::mixed_site());
            let index_name = &index.name;
            let mut out = quote! {
                #[doc = #doc]
                pub fn #by(&self, #(#params),*) -> ::core::option::Option<::std::sync::Arc<#entity>> {
                    (&#p::KeyProbe::<#key_ty, #probe_ty>::new()).one(&self.0, #pos, #probe)
                }
                #[doc = #update_doc]
                pub fn #update_by(&self, #(#params,)* #change: impl ::core::ops::FnMut(&mut #entity)) -> #p::Result<::std::sync::Arc<#entity>> {
                    (&#p::KeyProbe::<#key_ty, #probe_ty>::new()).update_by(&self.0, #pos, #index_name, #probe, #change)
                }
            };
            if index.shape == KeyShape::Plain {
                let upsert_by = format_ident!("upsert_by_{}", index.name);
                let upsert_doc = format!(
                    "Replaces the `{entity_name}` with `value`'s {field_list}, or inserts `value` when none has it (unique index `{}`); returns the record's id and the record replaced. A replacement keeps the stored id: an `#[id(auto)]` value takes it, another value must have it (`Error::IdChanged`).",
                    index.name
                );
                let value = proc_macro2::Ident::new("value", proc_macro2::Span::mixed_site());
                let key = match index.parts.as_slice() {
                    [one] => {
                        let f = &one.field;
                        quote!(::core::clone::Clone::clone(&#value.#f))
                    }
                    parts => {
                        let fs = parts.iter().map(|p| &p.field);
                        quote!((#(::core::clone::Clone::clone(&#value.#fs),)*))
                    }
                };
                out.extend(quote! {
                    #[doc = #upsert_doc]
                    pub fn #upsert_by(&self, #value: #entity) -> #p::Result<(<#entity as #p::Entity>::Id, ::core::option::Option<::std::sync::Arc<#entity>>)> {
                        let key: #key_ty = #key;
                        (&#p::KeyProbe::<#key_ty, #key_ty>::new()).upsert_by(&self.0, #pos, &key, #value)
                    }
                });
            }
            out
        } else {
            let doc = format!("Every `{entity_name}` whose {field_list} equals the given key, in id order (index `{}`).", index.name);
            let count_doc = format!("How many `{entity_name}` records have this {field_list} (index `{}`).", index.name);
            quote! {
                #[doc = #doc]
                pub fn #by(&self, #(#params),*) -> ::std::vec::Vec<::std::sync::Arc<#entity>> {
                    (&#p::KeyProbe::<#key_ty, #probe_ty>::new()).all(&self.0, #pos, #probe)
                }
                #[doc = #count_doc]
                pub fn #count_by(&self, #(#params),*) -> usize {
                    (&#p::KeyProbe::<#key_ty, #probe_ty>::new()).count(&self.0, #pos, #probe)
                }
            }
        };
        if index.sorted {
            let doc = format!("The `{entity_name}` records whose {field_list} falls in `range`, in key order (sorted index `{}`).", index.name);
            let method = match index.parts.as_slice() {
                [one] if one.arg == ArgKind::Str => quote! {
                    #[doc = #doc]
                    pub fn #range_by<'k>(&self, range: impl ::core::ops::RangeBounds<&'k str>) -> ::std::vec::Vec<::std::sync::Arc<#entity>> {
                        let bounds = (range.start_bound().map(|k| *k), range.end_bound().map(|k| *k));
                        (&#p::KeyProbe::<#key_ty, str>::new()).range(&self.0, #pos, bounds)
                    }
                },
                _ => quote! {
                    #[doc = #doc]
                    pub fn #range_by(&self, range: impl ::core::ops::RangeBounds<#key_ty>) -> ::std::vec::Vec<::std::sync::Arc<#entity>> {
                        (&#p::KeyProbe::<#key_ty, #key_ty>::new()).range(&self.0, #pos, (range.start_bound(), range.end_bound()))
                    }
                },
            };
            out.extend(method);
        }
        out
    });
    quote!(#(#methods)*)
}
