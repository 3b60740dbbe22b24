//! `shardcast-pub`: a paced, sharded synthetic market-data publisher.
//!
//! One stream per `--bind`: its own XPUB socket, its own thread and its own
//! ZeroMQ I/O thread. Every stream thread runs the same deterministic feed
//! (so content depends only on the seed) and sends the events whose symbol
//! hashes to it. Message `i` of the feed falls due at `t0 + i/rate` and is
//! stamped with that intended time: a publisher that falls behind shows it as
//! latency downstream instead of silently stretching the schedule (no
//! coordinated omission).
//!
//! XPUB rather than PUB: it behaves the same for data, and it lets the
//! publisher see subscriptions, which is how `--wait-subscribers` defeats the
//! slow joiner without a sleep.

pub mod cli;
pub mod config;

use config::{is_multicast, Config, Pace};
use hdrhistogram::Histogram;
use serde::Serialize;
use shardcast_agent::clock::now_ns;
use shardcast_agent::cpu::{self, spawn_agent};
use shardcast_agent::curve::{self, PublicKey, Zap, ZapReport};
use shardcast_agent::exit::{ioerr, zerr, SetupError};
use shardcast_agent::signals::StopSignal;
use shardcast_agent::stats::{self, LatencySummary};
use shardcast_agent::zmqx::{self, socket_with_own_io_thread, Msg};
use shardcast_proto::feed::Feed;
use shardcast_proto::shard::stream_for;
use shardcast_proto::wire::{self, Payload, RecordMeta, StreamChecksum, Symbol, CONTROL_TOPIC};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long a waiting stream blocks on its XPUB before it looks at the clock.
const SUB_POLL_MS: i32 = 50;
/// Look at signals and subscriptions every this many feed events.
const HOUSEKEEPING_EVERY: u64 = 1024;

/// Why a run failed (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Building or running the sockets and threads failed.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// Subscribers did not arrive within --wait-timeout.
    #[error("stream {stream}: {seen} of {wanted} subscribers arrived within --wait-timeout; is the subscriber pointed at this endpoint?")]
    WaitTimeout {
        /// Stream index.
        stream: usize,
        /// Subscribers seen.
        seen: u32,
        /// Subscribers wanted.
        wanted: u32,
    },
    /// A stream thread panicked.
    #[error("stream thread {0} panicked")]
    Panicked(usize),
    /// The feed could not be built.
    #[error("{0}")]
    Feed(#[from] shardcast_proto::feed::BadSymbolCount),
}

/// One stream's results.
#[derive(Clone, Debug, Serialize)]
pub struct StreamReport {
    /// Stream id.
    pub stream_id: usize,
    /// Bound endpoint (resolved, e.g. the OS-chosen port).
    pub endpoint: String,
    /// Data messages sent.
    pub sent: u64,
    /// ZeroMQ frames sent (batches count once).
    pub frames: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// Last data sequence.
    pub last_seq: u64,
    /// Checksum of every data record sent (also in end-of-stream).
    pub checksum: u64,
    /// End-of-stream frames sent (it is repeated until subscribers leave).
    pub eos_sent: u64,
    /// Every counted subscriber unsubscribed after end-of-stream, i.e. had
    /// it, within --eos-timeout-ms (true as well when none was connected;
    /// always false on pgm/epgm streams, whose receivers cannot answer).
    pub eos_acknowledged: bool,
    /// Shardcast subscribers (control-topic subscriptions) still subscribed
    /// when the stream finished: 0 once every one had end-of-stream.
    pub subscribers: i64,
    /// Frames libzmq refused for a reason other than the HWM (which it
    /// never reports): out of memory, a terminated context. 0 normally.
    pub send_errors: u64,
}

