//! Hostile peers of the publisher (issue 10, findings 1, 2 and 9): a raw
//! ZMTP client written here forges subscription events, floods
//! subscriptions, or opens connections and never finishes the handshake,
//! against the real `shardcast-pub`, while a real `shardcast-sub` must still
//! get its stream whole.

use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::FromRawFd;
use std::path::Path;

/// A TCP connection to `127.0.0.1:port` from `src` (another loopback
/// address, so the publisher sees another host).
fn tcp_from(src: [u8; 4], port: u16) -> TcpStream {
    // SAFETY: plain socket calls on a descriptor this function owns until
    // it hands it to TcpStream.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket");
        let sa = |ip: [u8; 4], port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(ip),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let from = sa(src, 0);
        assert_eq!(
            libc::bind(fd, (&from as *const libc::sockaddr_in).cast(), len),
            0
        );
        let to = sa([127, 0, 0, 1], port);
        assert_eq!(
            libc::connect(fd, (&to as *const libc::sockaddr_in).cast(), len),
            0
        );
        TcpStream::from_raw_fd(fd)
    }
}

/// A ZMTP 3.0 peer that claims to be a SUB and sends what it likes.
struct Zmtp(TcpStream);

impl Zmtp {
    /// Connect from `src`, greet (NULL mechanism), READY as a SUB, and
    /// read the publisher's READY (sent once its ZAP handler let us in).
    fn connect(src: [u8; 4], port: u16) -> Zmtp {
        let mut s = tcp_from(src, port);
        s.set_read_timeout(Some(LINE_TIMEOUT)).unwrap();
        let mut greeting = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 0];
        greeting.extend_from_slice(b"NULL");
        greeting.resize(64, 0);
        s.write_all(&greeting).unwrap();
        let mut theirs = [0u8; 64];
        s.read_exact(&mut theirs).unwrap();
        let mut ready = vec![0x04, 25, 5];
        ready.extend_from_slice(b"READY");
        ready.push(11);
        ready.extend_from_slice(b"Socket-Type");
        ready.extend_from_slice(&3u32.to_be_bytes());
        ready.extend_from_slice(b"SUB");
        s.write_all(&ready).unwrap();
        let mut head = [0u8; 2];
        s.read_exact(&mut head).unwrap();
        assert_eq!(head[0] & 0x04, 0x04, "a command from the publisher");
        let mut body = vec![0u8; head[1] as usize];
        s.read_exact(&mut body).unwrap();
        assert!(body.starts_with(b"\x05READY"), "READY, not {body:?}");
        Zmtp(s)
    }

    /// One single-frame message (a subscription event: 1 or 0, then the
    /// topic).
    fn send(&mut self, body: &[u8]) {
        let mut f = Vec::with_capacity(9 + body.len());
        if body.len() < 256 {
            f.extend_from_slice(&[0x00, body.len() as u8]);
        } else {
            f.push(0x02);
            f.extend_from_slice(&(body.len() as u64).to_be_bytes());
        }
        f.extend_from_slice(body);
        self.0.write_all(&f).unwrap();
    }
}

fn pub_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--rate", "10000", "--count", "2000", "--wait-timeout", "20"];
    v.extend_from_slice(extra);
    v
}

/// A publisher waiting for two subscribers, and a forger connected to it
/// from another host.
fn waiting_for_two(pub_json: &Path) -> (Publisher, Zmtp) {
    let publ = start_pub(
        1,
        &pub_args(&[
            "--wait-subscribers",
            "2",
            "--report-json",
            &path_str(pub_json),
        ]),
    );
    let forger = Zmtp::connect([127, 0, 0, 2], port_of(&publ.endpoints[0]));
    (publ, forger)
}

/// The real subscriber got every message of the stream.
fn assert_whole(sub: Proc, json: &Path) {
    let (st, err, _) = sub.wait();
    assert!(st.success(), "{st:?}\n{err}");
    let s = read_json(json);
    assert_eq!(u(&s, "received"), 2000, "{s}");
    assert_eq!(s["streams_complete"], true, "{s}");
}

/// Finding 1: one peer subscribing twice counted as two, so
/// `--wait-subscribers 2` started with one real subscriber missing.
#[test]
fn one_peer_subscribing_twice_is_one_subscriber() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let (sub_json, pub_json) = (dir.path().join("sub.json"), dir.path().join("pub.json"));
    let (publ, mut forger) = waiting_for_two(&pub_json);
    forger.send(b"\x01\x00");
    forger.send(b"\x01\x00");
    publ.proc.wait_line("1 of 2 subscribers so far");
    let sub = start_sub(&publ.endpoints, &["--report-json", &path_str(&sub_json)]);
    publ.proc.wait_line("2 subscriber(s) present");
    assert_whole(sub, &sub_json);
    drop(forger);
    let (st, err, _) = publ.proc.wait();
    assert!(st.success(), "{st:?}\n{err}");
}

/// Finding 1: unsubscribes for topics a peer never subscribed to were
/// counted, so a forger could cancel a real subscriber (here: the wait
/// timed out with one connected).
#[test]
fn forged_unsubscribes_cannot_cancel_a_real_subscriber() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let (sub_json, pub_json) = (dir.path().join("sub.json"), dir.path().join("pub.json"));
    let (publ, mut forger) = waiting_for_two(&pub_json);
    for _ in 0..3 {
        forger.send(b"\x00\x00");
    }
    // Then a real subscription of its own: the line says it was all taken.
    forger.send(b"\x01\x00");
    publ.proc.wait_line("of 2 subscribers so far");
    let sub = start_sub(&publ.endpoints, &["--report-json", &path_str(&sub_json)]);
    assert_whole(sub, &sub_json);
    drop(forger);
    let (st, err, _) = publ.proc.wait();
    assert!(st.success(), "the wait did not time out: {st:?}\n{err}");
    let p = read_json(&pub_json);
    assert_eq!(
        u(&p["streams"][0]["peers"], "unsubscribes_ignored"),
        3,
        "{p}"
    );
}

