//! Parsing: attributes and fields of the derive input into a [`Model`]. Syntax
//! errors are reported here; meaning is checked in `check`.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Fields, Ident, LitBool, LitInt, LitStr, Meta, Token};

use crate::attr::Attr;
use crate::ctx::Ctx;
use crate::model::*;

pub fn parse(ctx: &Ctx, input: &DeriveInput) -> Option<Model> {
    let named = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => named,
            Fields::Unnamed(_) => {
                ctx.error(
                    &input.ident,
                    "#[derive(Entity)] needs a struct with named fields, one of them marked #[id], e.g. `struct User { #[id] id: String }`; a tuple struct has no field names (to use a newtype as an id type, implement `shelf::Key` for it instead)",
                );
                return None;
            }
            Fields::Unit => {
                ctx.error(
                    &input.ident,
                    "#[derive(Entity)] needs a struct with named fields, one of them marked #[id]; add fields, e.g. `struct User { #[id] id: String }`",
                );
                return None;
            }
        },
        Data::Enum(data) => {
            ctx.error_at(data.enum_token.span, "#[derive(Entity)] works on structs with named fields, not on enums; wrap the enum in a struct with an #[id] field");
            return None;
        }
        Data::Union(data) => {
            ctx.error_at(data.union_token.span, "#[derive(Entity)] works on structs with named fields, not on unions");
            return None;
        }
    };
    if !input.generics.params.is_empty() {
        ctx.error(&input.generics, "#[derive(Entity)] does not support generic structs: each entity type is one collection; use a concrete type");
    }

    let mut model = Model {
        ident: input.ident.clone(),
        vis: input.vis.clone(),
        collection: snake_case(&crate::names::unraw(&input.ident)),
        collection_span: input.ident.span(),
        storage: Storage {
            kind: StorageKind::PerRecord,
            kind_span: None,
            wal: None,
            compress: None,
            shard: None,
            ttl: None,
        },
        id: None,
        fields: Vec::new(),
        composites: Vec::new(),
        has_many: Vec::new(),
        rename_all: crate::serde_names::rename_all(&input.attrs),
    };
    let mut seen_entity = false;
    let mut seen_storage = false;
    for attr in &input.attrs {
        let path = attr.path();
        if path.is_ident("entity") {
            if std::mem::replace(&mut seen_entity, true) {
                ctx.error(attr, "duplicate #[entity(...)] attribute; put all options in one");
            }
            parse_entity(ctx, attr, &mut model);
        } else if path.is_ident("storage") {
            if std::mem::replace(&mut seen_storage, true) {
                ctx.error(
                    attr,
                    "duplicate #[storage(...)] attribute; put all options in one, e.g. #[storage(per_record, wal)]",
                );
            }
            parse_storage(ctx, attr, &mut model.storage);
        } else if path.is_ident("index") {
            if let Some(index) = parse_composite(ctx, attr) {
                model.composites.push(index);
            }
        } else if path.is_ident("has_many") || path.is_ident("has_one") {
            let one = path.is_ident("has_one");
            match attr.parse_args::<HasManyArgs>() {
                Ok(HasManyArgs { via: HasManyVia::Through(join), .. }) if one => ctx.error(
                    join,
                    "#[has_one] follows a key: #[has_one(profile: Profile, key = user_id)]; a `through` relationship is #[has_many]",
                ),
                Ok(args) => model.has_many.push(HasMany { one, name: args.name, target: args.target, via: args.via }),
                Err(e) => ctx.syn(e),
            }
        } else if path.is_ident("id") || path.is_ident("belongs_to") {
            ctx.error(
                attr,
                if path.is_ident("id") {
                    "#[id] belongs on a field, not on the struct; move it onto the field that identifies a record, e.g. `#[id] id: String`"
                } else {
                    "#[belongs_to] belongs on a field, not on the struct; move it onto the field that holds the parent's id"
                },
            );
        }
    }

    for field in &named.named {
        let Some(ident) = field.ident.clone() else { continue };
        let serde = crate::serde_names::field(&field.attrs);
        let mut parsed = Field { ident, ty: field.ty.clone(), serde, index: None, belongs_to: None };
        for attr in &field.attrs {
            let path = attr.path();
            if path.is_ident("id") {
                let auto = parse_id(ctx, attr);
                // Spans name the `id` word: on stable, `attr.span()` is only the `#`.
                if let Some(first) = &model.id {
                    let mut error = syn::Error::new(
                        attr.path().span(),
                        "an entity has exactly one #[id] field, and this is the second; keep #[id] on one field only",
                    );
                    error.combine(syn::Error::new(first.span, "the first #[id] is here"));
                    ctx.syn(error);
                } else {
                    model.id = Some(IdField {
                        ident: parsed.ident.clone(),
                        ty: field.ty.clone(),
                        auto,
                        span: attr.path().span(),
                    });
                }
            } else if path.is_ident("index") {
                if parsed.index.is_some() {
                    ctx.error(
                        attr,
                        "duplicate #[index] on this field; combine the options, e.g. #[index(unique, sorted)]",
                    );
                }
                parsed.index = parse_field_index(ctx, attr);
            } else if path.is_ident("belongs_to") {
                if parsed.belongs_to.is_some() {
                    ctx.error(attr, "duplicate #[belongs_to] on this field");
                }
                parsed.belongs_to = parse_belongs_to(ctx, attr);
            } else if path.is_ident("entity")
                || path.is_ident("storage")
                || path.is_ident("has_many")
                || path.is_ident("has_one")
            {
                ctx.error(
                    attr,
                    format!(
                        "#[{}] belongs on the struct, not on a field; move it above `struct {}`",
                        path.get_ident().map(Ident::to_string).unwrap_or_default(),
                        input.ident
                    ),
                );
            }
        }
        model.fields.push(parsed);
    }
    Some(model)
}

