//! Compile-time checks of `#[derive(Entity)]`, run with trybuild.
//!
//! Every file in `tests/ui/fail/` must fail to compile with exactly the diagnostics in
//! the `.stderr` file next to it; every file in `tests/ui/pass/` must compile cleanly
//! (under `#![deny(warnings)]`).
//!
//! The expected output depends on the compiler version. After changing a message or a
//! span on purpose, or when moving to a new toolchain, re-bless the `.stderr` files and
//! review the diff as a newcomer would read it:
//!
//! ```text
//! TRYBUILD=overwrite cargo test --test ui
//! ```
//!
//! A new case: add `tests/ui/fail/<name>.rs`, run the command above, and read the
//! generated `<name>.stderr` before committing it.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
