//! CURVE encryption and authentication for streams: key files, the
//! allowlist, and the ZAP handler that enforces it.
//!
//! CURVE (RFC 26, CurveZMQ) encrypts every frame and authenticates both
//! ends: the subscriber must know the publisher's public key, and the
//! publisher asks a ZAP handler (RFC 27) whether each subscriber's public key
//! may connect. libzmq only consults ZAP when a handler is bound at
//! `inproc://zeromq.zap.01` in the socket's *context*, and lets everyone in
//! when none is; every stream has a context of its own (its own I/O thread),
//! so [`Zap::start`] binds one handler socket per stream context, before the
//! stream binds, and serves them all from one thread.
//!
//! The crates.io libzmq (`zmq-sys`' vendored build) has no CURVE; the system
//! libzmq build (`.cargo/system-libzmq.toml`, README) has it. [`need_curve`]
//! turns that into a usage error that says so.
//!
//! Key files (written by `shardcast-keygen`) are text, one `name = "value"`
//! per line, keys in Z85 (40 characters for 32 bytes), like CZMQ's
//! certificates:
//!
//! ```text
//! # shardcast CURVE secret key: keep it on this host, mode 0600
//! public-key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
//! secret-key = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"
//! ```

use crate::exit::UsageError;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The ZAP domain shardcast's CURVE sockets ask about.
pub const ZAP_DOMAIN: &str = "shardcast";
/// Where libzmq looks for a ZAP handler, in each context.
const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";
/// At most this many distinct refused (address, key) pairs are remembered
/// and reported; later ones are counted only, so a peer cycling through keys
/// or addresses cannot grow the publisher's memory or its log.
pub const MAX_REFUSED_PEERS: usize = 64;

/// A 32-byte CURVE public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The key in Z85, as in key files and logs.
    pub fn z85(&self) -> String {
        zmq::z85_encode(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.z85())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.z85())
    }
}

/// A key pair read from a secret key file. The secret half never appears in
/// `Debug` or `Serialize` output (`--print-config` prints the public half).
#[derive(Clone)]
pub struct KeyPair {
    /// Public half.
    pub public: PublicKey,
    secret: [u8; 32],
    /// Where it was read from.
    pub path: PathBuf,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KeyPair({:?}, secret from {})",
            self.public,
            self.path.display()
        )
    }
}

impl Serialize for KeyPair {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("KeyPair", 2)?;
        st.serialize_field("public_key", &self.public)?;
        st.serialize_field("secret_key_file", &self.path)?;
        st.end()
    }
}

/// Whether this build's libzmq has CURVE.
pub fn curve_available() -> bool {
    zmq::has("curve") == Some(true)
}

/// Whether this build's libzmq has PGM (`pgm://`, `epgm://`).
pub fn pgm_available() -> bool {
    zmq::has("pgm") == Some(true)
}

/// What to do when this build's libzmq lacks a capability.
pub fn system_libzmq_remedy(what: &str) -> String {
    let (major, minor, patch) = zmq::version();
    format!(
        "this binary's libzmq ({major}.{minor}.{patch}) was built without {what}: the default build uses the \
         crates.io libzmq, which has neither CURVE nor PGM. Install libzmq3-dev and build with \
         `cargo build --release --config .cargo/system-libzmq.toml` (README, \"System libzmq\")"
    )
}

/// A usage error naming `flag` unless this build has CURVE.
pub fn need_curve(flag: &'static str) -> Result<(), UsageError> {
    if curve_available() {
        Ok(())
    } else {
        Err(UsageError::new(flag, system_libzmq_remedy("CURVE")))
    }
}

fn decode_key(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    if text.len() != 40 {
        return Err(format!(
            "'{text}' is not a CURVE key: expected 40 Z85 characters, got {}",
            text.len()
        ));
    }
    let bytes =
        zmq::z85_decode(text).map_err(|_| format!("'{text}' is not valid Z85 (a CURVE key)"))?;
    bytes
        .try_into()
        .map_err(|_| format!("'{text}' does not decode to 32 bytes"))
}

