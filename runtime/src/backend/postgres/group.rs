//! Group commit: commits that arrive while others are on their way to PostgreSQL
//! go together, as one transaction, as the file store's WAL groups its appends.
//!
//! A commit that finds fewer than [`IN_FLIGHT`] groups on their way leads: it
//! takes every commit waiting (at most [`MOST`], its own among them unless more
//! were waiting before it) and sends them as one statement. The others wait for
//! their outcome. When a group ends, its leader hands the lead to the owner of the
//! first commit still waiting. Alone, a commit goes at once, by itself: grouping
//! adds no wait.
//!
//! In a group each commit keeps its own checks (`shelf_commit_group`): its
//! versions, and its unique and foreign keys at its end, as if it were committed
//! alone; its own change-log row and sequence number, taken after every row lock
//! of the group, in the group's order. The commits share one transaction, so one
//! fsync and one round trip. Two commits of one group never write the same record
//! (`commit_shared` holds a record's second local commit back until the first is
//! applied). If PostgreSQL refuses the group with an `ERROR`, the session alive
//! (one commit conflicts or breaks a key, or the group waited
//! `sql::GROUP_LOCK_TIMEOUT` for a lock), nothing of it is committed, and each
//! commit is sent again by itself, so that each gets its own outcome; if the
//! outcome is unknown (a FATAL error, or the connection broke), each commit fails
//! so, as a commit sent alone would.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::Refusal;
use crate::error::Error;

/// How many groups may be on their way at once: while one waits for its fsync,
/// the next is executed.
pub(super) const IN_FLIGHT: usize = 2;

/// The most commits one group carries.
pub(super) const MOST: usize = 64;

/// A commit's outcome: its sequence number and its records' version.
pub(crate) type Outcome = std::result::Result<(u64, i64), Refusal>;

/// How a group ended, as [`Groups::commit`]'s `together` reports it.
pub(super) enum Together {
    /// Committed: each commit's sequence number and version, in the group's order.
    Committed(Vec<(u64, i64)>),
    /// PostgreSQL refused the group, so nothing of it is committed: each commit
    /// runs again by itself.
    Separately,
    /// The outcome is unknown (the connection broke): every commit fails so.
    Failed(String),
}

/// One commit waiting to be sent: the arguments of `shelf_commit`.
pub(super) struct Ticket {
    pub writes: String,
    pub reads: String,
    state: Mutex<TicketState>,
    changed: Condvar,
}

#[derive(Default)]
struct TicketState {
    /// Its owner is to lead the next group.
    lead: bool,
    /// How it ended; `Alone`: its owner is to send it by itself.
    outcome: Option<Turn>,
}

enum Turn {
    Done(Outcome),
    Alone,
}

impl Ticket {
    fn set(&self, f: impl FnOnce(&mut TicketState)) {
        f(&mut self.state.lock());
        self.changed.notify_one();
    }
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Arc<Ticket>>,
    in_flight: usize,
}

impl Queue {
    /// Gives a place back, and the lead to the first commit waiting whose owner
    /// does not hold it already (handed on by another group that ended before
    /// that owner woke).
    fn pass_lead(&mut self) {
        self.in_flight -= 1;
        let next = self.waiting.iter().find(|ticket| !ticket.state.lock().lead).cloned();
        if let Some(next) = next {
            self.in_flight += 1;
            next.set(|state| state.lead = true);
        }
    }
}

/// A commit's owner, until it has its outcome. If the owner unwinds first (its
/// thread panicked while leading), its commit leaves the queue if it is still
/// there (one another leader took along is committed without it, and applied by
/// the change feed), and a lead handed to it passes on.
struct Owner<'a> {
    groups: &'a Groups,
    ticket: &'a Arc<Ticket>,
}

impl Drop for Owner<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return; // it returned with its outcome: answered, out of the queue
        }
        let mut queue = self.groups.queue.lock();
        queue.waiting.retain(|t| !Arc::ptr_eq(t, self.ticket));
        if std::mem::take(&mut self.ticket.state.lock().lead) {
            queue.pass_lead();
        }
    }
}

/// The commits of one instance on their way to PostgreSQL; see the module docs.
#[derive(Default)]
pub(super) struct Groups {
    queue: Mutex<Queue>,
}