/// Peak resident memory of a process, bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM");
    kb * 1024
}

/// Finding 2: subscriptions were unbounded: 1 MiB prefixes and endless
/// counts grew the publisher by gigabytes on the stream's thread, and a
/// healthy subscriber croaked. Now a message over 1 KiB cuts its
/// peer off inside libzmq, and a connection past --max-subscriptions gets
/// its host cut off; the real subscriber (another host) is untouched.
#[test]
fn a_subscription_flood_is_cut_off_and_costs_the_publisher_little() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let (sub_json, pub_json) = (dir.path().join("sub.json"), dir.path().join("pub.json"));
    let publ = start_pub(
        1,
        &[
            "--rate",
            "10000",
            "--count",
            "2000",
            "--wait-subscribers",
            "2",
            "--wait-timeout",
            "20",
            "--eos-timeout-ms",
            "3000",
            "--max-subscriptions",
            "500",
            "--report-json",
            &path_str(&pub_json),
        ],
    );
    let port = port_of(&publ.endpoints[0]);
    // A subscriber that never leaves keeps the end phase open for the
    // memory reading below.
    let mut stayer = Zmtp::connect([127, 0, 0, 4], port);
    stayer.send(b"\x01\x00");
    publ.proc.wait_line("1 of 2 subscribers so far");
    // Sixteen 1 MiB prefixes (the finding: 48 of them took 1.6 GiB).
    let mut big = Zmtp::connect([127, 0, 0, 3], port);
    for i in 0..16u8 {
        let mut topic = vec![1u8; 1 << 20];
        topic[1] = i;
        // libzmq cuts the connection at the first: later writes may fail.
        let _ = big.0.write_all(&[0x02]).and_then(|_| {
            big.0.write_all(&(topic.len() as u64).to_be_bytes())?;
            big.0.write_all(&topic)
        });
    }
    // A thousand distinct small ones on one connection.
    let mut many = Zmtp::connect([127, 0, 0, 2], port);
    for i in 0..1000u32 {
        let mut t = vec![1u8];
        t.extend_from_slice(format!("F{i:07}").as_bytes());
        many.send(&t);
    }
    publ.proc
        .wait_line("cut off 1 connection(s) from 127.0.0.2");
    let sub = start_sub(&publ.endpoints, &["--report-json", &path_str(&sub_json)]);
    assert_whole(sub, &sub_json);
    publ.proc.wait_line("end phase");
    let rss = peak_rss(publ.proc.pid());
    eprintln!(
        "publisher peak RSS after 16 x 1 MiB and 1000 small subscriptions: {:.1} MiB",
        rss as f64 / (1 << 20) as f64
    );
    assert!(rss < 128 << 20, "publisher peak RSS {} MiB", rss >> 20);
    drop((stayer, big, many));
    let (st, err, _) = publ.proc.wait();
    assert!(st.success(), "{st:?}\n{err}");
    let peers = &read_json(&pub_json)["streams"][0]["peers"];
    assert!(u(peers, "subscriptions_refused") >= 1, "{peers}");
    assert_eq!(u(peers, "connections_cut"), 1, "{peers}");
}

/// Finding 9: connections that never finish the ZMTP handshake filled the
/// descriptor table (soft limit 1024 by default; 128 here), and the real
/// subscriber could not get in. Now the publisher raises its soft limit to
/// the hard one, refuses a host's connections past --max-peers-per-host at
/// once, and closes stalled handshakes after --handshake-timeout-ms.
#[test]
fn half_open_connections_cannot_lock_a_subscriber_out() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let (sub_json, pub_json) = (dir.path().join("sub.json"), dir.path().join("pub.json"));
    let mut args: Vec<String> = vec![
        "-c".into(),
        "ulimit -Sn 128 && exec \"$0\" \"$@\"".into(),
        pub_bin().display().to_string(),
        "--bind".into(),
        "tcp://127.0.0.1:*".into(),
    ];
    args.extend(
        pub_args(&[
            "--wait-subscribers",
            "1",
            "--max-peers-per-host",
            "150",
            "--handshake-timeout-ms",
            "3000",
            "--report-json",
            &path_str(&pub_json),
        ])
        .iter()
        .map(|s| s.to_string()),
    );
    let publ = Proc::spawn("shardcast-pub", Path::new("/bin/sh"), &args);
    let line = publ.wait_line("stream 0 bound ");
    let ep = line
        .split(" bound ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let port = port_of(&ep);
    // 200 connections from one host that never send a byte.
    let stalled: Vec<TcpStream> = (0..200).map(|_| tcp_from([127, 0, 0, 2], port)).collect();
    // The 151st from that host is cut off as it arrives.
    publ.wait_line("the last from 127.0.0.2: it already has 150 (--max-peers-per-host)");
    let sub = start_sub(&[ep], &["--report-json", &path_str(&sub_json)]);
    assert_whole(sub, &sub_json);
    drop(stalled);
    let (st, err, _) = publ.wait();
    assert!(st.success(), "{st:?}\n{err}");
    let peers = &read_json(&pub_json)["streams"][0]["peers"];
    // Every connection past the 150th that the publisher saw while the
    // others were open (the kernel hands them over over time: at least one).
    assert!(u(peers, "connections_refused") >= 1, "{peers}");
    assert!(u(peers, "connections") >= 151, "{peers}");
}
