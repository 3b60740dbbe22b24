//! `shardcast-stat` (issue 15, "A live view") against a real pipeline: a
//! `shardcast-pub` sending steadily and a `shardcast-sub --metrics-bind`.
//! Its `--once` view and `--csv` lines show the stream's rate and latency;
//! its terminal view, run in a real terminal (a detached `tmux` session,
//! read with `tmux capture-pane`), shows the rate too; an endpoint nobody
//! listens on is shown as down, and when none answers it exits 1 naming
//! it.
//!
//! Without `tmux` the terminal test skips and says so, unless
//! `SHARDCAST_REQUIRE_TMUX=1` (CI).

use crate::support::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

/// GET /metrics (HTTP/1.0, the body), `None` if it did not answer 200.
fn get_metrics(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.contains(" 200 ").then(|| body.to_string())
}

/// The value of the sample line starting with `series` (name and labels
/// exactly as the exposition writes them).
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// A running pipeline with its subscriber's metrics endpoint.
struct Pipeline {
    publ: Publisher,
    sub: Proc,
    /// `127.0.0.1:PORT`.
    endpoint: String,
}

impl Pipeline {
    /// One stream at a steady 5,000 msg/s until the test stops it (or two
    /// minutes pass), and the subscriber's endpoint serving records and
    /// latency (waited for by scraping, with a deadline).
    fn start() -> Pipeline {
        let publ = start_pub(
            1,
            &[
                "--rate",
                "5000",
                "--duration",
                "120",
                "--wait-subscribers",
                "1",
            ],
        );
        let sub = start_sub(
            &publ.endpoints,
            &["--max-lag-ms", "30000", "--metrics-bind", "127.0.0.1:0"],
        );
        let line = sub.wait_line("metrics at http://");
        let endpoint = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        let addr: SocketAddr = endpoint.parse().expect("an address");
        poll_until("records and latency on the endpoint", || {
            get_metrics(addr).is_some_and(|b| {
                sample(&b, "shardcast_received_total{shard=\"0\"}").is_some_and(|v| v > 0.0)
                    && sample(&b, "shardcast_latency_seconds_count{stage=\"end_to_end\"}")
                        .is_some_and(|v| v > 0.0)
            })
        });
        Pipeline {
            publ,
            sub,
            endpoint,
        }
    }

    /// SIGTERM to the publisher: it ends the stream, the subscriber ends
    /// with it; both must exit 0.
    fn stop(self) {
        self.publ.proc.signal(libc::SIGTERM);
        let (pst, perr, _) = self.publ.proc.wait();
        assert!(pst.success(), "publisher failed: {pst:?}\n{perr}");
        let (st, err, _) = self.sub.wait();
        assert!(st.success(), "subscriber failed: {st:?}\n{err}");
    }
}

/// A port on 127.0.0.1 nobody listens on (bound by the OS, then closed).
fn dead_endpoint() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr.to_string()
}

/// The numbers of the stream row `shard=0` of a text view: rate/s,
/// messages, lost, ... (`-` as NaN).
fn stream_row(view: &str) -> Option<Vec<f64>> {
    view.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next()? == "shard=0").then(|| f.map(|x| x.parse().unwrap_or(f64::NAN)).collect())
    })
}