/// The publisher's report (`--report-json`). Keys are a contract.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Always "shardcast-pub".
    pub role: &'static str,
    /// Crate version.
    pub version: &'static str,
    /// Why it ended: count, duration, signal.
    pub end_reason: &'static str,
    /// Publisher id.
    pub publisher_id: u32,
    /// Session id.
    pub session: u64,
    /// Data messages sent, all streams.
    pub sent: u64,
    /// Seconds from the first due time to the last send.
    pub elapsed_s: f64,
    /// `sent / elapsed_s`.
    pub msgs_per_sec: f64,
    /// Target rate (0: flat out).
    pub rate: u64,
    /// How late messages were sent relative to their intended time, ns
    /// (all zero when flat out: there is no schedule to fall behind).
    pub behind_schedule_ns: LatencySummary,
    /// `behind_schedule_ns.max` in ms.
    pub max_behind_ms: f64,
    /// Per stream.
    pub streams: Vec<StreamReport>,
    /// How the streams were protected, and whom the ZAP handler let in.
    pub security: Security,
}

/// The report's `security` section.
#[derive(Clone, Debug, Serialize)]
pub struct Security {
    /// "curve" (encrypted, subscribers authenticated) or "plain".
    pub mechanism: &'static str,
    /// Our CURVE public key, for subscribers' --curve-server-key.
    pub server_public_key: Option<PublicKey>,
    /// Keys in --curve-allow.
    pub allowed_keys: usize,
    /// Handshakes allowed and refused, and the refused peers (CURVE only).
    #[serde(flatten)]
    pub zap: Option<ZapReport>,
}

struct Start {
    ready: AtomicUsize,
    t0: OnceLock<u64>,
    /// Set when a stream gave up waiting for subscribers: no stream sends.
    abort: AtomicBool,
}

struct StreamResult {
    report: StreamReport,
    behind: Histogram<u64>,
    first_due_ns: u64,
    last_send_ns: u64,
    waited_out: Option<(u32, u32)>,
    end_reason: &'static str,
}

