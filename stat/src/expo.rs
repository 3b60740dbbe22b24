//! A parser for the Prometheus text exposition format (version 0.0.4) and
//! OpenMetrics text 1.0, the two formats a `/metrics` endpoint serves.
//!
//! What it takes (the specs' grammar, leniently where they differ):
//!
//! * `# HELP NAME TEXT` (escapes `\\` and `\n`), `# TYPE NAME TYPE`,
//!   `# UNIT NAME UNIT`; any other `#` line is a comment; `# EOF` ends the
//!   exposition (OpenMetrics).
//! * `NAME[{LABEL="VALUE",...}] VALUE [TIMESTAMP] [# {EXEMPLAR} VALUE [TS]]`:
//!   label values with the escapes `\\`, `\"` and `\n`, a trailing comma,
//!   blanks around tokens; the quoted-name form `{"NAME",LABEL="VALUE"}` of
//!   UTF-8 names; values `+Inf`, `-Inf`, `NaN` in any case. Timestamps and
//!   exemplars are read past and ignored.
//! * Samples go to their family by name: the family a `TYPE`, `HELP` or
//!   `UNIT` line declared, directly or through the suffixes of its type
//!   (`_total`, `_created`, `_bucket`, `_count`, `_sum`, `_gcount`,
//!   `_gsum`, `_info`); a sample no declaration covers is a family of its
//!   own, of unknown type.
//!
//! A line it cannot read is not fatal: it is skipped and recorded in
//! [`Exposition::errors`] (with its line number), so one odd line costs
//! one line of the view, not the whole endpoint.

use std::collections::HashMap;

/// A metric family's type (`# TYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// `gaugehistogram` (OpenMetrics).
    GaugeHistogram,
    /// `summary`.
    Summary,
    /// `info` (OpenMetrics).
    Info,
    /// `stateset` (OpenMetrics).
    StateSet,
    /// `untyped`, `unknown`, or no `TYPE` line at all.
    Unknown,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "histogram" => Kind::Histogram,
            "gaugehistogram" => Kind::GaugeHistogram,
            "summary" => Kind::Summary,
            "info" => Kind::Info,
            "stateset" => Kind::StateSet,
            "untyped" | "unknown" => Kind::Unknown,
            _ => return None,
        })
    }

    /// The sample name suffixes a family of this type may add to its name.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            Kind::Counter => &["_total", "_created"],
            Kind::Histogram => &["_bucket", "_count", "_sum", "_created"],
            Kind::GaugeHistogram => &["_bucket", "_gcount", "_gsum"],
            Kind::Summary => &["_count", "_sum", "_created"],
            Kind::Info => &["_info"],
            Kind::Gauge | Kind::StateSet | Kind::Unknown => &[],
        }
    }
}

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample's full name (`shardcast_received_total`).
    pub name: String,
    /// Its labels in the order written.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A metric family: its metadata and its samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// The family's name (`shardcast_received` in OpenMetrics,
    /// `shardcast_received_total` in the Prometheus format).
    pub name: String,
    /// Its type.
    pub kind: Kind,
    /// `# HELP`, unescaped.
    pub help: Option<String>,
    /// `# UNIT`.
    pub unit: Option<String>,
    /// Its samples in the order written.
    pub samples: Vec<Sample>,
}

/// A line that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A parsed exposition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposition {
    /// The families, in the order first seen.
    pub families: Vec<Family>,
    /// Lines skipped because they could not be read.
    pub errors: Vec<LineError>,
    /// Whether a `# EOF` line ended it.
    pub eof: bool,
}

impl Exposition {
    /// Every sample named `name`, whatever family it is in.
    pub fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.families
            .iter()
            .flat_map(|f| f.samples.iter())
            .filter(move |s| s.name == name)
    }

    /// Whether any sample is named `name`.
    pub fn has(&self, name: &str) -> bool {
        self.samples(name).next().is_some()
    }
}

/// Parse an exposition (either format).
pub fn parse(text: &str) -> Exposition {
    let mut p = Builder::default();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let line_no = i + 1;
        let trimmed = line.trim_matches(|c| c == ' ' || c == '\t');
        if trimmed.is_empty() {
            continue;
        }
        let result = if let Some(rest) = trimmed.strip_prefix('#') {
            if rest.trim() == "EOF" {
                p.out.eof = true;
                break;
            }
            p.meta(rest)
        } else {
            parse_sample(trimmed).map(|s| p.sample(s))
        };
        if let Err(message) = result {
            p.out.errors.push(LineError {
                line: line_no,
                message,
            });
        }
    }
    p.out
}

