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
    pub fn install() -> std::io::Result<StopSignal> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Registered first, so it sees the flag as it was before this
            // signal: it exits only if an earlier signal had set it.
            signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&flag))?;
            signal_hook::flag::register(sig, Arc::clone(&flag))?;
        }
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