/// Run the publisher to its end.
pub fn run(cfg: &Config, signal: &StopSignal) -> Result<Report, RunError> {
    let n = cfg.streams.len();
    if let Some(w) = cpu::thread_budget_warning(2 * n, &format!("{n} streams + {n} I/O")) {
        eprintln!("shardcast-pub: {w}");
    }
    // Build the feed once up front, so a bad --symbols fails before binding.
    let feed = Feed::new(cfg.seed, cfg.symbols)?;
    let stream_of: Arc<Vec<u16>> = Arc::new(
        feed.symbols()
            .iter()
            .map(|s| stream_for(s, n) as u16)
            .collect(),
    );
    let session = cfg.session.unwrap_or_else(now_ns);

    // Each stream: its own context with one I/O thread, pinned on its own.
    let mut owns = Vec::with_capacity(n);
    for plan in &cfg.streams {
        let own = socket_with_own_io_thread(zmq::XPUB, &plan.index.to_string(), plan.io_cpu)?;
        if let Some(c) = plan.io_cpu {
            for (name, _) in &own.threads {
                eprintln!("shardcast-pub: {name} pinned to CPU {c}");
            }
        }
        owns.push(own);
    }
    // The ZAP handler is bound in every stream's context before any stream
    // binds: libzmq lets every peer in while no handler is there.
    let zap = match &cfg.curve {
        Some(c) => {
            let ctxs: Vec<&zmq::Context> = owns.iter().map(|o| &o.ctx).collect();
            Some(Zap::start(&ctxs, c.allow.clone(), "shardcast-pub")?)
        }
        None => None,
    };
    let mut sockets = Vec::with_capacity(n);
    let mut ctxs = Vec::with_capacity(n);
    for (plan, own) in cfg.streams.iter().zip(owns) {
        let (ctx, s) = (own.ctx, own.socket);
        ctxs.push(ctx);
        s.set_sndhwm(cfg.sndhwm)
            .map_err(zerr("setting ZMQ_SNDHWM (--sndhwm)"))?;
        if cfg.sndbuf > 0 {
            s.set_sndbuf(cfg.sndbuf)
                .map_err(zerr("setting ZMQ_SNDBUF (--sndbuf)"))?;
        }
        s.set_linger(0).map_err(zerr("setting ZMQ_LINGER"))?;
        s.set_rcvtimeo(SUB_POLL_MS)
            .map_err(zerr("setting ZMQ_RCVTIMEO"))?;
        let multicast = is_multicast(&plan.bind);
        if multicast {
            s.set_rate(cfg.pgm_rate)
                .map_err(zerr("setting ZMQ_RATE (--pgm-rate)"))?;
            s.set_recovery_ivl(cfg.pgm_recovery_ms)
                .map_err(zerr("setting ZMQ_RECOVERY_IVL (--pgm-recovery-ms)"))?;
            s.set_multicast_hops(cfg.multicast_hops)
                .map_err(zerr("setting ZMQ_MULTICAST_HOPS (--multicast-hops)"))?;
        }
        if let Some(c) = &cfg.curve {
            curve::make_server(&s, &c.keys).map_err(zerr(
                "making the stream a CURVE server (--curve-secret-key)",
            ))?;
        }
        let mut s = s;
        zmqx::set_int_option(&mut s, zmqx::XPUB_VERBOSER, 1)
            .map_err(zerr("setting ZMQ_XPUB_VERBOSER"))?;
        s.bind(&plan.bind).map_err(zerr(format!(
            "binding stream {} to {} (check --bind: address in use, or not local?)",
            plan.index, plan.bind
        )))?;
        let endpoint = s
            .get_last_endpoint()
            .ok()
            .and_then(|e| e.ok())
            .unwrap_or_else(|| plan.bind.clone());
        eprintln!(
            "shardcast-pub: stream {} bound {} (cpu {}, io cpu {})",
            plan.index,
            endpoint,
            plan.cpu.map_or("any".into(), |c| c.to_string()),
            plan.io_cpu.map_or("any".into(), |c| c.to_string())
        );
        // Say how the stream is protected, every time: a plain-text stream
        // on an untrusted network should never be a surprise.
        match &cfg.curve {
            Some(c) => eprintln!(
                "shardcast-pub: stream {}: CURVE: encrypted; subscribers authenticated against {} key(s) \
                 in --curve-allow; our public key {}",
                plan.index,
                c.allow.len(),
                c.keys.public.z85()
            ),
            None if multicast => eprintln!(
                "shardcast-pub: stream {}: PLAIN TEXT multicast (PGM): anyone on the network segment can \
                 read it; ZMQ_RATE {} kbit/s, recovery {} ms",
                plan.index, cfg.pgm_rate, cfg.pgm_recovery_ms
            ),
            None => eprintln!(
                "shardcast-pub: stream {}: PLAIN TEXT: anyone who can reach {endpoint} can subscribe and \
                 read it (encrypt with --curve-secret-key and --curve-allow)",
                plan.index
            ),
        }
        sockets.push((s, endpoint));
    }
    let start = Arc::new(Start {
        ready: AtomicUsize::new(0),
        t0: OnceLock::new(),
        abort: AtomicBool::new(false),
    });
    let mut handles = Vec::with_capacity(n);
    for (plan, (sock, endpoint)) in cfg.streams.iter().zip(sockets) {
        let cfg = cfg.clone();
        let feed = feed.clone();
        let stream_of = Arc::clone(&stream_of);
        let start = Arc::clone(&start);
        let signal = signal.clone();
        let index = plan.index;
        let h = spawn_agent(format!("stream-{index}"), plan.cpu, move || {
            let mut stream = Stream {
                cfg: &cfg,
                index,
                session,
                sock,
                endpoint,
                signal: &signal,
                announced: false,
                send_errors: 0,
            };
            stream.run(feed, &stream_of, &start)
        })
        .map_err(ioerr("starting a stream thread"))?;
        handles.push(h);
    }
    let mut results = Vec::with_capacity(n);
    for (i, h) in handles.into_iter().enumerate() {
        results.push(h.join().map_err(|_| RunError::Panicked(i))?);
    }
    // Every stream socket closed with its thread (after end-of-stream and
    // linger); the ZAP handler closes its sockets before the contexts end.
    let zap_report = zap.map(Zap::finish);
    drop(ctxs);

    if let Some((i, r)) = results
        .iter()
        .enumerate()
        .find_map(|(i, r)| r.waited_out.map(|w| (i, w)))
    {
        return Err(RunError::WaitTimeout {
            stream: i,
            seen: r.0,
            wanted: r.1,
        });
    }
    let mut behind = stats::new_histogram();
    let mut first_due = u64::MAX;
    let mut last_send = 0;
    for r in &results {
        let _ = behind.add(&r.behind);
        if r.report.sent > 0 {
            first_due = first_due.min(r.first_due_ns);
            last_send = last_send.max(r.last_send_ns);
        }
    }
    let sent: u64 = results.iter().map(|r| r.report.sent).sum();
    let elapsed_s = if last_send > first_due {
        (last_send - first_due) as f64 / 1e9
    } else {
        0.0
    };
    let behind_summary = LatencySummary::of(&behind);
    // The first stream's reason stands for the run (they share one schedule;
    // a signal reaches all of them).
    let end_reason = results.first().map_or("count", |r| r.end_reason);
    Ok(Report {
        role: "shardcast-pub",
        version: env!("CARGO_PKG_VERSION"),
        end_reason,
        publisher_id: cfg.publisher_id,
        session,
        sent,
        elapsed_s,
        msgs_per_sec: if elapsed_s > 0.0 {
            sent as f64 / elapsed_s
        } else {
            0.0
        },
        rate: cfg.rate,
        behind_schedule_ns: behind_summary,
        max_behind_ms: behind_summary.max as f64 / 1e6,
        streams: results.into_iter().map(|r| r.report).collect(),
        security: Security {
            mechanism: if cfg.curve.is_some() {
                "curve"
            } else {
                "plain"
            },
            server_public_key: cfg.curve.as_ref().map(|c| c.keys.public),
            allowed_keys: cfg.curve.as_ref().map_or(0, |c| c.allow.len()),
            zap: zap_report,
        },
    })
}