/// The value of `name = "value"` lines in a key file.
fn field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
    })
}

fn read_text(flag: &'static str, path: &Path) -> Result<String, UsageError> {
    std::fs::read_to_string(path)
        .map_err(|e| UsageError::new(flag, format!("cannot read {}: {e}", path.display())))
}

/// Read a key pair (secret key file) for `flag`. A file others can read is
/// refused, as ssh refuses a private key: a secret key that leaked lets
/// anyone impersonate this end.
pub fn read_key_pair(flag: &'static str, path: &Path) -> Result<KeyPair, UsageError> {
    let text = read_text(flag, path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(UsageError::new(
                    flag,
                    format!(
                        "{} holds a secret key but is readable by others (mode {mode:o}); chmod 600 it",
                        path.display()
                    ),
                ));
            }
        }
    }
    let get = |name: &str| {
        field(&text, name).ok_or_else(|| {
            UsageError::new(
                flag,
                format!(
                    "{} has no `{name} = \"...\"` line; is it a secret key file from shardcast-keygen \
                     (NAME.key, not NAME.pub)?",
                    path.display()
                ),
            )
        })
    };
    let public = decode_key(&get("public-key")?).map_err(|m| UsageError::new(flag, m))?;
    let secret = decode_key(&get("secret-key")?).map_err(|m| UsageError::new(flag, m))?;
    Ok(KeyPair {
        public: PublicKey(public),
        secret,
        path: path.to_path_buf(),
    })
}

/// A public key given on the command line: Z85 text, or a file holding one
/// (`NAME.pub` from shardcast-keygen, or a bare key).
pub fn read_public_key(flag: &'static str, arg: &str) -> Result<PublicKey, UsageError> {
    if arg.len() == 40 && !Path::new(arg).exists() {
        return decode_key(arg)
            .map(PublicKey)
            .map_err(|m| UsageError::new(flag, m));
    }
    let path = Path::new(arg);
    let text = read_text(flag, path)?;
    let key = field(&text, "public-key").unwrap_or_else(|| text.trim().to_string());
    decode_key(&key)
        .map(PublicKey)
        .map_err(|m| UsageError::new(flag, format!("{}: {m}", path.display())))
}

/// The public keys allowed to connect, each with the name it was listed
/// under (reported as the ZAP user id).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Allowlist {
    /// Key to name.
    #[serde(serialize_with = "serialize_allowed")]
    keys: HashMap<PublicKey, String>,
    /// The files it was read from.
    pub files: Vec<PathBuf>,
}

fn serialize_allowed<S: serde::Serializer>(
    keys: &HashMap<PublicKey, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut v: Vec<(&String, String)> = keys.iter().map(|(k, n)| (n, k.z85())).collect();
    v.sort();
    s.collect_seq(v.into_iter().map(|(n, k)| format!("{k} {n}")))
}

impl Allowlist {
    /// Read allowlist files for `flag`. Each line is a Z85 public key and an
    /// optional name (`KEY [NAME]`), or a `public-key = "KEY"` line as in a
    /// `.pub` file (named after the file); a line starting with `#` is a
    /// comment.
    pub fn read(flag: &'static str, paths: &[PathBuf]) -> Result<Allowlist, UsageError> {
        let mut list = Allowlist::default();
        for path in paths {
            let text = read_text(flag, path)?;
            let stem = path
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
            for (n, raw) in text.lines().enumerate() {
                // Z85 uses '#' and '=', so only whole lines are comments and
                // only a line starting with `public-key` is a key-file field.
                let line = raw.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                if line.starts_with("secret-key") {
                    return Err(UsageError::new(
                        flag,
                        format!(
                            "{} holds a secret key: list public keys (NAME.pub), never NAME.key",
                            path.display()
                        ),
                    ));
                }
                let (key, name) = match field(line, "public-key") {
                    Some(k) => (k, stem.clone()),
                    None => {
                        let mut parts = line.splitn(2, char::is_whitespace);
                        let key = parts.next().unwrap_or("").to_string();
                        let name = parts.next().map_or(stem.clone(), |s| s.trim().to_string());
                        (key, name)
                    }
                };
                let key = decode_key(&key).map_err(|m| {
                    UsageError::new(flag, format!("{} line {}: {m}", path.display(), n + 1))
                })?;
                list.keys.insert(PublicKey(key), name);
            }
            list.files.push(path.clone());
        }
        if list.keys.is_empty() {
            return Err(UsageError::new(
                flag,
                "no public key in the allowlist: nobody could connect; list each subscriber's NAME.pub",
            ));
        }
        Ok(list)
    }

