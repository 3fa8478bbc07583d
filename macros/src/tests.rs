//! Tests of the expansion function itself, on `proc_macro2` tokens: it never
//! panics, whatever the definition, and raw identifiers become the names a user
//! means. (What the generated code does is tested through the `shelf` crate.)

use proc_macro2::TokenStream;
use proptest::prelude::*;

use super::expand;
use super::parse::{parse_duration_ms, snake_case};
use super::serde_names;

#[test]
fn ttl_durations() {
    assert_eq!(parse_duration_ms("500ms"), Some(500));
    assert_eq!(parse_duration_ms("30s"), Some(30_000));
    assert_eq!(parse_duration_ms("15m"), Some(900_000));
    assert_eq!(parse_duration_ms("2h"), Some(7_200_000));
    assert_eq!(parse_duration_ms("1d"), Some(86_400_000));
    for bad in
        ["", "30", "s", "0s", "-1s", "1.5s", "30 s", "30sec", "1w", "99999999999999999999d", "18446744073709551615d"]
    {
        assert_eq!(parse_duration_ms(bad), None, "{bad:?}");
    }
}

#[test]
fn snake_case_names() {
    assert_eq!(snake_case("User"), "user");
    assert_eq!(snake_case("AuditEntry"), "audit_entry");
    assert_eq!(snake_case("HTTPLog"), "http_log");
    assert_eq!(snake_case("Post2Tag"), "post2_tag");
}

/// The JSON key of a field `name` with these field and struct attributes.
fn serde_key(name: &str, field_attr: &str, struct_attr: &str) -> String {
    let source = format!("{struct_attr} struct S {{ {field_attr} {name}: u8 }}");
    let input: syn::DeriveInput = syn::parse_str(&source).unwrap();
    let syn::Data::Struct(data) = &input.data else { unreachable!() };
    let field = data.fields.iter().next().unwrap();
    let rule = serde_names::rename_all(&input.attrs);
    serde_names::key(field.ident.as_ref().unwrap(), &serde_names::field(&field.attrs), rule.as_deref())
}

#[test]
fn json_keys_follow_serde_rename_and_rename_all() {
    assert_eq!(serde_key("opened_at", "", ""), "opened_at");
    assert_eq!(serde_key("r#type", "", ""), "type");
    assert_eq!(serde_key("opened_at", "#[serde(rename = \"At\")]", "#[serde(rename_all = \"camelCase\")]"), "At");
    assert_eq!(serde_key("opened_at", "#[serde(rename(deserialize = \"d\", serialize = \"s\"))]", ""), "s");
    assert_eq!(serde_key("opened_at", "#[serde(rename(deserialize = \"d\"))]", ""), "opened_at");
    for (rule, key) in [
        ("lowercase", "opened_at_x"),
        ("UPPERCASE", "OPENED_AT_X"),
        ("PascalCase", "OpenedAtX"),
        ("camelCase", "openedAtX"),
        ("snake_case", "opened_at_x"),
        ("SCREAMING_SNAKE_CASE", "OPENED_AT_X"),
        ("kebab-case", "opened-at-x"),
        ("SCREAMING-KEBAB-CASE", "OPENED-AT-X"),
        ("NoSuchCase", "opened_at_x"),
    ] {
        assert_eq!(serde_key("opened_at_x", "", &format!("#[serde(rename_all = \"{rule}\")]")), key, "{rule}");
    }
    let attrs = "#[serde(default, with = \"m\", rename = \"k\", skip_serializing_if = \"f\")]";
    assert_eq!(serde_key("a", attrs, "#[serde(deny_unknown_fields, rename_all(serialize = \"UPPERCASE\"))]"), "k");
    assert_eq!(serde_key("a_b", "", "#[serde(deny_unknown_fields, rename_all(serialize = \"UPPERCASE\"))]"), "A_B");
}

fn tokens(source: &str) -> TokenStream {
    match source.parse() {
        Ok(tokens) => tokens,
        Err(e) => panic!("test input does not lex: {e}: {source}"),
    }
}