impl Report {
    /// The human summary printed at the end.
    pub fn summary(&self) -> String {
        format!(
            "shardcast-pub: ended by {}; sent {} msgs on {} streams in {:.3} s = {:.0} msg/s (target {}); \
             behind schedule p99 {:.1} us, max {:.1} us",
            self.end_reason,
            self.sent,
            self.streams.len(),
            self.elapsed_s,
            self.msgs_per_sec,
            if self.rate == 0 {
                "flat out".to_string()
            } else {
                format!("{} msg/s", self.rate)
            },
            self.behind_schedule_ns.p99 as f64 / 1e3,
            self.behind_schedule_ns.max as f64 / 1e3,
        )
    }
}

/// One stream thread.
struct Stream<'a> {
    cfg: &'a Config,
    index: usize,
    session: u64,
    sock: zmq::Socket,
    endpoint: String,
    signal: &'a StopSignal,
    announced: bool,
    send_errors: u64,
}

/// A frame being filled.
struct Outbox {
    buf: Vec<u8>,
    len: usize,
    count: usize,
    batched: bool,
}

impl Stream<'_> {
    fn meta(&self, symbol: Symbol, seq: u64, send: u64, intended: u64) -> RecordMeta {
        RecordMeta {
            symbol,
            publisher_id: self.cfg.publisher_id,
            stream_id: self.index as u16,
            session: self.session,
            seq,
            send_ts_ns: send.wrapping_add_signed(self.cfg.clock_offset_ns),
            intended_ts_ns: intended.wrapping_add_signed(self.cfg.clock_offset_ns),
        }
    }

    /// Count subscriptions to the control topic: `1 0x00` subscribes, `0 0x00`
    /// unsubscribes (XPUB_VERBOSER reports both). Other topics are ignored.
    fn poll_subscriptions(&mut self, subs: &mut i64, flags: i32) {
        let mut m = Msg::new();
        while m.recv(&mut self.sock, flags).is_ok() {
            let b = m.bytes();
            if b.len() == 1 + CONTROL_TOPIC.len() && &b[1..] == CONTROL_TOPIC {
                match b[0] {
                    1 => *subs += 1,
                    0 => *subs -= 1,
                    _ => {}
                }
            }
            if flags == 0 {
                break;
            }
        }
    }

    fn send_frame(&mut self, out: &mut Outbox) -> bool {
        if out.count == 0 {
            return false;
        }
        if out.batched {
            // count <= MAX_BATCH fits the u16 count field.
            let _ = wire::encode_batch_header(&mut out.buf, out.count as u16);
        }
        // A PUB never blocks: at the HWM it drops for that subscriber, who
        // sees the gap in the sequence numbers; libzmq says nothing of it.
        // An error here is something else (out of memory, a closed context).
        let sent = Msg::from_slice(&out.buf[..out.len])
            .and_then(|mut msg| msg.send(&mut self.sock, zmq::DONTWAIT));
        if sent.is_err() {
            self.send_errors += 1;
        }
        if !self.announced {
            // Once per run; tests and operators use this line as the "data is
            // flowing" handshake.
            self.announced = true;
            eprintln!(
                "shardcast-pub: stream {}: first data message sent (seq 1)",
                self.index
            );
        }
        out.len = if out.batched {
            wire::BATCH_HEADER_LEN
        } else {
            0
        };
        out.count = 0;
        true
    }

    fn send_control(&mut self, payload: Payload, last_seq: u64, flags: i32) -> bool {
        let mut buf = [0u8; 128];
        let now = now_ns();
        let meta = self.meta(Symbol::CONTROL, last_seq, now, now);
        let Ok(n) = wire::encode(&mut buf, &meta, &payload, 0) else {
            return false;
        };
        Msg::from_slice(&buf[..n])
            .and_then(|mut m| m.send(&mut self.sock, flags))
            .is_ok()
    }

    /// Wait until `due`, heartbeating if the stream would otherwise stay
    /// silent longer than --heartbeat-ms. Returns false on a signal.
    fn idle_until(
        &mut self,
        due: u64,
        last_frame_ns: &mut u64,
        seq: u64,
        heartbeats: &mut u64,
    ) -> bool {
        const MAX_NAP_NS: u64 = 10_000_000; // look at signals at least every 10 ms
        let hb = self.cfg.heartbeat.as_nanos() as u64;
        loop {
            let now = now_ns();
            if now >= due {
                return true;
            }
            if self.signal.raised() {
                return false;
            }
            let hb_at = last_frame_ns.saturating_add(hb);
            if hb_at <= now {
                if self.send_control(Payload::Heartbeat, seq, zmq::DONTWAIT) {
                    *heartbeats += 1;
                }
                *last_frame_ns = now;
                continue;
            }
            let until = due.min(hb_at).min(now + MAX_NAP_NS);
            match self.cfg.pace {
                Pace::Spin => std::hint::spin_loop(),
                Pace::Sleep => std::thread::sleep(Duration::from_nanos(until - now)),
            }
        }
    }

    fn run(&mut self, mut feed: Feed, stream_of: &[u16], start: &Start) -> StreamResult {
        let cfg = self.cfg;
        let me = self.index as u16;
        if cfg.pace == Pace::Sleep {
            // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer
            // slack; 1 ns makes sleeps wake on time instead of up to 50 us late.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
        }
        let mut res = StreamResult {
            report: StreamReport {
                stream_id: self.index,
                endpoint: self.endpoint.clone(),
                sent: 0,
                frames: 0,
                heartbeats: 0,
                last_seq: 0,
                checksum: 0,
                eos_sent: 0,
                eos_acknowledged: false,
                subscribers: 0,
                send_errors: 0,
            },
            behind: stats::new_histogram(),
            first_due_ns: 0,
            last_send_ns: 0,
            waited_out: None,
            end_reason: "signal",
        };
        let mut subs = 0i64;

        // Slow joiner: wait for subscriptions, never sleep it away.
        let wait_started = Instant::now();
        while subs < i64::from(cfg.wait_subscribers) && !self.signal.raised() {
            if cfg
                .wait_timeout
                .is_some_and(|t| wait_started.elapsed() >= t)
            {
                res.waited_out = Some((subs.max(0) as u32, cfg.wait_subscribers));
                start.abort.store(true, Ordering::Release);
                break;
            }
            if start.abort.load(Ordering::Acquire) {
                break;
            }
            self.poll_subscriptions(&mut subs, 0);
        }
        if cfg.wait_subscribers > 0 && res.waited_out.is_none() && !self.signal.raised() {
            eprintln!(
                "shardcast-pub: stream {}: {} subscriber(s) present",
                self.index, subs
            );
        }
        // All streams start together, at one t0.
        start.ready.fetch_add(1, Ordering::AcqRel);
        while start.ready.load(Ordering::Acquire) < cfg.streams.len()
            && !self.signal.raised()
            && !start.abort.load(Ordering::Acquire)
        {
            std::thread::sleep(Duration::from_micros(100));
        }
        let t0 = *start.t0.get_or_init(now_ns);
        res.first_due_ns = t0;
        let deadline = cfg.duration.map(|d| t0.saturating_add(d.as_nanos() as u64));

        let mut out = Outbox {
            buf: vec![0u8; wire::BATCH_HEADER_LEN + cfg.batch * cfg.size],
            len: 0,
            count: 0,
            batched: cfg.batch > 1,
        };
        if out.batched {
            out.len = wire::BATCH_HEADER_LEN;
        }
        let mut seq = 0u64;
        let mut checksum = StreamChecksum::default();
        let mut last_frame_ns = t0;
        let mut i = 0u64;
        let aborted = start.abort.load(Ordering::Acquire);
        loop {
            if aborted {
                res.end_reason = "wait-timeout";
                break;
            }
            if cfg.count.is_some_and(|c| i >= c) {
                res.end_reason = "count";
                break;
            }
            if i % HOUSEKEEPING_EVERY == 0 {
                if self.signal.raised() {
                    res.end_reason = "signal";
                    break;
                }
                let past = match cfg.rate {
                    0 => now_ns(),
                    _ => t0 + cfg.due_offset_ns(i),
                };
                if deadline.is_some_and(|d| past >= d) {
                    res.end_reason = "duration";
                    break;
                }
                self.poll_subscriptions(&mut subs, zmq::DONTWAIT);
            }
            let ev = feed.next_event();
            i += 1;
            if stream_of[ev.symbol as usize] != me {
                // Another stream's event: it only advances the shared feed.
                continue;
            }
            // The schedule is only computed for this stream's own events.
            let due = t0 + cfg.due_offset_ns(i - 1);
            if cfg.rate > 0 && deadline.is_some_and(|d| due >= d) {
                res.end_reason = "duration";
                break;
            }
            if cfg.rate > 0 {
                let now = now_ns();
                if now < due {
                    // The next message is not due: what is packed goes now,
                    // so batching never adds waiting.
                    if self.send_frame(&mut out) {
                        res.report.frames += 1;
                        last_frame_ns = now;
                    }
                    if !self.idle_until(due, &mut last_frame_ns, seq, &mut res.report.heartbeats) {
                        res.end_reason = "signal";
                        break;
                    }
                }
            }
            let send = now_ns();
            let intended = if cfg.rate > 0 { due } else { send };
            let meta = self.meta(feed.symbols()[ev.symbol as usize], seq + 1, send, intended);
            let at = out.len;
            // Cannot fail: the buffer holds batch x size bytes and size is at
            // least every record's minimum (checked by --size's range).
            let Ok(n) = wire::encode(&mut out.buf[at..], &meta, &ev.payload, cfg.size) else {
                debug_assert!(false, "record does not fit the outbox");
                continue;
            };
            seq += 1;
            checksum.add(wire::digest(&out.buf[at..at + n]));
            out.len += n;
            out.count += 1;
            res.report.sent += 1;
            if cfg.rate > 0 {
                stats::record(&mut res.behind, send.saturating_sub(due));
            }
            res.last_send_ns = send;
            if out.count >= cfg.batch && self.send_frame(&mut out) {
                res.report.frames += 1;
                last_frame_ns = send;
            }
        }
        if self.send_frame(&mut out) {
            res.report.frames += 1;
        }

        // End phase. End-of-stream is repeated every heartbeat interval until
        // every counted subscriber has unsubscribed (a shardcast subscriber
        // leaves once it has end-of-stream from all its streams), or until
        // --eos-timeout-ms. Sending it once is not enough: a subscriber that
        // is behind has its pipe at the HWM, and libzmq then takes that pipe
        // out of the eligible set until the reader drains it, so a single
        // end-of-stream would be dropped for exactly the subscriber that
        // needs it most. ZMQ_XPUB_NODROP does not help: its HWM check only
        // looks at eligible pipes.
        let eos = Payload::EndOfStream {
            last_seq: seq,
            checksum: checksum.0,
        };
        // Once per stream, outside the send loop: operators see when data
        // stopped and the end phase began, and tests use it as the handshake
        // for "the publisher is in its end phase".
        eprintln!(
            "shardcast-pub: stream {}: end phase ({}): end-of-stream (last seq {seq}) repeats until every subscriber has left, at most {} ms",
            self.index,
            res.end_reason,
            cfg.eos_timeout.as_millis()
        );
        let multicast = is_multicast(&cfg.streams[self.index].bind);
        let ended_at = Instant::now();
        let poll_ms = cfg
            .heartbeat
            .min(cfg.eos_timeout)
            .as_millis()
            .clamp(1, i32::MAX as u128) as i32;
        let _ = self.sock.set_rcvtimeo(poll_ms);
        let deadline = ended_at + cfg.eos_timeout;
        loop {
            if self.send_control(eos, seq, zmq::DONTWAIT) {
                res.report.eos_sent += 1;
            }
            // Count from what the XPUB has to say now, not from the last
            // housekeeping round: a subscriber that joined since must get it.
            self.poll_subscriptions(&mut subs, zmq::DONTWAIT);
            // Multicast receivers send nothing back: repeat end-of-stream
            // for the whole --eos-timeout-ms and claim no acknowledgement.
            if subs <= 0 && !multicast {
                res.report.eos_acknowledged = true;
                break;
            }
            if ended_at.elapsed() >= cfg.eos_timeout {
                break;
            }
            let until = (Instant::now() + cfg.heartbeat).min(deadline);
            while (subs > 0 || multicast) && Instant::now() < until {
                self.poll_subscriptions(&mut subs, 0);
            }
        }
        if multicast {
            eprintln!(
                "shardcast-pub: stream {}: multicast end-of-stream repeated {} times over {} ms; PGM receivers \
                 do not acknowledge it",
                self.index,
                res.report.eos_sent,
                cfg.eos_timeout.as_millis()
            );
        } else if !res.report.eos_acknowledged && res.waited_out.is_none() {
            eprintln!(
                "shardcast-pub: stream {}: {} subscriber(s) still connected {} ms after end-of-stream; they may not have received it (see --eos-timeout-ms)",
                self.index,
                subs,
                cfg.eos_timeout.as_millis()
            );
        }
        // A short linger for frames still queued to subscribers we do not
        // count (raw SUB sockets).
        let _ = self
            .sock
            .set_linger(cfg.eos_timeout.as_millis().min(1000) as i32);
        res.report.last_seq = seq;
        res.report.checksum = checksum.0;
        res.report.subscribers = subs;
        res.report.send_errors = self.send_errors;
        res
    }
}
