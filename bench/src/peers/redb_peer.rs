//! redb: a key-value store, so the indices are tables kept by hand in the same write
//! transaction: `email -> id` (unique, checked), `country -> ids` and
//! `user_id -> order ids` (multimaps). Values are the entities' compact JSON, the
//! bytes Shelf's collection files hold. An order's user is checked to exist.

use std::path::Path;

use redb::{
    Database, Durability, MultimapTableDefinition, ReadOnlyMultimapTable, ReadOnlyTable, ReadableTable,
    TableDefinition, WriteTransaction,
};

use super::{Peer, Reader, Result};
use crate::data::{Order, User};

pub const SETTINGS: &str = "redb 2.x (the line native_db 0.8 uses), Durability::Immediate (fsync at commit), \
     default cache; values = compact JSON; index tables maintained in the same transaction";

const USERS: TableDefinition<u64, &[u8]> = TableDefinition::new("users");
const EMAILS: TableDefinition<&str, u64> = TableDefinition::new("users_by_email");
const COUNTRIES: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("users_by_country");
const ORDERS: TableDefinition<u64, &[u8]> = TableDefinition::new("orders");
const ORDERS_BY_USER: MultimapTableDefinition<u64, u64> = MultimapTableDefinition::new("orders_by_user");

pub struct Redb {
    db: Database,
}

impl Redb {
    pub fn open(dir: &Path) -> Result<Redb> {
        let db = Database::create(dir.join("bench.redb"))?;
        let tx = write(&db)?;
        tx.open_table(USERS)?;
        tx.open_table(EMAILS)?;
        tx.open_multimap_table(COUNTRIES)?;
        tx.open_table(ORDERS)?;
        tx.open_multimap_table(ORDERS_BY_USER)?;
        tx.commit()?;
        Ok(Redb { db })
    }
}

fn write(db: &Database) -> Result<WriteTransaction> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate);
    Ok(tx)
}

fn insert_users(tx: &WriteTransaction, users: &[User]) -> Result<()> {
    let mut table = tx.open_table(USERS)?;
    let mut emails = tx.open_table(EMAILS)?;
    let mut countries = tx.open_multimap_table(COUNTRIES)?;
    for u in users {
        if emails.get(u.email.as_str())?.is_some() {
            return Err(format!("duplicate email {}", u.email).into());
        }
        if table.insert(u.id, serde_json::to_vec(u)?.as_slice())?.is_some() {
            return Err(format!("duplicate id {}", u.id).into());
        }
        emails.insert(u.email.as_str(), u.id)?;
        countries.insert(u.country.as_str(), u.id)?;
    }
    Ok(())
}

impl Peer for Redb {
    fn load(&self, users: &[User], orders: &[Order]) -> Result<()> {
        let tx = write(&self.db)?;
        insert_users(&tx, users)?;
        {
            let users = tx.open_table(USERS)?;
            let mut table = tx.open_table(ORDERS)?;
            let mut by_user = tx.open_multimap_table(ORDERS_BY_USER)?;
            for o in orders {
                if users.get(o.user_id)?.is_none() {
                    return Err(format!("order {} of a missing user {}", o.id, o.user_id).into());
                }
                table.insert(o.id, serde_json::to_vec(o)?.as_slice())?;
                by_user.insert(o.user_id, o.id)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn insert_one(&self, user: &User) -> Result<()> {
        let tx = write(&self.db)?;
        insert_users(&tx, std::slice::from_ref(user))?;
        tx.commit()?;
        Ok(())
    }

    fn update(&self, ids: &[u64]) -> Result<()> {
        let tx = write(&self.db)?;
        {
            let mut table = tx.open_table(USERS)?;
            for id in ids {
                let mut user: User = match table.get(*id)? {
                    Some(bytes) => serde_json::from_slice(bytes.value())?,
                    None => return Err(format!("no user {id}").into()),
                };
                user.age += 1;
                table.insert(*id, serde_json::to_vec(&user)?.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        let tx = self.db.begin_read()?;
        Ok(Box::new(RedbReader {
            users: tx.open_table(USERS)?,
            emails: tx.open_table(EMAILS)?,
            orders: tx.open_table(ORDERS)?,
            by_user: tx.open_multimap_table(ORDERS_BY_USER)?,
        }))
    }
}

struct RedbReader {
    users: ReadOnlyTable<u64, &'static [u8]>,
    emails: ReadOnlyTable<&'static str, u64>,
    orders: ReadOnlyTable<u64, &'static [u8]>,
    by_user: ReadOnlyMultimapTable<u64, u64>,
}

impl Reader for RedbReader {
    fn get(&mut self, id: u64) -> Result<Option<User>> {
        match self.users.get(id)? {
            Some(bytes) => Ok(Some(serde_json::from_slice(bytes.value())?)),
            None => Ok(None),
        }
    }

    fn by_email(&mut self, email: &str) -> Result<Option<User>> {
        let id = match self.emails.get(email)? {
            Some(id) => id.value(),
            None => return Ok(None),
        };
        self.get(id)
    }

    fn orders_of(&mut self, user_id: u64) -> Result<Vec<Order>> {
        let mut out = Vec::new();
        for id in self.by_user.get(user_id)? {
            if let Some(bytes) = self.orders.get(id?.value())? {
                out.push(serde_json::from_slice(bytes.value())?);
            }
        }
        Ok(out)
    }
}
