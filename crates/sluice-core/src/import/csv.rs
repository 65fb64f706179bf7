//! A streaming RFC 4180 reader: CRLF or LF (or a lone CR), quoted fields with `""` escapes
//! and embedded newlines. Memory is bounded by the row-size limit plus one block: a line far
//! beyond the limit is rejected while it streams past, never held.
//!
//! Structural errors (an unclosed quote, text after a closing quote, an over-long row, too
//! many fields, a quoted value whose lines hold whole rows: a stray quote that swallowed
//! them) reject the whole file: a broken CSV cannot be trusted to line up with its header
//! anywhere after the break. One exception: tab-delimited files as SIS systems write
//! them (PowerSchool AutoSend) do not quote at all, so in a tab file a field that starts with
//! a quote but is not a quoted field (`"Bo" Jr`) is read as the text it is, and so is one
//! whose quote nothing closes on its line when the field runs over a tab or the next line is
//! a whole row (`"Bo`; counted, [`CsvReader::quotes_as_text`], for a warning).
//!
//! The delimiter is a comma, a tab, a semicolon or a pipe: given by the caller, or named by
//! an Excel `sep=;` first line, or else detected from the header line (the candidate that
//! occurs most often outside quotes; a comma on a tie or when none occurs).

use super::decode::{DecodeError, Decoder, Encoding};
use std::io::Read;

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("line {line}: a quoted field opened here is never closed; check for a stray \" character")]
    UnclosedQuote { line: u64 },
    #[error(
        "line {line}: a quoted field opened here is never closed on its line: it runs on over line {to}, which holds what looks like a whole row ({delimiters} delimiters); a \" on line {line} is probably stray or its closing quote missing: fix it and send the file again"
    )]
    SwallowedRows { line: u64, to: u64, delimiters: usize },
    #[error(
        "line {line}: unexpected character after a closing quote; quotes inside a quoted field must be doubled (\"\")"
    )]
    TextAfterQuote { line: u64 },
    #[error(
        "line {line}: the row is longer than {max} bytes; is the file really CSV with one record per line?"
    )]
    RowTooLong { line: u64, max: usize },
    #[error("line {line}: more than {max} fields in one row")]
    TooManyFields { line: u64, max: usize },
    #[error("line {line}: {source}")]
    Decode { line: u64, source: DecodeError },
    #[error("reading the file failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The character between fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimiter {
    Comma,
    Tab,
    Semicolon,
    Pipe,
}

impl Delimiter {
    /// Every delimiter, in the order a tie is decided.
    pub const ALL: [Delimiter; 4] = [Delimiter::Comma, Delimiter::Tab, Delimiter::Semicolon, Delimiter::Pipe];

    pub fn byte(self) -> u8 {
        match self {
            Delimiter::Comma => b',',
            Delimiter::Tab => b'\t',
            Delimiter::Semicolon => b';',
            Delimiter::Pipe => b'|',
        }
    }

    /// The name settings use and imports record: `comma`, `tab`, `semicolon`, `pipe`.
    pub fn name(self) -> &'static str {
        match self {
            Delimiter::Comma => "comma",
            Delimiter::Tab => "tab",
            Delimiter::Semicolon => "semicolon",
            Delimiter::Pipe => "pipe",
        }
    }

    /// A name (`tab`) or the character itself (`;`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == s || (s.len() == 1 && s.as_bytes()[0] == d.byte()))
    }

    fn of_byte(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.byte() == b)
    }
}

impl std::fmt::Display for Delimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One CSV record; fields are valid UTF-8 slices of one buffer.
#[derive(Debug, Default, Clone)]
pub struct Record {
    /// Physical line on which the record starts (1-based).
    pub line: u64,
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Record {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        // Fields are cut at ASCII delimiters of valid UTF-8, so this never fails.
        std::str::from_utf8(&self.buf[start..end]).ok()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| self.get(i).unwrap_or(""))
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    fn end_field(&mut self) {
        self.ends.push(self.buf.len());
    }
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

pub struct CsvReader<R> {
    src: R,
    decoder: Decoder,
    raw: Vec<u8>,
    text: Vec<u8>,
    pos: usize,
    eof: bool,
    line: u64,
    skip_lf: bool,
    max_row_bytes: usize,
    max_fields: usize,
    bytes_read: u64,
    /// Fixed by the caller, or decided when the first record is read.
    delimiter: Option<Delimiter>,
    /// The delimiter a `sep=` first line named (the line is skipped, not a record).
    sep_line: Option<Delimiter>,
    started: bool,
    /// The header's number of fields, once read (0 before).
    width: usize,
    quotes_as_text: QuotesAsText,
}

/// Lines of a tab file on which a field began with a quote that nothing closed on its line,
/// read as text: how many, and the first few.
#[derive(Debug, Default, Clone)]
pub struct QuotesAsText {
    pub count: u64,
    pub lines: Vec<u64>,
}

impl QuotesAsText {
    /// Lines kept, for a warning that names them.
    pub const LINES: usize = 10;
}

const BLOCK: usize = 64 * 1024;

impl<R: Read> CsvReader<R> {
    pub fn new(src: R, max_row_bytes: usize, max_fields: usize) -> Self {
        Self {
            src,
            decoder: Decoder::new(),
            raw: vec![0; BLOCK],
            text: Vec::with_capacity(2 * BLOCK),
            pos: 0,
            eof: false,
            line: 1,
            skip_lf: false,
            max_row_bytes,
            max_fields,
            bytes_read: 0,
            delimiter: None,
            sep_line: None,
            started: false,
            width: 0,
            quotes_as_text: QuotesAsText::default(),
        }
    }

