//! Generation for relationships: the foreign keys of the `EntityInternals` impl,
//! `References` impls, accessors for `#[belongs_to]` and the methods of
//! `#[has_many]` / `#[has_one]`.
//!
//! Checks that need another entity are made by the compiler on generated items,
//! each spanned on the user's token:
//! - the key's type must be the parent's id type: a `SameType` bound (custom message);
//! - `has_many(.., key = f)` is checked by a constant: the child's list of
//!   `#[belongs_to]` fields must hold `f` referencing this entity, else compilation
//!   stops with the child's list of foreign keys;
//! - `through = J` needs `J: References<Self> + References<Target>` (custom message).
//!
//! Nothing here adds a method to the user's type but the documented accessors.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;

use crate::model::*;
use crate::names::unraw;

/// The name of the free function (inside the derive's `const _` block) that builds
/// the `ForeignKey` of a `#[belongs_to]` field.
fn fk_fn(b: &BelongsModel) -> syn::Ident {
    format_ident!("__foreign_key_{}", b.field)
}

/// Items inside `impl EntityInternals`: the foreign-key list, its help text,
/// `__foreign_keys`, `__foreign_key_any` and `__clear_foreign_key`.
pub fn internals_items(p: &TokenStream, model: &Model, belongs: &[BelongsModel]) -> TokenStream {
    let entity = unraw(&model.ident);
    let listed: Vec<String> = belongs
        .iter()
        .map(|b| {
            format!("`{}` (references `{}`)", unraw(&b.field), b.parent.to_token_stream().to_string().replace(' ', ""))
        })
        .collect();
    let help = if listed.is_empty() {
        format!("a has_many/has_one key must be a #[belongs_to] field of `{entity}` that references this entity, and `{entity}` has no #[belongs_to] field; mark the key field with #[belongs_to(Parent)]")
    } else {
        format!(
            "a has_many/has_one key must be a #[belongs_to] field of `{entity}` that references this entity; the #[belongs_to] fields of `{entity}` are {}",
            listed.join(", ")
        )
    };
    let pairs = belongs.iter().map(|b| {
        let field = unraw(&b.field);
        let parent = &b.parent;
        quote!((#field, <#parent as #p::Entity>::COLLECTION))
    });
    let common = quote! {
        const BELONGS_TO: &'static [(&'static str, &'static str)] = &[#(#pairs),*];
        const BELONGS_TO_HELP: &'static str = #help;
    };
    if belongs.is_empty() {
        return common;
    }
    let specs = belongs.iter().map(|b| {
        let field = unraw(&b.field);
        let parent = &b.parent;
        let index = b.index;
        let check = b.check;
        let on_delete = match b.on_delete {
            OnDelete::Restrict => quote!(Restrict),
            OnDelete::Cascade => quote!(Cascade),
            OnDelete::Detach => quote!(Detach),
            OnDelete::Ignore => quote!(Ignore),
        };
        quote! {
            #p::ForeignKeySpec {
                field: #field,
                parent: <#parent as #p::Entity>::COLLECTION,
                index: #index,
                on_delete: #p::OnDelete::#on_delete,
                check: #check,
            }
        }
    });
    let anys = belongs.iter().map(|b| {
        let name = unraw(&b.field);
        let fk = fk_fn(b);
        quote!(#name => ::core::option::Option::Some(::std::boxed::Box::new(#fk())),)
    });
    let clears = belongs.iter().filter(|b| b.optional && b.on_delete == OnDelete::Detach).map(|b| {
        let field = &b.field;
        let name = unraw(field);
        quote!(#name => self.#field = ::core::option::Option::None,)
    });
    quote! {
        #common
        fn __foreign_keys() -> ::std::vec::Vec<#p::ForeignKeySpec> {
            ::std::vec![#(#specs),*]
        }
        fn __foreign_key_any(field: &str) -> ::core::option::Option<::std::boxed::Box<dyn ::core::any::Any>> {
            match field {
                #(#anys)*
                _ => ::core::option::Option::None,
            }
        }
        fn __clear_foreign_key(&mut self, field: &str) {
            match field {
                #(#clears)*
                _ => {}
            }
        }
    }
}

/// Items for the derive's `const _` block: foreign-key builders, accessors,
/// `References` impls, has_many checks and methods.
pub fn items(p: &TokenStream, model: &Model, belongs: &[BelongsModel]) -> TokenStream {
    let ident = &model.ident;
    let Some(id) = &model.id else { return TokenStream::new() };
    let id_field = &id.ident;
    let mut methods = Vec::new();
    let mut items = Vec::new();
    for b in belongs {
        let field = &b.field;
        let parent = &b.parent;
        let key_ty = &b.key_ty;
        let accessor = &b.accessor;
        let fk = fk_fn(b);
        let index = b.index;
        let parent_id = quote!(<#parent as #p::Entity>::Id);
        // Spanned on the field's type: a wrong key type is reported there.
        let same = quote_spanned!(b.ty_span=> <#key_ty as #p::SameType<#parent_id>>::same);
        let key_of = if b.optional {
            quote!(|child: &#ident| child.#field.as_ref().map(#same))
        } else {
            quote!(|child: &#ident| ::core::option::Option::Some(#same(&child.#field)))
        };
        let doc = format!(
            "The `{}` this record belongs to, through `{}`; `None` if it references none.",
            quote!(#parent),
            unraw(field)
        );
        items.push(quote! {
            fn #fk() -> #p::ForeignKey<#ident, #parent> {
                #p::ForeignKey::new(#index, #key_of)
            }
        });
        methods.push(quote! {
            #[doc = #doc]
            pub fn #accessor(&self, reader: &impl #p::Reader) -> #p::Result<::core::option::Option<::std::sync::Arc<#parent>>> {
                #fk().parent(reader, self)
            }
        });
        if b.only_one_to_parent {
            items.push(quote! {
                #[automatically_derived]
                impl #p::References<#parent> for #ident {
                    fn foreign_key() -> #p::ForeignKey<Self, #parent> {
                        #fk()
                    }
                }
            });
        }
    }
    for has_many in &model.has_many {
        let name = &has_many.name;
        let target = &has_many.target;
        match &has_many.via {
            HasManyVia::Key(key) => {
                let key_name = unraw(key);
                // Spanned on the key: a key that is not a #[belongs_to] field of the
                // target referencing this entity stops compilation there, with the
                // target's list of foreign keys.
                // A target that is no entity gets one error, on the target, from
                // `belongs_to_of`; the methods below assume it (`where`).
                let keys = quote_spanned!(target.span()=> #p::belongs_to_of::<#target>());
                let panic = quote_spanned!(key.span()=> ::core::panic!("{}", KEYS.1));
                items.push(quote! {
                    const _: () = {
                        const KEYS: (&[(&str, &str)], &str) = #keys;
                        if !#p::has_foreign_key(KEYS.0, #key_name, <#ident as #p::Entity>::COLLECTION) {
                            #panic
                        }
                    };
                });
                if has_many.one {
                    let doc = format!(
                        "The `{}` record whose `{key_name}` references this record, if any (the lowest id if several do).",
                        quote!(#target)
                    );
                    methods.push(quote! {
                        #[doc = #doc]
                        pub fn #name(&self, reader: &impl #p::Reader) -> #p::Result<::core::option::Option<::std::sync::Arc<#target>>>
                        where
                            for<'__shelf> #target: #p::Entity,
                        {
                            #p::has_one::<#target, #ident>(reader, #key_name, &self.#id_field)
                        }
                    });
                } else {
                    let doc = format!(
                        "The `{}` records whose `{key_name}` references this record, in id order.",
                        quote!(#target)
                    );
                    methods.push(quote! {
                        #[doc = #doc]
                        pub fn #name(&self, reader: &impl #p::Reader) -> #p::Result<::std::vec::Vec<::std::sync::Arc<#target>>>
                        where
                            for<'__shelf> #target: #p::Entity,
                        {
                            #p::has_many::<#target, #ident>(reader, #key_name, &self.#id_field)
                        }
                    });
                }
            }
            HasManyVia::Through(join) => {
                // The one error for a target that is no entity; the methods below
                // assume it (`where`).
                let entity_check = quote_spanned!(target.span()=> #p::assert_entity::<#target>());
                items.push(quote!(const _: () = #entity_check;));
                // The one error for a join entity without a key to each side; it
                // assumes the target is an entity, which the check above reports.
                let join_check = quote_spanned!(join.span()=> #p::assert_through::<#ident, #join, #target>());
                items.push(quote! {
                    const _: () = {
                        #[allow(dead_code)]
                        fn check()
                        where
                            for<'__shelf> #target: #p::Entity,
                        {
                            #join_check;
                        }
                    };
                });
                let assume = quote! {
                    where
                        for<'__shelf> #target: #p::Entity,
                        for<'__shelf> #join: #p::References<#ident> + #p::References<#target>,
                };
                let link = format_ident!("link_{}", name);
                let unlink = format_ident!("unlink_{}", name);
                let join_types = quote_spanned!(join.span()=> #ident, #join, #target);
                let doc = format!(
                    "The `{}` records linked to this record through `{}`, in id order.",
                    quote!(#target),
                    quote!(#join)
                );
                let link_doc = format!(
                    "Links this record to the `{}` that `row` names, by inserting `row`; returns `false` (and inserts nothing) if the pair is linked already. Writes through `to`: `&store` (a transaction of its own) or `&mut *tx` (part of a transaction in progress).",
                    quote!(#target)
                );
                let unlink_doc = format!(
                    "Removes every `{}` row linking this record to `target`; returns how many. Writes through `to`: `&store` or `&mut *tx`.",
                    quote!(#join)
                );
                // The join entity's pair of keys to this entity and the target gets
                // an implied unique index (see `gen_index::through_pair_indices`).
                items.push(quote_spanned! {join.span()=>
                    #[automatically_derived]
                    impl #p::ThroughPair<#ident, #target> for #join {}
                });
                methods.push(quote! {
                    #[doc = #doc]
                    pub fn #name(&self, reader: &impl #p::Reader) -> #p::Result<::std::vec::Vec<::std::sync::Arc<#target>>>
                    #assume
                    {
                        #p::through::<#join_types>(reader, &self.#id_field)
                    }
                    #[doc = #link_doc]
                    pub fn #link(&self, to: impl #p::Writer, row: #join) -> #p::Result<bool>
                    #assume
                    {
                        #p::link::<#join_types>(to, &self.#id_field, row)
                    }
                    #[doc = #unlink_doc]
                    pub fn #unlink(&self, to: impl #p::Writer, target: &<#target as #p::Entity>::Id) -> #p::Result<usize>
                    #assume
                    {
                        #p::unlink::<#join_types>(to, &self.#id_field, target)
                    }
                });
            }
        }
    }
    if methods.is_empty() && items.is_empty() {
        return TokenStream::new();
    }
    let methods = (!methods.is_empty()).then(|| {
        quote! {
            #[automatically_derived]
            impl #ident {
                #(#methods)*
            }
        }
    });
    quote! {
        #(#items)*
        #methods
    }
}
