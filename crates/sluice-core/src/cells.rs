//! Cells as spreadsheets read them: the one rule for what leaves sluice in a CSV file (error
//! reports, `records --format csv`, exports). A cell a spreadsheet would run as a formula is
//! neutralised with a leading `'`; a plain number (`+13125550107`, `-4.5`, `1e3`) is left as
//! it is, since a spreadsheet reads it as a number, not a formula.

/// Whether a spreadsheet would take `value` as a formula (or a DDE command) when opening a
/// CSV file: it starts with `=`, `+`, `-`, `@`, a tab or a carriage return, and is not a plain
/// number.
pub fn runs_as_formula(value: &str) -> bool {
    value.starts_with(['=', '+', '-', '@', '\t', '\r']) && !is_plain_number(value)
}

/// `[+-]digits[.digits][e[+-]digits]`: what a spreadsheet reads as a number.
fn is_plain_number(v: &str) -> bool {
    let b = v.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

/// One CSV cell (RFC 4180): neutralised if it would run as a formula, quoted when it holds a
/// delimiter a spreadsheet might split on, a quote, a line break, or edge spaces.
pub fn csv_cell(value: &str) -> String {
    let v = if runs_as_formula(value) { format!("'{value}") } else { value.to_owned() };
    if v.contains([',', ';', '\t', '"', '\n', '\r']) || v.starts_with(' ') || v.ends_with(' ') {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"http://x\")"), "\"'=HYPERLINK(\"\"http://x\"\")\"");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("-2+3"), "'-2+3");
        assert_eq!(csv_cell("+1 312 555 0107"), "'+1 312 555 0107");
        assert_eq!(csv_cell("\tx"), "\"'\tx\"");
    }

    /// Plain numbers are what a spreadsheet reads as numbers: they are not corrupted with a
    /// `'` (a phone number written as `+13125550107` stays as it is).
    #[test]
    fn plain_numbers_are_left_as_they_are() {
        for n in ["+13125550107", "+1", "-5", "-4.5", "+0.25", "1e3", "-2.5E-4", "007"] {
            assert_eq!(csv_cell(n), n, "{n}");
            assert!(!runs_as_formula(n), "{n}");
        }
        for f in ["+", "-", "-.5", "+1.", "1e", "-1e+", "+1-1", "-A1", "+cmd|' /C calc'!A0"] {
            assert!(runs_as_formula(f) || !f.starts_with(['+', '-']), "{f}");
        }
        assert!(runs_as_formula("+cmd|' /C calc'!A0"));
        assert!(runs_as_formula("-1+1"));
    }
}
