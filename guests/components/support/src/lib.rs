//! Helpers shared by the guest components. Plain Rust: no bindings, no I/O.

/// The `detail` of a `panic` event-log line: `{"message": "..."}` with the
/// panic's text escaped as a JSON string. The host names this message in
/// the crash reason (the default panic hook would try to print to stderr,
/// which the host does not provide).
pub fn panic_detail(info: &std::panic::PanicHookInfo<'_>) -> String {
    format!("{{\"message\":\"{}\"}}", json_escape(&info.to_string()))
}

/// `text` escaped for use inside a JSON string.
pub fn json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}