fn parse_entity(ctx: &Ctx, attr: &Attribute, model: &mut Model) {
    let mut collection = Attr::none("collection");
    let result = attr.parse_nested_meta(|meta| {
        if meta.path.is_ident("collection") {
            let name: LitStr = meta.value()?.parse()?;
            collection.set(ctx, name.span(), name.value());
            Ok(())
        } else {
            Err(meta.error("unknown #[entity] option; the supported option is `collection = \"name\"`"))
        }
    });
    if let Err(e) = result {
        ctx.syn(e);
    }
    if let Some((span, name)) = collection.get() {
        model.collection = name;
        model.collection_span = span;
    }
}

fn parse_storage(ctx: &Ctx, attr: &Attribute, storage: &mut Storage) {
    let mut kind = Attr::none("storage strategy");
    let mut wal = Attr::none("wal");
    let mut compress = Attr::none("compress");
    let mut shard = Attr::none("shard");
    let mut ttl = Attr::none("ttl");
    let result = attr.parse_nested_meta(|meta| {
        let span = meta.path.span();
        let strategy = if meta.path.is_ident("per_record") {
            Some(StorageKind::PerRecord)
        } else if meta.path.is_ident("collection_file") {
            Some(StorageKind::CollectionFile)
        } else if meta.path.is_ident("memory") {
            Some(StorageKind::Memory)
        } else {
            None
        };
        if let Some(strategy) = strategy {
            if kind.is_set() {
                return Err(meta.error(
                    "an entity has one storage strategy, and this is the second; keep one of per_record, collection_file or memory",
                ));
            }
            kind.set(ctx, span, strategy);
        } else if meta.path.is_ident("wal") {
            wal.set(ctx, span, ());
        } else if meta.path.is_ident("compress") {
            compress.set(ctx, span, ());
        } else if meta.path.is_ident("shard") {
            let n: LitInt = meta.value()?.parse()?;
            shard.set(ctx, span, n.base10_parse::<u32>()?);
        } else if meta.path.is_ident("ttl") {
            let text: syn::LitStr = meta.value()?.parse()?;
            match parse_duration_ms(&text.value()) {
                Some(ms) => ttl.set(ctx, span, ms),
                None => {
                    return Err(syn::Error::new(
                        text.span(),
                        "`ttl` is a duration: a positive whole number and a unit, one of ms, s, m, h, d (e.g. ttl = \"30s\", ttl = \"15m\")",
                    ))
                }
            }
        } else {
            return Err(meta.error(
                "unknown storage option; expected one of per_record, collection_file, memory (the strategy) and wal, compress, shard = N, ttl = \"30s\" (modifiers)",
            ));
        }
        Ok(())
    });
    if let Err(e) = result {
        ctx.syn(e);
    }
    if let Some((span, k)) = kind.get() {
        storage.kind = k;
        storage.kind_span = Some(span);
    }
    storage.wal = wal.span().or(storage.wal);
    storage.compress = compress.span().or(storage.compress);
    if let Some((span, n)) = shard.get() {
        storage.shard = Some((n, span));
    }
    if let Some((span, ms)) = ttl.get() {
        storage.ttl = Some((ms, span));
    }
}

/// `"30s"`, `"500ms"`, `"15m"`, `"2h"`, `"1d"` in milliseconds; `None` for anything
/// else, zero and overflow included.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number.checked_mul(scale).filter(|&ms| ms > 0)
}

