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
            // Straight to the stream: the test harness captures `eprintln!` of
            // passing tests, and this line must be seen.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "{test}: skipped: SHELF_TEST_POSTGRES is not set (e.g. postgres://postgres@127.0.0.1/test)"
            );
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

/// Where a parameterized test's store lives: a temporary directory, or a schema
/// of its own on SHELF_TEST_POSTGRES. See [`on_each_backend!`].
pub enum Backend {
    Files(tempfile::TempDir),
    Postgres(Schema),
}

impl Backend {
    pub fn files() -> Backend {
        Backend::Files(tempfile::tempdir().expect("a temporary directory"))
    }

    /// `None` (and a line saying so) without SHELF_TEST_POSTGRES.
    pub fn postgres(test: &str) -> Option<Backend> {
        Schema::new(test).map(Backend::Postgres)
    }

    /// A builder for a store on this backend; register the types and open it.
    pub fn builder(&self) -> shelf::StoreBuilder {
        match self {
            Backend::Files(dir) => shelf::Store::builder(dir.path()),
            Backend::Postgres(schema) => schema.builder(),
        }
    }

    /// For one case of a property test: `None` without SHELF_TEST_POSTGRES, and the
    /// line saying the test was skipped only for its first case.
    pub fn postgres_case(test: &str) -> Option<Backend> {
        static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        if std::env::var("SHELF_TEST_POSTGRES").is_ok_and(|url| !url.is_empty()) {
            return Backend::postgres(test);
        }
        let mut said = SAID.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !said.iter().any(|t| t == test) {
            said.push(test.to_owned());
            url(test);
        }
        None
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Backend::Postgres(_))
    }
}

/// Runs each test body once per backend: `files::<name>` on a temporary
/// directory, `postgres::<name>` on PostgreSQL (skipped, saying so, without
/// SHELF_TEST_POSTGRES). The body gets the [`Backend`] as `$b`.
#[macro_export]
macro_rules! on_each_backend {
    ($(#[doc = $doc:literal])* $(fn $name:ident($b:ident) $body:block)*) => {
        mod files {
            #[allow(unused_imports)]
            use super::*;
            $(#[test] fn $name() { let $b = $crate::common_pg::Backend::files(); $body })*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(#[test] fn $name() {
                let Some($b) = $crate::common_pg::Backend::postgres(stringify!($name)) else { return };
                $body
            })*
        }
    };
}