    /// Reads with this delimiter; `None` detects it from the first line (see the module).
    pub fn with_delimiter(mut self, delimiter: Option<Delimiter>) -> Self {
        self.delimiter = delimiter;
        self
    }

    /// A reader of comma-separated values whatever the first line looks like (OneRoster).
    pub fn comma(src: R, max_row_bytes: usize, max_fields: usize) -> Self {
        Self::new(src, max_row_bytes, max_fields).with_delimiter(Some(Delimiter::Comma))
    }

    /// The delimiter in use (after the first record has been read).
    pub fn delimiter(&self) -> Option<Delimiter> {
        self.started.then_some(self.delimiter.unwrap_or(Delimiter::Comma))
    }

    /// Whether the file began with an Excel `sep=X` line, and the delimiter it named.
    pub fn sep_line(&self) -> Option<Delimiter> {
        self.sep_line
    }

    /// The detected encoding (after the first record has been read).
    pub fn encoding(&self) -> Option<Encoding> {
        self.decoder.encoding()
    }

    /// Raw bytes consumed from the source so far (for progress reporting).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    fn fill(&mut self) -> Result<bool, CsvError> {
        if self.eof {
            return Ok(false);
        }
        self.text.drain(..self.pos);
        self.pos = 0;
        loop {
            let n = match self.src.read(&mut self.raw) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            self.bytes_read += n as u64;
            let before = self.text.len();
            if let Err(source) = self.decoder.decode(&self.raw[..n], n == 0, &mut self.text) {
                // The valid text before the bad bytes was appended: the bad bytes are on the
                // line the reader is at plus the line ends still ahead of it.
                let ahead = line_ends(&self.text[self.pos..]);
                return Err(CsvError::Decode { line: self.line + ahead, source });
            }
            if n == 0 {
                self.eof = true;
                return Ok(self.text.len() > before);
            }
            if self.text.len() > before {
                return Ok(true);
            }
        }
    }

