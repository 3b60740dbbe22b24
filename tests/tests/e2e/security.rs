//! Encrypted and authenticated streams (CURVE with a ZAP allowlist), built
//! against the system libzmq; and what the default build says about them.

use crate::support::*;
use std::path::Path;

/// `shardcast-keygen --dir DIR NAMES...`; returns each NAME's public key.
fn keygen(bins: &SystemBins, dir: &Path, names: &[&str]) -> Vec<String> {
    let mut args = vec!["--dir", dir.to_str().unwrap()];
    args.extend_from_slice(names);
    let (st, err, out) = run(&bins.keygen, &args);
    assert!(st.success(), "keygen: {err}");
    names
        .iter()
        .map(|n| {
            let line = out
                .lines()
                .find(|l| l.starts_with(&format!("{n}: public key ")))
                .unwrap_or_else(|| panic!("keygen printed {n}'s key: {out}"));
            line.split_whitespace().nth(3).unwrap().to_string()
        })
        .collect()
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn curve_gives_an_allowed_subscriber_every_message_and_an_unknown_key_nothing() {
    let Some(bins) = system_bins_or_skip("curve") else {
        return;
    };
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path();
    let public = keygen(bins, keys, &["pub", "good", "bad"]);
    let (pub_json, good_json, bad_json, plain_json) = (
        keys.join("pub.json"),
        keys.join("good.json"),
        keys.join("bad.json"),
        keys.join("plain.json"),
    );
    let allow = keys.join("allow.txt");
    std::fs::write(
        &allow,
        format!("# the one subscriber let in\n{} good\n", public[1]),
    )
    .unwrap();
    let count = 5000u64;
    let publ = start_pub_bin(
        &bins.publ,
        &[
            "tcp://127.0.0.1:*".to_string(),
            "tcp://127.0.0.1:*".to_string(),
        ],
        &[
            "--rate",
            "10000",
            "--count",
            &count.to_string(),
            // Only the allowed subscriber ever subscribes: the refused ones
            // never get past the handshake, so this waits for it alone.
            "--wait-subscribers",
            "1",
            "--curve-secret-key",
            &path_str(&keys.join("pub.key")),
            "--curve-allow",
            &path_str(&allow),
            "--report-json",
            &path_str(&pub_json),
        ],
    );
    publ.proc.wait_line("stream 1: CURVE: encrypted");
    let sub_flags = |json: &Path| {
        vec![
            "--max-lag-ms".to_string(),
            "60000".to_string(),
            "--report-json".to_string(),
            path_str(json),
        ]
    };
    let curve_flags = |name: &str| {
        vec![
            "--curve-key".to_string(),
            path_str(&keys.join(format!("{name}.key"))),
            "--curve-server-key".to_string(),
            path_str(&keys.join("pub.pub")),
        ]
    };

    // An unknown key: refused on both streams, and it ends by itself (no
    // retry from libzmq) with nothing received.
    let mut bad_args = sub_flags(&bad_json);
    bad_args.extend(curve_flags("bad"));
    let bad = start_sub_bin(&bins.sub, &publ.endpoints, &as_strs(&bad_args));
    let (st, bad_err, _) = bad.wait();
    assert_eq!(st.code(), Some(1), "{bad_err}");
    assert!(bad_err.contains("refused our CURVE key"), "{bad_err}");
    let b = read_json(&bad_json);
    assert_eq!(u(&b, "received"), 0, "an unknown key receives nothing");
    for link in b["links"].as_array().unwrap() {
        assert_eq!(u(link, "auth_refused"), 1, "{link}");
    }

    // A plain-text subscriber cannot even start the handshake.
    let plain_args = sub_flags(&plain_json);
    let plain = start_sub_bin(&bins.sub, &publ.endpoints, &as_strs(&plain_args));
    let (st, plain_err, _) = plain.wait();
    assert_eq!(st.code(), Some(1), "{plain_err}");
    assert!(plain_err.contains("PLAIN TEXT"), "{plain_err}");
    let p = read_json(&plain_json);
    assert_eq!(u(&p, "received"), 0, "plain text receives nothing");
    assert!(
        p["links"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| u(l, "handshake_failed") == 1),
        "{}",
        p["links"]
    );

    // The allowed key gets every message of both streams.
    let mut good_args = sub_flags(&good_json);
    good_args.extend(curve_flags("good"));
    let good = start_sub_bin(&bins.sub, &publ.endpoints, &as_strs(&good_args));
    let (st, good_err, _) = good.wait();
    assert!(st.success(), "{good_err}");
    assert!(good_err.contains("shard-0: CURVE: encrypted"), "{good_err}");
    let (pst, perr, _) = publ.proc.wait();
    assert!(pst.success(), "{perr}");
    let g = read_json(&good_json);
    assert_eq!(
        u(&g, "received"),
        count,
        "the allowed subscriber gets every message"
    );
    assert_eq!(u(&g, "lost"), 0);
    assert_eq!(g["streams_complete"], true, "{g}");

    // The publisher logged the refused subscriber with its address and key,
    // and reports it.
    let refusal = format!("refused subscriber at 127.0.0.1: CURVE key {}", public[2]);
    assert!(perr.contains(&refusal), "{perr}");
    let s = &read_json(&pub_json)["security"];
    assert_eq!(s["mechanism"], "curve");
    assert_eq!(s["server_public_key"], public[0].as_str());
    assert_eq!(u(s, "handshakes_allowed"), 2, "one per stream: {s}");
    assert_eq!(u(s, "handshakes_refused"), 2, "one per stream: {s}");
    let refused = s["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 2, "{s}");
    for r in refused {
        assert_eq!(r["address"], "127.0.0.1");
        assert_eq!(r["public_key"], public[2].as_str());
    }
    eprintln!(
        "curve: allowed subscriber received {} of {count}; unknown key received {}; plain text received {}; \
         publisher: {} handshakes allowed, {} refused",
        u(&g, "received"),
        u(&b, "received"),
        u(&p, "received"),
        u(s, "handshakes_allowed"),
        u(s, "handshakes_refused")
    );
}

#[test]
fn plain_text_says_so_and_curve_without_a_curve_libzmq_names_the_flag() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("p.json");
    let publ = start_pub(
        1,
        &[
            "--count",
            "10",
            "--rate",
            "1000",
            "--report-json",
            &path_str(&json),
        ],
    );
    let (st, err, _) = publ.proc.wait();
    assert!(st.success(), "{err}");
    assert!(
        err.contains("stream 0: PLAIN TEXT: anyone who can reach"),
        "{err}"
    );
    assert_eq!(read_json(&json)["security"]["mechanism"], "plain");

    // The default build's libzmq (crates.io) has no CURVE: the flag is named
    // and the remedy given, exit 2, before anything binds.
    let key = dir.path().join("k");
    std::fs::write(&key, "").unwrap();
    let (st, err, _) = run(
        pub_bin(),
        &[
            "--bind",
            "tcp://127.0.0.1:*",
            "--curve-secret-key",
            &path_str(&key),
            "--curve-allow",
            &path_str(&key),
        ],
    );
    let has_curve = !err.contains("built without CURVE");
    if has_curve {
        // A build with CURVE reads the (empty) key file instead.
        assert_eq!(st.code(), Some(2), "{err}");
        assert!(err.contains("--curve-secret-key"), "{err}");
    } else {
        assert_eq!(st.code(), Some(2), "{err}");
        assert!(
            err.contains("invalid value for --curve-secret-key"),
            "{err}"
        );
        assert!(err.contains(".cargo/system-libzmq.toml"), "{err}");
    }
    // Half a CURVE configuration is a usage error either way.
    let (st, err, _) = run(
        sub_bin(),
        &[
            "--connect",
            "tcp://127.0.0.1:1",
            "--curve-key",
            &path_str(&key),
        ],
    );
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.contains("--curve-server-key"), "{err}");
}

