//! `query`: the query-power rows of issues 20 and 17, Shelf next to SQLite with
//! equivalent indexes, over N posts (`--n 1000000` for the issues' figures):
//!
//! - count per key on an indexed column (100 keys): `group_by(priority).count()`,
//!   read from the index, against `SELECT priority, COUNT(*) .. GROUP BY priority`;
//! - top 10 by an `Option` sorted field: `order_by(score.desc()).limit(10)` (a walk
//!   of the sorted index) against `ORDER BY score DESC LIMIT 10` on an indexed column;
//! - the latest child per parent for 10,000 parents: `group_by(parent).max(at)`, one
//!   seek per parent in the sorted composite `(parent, at)`, and the same over
//!   `at_plain` (`at`'s twin in no composite: each parent's records from the parent
//!   index), against `SELECT parent, MAX(at) .. GROUP BY parent` with an index on
//!   `(parent, at)`;
//! - `owner = X order by at desc limit 20` (the owner is `priority`: 10,000 records
//!   each at 1M): a walk of the sorted composite `(priority, at)` within X, against
//!   the same query over `at_plain` (the priority index, then a sort of X's records),
//!   and against SQLite with an index on `(priority, at)`;
//! - keyset page 1,000 (20 per page, `after(&last)`) against `offset(19_980)`, both
//!   Shelf, ordered by the sorted `score`.
//!
//! Each row is `--runs` samples of `OPS` queries; the table shows the median.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use shelf::{Entity, Store};

use crate::report::{Report, Row};
use crate::{BoxError, Config};

/// The workload's name in the report.
pub const WORKLOAD: &str = "query";
/// The count-per-key rows: Shelf's, and the SQLite row it is compared with.
pub const COUNT_SHELF: &str = "count per key (group_by index)";
pub const COUNT_SQLITE: &str = "count per key (GROUP BY indexed)";
const PARENTS: u64 = 10_000;
const PRIORITIES: u64 = 100;

/// A post: an indexed priority, an optional sorted score, a parent and a time, with
/// composites `(parent, at)` and `(priority, at)`; `at_plain` is `at`'s twin in no
/// index, for the same queries without the composites.
#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(memory)]
#[index((parent, at), sorted)]
#[index((priority, at), sorted)]
pub struct Post {
    #[id]
    id: u64,
    #[index]
    priority: u64,
    #[index(sorted)]
    score: Option<u64>,
    #[index]
    parent: u64,
    at: u64,
    at_plain: u64,
}

fn mix(i: u64) -> u64 {
    let mut x = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn post(i: u64) -> Post {
    let r = mix(i);
    Post {
        id: i,
        priority: i % PRIORITIES,
        // One post in ten has no score.
        score: (!i.is_multiple_of(10)).then_some(r % 1_000_000_000),
        parent: i % PARENTS,
        at: r >> 20,
        at_plain: r >> 20,
    }
}

/// A plan's first line, for a row's note.
fn first_line(plan: impl std::fmt::Display) -> String {
    plan.to_string().lines().next().unwrap_or("").to_owned()
}

/// `runs` samples of `ops` calls of `f`; `f`'s result is checked to be used.
fn time<R>(runs: usize, ops: usize, mut f: impl FnMut() -> R) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ops {
                std::hint::black_box(f());
            }
            start.elapsed()
        })
        .collect()
}

