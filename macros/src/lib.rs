//! `#[derive(Entity)]` for the Shelf entity store. Use it through the `shelf` crate.
//!
//! The derive works in four stages, each in its own module: `parse` reads the
//! attributes into a `model`, `check` validates what needs only this struct, and
//! `generate` writes the code. Errors from every stage are collected in one `ctx`
//! and reported together, each spanned on the user's tokens. The macro never panics.

mod attr;
mod check;
mod ctx;
mod gen_fields;
mod gen_index;
mod gen_query;
mod gen_relation;
mod generate;
mod indices;
mod model;
mod names;
mod parse;
mod relations;
mod serde_names;
mod types;

use proc_macro::TokenStream;
use syn::DeriveInput;

/// Derives `shelf::Entity`: a typed, persisted collection for this struct.
///
/// See the `shelf` crate's documentation for the attributes:
/// `#[id]`, `#[id(auto)]`, `#[entity(collection = "...")]` and `#[storage(...)]`.
#[proc_macro_derive(Entity, attributes(id, entity, storage, index, belongs_to, has_many, has_one))]
pub fn derive_entity(input: TokenStream) -> TokenStream {
    expand(input.into()).into()
}

/// The derive on `proc_macro2` tokens: the generated items, or `compile_error!`s
/// spanned on the user's tokens. Never panics (`tests::expand_never_panics`
/// checks it on generated definitions).
fn expand(input: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    match syn::parse2::<DeriveInput>(input) {
        Ok(input) => expand_input(&input).unwrap_or_else(syn::Error::into_compile_error),
        Err(e) => e.into_compile_error(),
    }
}

fn expand_input(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let ctx = ctx::Ctx::default();
    let Some(model) = parse::parse(&ctx, input) else {
        ctx.finish()?;
        return Ok(proc_macro2::TokenStream::new());
    };
    check::check(&ctx, &model);
    let indices = indices::indices(&ctx, &model);
    let belongs = relations::belongs(&ctx, &model, &indices);
    ctx.finish()?;
    Ok(generate::generate(&model, &indices, &belongs))
}

#[cfg(test)]
mod tests;