    /// The first line as it stands in the buffer (filled until it is whole, or the row
    /// bound or the end of the file is reached), without its line end.
    fn first_line(&mut self) -> Result<&[u8], CsvError> {
        loop {
            let rest = &self.text[self.pos..];
            if rest.iter().any(|&b| b == b'\n' || b == b'\r') || rest.len() > self.max_row_bytes {
                break;
            }
            if !self.fill()? {
                break;
            }
        }
        let rest = &self.text[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n' || b == b'\r').unwrap_or(rest.len());
        Ok(&rest[..end.min(self.max_row_bytes + 1)])
    }

    /// Before the first record: an Excel `sep=X` line, then the delimiter of the header.
    fn start(&mut self) -> Result<(), CsvError> {
        self.started = true;
        let line = self.first_line()?;
        let sep = match line {
            [s, e, p, b'=', d] if [*s, *e, *p].eq_ignore_ascii_case(b"sep") => Delimiter::of_byte(*d),
            _ => None,
        };
        if let Some(sep) = sep {
            self.sep_line = Some(sep);
            self.pos += 5;
            match self.text.get(self.pos) {
                Some(b'\r') => {
                    self.pos += 1;
                    self.skip_lf = true;
                }
                Some(b'\n') => self.pos += 1,
                _ => {}
            }
            self.line += 1;
            if self.delimiter.is_none() {
                self.delimiter = Some(sep);
            }
        }
        if self.delimiter.is_none() {
            if self.skip_lf {
                if self.pos >= self.text.len() {
                    self.fill()?;
                }
                if self.text.get(self.pos) == Some(&b'\n') {
                    self.pos += 1;
                }
                self.skip_lf = false;
            }
            let header = self.first_line()?;
            self.delimiter = Some(detect_delimiter(header));
        }
        Ok(())
    }

    /// Reads the next non-blank record into `rec`; `Ok(false)` at the end of the file.
    pub fn read(&mut self, rec: &mut Record) -> Result<bool, CsvError> {
        if !self.started {
            self.start()?;
        }
        let delim = self.delimiter.unwrap_or(Delimiter::Comma).byte();
        loop {
            rec.clear();
            rec.line = self.line;
            let mut state = State::FieldStart;
            // Whether the quoted field being read had a `""` (then it cannot be read back as
            // plain text: the quotes it had are no longer known).
            let mut doubled = false;
            let mut row_bytes = 0usize;
            let mut any = false;
            loop {
                if self.pos >= self.text.len() && !self.fill()? {
                    if state == State::Quoted && delim == b'\t' && !doubled && rec.line == self.line {
                        // A tab file's last line with a quote that nothing closes: text.
                        self.read_quote_as_text(rec)?;
                        return self.end_record(rec);
                    }
                    if state == State::Quoted {
                        return Err(CsvError::UnclosedQuote { line: rec.line });
                    }
                    if !any {
                        return Ok(false);
                    }
                    return self.end_record(rec);
                }
                let b = self.text[self.pos];
                self.pos += 1;
                if self.skip_lf {
                    self.skip_lf = false;
                    if b == b'\n' {
                        continue;
                    }
                }
                row_bytes += 1;
                if row_bytes > self.max_row_bytes {
                    return Err(CsvError::RowTooLong { line: rec.line, max: self.max_row_bytes });
                }
                let end_of_record = match state {
                    State::FieldStart | State::Unquoted | State::QuoteInQuoted => match b {
                        _ if b == delim => {
                            rec.end_field();
                            if rec.len() > self.max_fields {
                                return Err(CsvError::TooManyFields { line: rec.line, max: self.max_fields });
                            }
                            state = State::FieldStart;
                            any = true;
                            false
                        }
                        b'\r' | b'\n' => {
                            self.skip_lf = b == b'\r';
                            true
                        }
                        b'"' if state == State::FieldStart => {
                            state = State::Quoted;
                            doubled = false;
                            any = true;
                            false
                        }
                        b'"' if state == State::QuoteInQuoted => {
                            rec.buf.push(b'"');
                            doubled = true;
                            state = State::Quoted;
                            false
                        }
                        _ if state == State::QuoteInQuoted && (delim != b'\t' || doubled) => {
                            return Err(CsvError::TextAfterQuote { line: self.line });
                        }
                        _ if state == State::QuoteInQuoted => {
                            // A tab file's `"Bo" Jr`: the quotes were text. Put them back and
                            // read on to the next tab as an unquoted field.
                            let start = rec.ends.last().copied().unwrap_or(0);
                            rec.buf.insert(start, b'"');
                            rec.buf.push(b'"');
                            self.pos -= 1;
                            row_bytes -= 1;
                            state = State::Unquoted;
                            false
                        }
                        _ => {
                            // Copy the whole run up to the next delimiter at once. A quote
                            // inside an unquoted field is kept literally, as spreadsheet
                            // exports produce (`5" pipe`).
                            let rest = &self.text[self.pos..];
                            let run = rest
                                .iter()
                                .position(|&c| c == delim || c == b'\n' || c == b'\r')
                                .unwrap_or(rest.len());
                            row_bytes += run;
                            if row_bytes > self.max_row_bytes {
                                return Err(CsvError::RowTooLong { line: rec.line, max: self.max_row_bytes });
                            }
                            rec.buf.push(b);
                            rec.buf.extend_from_slice(&self.text[self.pos..self.pos + run]);
                            self.pos += run;
                            state = State::Unquoted;
                            any = true;
                            false
                        }
                    },
                    State::Quoted => {
                        match b {
                            b'"' => state = State::QuoteInQuoted,
                            // A tab file's quote that nothing closes on its line, before a row
                            // (PowerSchool writes a nickname typed as `"Bo` as it is): text.
                            b'\n' | b'\r'
                                if delim == b'\t'
                                    && !doubled
                                    && rec.line == self.line
                                    && self.quote_is_text(rec, b)? =>
                            {
                                self.read_quote_as_text(rec)?;
                                self.skip_lf = b == b'\r';
                                self.line += 1;
                                return self.end_record(rec);
                            }
                            b'\n' | b'\r' => {
                                // A line inside a quoted value that holds as many delimiters as
                                // a whole row (of a header of four fields or more): rows
                                // swallowed by a stray quote, which a mirror import would
                                // delete. Refused, not guessed at: a quoted value may hold line
                                // breaks (an address, a note; Excel's tab exports quote such
                                // cells too), whose lines seldom hold that many delimiters.
                                let from = rec.buf[..].iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
                                let from = from.max(rec.ends.last().copied().unwrap_or(0));
                                let delimiters = rec.buf[from..].iter().filter(|&&c| c == delim).count();
                                if self.width >= 4 && delimiters + 1 >= self.width && rec.line < self.line {
                                    return Err(CsvError::SwallowedRows {
                                        line: rec.line,
                                        to: self.line,
                                        delimiters,
                                    });
                                }
                                // A line break in a value is LF, however the file ends its lines:
                                // CRLF, or a lone CR (Excel for Mac's "CSV (Macintosh)"), whose
                                // LF, if one follows, is skipped.
                                self.skip_lf = b == b'\r';
                                self.line += 1;
                                rec.buf.push(b'\n');
                            }
                            _ => {
                                let rest = &self.text[self.pos..];
                                let run = rest
                                    .iter()
                                    .position(|&c| c == b'"' || c == b'\n' || c == b'\r')
                                    .unwrap_or(rest.len());
                                row_bytes += run;
                                if row_bytes > self.max_row_bytes {
                                    return Err(CsvError::RowTooLong {
                                        line: rec.line,
                                        max: self.max_row_bytes,
                                    });
                                }
                                rec.buf.push(b);
                                rec.buf.extend_from_slice(&self.text[self.pos..self.pos + run]);
                                self.pos += run;
                            }
                        }
                        false
                    }
                };
                if end_of_record {
                    self.line += 1;
                    if !any {
                        break; // a blank line: skip it
                    }
                    return self.end_record(rec);
                }
            }
        }
    }

    /// In a tab file, at the line end inside a quoted field opened on this line: whether the
    /// quote is text rather than a quoted value's (Excel quotes a cell with a line break in
    /// its tab exports: `"line one` then `line two"`): the field ran over a tab already, or
    /// the next line holds a whole row's tabs. `b`: the line end just read.
    fn quote_is_text(&mut self, rec: &Record, b: u8) -> Result<bool, CsvError> {
        let start = rec.ends.last().copied().unwrap_or(0);
        let ran_over_a_tab = rec.buf[start..].contains(&b'\t');
        // The next line, filled until it is whole (within the row bound) or the file ends.
        let (tabs, closes, nothing_follows) = loop {
            let mut rest = &self.text[self.pos..];
            if b == b'\r' && rest.first() == Some(&b'\n') {
                rest = &rest[1..];
            }
            let end = rest.iter().position(|&c| c == b'\n' || c == b'\r');
            if let Some(end) = end.or((self.eof || rest.len() > self.max_row_bytes).then_some(rest.len())) {
                let line = &rest[..end];
                break (
                    line.iter().filter(|&&c| c == b'\t').count(),
                    closes_a_quote(line),
                    self.eof && rest.is_empty(),
                );
            }
            self.fill()?; // at the end of the file `eof` is set, and the loop answers
        };
        // Nothing after it: no quote can close it. A quote closed on the next line (a `"`
        // before a tab or the line's end) is a quoted cell's, Excel's `"line one` then
        // `line two"` in any column: a value over two lines.
        Ok(nothing_follows || (!closes && (ran_over_a_tab || (self.width >= 2 && tabs + 1 >= self.width))))
    }

    /// The quoted field of `rec` read again as text: its opening quote put back, each tab in
    /// what followed it the end of a field. Its line is counted among those read so.
    fn read_quote_as_text(&mut self, rec: &mut Record) -> Result<(), CsvError> {
        let start = rec.ends.last().copied().unwrap_or(0);
        let content = rec.buf.split_off(start);
        rec.buf.push(b'"');
        for c in content {
            if c == b'\t' {
                rec.end_field();
                if rec.len() > self.max_fields {
                    return Err(CsvError::TooManyFields { line: rec.line, max: self.max_fields });
                }
            } else {
                rec.buf.push(c);
            }
        }
        self.quotes_as_text.count += 1;
        if self.quotes_as_text.lines.len() < QuotesAsText::LINES {
            self.quotes_as_text.lines.push(rec.line);
        }
        Ok(())
    }

    /// The lines of a tab file whose field began with a quote that nothing closed on its line,
    /// read as text (see [`Self::read`]).
    pub fn quotes_as_text(&self) -> &QuotesAsText {
        &self.quotes_as_text
    }

    /// Ends the last field of a record, at a line end or at the end of the file alike.
    fn end_record(&mut self, rec: &mut Record) -> Result<bool, CsvError> {
        rec.end_field();
        if rec.len() > self.max_fields {
            return Err(CsvError::TooManyFields { line: rec.line, max: self.max_fields });
        }
        if self.width == 0 {
            // The header's width, its trailing empty names left out (a spreadsheet's empty
            // columns, which lenient reading ignores).
            self.width = (0..rec.len())
                .rev()
                .find(|&i| !rec.get(i).unwrap_or("").trim().is_empty())
                .map_or(rec.len(), |i| i + 1);
        } else if self.width >= 3 {
            self.check_lines_of(rec)?;
        }
        Ok(true)
    }

    /// A record whose quoted value ran over lines, read line by line with its quotes as text:
    /// when its last line is a whole row (as many delimiters as the header) and the record has
    /// the wrong width, or (headers of four columns or more; a value between two others) its
    /// first line is a whole row too, a stray quote closed a line on swallowed that row. Refused: read through, the swallowed
    /// record would be missing from a mirror and deleted. (A record of the right width is not
    /// judged by its last line alone: a quoted address's `City, ST` line, first on its row,
    /// looks the same; nor is its first line a whole row.)
    fn check_lines_of(&self, rec: &Record) -> Result<(), CsvError> {
        let Some(last) = rec.buf.iter().rposition(|&c| c == b'\n') else { return Ok(()) };
        let first = rec.buf.iter().position(|&c| c == b'\n').unwrap_or(last);
        let delim = self.delimiter.unwrap_or(Delimiter::Comma).byte();
        let count = |bytes: &[u8]| bytes.iter().filter(|&&c| c == delim).count();
        // The fields before the first line break each end at a delimiter; so do those after
        // the last one, but for the record's last field.
        let (opened_in, closed_in) =
            (rec.ends.partition_point(|&e| e <= first), rec.ends.partition_point(|&e| e <= last));
        let first_line = count(&rec.buf[..first]) + opened_in;
        let last_line = count(&rec.buf[last + 1..]) + (rec.len() - 1).saturating_sub(closed_in);
        let whole = |delimiters: usize| delimiters + 1 == self.width;
        // Within a row (fields before and after it): a value in the last column whose last
        // line has commas (`City, ST, ZIP, Country`) is no sign.
        let within = opened_in > 0 && closed_in + 1 < rec.len();
        if whole(last_line) && (rec.len() != self.width || (self.width >= 4 && within && whole(first_line))) {
            let to = rec.line + rec.buf.iter().filter(|&&c| c == b'\n').count() as u64;
            return Err(CsvError::SwallowedRows { line: rec.line, to, delimiters: last_line });
        }
        Ok(())
    }
}

/// Whether a tab file's line closes a quoted value: a `"` (not a doubled `""`) before a tab or
/// the line's end.
fn closes_a_quote(line: &[u8]) -> bool {
    let mut i = 0;
    while i < line.len() {
        match (line[i], line.get(i + 1)) {
            (b'"', Some(b'"')) => i += 2,
            (b'"', None | Some(b'\t')) => return true,
            _ => i += 1,
        }
    }
    false
}

/// Line ends in `text` (CRLF counted once).
fn line_ends(text: &[u8]) -> u64 {
    let mut n = 0;
    for (i, &b) in text.iter().enumerate() {
        if b == b'\n' || (b == b'\r' && text.get(i + 1) != Some(&b'\n')) {
            n += 1;
        }
    }
    n
}

/// The candidate occurring most often outside quotes in a header line (a comma on a tie or
/// when none occurs).
fn detect_delimiter(line: &[u8]) -> Delimiter {
    let mut counts = [0usize; 4];
    let mut quoted = false;
    for &b in line {
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(i) = Delimiter::ALL.iter().position(|d| d.byte() == b) {
            counts[i] += 1;
        }
    }
    let mut best = 0;
    for i in 1..4 {
        if counts[i] > counts[best] {
            best = i;
        }
    }
    Delimiter::ALL[best]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Result<Vec<(u64, Vec<String>)>, CsvError> {
        let mut r = CsvReader::new(input, 1 << 20, 1000);
        let mut rec = Record::default();
        let mut out = Vec::new();
        while r.read(&mut rec)? {
            out.push((rec.line, rec.iter().map(str::to_owned).collect()));
        }
        Ok(out)
    }

    /// A tab file (detected from its header) reads a field whose quotes are text as text,
    /// as PowerSchool writes a nickname; a real quoted field still reads as one; a comma file
    /// keeps the structural error; a quoted field with `""` cannot be read back and is refused.
    #[test]
    fn quotes_that_are_text_in_a_tab_file_are_read_as_text() {
        let rows =
            parse(b"id\tfirst\tlast\n1\t\"Bo\" Jr\tLee\n2\t\"Ann\tMarie\"\tRay\n3\tx\"y\tz\n").unwrap();
        assert_eq!(
            fields(&rows),
            [
                vec!["id", "first", "last"],
                vec!["1", "\"Bo\" Jr", "Lee"],
                vec!["2", "Ann\tMarie", "Ray"],
                vec!["3", "x\"y", "z"]
            ]
        );
        assert!(matches!(parse(b"id,first\n1,\"Bo\" Jr\n"), Err(CsvError::TextAfterQuote { line: 2 })));
        assert!(matches!(parse(b"id\tfirst\n1\t\"a\"\"b\" c\n"), Err(CsvError::TextAfterQuote { line: 2 })));
    }

    /// A quoted value may hold line breaks, in a tab file as in a comma file (Excel's tab
    /// exports quote a cell with one); but one whose lines are whole rows is a stray quote
    /// (`"Bo`, then `Di"` rows later, as a PowerSchool nickname may be): refused, naming its
    /// line, not read through (the rows between became one name, and a mirror deleted them).
    #[test]
    fn a_stray_quote_that_swallows_rows_refuses_the_file() {
        let rows = parse(b"id\tname\tnote\tgrade\r\n1\tAl\t\"Line one\nLine two\"\t3\r\n").unwrap();
        assert_eq!(
            fields(&rows),
            [vec!["id", "name", "note", "grade"], vec!["1", "Al", "Line one\nLine two", "3"]]
        );
        let rows = parse(b"id,name,notes\n1,Al,\"Allergies:\nPeanuts, tree nuts, eggs\nEpiPen in office\"\n")
            .unwrap();
        assert_eq!(rows.len(), 2, "a narrow file's note with commas");
        // A comma file keeps RFC 4180: a quoted value may hold a line break (an address's
        // lines, with a comma or two)...
        let rows = parse(b"id,note,a,b\n1,\"two\nlines, and, more\nthree\",a,b\n2,x,a,b\n").unwrap();
        assert_eq!(
            fields(&rows),
            [
                vec!["id", "note", "a", "b"],
                vec!["1", "two\nlines, and, more\nthree", "a", "b"],
                vec!["2", "x", "a", "b"]
            ]
        );
        // A CRLF inside a quoted value reads as LF, as Excel's line breaks in a cell are; so
        // does a lone CR (Excel for Mac's "CSV (Macintosh)" ends every line so), its lines
        // counted.
        let rows = parse(b"id,note\r\n1,\"two\r\nlines\"\r\n").unwrap();
        assert_eq!(fields(&rows), [vec!["id", "note"], vec!["1", "two\nlines"]]);
        let rows = parse(b"id,note\r1,\"two\rlines\"\r2,x\r").unwrap();
        assert_eq!(fields(&rows), [vec!["id", "note"], vec!["1", "two\nlines"], vec!["2", "x"]]);
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 4]);
        // ...but a quoted value whose lines are whole rows is a stray quote: refused, naming
        // its line (read through, the rows between were one name, and a mirror deleted them).
        for (sep, file) in [
            (",", "id,first,last,grade\n1,Al,Lee,3\n2,\"Bo,Ray,3\n3,Cy,Doe,3\n4,Di\",Fox,3\n5,Ed,Orr,3\n"),
            (";", "id;first;last;grade\r\n2;\"Bo;Ray;3\r\n3;Cy;Doe;3\r\n4;Di\";Fox;3\r\n"),
            ("\r", "id,first,last,grade\r2,\"Bo,Ray,3\r3,Cy,Doe,3\r4,Di\",Fox,3\r"),
        ] {
            let err = parse(file.as_bytes()).unwrap_err();
            let line = if sep == "," { 3 } else { 2 };
            assert!(
                matches!(err, CsvError::SwallowedRows { line: l, to, delimiters: 3 } if l == line && to == line + 1),
                "{sep}: {err}"
            );
        }
        // A stray quote closed on the very next line swallows one row: the record that results
        // has the wrong number of fields, and the line it closed on is a whole row. Refused
        // too, naming both lines (rejected as one bad row, the swallowed student was deleted).
        for file in [
            "id,first,last,grade\n1,Al,Lee,3\n2,\"Bo,Ray,3\n3,Cy,Doe\",3\n4,Di,Fox,3\n",
            "id;first;last;grade\r\n2;\"Bo;Ray;3\r\n3;Cy;Doe\";3\r\n",
        ] {
            let err = parse(file.as_bytes()).unwrap_err();
            let line = if file.contains("1,Al") { 3 } else { 2 };
            assert!(
                matches!(err, CsvError::SwallowedRows { line: l, to, delimiters: 3 } if l == line && to == line + 1),
                "{file:?}: {err}"
            );
        }
        // The stray quote and its closing one in the same column make a record of the right
        // width, but its first and last lines are whole rows: refused.
        let err =
            parse(b"id,first,last,grade\n1,Al,Lee,3\n2,\"Bo,Ray,3\n3,Cy\",Doe,3\n4,Di,Fox,3\n").unwrap_err();
        assert!(matches!(err, CsvError::SwallowedRows { line: 3, to: 4, delimiters: 3 }), "{err}");
        // A row that is merely short, its quoted address on two lines ("City, ST" on the
        // second), is one bad row, not a stray quote: read, for the row check to reject; so
        // is a whole row's address whose first line ends the row's first fields.
        let rows = parse(b"id,address,a,b\n1,\"12 Main St\nSpringfield, IL\",a\n2,x,a,b\n").unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].1.len(), 3);
        let rows = parse(b"id,a,b,address\n1,a,b,\"12 Main St\nSpringfield, IL, 62704, USA\"\n").unwrap();
        assert_eq!(rows[1].1.len(), 4);
        // A header's trailing empty columns (a spreadsheet's) are not part of a whole row: a
        // valid three-field row whose address has four commas on its last line is read.
        let rows =
            parse(b"id,name,address,,\n1,Ann,\"12 Main St\nApt 4, Springfield, IL, 62704, USA\"\n").unwrap();
        assert_eq!(rows[1].1.len(), 3);
    }

    /// A tab file's field that begins with a quote nothing closes on its line (a nickname
    /// typed `"Bo` in the SIS, which PowerSchool writes as it is) is text when the field ran
    /// over a tab or the next line is a whole row: read, each such line counted, where it
    /// used to refuse the file. A quoted cell over two lines (Excel) still reads as one value;
    /// a comma file keeps RFC 4180 (refused, as above).
    #[test]
    fn a_quote_nothing_closes_on_its_line_is_text_in_a_tab_file() {
        let read = |file: &[u8]| {
            let mut r = CsvReader::new(file, 1 << 20, 64);
            let mut rec = Record::default();
            let mut out = Vec::new();
            while r.read(&mut rec).unwrap() {
                out.push(rec.iter().map(str::to_owned).collect::<Vec<_>>());
            }
            (out, r.quotes_as_text().clone())
        };
        for file in [
            &b"id\tfirst\tlast\tgrade\r\n2\t\"Bo\tRay\t3\r\n3\tCy\tDoe\t3\r\n4\tDi\"\tFox\t3\r\n"[..],
            b"id\tfirst\tlast\tgrade\n2\t\"Bo\tRay\t3\n3\tCy\tDoe\t3\n4\tDi\"\tFox\t3",
        ] {
            let (rows, quotes) = read(file);
            assert_eq!(
                rows,
                [
                    ["id", "first", "last", "grade"],
                    ["2", "\"Bo", "Ray", "3"],
                    ["3", "Cy", "Doe", "3"],
                    ["4", "Di\"", "Fox", "3"]
                ]
            );
            assert_eq!((quotes.count, quotes.lines), (1, vec![2]));
        }
        // In the last column, before a whole row; on the file's last line without a line end;
        // after a CR alone.
        let (rows, quotes) = read(b"id\tfirst\tnick\n1\tAl\t\"Bo\n2\tCy\tDi\n3\tEd\t\"Ty");
        assert_eq!(
            rows,
            [["id", "first", "nick"], ["1", "Al", "\"Bo"], ["2", "Cy", "Di"], ["3", "Ed", "\"Ty"]]
        );
        assert_eq!((quotes.count, quotes.lines), (2, vec![2, 4]));
        let (rows, _) = read(b"id\tnick\r1\t\"Bo\r2\tCy\r");
        assert_eq!(rows, [["id", "nick"], ["1", "\"Bo"], ["2", "Cy"]]);
        // A quoted cell over two lines, as Excel's tab export writes it, is one value: in the
        // middle, in the first column (its next line holds a whole row's tabs), holding a tab,
        // with a doubled quote.
        for (file, cell) in [
            (&b"id\tnote\tgrade\n1\t\"line one\nline two\"\t3\n2\tx\t4\n"[..], (1, "line one\nline two")),
            (b"note\tid\tgrade\n\"line one\nline two\"\t1\t3\n", (0, "line one\nline two")),
            (b"id\tnote\tgrade\n1\t\"a\tb\nc\"\t3\n", (1, "a\tb\nc")),
            (b"id\tnote\tgrade\n1\t\"say\n\"\"hi\"\"\"\t3\n", (1, "say\n\"hi\"")),
        ] {
            let (rows, quotes) = read(file);
            assert_eq!((rows[1].len(), rows[1][cell.0].as_str()), (3, cell.1), "{file:?}");
            assert_eq!(quotes.count, 0, "{file:?}");
        }
        // The last row's quote, its line ended as every line is: nothing after it can close it.
        let (rows, quotes) = read(b"id\tnick\n1\tAl\n2\t\"Ty\n");
        assert_eq!((rows[2][1].as_str(), quotes.lines), ("\"Ty", vec![3]));
    }

    fn fields(rows: &[(u64, Vec<String>)]) -> Vec<Vec<&str>> {
        rows.iter().map(|(_, f)| f.iter().map(String::as_str).collect()).collect()
    }

    #[test]
    fn rfc4180_basics() {
        let rows = parse(b"a,b,c\r\n1,\"x, y\",\"say \"\"hi\"\"\"\r\n2,,\n").unwrap();
        assert_eq!(fields(&rows), [vec!["a", "b", "c"], vec!["1", "x, y", "say \"hi\""], vec!["2", "", ""]]);
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3]);
    }

    /// Found by the `csv_reader` fuzz target: a last line without a line end was not held to
    /// the field bound (it could hold one field more than `max_fields`; minimised: `,,,,,,,,`
    /// with a bound of 8).
    #[test]
    fn the_field_bound_holds_on_a_last_line_without_a_line_end() {
        for input in [&b"a,b,c"[..], b"x\na,b,c", b"a,b,\"c\"", b"a,b,"] {
            let mut r = CsvReader::new(input, 1 << 20, 2);
            let mut rec = Record::default();
            let err = loop {
                match r.read(&mut rec) {
                    Ok(true) => assert!(rec.len() <= 2, "{} fields from {input:?}", rec.len()),
                    Ok(false) => panic!("{input:?} was read whole"),
                    Err(e) => break e,
                }
            };
            assert!(matches!(err, CsvError::TooManyFields { max: 2, .. }), "{input:?}: {err}");
        }
        let mut r = CsvReader::new(&b"a,b"[..], 1 << 20, 2);
        let mut rec = Record::default();
        assert!(r.read(&mut rec).unwrap() && rec.len() == 2, "two fields are within the bound");
    }

    #[test]
    fn embedded_newlines_advance_line_numbers() {
        let rows = parse(b"id,note\n1,\"two\nlines\"\n2,after\n").unwrap();
        assert_eq!(fields(&rows)[1], ["1", "two\nlines"]);
        assert_eq!(rows[2].0, 4);
    }

    #[test]
    fn blank_lines_and_missing_final_newline() {
        let rows = parse(b"a\n\n1\r\n\r\n2").unwrap();
        assert_eq!(fields(&rows), [vec!["a"], vec!["1"], vec!["2"]]);
        assert_eq!(rows[2].0, 5);
        assert!(parse(b"").unwrap().is_empty());
        assert_eq!(fields(&parse(b"a,b").unwrap()), [vec!["a", "b"]]);
        // A lone CR ends a line too (old Mac exports).
        assert_eq!(fields(&parse(b"a\r1\r").unwrap()), [vec!["a"], vec!["1"]]);
    }

    #[test]
    fn a_quote_inside_an_unquoted_field_is_literal() {
        assert_eq!(fields(&parse(b"size\n5\" pipe\n").unwrap())[1], ["5\" pipe"]);
    }

    #[test]
    fn structural_errors_name_the_line() {
        assert!(matches!(parse(b"a\n\"open\n1\n2\n"), Err(CsvError::UnclosedQuote { line: 2 })));
        assert!(matches!(parse(b"a\n\"x\"y\n"), Err(CsvError::TextAfterQuote { line: 2 })));
        let mut r = CsvReader::new(&b"a\nxxxxxxxxxxxxxxxxxxxx\n"[..], 10, 100);
        let mut rec = Record::default();
        assert!(r.read(&mut rec).unwrap());
        assert!(matches!(r.read(&mut rec), Err(CsvError::RowTooLong { line: 2, max: 10 })));
        let wide = "x,".repeat(20);
        let mut r = CsvReader::new(wide.as_bytes(), 1 << 20, 10);
        assert!(matches!(r.read(&mut rec), Err(CsvError::TooManyFields { line: 1, max: 10 })));
    }

    #[test]
    fn an_endless_line_is_rejected_without_being_held() {
        struct Endless(u64);
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.0 += buf.len() as u64;
                buf.fill(b'x');
                Ok(buf.len())
            }
        }
        let mut r = CsvReader::new(Endless(0), 1 << 20, 100);
        let mut rec = Record::default();
        assert!(matches!(r.read(&mut rec), Err(CsvError::RowTooLong { line: 1, .. })));
        assert!(r.bytes_read() < 2 << 20, "read {} bytes", r.bytes_read());
        assert!(rec.buf.capacity() < 2 << 20);
    }

    fn parse_with(input: &[u8], block: usize) -> (Vec<Vec<String>>, Option<Delimiter>, Option<Delimiter>) {
        struct Blocks<'a>(&'a [u8], usize);
        impl Read for Blocks<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut r = CsvReader::new(Blocks(input, block), 1 << 20, 1000);
        let mut rec = Record::default();
        let mut out = Vec::new();
        while r.read(&mut rec).unwrap() {
            out.push(rec.iter().map(str::to_owned).collect());
        }
        (out, r.delimiter(), r.sep_line())
    }

    /// As SIS systems write them: PowerSchool AutoSend (tabs, CR-LF, no quotes, commas in
    /// names), European Excel (BOM, `sep=;`, semicolons), pipes; any block size.
    #[test]
    fn the_delimiter_is_detected_from_the_header_line_or_a_sep_line() {
        for block in [1, 2, 3, 5, 64, 1 << 16] {
            let (rows, d, sep) = parse_with(b"Student_Number\tLast_Name\r\n1\tLee, Jr.\r\n", block);
            assert_eq!((d, sep), (Some(Delimiter::Tab), None));
            assert_eq!(rows, [vec!["Student_Number", "Last_Name"], vec!["1", "Lee, Jr."]]);
            let excel = "\u{feff}sep=;\r\nid;name\r\n1;Zoë, A\r\n";
            let (rows, d, sep) = parse_with(excel.as_bytes(), block);
            assert_eq!((d, sep), (Some(Delimiter::Semicolon), Some(Delimiter::Semicolon)));
            assert_eq!(rows, [vec!["id", "name"], vec!["1", "Zoë, A"]]);
            let (rows, d, _) = parse_with(b"id|name|note\n1|Ann|\"a|b\"\n", block);
            assert_eq!(d, Some(Delimiter::Pipe));
            assert_eq!(rows[1], ["1", "Ann", "a|b"]);
            // Quotes are respected: the commas inside the quoted names do not count.
            let (_, d, _) = parse_with(b"\"a,b,c\";\"d,e\";f\n", block);
            assert_eq!(d, Some(Delimiter::Semicolon));
            // One column, or a tie: a comma.
            assert_eq!(parse_with(b"id\n1\n", block).1, Some(Delimiter::Comma));
            assert_eq!(parse_with(b"a,b;c\n", block).1, Some(Delimiter::Comma));
            // A sep= line names a delimiter sluice reads, or it is the header.
            let (rows, d, sep) = parse_with(b"sep=:\na\n", block);
            assert_eq!((rows[0][0].as_str(), d, sep), ("sep=:", Some(Delimiter::Comma), None));
        }
        // Lines are counted from the file: the sep= line is line 1.
        let mut r = CsvReader::new(&b"sep=;\nid;name\n1;Ann\n"[..], 1 << 20, 10);
        let mut rec = Record::default();
        assert!(r.read(&mut rec).unwrap());
        assert_eq!(rec.line, 2);
        // Fixed by the caller: the header is not looked at.
        let mut r = CsvReader::new(&b"a\tb\n"[..], 1 << 20, 10).with_delimiter(Some(Delimiter::Comma));
        assert!(r.read(&mut rec).unwrap());
        assert_eq!((rec.len(), r.delimiter()), (1, Some(Delimiter::Comma)));
        assert_eq!(Delimiter::parse("\t"), Some(Delimiter::Tab));
        assert_eq!(Delimiter::parse("semicolon"), Some(Delimiter::Semicolon));
        assert_eq!(Delimiter::parse("colon"), None);
    }

    /// A file that turns from UTF-8 to Latin-1 half way is refused at the line of the first
    /// bad byte, whatever the block size.
    #[test]
    fn an_encoding_error_names_its_line() {
        let mut file = b"id,name\r\n".to_vec();
        // Past the first 64 KiB, which decide the encoding.
        for i in 1..9000 {
            file.extend_from_slice(format!("{i},Zoë\r\n").as_bytes());
        }
        file.extend_from_slice(b"9000,Jos\xe9\r\n9001,Ann\r\n");
        for block in [7, 4096, 1 << 16] {
            struct Blocks<'a>(&'a [u8], usize);
            impl Read for Blocks<'_> {
                fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                    let n = self.0.len().min(self.1).min(buf.len());
                    buf[..n].copy_from_slice(&self.0[..n]);
                    self.0 = &self.0[n..];
                    Ok(n)
                }
            }
            let mut r = CsvReader::new(Blocks(&file, block), 1 << 20, 10);
            let mut rec = Record::default();
            let err = loop {
                match r.read(&mut rec) {
                    Ok(true) => {}
                    Ok(false) => panic!("read to the end"),
                    Err(e) => break e,
                }
            };
            assert!(matches!(err, CsvError::Decode { line: 9001, .. }), "block {block}: {err}");
            assert!(err.to_string().starts_with("line 9001: invalid UTF-8"), "{err}");
        }
    }
}