/// The expansion as text, and whether it is only errors.
fn expand_text(source: &str) -> (String, bool) {
    let out = expand(tokens(source));
    // Tokens or errors, it is always a list of items.
    let file: syn::File = match syn::parse2(out.clone()) {
        Ok(file) => file,
        Err(e) => panic!("the expansion is not a list of items ({e}): {out}"),
    };
    let errors_only = !file.items.is_empty()
        && file.items.iter().all(|item| matches!(item, syn::Item::Macro(m) if m.mac.path.segments.last().is_some_and(|s| s.ident == "compile_error")));
    (out.to_string(), errors_only)
}

#[test]
fn raw_identifiers_become_plain_names() {
    let (out, errors) = expand_text(
        r#"
        #[index((r#type, size))]
        struct File {
            #[id] id: String,
            #[index] r#type: String,
            size: u64,
            #[belongs_to(Kind)] r#match: String,
        }
        "#,
    );
    assert!(!errors, "{out}");
    for name in ["by_type", "count_by_type", "by_type_and_size", "fn r#match", "\"type\"", "\"match\""] {
        assert!(out.contains(name), "`{name}` missing from {out}");
    }
    assert!(!out.contains("r#type\""), "a printed name keeps `r#`: {out}");
}

#[test]
fn a_repeated_option_is_a_spanned_error() {
    for source in [
        "#[storage(wal, wal)] struct A { #[id] id: String }",
        "#[entity(collection = \"a\", collection = \"b\")] struct A { #[id] id: String }",
        "struct A { #[id] id: String, #[belongs_to(B, on_delete = cascade, on_delete = restrict)] b: String }",
        "struct A { #[id] id: String, #[index(unique, unique)] b: String }",
    ] {
        let (out, errors) = expand_text(source);
        assert!(errors, "{source} expanded without error: {out}");
        assert!(out.contains("is given twice"), "{source}: {out}");
    }
}