/// A group being sent. If its leader unwinds, every commit not answered yet fails
/// (instead of waiting for ever), and the lead passes on.
struct Leading<'a> {
    groups: &'a Groups,
    batch: Vec<Arc<Ticket>>,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        for ticket in self.batch.drain(..) {
            ticket.set(|state| {
                state.outcome.get_or_insert_with(|| {
                    Turn::Done(Err(Refusal::Failed(Error::Postgres {
                        op: "commit",
                        message: "the thread sending its group panicked; the outcome is unknown".into(),
                    })))
                });
            });
        }
        self.groups.queue.lock().pass_lead();
    }
}

impl Groups {
    /// Commits `writes` after checking `reads`, alone or in a group: `alone` sends
    /// one commit by itself, `together` a group of two or more.
    pub(super) fn commit(
        &self,
        writes: String,
        reads: String,
        alone: &dyn Fn(&str, &str) -> Outcome,
        together: &dyn Fn(&[Arc<Ticket>]) -> Together,
    ) -> Outcome {
        let ticket =
            Arc::new(Ticket { writes, reads, state: Mutex::new(TicketState::default()), changed: Condvar::new() });
        let _owner = Owner { groups: self, ticket: &ticket };
        let mut lead = {
            let mut queue = self.queue.lock();
            queue.waiting.push_back(Arc::clone(&ticket));
            let lead = queue.in_flight < IN_FLIGHT;
            if lead {
                queue.in_flight += 1;
            }
            lead
        };
        loop {
            if lead {
                self.lead(alone, together);
            }
            let mut state = ticket.state.lock();
            while !state.lead && state.outcome.is_none() {
                ticket.changed.wait(&mut state);
            }
            // The lead first: it holds a place, which only leading gives back
            // (another leader may have answered this commit meanwhile).
            lead = std::mem::take(&mut state.lead);
            if lead {
                continue;
            }
            match state.outcome.take() {
                Some(Turn::Done(outcome)) => return outcome,
                Some(Turn::Alone) => {
                    drop(state);
                    return alone(&ticket.writes, &ticket.reads);
                }
                None => {} // not reached: woken with neither
            }
        }
    }

    /// Sends every commit waiting (at most [`MOST`]) as one group, answers them,
    /// and passes the lead on. The caller holds one of the [`IN_FLIGHT`] places.
    fn lead(&self, alone: &dyn Fn(&str, &str) -> Outcome, together: &dyn Fn(&[Arc<Ticket>]) -> Together) {
        let batch: Vec<Arc<Ticket>> = {
            let mut queue = self.queue.lock();
            let n = queue.waiting.len().min(MOST);
            queue.waiting.drain(..n).collect()
        };
        let mut leading = Leading { groups: self, batch };
        let outcomes: Vec<Turn> = match leading.batch.as_slice() {
            [] => Vec::new(), // another leader took them
            [one] => vec![Turn::Done(alone(&one.writes, &one.reads))],
            batch => match together(batch) {
                Together::Committed(done) if done.len() == batch.len() => {
                    done.into_iter().map(|d| Turn::Done(Ok(d))).collect()
                }
                Together::Committed(done) => {
                    let message = format!("a group of {} commits returned {} outcomes", batch.len(), done.len());
                    batch.iter().map(|_| failed(&message)).collect()
                }
                Together::Separately => batch.iter().map(|_| Turn::Alone).collect(),
                Together::Failed(message) => batch.iter().map(|_| failed(&message)).collect(),
            },
        };
        for (ticket, outcome) in leading.batch.drain(..).zip(outcomes) {
            ticket.set(|state| state.outcome = Some(outcome));
        }
        // `leading` passes the lead on as it drops.
    }
}

