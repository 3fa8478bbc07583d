//! The durable single-record commit rows, run *interleaved*: each thread count's
//! commits are cut into chunks, and the contenders take turns chunk by chunk (in
//! a rotating order), so a drift of the disk's or the host's speed during the
//! run falls on all of them alike. Commits/s of a contender is its commits over
//! the sum of its chunks' times.

use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls, Statement};
use shelf::Store;

use crate::{person, run_threads, BoxError, Person};

/// One way of committing a record, as the rows compare them.
pub trait Contender: Sync {
    /// Commits each record of `ids` on thread `t`, one commit per record: an
    /// insert, or (`update`) an update of the record inserted before.
    fn commit(&self, t: usize, ids: Range<u64>, update: bool) -> Result<(), BoxError>;
}

/// Shelf on PostgreSQL: `insert`, then `update` of one field.
pub struct Shelf<'a>(pub &'a Store);

impl Contender for Shelf<'_> {
    fn commit(&self, _t: usize, ids: Range<u64>, update: bool) -> Result<(), BoxError> {
        let people = self.0.collection::<Person>()?;
        for id in ids {
            match update {
                false => drop(people.insert(person(id, 1))?),
                true => drop(people.update(&id, |p| p.age += 1)?),
            }
        }
        Ok(())
    }
}

/// One connection per thread, with its statements prepared.
fn connections<S>(
    url: &str,
    threads: usize,
    setup: &dyn Fn(&mut Client) -> Result<S, BoxError>,
) -> Result<Vec<Mutex<(Client, S)>>, BoxError> {
    (0..threads)
        .map(|_| {
            let mut client = Client::connect(url, NoTls)?;
            let state = setup(&mut client)?;
            Ok(Mutex::new((client, state)))
        })
        .collect()
}

/// A prepared statement of `(id, doc)` per commit: the raw rows and the line.
pub struct Sql {
    clients: Vec<Mutex<(Client, [Statement; 2])>>,
}

impl Sql {
    /// `insert` and `update` each take `$1` the id and `$2` the record's JSON text.
    pub fn new(url: &str, threads: usize, insert: &str, update: &str) -> Result<Self, BoxError> {
        let clients = connections(url, threads, &|c| Ok([c.prepare(insert)?, c.prepare(update)?]))?;
        Ok(Sql { clients })
    }
}

impl Contender for Sql {
    fn commit(&self, t: usize, ids: Range<u64>, update: bool) -> Result<(), BoxError> {
        let mut guard = self.clients[t].lock().map_err(|_| "a connection's lock is poisoned")?;
        let (client, statements) = &mut *guard;
        let statement = &statements[usize::from(update)];
        for id in ids {
            let doc = serde_json::to_string(&person(id, if update { 2 } else { 1 }))?;
            client.execute(statement, &[&(id as i64), &doc])?;
        }
        Ok(())
    }
}

/// `shelf_commit` called directly with the argument Shelf would send, in a
/// schema of its own that no instance follows: the server's share of a Shelf
/// commit, without Shelf's client (and without the server's work for Shelf's
/// change-feed reader, which reads the commits back every 250 ms).
pub struct Direct {
    clients: Vec<Mutex<(Client, Versions)>>,
}

/// `shelf_commit` prepared, and the version of each record committed so far.
type Versions = (Statement, std::collections::HashMap<u64, i64>);

impl Direct {
    /// `schema` must hold Shelf's tables for [`Person`] (open a store on it once).
    pub fn new(url: &str, threads: usize, schema: &str) -> Result<Self, BoxError> {
        let clients = connections(url, threads, &|c| {
            c.batch_execute(&format!("SET search_path TO {schema}; SET jit = off"))?;
            Ok((c.prepare("SELECT shelf_commit($1::text::jsonb, '[]'::jsonb, 'direct')")?, Default::default()))
        })?;
        Ok(Direct { clients })
    }
}

impl Contender for Direct {
    fn commit(&self, t: usize, ids: Range<u64>, update: bool) -> Result<(), BoxError> {
        let mut guard = self.clients[t].lock().map_err(|_| "a connection's lock is poisoned")?;
        let (client, (statement, versions)) = &mut *guard;
        for id in ids {
            let p = person(id, if update { 2 } else { 1 });
            let expected = match update {
                true => versions.get(&id).ok_or("an update of a record never inserted")?.to_string(),
                false => "null".to_owned(),
            };
            let writes = format!(
                r#"[{{"c":"person","id":{id},"v":{},"e":{expected},"u":[["email",{}]],"f":{{}}}}]"#,
                serde_json::to_string(&p)?,
                serde_json::to_string(&p.email)?
            );
            let out: Vec<i64> = client.query_one(&*statement, &[&writes])?.get(0);
            versions.insert(id, *out.get(1).ok_or("shelf_commit returned no version")?);
        }
        Ok(())
    }
}

/// Commits each contender makes per thread before the timed chunks, so that none
/// is timed opening connections (Shelf's pool opens them on demand).
pub const WARM_UP: usize = 4;

/// Runs `per` inserts and then `per` updates on each of `threads` threads for
/// every contender, in `chunks` turns, after [`WARM_UP`] untimed inserts per
/// thread; returns each contender's (insert, update) commits/s. Thread `t` times
/// ids `first + t * per ..`; the warm-up takes the `threads * WARM_UP` ids after
/// `first + threads * per`. The order of the contenders rotates from chunk to
/// chunk and is reversed on odd chunks, so that none always follows the same one.
pub fn interleaved(
    contenders: &[&dyn Contender],
    threads: usize,
    per: usize,
    first: u64,
    chunks: usize,
) -> Result<Vec<(f64, f64)>, BoxError> {
    let warm = first + (threads * per) as u64;
    for contender in contenders {
        run_threads(threads, |t| {
            let base = warm + (t * WARM_UP) as u64;
            contender.commit(t, base..base + WARM_UP as u64, false)
        })?;
    }
    let n = contenders.len();
    let mut spent = vec![[Duration::ZERO; 2]; n];
    for (phase, update) in [false, true].into_iter().enumerate() {
        for chunk in 0..chunks {
            let (lo, hi) = ((chunk * per / chunks) as u64, ((chunk + 1) * per / chunks) as u64);
            for turn in 0..n {
                let k = match chunk % 2 {
                    0 => (chunk / 2 + turn) % n,
                    _ => (chunk / 2 + n - 1 - turn) % n,
                };
                let started = Instant::now();
                run_threads(threads, |t| {
                    let base = first + (t * per) as u64;
                    contenders[k].commit(t, base + lo..base + hi, update)
                })?;
                spent[k][phase] += started.elapsed();
            }
        }
    }
    let commits = (per * threads) as f64;
    Ok(spent.iter().map(|[i, u]| (commits / i.as_secs_f64(), commits / u.as_secs_f64())).collect())
}
