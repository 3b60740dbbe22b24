//! SIGINT and SIGTERM become a flag that every agent polls in its loop, so a
//! signal stops the pipeline in an orderly way: end-of-stream sent, reports
//! flushed, files written.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set when SIGINT or SIGTERM arrived.
#[derive(Clone, Debug)]
pub struct StopSignal(Arc<AtomicBool>);

impl StopSignal {
    /// Register for SIGINT and SIGTERM. The first one sets the flag (an
    /// orderly stop); a second one, while that stop is under way, exits at
    /// once with code 1 (for an operator who will not wait).
    ///
    /// Call it first thing in `main`, before flags are parsed: until then a
    /// signal kills the process by its default action, with no report
    /// (issue 10, finding 10). The window from `exec` to `main` (the loader)
    /// cannot be closed from inside; a supervisor that must close it starts
    /// us with SIGINT and SIGTERM blocked: once the handlers are in place
    /// they are unblocked here, and a signal that came in between is handled
    /// then. (Unblocking also means an inherited blocked mask can never make
    /// the process deaf to an orderly stop.)
    pub fn install() -> std::io::Result<StopSignal> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Registered first, so it sees the flag as it was before this
            // signal: it exits only if an earlier signal had set it.
            signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&flag))?;
            signal_hook::flag::register(sig, Arc::clone(&flag))?;
        }
        unblock(&[libc::SIGINT, libc::SIGTERM])?;
        Ok(StopSignal(flag))
    }

    /// A stop flag no signal sets, for driving a library's `run` in-process
    /// (tests, embedding): [`Self::raise`] stops the run as a signal would.
    pub fn manual() -> StopSignal {
        StopSignal(Arc::new(AtomicBool::new(false)))
    }

    /// Stop the run as SIGTERM would (an orderly stop).
    pub fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a signal arrived.
    #[inline]
    pub fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Unblock `sigs` for the calling thread (and the threads it starts later,
/// which inherit its mask).
fn unblock(sigs: &[i32]) -> std::io::Result<()> {
    // SAFETY: sigemptyset/sigaddset only write the local set;
    // pthread_sigmask reads it and changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        match libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) {
            0 => Ok(()),
            e => Err(std::io::Error::from_raw_os_error(e)),
        }
    }
}