fn failed(message: &str) -> Turn {
    Turn::Done(Err(Refusal::Failed(Error::Postgres { op: "commit", message: message.to_owned() })))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;

    use super::*;

    /// Commits from many threads all get their own outcome, some of them in
    /// groups, and never more than `IN_FLIGHT` groups are sent at once.
    #[test]
    fn every_commit_gets_its_own_outcome_and_groups_form_under_load() {
        let groups = Groups::default();
        let sending = AtomicUsize::new(0);
        let most_sending = AtomicUsize::new(0);
        let grouped = AtomicUsize::new(0);
        let seq = AtomicUsize::new(0);
        let send = |n: usize| {
            let now = sending.fetch_add(1, Ordering::SeqCst) + 1;
            most_sending.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(1));
            sending.fetch_sub(1, Ordering::SeqCst);
            (0..n).map(|_| seq.fetch_add(1, Ordering::SeqCst) as u64 + 1).collect::<Vec<_>>()
        };
        let alone = |writes: &str, _: &str| -> Outcome {
            let seq = send(1)[0];
            Ok((seq, writes.parse::<i64>().unwrap_or(-1)))
        };
        let together = |batch: &[Arc<Ticket>]| {
            grouped.fetch_add(batch.len(), Ordering::SeqCst);
            let seqs = send(batch.len());
            Together::Committed(
                batch.iter().zip(seqs).map(|(t, s)| (s, t.writes.parse::<i64>().unwrap_or(-1))).collect(),
            )
        };
        let mut seqs = Vec::new();
        for (mine, outcome) in from_threads(&groups, 50, &alone, &together) {
            let (seq, version) = outcome.unwrap();
            assert_eq!(version, mine, "commit {mine} got another's outcome");
            seqs.push(seq);
        }
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 8 * 50, "two commits got one sequence number");
        assert!(most_sending.load(Ordering::SeqCst) <= IN_FLIGHT, "more than {IN_FLIGHT} groups on their way");
        assert!(grouped.load(Ordering::SeqCst) > 0, "8 threads never formed a group");
        assert_eq!(groups.queue.lock().in_flight, 0);
    }

    /// `per` commits on each of 8 threads, started together: each commit's
    /// `writes` is its number (`thread * 1000 + i`), returned with its outcome.
    fn from_threads(
        groups: &Groups,
        per: usize,
        alone: &(dyn Fn(&str, &str) -> Outcome + Sync),
        together: &(dyn Fn(&[Arc<Ticket>]) -> Together + Sync),
    ) -> Vec<(i64, Outcome)> {
        let barrier = Barrier::new(8);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let barrier = &barrier;
                    scope.spawn(move || {
                        barrier.wait();
                        (0..per)
                            .map(|i| {
                                let mine = (t * 1000 + i) as i64;
                                (mine, groups.commit(mine.to_string(), "[]".into(), alone, together))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        })
    }

    fn ticket(writes: &str) -> Arc<Ticket> {
        Arc::new(Ticket {
            writes: writes.into(),
            reads: "[]".into(),
            state: Mutex::new(TicketState::default()),
            changed: Condvar::new(),
        })
    }

    /// One leader's turn over a queue of `MOST + 1` commits, ending as `end`:
    /// what each of the first `MOST` got, and whether the last one got the lead.
    fn lead_once(end: fn(&[Arc<Ticket>]) -> Together) -> (Vec<Option<Turn>>, bool) {
        let groups = Groups::default();
        let tickets: Vec<Arc<Ticket>> = (0..=MOST).map(|i| ticket(&i.to_string())).collect();
        {
            let mut queue = groups.queue.lock();
            queue.waiting.extend(tickets.iter().cloned());
            queue.in_flight = 1; // this thread's place
        }
        let sizes = Mutex::new(Vec::new());
        let together = |batch: &[Arc<Ticket>]| {
            sizes.lock().push(batch.len());
            end(batch)
        };
        groups.lead(&|_, _| panic!("a group of several is never sent alone"), &together);
        assert_eq!(*sizes.lock(), vec![MOST], "one group of at most MOST commits");
        let queue = groups.queue.lock();
        assert_eq!((queue.waiting.len(), queue.in_flight), (1, 1), "the lead passed to the one left waiting");
        let turns = tickets[..MOST].iter().map(|t| t.state.lock().outcome.take()).collect();
        let passed = tickets[MOST].state.lock().lead;
        (turns, passed)
    }

    #[test]
    fn a_group_answers_each_commit_with_its_own_outcome() {
        let (turns, passed) =
            lead_once(|batch| Together::Committed(batch.iter().map(|t| (t.writes.parse().unwrap_or(0), 7)).collect()));
        assert!(passed);
        for (i, turn) in turns.iter().enumerate() {
            assert!(matches!(turn, Some(Turn::Done(Ok((seq, 7)))) if *seq == i as u64), "commit {i}");
        }
    }

    #[test]
    fn a_refused_group_sends_each_commit_alone() {
        let (turns, passed) = lead_once(|_| Together::Separately);
        assert!(passed);
        assert!(turns.iter().all(|t| matches!(t, Some(Turn::Alone))));
    }

    #[test]
    fn a_group_whose_outcome_is_unknown_fails_each_commit() {
        let (turns, passed) = lead_once(|_| Together::Failed("the connection broke".into()));
        assert!(passed);
        for turn in turns {
            assert!(matches!(turn, Some(Turn::Done(Err(Refusal::Failed(Error::Postgres { message, .. }))))
                if message.contains("broke")));
        }
    }

    #[test]
    fn a_group_answering_for_too_few_commits_fails_each_of_them() {
        let (turns, _) = lead_once(|_| Together::Committed(vec![(1, 1)]));
        assert!(turns.iter().all(|t| matches!(t, Some(Turn::Done(Err(_))))));
    }

    #[test]
    fn a_leader_that_panics_fails_its_group_and_passes_the_lead() {
        let groups = Groups::default();
        let tickets: Vec<Arc<Ticket>> = (0..3).map(|i| ticket(&i.to_string())).collect();
        {
            let mut queue = groups.queue.lock();
            queue.waiting.extend(tickets[..2].iter().cloned());
            queue.in_flight = 1;
        }
        let together = |_: &[Arc<Ticket>]| -> Together {
            // A commit arrives while the group is on its way.
            groups.queue.lock().waiting.push_back(Arc::clone(&tickets[2]));
            panic!("the client library panicked")
        };
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            groups.lead(&|_, _| unreachable!(), &together);
        }));
        assert!(unwound.is_err());
        for t in &tickets[..2] {
            assert!(matches!(t.state.lock().outcome, Some(Turn::Done(Err(Refusal::Failed(_))))), "not left waiting");
        }
        assert!(tickets[2].state.lock().lead, "the lead passed on");
        assert_eq!(groups.queue.lock().in_flight, 1);
    }

    /// Groups that commit, are refused or end unknown, at random, under 8
    /// threads: each commit gets its own outcome (or fails with its group), and
    /// every place comes back.
    #[test]
    fn outcomes_stay_with_their_commits_whatever_each_group_meets() {
        let groups = Groups::default();
        let turn = AtomicUsize::new(0);
        let alone = |writes: &str, _: &str| -> Outcome {
            std::thread::sleep(std::time::Duration::from_micros(200));
            Ok((0, writes.parse::<i64>().unwrap_or(-1)))
        };
        let together = |batch: &[Arc<Ticket>]| {
            std::thread::sleep(std::time::Duration::from_micros(300));
            match turn.fetch_add(1, Ordering::SeqCst) % 3 {
                0 => Together::Committed(batch.iter().map(|t| (1, t.writes.parse::<i64>().unwrap_or(-1))).collect()),
                1 => Together::Separately,
                _ => Together::Failed("the connection broke".into()),
            }
        };
        let mut failed = 0;
        for (mine, outcome) in from_threads(&groups, 60, &alone, &together) {
            match outcome {
                Ok((_, version)) => assert_eq!(version, mine, "commit {mine} got another's outcome"),
                Err(Refusal::Failed(Error::Postgres { message, .. })) if message.contains("broke") => failed += 1,
                Err(other) => panic!("commit {mine}: {other:?}"),
            }
        }
        assert!(turn.load(Ordering::SeqCst) >= 3, "groups formed, and met each ending");
        assert!(failed > 0);
        let queue = groups.queue.lock();
        assert_eq!((queue.waiting.len(), queue.in_flight), (0, 0));
    }

    /// A leader whose own commit is still queued behind a full group, and whose
    /// thread panics: its commit leaves the queue, and
    /// the lead handed to it comes back.
    #[test]
    fn a_leader_unwinding_takes_its_queued_commit_along() {
        let groups = Groups::default();
        let others: Vec<Arc<Ticket>> = (0..MOST).map(|i| ticket(&i.to_string())).collect();
        groups.queue.lock().waiting.extend(others.iter().cloned());
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            groups
                .commit("mine".into(), "[]".into(), &|_, _| unreachable!(), &|_| panic!("the client library panicked"))
        }));
        assert!(unwound.is_err());
        for t in &others {
            assert!(matches!(t.state.lock().outcome, Some(Turn::Done(Err(_)))));
        }
        let queue = groups.queue.lock();
        assert_eq!((queue.waiting.len(), queue.in_flight), (0, 0), "its commit left, and its place came back");
    }
}