/// CURVE on both sides of a relay: the publisher lets in only the relay's
/// key, the relay only the allowed subscriber's; an unknown key at the
/// relay is refused and logged, the allowed one gets every message.
#[test]
fn curve_through_a_relay_lets_in_only_the_allowed_keys() {
    let Some(bins) = system_bins_or_skip("curve through a relay") else {
        return;
    };
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path();
    let public = keygen(bins, keys, &["pub", "relay", "good", "bad"]);
    let (allow_pub, allow_relay) = (keys.join("allow-pub.txt"), keys.join("allow-relay.txt"));
    std::fs::write(&allow_pub, format!("{} relay\n", public[1])).unwrap();
    std::fs::write(&allow_relay, format!("{} good\n", public[2])).unwrap();
    let key = |n: &str| path_str(&keys.join(format!("{n}.key")));
    let (relay_json, good_json, bad_json) = (
        keys.join("relay.json"),
        keys.join("good.json"),
        keys.join("bad.json"),
    );
    let count = 5000u64;
    let publ = start_pub_bin(
        &bins.publ,
        &["tcp://127.0.0.1:*".to_string()],
        &[
            "--rate",
            "10000",
            "--count",
            &count.to_string(),
            "--wait-subscribers",
            "1",
            "--curve-secret-key",
            &key("pub"),
            "--curve-allow",
            &path_str(&allow_pub),
        ],
    );
    let relay_args: Vec<String> = [
        "--connect",
        &publ.endpoints[0],
        "--bind",
        "tcp://127.0.0.1:*",
        "--curve-key",
        &key("relay"),
        "--curve-server-key",
        &path_str(&keys.join("pub.pub")),
        "--curve-secret-key",
        &key("relay"),
        "--curve-allow",
        &path_str(&allow_relay),
        "--report-json",
        &path_str(&relay_json),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let relay = Proc::spawn("shardcast-relay", &bins.relay, &relay_args);
    let down = relay_endpoint(&relay, 0);
    relay.wait_line("upstream CURVE: encrypted");
    let sub_args = |name: &str, json: &Path| -> Vec<String> {
        vec![
            "--max-lag-ms".into(),
            "60000".into(),
            "--curve-key".into(),
            key(name),
            "--curve-server-key".into(),
            path_str(&keys.join("relay.pub")),
            "--report-json".into(),
            path_str(json),
        ]
    };
    let bad = start_sub_bin(
        &bins.sub,
        std::slice::from_ref(&down),
        &as_strs(&sub_args("bad", &bad_json)),
    );
    let (st, bad_err, _) = bad.wait();
    assert_eq!(st.code(), Some(1), "{bad_err}");
    assert!(bad_err.contains("refused our CURVE key"), "{bad_err}");
    let good = start_sub_bin(&bins.sub, &[down], &as_strs(&sub_args("good", &good_json)));
    let (st, good_err, _) = good.wait();
    assert!(st.success(), "{good_err}");
    let (st, perr, _) = publ.proc.wait();
    assert!(st.success(), "{perr}");
    let (st, rerr, _) = relay.wait();
    assert!(st.success(), "{rerr}");
    let g = read_json(&good_json);
    assert_eq!(u(&g, "received"), count, "{g}");
    assert_eq!(g["streams_complete"], true, "{g}");
    assert_eq!(u(&read_json(&bad_json), "received"), 0);
    let refusal = format!("refused subscriber at 127.0.0.1: CURVE key {}", public[3]);
    assert!(rerr.contains(&refusal), "{rerr}");
    let s = &read_json(&relay_json)["security"];
    assert_eq!(u(s, "handshakes_allowed"), 1, "{s}");
    assert_eq!(u(s, "handshakes_refused"), 1, "{s}");
    assert_eq!(s["refused"][0]["public_key"], public[3].as_str(), "{s}");
}
