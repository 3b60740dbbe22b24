//! `--metrics-bind`: Prometheus metrics at `GET /metrics`, served by a
//! thread of its own (`metrics-http`).
//!
//! A scrape runs a role's [`Collector`], which reads what the monitor
//! already keeps: the board's relaxed atomics and a latency snapshot the
//! monitor refreshes once a second. It never touches a shard, worker or
//! stream thread, and nothing on a hot path knows it exists. The format is
//! OpenMetrics text (`prometheus-client`), which Prometheus scrapes as it
//! does its own text format; the HTTP side is `tiny_http`.
//!
//! Also the pieces every role's exporter shares: [`build_info`],
//! [`indexed`], [`one`], [`EndCell`] (the report's totals once the run has
//! ended) and [`linger`] (`--metrics-linger-ms`).

use crate::exit::SetupError;
use hdrhistogram::Histogram;
/// Re-exported for roles whose crates do not depend on
/// `prometheus-client` themselves (a collector for [`MetricsServer`]).
pub use prometheus_client::collector::Collector;
/// Re-exported with [`Collector`].
pub use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::encoding::EncodeMetric;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The content type of OpenMetrics text, which `prometheus-client` writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Histogram bucket bounds, seconds: 1 us to 10 s in 1-2.5-5 steps (and
/// `+Inf`, added when encoding).
pub const LATENCY_BUCKETS_S: [f64; 22] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
    5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram in Prometheus' shape, made from an HdrHistogram of
/// nanoseconds by [`PromHistogram::of`] (off the hot path: the monitor or
/// a scrape).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PromHistogram {
    /// Sum of all values, seconds (each value at the midpoint of its
    /// HdrHistogram bin: 3 significant digits).
    pub sum_s: f64,
    /// Number of values.
    pub count: u64,
    /// Values per bucket of [`LATENCY_BUCKETS_S`] (not cumulative), then
    /// those above the last bound.
    pub buckets: [u64; LATENCY_BUCKETS_S.len() + 1],
}

impl PromHistogram {
    /// Bucket `h` (values in ns). A bin is counted under the first bound at
    /// or above its lowest equivalent value: a value recorded exactly at a
    /// bound lands in that bound's bucket, and one just above a bound (by
    /// less than the bin's width, 0.1 %) may too.
    pub fn of(h: &Histogram<u64>) -> PromHistogram {
        let mut p = PromHistogram::default();
        for v in h.iter_recorded() {
            let n = v.count_at_value();
            let low_s = h.lowest_equivalent(v.value_iterated_to()) as f64 / 1e9;
            let i = LATENCY_BUCKETS_S
                .iter()
                .position(|b| low_s <= *b)
                .unwrap_or(LATENCY_BUCKETS_S.len());
            p.buckets[i] += n;
            p.count += n;
            p.sum_s += h.median_equivalent(v.value_iterated_to()) as f64 / 1e9 * n as f64;
        }
        p
    }
}

/// Writes one metric family after another into a scrape.
pub struct Families<'a, 'e> {
    enc: &'a mut DescriptorEncoder<'e>,
}

impl<'a, 'e> Families<'a, 'e> {
    /// Wrap a collector's encoder.
    pub fn new(enc: &'a mut DescriptorEncoder<'e>) -> Self {
        Families { enc }
    }

    /// A counter (`NAME_total`) with one sample per `(label value, value)`;
    /// `label` `None` for one unlabelled sample (pass one value).
    pub fn counter(
        &mut self,
        name: &str,
        help: &str,
        label: Option<&str>,
        values: impl IntoIterator<Item = (String, u64)>,
    ) -> fmt::Result {
        self.family(
            name,
            help,
            None,
            MetricType::Counter,
            label,
            values,
            |v, m| ConstCounter::new(v).encode(m),
        )
    }

    /// A gauge, as [`Families::counter`].
    pub fn gauge(
        &mut self,
        name: &str,
        help: &str,
        label: Option<&str>,
        values: impl IntoIterator<Item = (String, u64)>,
    ) -> fmt::Result {
        self.family(
            name,
            help,
            None,
            MetricType::Gauge,
            label,
            values,
            |v, m| ConstGauge::new(v as i64).encode(m),
        )
    }

