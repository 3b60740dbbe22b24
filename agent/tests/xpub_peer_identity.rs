//! What the publisher's subscriber count relies on in libzmq 4.3: with a ZAP
//! domain set, a NULL-mechanism handshake goes through the ZAP handler; the
//! User-Id the handler gives a connection comes back on every subscription
//! message XPUB hands up from it; and the unsubscriptions libzmq makes up
//! when a connection ends carry no User-Id.

use std::time::Duration;

#[test]
fn xpub_subscriptions_carry_the_zap_user_id_of_their_connection() {
    let ctx = zmq::Context::new();
    let zap = ctx.socket(zmq::REP).unwrap();
    zap.bind("inproc://zeromq.zap.01").unwrap();
    let handler = std::thread::spawn(move || {
        zap.set_rcvtimeo(5000).unwrap();
        for n in 1..=2 {
            let req = zap.recv_multipart(0).unwrap();
            assert_eq!(req[5], b"NULL");
            let reply = vec![
                b"1.0".to_vec(),
                req[1].clone(),
                b"200".to_vec(),
                b"OK".to_vec(),
                format!("conn-{n}").into_bytes(),
                Vec::new(),
            ];
            zap.send_multipart(reply, 0).unwrap();
        }
    });
    let mut xpub = ctx.socket(zmq::XPUB).unwrap();
    xpub.set_zap_domain("test").unwrap();
    shardcast_agent::zmqx::set_int_option(&mut xpub, shardcast_agent::zmqx::XPUB_VERBOSER, 1)
        .unwrap();
    xpub.set_rcvtimeo(5000).unwrap();
    xpub.bind("tcp://127.0.0.1:*").unwrap();
    let ep = xpub.get_last_endpoint().unwrap().unwrap();
    let cctx = zmq::Context::new();
    let a = cctx.socket(zmq::SUB).unwrap();
    a.connect(&ep).unwrap();
    a.set_subscribe(b"\0").unwrap();
    let mut m = zmq::Message::new();
    xpub.recv(&mut m, 0).unwrap();
    assert_eq!(&m[..], b"\x01\x00");
    let ua = m.gets("User-Id").map(str::to_string);
    let b = cctx.socket(zmq::SUB).unwrap();
    b.connect(&ep).unwrap();
    b.set_subscribe(b"\0").unwrap();
    xpub.recv(&mut m, 0).unwrap();
    let ub = m.gets("User-Id").map(str::to_string);
    eprintln!("a {ua:?} b {ub:?} peer {:?}", m.gets("Peer-Address"));
    assert!(ua.is_some() && ub.is_some() && ua != ub);
    // A's explicit unsubscribe carries A's id; B's disconnect, none.
    a.set_unsubscribe(b"\0").unwrap();
    xpub.recv(&mut m, 0).unwrap();
    assert_eq!(&m[..], b"\x00\x00");
    assert_eq!(m.gets("User-Id").map(str::to_string), ua);
    b.set_linger(0).unwrap();
    drop(b);
    xpub.recv(&mut m, 0).unwrap();
    assert_eq!(&m[..], b"\x00\x00");
    eprintln!("disconnect unsub user {:?}", m.gets("User-Id"));
    handler.join().unwrap();
    std::thread::sleep(Duration::from_millis(1));
}
