//! Running tests against a real PostgreSQL: the server's address comes from
//! `SHELF_TEST_POSTGRES` (`.ci/run` sets it); without it, the tests say they were
//! skipped and pass. Each test gets a schema of its own, dropped at the end.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

/// The PostgreSQL URL, or `None` (and a line saying the test was skipped).
pub fn url(test: &str) -> Option<String> {
    match std::env::var("SHELF_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("{test}: skipped: SHELF_TEST_POSTGRES is not set (e.g. postgres://postgres@127.0.0.1/test)");
            None
        }
    }
}

/// A schema of this test's own; dropped with its tables when this is dropped.
pub struct Schema {
    pub url: String,
    pub name: String,
}

impl Schema {
    pub fn new(test: &str) -> Option<Schema> {
        static N: AtomicU64 = AtomicU64::new(0);
        let url = url(test)?;
        let name = format!("t_{}_{}_{}", test, std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let schema = Schema { url, name };
        schema.drop_schema();
        Some(schema)
    }

    /// The same schema, named by an earlier `Schema` (a re-executed process).
    pub fn existing(url: String, name: String) -> Schema {
        Schema { url, name }
    }

    /// A builder for a store in this schema.
    pub fn builder(&self) -> shelf::StoreBuilder {
        shelf::Store::builder(&self.name).postgres(&self.url).postgres_schema(&self.name)
    }

    /// A plain client in this schema, for checking what PostgreSQL holds.
    pub fn client(&self) -> postgres::Client {
        let mut client = postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to SHELF_TEST_POSTGRES");
        client.batch_execute(&format!("SET search_path TO \"{}\"", self.name)).expect("set search_path");
        client
    }

    fn drop_schema(&self) {
        if let Ok(mut client) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
        }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if std::env::var_os("SHELF_PG_CHILD").is_none() {
            self.drop_schema();
        }
    }
}