    /// A gauge in seconds (`NAME_seconds`), one sample per `(label value,
    /// seconds)`.
    pub fn gauge_seconds(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (String, f64)>,
    ) -> fmt::Result {
        let mut m =
            self.enc
                .encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Gauge)?;
        for (value, v) in values {
            let labels = [(label, value)];
            ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A histogram in seconds (`NAME_seconds`), one per label value.
    pub fn histogram_seconds<'h>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (String, &'h PromHistogram)>,
    ) -> fmt::Result {
        let mut m =
            self.enc
                .encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
        for (value, h) in values {
            let labels = [(label, value)];
            let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_S
                .iter()
                .copied()
                .chain([f64::MAX])
                .zip(h.buckets)
                .collect();
            m.encode_family(&labels)?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    h.sum_s, h.count, &buckets, None,
                )?;
        }
        Ok(())
    }

    /// `NAME_info{LABELS} 1` (`shardcast_build_info{version}`).
    pub fn info(&mut self, name: &str, help: &str, labels: &[(&str, String)]) -> fmt::Result {
        let m = self
            .enc
            .encode_descriptor(name, help, None, MetricType::Info)?;
        prometheus_client::metrics::info::Info::new(labels.to_vec()).encode(m)
    }

    #[allow(clippy::too_many_arguments)]
    fn family(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        kind: MetricType,
        label: Option<&str>,
        values: impl IntoIterator<Item = (String, u64)>,
        one: impl Fn(u64, prometheus_client::encoding::MetricEncoder) -> fmt::Result,
    ) -> fmt::Result {
        let mut m = self.enc.encode_descriptor(name, help, unit, kind)?;
        match label {
            None => {
                if let Some((_, v)) = values.into_iter().next() {
                    one(v, m)?;
                }
            }
            Some(key) => {
                for (value, v) in values {
                    let labels = [(key, value)];
                    one(v, m.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

/// `shardcast_build_info{version, role}`: the running build (value 1).
pub fn build_info(f: &mut Families<'_, '_>, role: &str) -> fmt::Result {
    f.info(
        "shardcast_build",
        &format!("Build of this {role} (value 1)."),
        &[
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("role", role.to_string()),
        ],
    )
}

/// Label values `0`, `1`, ... for `values` in order (a shard, worker,
/// recorder or stream index).
pub fn indexed(values: impl IntoIterator<Item = u64>) -> Vec<(String, u64)> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i.to_string(), v))
        .collect()
}

/// One unlabelled sample, for [`Families::counter`] and
/// [`Families::gauge`] with no label.
pub fn one(v: u64) -> [(String, u64); 1] {
    [(String::new(), v)]
}

/// The report's totals once the run has ended (`None` before): set once by
/// the main thread, read by each scrape.
#[derive(Debug)]
pub struct EndCell<T>(Mutex<Option<T>>);

impl<T: Clone> EndCell<T> {
    /// Empty: the run goes on.
    pub fn new() -> Self {
        EndCell(Mutex::new(None))
    }

    /// The run has ended with these totals.
    pub fn set(&self, end: T) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(end);
    }

    /// The totals, if the run has ended.
    pub fn get(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl<T: Clone> Default for EndCell<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// `--metrics-linger-ms`: return after `linger`, or as soon as `stop`
/// (a signal) says so. An absurd linger (past what `Instant` can hold)
/// means until a signal.
pub fn linger(linger: Duration, stop: impl Fn() -> bool) {
    let until = Instant::now().checked_add(linger);
    while !stop() {
        if until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `/metrics` endpoint: a `tiny_http` server and its thread. Dropping
/// it stops the thread (and closes the socket).
pub struct MetricsServer {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl MetricsServer {
    /// Bind `bind` (`ADDR:PORT`; port 0: the OS picks one, see
    /// [`MetricsServer::addr`]) and serve `collector` at `GET /metrics`
    /// from a thread named `metrics-http`. Anything else gets 404.
    pub fn start(bind: SocketAddr, collector: Box<dyn Collector>) -> Result<Self, SetupError> {
        let server = tiny_http::Server::http(bind).map_err(|e| SetupError::Io {
            context: format!("binding --metrics-bind {bind}"),
            source: std::io::Error::other(e.to_string()),
        })?;
        let addr = server.server_addr().to_ip().ok_or_else(|| SetupError::Io {
            context: format!("binding --metrics-bind {bind}"),
            source: std::io::Error::other("not an IP socket"),
        })?;
        let server = Arc::new(server);
        let mut registry = Registry::default();
        registry.register_collector(collector);
        let s = Arc::clone(&server);
        let thread = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || serve(&s, &registry))
            .map_err(|e| SetupError::Io {
                context: "spawning metrics-http".into(),
                source: e,
            })?;
        Ok(MetricsServer {
            addr,
            server,
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port the OS chose for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The server thread: one request at a time (a scrape is small), at the
/// lowest priority: on a host whose cores the pipeline keeps busy, a
/// scrape waits for a free moment instead of preempting a shard or a
/// stream thread. (scripts/scrape-cost measures what a scrape still costs;
/// on our 2-core machines this alone did not bring it under 5%.)
fn serve(server: &tiny_http::Server, registry: &Registry) {
    crate::cpu::lower_thread_priority(19);
    for req in server.incoming_requests() {
        let path = req.url().split('?').next().unwrap_or("");
        let resp = if *req.method() == tiny_http::Method::Get && path == "/metrics" {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => tiny_http::Response::from_string(body).with_header(
                    tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE)
                        .expect("a valid header"),
                ),
                Err(_) => {
                    tiny_http::Response::from_string("encoding failed\n").with_status_code(500)
                }
            }
        } else {
            tiny_http::Response::from_string("not found: try GET /metrics\n").with_status_code(404)
        };
        // A client that went away is its own problem.
        let _ = req.respond(resp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed;

    impl Collector for Fixed {
        fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
            h.record(1_500).unwrap(); // 1.5 us
            h.record(2_000_000).unwrap(); // 2 ms
            h.record(20_000_000_000).unwrap(); // 20 s
            let p = PromHistogram::of(&h);
            let mut f = Families::new(&mut enc);
            f.counter("t_received", "records", Some("shard"), [("0".into(), 5)])?;
            f.gauge("t_depth", "depth", None, [(String::new(), 3)])?;
            f.histogram_seconds("t_latency", "latency", "stage", [("e2e".into(), &p)])?;
            f.info("t_build", "build", &[("version", "1.2.3".into())])
        }
    }

    fn get(addr: SocketAddr, path: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_openmetrics_and_404_elsewhere() {
        let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Box::new(Fixed)).unwrap();
        assert_ne!(srv.addr().port(), 0);
        let body = get(srv.addr(), "/metrics");
        assert!(body.starts_with("HTTP/1.0 200"), "{body}");
        assert!(body.contains("application/openmetrics-text"), "{body}");
        assert!(body.contains("t_received_total{shard=\"0\"} 5\n"), "{body}");
        assert!(body.contains("t_depth 3\n"), "{body}");
        assert!(
            body.contains("t_build_info{version=\"1.2.3\"} 1\n"),
            "{body}"
        );
        assert!(
            body.contains("t_latency_seconds_bucket{le=\"0.000001\",stage=\"e2e\"} 0\n"),
            "{body}"
        );
        assert!(
            body.contains("t_latency_seconds_bucket{le=\"0.0000025\",stage=\"e2e\"} 1\n"),
            "{body}"
        );
        assert!(
            body.contains("t_latency_seconds_bucket{le=\"+Inf\",stage=\"e2e\"} 3\n"),
            "{body}"
        );
        assert!(
            body.contains("t_latency_seconds_count{stage=\"e2e\"} 3\n"),
            "{body}"
        );
        assert!(body.trim_end().ends_with("# EOF"), "{body}");
        assert!(get(srv.addr(), "/").starts_with("HTTP/1.0 404"));
        drop(srv); // joins the thread
    }

    #[test]
    fn buckets_put_each_value_at_or_under_its_bound() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        h.record(999).unwrap(); // under 1 us
        h.record(1_000_000).unwrap(); // exactly 1 ms
        h.record(11_000_000_000).unwrap(); // over 10 s
        let p = PromHistogram::of(&h);
        assert_eq!(p.count, 3);
        assert_eq!(p.buckets[0], 1);
        let ms = LATENCY_BUCKETS_S.iter().position(|b| *b == 1e-3).unwrap();
        assert_eq!(p.buckets[ms], 1);
        assert_eq!(p.buckets[LATENCY_BUCKETS_S.len()], 1);
        assert!((p.sum_s - 11.001001).abs() < 0.02, "{}", p.sum_s);
    }

    #[test]
    fn linger_ends_at_the_stop_signal() {
        linger(Duration::MAX, || true);
    }
}