    /// The name `key` is allowed under, if it is.
    pub fn name_of(&self, key: &PublicKey) -> Option<&str> {
        self.keys.get(key).map(String::as_str)
    }

    /// How many keys are allowed.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is allowed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Make `socket` a CURVE server with `keys`, authenticated through ZAP.
pub fn make_server(socket: &zmq::Socket, keys: &KeyPair) -> Result<(), zmq::Error> {
    socket.set_zap_domain(ZAP_DOMAIN)?;
    socket.set_curve_server(true)?;
    socket.set_curve_secretkey(&keys.secret)
}

/// Make `socket` a CURVE client of the server with public key `server`.
pub fn make_client(
    socket: &zmq::Socket,
    keys: &KeyPair,
    server: &PublicKey,
) -> Result<(), zmq::Error> {
    socket.set_curve_serverkey(&server.0)?;
    socket.set_curve_publickey(&keys.public.0)?;
    socket.set_curve_secretkey(&keys.secret)
}

/// Generate a key pair (libzmq's `zmq_curve_keypair`, libsodium underneath)
/// and write `DIR/NAME.key` (both halves, mode 0600, created new so an
/// existing key is never overwritten) and `DIR/NAME.pub` (public half, to
/// hand out). Returns the two paths.
pub fn write_key_pair(dir: &Path, name: &str) -> std::io::Result<(PathBuf, PathBuf, PublicKey)> {
    let pair = zmq::CurveKeyPair::new().map_err(std::io::Error::other)?;
    let public = PublicKey(pair.public_key);
    let secret =
        zmq::z85_encode(&pair.secret_key).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    let (key_path, pub_path) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    );
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&key_path)?;
    writeln!(
        f,
        "# shardcast CURVE secret key \"{name}\": keep it on this host, mode 0600\n\
         public-key = \"{}\"\nsecret-key = \"{secret}\"",
        public.z85()
    )?;
    f.sync_all()?;
    let mut p = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&pub_path)?;
    writeln!(
        p,
        "# shardcast CURVE public key \"{name}\": give it to the peers (publisher: --curve-allow)\n\
         public-key = \"{}\"",
        public.z85()
    )?;
    p.sync_all()?;
    Ok((key_path, pub_path, public))
}

/// One refused peer, as reported.
#[derive(Clone, Debug, Serialize)]
pub struct Refused {
    /// Stream it tried to connect to.
    pub stream: usize,
    /// Its IP address, as libzmq's ZAP request gives it.
    pub address: String,
    /// The public key it presented.
    pub public_key: PublicKey,
    /// Handshakes refused for this (stream, address, key).
    pub count: u64,
}

/// What the ZAP handler did (the report's `security` counters).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ZapReport {
    /// Handshakes allowed.
    pub handshakes_allowed: u64,
    /// Handshakes refused.
    pub handshakes_refused: u64,
    /// The first [`MAX_REFUSED_PEERS`] distinct refused peers.
    pub refused: Vec<Refused>,
}

/// The ZAP handler: one thread answering the handler sockets of every
/// stream context.
pub struct Zap {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    report: Arc<Mutex<ZapReport>>,
}

