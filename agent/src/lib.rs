//! shardcast's runtime plumbing, shared by the publisher, subscriber and
//! workers: everything that touches the OS but is not a role's own logic.
//!
//! * [`clock`]: the one clock every timestamp comes from.
//! * [`curve`]: CURVE key files, the allowlist and the ZAP handler.
//! * [`cpu`]: CPU lists, checking them against this machine, pinning agents
//!   and libzmq's I/O threads.
//! * [`signals`]: SIGINT/SIGTERM as a flag the agents poll.
//! * [`zmqx`]: the few libzmq calls the `zmq` crate does not wrap.
//! * [`stats`]: latency summaries for reports.
//! * [`exit`]: the exit codes every binary shares.
//! * [`files`]: every output file: replaced atomically, never through a
//!   link; devices written through.
//! * [`hist`]: per-stage latency histograms, per thread, collected per second.
//! * [`launch`]: the steps every binary's `main` shares.
//! * [`idle`]: how an agent waits (block or spin) to receive and to send.
//! * [`lag`]: the Suicidal Snail's per-agent lag check and `--on-slow`.
//! * [`presence`]: who is subscribed, by name (`--id`, `--expect-subscribers`).
//! * [`prom`]: `--metrics-bind`: Prometheus metrics served off the hot path.
//! * [`watch`]: the board every agent and the monitor share: counters the
//!   hot threads publish, the one-shot croak switch, the stop flags.

pub mod clock;
pub mod cpu;
pub mod curve;
pub mod exit;
pub mod files;
pub mod hist;
pub mod idle;
pub mod lag;
pub mod launch;
pub mod presence;
pub mod prom;
pub mod signals;
pub mod stats;
pub mod watch;
pub mod zmqx;
