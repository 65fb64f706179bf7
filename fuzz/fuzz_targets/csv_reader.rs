//! Encoding detection and decoding (`sluice_core::import::decode`) and the streaming RFC 4180
//! reader (`sluice_core::import::csv`) on arbitrary bytes, with a small and the default row
//! bound, read in one block and in small blocks.
//!
//! Invariants: no panic; every record holds at most `max_fields` fields and at most
//! `max_row_bytes` bytes (the memory bound); every field is valid UTF-8; record line numbers
//! increase; reading never reports more bytes than the input has; the same input read in
//! other blocks gives the same records whenever both reads succeed with the same encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::import::{CsvReader, Encoding, Record};
use std::io::Read;

/// A source that hands out its bytes in blocks of the given size.
struct Blocks<'a> {
    data: &'a [u8],
    block: usize,
}

impl Read for Blocks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.block.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

type Outcome = (Vec<(u64, Vec<String>)>, bool, Option<Encoding>);

fn read_all(data: &[u8], block: usize, max_row_bytes: usize, max_fields: usize) -> Outcome {
    let mut csv = CsvReader::new(Blocks { data, block }, max_row_bytes, max_fields);
    let mut rec = Record::default();
    let mut records = Vec::new();
    let mut last_line = 0;
    let ok = loop {
        match csv.read(&mut rec) {
            Ok(true) => {}
            Ok(false) => break true,
            Err(_) => break false,
        }
        assert!(rec.line > last_line, "line {} after line {last_line}", rec.line);
        last_line = rec.line;
        assert!(!rec.is_empty());
        assert!(rec.len() <= max_fields, "{} fields, bound {max_fields}", rec.len());
        let fields: Vec<String> =
            (0..rec.len()).map(|i| rec.get(i).expect("a field is not valid UTF-8").to_owned()).collect();
        let bytes: usize = fields.iter().map(String::len).sum();
        assert!(bytes <= max_row_bytes, "a record of {bytes} bytes, bound {max_row_bytes}");
        records.push((rec.line, fields));
    };
    assert!(csv.bytes_read() <= data.len() as u64);
    (records, ok, csv.encoding())
}

fuzz_target!(|data: &[u8]| {
    // A block size that follows the input, so block boundaries fall everywhere.
    let small = 1 + data.iter().fold(0usize, |h, &b| h.wrapping_mul(31).wrapping_add(b.into())) % 13;
    for (max_row_bytes, max_fields) in [(64, 8), (64 << 10, 1000)] {
        let whole = read_all(data, 64 << 10, max_row_bytes, max_fields);
        let cut = read_all(data, small, max_row_bytes, max_fields);
        if whole.1 && cut.1 && whole.2 == cut.2 {
            assert_eq!(whole.0, cut.0, "blocks of {small} bytes read other records");
        }
    }
});
