//! The little JSON sluice writes by hand on hot paths (records are stored as JSON).

/// Appends `v` as a JSON string. Runs of characters that need no escaping are copied whole
/// (this is on the per-row hot path of every import).
pub fn push_string(out: &mut String, v: &str) {
    out.push('"');
    let mut rest = v;
    while let Some(at) = rest.bytes().position(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(&rest[..at]);
        match rest.as_bytes()[at] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c => out.push_str(&format!("\\u{c:04x}")),
        }
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out.push('"');
}
