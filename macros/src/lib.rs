//! `#[derive(Entity)]` for the Shelf entity store. Use it through the `shelf` crate.
//!
//! The derive works in four stages, each in its own module: `parse` reads the
//! attributes into a `model`, `check` validates what needs only this struct, and
//! `generate` writes the code. Errors from every stage are collected in one `ctx`
//! and reported together, each spanned on the user's tokens. The macro never panics.

mod check;
mod ctx;
mod gen_fields;
mod gen_index;
mod gen_query;
mod gen_relation;
mod generate;
mod indices;
mod model;
mod parse;
mod relations;
mod types;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Derives `shelf::Entity`: a typed, persisted collection for this struct.
///
/// See the `shelf` crate's documentation for the attributes:
/// `#[id]`, `#[id(auto)]`, `#[entity(collection = "...")]` and `#[storage(...)]`.
#[proc_macro_derive(Entity, attributes(id, entity, storage, index, belongs_to, has_many))]
pub fn derive_entity(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
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
mod tests {
    use super::parse::snake_case;

    #[test]
    fn snake_case_names() {
        assert_eq!(snake_case("User"), "user");
        assert_eq!(snake_case("AuditEntry"), "audit_entry");
        assert_eq!(snake_case("HTTPLog"), "http_log");
        assert_eq!(snake_case("Post2Tag"), "post2_tag");
    }
}
