//! Connections to PostgreSQL: a small pool for commits, one schema for all.

use std::ops::{Deref, DerefMut};

use parking_lot::Mutex;
use postgres::{Client, Config, NoTls, Statement};

use super::sql;
use crate::error::{Error, Result};

/// Idle connections, opened on demand; every connection uses the store's schema.
pub(super) struct Pool {
    config: Config,
    schema: Option<String>,
    idle: Mutex<Vec<Conn>>,
}

/// A pooled connection and the statements prepared on it.
struct Conn {
    client: Client,
    /// Statements by their text, prepared once per connection: a statement run
    /// by its text is parsed again each time, a round trip of its own.
    prepared: Vec<(&'static str, Statement)>,
}

impl Pool {
    /// A pool for `url` (a `postgres://` URL or a key=value string).
    pub(super) fn new(url: &str, schema: Option<String>) -> Result<Self> {
        let config: Config = url
            .parse()
            .map_err(|e: postgres::Error| Error::Postgres { op: "parse the URL", message: e.to_string() })?;
        Ok(Pool { config, schema, idle: Mutex::new(Vec::new()) })
    }

    /// A new connection, in the store's schema (created if missing), with JIT
    /// compilation off: Shelf's statements are small, but the change feed's poll
    /// (a sorted, limited range) can be estimated above `jit_above_cost`, and
    /// compiling it took a fifth of the machine's CPU under 8 writers (`perf`,
    /// `shelf-bench --bin postgres`).
    pub(super) fn connect(&self) -> Result<Client> {
        let mut client = self.config.connect(NoTls).map_err(|e| pg_error("connect", &e))?;
        client.batch_execute("SET jit = off").map_err(|e| pg_error("configure the session", &e))?;
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
        let conn = match idle {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => Conn { client: self.connect()?, prepared: Vec::new() },
        };
        Ok(Pooled { pool: self, conn: Some(conn) })
    }
}

/// A connection borrowed from the [`Pool`].
pub(super) struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
}

impl Pooled<'_> {
    fn conn(&mut self) -> &mut Conn {
        // Taken only by `drop`.
        self.conn.as_mut().unwrap_or_else(|| unreachable!("a pooled connection is present until dropped"))
    }

    /// `query`, prepared on this connection the first time it is asked for.
    pub(super) fn prepared(&mut self, query: &'static str) -> std::result::Result<Statement, postgres::Error> {
        let conn = self.conn();
        if let Some((_, statement)) = conn.prepared.iter().find(|(q, _)| *q == query) {
            return Ok(statement.clone());
        }
        let statement = conn.client.prepare(query)?;
        conn.prepared.push((query, statement.clone()));
        Ok(statement)
    }
}

impl Deref for Pooled<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.conn.as_ref().unwrap_or_else(|| unreachable!("a pooled connection is present until dropped")).client
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.conn().client
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take().filter(|c| !c.client.is_closed()) {
            let mut idle = self.pool.idle.lock();
            if idle.len() < 16 {
                idle.push(conn);
            }
        }
    }
}

/// A PostgreSQL error as Shelf reports it: what was being done, and the server's
/// message (with its SQLSTATE) or the client's.
pub(super) fn pg_error(op: &'static str, error: &postgres::Error) -> Error {
    Error::Postgres { op, message: pg_message(error) }
}

/// The server's message with its SQLSTATE, or the client's.
pub(super) fn pg_message(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}
