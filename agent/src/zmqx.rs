//! The few libzmq calls the `zmq` crate does not wrap, plus endpoint checks.

use crate::exit::UsageError;
use std::os::raw::c_int;

/// A socket on a context of its own with one I/O thread, that thread (and
/// the context's reaper) named `zmq-io-<label>` (`zmq-reaper-<label>`) and
/// pinned to `io_cpu` when given. This is how every stream gets its own
/// ZeroMQ I/O thread on its own core; see [`crate::cpu::ZmqThreads`].
/// Call it from one thread at a time: it finds the context's threads by
/// what appeared in this process while it ran.
pub fn socket_with_own_io_thread(
    kind: zmq::SocketType,
    label: &str,
    io_cpu: Option<usize>,
) -> Result<OwnIoSocket, crate::exit::SetupError> {
    let ctx = zmq::Context::new();
    ctx.set_io_threads(1)
        .map_err(crate::exit::zerr("setting ZMQ_IO_THREADS"))?;
    let watch = crate::cpu::ZmqThreads::before();
    let socket = ctx
        .socket(kind)
        .map_err(crate::exit::zerr(format!("creating the socket of {label}")))?;
    // Naming is a convenience; pinning was asked for and must not silently
    // fail.
    let threads = match watch.claim(label, io_cpu) {
        Ok(t) => t,
        Err(e) if io_cpu.is_some() => {
            return Err(crate::exit::SetupError::Io {
                context: format!("pinning the ZeroMQ I/O thread of {label} (--io-cpus)"),
                source: e,
            })
        }
        Err(_) => Vec::new(),
    };
    Ok(OwnIoSocket {
        ctx,
        socket,
        threads,
    })
}

/// What [`socket_with_own_io_thread`] made.
pub struct OwnIoSocket {
    /// The context; it must outlive the socket.
    pub ctx: zmq::Context,
    /// The socket.
    pub socket: zmq::Socket,
    /// The context's threads as `(name, tid)`.
    pub threads: Vec<(String, i32)>,
}

/// Start libzmq's socket monitor on `socket` for `events`, publishing at
/// `addr` (an inproc endpoint unique in `ctx`), and return the PAIR socket
/// that reads the events (two frames each: 2-byte event, 4-byte value;
/// then the endpoint). Started before the socket connects or binds, so no
/// event is missed.
pub fn monitor_pair(
    ctx: &zmq::Context,
    socket: &zmq::Socket,
    addr: &str,
    events: i32,
) -> Result<zmq::Socket, crate::exit::SetupError> {
    use crate::exit::zerr;
    socket
        .monitor(addr, events)
        .map_err(zerr("starting the socket monitor"))?;
    let pair = ctx
        .socket(zmq::PAIR)
        .map_err(zerr("creating the monitor socket"))?;
    pair.set_linger(0).map_err(zerr("monitor ZMQ_LINGER"))?;
    // libzmq's I/O thread sends monitor events with a blocking send: a
    // full pipe would stall the socket's I/O (libzmq issue 3575). Room for
    // 100K events (a few MiB) covers any gap between our reads.
    pair.set_rcvhwm(100_000)
        .map_err(zerr("monitor ZMQ_RCVHWM"))?;
    pair.connect(addr)
        .map_err(zerr("connecting the monitor socket"))?;
    Ok(pair)
}

/// Set an integer socket option the `zmq` crate has no setter for
/// (`ZMQ_XPUB_VERBOSER`).
pub fn set_int_option(socket: &mut zmq::Socket, option: u32, value: i32) -> Result<(), zmq::Error> {
    // SAFETY: the socket pointer is live for the borrow; the option value is
    // a c_int of the size passed.
    let rc = unsafe {
        zmq_sys::zmq_setsockopt(
            socket.as_mut_ptr(),
            option as c_int,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>(),
        )
    };
    check(rc)
}

/// `ZMQ_XPUB_VERBOSER`: pass every subscribe *and* unsubscribe to the XPUB
/// application, so it can count subscribers as they come and go.
pub const XPUB_VERBOSER: u32 = zmq_sys::ZMQ_XPUB_VERBOSER;

/// `ZMQ_XPUB_NODROP`: at a subscriber's HWM the send fails with `EAGAIN`
/// (or a blocking send waits) instead of dropping for that subscriber.
pub const XPUB_NODROP: u32 = zmq_sys::ZMQ_XPUB_NODROP;

/// A libzmq message owned by us: received into, forwarded, and shared
/// without copying its payload. The `zmq` crate's `Message` hides the raw
/// `zmq_msg_t`, which zero-copy fan-out needs.
pub struct Msg {
    raw: zmq_sys::zmq_msg_t,
}

