//! Syntactic helpers for field types. The macro cannot resolve types, so these only
//! recognize the spelled forms (`Option<T>`, `Vec<T>`, `String`); everything the
//! compiler can check better is left to generated trait bounds.

use syn::{GenericArgument, PathArguments, Type};

/// The `T` of `Wrapper<T>` when `ty` is spelled that way (`Option<T>`,
/// `std::option::Option<T>`, ...).
pub fn wrapped<'a>(ty: &'a Type, wrapper: &str) -> Option<&'a Type> {
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if last.ident != wrapper {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match args.args.iter().collect::<Vec<_>>().as_slice() {
        [GenericArgument::Type(inner)] => Some(inner),
        _ => None,
    }
}

fn last_ident(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(path) if path.qself.is_none() && path.path.segments.last()?.arguments.is_none() => {
            Some(path.path.segments.last()?.ident.to_string())
        }
        _ => None,
    }
}

pub fn is_string(ty: &Type) -> bool {
    last_ident(ty).as_deref() == Some("String")
}

/// Integer, `bool` and `char`: cheap to pass by value.
pub fn is_copy_primitive(ty: &Type) -> bool {
    matches!(
        last_ident(ty).as_deref(),
        Some(
            "u8" | "u16"
                | "u32"
                | "u64"
                | "u128"
                | "usize"
                | "i8"
                | "i16"
                | "i32"
                | "i64"
                | "i128"
                | "isize"
                | "bool"
                | "char"
        )
    )
}
