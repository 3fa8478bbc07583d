//! Generation for relationship queries: for every `#[has_many(name, key = f)]`, a
//! `name_query(&self, &Store) -> Result<Query<Target>>` beside the `name` accessor:
//! the children as a query pre-filtered by the foreign key and served by its index,
//! to which `filter`, `order_by` and `limit` apply. (`through` relationships have
//! only their list accessor.)

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::model::*;

/// An `impl` block with the `*_query` methods, or nothing.
pub fn relation_queries(p: &TokenStream, model: &Model) -> TokenStream {
    let ident = &model.ident;
    let Some(id) = &model.id else { return TokenStream::new() };
    let id_field = &id.ident;
    let methods: Vec<TokenStream> = model
        .has_many
        .iter()
        .filter_map(|has_many| {
            let HasManyVia::Key(key) = &has_many.via else { return None };
            let target = &has_many.target;
            let name = &has_many.name;
            let method = format_ident!("{}_query", syn::ext::IdentExt::unraw(name));
            let key_name = crate::names::unraw(key);
            let doc = format!(
                "The `{}` records whose `{}` references this record, as a query (served by the key's index): `{}` with filters, orderings and limits.",
                quote!(#target),
                syn::ext::IdentExt::unraw(key),
                syn::ext::IdentExt::unraw(name),
            );
            Some(quote! {
                #[doc = #doc]
                pub fn #method(&self, store: &#p::Store) -> #p::Result<#p::Query<#target>>
                where
                    for<'__shelf> #target: #p::Entity,
                {
                    #p::has_many_query::<#target, #ident>(store, #key_name, &self.#id_field)
                }
            })
        })
        .collect();
    if methods.is_empty() {
        return TokenStream::new();
    }
    quote! {
        #[automatically_derived]
        impl #ident {
            #(#methods)*
        }
    }
}