#[derive(Default)]
struct Builder {
    out: Exposition,
    /// Family name to index in `out.families`.
    index: HashMap<String, usize>,
    /// Families named by a TYPE, HELP or UNIT line.
    declared: Vec<bool>,
}

impl Builder {
    fn family(&mut self, name: &str, declared: bool) -> usize {
        if let Some(&i) = self.index.get(name) {
            self.declared[i] |= declared;
            return i;
        }
        let i = self.out.families.len();
        self.out.families.push(Family {
            name: name.to_string(),
            kind: Kind::Unknown,
            help: None,
            unit: None,
            samples: Vec::new(),
        });
        self.declared.push(declared);
        self.index.insert(name.to_string(), i);
        i
    }

    /// A `#` line (the `#` stripped).
    fn meta(&mut self, rest: &str) -> Result<(), String> {
        let rest = rest.trim_start_matches([' ', '\t']);
        let (keyword, rest) = split_token(rest);
        if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
            return Ok(()); // a comment
        }
        let (name, value) = split_token(rest);
        if name.is_empty() || !valid_metric_name(name) {
            return Err(format!("# {keyword}: no valid metric name"));
        }
        match keyword {
            "HELP" => {
                let i = self.family(name, true);
                self.out.families[i].help = Some(unescape_help(value));
            }
            "TYPE" => {
                let kind = Kind::parse(value.trim())
                    .ok_or_else(|| format!("# TYPE {name}: unknown type {:?}", value.trim()))?;
                let i = self.family(name, true);
                self.out.families[i].kind = kind;
            }
            _ => {
                let i = self.family(name, true);
                self.out.families[i].unit = Some(value.trim().to_string());
            }
        }
        Ok(())
    }

    fn sample(&mut self, s: Sample) {
        let i = self.owner(&s.name);
        self.out.families[i].samples.push(s);
    }

    /// The family a sample named `name` belongs to.
    fn owner(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        for (i, fam) in self.out.families.iter().enumerate() {
            if !self.declared[i] {
                continue;
            }
            if let Some(suffix) = name.strip_prefix(fam.name.as_str()) {
                if fam.kind.suffixes().contains(&suffix) {
                    return i;
                }
            }
        }
        self.family(name, false)
    }
}

/// The first blank-separated token and the rest (leading blanks of the
/// rest removed).
fn split_token(s: &str) -> (&str, &str) {
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], s[i..].trim_start_matches([' ', '\t'])),
        None => (s, ""),
    }
}

fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// HELP text: `\\` and `\n` are escapes; any other backslash stays.
fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// A float as the formats write it: Go's ParseFloat spellings, which
/// include `+Inf`, `-Inf`, `NaN` in any case.
pub fn parse_value(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" | "+nan" | "-nan" => return Some(f64::NAN),
        _ => {}
    }
    // Rust's parser takes what Go's does for decimal numbers; hexadecimal
    // and underscores (Go only) are not worth the code.
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    if ok {
        s.parse().ok()
    } else {
        None
    }
}

/// A cursor over one sample line.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    /// Skip blanks; whether there were any.
    fn blanks(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// `[a-zA-Z0-9_:]*` (validity is checked by the caller).
    fn name(&mut self) -> &'a str {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    /// A double-quoted string with `\\`, `\"`, `\n` escapes; the opening
    /// quote must be next.
    fn quoted(&mut self) -> Result<String, String> {
        if !self.eat('"') {
            return Err("expected '\"'".into());
        }
        let mut out = String::new();
        loop {
            let c = self.peek().ok_or("unterminated label value")?;
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let e = self.peek().ok_or("unterminated label value")?;
                    self.pos += e.len_utf8();
                    match e {
                        '\\' => out.push('\\'),
                        '"' => out.push('"'),
                        'n' => out.push('\n'),
                        other => {
                            // Prometheus keeps an unknown escape as written.
                            out.push('\\');
                            out.push(other);
                        }
                    }
                }
                other => out.push(other),
            }
        }
    }

    /// The rest up to the next blank (or the end).
    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c != ' ' && c != '\t') {
            self.pos += self.peek().map_or(1, char::len_utf8);
        }
        &self.s[start..self.pos]
    }
}

