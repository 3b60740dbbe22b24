//! One `GET` of a metrics endpoint over a plain `TcpStream`: HTTP/1.1 with
//! `Connection: close`, a deadline on connecting, writing and reading
//! together, and a cap on the body. That is all a scrape needs, and it
//! keeps the tool from ever holding a connection open on the process it
//! watches.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The largest response read (a scrape of thousands of series is well
/// under a megabyte).
pub const MAX_RESPONSE: usize = 32 << 20;

/// Where to scrape: host, port and path, from `HOST:PORT` or
/// `http://HOST:PORT[/PATH]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Request path (`/metrics` unless the endpoint names one).
    pub path: String,
}

impl Target {
    /// Parse an endpoint as the command line gives it.
    pub fn parse(s: &str) -> Result<Target, String> {
        let rest = if let Some(r) = s.strip_prefix("http://") {
            r
        } else if s.starts_with("https://") {
            return Err(format!(
                "'{s}': https is not supported (metrics endpoints serve plain HTTP)"
            ));
        } else if s.contains("://") {
            return Err(format!("'{s}': only http:// endpoints"));
        } else {
            s
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let path = if path.is_empty() || path == "/" {
            "/metrics".to_string()
        } else {
            path.to_string()
        };
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("'{s}': blanks in the path"));
        }
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let (h, p) = r
                .split_once(']')
                .ok_or_else(|| format!("'{s}': no ']' after the IPv6 address"))?;
            (h, p.strip_prefix(':').unwrap_or(""))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, p),
                _ => (authority, ""),
            }
        };
        if host.is_empty() {
            return Err(format!("'{s}': no host (HOST:PORT)"));
        }
        if port.is_empty() {
            return Err(format!("'{s}': no port (HOST:PORT)"));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("'{s}': '{port}' is not a port (1 to 65535)"))?;
        Ok(Target {
            host: host.to_string(),
            port,
            path,
        })
    }

    /// `HOST:PORT` as a URL authority (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The full URL.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority(), self.path)
    }
}

/// `GET` the target within `timeout` (connecting, sending and reading
/// together); the body of a 200 answer, or why there is none.
pub fn get(target: &Target, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {}: {e}", target.host))?
        .collect();
    let mut last_err = format!("{} resolves to no address", target.host);
    let mut stream = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            last_err = "timed out connecting".into();
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = connect_error(&e),
        }
    }
    let mut s = stream.ok_or(last_err)?;
    let _ = s.set_nodelay(true);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: shardcast-stat/{}\r\n\
         Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n\
         Connection: close\r\n\r\n",
        target.path,
        target.authority(),
        env!("CARGO_PKG_VERSION")
    );
    set_timeouts(&s, deadline)?;
    s.write_all(request.as_bytes())
        .map_err(|e| io_error("sending the request", &e))?;
    let mut buf = Vec::with_capacity(16 << 10);
    let mut chunk = [0u8; 16 << 10];
    loop {
        set_timeouts(&s, deadline)?;
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > MAX_RESPONSE {
                    return Err(format!("response over {} MiB", MAX_RESPONSE >> 20));
                }
                if complete(&buf) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error("reading the response", &e)),
        }
    }
    body_of(&buf)
}

fn set_timeouts(s: &TcpStream, deadline: Instant) -> Result<(), String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err("timed out".into());
    }
    s.set_read_timeout(Some(left))
        .and_then(|()| s.set_write_timeout(Some(left)))
        .map_err(|e| format!("setting timeouts: {e}"))
}

fn connect_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            "timed out connecting".into()
        }
        _ => e.to_string(),
    }
}

fn io_error(what: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            format!("timed out {what}")
        }
        _ => format!("{what}: {e}"),
    }
}

/// The end of the head (`\r\n\r\n`), if it has come.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The response's header `name` (case-insensitive), trimmed.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// Whether the whole response is in (so a server that keeps the
/// connection open anyway does not cost a timeout).
fn complete(buf: &[u8]) -> bool {
    let Some(end) = head_end(buf) else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    if let Some(len) = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        return buf.len() - end >= len;
    }
    false
}