// SAFETY: a zmq_msg_t is plain data plus a reference-counted content pointer
// whose count libzmq updates atomically; moving it across threads is what
// libzmq itself does between sockets.
unsafe impl Send for Msg {}

impl Default for Msg {
    fn default() -> Self {
        Msg::new()
    }
}

impl Msg {
    /// An empty message.
    pub fn new() -> Msg {
        // SAFETY: zmq_msg_init initialises the zeroed struct; it cannot fail.
        unsafe {
            let mut raw: zmq_sys::zmq_msg_t = std::mem::zeroed();
            zmq_sys::zmq_msg_init(&mut raw);
            Msg { raw }
        }
    }

    /// A message holding a copy of `data` (libzmq allocates it; fails only
    /// when that allocation does).
    pub fn from_slice(data: &[u8]) -> Result<Msg, zmq::Error> {
        // SAFETY: init_size allocates `len` bytes that we fill completely;
        // on failure the struct is re-initialised empty so Drop stays sound.
        unsafe {
            let mut raw: zmq_sys::zmq_msg_t = std::mem::zeroed();
            if zmq_sys::zmq_msg_init_size(&mut raw, data.len()) != 0 {
                let err = last_error();
                zmq_sys::zmq_msg_init(&mut raw);
                drop(Msg { raw });
                return Err(err);
            }
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                zmq_sys::zmq_msg_data(&mut raw).cast::<u8>(),
                data.len(),
            );
            Ok(Msg { raw })
        }
    }

    /// The payload.
    #[inline]
    pub fn bytes(&mut self) -> &[u8] {
        // SAFETY: data/size describe the message's live buffer, which stays
        // valid while `self` is borrowed.
        unsafe {
            let len = zmq_sys::zmq_msg_size(&self.raw);
            if len == 0 {
                return &[];
            }
            std::slice::from_raw_parts(zmq_sys::zmq_msg_data(&mut self.raw).cast::<u8>(), len)
        }
    }

    /// Payload length.
    #[inline]
    pub fn len(&self) -> usize {
        // SAFETY: reads the size of an initialised message.
        unsafe { zmq_sys::zmq_msg_size(&self.raw) }
    }

    /// Whether the payload is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether more parts of the same multipart message follow.
    #[inline]
    pub fn more(&self) -> bool {
        // SAFETY: reads a flag of an initialised message.
        unsafe { zmq_sys::zmq_msg_more(&self.raw) != 0 }
    }

    /// Receive the next frame into this message (its old content is released).
    #[inline]
    pub fn recv(&mut self, socket: &mut zmq::Socket, flags: i32) -> Result<(), zmq::Error> {
        // SAFETY: both pointers are live and exclusively borrowed.
        let rc =
            unsafe { zmq_sys::zmq_msg_recv(&mut self.raw, socket.as_mut_ptr(), flags as c_int) };
        if rc < 0 {
            Err(last_error())
        } else {
            Ok(())
        }
    }

    /// Send this message. On success it is left empty, ready to receive into;
    /// on failure (EAGAIN at the HWM, say) it is kept intact for a retry,
    /// which the `zmq` crate's `send` cannot do.
    #[inline]
    pub fn send(&mut self, socket: &mut zmq::Socket, flags: i32) -> Result<(), zmq::Error> {
        // SAFETY: both pointers are live and exclusively borrowed.
        let rc =
            unsafe { zmq_sys::zmq_msg_send(&mut self.raw, socket.as_mut_ptr(), flags as c_int) };
        if rc < 0 {
            Err(last_error())
        } else {
            Ok(())
        }
    }

    /// A second reference to this message's content: libzmq shares the
    /// buffer by reference count, so handing one received frame to several
    /// workers copies no payload.
    #[inline]
    pub fn share(&mut self) -> Msg {
        let mut copy = Msg::new();
        // SAFETY: both messages are initialised; zmq_msg_copy only fails
        // (EFAULT) on an uninitialised source, which `self` never is.
        let rc = unsafe { zmq_sys::zmq_msg_copy(&mut copy.raw, &mut self.raw) };
        debug_assert_eq!(rc, 0, "zmq_msg_copy of a live message");
        copy
    }
}

impl Drop for Msg {
    fn drop(&mut self) {
        // SAFETY: the message is initialised and closed exactly once.
        unsafe { zmq_sys::zmq_msg_close(&mut self.raw) };
    }
}

fn check(rc: c_int) -> Result<(), zmq::Error> {
    if rc == -1 {
        Err(last_error())
    } else {
        Ok(())
    }
}

fn last_error() -> zmq::Error {
    // SAFETY: zmq_errno only reads the thread's errno.
    zmq::Error::from_raw(unsafe { zmq_sys::zmq_errno() })
}

