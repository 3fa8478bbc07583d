//! The CPU priority of Shelf's background threads (Linux; elsewhere a no-op).

thread_local! {
    /// The `nice` increment of the sync threads this thread's batches start.
    static WORKER_NICE: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

/// Makes the sync threads that the calling thread's batches start lower their CPU
/// priority by `nice` (see [`lower`]); the calling thread keeps its own.
///
/// The background flusher sets it. It reads records under the collections' read
/// locks, which writers wait for: lowered with its sync threads, it waited for
/// the CPU behind them while holding a lock, and a writer waited with it. W9
/// (`per_record`, 2 cores) saw updates of 2 to 6 ms that slept in
/// `RawRwLock::lock_exclusive_slow` while the lock's reader, the flusher at nice
/// 10, was runnable behind its 16 sync threads and the kernel's I/O workers
/// (`perf record -e sched:sched_switch`).
pub(crate) fn set_worker_nice(nice: i32) {
    WORKER_NICE.with(|n| n.set(nice));
}

/// The `nice` increment set by [`set_worker_nice`] on the calling thread.
pub(crate) fn worker_nice() -> i32 {
    WORKER_NICE.with(std::cell::Cell::get)
}

/// Lowers the calling thread's CPU priority by `nice` (no change for `nice <= 0`):
/// its nice value goes up by `nice`, to at most 19. The sync threads of a
/// background flush call it, so that they yield the CPU to the application's
/// writers. On a machine with few cores a flush otherwise preempts a writer for
/// whole scheduler slices (W9, `per_record`, 2 cores: a writer's longest update
/// 47.8 ms with the flusher at the writers' priority, 11.0 ms at nice 10). Linux
/// only: elsewhere, and if a call fails, the thread keeps its priority (logged at
/// debug level).
pub(crate) fn lower(nice: i32) {
    if nice <= 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `getpriority` and `setpriority` take plain integers; `who == 0`
        // with `PRIO_PROCESS` is the calling thread on Linux (threads have their
        // own nice value). `getpriority` may return -1 as a value, so errno tells
        // a failure apart.
        let now = unsafe {
            *libc::__errno_location() = 0;
            libc::getpriority(libc::PRIO_PROCESS, 0)
        };
        let error = std::io::Error::last_os_error();
        if now == -1 && error.raw_os_error().is_some_and(|e| e != 0) {
            tracing::debug!(nice, %error, "could not read a sync thread's priority");
            return;
        }
        let target = now.saturating_add(nice).min(19);
        // SAFETY: as above.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, target) } != 0 {
            tracing::debug!(nice, error = %std::io::Error::last_os_error(), "could not lower a sync thread's priority");
        }
    }
}
