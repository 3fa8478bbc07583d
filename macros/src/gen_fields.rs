//! Generation for typed queries: `<Type>Fields`, a struct with one typed field
//! handle per struct field, and `Type::fields()`.
//!
//! A field spelled `Option<T>` becomes an `OptField<Type, T>` (comparisons take a
//! `T` and never match `None`); any other becomes a `Field<Type, T>`. A field with a
//! single-field index (not `each`) carries a hint so queries can use the index.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::model::*;
use crate::types::wrapped;

/// The `<Type>Fields` struct (outside the `const _` block, so users can name it)
/// and the `impl` with `fields()` (inside it).
pub fn fields(p: &TokenStream, model: &Model, indices: &[IndexModel]) -> (TokenStream, TokenStream) {
    let ident = &model.ident;
    let vis = &model.vis;
    let fields_ty = format_ident!("{}Fields", ident);
    let mut members = Vec::new();
    let mut values = Vec::new();
    for field in &model.fields {
        let name = &field.ident;
        let name_text = crate::names::unraw(name);
        let hint = indices
            .iter()
            .enumerate()
            .find(|(_, i)| i.parts.len() == 1 && i.parts[0].field == *name && i.shape != KeyShape::Each)
            .map(|(pos, i)| {
                // A composite's auxiliary prefix index shows as the composite in plans.
                let index_name = if i.hidden { i.name.trim_end_matches("_prefix") } else { i.name.as_str() };
                let (sorted, unique) = (i.sorted, i.unique);
                quote!(::core::option::Option::Some(#p::IndexHint { pos: #pos, name: #index_name, sorted: #sorted, unique: #unique }))
            })
            .unwrap_or_else(|| quote!(::core::option::Option::None));
        let doc = format!("`{}.{name_text}`, for queries.", crate::names::unraw(ident));
        match wrapped(&field.ty, "Option") {
            Some(inner) => {
                members.push(quote!(#[doc = #doc] pub #name: #p::OptField<#ident, #inner>));
                values.push(quote!(#name: #p::OptField::new(#name_text, |e: &#ident| &e.#name, #hint)));
            }
            None => {
                let ty = &field.ty;
                members.push(quote!(#[doc = #doc] pub #name: #p::Field<#ident, #ty>));
                values.push(quote!(#name: #p::Field::new(#name_text, |e: &#ident| &e.#name, #hint)));
            }
        }
    }
    let struct_doc = format!("The typed fields of `{ident}`, from `{ident}::fields()`, for queries.");
    let fn_doc = format!("The typed fields of `{ident}`: `{ident}::fields().<field>.eq(..)`, `.gt(..)`, `.asc()`, ...");
    (
        quote! {
            #[doc = #struct_doc]
            #[derive(Clone, Copy, Debug)]
            #vis struct #fields_ty {
                #(#members,)*
            }
        },
        quote! {
            #[automatically_derived]
            impl #ident {
                #[doc = #fn_doc]
                pub fn fields() -> #fields_ty {
                    #fields_ty { #(#values,)* }
                }
            }
        },
    )
}