/// Whether `endpoint` is multicast (`pgm://`, `epgm://`): no connection per
/// peer, so no subscriptions upstream and no CURVE.
pub fn is_multicast(endpoint: &str) -> bool {
    endpoint.starts_with("pgm://") || endpoint.starts_with("epgm://")
}

/// clap value parser for endpoint flags (the error names the flag).
pub fn endpoint_arg(s: &str) -> Result<String, String> {
    check_endpoint("endpoint", s)
        .map(|()| s.to_string())
        .map_err(|e| e.message)
}

/// Check an endpoint names a transport libzmq knows and has an address; the
/// error names `flag`.
pub fn check_endpoint(flag: &'static str, endpoint: &str) -> Result<(), UsageError> {
    const TRANSPORTS: [&str; 7] = ["tcp", "ipc", "inproc", "pgm", "epgm", "norm", "ws"];
    let Some((transport, addr)) = endpoint.split_once("://") else {
        return Err(UsageError::new(
            flag,
            format!(
                "'{endpoint}' is not an endpoint; write TRANSPORT://ADDRESS, e.g. tcp://127.0.0.1:5556"
            ),
        ));
    };
    if !TRANSPORTS.contains(&transport) {
        return Err(UsageError::new(
            flag,
            format!(
                "unknown transport '{transport}' in '{endpoint}'; use one of {}",
                TRANSPORTS.join(", ")
            ),
        ));
    }
    if addr.trim().is_empty() {
        return Err(UsageError::new(
            flag,
            format!("'{endpoint}' has no address after '{transport}://'"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_socket_gets_its_own_named_pinned_io_thread() {
        let _g = crate::cpu::tests::threads_lock();
        let cpu = crate::cpu::available_cpus()[0];
        let s0 = socket_with_own_io_thread(zmq::SUB, "t0", Some(cpu)).unwrap();
        let s1 = socket_with_own_io_thread(zmq::SUB, "t1", None).unwrap();
        let (t0, t1) = (&s0.threads, &s1.threads);
        let names = |t: &[(String, i32)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(t0), vec!["zmq-reaper-t0", "zmq-io-t0"]);
        assert_eq!(names(t1), vec!["zmq-reaper-t1", "zmq-io-t1"]);
        let io0 = crate::cpu::threads_named(|n| n == "zmq-io-t0");
        assert_eq!(io0.len(), 1, "the name is visible in /proc");
        assert_eq!(io0[0].0, t0[1].1);
    }

    #[test]
    fn endpoints_are_checked() {
        assert!(check_endpoint("--bind", "tcp://127.0.0.1:5556").is_ok());
        for bad in ["", "tcp://", "127.0.0.1:5", "carrier://x"] {
            let e = check_endpoint("--bind", bad).unwrap_err();
            assert_eq!(e.flag, "--bind", "{bad}");
        }
    }

    #[test]
    fn a_failed_send_keeps_the_message_and_share_copies_no_payload() {
        let _g = crate::cpu::tests::threads_lock();
        let ctx = zmq::Context::new();
        let mut push = ctx.socket(zmq::PUSH).unwrap();
        push.set_sndhwm(1).unwrap();
        push.bind("inproc://sendkeep").unwrap();
        // No peer yet: a PUSH with no pipe cannot send.
        let mut msg = Msg::from_slice(&[7u8; 40]).unwrap();
        let err = msg.send(&mut push, zmq::DONTWAIT).unwrap_err();
        assert_eq!(err, zmq::Error::EAGAIN);
        assert_eq!(msg.len(), 40, "message survives a failed send");

        let mut pull = ctx.socket(zmq::PULL).unwrap();
        pull.connect("inproc://sendkeep").unwrap();
        let mut copy = msg.share();
        msg.send(&mut push, 0).unwrap();
        assert_eq!(msg.len(), 0, "a sent message is left empty");
        let mut got = Msg::new();
        got.recv(&mut pull, 0).unwrap();
        assert_eq!(got.bytes(), &[7u8; 40][..]);
        // The shared copy is still valid after the original was sent.
        assert_eq!(copy.bytes(), &[7u8; 40][..]);
        copy.send(&mut push, 0).unwrap();
        got.recv(&mut pull, 0).unwrap();
        assert_eq!(got.len(), 40);
    }

    #[test]
    fn verboser_can_be_set_and_bad_options_are_errors() {
        let _g = crate::cpu::tests::threads_lock();
        let ctx = zmq::Context::new();
        let mut xpub = ctx.socket(zmq::XPUB).unwrap();
        set_int_option(&mut xpub, XPUB_VERBOSER, 1).unwrap();
        assert!(set_int_option(&mut xpub, 99_999, 1).is_err());
    }
}
