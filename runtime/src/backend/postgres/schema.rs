//! Creating the shared schema, and checking each collection against `shelf_meta`.

use std::path::PathBuf;

use postgres::Client;
use serde::{Deserialize, Serialize};

use super::pool::pg_error;
use super::sql;
use crate::error::{Error, Result};

/// What the database must agree with about one registered collection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CollectionSchema {
    /// The collection (and table) name.
    pub name: String,
    /// Whether it lives in PostgreSQL (`memory` collections stay local).
    #[serde(skip)]
    pub persisted: bool,
    /// The `#[id]` field.
    pub id_field: String,
    /// The unique indices, by name.
    pub unique: Vec<String>,
    /// The `#[belongs_to]` fields PostgreSQL enforces: `(field, parent)`.
    pub foreign_keys: Vec<(String, String)>,
}

/// Any advisory lock number would do, as long as every Shelf uses the same one.
const SCHEMA_LOCK: i64 = 0x5348_454c_4600;

/// Creates what is missing, under an advisory lock so that instances opening at
/// once do not race, and refuses a collection whose recorded schema differs.
pub(super) fn create(client: &mut Client, collections: &[CollectionSchema]) -> Result<()> {
    let mut tx = client.transaction().map_err(|e| pg_error("create the schema", &e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).map_err(|e| pg_error("create the schema", &e))?;
    tx.batch_execute(sql::SHARED).map_err(|e| pg_error("create the schema", &e))?;
    for c in collections.iter().filter(|c| c.persisted) {
        if c.name.starts_with("shelf_") {
            return Err(schema_error(&c.name, "collection names starting with `shelf_` are Shelf's own tables"));
        }
        let declared = serde_json::to_string(c).map_err(|e| schema_error(&c.name, &e.to_string()))?;
        let row = tx
            .query_opt("SELECT schema::text FROM shelf_meta WHERE collection = $1", &[&c.name])
            .map_err(|e| pg_error("read shelf_meta", &e))?;
        match row {
            Some(row) => {
                let text: &str = row.get(0);
                let recorded: CollectionSchema =
                    serde_json::from_str(text).map_err(|e| schema_error(&c.name, &format!("unreadable: {e}")))?;
                let recorded = CollectionSchema { persisted: true, ..recorded };
                if let Some(difference) = difference(&recorded, c) {
                    return Err(schema_error(&c.name, &difference));
                }
            }
            None => {
                tx.batch_execute(&sql::table(&c.name)).map_err(|e| pg_error("create a table", &e))?;
                tx.execute(
                    "INSERT INTO shelf_meta (collection, schema) VALUES ($1, $2::text::jsonb)",
                    &[&c.name, &declared],
                )
                .map_err(|e| pg_error("write shelf_meta", &e))?;
            }
        }
    }
    // Foreign keys last: their parents' tables exist by now.
    for c in collections.iter().filter(|c| c.persisted) {
        for (field, parent) in &c.foreign_keys {
            tx.batch_execute(&sql::foreign_key(&c.name, field, parent))
                .map_err(|e| pg_error("create a foreign key", &e))?;
        }
    }
    // The commit function, for every table the schema holds (other instances'
    // collections too), with their foreign-key columns.
    let mut tables = Vec::new();
    for row in tx
        .query("SELECT collection, schema::text FROM shelf_meta ORDER BY collection", &[])
        .map_err(|e| pg_error("read shelf_meta", &e))?
    {
        let name: String = row.get(0);
        let recorded: CollectionSchema =
            serde_json::from_str(row.get(1)).map_err(|e| schema_error(&name, &format!("unreadable: {e}")))?;
        tables.push((name, recorded.foreign_keys.iter().map(|(field, _)| sql::fk_column(field)).collect()));
    }
    tx.batch_execute(&sql::commit_function(&tables)).map_err(|e| pg_error("create the commit function", &e))?;
    tx.commit().map_err(|e| pg_error("create the schema", &e))
}

/// How the recorded schema differs from the declared one, if it does.
fn difference(recorded: &CollectionSchema, declared: &CollectionSchema) -> Option<String> {
    if recorded.id_field != declared.id_field {
        return Some(format!(
            "the database keys it by field `{}`, the code by `{}`",
            recorded.id_field, declared.id_field
        ));
    }
    if recorded.unique != declared.unique {
        return Some(format!(
            "the database has unique indices {:?}, the code declares {:?}",
            recorded.unique, declared.unique
        ));
    }
    if recorded.foreign_keys != declared.foreign_keys {
        return Some(format!(
            "the database has foreign keys {:?}, the code declares {:?}",
            recorded.foreign_keys, declared.foreign_keys
        ));
    }
    None
}

fn schema_error(collection: &str, message: &str) -> Error {
    Error::Meta {
        path: PathBuf::from("postgres:shelf_meta"),
        message: format!("collection `{collection}`: {message}; an incompatible schema change needs a migration"),
    }
}
