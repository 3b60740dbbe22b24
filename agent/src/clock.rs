//! The clock. Every timestamp on the wire and every latency is
//! `CLOCK_REALTIME` in nanoseconds since the Unix epoch, so a publisher and a
//! subscriber on different hosts are comparable when their clocks are
//! synchronised (PTP, or NTP for millisecond budgets). On Linux this is a vDSO
//! call (~20 ns, no syscall).

/// Nanoseconds since the Unix epoch, `CLOCK_REALTIME`.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_REALTIME always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Busy-wait for `ns` nanoseconds (simulated per-message work; a sleep would
/// hand the core away and measure the scheduler instead).
#[inline]
pub fn spin_for(ns: u64) {
    if ns == 0 {
        return;
    }
    let end = now_ns() + ns;
    while now_ns() < end {
        std::hint::spin_loop();
    }
}
