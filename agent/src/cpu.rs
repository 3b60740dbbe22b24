//! CPU lists, pinning, and the Guide's "threads <= cores" budget.

use crate::exit::UsageError;

/// Parse a CPU list such as `0,2,4-7` (the format of `taskset -c` and
/// `/sys/devices/system/cpu/online`). Order is kept: the n-th CPU goes to the
/// n-th agent.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!("empty entry in CPU list '{s}'"));
        }
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let lo: usize = lo
            .parse()
            .map_err(|_| format!("'{part}' is not a CPU number or range"))?;
        let hi: usize = hi
            .parse()
            .map_err(|_| format!("'{part}' is not a CPU number or range"))?;
        if hi < lo {
            return Err(format!("range '{part}' runs backwards"));
        }
        if hi - lo > 4096 {
            return Err(format!("range '{part}' is implausibly large"));
        }
        out.extend(lo..=hi);
    }
    Ok(out)
}

/// A validated CPU list from the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// clap value parser for CPU-list flags: parses and checks that every CPU
/// exists for this process, so the error names the flag (exit code 2).
pub fn cpu_list_arg(s: &str) -> Result<CpuList, String> {
    let cpus = parse_cpu_list(s)?;
    let avail = available_cpus();
    if let Some(bad) = cpus.iter().find(|c| !avail.contains(c)) {
        return Err(format!(
            "CPU {bad} does not exist or is not allowed for this process (allowed: {})",
            format_cpu_list(&avail)
        ));
    }
    Ok(CpuList(cpus))
}

/// One CPU per thread from an optional list (`None` everywhere without a
/// list). A list shorter than the thread count is an error naming `flag`.
pub fn plan_cpus(
    flag: &'static str,
    list: Option<&[usize]>,
    n: usize,
    what: &str,
) -> Result<Vec<Option<usize>>, UsageError> {
    match list {
        None => Ok(vec![None; n]),
        Some(l) if l.len() < n => Err(UsageError::new(
            flag,
            format!(
                "{} CPUs given for {n} {what} threads; give one CPU per {what}, in order",
                l.len()
            ),
        )),
        Some(l) => Ok(l[..n].iter().copied().map(Some).collect()),
    }
}

/// The CPUs this process may run on (its affinity mask), ascending.
pub fn available_cpus() -> Vec<usize> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    ids.sort_unstable();
    if ids.is_empty() {
        // Affinity unknown: fall back to the online count.
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        ids = (0..n).collect();
    }
    ids
}

/// Format a CPU list compactly (`0-3,6`).
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

/// Pin the calling thread to `cpu`. Returns false if the OS refused.
pub fn pin_current(cpu: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
}

/// Start a named agent thread, pinned to `cpu` when given. Names show in
/// `top -H`, `perf` and `/proc/<pid>/task/*/comm` (at most 15 bytes).
pub fn spawn_agent<F, T>(
    name: String,
    cpu: Option<usize>,
    body: F,
) -> std::io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new().name(name).spawn(move || {
        if let Some(c) = cpu {
            // Placement is best effort here; it was validated up front and
            // is reported from /proc afterwards, which is the ground truth.
            let _ = pin_current(c);
        }
        body()
    })
}

/// Threads of this process whose name (`comm`) satisfies `pred`, as
/// `(tid, name)`.
pub fn threads_named(pred: impl Fn(&str) -> bool) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        let comm = comm.trim_end().to_string();
        if pred(&comm) {
            out.push((tid, comm));
        }
    }
    out.sort();
    out
}

/// The threads one ZeroMQ context starts, found, named and pinned.
///
/// shardcast gives every stream its own context with one I/O thread, so that
/// thread can be pinned on its own: libzmq's `ZMQ_THREAD_AFFINITY_CPU_ADD`
/// is context-wide, and the libzmq that the `zmq` crate builds from source
/// compiles both it and thread naming out (no `ZMQ_HAVE_PTHREAD_SET_AFFINITY`
/// or `ZMQ_HAVE_PTHREAD_SETNAME_*`), so its threads are anonymous. A context
/// starts its threads inside the call that creates its first socket: take a
/// [`ZmqThreads::before`] snapshot of this process's threads, create the
/// socket, then [`ZmqThreads::claim`] what appeared.
#[derive(Debug)]
pub struct ZmqThreads {
    before: Vec<i32>,
    creator: String,
}

impl ZmqThreads {
    /// Snapshot the threads of this process, and the name of the calling
    /// thread: a new thread inherits its creator's name, so libzmq's threads
    /// will carry this one's, which tells them from threads that anyone else
    /// starts meanwhile.
    pub fn before() -> ZmqThreads {
        let creator = std::fs::read_to_string("/proc/thread-self/comm")
            .map(|c| c.trim_end().to_string())
            .unwrap_or_default();
        ZmqThreads {
            before: threads_named(|_| true)
                .into_iter()
                .map(|(t, _)| t)
                .collect(),
            creator,
        }
    }

