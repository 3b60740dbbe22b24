//! How an agent waits: its idle strategy (Aeron's name for it), used for
//! every receive and every blocking send on its sockets.

use crate::zmqx::Msg;
use std::sync::atomic::{AtomicBool, Ordering};

/// How an agent waits for its next frame (`--idle`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Idle {
    /// Block in libzmq (with a receive timeout, to notice stop): frees the
    /// core between messages, costs a wake-up per idle period.
    Block,
    /// Busy-poll without blocking: lowest latency, burns one full core per
    /// agent.
    Spin,
}

/// What one receive attempt gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// A frame is in the message.
    Frame,
    /// Nothing yet (receive timeout, nothing to poll, or a signal
    /// interrupted the call): look at the stop flag and try again.
    Nothing,
    /// The socket failed with this error: stop.
    Failed(zmq::Error),
}

/// Why an agent's socket I/O ended early.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IoError {
    /// The agent was told to stop while the peer's queue was full. Not a
    /// fault: what was not sent is accounted as not forwarded. Remedy: none
    /// needed; a run that stops this way before end-of-stream says so.
    #[error("stopped while the receiving queue was full")]
    Stopped,
    /// libzmq failed a send or receive (out of memory, a terminated
    /// context). Remedy: look at the error; the agent stops and reports it.
    #[error("{0}")]
    Failed(zmq::Error),
}

impl IoError {
    /// The libzmq error, if the send failed rather than being stopped.
    pub fn zmq(self) -> Option<zmq::Error> {
        match self {
            IoError::Stopped => None,
            IoError::Failed(e) => Some(e),
        }
    }
}

impl From<zmq::Error> for IoError {
    fn from(e: zmq::Error) -> IoError {
        IoError::Failed(e)
    }
}

impl Idle {
    /// The flags a receive or send uses under this strategy.
    #[inline]
    pub fn flags(self) -> i32 {
        match self {
            Idle::Block => 0,
            Idle::Spin => zmq::DONTWAIT,
        }
    }

    /// Receive the next frame into `msg`, waiting the way this strategy
    /// waits (blocking up to the socket's receive timeout, or one poll).
    #[inline]
    pub fn recv(self, msg: &mut Msg, socket: &mut zmq::Socket) -> Received {
        match msg.recv(socket, self.flags()) {
            Ok(()) => Received::Frame,
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {
                if self == Idle::Spin {
                    std::hint::spin_loop();
                }
                Received::Nothing
            }
            Err(e) => Received::Failed(e),
        }
    }

    /// Send, waiting while the peer's queue is full (an inproc PUSH blocks
    /// at its HWM: that back-pressure is what makes a slow worker visible
    /// upstream as lag and, past the publisher's XPUB HWM, as gaps). Gives up only when
    /// `stop` is set. The socket needs a send timeout under [`Idle::Block`].
    #[inline]
    pub fn send(
        self,
        msg: &mut Msg,
        out: &mut zmq::Socket,
        flags: i32,
        stop: &AtomicBool,
    ) -> Result<(), IoError> {
        loop {
            match msg.send(out, flags | self.flags()) {
                Ok(()) => return Ok(()),
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {
                    if stop.load(Ordering::Relaxed) {
                        return Err(IoError::Stopped);
                    }
                }
                Err(e) => return Err(IoError::Failed(e)),
            }
        }
    }
}
