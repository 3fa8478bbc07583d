//! native_db: typed models with a primary key and secondary keys, on redb. The
//! indices are native_db's own: `email` unique, `country` and `user_id` not unique.
//! It has no foreign keys; an order's user is checked with a get, as Shelf does.

use std::path::Path;
use std::sync::OnceLock;

use native_db::{native_db, Builder, Database, Models, ToKey};
use native_model::{native_model, Model};
use serde::{Deserialize, Serialize};

use super::{Peer, Reader, Result};
use crate::data::{Order, User};

pub const SETTINGS: &str = "native_db 0.8 (native_model 0.4, bincode 1.3 encoding) on redb 2.x, default \
     durability (Immediate: fsync at commit); secondary keys email (unique), country, orders.user_id";

#[derive(Serialize, Deserialize, Clone, Debug)]
#[native_model(id = 1, version = 1)]
#[native_db]
pub struct NUser {
    #[primary_key]
    id: u64,
    #[secondary_key(unique)]
    email: String,
    name: String,
    #[secondary_key]
    country: String,
    age: u32,
    created_at: u64,
    active: bool,
    street: String,
    city: String,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[native_model(id = 2, version = 1)]
#[native_db]
pub struct NOrder {
    #[primary_key]
    id: u64,
    #[secondary_key]
    user_id: u64,
    total_cents: u64,
    item: String,
}

impl From<&User> for NUser {
    fn from(u: &User) -> NUser {
        NUser {
            id: u.id,
            email: u.email.clone(),
            name: u.name.clone(),
            country: u.country.clone(),
            age: u.age,
            created_at: u.created_at,
            active: u.active,
            street: u.street.clone(),
            city: u.city.clone(),
        }
    }
}

impl From<NUser> for User {
    fn from(u: NUser) -> User {
        User {
            id: u.id,
            email: u.email,
            name: u.name,
            country: u.country,
            age: u.age,
            created_at: u.created_at,
            active: u.active,
            street: u.street,
            city: u.city,
        }
    }
}

impl From<NOrder> for Order {
    fn from(o: NOrder) -> Order {
        Order { id: o.id, user_id: o.user_id, total_cents: o.total_cents, item: o.item }
    }
}

fn models() -> &'static Models {
    static MODELS: OnceLock<Models> = OnceLock::new();
    MODELS.get_or_init(|| {
        let mut models = Models::new();
        models.define::<NUser>().expect("the user model is valid");
        models.define::<NOrder>().expect("the order model is valid");
        models
    })
}

pub struct NativeDb {
    db: Database<'static>,
}

impl NativeDb {
    pub fn open(dir: &Path) -> Result<NativeDb> {
        let path = dir.join("bench.native_db");
        let db = if path.exists() {
            Builder::new().open(models(), &path)?
        } else {
            Builder::new().create(models(), &path)?
        };
        Ok(NativeDb { db })
    }
}

impl Peer for NativeDb {
    fn load(&self, users: &[User], orders: &[Order]) -> Result<()> {
        let rw = self.db.rw_transaction()?;
        for u in users {
            rw.insert(NUser::from(u))?;
        }
        for o in orders {
            if rw.get().primary::<NUser>(o.user_id)?.is_none() {
                return Err(format!("order {} of a missing user {}", o.id, o.user_id).into());
            }
            rw.insert(NOrder { id: o.id, user_id: o.user_id, total_cents: o.total_cents, item: o.item.clone() })?;
        }
        rw.commit()?;
        Ok(())
    }

    fn insert_one(&self, user: &User) -> Result<()> {
        let rw = self.db.rw_transaction()?;
        rw.insert(NUser::from(user))?;
        rw.commit()?;
        Ok(())
    }

    fn update(&self, ids: &[u64]) -> Result<()> {
        let rw = self.db.rw_transaction()?;
        for id in ids {
            let old: NUser = rw.get().primary(*id)?.ok_or_else(|| format!("no user {id}"))?;
            let mut new = old.clone();
            new.age += 1;
            rw.update(old, new)?;
        }
        rw.commit()?;
        Ok(())
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(NativeReader { tx: self.db.r_transaction()? }))
    }
}

struct NativeReader<'db> {
    tx: native_db::transaction::RTransaction<'db>,
}

impl Reader for NativeReader<'_> {
    fn get(&mut self, id: u64) -> Result<Option<User>> {
        Ok(self.tx.get().primary::<NUser>(id)?.map(User::from))
    }

    fn by_email(&mut self, email: &str) -> Result<Option<User>> {
        Ok(self.tx.get().secondary::<NUser>(NUserKey::email, email)?.map(User::from))
    }

    fn orders_of(&mut self, user_id: u64) -> Result<Vec<Order>> {
        let scan = self.tx.scan().secondary::<NOrder>(NOrderKey::user_id)?;
        let mut out = Vec::new();
        for order in scan.start_with(user_id)? {
            out.push(Order::from(order?));
        }
        Ok(out)
    }
}
