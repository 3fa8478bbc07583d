//! Generation for relationship queries: for every `#[has_many(name, key = f)]`, a
//! `name_query(&self, &Store) -> Result<Query<Target>>` beside the `name` accessor:
//! the children as a query pre-filtered by the foreign key and served by its index,
//! to which `filter`, `order_by` and `limit` apply. For `#[has_many(name: T,
//! through = J)]`, the same over the targets the join rows link to.

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
        .map(|has_many| {
            let target = &has_many.target;
            let name = &has_many.name;
            let method = format_ident!("{}_query", syn::ext::IdentExt::unraw(name));
            let key = match &has_many.via {
                HasManyVia::Key(key) => key,
                HasManyVia::Through(join) => return through_query(p, ident, id_field, &method, has_many, join),
            };
            let key_name = crate::names::unraw(key);
            let doc = format!(
                "The `{}` records whose `{}` references this record, as a query (served by the key's index): `{}` with filters, orderings and limits.",
                quote!(#target),
                syn::ext::IdentExt::unraw(key),
                syn::ext::IdentExt::unraw(name),
            );
            quote! {
                #[doc = #doc]
                pub fn #method(&self, store: &#p::Store) -> #p::Result<#p::Query<#target>>
                where
                    for<'__shelf> #target: #p::Entity,
                {
                    #p::has_many_query::<#target, #ident>(store, #key_name, &self.#id_field)
                }
            }
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

/// `name_query` of a `through` relationship: the linked targets as a query.
fn through_query(
    p: &TokenStream,
    ident: &syn::Ident,
    id_field: &syn::Ident,
    method: &syn::Ident,
    has_many: &HasMany,
    join: &syn::Path,
) -> TokenStream {
    let target = &has_many.target;
    let doc = format!(
        "The `{}` records linked to this record through `{}`, as a query: `{}` with filters, orderings and limits. The links are read when the query is built.",
        quote!(#target),
        quote!(#join),
        syn::ext::IdentExt::unraw(&has_many.name),
    );
    quote! {
        #[doc = #doc]
        pub fn #method(&self, store: &#p::Store) -> #p::Result<#p::Query<#target>>
        where
            for<'__shelf> #target: #p::Entity,
            for<'__shelf> #join: #p::References<#ident> + #p::References<#target>,
        {
            #p::through_query::<#ident, #join, #target>(store, &self.#id_field)
        }
    }
}
