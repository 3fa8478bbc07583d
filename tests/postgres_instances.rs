//! Several processes on one PostgreSQL database (SHELF_TEST_POSTGRES): the test
//! binary re-executes itself as the other instances. Transfers keep their sum in
//! every read of every instance; a SIGKILLed instance leaves no partial commit and
//! loses none it acknowledged; a restarted instance catches up.

mod common_pg;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common_pg::Schema;
use serde::{Deserialize, Serialize};
use shelf::{Entity, Error, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Account {
    #[id]
    id: u32,
    cents: i64,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Receipt {
    #[id]
    id: String,
    from: u32,
    to: u32,
    cents: i64,
}

const ACCOUNTS: u32 = 16;
const START: i64 = 1_000;

fn open(schema: &Schema) -> Store {
    schema.builder().register::<Account>().register::<Receipt>().open().expect("open on PostgreSQL")
}

fn sum(store: &Store) -> i64 {
    store.collection::<Account>().unwrap().iter().map(|a| a.cents).sum()
}

/// A small deterministic generator, seeded per thread.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// One transfer with its receipt, in one transaction; `Ok(None)` when the source
/// lacks the money.
fn transfer(store: &Store, receipt: &str, rng: &mut Lcg) -> shelf::Result<Option<(u32, u32, i64)>> {
    let from = (rng.next() % u64::from(ACCOUNTS)) as u32;
    let to = (from + 1 + (rng.next() % u64::from(ACCOUNTS - 1)) as u32) % ACCOUNTS;
    let cents = (rng.next() % 50) as i64 + 1;
    store.transaction(|tx| {
        let source = tx
            .get::<Account>(&from)
            .ok_or_else(|| Error::NotFound { collection: "account".into(), id: from.to_string() })?;
        if source.cents < cents {
            return Ok(None);
        }
        tx.update::<Account>(&from, |a| a.cents -= cents)?;
        tx.update::<Account>(&to, |a| a.cents += cents)?;
        tx.insert(Receipt { id: receipt.to_owned(), from, to, cents })?;
        Ok(Some((from, to, cents)))
    })
}

fn seed(schema: &Schema) {
    let store = open(schema);
    let accounts = store.collection::<Account>().unwrap();
    for id in 0..ACCOUNTS {
        accounts.insert(Account { id, cents: START }).unwrap();
    }
    store.close().unwrap();
}

fn child(schema: &Schema, role: &str, args: &[(&str, String)]) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "child_instance", "--nocapture", "--test-threads", "1"])
        .env("SHELF_PG_CHILD", role)
        .env("SHELF_PG_SCHEMA", &schema.name)
        .env("SHELF_TEST_POSTGRES", &schema.url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in args {
        command.env(key, value);
    }
    command.spawn().expect("re-execute the test binary")
}

