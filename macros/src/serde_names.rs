//! The JSON key serde gives each field, read from the `#[serde(...)]` attributes
//! that change it: `rename` on a field, `rename_all` on the struct, `skip` /
//! `skip_serializing` and `flatten`. `shelf.json` records these keys, so that
//! tools and the PostgreSQL backend read records by the names they are stored
//! under.
//!
//! serde's own derive checks its attributes; this module never reports an error
//! for one. An option it does not know is skipped, and an attribute it cannot
//! read leaves the field's Rust name.

use syn::meta::ParseNestedMeta;
use syn::{Attribute, Ident, LitStr, Token};

/// How serde writes a field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SerdeField {
    /// `rename = "..."` (or `rename(serialize = "...")`).
    pub rename: Option<String>,
    /// `skip` or `skip_serializing`: the field is never written.
    pub skipped: bool,
    /// `flatten`: the field's own keys are written into the record.
    pub flatten: bool,
}

/// The struct's `rename_all` rule (its serialize side), if any.
pub fn rename_all(attrs: &[Attribute]) -> Option<String> {
    let mut rule = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename_all") {
                rule = serialize_side(&meta)?.or(rule.take());
            } else {
                skip(&meta)?;
            }
            Ok(())
        });
    }
    rule
}

/// What the field's `#[serde(...)]` attributes say about its key.
pub fn field(attrs: &[Attribute]) -> SerdeField {
    let mut out = SerdeField::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") {
                out.rename = serialize_side(&meta)?.or(out.rename.take());
            } else if meta.path.is_ident("skip") || meta.path.is_ident("skip_serializing") {
                out.skipped = true;
            } else if meta.path.is_ident("flatten") {
                out.flatten = true;
            } else {
                skip(&meta)?;
            }
            Ok(())
        });
    }
    out
}

/// The key serde writes for the field `ident`.
pub fn key(ident: &Ident, serde: &SerdeField, rename_all: Option<&str>) -> String {
    if let Some(name) = &serde.rename {
        return name.clone();
    }
    let name = crate::names::unraw(ident);
    match rename_all {
        Some(rule) => apply(rule, &name).unwrap_or(name),
        None => name,
    }
}

/// `rename_all`'s rules as serde applies them to a field name (snake_case in Rust);
/// `None` for a rule serde does not have (serde reports it).
fn apply(rule: &str, field: &str) -> Option<String> {
    let pascal = || {
        let mut out = String::new();
        let mut capitalize = true;
        for ch in field.chars() {
            if ch == '_' {
                capitalize = true;
            } else if capitalize {
                out.push(ch.to_ascii_uppercase());
                capitalize = false;
            } else {
                out.push(ch);
            }
        }
        out
    };
    Some(match rule {
        "lowercase" | "snake_case" => field.to_owned(),
        "UPPERCASE" | "SCREAMING_SNAKE_CASE" => field.to_ascii_uppercase(),
        "PascalCase" => pascal(),
        "camelCase" => {
            let pascal = pascal();
            let mut chars = pascal.chars();
            chars.next().map(|c| c.to_ascii_lowercase().to_string() + chars.as_str()).unwrap_or_default()
        }
        "kebab-case" => field.replace('_', "-"),
        "SCREAMING-KEBAB-CASE" => field.to_ascii_uppercase().replace('_', "-"),
        _ => return None,
    })
}

/// `= "x"` gives `x`; `(serialize = "x", deserialize = "y")` gives `x`; a form
/// without a serialize side gives `None`.
fn serialize_side(meta: &ParseNestedMeta) -> syn::Result<Option<String>> {
    if meta.input.peek(Token![=]) {
        return Ok(Some(meta.value()?.parse::<LitStr>()?.value()));
    }
    let mut out = None;
    meta.parse_nested_meta(|inner| {
        if inner.path.is_ident("serialize") {
            out = Some(inner.value()?.parse::<LitStr>()?.value());
        } else {
            skip(&inner)?;
        }
        Ok(())
    })?;
    Ok(out)
}

/// Consumes an option this module does not read: a bare word, `= value` or `(...)`.
fn skip(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _content;
        syn::parenthesized!(_content in meta.input);
    }
    Ok(())
}
