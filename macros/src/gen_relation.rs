//! Generation for relationships: the foreign-key list of the `Entity` impl,
//! `References` impls, accessors for `#[belongs_to]` and the methods of `#[has_many]`.
//!
//! Checks that need another entity are made by the compiler on generated items,
//! each spanned on the user's token:
//! - the key's type must be the parent's id type: a `SameType` bound (custom message);
//! - `has_many(.., key = f)` calls `Target::__shelf_belongs_to_f()`, which exists only
//!   if `f` is a `#[belongs_to]` field of `Target`, and must return
//!   `ForeignKey<Target, Self>`, so `f` must reference this entity;
//! - `through = J` needs `J: References<Self> + References<Target>` (custom message).

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::model::*;

/// Items inside `impl Entity`: `__foreign_keys` and `__clear_foreign_key`.
pub fn entity_items(p: &TokenStream, belongs: &[BelongsModel]) -> TokenStream {
    if belongs.is_empty() {
        return TokenStream::new();
    }
    let specs = belongs.iter().map(|b| {
        let field = b.field.to_string();
        let parent = &b.parent;
        let index = b.index;
        let check = b.check;
        let on_delete = match b.on_delete {
            OnDelete::Restrict => quote!(Restrict),
            OnDelete::Cascade => quote!(Cascade),
            OnDelete::Detach => quote!(Detach),
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
    let clears = belongs.iter().filter(|b| b.optional && b.on_delete == OnDelete::Detach).map(|b| {
        let field = &b.field;
        let name = field.to_string();
        quote!(#name => self.#field = ::core::option::Option::None,)
    });
    quote! {
        fn __foreign_keys() -> ::std::vec::Vec<#p::ForeignKeySpec> {
            ::std::vec![#(#specs),*]
        }
        fn __clear_foreign_key(&mut self, field: &str) {
            match field {
                #(#clears)*
                _ => {}
            }
        }
    }
}

/// Items outside the `Entity` impl.
pub fn items(p: &TokenStream, model: &Model, belongs: &[BelongsModel]) -> TokenStream {
    let ident = &model.ident;
    let Some(id) = &model.id else { return TokenStream::new() };
    let id_field = &id.ident;
    let mut methods = Vec::new();
    let mut impls = Vec::new();
    for b in belongs {
        let field = &b.field;
        let parent = &b.parent;
        let key_ty = &b.key_ty;
        let accessor = &b.accessor;
        let fk_fn = format_ident!("__shelf_belongs_to_{}", field);
        let index = b.index;
        let parent_id = quote!(<#parent as #p::Entity>::Id);
        // Spanned on the field's type: a wrong key type is reported there.
        let same = quote_spanned!(b.ty_span=> <#key_ty as #p::SameType<#parent_id>>::same);
        let key_of = if b.optional {
            quote!(|child: &Self| child.#field.as_ref().map(#same))
        } else {
            quote!(|child: &Self| ::core::option::Option::Some(#same(&child.#field)))
        };
        let doc = format!(
            "The `{}` this record belongs to, through `{field}`; `None` if it references none.",
            quote!(#parent)
        );
        methods.push(quote! {
            #[doc = #doc]
            pub fn #accessor(&self, reader: &impl #p::Reader) -> #p::Result<::core::option::Option<::std::sync::Arc<#parent>>> {
                Self::#fk_fn().parent(reader, self)
            }
            #[doc(hidden)]
            pub fn #fk_fn() -> #p::ForeignKey<Self, #parent> {
                #p::ForeignKey::new(#index, #key_of)
            }
        });
        if b.only_one_to_parent {
            impls.push(quote! {
                impl #p::References<#parent> for #ident {
                    fn foreign_key() -> #p::ForeignKey<Self, #parent> {
                        Self::#fk_fn()
                    }
                }
            });
        }
    }
    for has_many in &model.has_many {
        let name = &has_many.name;
        let target = &has_many.target;
        let entity_check = quote_spanned!(target.span()=> #p::assert_entity::<#target>(););
        match &has_many.via {
            HasManyVia::Key(key) => {
                let fk_fn = format_ident!("__shelf_belongs_to_{}", key);
                let fk = quote_spanned!(key.span()=> #target::#fk_fn());
                let doc =
                    format!("The `{}` records whose `{key}` references this record, in id order.", quote!(#target));
                methods.push(quote! {
                    #[doc = #doc]
                    pub fn #name(&self, reader: &impl #p::Reader) -> #p::Result<::std::vec::Vec<::std::sync::Arc<#target>>> {
                        #entity_check
                        let key: #p::ForeignKey<#target, Self> = #fk;
                        key.children(reader, &self.#id_field)
                    }
                });
            }
            HasManyVia::Through(join) => {
                let link = format_ident!("link_{}", name);
                let unlink = format_ident!("unlink_{}", name);
                let join_types = quote_spanned!(join.span()=> Self, #join, #target);
                let doc = format!(
                    "The `{}` records linked to this record through `{}`, in id order.",
                    quote!(#target),
                    quote!(#join)
                );
                let link_doc = format!(
                    "Links this record to the `{}` that `row` names, by inserting `row`; returns `false` (and inserts nothing) if the pair is linked already.",
                    quote!(#target)
                );
                let unlink_doc =
                    format!("Removes every `{}` row linking this record to `target`; returns how many.", quote!(#join));
                methods.push(quote! {
                    #[doc = #doc]
                    pub fn #name(&self, reader: &impl #p::Reader) -> #p::Result<::std::vec::Vec<::std::sync::Arc<#target>>> {
                        #entity_check
                        #p::through::<#join_types>(reader, &self.#id_field)
                    }
                    #[doc = #link_doc]
                    pub fn #link(&self, store: &#p::Store, row: #join) -> #p::Result<bool> {
                        #p::link::<#join_types>(store, &self.#id_field, row)
                    }
                    #[doc = #unlink_doc]
                    pub fn #unlink(&self, store: &#p::Store, target: &<#target as #p::Entity>::Id) -> #p::Result<usize> {
                        #p::unlink::<#join_types>(store, &self.#id_field, target)
                    }
                });
            }
        }
    }
    if methods.is_empty() && impls.is_empty() {
        return TokenStream::new();
    }
    quote! {
        impl #ident {
            #(#methods)*
        }
        #(#impls)*
    }
}
