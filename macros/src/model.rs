//! The checked model of one entity: what the attributes mean, with spans kept for
//! error messages and generated code.

use proc_macro2::Span;
use syn::{Ident, Type, Visibility};

pub struct Model {
    pub ident: Ident,
    pub vis: Visibility,
    pub collection: String,
    pub collection_span: Span,
    pub storage: Storage,
    pub id: Option<IdField>,
    pub fields: Vec<Field>,
    pub composites: Vec<CompositeIndex>,
    pub has_many: Vec<HasMany>,
    /// The struct's `#[serde(rename_all = "...")]` rule.
    pub rename_all: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    PerRecord,
    CollectionFile,
    Memory,
}

pub struct Storage {
    pub kind: StorageKind,
    /// Where the kind was written, if it was.
    pub kind_span: Option<Span>,
    pub wal: Option<Span>,
    pub compress: Option<Span>,
    pub shard: Option<(u32, Span)>,
    /// `ttl = "30s"`: the time to live of a memory collection's records, in ms.
    pub ttl: Option<(u64, Span)>,
}

pub struct IdField {
    pub ident: Ident,
    pub ty: Type,
    /// The span of `auto` in `#[id(auto)]`.
    pub auto: Option<Span>,
    /// The span of the `id` attribute.
    pub span: Span,
}

pub struct Field {
    pub ident: Ident,
    pub ty: Type,
    /// What the field's `#[serde(...)]` attributes say about its JSON key.
    pub serde: crate::serde_names::SerdeField,
    pub index: Option<FieldIndex>,
    pub belongs_to: Option<BelongsTo>,
}

pub struct FieldIndex {
    pub unique: Option<Span>,
    pub sorted: Option<Span>,
    pub each: Option<Span>,
    pub span: Span,
}

pub struct CompositeIndex {
    pub fields: Vec<Ident>,
    pub unique: Option<Span>,
    pub sorted: Option<Span>,
    pub span: Span,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OnDelete {
    Restrict,
    Cascade,
    Detach,
    Ignore,
}

pub struct BelongsTo {
    pub parent: syn::Path,
    pub check: bool,
    pub on_delete: OnDelete,
    pub on_delete_span: Option<Span>,
    pub span: Span,
}

pub enum HasManyVia {
    Key(Ident),
    Through(syn::Path),
}

pub struct HasMany {
    /// `#[has_one]`: the accessor returns the one child, if any.
    pub one: bool,
    pub name: Ident,
    pub target: syn::Path,
    pub via: HasManyVia,
}

/// One index as generated: resolved from a field's `#[index]` or a struct-level
/// composite `#[index(a, b)]` by `check::indices`.
pub struct IndexModel {
    /// The field name, or the field names joined by `_and_`.
    pub name: String,
    /// An auxiliary index generated for a composite index's first field (so that the
    /// composite serves an equality on its prefix): no lookup methods of its own.
    pub hidden: bool,
    pub unique: bool,
    pub sorted: bool,
    /// How a record's value yields keys.
    pub shape: KeyShape,
    /// The fields the key is made of, with their key types.
    pub parts: Vec<KeyPart>,
    pub span: Span,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum KeyShape {
    /// One key: the field's value (a tuple of values for a composite).
    Plain,
    /// `Option<K>`: a key for `Some` only.
    Optional,
    /// `Vec<K>` with `#[index(each)]`: a key per element.
    Each,
}

pub struct KeyPart {
    pub field: Ident,
    /// The key type: the field type, or the `T` of `Option<T>` / `Vec<T>`.
    pub key_ty: Type,
    pub arg: ArgKind,
}

/// How a lookup method takes this part of the key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// `String` keys are looked up by `&str`.
    Str,
    /// Small `Copy` primitives are taken by value.
    Value,
    /// Anything else by reference.
    Ref,
}

/// A `#[belongs_to]` field as generated: resolved by `relations::belongs`.
pub struct BelongsModel {
    pub field: Ident,
    /// The parent's id type: the field type, or the `T` of `Option<T>`.
    pub key_ty: Type,
    pub optional: bool,
    pub parent: syn::Path,
    pub on_delete: OnDelete,
    pub check: bool,
    /// Position of the field's index.
    pub index: usize,
    /// The accessor name: the field name without `_id`.
    pub accessor: Ident,
    /// Whether this is the only #[belongs_to] to this parent (then the entity
    /// implements `References<Parent>`, which `through` relationships use).
    pub only_one_to_parent: bool,
    pub ty_span: Span,
}

impl Model {
    /// The JSON key serde writes for the field `ident` (its Rust name unless a
    /// serde attribute renames it).
    pub fn key_of(&self, ident: &Ident) -> String {
        let serde = self.fields.iter().find(|f| f.ident == *ident).map(|f| f.serde.clone()).unwrap_or_default();
        crate::serde_names::key(ident, &serde, self.rename_all.as_deref())
    }
}