impl Zap {
    /// Bind a handler socket in each of `ctxs` (stream `i`'s context at
    /// index `i`) and start answering; `role` prefixes log lines. Call it
    /// before any socket with a ZAP domain in those contexts binds, or
    /// libzmq lets the first peers in unchecked.
    ///
    /// `allow`: CURVE handshakes are judged against it; `None`: plain-text
    /// (NULL mechanism) handshakes are all allowed. Either way every allowed
    /// connection gets a User-Id of its own (`<n>`, or `<name>#<n>` under
    /// CURVE), which libzmq attaches to every message from that connection:
    /// that is how the publisher tells one subscriber from another.
    pub fn start(
        ctxs: &[&zmq::Context],
        allow: Option<Allowlist>,
        role: &'static str,
    ) -> Result<Zap, crate::exit::SetupError> {
        let mut sockets = Vec::with_capacity(ctxs.len());
        for ctx in ctxs {
            let s = ctx
                .socket(zmq::REP)
                .map_err(crate::exit::zerr("creating the ZAP handler socket"))?;
            s.set_linger(0)
                .map_err(crate::exit::zerr("ZAP handler ZMQ_LINGER"))?;
            s.bind(ZAP_ENDPOINT)
                .map_err(crate::exit::zerr("binding the ZAP handler"))?;
            sockets.push(s);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(ZapReport::default()));
        let (stop2, report2) = (Arc::clone(&stop), Arc::clone(&report));
        let thread = std::thread::Builder::new()
            .name("zap".into())
            .spawn(move || serve(sockets, &allow, &stop2, &report2, role))
            .map_err(crate::exit::ioerr("starting the ZAP handler thread"))?;
        Ok(Zap {
            stop,
            thread: Some(thread),
            report,
        })
    }

