//! W-feed (issue 16): what keeping the change feed across a clean close costs.
//!
//! A `per_record` collection of N records, each written by its own commit, so the
//! feed (`FeedRetention::events(N)`) holds N events. The records are flushed before
//! `close`, so its own flush has nothing to write: what is left is the feed file.
//! Measured, against the same store with no feed, rounds interleaved:
//!
//! - `close`: with a feed it writes `_feed/<collection>.jsonl` (one atomic file);
//! - the next `open`: with a feed it reads the file back and removes it.
//!
//! Writers pay nothing: the feed is written only at close.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shelf::{Entity, FeedRetention, Store};

use crate::report::{Report, Row};
use crate::{BoxError, Config};

pub const W_FEED: &str = "W-feed close/open";

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(per_record)]
#[entity(collection = "bench_feed_doc")]
struct FeedDoc {
    #[id]
    id: u64,
    name: String,
    score: f64,
}

/// One round: (close, open, feed file bytes).
fn round(config: &Config, n: usize, feed: bool) -> Result<(Duration, Duration, u64), BoxError> {
    let dir = config.fresh_dir(if feed { "w-feed" } else { "w-feed-off" })?;
    let retention = if feed { FeedRetention::events(n) } else { FeedRetention::default() };
    let open = || Store::builder(&dir).register::<FeedDoc>().feed_retention(retention).open();
    let store = open()?;
    let docs = store.collection::<FeedDoc>()?;
    for id in 0..n as u64 {
        docs.insert(FeedDoc { id, name: format!("user {id}"), score: id as f64 / 7.0 })?;
    }
    store.flush()?;
    drop(docs);
    let t = Instant::now();
    store.close()?;
    let close = t.elapsed();
    let file = dir.join("_feed").join("bench_feed_doc.jsonl");
    let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let t = Instant::now();
    let store = open()?;
    let opened = t.elapsed();
    if feed {
        let kept = store.collection::<FeedDoc>()?.watch_from(0)?.try_iter().count();
        if kept != n {
            return Err(format!("the reopened feed holds {kept} events, not {n}").into());
        }
    }
    drop(store);
    Ok((close, opened, bytes))
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn range(values: &[Duration]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (lo, hi) = (values.iter().min().copied().unwrap_or_default(), values.iter().max().copied().unwrap_or_default());
    format!("median {:.1} ms, min-max {:.1}-{:.1} ms", ms(median(values)), ms(lo), ms(hi))
}

pub fn run(config: &Config, report: &mut Report) -> Result<(), BoxError> {
    let n = config.n.min(100_000);
    let rounds = config.runs.max(3);
    eprintln!("{W_FEED}: {n} records and events, {rounds} rounds");
    // Per subject: close times, open times, file size.
    let mut results = [(false, Vec::new(), Vec::new(), 0), (true, Vec::new(), Vec::new(), 0)];
    for _ in 0..rounds {
        for (feed, closes, opens, bytes) in &mut results {
            let (close, open, size) = round(config, n, *feed)?;
            closes.push(close);
            opens.push(open);
            *bytes = size;
        }
    }
    for (feed, closes, opens, bytes) in &results {
        let subject = if *feed { "feed of N events" } else { "no feed" };
        let file = if *feed { format!("; feed file {:.1} MB", *bytes as f64 / 1e6) } else { String::new() };
        let (close, open) = (range(closes), range(opens));
        eprintln!("{W_FEED}: {subject}: close {close}; open {open}{file}");
        report.add(
            Row::new(W_FEED, "shelf", &format!("close, {subject}"), n, "record", closes)
                .note(format!("close {close}{file}")),
        );
        report.add(
            Row::new(W_FEED, "shelf", &format!("open, {subject}"), n, "record", opens).note(format!("open {open}")),
        );
    }
    Ok(())
}
