//! Code generation from a checked [`Model`]. Generated code names runtime items
//! only through `::shelf::__private`, so users depend on `shelf` alone.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};

use crate::model::*;
use crate::{gen_fields, gen_index, gen_relation};

pub fn generate(model: &Model, indices: &[IndexModel], belongs: &[BelongsModel]) -> TokenStream {
    let Some(id) = &model.id else { return TokenStream::new() };
    let p = quote!(::shelf::__private);
    let ident = &model.ident;
    let vis = &model.vis;
    let handle = format_ident!("{}Collection", ident);
    let collection = &model.collection;
    let id_field = &id.ident;
    let id_name = model.key_of(id_field);
    let id_ty = &id.ty;
    // Spanned on the id type, so a type that is not a Key is reported there.
    let id_assoc = quote_spanned!(id.ty_span()=> type Id = #id_ty;);
    let kind = match model.storage.kind {
        StorageKind::PerRecord => quote!(#p::StorageKind::PerRecord),
        StorageKind::CollectionFile => quote!(#p::StorageKind::CollectionFile),
        StorageKind::Memory => quote!(#p::StorageKind::Memory),
    };
    let wal = model.storage.wal.is_some();
    let compress = model.storage.compress.is_some();
    let shard = model.storage.shard.map_or(0u8, |(n, _)| n.min(3) as u8);
    let auto = id.auto.is_some();
    let ttl = model.storage.ttl.map(|(ms, _)| {
        quote!(const TTL: ::core::option::Option<::core::time::Duration> = ::core::option::Option::Some(::core::time::Duration::from_millis(#ms));)
    });
    let auto_fns = match id.auto {
        Some(span) => {
            let auto_key = quote_spanned!(span=> <#id_ty as #p::AutoKey>);
            quote! {
                fn __set_auto_id(&mut self, counter: u64) -> bool {
                    match #auto_key::from_counter(counter) {
                        ::core::option::Option::Some(id) => {
                            self.#id_field = id;
                            true
                        }
                        ::core::option::Option::None => false,
                    }
                }
                fn __id_counter(&self) -> ::core::option::Option<u64> {
                    #auto_key::to_counter(&self.#id_field)
                }
            }
        }
        None => quote! {
            fn __set_auto_id(&mut self, _counter: u64) -> bool {
                false
            }
            fn __id_counter(&self) -> ::core::option::Option<u64> {
                ::core::option::Option::None
            }
        },
    };
    let index_list = gen_index::index_list(&p, indices);
    let pair_indices = gen_index::through_pair_indices(&p, model, indices);
    let index_fields = gen_index::index_fields(model, indices);
    let record_fields = record_fields(&p, model);
    let key_assertions = gen_index::key_assertions(&p, indices);
    let lookups = gen_index::lookups(&p, ident, indices);
    let relation_internals = gen_relation::internals_items(&p, model, belongs);
    let relation_items = gen_relation::items(&p, model, belongs);
    let (fields_struct, fields_impl) = gen_fields::fields(&p, model, indices);
    let name = crate::names::unraw(ident);
    let relation_queries = crate::gen_query::relation_queries(&p, model);
    let handle_doc = format!(
        "The typed handle of the `{collection}` collection, returned by `store.collection::<{name}>()`. \
         It dereferences to `shelf::Collection<{name}>`."
    );
    let lookups = (!lookups.is_empty()).then(|| {
        quote! {
            #[automatically_derived]
            impl #handle {
                #lookups
            }
        }
    });

    // The two types users name stay outside; everything else is inside an
    // anonymous constant, so no helper item lands in the user's namespace.
    quote! {
        #[doc = #handle_doc]
        #[derive(Clone, Debug)]
        #vis struct #handle(#p::Collection<#ident>);

        #fields_struct

        const _: () = {
            #[allow(unused_imports)]
            use #p::{
                CompositeIndexProbe as _, IndexKeyProbe as _, IsThroughPair as _, NotACompositeKey as _,
                NotAnIndexKey as _, NotThroughPair as _,
            };

            #[automatically_derived]
            impl #p::Entity for #ident {
                #id_assoc
                type Handle = #handle;
                const COLLECTION: &'static str = #collection;
                const STORAGE: #p::StorageSpec = #p::StorageSpec { kind: #kind, wal: #wal, compress: #compress, shard: #shard };
                const AUTO_ID: bool = #auto;
                const ID_FIELD: &'static str = #id_name;

                fn id(&self) -> &Self::Id {
                    &self.#id_field
                }
            }

            #[automatically_derived]
            impl #p::EntityInternals for #ident {
                #auto_fns
                #ttl

                fn __indices() -> ::std::vec::Vec<::std::boxed::Box<dyn #p::IndexMaint<Self>>> {
                    #[allow(unused_mut)]
                    let mut list: ::std::vec::Vec<::std::boxed::Box<dyn #p::IndexMaint<Self>>> = #index_list;
                    #pair_indices
                    list
                }

                fn __index_fields() -> &'static [(&'static str, &'static [&'static str], bool)] {
                    #index_fields
                }

                fn __record_fields() -> &'static [#p::RecordField] {
                    #record_fields
                }

                #relation_internals
            }

            #relation_items

            #relation_queries

            #fields_impl

            #key_assertions

            #[automatically_derived]
            impl ::core::convert::From<#p::Collection<#ident>> for #handle {
                fn from(collection: #p::Collection<#ident>) -> Self {
                    #handle(collection)
                }
            }

            #lookups

            #[automatically_derived]
            impl ::core::ops::Deref for #handle {
                type Target = #p::Collection<#ident>;
                fn deref(&self) -> &Self::Target {
                    &self.0
                }
            }
        };
    }
}

impl IdField {
    fn ty_span(&self) -> proc_macro2::Span {
        syn::spanned::Spanned::span(&self.ty)
    }
}

/// The body of `__record_fields()`: each field serde writes, with its JSON key and
/// its type as written, for `shelf.json`.
fn record_fields(p: &TokenStream, model: &Model) -> TokenStream {
    let items = model.fields.iter().filter(|f| !f.serde.skipped).map(|f| {
        let field = crate::names::unraw(&f.ident);
        let key = if f.serde.flatten { String::new() } else { model.key_of(&f.ident) };
        let ty = &f.ty;
        let ty = type_text(&quote!(#ty).to_string());
        let flatten = f.serde.flatten;
        quote!(#p::RecordField { field: #field, key: #key, ty: #ty, flatten: #flatten })
    });
    quote!(&[#(#items),*])
}

/// A type's tokens as a person writes them: `Option < Vec < u8 > >` becomes
/// `Option<Vec<u8>>`; a space stays only between two words (`dyn Trait`) and
/// after a comma.
fn type_text(tokens: &str) -> String {
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '\'';
    let chars: Vec<char> = tokens.chars().collect();
    let mut out = String::with_capacity(chars.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let before = out.chars().last();
            let after = chars.get(i + 1).copied();
            let keep = before == Some(',') || (before.is_some_and(word) && after.is_some_and(word));
            if !keep {
                continue;
            }
        }
        out.push(c);
    }
    out
}