/// `#[id]` or `#[id(auto)]`: returns the span of `auto`.
fn parse_id(ctx: &Ctx, attr: &Attribute) -> Option<Span> {
    if matches!(attr.meta, Meta::Path(_)) {
        return None;
    }
    let mut auto = Attr::none("auto");
    let result = attr.parse_nested_meta(|meta| {
        if meta.path.is_ident("auto") {
            auto.set(ctx, meta.path.span(), ());
            Ok(())
        } else {
            Err(meta.error("unknown #[id] option; write #[id] or #[id(auto)]"))
        }
    });
    if let Err(e) = result {
        ctx.syn(e);
    }
    auto.span()
}

fn parse_field_index(ctx: &Ctx, attr: &Attribute) -> Option<FieldIndex> {
    if matches!(attr.meta, Meta::Path(_)) {
        return Some(FieldIndex { unique: None, sorted: None, each: None, span: attr.path().span() });
    }
    let mut unique = Attr::none("unique");
    let mut sorted = Attr::none("sorted");
    let mut each = Attr::none("each");
    let result = attr.parse_nested_meta(|meta| {
        let span = meta.path.span();
        if meta.path.is_ident("unique") {
            unique.set(ctx, span, ());
        } else if meta.path.is_ident("sorted") {
            sorted.set(ctx, span, ());
        } else if meta.path.is_ident("each") {
            each.set(ctx, span, ());
        } else {
            return Err(meta.error("unknown index option; expected `unique`, `sorted` or `each`, e.g. #[index(unique)] (a composite index goes on the struct: #[index((a, b))])"));
        }
        Ok(())
    });
    match result {
        Ok(()) => Some(FieldIndex {
            unique: unique.span(),
            sorted: sorted.span(),
            each: each.span(),
            span: attr.path().span(),
        }),
        Err(e) => {
            ctx.syn(e);
            None
        }
    }
}

/// How a composite index is written, for errors about its shape.
const SHAPE: &str = "a composite index lists its fields as a tuple, e.g. #[index((country, age))] or #[index((country, age), unique)]; to index one field, put #[index] on the field";

/// A struct-level composite index: `#[index((a, b), unique, sorted)]`.
///
/// The fields are written as a tuple. The flat form `#[index(a, b)]` would trip
/// clippy's `duplicated_attributes` lint in user crates whenever two composite
/// indices share a field, so it is refused with a hint.
fn parse_composite(ctx: &Ctx, attr: &Attribute) -> Option<CompositeIndex> {
    let mut index = CompositeIndex { fields: Vec::new(), unique: None, sorted: None, span: attr.path().span() };
    let mut unique = Attr::none("unique");
    let mut sorted = Attr::none("sorted");
    if matches!(attr.meta, Meta::Path(_)) {
        ctx.error(attr, SHAPE);
        return None;
    }
    let result = attr.parse_args_with(|input: ParseStream| {
        if !input.peek(syn::token::Paren) {
            return Err(flat_composite_error(attr, input));
        }
        let content;
        syn::parenthesized!(content in input);
        let fields = content.parse_terminated(Ident::parse, Token![,])?;
        index.fields = fields.into_iter().collect();
        while input.parse::<Option<Token![,]>>()?.is_some() {
            if input.is_empty() {
                break;
            }
            let option: Ident = input.parse()?;
            match option.to_string().as_str() {
                "unique" => unique.set(ctx, option.span(), ()),
                "sorted" => sorted.set(ctx, option.span(), ()),
                _ => {
                    return Err(syn::Error::new(
                        option.span(),
                        "unknown composite index option; expected `unique` or `sorted`",
                    ))
                }
            }
        }
        if !input.is_empty() {
            return Err(input.error("expected `, unique` or `, sorted` after the tuple of fields"));
        }
        Ok(())
    });
    if let Err(e) = result {
        ctx.syn(e);
        return None;
    }
    index.unique = unique.span();
    index.sorted = sorted.span();
    if index.fields.len() < 2 {
        ctx.error(attr, "a composite index names two or more fields, e.g. #[index((country, age))]; to index one field, put #[index] on the field");
        return None;
    }
    Some(index)
}

/// The error for a struct-level `#[index(...)]` without a tuple. For the flat form
/// `#[index(a, b, unique)]` it spells out the tuple form with the user's names.
fn flat_composite_error(attr: &Attribute, input: ParseStream) -> syn::Error {
    let words = input.parse_terminated(Ident::parse, Token![,]).map(|words| words.into_iter().map(|w| w.to_string()));
    let (fields, options): (Vec<String>, Vec<String>) = match words {
        Ok(words) => words.partition(|w| w != "unique" && w != "sorted"),
        Err(_) => (Vec::new(), Vec::new()),
    };
    let message = match fields.as_slice() {
        [] | [_] => SHAPE.to_owned(),
        _ => {
            let options: String = options.iter().map(|o| format!(", {o}")).collect();
            format!(
                "write the fields of a composite index as a tuple: #[index(({}){options})]; the flat form is not accepted because it trips clippy's `duplicated_attributes` lint when two indices share a field",
                fields.join(", ")
            )
        }
    };
    match &attr.meta {
        Meta::List(list) => syn::Error::new_spanned(&list.tokens, message),
        _ => syn::Error::new(attr.path().span(), message),
    }
}