/// The other instances: what a re-executed process does (nothing in a normal run).
#[test]
fn child_instance() {
    let Ok(role) = std::env::var("SHELF_PG_CHILD") else { return };
    let schema =
        Schema::existing(std::env::var("SHELF_TEST_POSTGRES").unwrap(), std::env::var("SHELF_PG_SCHEMA").unwrap());
    let store = open(&schema);
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    match role.as_str() {
        // THREADS threads run TRANSFERS transfers each, while one more thread
        // checks the sum on every read; then `sync` and print the balances.
        "transfers" => {
            let (threads, transfers): (u64, u64) = (var("THREADS").parse().unwrap(), var("TRANSFERS").parse().unwrap());
            let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let checker = {
                let (store, done) = (store.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut reads = 0u64;
                    while !done.load(std::sync::atomic::Ordering::SeqCst) {
                        assert_eq!(sum(&store), i64::from(ACCOUNTS) * START, "a read saw part of a transfer");
                        reads += 1;
                    }
                    reads
                })
            };
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let (store, name) = (store.clone(), format!("{}-{t}", std::process::id()));
                    std::thread::spawn(move || {
                        let mut rng = Lcg(std::process::id() as u64 * 1000 + t);
                        let mut made = 0;
                        for i in 0..transfers {
                            match transfer(&store, &format!("{name}-{i}"), &mut rng) {
                                Ok(Some(_)) => made += 1,
                                Ok(None) | Err(Error::Conflict { .. }) => {}
                                Err(e) => panic!("transfer: {e}"),
                            }
                        }
                        made
                    })
                })
                .collect();
            let made: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            let reads = checker.join().unwrap();
            // Every instance has finished its own transfers once all have printed
            // `finished`; the parent then says `sync`.
            say(&format!("finished {made} {reads}"));
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            store.sync().unwrap();
            let balances: Vec<i64> =
                (0..ACCOUNTS).map(|id| store.collection::<Account>().unwrap().get(&id).unwrap().cents).collect();
            let receipts = store.collection::<Receipt>().unwrap().len();
            say(&format!("balances {balances:?} receipts {receipts}"));
        }
        // Transfers until killed, printing each acknowledged receipt.
        "until_killed" => {
            let mut rng = Lcg(std::process::id() as u64);
            for i in 0.. {
                let receipt = format!("k{}-{i}", std::process::id());
                if let Ok(Some(_)) = transfer(&store, &receipt, &mut rng) {
                    say(&format!("ack {receipt}"));
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// A line to the parent, flushed at once (it waits for it).
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The child's lines, from its first word on (the test harness may print
/// `test child_instance ... ` before the first one).
fn lines(child: &mut Child) -> impl Iterator<Item = String> {
    const WORDS: [&str; 3] = ["finished ", "balances ", "ack "];
    BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| WORDS.iter().filter_map(|w| line.find(w)).min().map(|at| line[at..].to_owned()))
}

#[test]
fn transfers_from_three_processes_keep_the_sum_in_every_read_and_agree_after_sync() {
    let Some(schema) = Schema::new("transfers3") else { return };
    seed(&schema);
    let transfers = std::env::var("SHELF_PG_TRANSFERS").ok().and_then(|v| v.parse().ok()).unwrap_or(60u64);
    // 8 threads across three processes.
    let mut children: Vec<Child> = [3u64, 3, 2]
        .iter()
        .map(|threads| {
            child(&schema, "transfers", &[("THREADS", threads.to_string()), ("TRANSFERS", transfers.to_string())])
        })
        .collect();
    let mut outputs: Vec<_> = children.iter_mut().map(lines).collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut made = 0;
    for out in outputs.iter_mut() {
        let line = out.find(|l| l.starts_with("finished")).expect("each instance finishes its transfers");
        made += line.split(' ').nth(1).unwrap().parse::<u64>().unwrap();
        assert!(Instant::now() < deadline, "the instances took more than 300 s");
    }
    assert!(made > 0, "no transfer was made");
    for c in children.iter_mut() {
        use std::io::Write;
        writeln!(c.stdin.as_mut().unwrap(), "sync").unwrap();
    }
    let finals: Vec<String> =
        outputs.iter_mut().map(|out| out.find(|l| l.starts_with("balances")).expect("each instance syncs")).collect();
    for c in children.iter_mut() {
        assert!(c.wait().unwrap().success(), "an instance failed (a read saw a broken sum, or a transfer failed)");
    }
    assert!(finals.windows(2).all(|w| w[0] == w[1]), "instances disagree after sync: {finals:?}");
    // And PostgreSQL agrees.
    let store = open(&schema);
    let balances: Vec<i64> =
        (0..ACCOUNTS).map(|id| store.collection::<Account>().unwrap().get(&id).unwrap().cents).collect();
    assert_eq!(finals[0], format!("balances {balances:?} receipts {made}"));
    assert_eq!(sum(&store), i64::from(ACCOUNTS) * START);
}

#[test]
fn a_killed_instance_leaves_no_partial_commit_and_a_restarted_one_catches_up() {
    let Some(schema) = Schema::new("killed") else { return };
    seed(&schema);
    let watcher = open(&schema);
    let events = watcher.collection::<Receipt>().unwrap().watch();
    let mut acked = Vec::new();
    for round in 0..3 {
        let mut victim = child(&schema, "until_killed", &[]);
        let mut out = lines(&mut victim);
        let wanted = 20 + round * 7;
        for line in out.by_ref() {
            if let Some(receipt) = line.strip_prefix("ack ") {
                acked.push(receipt.to_owned());
            }
            if acked.len() >= wanted * (round + 1) {
                break;
            }
        }
        // SIGKILL, most likely in the middle of a transaction.
        victim.kill().unwrap();
        victim.wait().unwrap();
        for line in out {
            if let Some(receipt) = line.strip_prefix("ack ") {
                acked.push(receipt.to_owned());
            }
        }
    }
    // A store opened now, and the watcher that stayed open and syncs, see every
    // acknowledged receipt and a whole sum.
    let restarted = open(&schema);
    watcher.sync().unwrap();
    for store in [&restarted, &watcher] {
        assert_eq!(sum(store), i64::from(ACCOUNTS) * START, "a partial transfer is visible");
        let receipts = store.collection::<Receipt>().unwrap();
        for receipt in &acked {
            assert!(receipts.contains(receipt.as_str()), "acknowledged receipt {receipt} is missing");
        }
    }
    // The watcher's events came in sequence order, one per receipt it holds.
    let seqs: Vec<u64> = std::iter::from_fn(|| events.try_recv().ok()).map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "events out of order: {seqs:?}");
    assert_eq!(seqs.len(), watcher.collection::<Receipt>().unwrap().len());
}
