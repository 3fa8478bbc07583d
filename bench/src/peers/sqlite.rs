//! SQLite through rusqlite (bundled): one table per entity with typed columns and the
//! same indices as Shelf's (unique email, country, orders by user), foreign keys on.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};
use std::sync::{Mutex, MutexGuard};

use super::{Peer, Reader, Result};
use crate::data::{Order, User};

pub const SETTINGS: &str = "rusqlite (bundled SQLite), journal_mode=WAL, synchronous as named, foreign_keys=ON, \
     typed columns, UNIQUE(email), INDEX(country), INDEX(orders.user_id); one connection behind a mutex \
     (SQLite has one writer and no group commit); default auto-checkpoint (1000 pages)";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL, country TEXT NOT NULL,
    age INTEGER NOT NULL, created_at INTEGER NOT NULL, active INTEGER NOT NULL,
    street TEXT NOT NULL, city TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS users_country ON users(country);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
    total_cents INTEGER NOT NULL, item TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS orders_user ON orders(user_id);
";

const INSERT_USER: &str = "INSERT INTO users (id, email, name, country, age, created_at, active, street, city) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const INSERT_ORDER: &str = "INSERT INTO orders (id, user_id, total_cents, item) VALUES (?1, ?2, ?3, ?4)";
const GET_USER: &str =
    "SELECT id, email, name, country, age, created_at, active, street, city FROM users WHERE id = ?1";
const GET_BY_EMAIL: &str =
    "SELECT id, email, name, country, age, created_at, active, street, city FROM users WHERE email = ?1";
const ORDERS_OF: &str = "SELECT id, user_id, total_cents, item FROM orders WHERE user_id = ?1";

pub struct Sqlite {
    conn: Mutex<Connection>,
}

impl Sqlite {
    pub fn open(dir: &Path, synchronous: &str) -> Result<Sqlite> {
        let conn = Connection::open(dir.join("bench.sqlite"))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if mode != "wal" {
            return Err(format!("SQLite refused WAL mode: {mode}").into());
        }
        conn.execute_batch(&format!("PRAGMA synchronous={synchronous}; PRAGMA foreign_keys=ON;"))?;
        conn.busy_timeout(Duration::from_secs(60))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Sqlite { conn: Mutex::new(conn) })
    }
}

/// The connection; a writer that panicked leaves it usable (each call is one transaction).
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn insert_user(conn: &Connection, u: &User) -> rusqlite::Result<usize> {
    conn.prepare_cached(INSERT_USER)?.execute(params![
        u.id as i64,
        u.email,
        u.name,
        u.country,
        u.age,
        u.created_at as i64,
        u.active,
        u.street,
        u.city
    ])
}

fn to_user(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get::<_, i64>(0)? as u64,
        email: r.get(1)?,
        name: r.get(2)?,
        country: r.get(3)?,
        age: r.get(4)?,
        created_at: r.get::<_, i64>(5)? as u64,
        active: r.get(6)?,
        street: r.get(7)?,
        city: r.get(8)?,
    })
}

impl Peer for Sqlite {
    fn load(&self, users: &[User], orders: &[Order]) -> Result<()> {
        let mut conn = lock(&self.conn);
        let tx = conn.transaction()?;
        for u in users {
            insert_user(&tx, u)?;
        }
        {
            let mut insert = tx.prepare_cached(INSERT_ORDER)?;
            for o in orders {
                insert.execute(params![o.id as i64, o.user_id as i64, o.total_cents as i64, o.item])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn insert_one(&self, user: &User) -> Result<()> {
        insert_user(&lock(&self.conn), user)?; // autocommit: one transaction
        Ok(())
    }

    fn update(&self, ids: &[u64]) -> Result<()> {
        let mut conn = lock(&self.conn);
        let tx = conn.transaction()?;
        {
            let mut update = tx.prepare_cached("UPDATE users SET age = age + 1 WHERE id = ?1")?;
            for id in ids {
                update.execute([*id as i64])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        let conn = lock(&self.conn);
        conn.execute_batch("BEGIN")?;
        Ok(Box::new(SqliteReader { conn }))
    }
}

struct SqliteReader<'a> {
    conn: MutexGuard<'a, Connection>,
}

impl Drop for SqliteReader<'_> {
    fn drop(&mut self) {
        let _ = self.conn.execute_batch("COMMIT");
    }
}

impl Reader for SqliteReader<'_> {
    fn get(&mut self, id: u64) -> Result<Option<User>> {
        let mut stmt = self.conn.prepare_cached(GET_USER)?;
        Ok(stmt.query_row([id as i64], to_user).optional()?)
    }

    fn by_email(&mut self, email: &str) -> Result<Option<User>> {
        let mut stmt = self.conn.prepare_cached(GET_BY_EMAIL)?;
        Ok(stmt.query_row([email], to_user).optional()?)
    }

    fn orders_of(&mut self, user_id: u64) -> Result<Vec<Order>> {
        let mut stmt = self.conn.prepare_cached(ORDERS_OF)?;
        let rows = stmt.query_map([user_id as i64], |r| {
            Ok(Order {
                id: r.get::<_, i64>(0)? as u64,
                user_id: r.get::<_, i64>(1)? as u64,
                total_cents: r.get::<_, i64>(2)? as u64,
                item: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<Order>>>()?)
    }
}
