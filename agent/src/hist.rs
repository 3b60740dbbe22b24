//! Per-stage latency histograms: recorded per thread without allocating,
//! collected per second by the monitor.
//!
//! Each agent owns a [`StageRecorder`]: four fixed-bound histograms (one per
//! [`Stage`]) for the current one-second interval. When an interval ends the
//! recorder sends its set to the monitor over a channel and continues with a
//! cleared set the monitor sent back earlier, so after start-up recording
//! never allocates and never locks. The monitor's [`StageCollector`] merges
//! what arrives into the run's cumulative histograms and into per-interval
//! sets, which it hands out once an interval is complete (for the interval
//! log and the live line).

use crate::stats;
use crossbeam::channel::{self, Receiver, Sender};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;

/// A pipeline stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Publisher send time to shard receive (network, kernel, I/O thread).
    Wire = 0,
    /// Shard receive to worker start (the inproc hop and its queue).
    Queue = 1,
    /// Worker start to done (the handler).
    Work = 2,
    /// Intended send time to handler done: everything, including a late
    /// publisher (no coordinated omission).
    EndToEnd = 3,
}

impl Stage {
    /// Every stage, in order (the index of each is its discriminant).
    pub const ALL: [Stage; 4] = [Stage::Wire, Stage::Queue, Stage::Work, Stage::EndToEnd];

    /// The stage's name: the report's `latency_ns` keys and the `.hgrm`
    /// file suffixes. The one table of these names.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Wire => "wire",
            Stage::Queue => "queue",
            Stage::Work => "work",
            Stage::EndToEnd => "end_to_end",
        }
    }

    /// Stage names, in order.
    pub fn names() -> impl Iterator<Item = &'static str> {
        Stage::ALL.into_iter().map(Stage::name)
    }
}
/// Interval length of the interval log and live line.
pub const INTERVAL_NS: u64 = 1_000_000_000;

/// One histogram per stage.
pub type StageHists = [Histogram<u64>; 4];

/// A fresh set of stage histograms (the allocation happens here).
pub fn new_stage_hists() -> Box<StageHists> {
    Box::new([
        stats::new_histogram(),
        stats::new_histogram(),
        stats::new_histogram(),
        stats::new_histogram(),
    ])
}

fn add_all(into: &mut StageHists, from: &StageHists) {
    for (a, b) in into.iter_mut().zip(from.iter()) {
        // Same bounds everywhere, so adding cannot fail.
        let _ = a.add(b);
    }
}

/// One agent's histograms for one interval.
#[derive(Debug)]
pub struct Interval {
    /// Interval number since the run's start.
    pub index: u64,
    /// The histograms.
    pub hists: Box<StageHists>,
}

/// An agent's recorder.
#[derive(Debug)]
pub struct StageRecorder {
    hists: Box<StageHists>,
    t0_ns: u64,
    index: u64,
    end_ns: u64,
    warmup_end_ns: u64,
    dirty: bool,
    tx: Sender<Interval>,
    spare: Receiver<Box<StageHists>>,
    /// Records seen during the warm-up: counted, not timed.
    pub warmup_records: u64,
}

impl StageRecorder {
    /// Whether `now` is still in the warm-up (record nothing, count it).
    #[inline]
    pub fn in_warmup(&self, now_ns: u64) -> bool {
        now_ns < self.warmup_end_ns
    }

    /// Record `value_ns` for `stage` in the current interval.
    #[inline]
    pub fn record(&mut self, stage: Stage, value_ns: u64) {
        stats::record(&mut self.hists[stage as usize], value_ns);
        self.dirty = true;
    }

    /// Move to the interval containing `now_ns`, handing the finished one to
    /// the monitor. Call once per frame and when idle. Returns true when a
    /// new interval began (a cheap once-a-second hook for the caller).
    #[inline]
    pub fn tick(&mut self, now_ns: u64) -> bool {
        if now_ns >= self.end_ns {
            self.roll(now_ns);
            return true;
        }
        false
    }

    #[cold]
    fn roll(&mut self, now_ns: u64) {
        self.flush();
        self.index = now_ns.saturating_sub(self.t0_ns) / INTERVAL_NS;
        self.end_ns = self.t0_ns + (self.index + 1) * INTERVAL_NS;
    }

    /// Hand over what the current interval holds, if anything.
    pub fn flush(&mut self) {
        if !self.dirty {
            return;
        }
        // A cleared set from the monitor; a new one only until the first
        // ones come back (start-up), or if the monitor fell behind.
        let next = match self.spare.try_recv() {
            Ok(h) => h,
            Err(_) => new_stage_hists(),
        };
        let full = std::mem::replace(&mut self.hists, next);
        // If the monitor is gone the run is ending; the data has no reader.
        let _ = self.tx.send(Interval {
            index: self.index,
            hists: full,
        });
        self.dirty = false;
    }
}

impl Drop for StageRecorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The monitor's side: merges intervals from every agent.
#[derive(Debug)]
pub struct StageCollector {
    rx: Receiver<Interval>,
    tx: Sender<Interval>,
    spare_tx: Sender<Box<StageHists>>,
    spare_rx: Receiver<Box<StageHists>>,
    t0_ns: u64,
    warmup_end_ns: u64,
    cumulative: Box<StageHists>,
    pending: BTreeMap<u64, Box<StageHists>>,
    finalized_below: u64,
}

