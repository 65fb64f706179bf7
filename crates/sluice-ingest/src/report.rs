//! The error report: one CSV line per rejected value or row, written as errors are found so
//! that even a file where every row is bad never holds its errors in memory twice. Each line
//! names the record (its key, and its name where the type has one) beside the line and the
//! column; the file starts with a UTF-8 BOM so that Excel shows accents. The API and the
//! dashboard render stored errors with the same header and cells ([`stored_csv`]).

pub use sluice_core::cells::csv_cell;
use sluice_core::import::RowError;
use sluice_store::StoredError;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// The first line of every error report: a UTF-8 BOM, then the column names.
pub const HEADER: &str = "\u{feff}line,key,name,column,code,reason,value\r\n";

/// Stored errors as an error report (the API's and the dashboard's download).
pub fn stored_csv(errors: &[StoredError]) -> String {
    let mut out = Vec::from(HEADER.as_bytes());
    for e in errors {
        let line = e.line.to_string();
        // Writing to a Vec cannot fail.
        let _ = write_row(&mut out, &[&line, &e.key, &e.name, &e.column, &e.code, &e.reason, &e.value]);
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Error lines a report holds at most (about 150 MiB); the rest are counted in a last line.
const MAX_LINES: u64 = 1_000_000;

pub struct Report {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    pub count: u64,
}

impl Report {
    pub fn new(path: PathBuf) -> Self {
        Self { path, out: None, count: 0 }
    }

    pub fn add(&mut self, e: &RowError) -> std::io::Result<()> {
        if self.out.is_none() {
            let mut w = BufWriter::new(File::create(&self.path)?);
            w.write_all(HEADER.as_bytes())?;
            self.out = Some(w);
        }
        if let Some(w) = self.out.as_mut().filter(|_| self.count < MAX_LINES) {
            let line = e.line.to_string();
            write_row(w, &[&line, &e.key, &e.name, &e.column, e.code, &e.reason, &e.value])?;
        }
        self.count += 1;
        Ok(())
    }

    /// Flushes the report; returns its path if any error was written.
    pub fn finish(self) -> std::io::Result<Option<PathBuf>> {
        match self.out {
            Some(mut w) => {
                if self.count > MAX_LINES {
                    let reason = format!(
                        "{} more errors are not listed; correct the ones above and send the file again",
                        self.count - MAX_LINES
                    );
                    write_row(&mut w, &["", "", "", "", "truncated", &reason, ""])?;
                }
                w.flush()?;
                w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                Ok(Some(self.path))
            }
            None => Ok(None),
        }
    }
}

fn write_row(w: &mut impl Write, fields: &[&str]) -> std::io::Result<()> {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        w.write_all(csv_cell(f).as_bytes())?;
    }
    w.write_all(b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_a_semicolon_or_tab_locale_would_split_are_quoted() {
        // Excel in a semicolon locale splits an unquoted cell at `;`, and the piece after it
        // starting with `=` would run as a formula.
        assert_eq!(csv_cell("Ann;=cmd|' /C calc'!A0;"), "\"Ann;=cmd|' /C calc'!A0;\"");
        assert_eq!(csv_cell("Ann\t=1+1"), "\"Ann\t=1+1\"");
        assert_eq!(csv_cell("a\nb"), "\"a\nb\"");
        assert_eq!(csv_cell("a\rb"), "\"a\rb\"");
        // A formula start is still neutralised, and the cell quoted when it needs it.
        assert_eq!(csv_cell("=1;2"), "\"'=1;2\"");
        assert_eq!(csv_cell("\t=1"), "\"'\t=1\"");
        assert_eq!(csv_cell("Zoë Núñez"), "Zoë Núñez");
    }

    #[test]
    fn a_report_stops_listing_at_its_limit_and_says_how_many_more() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Report::new(dir.path().join("r.csv"));
        let e = RowError {
            line: 1,
            column: "c".into(),
            code: "x",
            reason: "r".into(),
            value: "v".into(),
            ..Default::default()
        };
        for _ in 0..MAX_LINES + 5 {
            r.add(&e).unwrap();
        }
        let path = r.finish().unwrap().unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(text.lines().count() as u64, 1 + MAX_LINES + 1);
        assert!(text.ends_with(
            ",,,,truncated,\"5 more errors are not listed; correct the ones above and send the file again\",\r\n"
        ));
    }

    #[test]
    fn a_report_names_each_record_and_starts_with_a_bom() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Report::new(dir.path().join("r.csv"));
        let e = RowError {
            line: 7,
            key: "S1024".into(),
            name: "Zoë Núñez".into(),
            column: "birthDate".into(),
            code: "bad_date",
            reason: "expected a date as YYYY-MM-DD".into(),
            value: "31.02.2012".into(),
        };
        r.add(&e).unwrap();
        let bytes = std::fs::read(r.finish().unwrap().unwrap()).unwrap();
        assert!(bytes.starts_with(&[0xEF, 0xBB, 0xBF]), "{bytes:?}");
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(
            text,
            "\u{feff}line,key,name,column,code,reason,value\r\n7,S1024,Zoë Núñez,birthDate,bad_date,expected a date as YYYY-MM-DD,31.02.2012\r\n"
        );
        let stored = StoredError {
            line: 7,
            key: e.key.clone(),
            name: e.name.clone(),
            column: e.column.clone(),
            code: e.code.into(),
            reason: e.reason.clone(),
            value: e.value.clone(),
        };
        assert_eq!(stored_csv(&[stored]), text, "the API's and the dashboard's download is the same report");
    }
}
