//! Report files.

/// Write `value` as pretty JSON to a temporary file beside `path`, then
/// rename it into place, so a reader (or a signal mid-write) never leaves
/// half a report.
pub fn write_json<T: serde::Serialize>(path: &std::path::Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut text = serde_json::to_vec_pretty(value)?;
    text.push(b'\n');
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