    /// Name the two threads a one-I/O-thread context started since the
    /// snapshot `zmq-reaper-<label>` and `zmq-io-<label>` (libzmq starts its
    /// reaper first, then the I/O thread, and Linux hands out thread ids in
    /// increasing order; after a thread-id wrap the two names would be
    /// swapped, the pinning would not), and pin both to `cpu` when given:
    /// the reaper only runs when sockets close. Returns the `(name, tid)`
    /// pairs. Fails unless exactly two threads appeared: then some other
    /// thread started meanwhile and which is which cannot be told.
    pub fn claim(self, label: &str, cpu: Option<usize>) -> std::io::Result<Vec<(String, i32)>> {
        let mut new: Vec<i32> = threads_named(|n| n == self.creator)
            .into_iter()
            .map(|(t, _)| t)
            .filter(|t| !self.before.contains(t))
            .collect();
        new.sort_unstable();
        if new.len() != 2 {
            return Err(std::io::Error::other(format!(
                "expected libzmq to start 2 threads, {} appeared (another thread started meanwhile?)",
                new.len()
            )));
        }
        let mut out = Vec::with_capacity(2);
        for (k, tid) in new.into_iter().enumerate() {
            let name = if k == 0 {
                format!("zmq-reaper-{label}")
            } else {
                format!("zmq-io-{label}")
            };
            // comm holds at most 15 bytes; the kernel truncates longer names.
            std::fs::write(format!("/proc/self/task/{tid}/comm"), &name)?;
            if let Some(c) = cpu {
                set_thread_affinity(tid, c)?;
            }
            out.push((name, tid));
        }
        Ok(out)
    }
}

/// Set the affinity of thread `tid` of this process to the single `cpu`.
pub fn set_thread_affinity(tid: i32, cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write within it, and
    // sched_setaffinity reads exactly size_of::<cpu_set_t>() bytes.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The CPU thread `tid` of this process last ran on (field 39 of its stat).
pub fn last_cpu_of(tid: i32) -> Option<usize> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The name field may contain spaces; fields are counted after its ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(36)?.parse().ok()
}

/// Where every thread of this process is, for start-up logs and reports:
/// `(name, last cpu)`.
pub fn placement() -> Vec<(String, Option<usize>)> {
    threads_named(|_| true)
        .into_iter()
        .map(|(tid, name)| (name, last_cpu_of(tid)))
        .collect()
}

/// The Guide's Black Box rule (chapter 5): busy threads should not outnumber
/// cores. Returns a warning when `busy_threads` exceeds the CPUs available.
pub fn thread_budget_warning(busy_threads: usize, what: &str) -> Option<String> {
    let cores = available_cpus().len();
    (busy_threads > cores).then(|| {
        format!(
            "warning: {busy_threads} busy threads ({what}) on {cores} cores; \
             threads will compete for CPU and latency will suffer \
             (ZeroMQ Guide: threads <= cores). Use fewer --workers or streams."
        )
    })
}

/// Lower the calling thread's priority to `nice` (Linux: `setpriority` on
/// the thread id affects that thread only): for service threads (the
/// metrics endpoint, range servers) that must never take a core from the
/// pipeline's threads when the host has none to spare. Best effort: a
/// failure leaves the thread as it was.
pub fn lower_thread_priority(nice: i32) {
    // SAFETY: gettid and setpriority take and return plain integers.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_ranges_in_order() {
        assert_eq!(parse_cpu_list("3,0-2").unwrap(), vec![3, 0, 1, 2]);
        assert_eq!(parse_cpu_list(" 5 ").unwrap(), vec![5]);
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("1,,2").is_err());
        assert!(parse_cpu_list("4-2").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("-1").is_err());
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 6, 8, 9]), "0-3,6,8-9");
        assert_eq!(format_cpu_list(&[]), "");
    }

    #[test]
    fn nonexistent_cpus_are_refused() {
        assert!(cpu_list_arg("100000")
            .unwrap_err()
            .contains("does not exist"));
        let first = available_cpus()[0];
        assert_eq!(
            cpu_list_arg(&first.to_string()).unwrap(),
            CpuList(vec![first])
        );
    }

    /// Tests that start threads and look at this process's thread list run
    /// one at a time (cargo runs tests on parallel threads).
    pub(crate) fn threads_lock() -> std::sync::MutexGuard<'static, ()> {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        LOCK.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[test]
    fn a_named_agent_is_visible_and_reports_its_cpu() {
        let _g = threads_lock();
        let cpu = available_cpus()[0];
        let h = spawn_agent("sc-test-agent".into(), Some(cpu), move || {
            let me = threads_named(|n| n == "sc-test-agent");
            assert_eq!(me.len(), 1);
            last_cpu_of(me[0].0)
        })
        .unwrap();
        assert_eq!(h.join().unwrap(), Some(cpu));
    }
}