fn parse_belongs_to(ctx: &Ctx, attr: &Attribute) -> Option<BelongsTo> {
    struct Args {
        parent: syn::Path,
        options: Vec<(Ident, syn::Expr)>,
    }
    impl Parse for Args {
        fn parse(input: ParseStream) -> syn::Result<Self> {
            let parent: syn::Path = input.parse()?;
            let mut options = Vec::new();
            while input.parse::<Option<Token![,]>>()?.is_some() {
                if input.is_empty() {
                    break;
                }
                let name: Ident = input.parse()?;
                input.parse::<Token![=]>()?;
                options.push((name, input.parse()?));
            }
            Ok(Args { parent, options })
        }
    }
    let args = match attr.parse_args::<Args>() {
        Ok(args) => args,
        Err(e) => {
            ctx.error(
                attr,
                format!(
                    "expected #[belongs_to(Parent)] or #[belongs_to(Parent, on_delete = cascade, check = false)]: {e}"
                ),
            );
            return None;
        }
    };
    let mut check = Attr::none("check");
    let mut on_delete = Attr::none("on_delete");
    for (name, value) in args.options {
        match name.to_string().as_str() {
            "check" => match &value {
                syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Bool(LitBool { value, .. }), .. }) => {
                    check.set(ctx, name.span(), *value)
                }
                _ => ctx.error(&value, "`check` takes `true` or `false`"),
            },
            "on_delete" => {
                let word = match &value {
                    syn::Expr::Path(p) => p.path.get_ident().map(Ident::to_string),
                    _ => None,
                };
                let rule = match word.as_deref() {
                    Some("restrict") => OnDelete::Restrict,
                    Some("cascade") => OnDelete::Cascade,
                    Some("detach") => OnDelete::Detach,
                    Some("ignore") => OnDelete::Ignore,
                    _ => {
                        ctx.error(
                            &value,
                            "`on_delete` is one of `restrict` (the default), `cascade`, `detach` or `ignore` (the default with `check = false`)",
                        );
                        continue;
                    }
                };
                on_delete.set(ctx, value.span(), rule);
            }
            _ => ctx.error(
                &name,
                "unknown #[belongs_to] option; expected `on_delete = restrict | cascade | detach | ignore` or `check = false`",
            ),
        }
    }
    let on_delete = on_delete.get();
    let check = check.get().is_none_or(|(_, check)| check);
    // A key that may name a missing parent does not hold its parent either: with
    // `check = false`, removing the parent leaves the children as they are.
    let default = if check { OnDelete::Restrict } else { OnDelete::Ignore };
    Some(BelongsTo {
        parent: args.parent,
        check,
        on_delete: on_delete.map_or(default, |(_, rule)| rule),
        on_delete_span: on_delete.map(|(span, _)| span),
        span: attr.path().span(),
    })
}

/// `orders: Order, key = user_id` or `tags: Tag, through = PostTag`.
struct HasManyArgs {
    name: Ident,
    target: syn::Path,
    via: HasManyVia,
}

impl Parse for HasManyArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let name: Ident = input.parse()?;
        input.parse::<Token![:]>().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected #[has_many(name: Entity, key = field)] or #[has_many(name: Entity, through = JoinEntity)]",
            )
        })?;
        let target: syn::Path = input.parse()?;
        input.parse::<Token![,]>().map_err(|e| {
            syn::Error::new(
                e.span(),
                "has_many needs `key = field` (1:N) or `through = JoinEntity` (M:N) after the target",
            )
        })?;
        let option: Ident = input.parse()?;
        input.parse::<Token![=]>()?;
        let via = match option.to_string().as_str() {
            "key" => HasManyVia::Key(input.parse()?),
            "through" => HasManyVia::Through(input.parse()?),
            _ => return Err(syn::Error::new(option.span(), "expected `key = field` or `through = JoinEntity`")),
        };
        let _ = input.parse::<Option<Token![,]>>()?;
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after has_many's `key`/`through`"));
        }
        Ok(HasManyArgs { name, target, via })
    }
}

/// `AuditEntry` -> `audit_entry`, `HTTPLog` -> `http_log`.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev_lower = i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if i > 0 && (prev_lower || (next_lower && chars[i - 1].is_uppercase())) {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