/// One sample line (trimmed, not a comment).
fn parse_sample(line: &str) -> Result<Sample, String> {
    let mut c = Cursor { s: line, pos: 0 };
    let mut name = c.name().to_string();
    if !name.is_empty() && !valid_metric_name(&name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut blank = c.blanks();
    let mut labels = Vec::new();
    if c.eat('{') {
        loop {
            c.blanks();
            if c.eat('}') {
                break;
            }
            if c.peek() == Some('"') {
                // A quoted name: the metric's (when it stands alone) or a
                // label's (UTF-8 names).
                let q = c.quoted()?;
                c.blanks();
                if c.eat('=') {
                    c.blanks();
                    let v = c.quoted()?;
                    labels.push((q, v));
                } else if name.is_empty() {
                    name = q;
                } else {
                    return Err(format!("a second metric name {q:?} inside the braces"));
                }
            } else {
                let key = c.name();
                if !valid_label_name(key) {
                    return Err(format!("invalid label name {key:?}"));
                }
                c.blanks();
                if !c.eat('=') {
                    return Err(format!("label {key}: expected '='"));
                }
                c.blanks();
                let v = c.quoted().map_err(|e| format!("label {key}: {e}"))?;
                labels.push((key.to_string(), v));
            }
            c.blanks();
            if c.eat(',') {
                continue;
            }
            if c.eat('}') {
                break;
            }
            return Err("expected ',' or '}' in the label set".into());
        }
        blank = c.blanks();
    }
    if name.is_empty() {
        return Err("no metric name".into());
    }
    if !blank && c.peek().is_some() {
        return Err(format!("{name}: expected a blank before the value"));
    }
    let v = c.token();
    let value = parse_value(v).ok_or_else(|| format!("{name}: {v:?} is not a value"))?;
    // What may follow: a timestamp, then an exemplar (`# {...} v [ts]`),
    // both ignored; anything else is an error.
    c.blanks();
    if c.peek().is_some_and(|ch| ch != '#') {
        let ts = c.token();
        if parse_value(ts).is_none() {
            return Err(format!("{name}: {ts:?} is not a timestamp"));
        }
        c.blanks();
    }
    if c.peek().is_some_and(|ch| ch != '#') {
        return Err(format!("{name}: unexpected text after the value"));
    }
    Ok(Sample {
        name,
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Sample {
        parse_sample(line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    #[test]
    fn reads_what_prometheus_client_writes() {
        // The shape of a shardcast-sub scrape (OpenMetrics text).
        let text = "\
# HELP shardcast_build Build of this shardcast-sub (value 1).
# TYPE shardcast_build info
shardcast_build_info{version=\"0.1.0\",role=\"shardcast-sub\"} 1
# HELP shardcast_received Data records received and delivered, per shard.
# TYPE shardcast_received counter
shardcast_received_total{shard=\"0\"} 1200
shardcast_received_total{shard=\"1\"} 34
# HELP shardcast_latency_seconds Latency by stage.
# TYPE shardcast_latency_seconds histogram
# UNIT shardcast_latency_seconds seconds
shardcast_latency_seconds_sum{stage=\"wire\"} 0.5
shardcast_latency_seconds_count{stage=\"wire\"} 3
shardcast_latency_seconds_bucket{le=\"1e-6\",stage=\"wire\"} 0
shardcast_latency_seconds_bucket{le=\"+Inf\",stage=\"wire\"} 3
# EOF
";
        let e = parse(text);
        assert!(e.errors.is_empty(), "{:?}", e.errors);
        assert!(e.eof);
        let names: Vec<(&str, Kind, usize)> = e
            .families
            .iter()
            .map(|f| (f.name.as_str(), f.kind, f.samples.len()))
            .collect();
        assert_eq!(
            names,
            [
                ("shardcast_build", Kind::Info, 1),
                ("shardcast_received", Kind::Counter, 2),
                ("shardcast_latency_seconds", Kind::Histogram, 4),
            ]
        );
        assert_eq!(e.families[2].unit.as_deref(), Some("seconds"));
        let inf = e
            .samples("shardcast_latency_seconds_bucket")
            .find(|s| s.label("le") == Some("+Inf"))
            .unwrap();
        assert_eq!(inf.value, 3.0);
        assert_eq!(parse_value(inf.label("le").unwrap()), Some(f64::INFINITY));
        assert_eq!(
            e.samples("shardcast_received_total")
                .map(|s| s.value)
                .sum::<f64>(),
            1234.0
        );
    }

    #[test]
    fn reads_the_prometheus_format_with_comments_timestamps_and_no_types() {
        let text = "\
# A comment, not HELP or TYPE
#
# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000
http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47
something_weird{problem=\"division by zero\"} +Inf -3982045
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile=\"0.5\"} 4773
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
";
        let e = parse(text);
        assert!(e.errors.is_empty(), "{:?}", e.errors);
        assert!(!e.eof);
        let fam = |n: &str| e.families.iter().find(|f| f.name == n).unwrap();
        assert_eq!(fam("http_requests_total").kind, Kind::Counter);
        assert_eq!(fam("http_requests_total").samples.len(), 2);
        assert_eq!(fam("http_requests_total").samples[1].value, 3.0);
        let ms = &fam("msdos_file_access_time_seconds").samples[0];
        assert_eq!(ms.label("path"), Some("C:\\DIR\\FILE.TXT"));
        assert_eq!(ms.label("error"), Some("Cannot find file:\n\"FILE.TXT\""));
        assert_eq!(fam("msdos_file_access_time_seconds").kind, Kind::Unknown);
        assert_eq!(fam("something_weird").samples[0].value, f64::INFINITY);
        assert_eq!(fam("rpc_duration_seconds").kind, Kind::Summary);
        assert_eq!(fam("rpc_duration_seconds").samples.len(), 3);
        assert_eq!(
            fam("http_requests_total").help.as_deref(),
            Some("The total number of HTTP requests.")
        );
    }

    #[test]
    fn values_and_label_edge_cases() {
        assert!(one("x NaN").value.is_nan());
        assert!(one("x nan").value.is_nan());
        assert_eq!(one("x -Inf").value, f64::NEG_INFINITY);
        assert_eq!(one("x +inf").value, f64::INFINITY);
        assert_eq!(one("x 1e-6").value, 1e-6);
        assert_eq!(one("x -0.5").value, -0.5);
        // Trailing comma, blanks around tokens, empty braces.
        let s = one("x{ a = \"1\" , b=\"\" , } 2");
        assert_eq!(
            s.labels,
            [("a".into(), "1".into()), ("b".into(), String::new())]
        );
        assert!(one("x{} 2").labels.is_empty());
        // A brace or comma inside a value is just text.
        assert_eq!(one("x{a=\"}{,=\"} 1").label("a"), Some("}{,="));
        // An exemplar (OpenMetrics), with and without a timestamp first.
        let s = one("foo_bucket{le=\"0.01\"} 17 # {trace_id=\"KOO5S4vxi0o\"} 0.67");
        assert_eq!((s.value, s.label("le")), (17.0, Some("0.01")));
        assert_eq!(
            one("foo_total 17 1520879607.789 # {id=\"a\"} 1 123").value,
            17.0
        );
        // UTF-8 names, quoted.
        let s = one("{\"my.metric\", \"some.label\"=\"v\"} 4");
        assert_eq!(s.name, "my.metric");
        assert_eq!(s.label("some.label"), Some("v"));
        // Unknown escapes are kept as written.
        assert_eq!(one("x{a=\"\\t\"} 1").label("a"), Some("\\t"));
        // Unicode in a value.
        assert_eq!(one("x{a=\"µs ✓\"} 1").label("a"), Some("µs ✓"));
    }

    #[test]
    fn bad_lines_are_skipped_and_named() {
        for bad in [
            "x",
            "x{a=\"1\"}",
            "x{a=1} 2",
            "x{a=\"1\" 2",
            "x{a=\"1} 2",
            "x{1a=\"1\"} 2",
            "x{a=\"1\"}2 3 4",
            "x 1 2 3",
            "x one",
            "x 1 later",
            "0x 1",
            "{} 1",
        ] {
            assert!(parse_sample(bad).is_err(), "{bad:?} parsed");
        }
        let e = parse("ok 1\nbroken{ 1\n# TYPE t wibble\nalso_ok 2\n");
        assert_eq!(e.errors.len(), 2, "{:?}", e.errors);
        assert_eq!(e.errors[0].line, 2);
        assert_eq!(e.errors[1].line, 3);
        assert!(e.has("ok") && e.has("also_ok"));
    }

    #[test]
    fn eof_ends_the_exposition_and_crlf_is_taken() {
        let e = parse("a 1\r\n# EOF\r\nb 2\n");
        assert!(e.eof);
        assert!(e.has("a"));
        assert!(!e.has("b"), "nothing after # EOF");
    }

    #[test]
    fn help_escapes_and_samples_meet_their_family_in_any_order() {
        let e = parse(
            "# HELP h a \\\\ back\\nslash \\x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\nh_total 9\n",
        );
        let h = &e.families[0];
        assert_eq!(h.help.as_deref(), Some("a \\ back\nslash \\x"));
        assert_eq!(h.samples.len(), 3);
        // `_total` is no histogram suffix: a family of its own.
        assert_eq!(e.families[1].name, "h_total");
        assert_eq!(e.families[1].kind, Kind::Unknown);
    }
}