    /// Stop the handler (closing its sockets, so the contexts can end) and
    /// return what it did.
    pub fn finish(mut self) -> ZapReport {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.report.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for Zap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How often the handler looks at its stop flag.
const ZAP_POLL: Duration = Duration::from_millis(100);
/// Past the first refusal of a peer, its refusals are logged at most this
/// often (with a count), so a peer retrying in a loop cannot flood the log.
const LOG_EVERY: Duration = Duration::from_secs(1);

fn serve(
    sockets: Vec<zmq::Socket>,
    allow: &Option<Allowlist>,
    stop: &AtomicBool,
    report: &Mutex<ZapReport>,
    role: &str,
) {
    let mut last_log: Option<Instant> = None;
    let mut unlogged = 0u64;
    let mut connections = 0u64;
    while !stop.load(Ordering::Acquire) {
        let mut items: Vec<zmq::PollItem> = sockets
            .iter()
            .map(|s| s.as_poll_item(zmq::POLLIN))
            .collect();
        if zmq::poll(&mut items, ZAP_POLL.as_millis() as i64).unwrap_or(0) <= 0 {
            continue;
        }
        let ready: Vec<usize> = (0..items.len())
            .filter(|&i| items[i].is_readable())
            .collect();
        for stream in ready {
            let Ok(frames) = sockets[stream].recv_multipart(zmq::DONTWAIT) else {
                continue;
            };
            let verdict = match judge(&frames, allow.as_ref()) {
                Verdict::Allowed(name) => {
                    connections += 1;
                    Verdict::Allowed(match name.is_empty() {
                        true => connections.to_string(),
                        false => format!("{name}#{connections}"),
                    })
                }
                refused => refused,
            };
            let reply = reply_frames(&frames, &verdict);
            // A REP socket must answer before it can take the next request.
            let _ = sockets[stream].send_multipart(reply, 0);
            let Ok(mut r) = report.lock() else { return };
            match verdict {
                Verdict::Allowed(_) => r.handshakes_allowed += 1,
                Verdict::Refused {
                    address,
                    key,
                    reason,
                } => {
                    r.handshakes_refused += 1;
                    let known = r.refused.iter().position(|p| {
                        p.stream == stream && p.address == address && key == Some(p.public_key)
                    });
                    let first = match (known, key) {
                        (Some(i), _) => {
                            r.refused[i].count += 1;
                            false
                        }
                        (None, Some(k)) if r.refused.len() < MAX_REFUSED_PEERS => {
                            r.refused.push(Refused {
                                stream,
                                address: address.clone(),
                                public_key: k,
                                count: 1,
                            });
                            true
                        }
                        (None, _) => false,
                    };
                    let due = last_log.map_or(true, |t| t.elapsed() >= LOG_EVERY);
                    if first || due {
                        let more = if unlogged > 0 {
                            format!(" ({unlogged} more refusals since the last line)")
                        } else {
                            String::new()
                        };
                        eprintln!(
                            "{role}: stream {stream}: refused subscriber at {address}: {reason}{more}"
                        );
                        last_log = Some(Instant::now());
                        unlogged = 0;
                    } else {
                        unlogged += 1;
                    }
                }
            }
        }
    }
}

enum Verdict {
    Allowed(String),
    Refused {
        address: String,
        key: Option<PublicKey>,
        reason: String,
    },
}

/// Judge one ZAP request (RFC 27): version, request id, domain, address,
/// identity, mechanism, credentials... Allowed: the allowlist name (empty
/// for a plain-text connection).
fn judge(frames: &[Vec<u8>], allow: Option<&Allowlist>) -> Verdict {
    let text = |i: usize| {
        frames
            .get(i)
            .map_or_else(String::new, |f| String::from_utf8_lossy(f).into_owned())
    };
    let address = text(3);
    if frames.len() < 6 || frames[0] != b"1.0" {
        return Verdict::Refused {
            address,
            key: None,
            reason: "malformed ZAP request".into(),
        };
    }
    let mechanism = text(5);
    let Some(allow) = allow else {
        return match mechanism.as_str() {
            "NULL" => Verdict::Allowed(String::new()),
            _ => Verdict::Refused {
                address,
                key: None,
                reason: format!("mechanism {mechanism} on a plain-text stream"),
            },
        };
    };
    if mechanism != "CURVE" {
        return Verdict::Refused {
            address,
            key: None,
            reason: format!("mechanism {mechanism}, not CURVE"),
        };
    }
    let Some(key) = frames
        .get(6)
        .and_then(|c| <[u8; 32]>::try_from(c.as_slice()).ok())
        .map(PublicKey)
    else {
        return Verdict::Refused {
            address,
            key: None,
            reason: "CURVE request without a 32-byte key".into(),
        };
    };
    match allow.name_of(&key) {
        Some(name) => Verdict::Allowed(name.to_string()),
        None => Verdict::Refused {
            address,
            key: Some(key),
            reason: format!(
                "CURVE key {} is not in --curve-allow; it receives nothing",
                key.z85()
            ),
        },
    }
}

fn reply_frames(request: &[Vec<u8>], verdict: &Verdict) -> Vec<Vec<u8>> {
    let id = request.get(1).cloned().unwrap_or_default();
    let (code, text, user): (&[u8], &[u8], Vec<u8>) = match verdict {
        Verdict::Allowed(name) => (b"200", b"OK", name.clone().into_bytes()),
        Verdict::Refused { .. } => (b"400", b"key not allowed", Vec::new()),
    };
    vec![
        b"1.0".to_vec(),
        id,
        code.to_vec(),
        text.to_vec(),
        user,
        Vec::new(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";

    #[test]
    fn allowlists_take_bare_keys_names_and_pub_files() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("allow.txt");
        let odd = "0123456789abcdefghij#=ABCDEFGHIJ.-:+^!/*";
        std::fs::write(
            &list,
            format!("# subscribers\n{KEY} sub-host-2\n\n  {odd}\n"),
        )
        .unwrap();
        let pubf = dir.path().join("sub-host-3.pub");
        std::fs::write(
            &pubf,
            "# comment\npublic-key = \"Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID\"\n",
        )
        .unwrap();
        let a = Allowlist::read("--curve-allow", &[list.clone(), pubf]).unwrap();
        assert_eq!(a.len(), 3);
        let odd_key = PublicKey(decode_key(odd).unwrap());
        assert_eq!(a.name_of(&odd_key), Some("allow"), "named after its file");
        let k = PublicKey(decode_key(KEY).unwrap());
        assert_eq!(a.name_of(&k), Some("sub-host-2"));
        let k3 = PublicKey(decode_key("Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID").unwrap());
        assert_eq!(a.name_of(&k3), Some("sub-host-3"));

        std::fs::write(&list, "not-a-key\n").unwrap();
        let e = Allowlist::read("--curve-allow", std::slice::from_ref(&list)).unwrap_err();
        assert_eq!(e.flag, "--curve-allow");
        assert!(e.message.contains("line 1"), "{}", e.message);
        std::fs::write(&list, "# nobody\n").unwrap();
        assert!(Allowlist::read("--curve-allow", &[list]).is_err());
    }

    #[test]
    fn a_secret_key_file_readable_by_others_is_refused_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pub.key");
        std::fs::write(
            &path,
            format!("public-key = \"{KEY}\"\nsecret-key = \"JTKVSB%%)wK0E.X)V>+}}o?pNmC{{O&4W4b!Ni{{Lh6\"\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_key_pair("--curve-secret-key", &path).unwrap_err();
        assert!(e.message.contains("chmod 600"), "{}", e.message);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let pair = read_key_pair("--curve-secret-key", &path).unwrap();
        assert_eq!(pair.public.z85(), KEY);
        let shown = format!("{pair:?} {}", serde_json::to_string(&pair).unwrap());
        assert!(!shown.contains("JTKVSB"), "{shown}");
        assert!(shown.contains(KEY));
    }

    #[test]
    fn public_keys_come_as_text_or_files() {
        assert_eq!(
            read_public_key("--curve-server-key", KEY).unwrap().z85(),
            KEY
        );
        let e = read_public_key("--curve-server-key", "short").unwrap_err();
        assert_eq!(e.flag, "--curve-server-key");
    }

    #[test]
    fn zap_requests_are_judged_by_the_allowlist() {
        let mut allow = Allowlist::default();
        let good = PublicKey([7; 32]);
        allow.keys.insert(good, "good".into());
        let req = |mech: &str, cred: &[u8]| {
            vec![
                b"1.0".to_vec(),
                b"id".to_vec(),
                b"shardcast".to_vec(),
                b"10.0.0.9".to_vec(),
                Vec::new(),
                mech.as_bytes().to_vec(),
                cred.to_vec(),
            ]
        };
        let r = req("CURVE", &[7; 32]);
        let v = judge(&r, Some(&allow));
        assert!(matches!(v, Verdict::Allowed(ref n) if n == "good"));
        assert_eq!(reply_frames(&r, &v)[2], b"200");
        let r = req("CURVE", &[8; 32]);
        let v = judge(&r, Some(&allow));
        assert!(
            matches!(v, Verdict::Refused { ref address, key: Some(_), .. } if address == "10.0.0.9")
        );
        assert_eq!(reply_frames(&r, &v)[2], b"400");
        assert!(matches!(
            judge(&req("NULL", &[]), Some(&allow)),
            Verdict::Refused { .. }
        ));
        assert!(matches!(
            judge(&r[..3], Some(&allow)),
            Verdict::Refused { .. }
        ));
        // A plain-text stream lets NULL in, and nothing else.
        assert!(matches!(judge(&req("NULL", &[]), None), Verdict::Allowed(ref n) if n.is_empty()));
        assert!(matches!(
            judge(&req("CURVE", &[7; 32]), None),
            Verdict::Refused { .. }
        ));
    }
}
