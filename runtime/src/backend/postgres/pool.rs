//! Connections to PostgreSQL: a small pool for commits, one schema for all.

use std::ops::{Deref, DerefMut};

use parking_lot::Mutex;
use postgres::{Client, Config, NoTls};

use super::sql;
use crate::error::{Error, Result};

/// Idle connections, opened on demand; every connection uses the store's schema.
pub(super) struct Pool {
    config: Config,
    schema: Option<String>,
    idle: Mutex<Vec<Client>>,
}

impl Pool {
    /// A pool for `url` (a `postgres://` URL or a key=value string).
    pub(super) fn new(url: &str, schema: Option<String>) -> Result<Self> {
        let config: Config = url
            .parse()
            .map_err(|e: postgres::Error| Error::Postgres { op: "parse the URL", message: e.to_string() })?;
        Ok(Pool { config, schema, idle: Mutex::new(Vec::new()) })
    }

    /// A new connection, in the store's schema (created if missing).
    pub(super) fn connect(&self) -> Result<Client> {
        let mut client = self.config.connect(NoTls).map_err(|e| pg_error("connect", &e))?;
        if let Some(schema) = &self.schema {
            let ident = sql::ident(schema);
            client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {ident}; SET search_path TO {ident}"))
                .map_err(|e| pg_error("use the schema", &e))?;
        }
        Ok(client)
    }

    /// An idle connection, or a new one; it goes back to the pool when dropped,
    /// unless it broke.
    pub(super) fn get(&self) -> Result<Pooled<'_>> {
        let idle = self.idle.lock().pop();
        let client = match idle {
            Some(client) if !client.is_closed() => client,
            _ => self.connect()?,
        };
        Ok(Pooled { pool: self, client: Some(client) })
    }
}

/// A connection borrowed from the [`Pool`].
pub(super) struct Pooled<'a> {
    pool: &'a Pool,
    client: Option<Client>,
}

impl Deref for Pooled<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        // Taken only by `drop`.
        self.client.as_ref().unwrap_or_else(|| unreachable!("a pooled connection is present until dropped"))
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().unwrap_or_else(|| unreachable!("a pooled connection is present until dropped"))
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take().filter(|c| !c.is_closed()) {
            let mut idle = self.pool.idle.lock();
            if idle.len() < 16 {
                idle.push(client);
            }
        }
    }
}

/// A PostgreSQL error as Shelf reports it: what was being done, and the server's
/// message (with its SQLSTATE) or the client's.
pub(super) fn pg_error(op: &'static str, error: &postgres::Error) -> Error {
    let message = match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => error.to_string(),
    };
    Error::Postgres { op, message }
}