/// The body of a complete response, if it is a 200.
pub(crate) fn body_of(buf: &[u8]) -> Result<String, String> {
    let end = head_end(buf).ok_or_else(|| {
        if buf.is_empty() {
            "closed without answering".to_string()
        } else {
            "not an HTTP response".to_string()
        }
    })?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head.split("\r\n").next().unwrap_or("");
    let mut parts = status.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/") {
        return Err("not an HTTP response".into());
    }
    if code != "200" {
        return Err(format!(
            "HTTP {}",
            status.trim_start_matches(version).trim()
        ));
    }
    let raw = &buf[end..];
    let body: Vec<u8> = if header(&head, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        dechunk(raw)?
    } else if let Some(len) = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok())
    {
        if raw.len() < len {
            return Err(format!("body cut short: {} of {len} bytes", raw.len()));
        }
        raw[..len].to_vec()
    } else {
        raw.to_vec()
    };
    String::from_utf8(body).map_err(|_| "the body is not UTF-8".into())
}

/// Undo chunked transfer encoding.
fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunked body cut short")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len() < size + 2 {
            return Err("chunked body cut short".into());
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn endpoints_as_the_command_line_gives_them() {
        let t = Target::parse("127.0.0.1:9464").unwrap();
        assert_eq!(t.url(), "http://127.0.0.1:9464/metrics");
        let t = Target::parse("http://feed-host-1:9464").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("feed-host-1", 9464));
        assert_eq!(t.path, "/metrics");
        assert_eq!(
            Target::parse("http://h:1/").unwrap().url(),
            "http://h:1/metrics"
        );
        assert_eq!(
            Target::parse("http://h:1/other/path?x=1").unwrap().path,
            "/other/path?x=1"
        );
        let t = Target::parse("[::1]:9464").unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(t.url(), "http://[::1]:9464/metrics");
        for bad in [
            "",
            "host",
            ":9464",
            "host:",
            "host:0",
            "host:65536",
            "host:x",
            "https://h:1",
            "tcp://h:1",
            "::1:9464",
            "[::1]",
            "[::1:9464",
            "h:1/a b",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn bodies_by_length_chunks_or_close() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef";
        assert_eq!(body_of(ok).unwrap(), "abc");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nA;x=y\r\n0123456789\r\n0\r\n\r\n";
        assert_eq!(body_of(chunked).unwrap(), "abc0123456789");
        let close = b"HTTP/1.0 200 OK\r\n\r\nx 1\n";
        assert_eq!(body_of(close).unwrap(), "x 1\n");
        assert_eq!(
            body_of(b"HTTP/1.1 404 Not Found\r\n\r\nnope").unwrap_err(),
            "HTTP 404 Not Found"
        );
        assert!(body_of(b"").is_err());
        assert!(body_of(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(body_of(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc").is_err());
        assert!(complete(ok));
        assert!(!complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"
        ));
    }

    #[test]
    fn a_server_that_never_answers_costs_the_timeout_only() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let t = Target::parse(&l.local_addr().unwrap().to_string()).unwrap();
        // Accepted by the kernel (backlog), never read or answered.
        let err = get(&t, Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("timed out"), "{err}");
        drop(l);
    }

    #[test]
    fn a_closed_port_is_refused() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let t = Target::parse(&addr.to_string()).unwrap();
        let err = get(&t, Duration::from_secs(5)).unwrap_err();
        assert!(!err.is_empty());
    }

    #[test]
    fn gets_a_real_answer() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let t = Target::parse(&l.local_addr().unwrap().to_string()).unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while head_end(&req).is_none() {
                let n = c.read(&mut b).unwrap();
                assert!(n > 0);
                req.extend_from_slice(&b[..n]);
            }
            let body = "# TYPE x counter\nx_total 5\n";
            write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            // The connection stays open on this side: the client stops at
            // the length, and closes.
            while c.read(&mut b).unwrap() > 0 {}
            String::from_utf8(req).unwrap()
        });
        let body = get(&t, Duration::from_secs(10)).unwrap();
        assert_eq!(body, "# TYPE x counter\nx_total 5\n");
        let req = server.join().unwrap();
        assert!(req.starts_with("GET /metrics HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Connection: close\r\n"));
    }
}