/// A completed interval: its start and the merged histograms.
#[derive(Debug)]
pub struct DoneInterval {
    /// Start, ns since the epoch.
    pub start_ns: u64,
    /// Merged histograms of every agent.
    pub hists: Box<StageHists>,
    /// Whether this completes the interval for the first time (false for a
    /// late arrival, written as an extra entry for the same interval).
    pub on_time: bool,
}

impl StageCollector {
    /// A collector for a run starting at `t0_ns`, recording from
    /// `warmup_end_ns` on.
    pub fn new(t0_ns: u64, warmup_end_ns: u64) -> StageCollector {
        let (tx, rx) = channel::unbounded();
        let (spare_tx, spare_rx) = channel::unbounded();
        StageCollector {
            rx,
            tx,
            spare_tx,
            spare_rx,
            t0_ns,
            warmup_end_ns,
            cumulative: new_stage_hists(),
            pending: BTreeMap::new(),
            finalized_below: 0,
        }
    }

    /// A recorder for one agent.
    pub fn recorder(&self) -> StageRecorder {
        StageRecorder {
            hists: new_stage_hists(),
            t0_ns: self.t0_ns,
            index: 0,
            end_ns: self.t0_ns + INTERVAL_NS,
            warmup_end_ns: self.warmup_end_ns,
            dirty: false,
            tx: self.tx.clone(),
            spare: self.spare_rx.clone(),
            warmup_records: 0,
        }
    }

    /// Take in what agents sent, and return the intervals complete by
    /// `now_ns` (an interval is complete `grace_ns` after its end: agents
    /// hand over at their next frame or idle wake-up), plus late arrivals for
    /// intervals already returned. `now_ns = u64::MAX` returns everything.
    pub fn collect(&mut self, now_ns: u64, grace_ns: u64) -> Vec<DoneInterval> {
        let mut out = Vec::new();
        // Empty or disconnected alike: nothing more has arrived.
        while let Ok(iv) = self.rx.try_recv() {
            add_all(&mut self.cumulative, &iv.hists);
            if iv.index < self.finalized_below {
                out.push(DoneInterval {
                    start_ns: self.t0_ns + iv.index * INTERVAL_NS,
                    hists: iv.hists,
                    on_time: false,
                });
                continue;
            }
            match self.pending.get_mut(&iv.index) {
                Some(p) => {
                    add_all(p, &iv.hists);
                    self.recycle(iv.hists);
                }
                None => {
                    self.pending.insert(iv.index, iv.hists);
                }
            }
        }
        while let Some((&k, _)) = self.pending.first_key_value() {
            let end = self.t0_ns + (k + 1) * INTERVAL_NS;
            if now_ns != u64::MAX && end.saturating_add(grace_ns) > now_ns {
                break;
            }
            let hists = self.pending.remove(&k).expect("first key exists");
            self.finalized_below = k + 1;
            out.push(DoneInterval {
                start_ns: self.t0_ns + k * INTERVAL_NS,
                hists,
                on_time: true,
            });
        }
        out
    }

    /// Give a set back for agents to reuse.
    pub fn recycle(&self, mut hists: Box<StageHists>) {
        for h in hists.iter_mut() {
            h.reset();
        }
        let _ = self.spare_tx.send(hists);
    }

    /// Everything recorded so far, per stage.
    pub fn cumulative(&self) -> &StageHists {
        &self.cumulative
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_flow_to_the_collector_and_sets_are_reused() {
        let t0 = 1_000 * INTERVAL_NS;
        let mut c = StageCollector::new(t0, t0 + INTERVAL_NS / 2);
        let mut r = c.recorder();
        assert!(r.in_warmup(t0 + 1));
        assert!(!r.in_warmup(t0 + INTERVAL_NS / 2));
        r.tick(t0 + 10);
        r.record(Stage::Wire, 5_000);
        r.record(Stage::EndToEnd, 9_000);
        r.tick(t0 + INTERVAL_NS + 1); // interval 0 handed over
        r.record(Stage::Wire, 7_000);
        assert!(
            c.collect(t0 + INTERVAL_NS + 2, 100).is_empty(),
            "grace not over"
        );
        let done = c.collect(t0 + 2 * INTERVAL_NS, 100);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].start_ns, t0);
        assert_eq!(done[0].hists[Stage::Wire as usize].len(), 1);
        c.recycle(done.into_iter().next().unwrap().hists);
        drop(r); // flushes interval 1
        let done = c.collect(u64::MAX, 0);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].start_ns, t0 + INTERVAL_NS);
        assert_eq!(c.cumulative()[Stage::Wire as usize].len(), 2);
        assert_eq!(c.cumulative()[Stage::EndToEnd as usize].len(), 1);
    }

    #[test]
    fn late_arrivals_are_returned_as_extra_entries_and_counted() {
        let t0 = 0;
        let mut c = StageCollector::new(t0, 0);
        let mut early = c.recorder();
        let mut late = c.recorder();
        early.record(Stage::Work, 1);
        early.tick(INTERVAL_NS);
        assert_eq!(c.collect(3 * INTERVAL_NS, 0).len(), 1);
        late.record(Stage::Work, 2); // still in interval 0, handed over late
        late.flush();
        let done = c.collect(3 * INTERVAL_NS, 0);
        assert_eq!(done.len(), 1);
        assert!(!done[0].on_time);
        assert_eq!(done[0].start_ns, 0);
        assert_eq!(c.cumulative()[Stage::Work as usize].len(), 2);
    }
}
