//! SIGINT and SIGTERM become a flag that every agent polls in its loop, so a
//! signal stops the pipeline in an orderly way: end-of-stream sent, reports
//! flushed, files written.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set when SIGINT or SIGTERM arrived.
#[derive(Clone, Debug)]
pub struct StopSignal(Arc<AtomicBool>);

impl StopSignal {
    /// Register for SIGINT and SIGTERM.
    pub fn install() -> std::io::Result<StopSignal> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&flag))?;
        }
        Ok(StopSignal(flag))
    }

    /// Whether a signal arrived.
    #[inline]
    pub fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