#[test]
fn once_and_csv_show_the_stream_s_rate_and_latency() {
    let _ = stat_bin(); // built before the pipeline runs
    let _g = serial();
    let p = Pipeline::start();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("stat.json");
    let dead = dead_endpoint();

    // --once: two scrapes 300 ms apart, one snapshot; a dead endpoint next
    // to a live one is shown as down and is no failure.
    let (st, err, out) = run(
        stat_bin(),
        &[
            "--once",
            "--interval-ms",
            "300",
            "--report-json",
            &path_str(&json),
            &p.endpoint,
            &dead,
        ],
    );
    assert!(st.success(), "shardcast-stat --once: {st:?}\n{err}\n{out}");
    let row = stream_row(&out).unwrap_or_else(|| panic!("no shard=0 row:\n{out}"));
    assert!(row[0] > 0.0, "rate/s not positive:\n{out}");
    assert!(row[1] > 0.0, "no messages:\n{out}");
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("latency stage=end_to_end") && l.contains("us")),
        "no end-to-end latency in:\n{out}"
    );
    assert!(out.contains(&format!("{dead}  DOWN")), "{out}");
    let r = read_json(&json);
    let procs = r["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 2);
    assert_eq!(procs[0]["role"], "shardcast-sub");
    let s0 = &procs[0]["streams"][0];
    assert_eq!(s0["stream"], "shard=0");
    assert!(s0["rate_per_s"].as_f64().unwrap() > 0.0, "{s0}");
    let p50 = s0["p50_s"].as_f64().unwrap();
    let p99 = s0["p99_s"].as_f64().unwrap();
    assert!(p50 > 0.0 && p99 >= p50, "{s0}");
    assert_eq!(procs[1]["up"], false);
    assert!(procs[1]["error"].as_str().is_some_and(|e| !e.is_empty()));

    // --csv --count 2: a header and one line per stream per refresh.
    let (st, err, out) = run(
        stat_bin(),
        &["--csv", "--count", "2", "--interval-ms", "300", &p.endpoint],
    );
    assert!(st.success(), "shardcast-stat --csv: {st:?}\n{err}\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name} in {}", lines[0]))
    };
    for line in &lines[1..] {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), header.len(), "{line}");
        assert_eq!(cells[col("endpoint")], p.endpoint);
        assert_eq!(cells[col("up")], "1");
        assert_eq!(cells[col("stream")], "shard=0");
        let num = |name: &str| -> f64 {
            cells[col(name)]
                .parse()
                .unwrap_or_else(|_| panic!("{name} is not a number in {line}"))
        };
        assert!(num("time_unix_s") > 0.0);
        assert!(num("rate_per_s") > 0.0, "{line}");
        assert!(num("messages") > 0.0, "{line}");
        assert!(num("lost") >= 0.0, "{line}");
        assert!(num("p50_s") > 0.0, "{line}");
        assert!(num("p99_s") >= num("p50_s"), "{line}");
        assert!(num("max_s") > 0.0, "{line}");
    }
    p.stop();
}

#[test]
fn an_endpoint_nobody_listens_on_exits_1_and_is_named() {
    let dead = dead_endpoint();
    let (st, err, out) = run(stat_bin(), &["--once", "--interval-ms", "50", &dead]);
    assert_eq!(st.code(), Some(1), "{st:?}\n{err}\n{out}");
    assert!(err.contains("no endpoint answered"), "{err}");
    assert!(err.contains(&dead), "{err}");
    assert!(out.contains(&format!("{dead}  DOWN")), "{out}");

    // A bad flag or endpoint: exit 2, naming it.
    let (st, err, _) = run(stat_bin(), &["--interval-ms", "0", &dead]);
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.contains("--interval-ms"), "{err}");
    let (st, err, _) = run(stat_bin(), &["--once", "no-port"]);
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.contains("ENDPOINT") && err.contains("no-port"), "{err}");
}

/// A tmux server of the test's own (its own socket), killed on drop.
struct Tmux(String);

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.0)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running tmux")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

#[test]
fn the_live_view_on_a_real_terminal_shows_the_rate() {
    let have_tmux = Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_tmux {
        let why = "no tmux (Debian: tmux)";
        assert!(
            std::env::var("SHARDCAST_REQUIRE_TMUX").as_deref() != Ok("1"),
            "SHARDCAST_REQUIRE_TMUX=1 but {why}"
        );
        eprintln!("SKIPPED the_live_view_on_a_real_terminal_shows_the_rate: {why}");
        return;
    }
    let bin = stat_bin();
    let _g = serial();
    let p = Pipeline::start();
    let tmux = Tmux(format!("shardcast-stat-test-{}", std::process::id()));
    let command = format!(
        "'{}' --interval-ms 300 {}",
        bin.display().to_string().replace('\'', "'\\''"),
        p.endpoint
    );
    let o = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "stat",
        "-x",
        "160",
        "-y",
        "50",
        &command,
    ]);
    assert!(
        o.status.success(),
        "tmux new-session: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut screen = String::new();
    let mut seen = false;
    let deadline = std::time::Instant::now() + LINE_TIMEOUT;
    while std::time::Instant::now() < deadline {
        let o = tmux.cmd(&["capture-pane", "-p", "-t", "stat"]);
        screen = String::from_utf8_lossy(&o.stdout).into_owned();
        if stream_row(&screen).is_some_and(|r| r[0] > 0.0) {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        seen,
        "no positive rate on the screen within {LINE_TIMEOUT:?}:\n{screen}"
    );
    // Redrawn in place: one header, no scrolled-off frames.
    assert_eq!(
        screen.matches("shardcast-stat  refresh").count(),
        1,
        "{screen}"
    );
    assert!(
        screen.contains(&format!("{}  shardcast-sub", p.endpoint)),
        "{screen}"
    );
    drop(tmux);
    p.stop();
}
