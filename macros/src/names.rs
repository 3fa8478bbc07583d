//! Names as the user means them: `r#type` is the field `type`. Every name the
//! derive prints (plans, errors, docs, index and file names) or builds new
//! identifiers from goes through here, so a raw identifier never reaches
//! `format_ident!` as `by_r#type` (which panics).

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::Ident;

/// The name without `r#`.
pub fn unraw(ident: &Ident) -> String {
    ident.unraw().to_string()
}

/// An identifier for `name` at `span`: raw (`r#type`) when `name` is a keyword.
/// `None` when no identifier can spell it (`self`, `crate`, `super`, `Self`, `_`, or
/// not an identifier at all).
pub fn ident(name: &str, span: Span) -> Option<Ident> {
    let mut ident = syn::parse_str::<Ident>(name)
        .ok()
        .or_else(|| syn::parse_str::<Ident>(&format!("r#{name}")).ok())
        // `syn` accepts `r#` plus any keyword; `self` and friends cannot be raw.
        .filter(|i| !matches!(unraw(i).as_str(), "self" | "super" | "crate" | "Self" | "_"))?;
    ident.set_span(span);
    Some(ident)
}