pub fn run(config: &Config, report: &mut Report) -> Result<(), BoxError> {
    let n = config.n;
    let runs = config.runs;
    eprintln!("query: {n} posts, {PRIORITIES} priorities, {PARENTS} parents, {runs} runs");

    let dir = config.fresh_dir("query-shelf")?;
    let store = Store::builder(&dir).register::<Post>().open()?;
    let posts = store.collection::<Post>()?;
    for i in 0..n as u64 {
        posts.insert(post(i))?;
    }

    let sqlite_dir = config.fresh_dir("query-sqlite")?;
    let mut conn = Connection::open(sqlite_dir.join("q.db"))?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         CREATE TABLE posts (id INTEGER PRIMARY KEY, priority INTEGER NOT NULL, score INTEGER, parent INTEGER NOT NULL, at INTEGER NOT NULL);",
    )?;
    {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare("INSERT INTO posts VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for i in 0..n as u64 {
                let p = post(i);
                insert.execute(rusqlite::params![
                    p.id as i64,
                    p.priority as i64,
                    p.score.map(|s| s as i64),
                    p.parent as i64,
                    p.at as i64
                ])?;
            }
        }
        tx.commit()?;
    }
    conn.execute_batch(
        "CREATE INDEX posts_priority ON posts(priority);
         CREATE INDEX posts_score ON posts(score);
         CREATE INDEX posts_parent_at ON posts(parent, at);
         CREATE INDEX posts_priority_at ON posts(priority, at);
         ANALYZE;",
    )?;
    let f = Post::fields();

    // Count per key.
    let ops = 10;
    let shelf_counts = posts.query().group_by(f.priority).count();
    let mut stmt = conn.prepare("SELECT priority, COUNT(*) FROM posts GROUP BY priority")?;
    let sql_counts = |stmt: &mut rusqlite::Statement<'_>| -> rusqlite::Result<Vec<(u64, usize)>> {
        stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as usize)))?.collect()
    };
    if sql_counts(&mut stmt)? != shelf_counts {
        return Err("count per key: Shelf and SQLite disagree".into());
    }
    let shelf = time(runs, ops, || posts.query().group_by(f.priority).count());
    let sqlite = time(runs, ops, || sql_counts(&mut stmt).map(|v| v.len()).unwrap_or(0));
    report.add(Row::new(WORKLOAD, "sqlite", COUNT_SQLITE, ops, "query", &sqlite));
    report.add(
        Row::new(WORKLOAD, "shelf", COUNT_SHELF, ops, "query", &shelf)
            .vs(&format!("sqlite/{COUNT_SQLITE}"))
            .note(first_line(posts.query().group_by(f.priority).explain())),
    );
    drop(stmt);

    // Top 10 by an Option sorted field.
    let ops = 1_000;
    let top = posts.query().order_by(f.score.desc()).limit(10);
    let mut stmt = conn.prepare("SELECT id, priority, score, parent, at FROM posts ORDER BY score DESC LIMIT 10")?;
    let sql_top = |stmt: &mut rusqlite::Statement<'_>| -> rusqlite::Result<Vec<u64>> {
        stmt.query_map([], |r| {
            let _row = (r.get::<_, i64>(1)?, r.get::<_, Option<i64>>(2)?, r.get::<_, i64>(3)?, r.get::<_, i64>(4)?);
            Ok(r.get::<_, i64>(0)? as u64)
        })?
        .collect()
    };
    if sql_top(&mut stmt)? != top.ids() {
        return Err("top 10: Shelf and SQLite disagree".into());
    }
    let shelf = time(runs, ops, || top.collect().len());
    let sqlite = time(runs, ops, || sql_top(&mut stmt).map(|v| v.len()).unwrap_or(0));
    report.add(Row::new(WORKLOAD, "sqlite", "top 10 by Option score", ops, "query", &sqlite));
    report.add(
        Row::new(WORKLOAD, "shelf", "top 10 by Option score", ops, "query", &shelf)
            .vs("sqlite/top 10 by Option score")
            .note(first_line(top.explain())),
    );
    drop(stmt);

    // Latest child per parent.
    let ops = 1;
    let latest = posts.query().group_by(f.parent).max(f.at);
    let mut stmt = conn.prepare("SELECT parent, MAX(at) FROM posts GROUP BY parent")?;
    let sql_latest = |stmt: &mut rusqlite::Statement<'_>| -> rusqlite::Result<Vec<(u64, u64)>> {
        stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)))?.collect()
    };
    if sql_latest(&mut stmt)? != latest {
        return Err("latest per parent: Shelf and SQLite disagree".into());
    }
    if posts.query().group_by(f.parent).explain_top(f.at).index() != Some("parent_and_at") {
        return Err("latest per parent: the plan does not seek in `parent_and_at`".into());
    }
    if posts.query().group_by(f.parent).max(f.at_plain) != latest {
        return Err("latest per parent: the composite seek and the parent index disagree".into());
    }
    let shelf = time(runs, ops, || posts.query().group_by(f.parent).max(f.at).len());
    let plain = time(runs, ops, || posts.query().group_by(f.parent).max(f.at_plain).len());
    let sqlite = time(runs, ops, || sql_latest(&mut stmt).map(|v| v.len()).unwrap_or(0));
    report.add(Row::new(WORKLOAD, "sqlite", "latest child per parent (10k)", ops, "query", &sqlite));
    report.add(
        Row::new(WORKLOAD, "shelf", "latest child per parent (10k)", ops, "query", &shelf)
            .vs("sqlite/latest child per parent (10k)")
            .note(first_line(posts.query().group_by(f.parent).explain_top(f.at))),
    );
    report.add(
        Row::new(WORKLOAD, "shelf", "latest child per parent (10k), no composite", ops, "query", &plain)
            .vs("sqlite/latest child per parent (10k)")
            .note(first_line(posts.query().group_by(f.parent).explain_top(f.at_plain))),
    );
    drop(stmt);

    // owner = X order by at desc limit 20: the composite walk, a sort, SQLite.
    let ops = 1_000;
    let walk = |x: u64| posts.query().filter(f.priority.eq(x)).order_by(f.at.desc()).limit(20);
    let sorted = |x: u64| posts.query().filter(f.priority.eq(x)).order_by(f.at_plain.desc()).limit(20);
    let mut stmt = conn.prepare(
        "SELECT id, priority, score, parent, at FROM posts WHERE priority = ?1 ORDER BY at DESC, id LIMIT 20",
    )?;
    let sql_walk = |stmt: &mut rusqlite::Statement<'_>, x: u64| -> rusqlite::Result<Vec<u64>> {
        stmt.query_map([x as i64], |r| {
            let _row = (r.get::<_, i64>(1)?, r.get::<_, Option<i64>>(2)?, r.get::<_, i64>(3)?, r.get::<_, i64>(4)?);
            Ok(r.get::<_, i64>(0)? as u64)
        })?
        .collect()
    };
    if walk(0).explain().index() != Some("priority_and_at") {
        return Err(
            format!("owner = X order by at limit 20 does not walk `priority_and_at`: {}", walk(0).explain()).into()
        );
    }
    for x in [0, PRIORITIES / 2, PRIORITIES - 1] {
        let (w, s, q) = (walk(x).ids(), sorted(x).ids(), sql_walk(&mut stmt, x)?);
        if w != s || w != q || w.len() != 20.min(n / PRIORITIES as usize) {
            return Err(format!("owner = {x} order by at limit 20: walk {w:?}, sort {s:?}, SQLite {q:?}").into());
        }
    }
    let mut x = 0;
    let mut next = || {
        x = (x + 37) % PRIORITIES;
        x
    };
    let shelf = time(runs, ops, || walk(next()).collect().len());
    let full = time(runs, ops, || sorted(next()).collect().len());
    let sqlite = time(runs, ops, || sql_walk(&mut stmt, next()).map(|v| v.len()).unwrap_or(0));
    let label = "owner = X order by at desc limit 20";
    report.add(Row::new(WORKLOAD, "sqlite", label, ops, "query", &sqlite));
    report.add(
        Row::new(WORKLOAD, "shelf", "owner = X order by at desc limit 20, full sort", ops, "query", &full)
            .vs(&format!("sqlite/{label}"))
            .note(first_line(sorted(0).explain())),
    );
    report.add(
        Row::new(WORKLOAD, "shelf", label, ops, "query", &shelf)
            .vs("shelf/owner = X order by at desc limit 20, full sort")
            .note(first_line(walk(0).explain())),
    );
    drop(stmt);

    // Keyset page 1,000 against offset 1,000 pages.
    let page = 20;
    let ops = 100;
    let offset_page = posts.query().order_by(f.score.desc()).offset(999 * page).limit(page);
    let before = posts.query().order_by(f.score.desc()).offset(998 * page).limit(page).collect();
    let last: Arc<Post> = before.last().cloned().ok_or("fewer than 1,000 pages: use a larger --n")?;
    let keyset_page = posts.query().order_by(f.score.desc()).after(&last).limit(page);
    if keyset_page.ids() != offset_page.ids() {
        return Err("page 1,000: keyset and offset disagree".into());
    }
    let offset = time(runs, ops, || offset_page.collect().len());
    let keyset = time(runs, ops, || keyset_page.collect().len());
    report.add(Row::new(WORKLOAD, "shelf", "page 1,000 by offset", ops, "query", &offset));
    report.add(
        Row::new(WORKLOAD, "shelf", "page 1,000 by keyset (after)", ops, "query", &keyset)
            .vs("shelf/page 1,000 by offset"),
    );
    Ok(())
}