#[test]
fn a_valid_definition_expands_without_errors() {
    let (out, errors) = expand_text(
        r#"
        #[storage(per_record, wal, shard = 2)]
        #[has_many(orders: Order, key = user_id)]
        #[has_one(profile: Profile, key = user_id)]
        struct User { #[id] id: String, #[index(unique)] email: String, tags: Vec<String> }
        "#,
    );
    assert!(!errors, "{out}");
    assert!(out.contains("const _ : ()"), "the impls are not in an anonymous const: {out}");
    assert!(!out.contains("__shelf_"), "a helper leaks onto the user's type: {out}");
}

/// Every `impl` the derive writes, at the top level or inside an anonymous const,
/// carries `#[automatically_derived]`, and every top-level item is an anonymous const
/// (nothing named lands in the user's module).
#[test]
fn every_generated_impl_is_marked_and_wrapped() {
    let source = r#"
        #[storage(per_record, wal)]
        #[index((email, team_id))]
        #[has_many(orders: Order, key = user_id)]
        #[has_many(tags: Tag, through = UserTag)]
        struct User { #[id] id: String, #[index(unique)] email: String, #[index(sorted)] age: Option<u32>, #[belongs_to(Team)] team_id: u64 }
    "#;
    let file: syn::File = match syn::parse2(expand(tokens(source))) {
        Ok(file) => file,
        Err(e) => panic!("the expansion is not a list of items: {e}"),
    };
    let marked = |attrs: &[syn::Attribute]| attrs.iter().any(|a| a.path().is_ident("automatically_derived"));
    let mut impls = 0;
    let mut types = Vec::new();
    for item in &file.items {
        let konst = match item {
            syn::Item::Const(konst) => konst,
            // The two public types the derive documents: the handle and the fields.
            syn::Item::Struct(s) => {
                types.push(s.ident.to_string());
                continue;
            }
            syn::Item::Impl(imp) => {
                impls += 1;
                assert!(marked(&imp.attrs), "an impl without #[automatically_derived]: {}", quote::quote!(#imp));
                continue;
            }
            other => {
                panic!("a top-level item is neither an anonymous const nor a public type: {}", quote::quote!(#other))
            }
        };
        assert_eq!(konst.ident, "_", "a named const lands in the user's module");
        let mut pending: Vec<&syn::Expr> = vec![&konst.expr];
        while let Some(expr) = pending.pop() {
            let syn::Expr::Block(block) = expr else { continue };
            for stmt in &block.block.stmts {
                match stmt {
                    syn::Stmt::Item(syn::Item::Impl(imp)) => {
                        impls += 1;
                        assert!(
                            marked(&imp.attrs),
                            "an impl without #[automatically_derived]: {}",
                            quote::quote!(#imp)
                        );
                    }
                    syn::Stmt::Item(syn::Item::Const(inner)) => pending.push(&inner.expr),
                    _ => {}
                }
            }
        }
    }
    types.sort();
    assert_eq!(types, ["UserCollection", "UserFields"], "the derive names no other type in the user's module");
    // Entity, the handle, the fields, the relations: well over a handful.
    assert!(impls >= 4, "only {impls} impls found: the walk does not see the output");
}

const NAMES: &[&str] = &["id", "a", "b", "r#type", "r#match", "user_id", "self_id", "crate_id", "type_id", "_id", "x"];
const TYPES: &[&str] = &[
    "String",
    "u64",
    "i32",
    "bool",
    "Option<String>",
    "Option<u64>",
    "Vec<String>",
    "std::option::Option<String>",
    "(u8, String)",
];
const BAD_TYPES: &[&str] = &[
    "f64",
    "Vec<f64>",
    "Option<Vec<u8>>",
    "[u8; 4]",
    "&'static str",
    "Box<dyn Fn()>",
    "Option<>",
    "Vec<String, u8>",
    "<T as Tr>::Out",
    "r#type",
];
const FIELD_ATTRS: &[&str] = &[
    "#[index]",
    "#[index(unique)]",
    "#[belongs_to(User)]",
    "#[belongs_to(User, on_delete = cascade)]",
    "#[serde(rename = \"z\")]",
    "#[serde(rename(serialize = \"a\", deserialize = \"b\"))]",
    "#[serde(skip)]",
    "#[serde(flatten)]",
    "#[serde(default, with = \"m\", skip_serializing_if = \"Option::is_none\")]",
    // serde's to judge, never a panic or an error of this derive:
    "#[serde(rename = 5, rename)]",
    "#[serde(with = , flatten(1))]",
];
const BAD_FIELD_ATTRS: &[&str] = &[
    "#[id]",
    "#[id(auto)]",
    "#[id(auto, auto)]",
    "#[id(manual)]",
    "#[id = 1]",
    "#[index(unique, unique)]",
    "#[index(each)]",
    "#[index(sorted, each)]",
    "#[index(bogus)]",
    "#[index((a, b))]",
    "#[index = \"x\"]",
    "#[belongs_to(r#type)]",
    "#[belongs_to(User, on_delete = detach)]",
    "#[belongs_to(User, on_delete = detach, on_delete = cascade)]",
    "#[belongs_to(User, check = false, check = true)]",
    "#[belongs_to(User, on_delete = 3)]",
    "#[belongs_to(User, bogus = 1)]",
    "#[belongs_to()]",
    "#[belongs_to]",
    "#[entity(collection = \"x\")]",
    "#[storage(wal)]",
    "#[has_many(xs: X, key = a)]",
];
const STRUCT_ATTRS: &[&str] = &[
    "#[serde(rename_all = \"camelCase\")]",
    "#[serde(rename_all(serialize = \"kebab-case\"), deny_unknown_fields)]",
    "#[serde(rename_all = \"NoSuchCase\")]",
    "#[entity(collection = \"things\")]",
    "#[storage(per_record, shard = 2)]",
    "#[storage(memory, ttl = \"30s\")]",
    "#[index((a, r#type))]",
    "#[has_many(xs: X, key = a)]",
    "#[has_many(xs: X, key = r#type)]",
    "#[has_many(xs: X, through = J)]",
    "#[has_one(x: X, key = user_id)]",
    "#[has_many(r#type: X, through = J)]",
    "#[derive(Clone)]",
];
const BAD_STRUCT_ATTRS: &[&str] = &[
    "#[entity(collection = \"a\", collection = \"b\")]",
    "#[entity(collection = \"Bad Name\")]",
    "#[entity(collection = \"wal\")]",
    "#[entity(collection = 3)]",
    "#[entity(bogus)]",
    "#[storage(wal, wal)]",
    "#[storage(memory, wal, compress)]",
    "#[storage(collection_file, shard = 9)]",
    "#[storage(shard = 99999999999)]",
    "#[storage(memory, per_record)]",
    "#[storage(bogus)]",
    "#[storage = 3]",
    "#[storage(per_record, ttl = \"30s\")]",
    "#[storage(memory, ttl = \"0s\")]",
    "#[storage(memory, ttl = \"99999999999999999999d\")]",
    "#[storage(memory, ttl = 30)]",
    "#[index((a, b), unique, unique)]",
    "#[index((a, missing))]",
    "#[index((a))]",
    "#[index(a, b)]",
    "#[index]",
    "#[index(())]",
    "#[has_one(x: X, through = J)]",
    "#[has_many(xs: X)]",
    "#[has_many]",
    "#[id]",
    "#[belongs_to(User)]",
];
const STRUCT_NAMES: &[&str] = &["User", "r#type", "HTTPLog", "r#match", "A"];

fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    proptest::sample::select(pool)
}

/// Mostly valid choices, sometimes an invalid one.
fn mostly(good: &'static [&'static str], bad: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    prop_oneof![6 => pick(good), 1 => pick(bad)]
}

fn field() -> impl Strategy<Value = String> {
    (pick(NAMES), mostly(TYPES, BAD_TYPES), proptest::collection::vec(mostly(FIELD_ATTRS, BAD_FIELD_ATTRS), 0..2))
        .prop_map(|(name, ty, attrs)| format!("{} {name}: {ty}", attrs.join(" ")))
}

/// A random entity definition: struct, tuple struct, unit struct, enum or generic
/// struct, with random attributes and fields, valid or not.
fn definition() -> impl Strategy<Value = String> {
    (
        0..16u8,
        pick(STRUCT_NAMES),
        proptest::collection::vec(mostly(STRUCT_ATTRS, BAD_STRUCT_ATTRS), 0..3),
        proptest::sample::select(&["#[id] id: String", "#[id(auto)] id: u64", "#[id] r#type: String", ""][..]),
        proptest::collection::vec(field(), 0..5),
    )
        .prop_map(|(shape, name, attrs, id, fields)| {
            let attrs = attrs.join(" ");
            let fields = std::iter::once(id.to_owned()).chain(fields).collect::<Vec<_>>().join(", ");
            match shape {
                0 => format!(
                    "{attrs} struct {name}({});",
                    fields.split(", ").map(|_| "String").collect::<Vec<_>>().join(", ")
                ),
                1 => format!("{attrs} struct {name};"),
                2 => format!("{attrs} enum {name} {{ A, B }}"),
                3 => format!("{attrs} struct {name}<T> {{ {fields} }}"),
                _ => format!("{attrs} pub struct {name} {{ {fields} }}"),
            }
        })
}

fn cases() -> u32 {
    std::env::var("SHELF_MACRO_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// Any definition expands to items or to spanned errors, never a panic.
    #[test]
    fn expand_never_panics(source in definition()) {
        let Ok(input) = source.parse::<TokenStream>() else { return Ok(()) };
        let out = expand(input);
        prop_assert!(syn::parse2::<syn::File>(out.clone()).is_ok(), "not a list of items: {}", out);
    }

    /// Random tokens (mostly not a struct at all) are errors, never a panic.
    #[test]
    fn expand_never_panics_on_token_soup(source in "[a-z#\\[\\]()<>{}:,;= \"0-9_]{0,60}") {
        let Ok(input) = source.parse::<TokenStream>() else { return Ok(()) };
        let out = expand(input);
        prop_assert!(syn::parse2::<syn::File>(out.clone()).is_ok(), "not a list of items: {}", out);
    }
}

/// The generator reaches both sides: definitions that expand to code and
/// definitions that expand to errors (else the property above proves little).
#[test]
fn the_generator_makes_valid_and_invalid_definitions() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut valid, mut invalid) = (0, 0);
    for _ in 0..2000 {
        let source = match definition().new_tree(&mut runner) {
            Ok(tree) => tree.current(),
            Err(e) => panic!("the generator failed: {e}"),
        };
        let Ok(input) = source.parse::<TokenStream>() else { continue };
        let out = expand(input).to_string();
        if out.contains("compile_error") {
            invalid += 1;
        } else {
            valid += 1;
        }
    }
    assert!(valid >= 20 && invalid >= 20, "valid {valid}, invalid {invalid}");
}
