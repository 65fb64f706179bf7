//! Encoding detection and streaming decoding to UTF-8.
//!
//! The encoding is decided from the first block: a BOM (UTF-8, UTF-16 LE/BE) wins; otherwise
//! valid UTF-8 is UTF-8 (reported as ASCII if no byte above 0x7F ever appears), and anything
//! else is Windows-1252 (a superset of ISO-8859-1's printable range). A NUL byte outside
//! UTF-16 means the file is not text. A file read as UTF-8 that turns invalid before any
//! non-ASCII byte was seen is Windows-1252 from the start (Excel's "CSV (Comma delimited)"
//! reaches its first accent after thousands of ASCII rows; ASCII decodes identically in
//! both). One that turns invalid after real UTF-8 characters is rejected as mixed encodings
//! rather than silently mis-decoded (in its first block too when those characters are ones
//! Windows-1252 practically never spells, below); and so is one read as Windows-1252 in
//! which such UTF-8 characters then appear (a UTF-8 accented Latin letter, smart quote, dash
//! or euro sign: `Ã©`, `â€™`, `â‚¬` read as Windows-1252).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Ascii,
    Utf8,
    Utf8Bom,
    Utf16Le,
    Utf16Be,
    Windows1252,
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Ascii => "ascii",
            Encoding::Utf8 => "utf-8",
            Encoding::Utf8Bom => "utf-8 (with BOM)",
            Encoding::Utf16Le => "utf-16le",
            Encoding::Utf16Be => "utf-16be",
            Encoding::Windows1252 => "windows-1252",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "the file is not text (it contains NUL bytes near byte {offset}); upload a CSV file saved as UTF-8"
    )]
    NotText { offset: u64 },
    #[error(
        "invalid UTF-8 at byte {offset}: the file starts as UTF-8 but mixes in another encoding; re-export it as UTF-8"
    )]
    MixedEncoding { offset: u64 },
    #[error(
        "UTF-8 text at byte {offset} in a file whose earlier bytes are not UTF-8 (Windows-1252): the file mixes encodings; re-export it as UTF-8"
    )]
    Utf8AfterLegacy { offset: u64 },
    #[error("the file ends in the middle of a UTF-16 character; it is truncated")]
    TruncatedUtf16,
    #[error("invalid UTF-16 at byte {offset} (half of a surrogate pair alone); re-export the file as UTF-8")]
    BadUtf16 { offset: u64 },
}

/// Turns raw byte blocks into UTF-8, keeping partial characters between blocks.
pub struct Decoder {
    encoding: Option<Encoding>,
    carry: Vec<u8>,
    offset: u64,
    saw_non_ascii: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self { encoding: None, carry: Vec::new(), offset: 0, saw_non_ascii: false }
    }

    /// The encoding, once the first block has been seen. UTF-8 without any non-ASCII byte
    /// reports as ASCII.
    pub fn encoding(&self) -> Option<Encoding> {
        match self.encoding {
            Some(Encoding::Utf8) if !self.saw_non_ascii => Some(Encoding::Ascii),
            other => other,
        }
    }

    /// Decodes one block, appending UTF-8 to `out`. `last` flushes what is carried.
    pub fn decode(&mut self, block: &[u8], last: bool, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        let mut input = std::mem::take(&mut self.carry);
        input.extend_from_slice(block);
        let mut data: &[u8] = &input;
        if self.encoding.is_none() {
            if data.len() < 4 && !last {
                self.carry = input;
                return Ok(());
            }
            let (enc, bom) = detect(data);
            self.encoding = Some(enc);
            data = &data[bom..];
            self.offset += bom as u64;
        }
        let consumed = match self.encoding.unwrap_or(Encoding::Utf8) {
            Encoding::Utf8 | Encoding::Utf8Bom | Encoding::Ascii => self.utf8(data, last, out)?,
            Encoding::Windows1252 => self.windows_1252(data, 0, last, out)?,
            Encoding::Utf16Le | Encoding::Utf16Be => self.utf16(data, last, out)?,
        };
        self.offset += consumed as u64;
        self.carry = data[consumed..].to_vec();
        Ok(())
    }

    fn utf8(&mut self, data: &[u8], last: bool, out: &mut Vec<u8>) -> Result<usize, DecodeError> {
        if let Some(nul) = memchr0(data) {
            return Err(DecodeError::NotText { offset: self.offset + nul as u64 });
        }
        match std::str::from_utf8(data) {
            Ok(s) => {
                self.saw_non_ascii |= !s.is_ascii();
                out.extend_from_slice(data);
                Ok(data.len())
            }
            Err(e) => {
                let valid = e.valid_up_to();
                self.saw_non_ascii |= !data[..valid].is_ascii();
                out.extend_from_slice(&data[..valid]);
                // An incomplete character at the end of a block is completed by the next.
                if e.error_len().is_none() && !last {
                    return Ok(valid);
                }
                if !self.saw_non_ascii {
                    // Nothing but ASCII so far, which Windows-1252 decodes identically.
                    self.encoding = Some(Encoding::Windows1252);
                    return Ok(valid + self.windows_1252(&data[valid..], valid, last, out)?);
                }
                Err(DecodeError::MixedEncoding { offset: self.offset + valid as u64 })
            }
        }
    }

    /// Decodes `data` (found `at` bytes past the current offset) as Windows-1252, refusing
    /// UTF-8 characters in it ([`utf8_in_legacy`]); one cut at the end of a block (not the
    /// last) is left for the next.
    fn windows_1252(
        &self,
        data: &[u8],
        at: usize,
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<usize, DecodeError> {
        if let Some(nul) = memchr0(data) {
            return Err(DecodeError::NotText { offset: self.offset + (at + nul) as u64 });
        }
        for (i, &b) in data.iter().enumerate() {
            match utf8_in_legacy(&data[i..]) {
                Some(true) => {
                    return Err(DecodeError::Utf8AfterLegacy { offset: self.offset + (at + i) as u64 });
                }
                None if !last => return Ok(i),
                _ => push_char(out, windows_1252(b)),
            }
        }
        Ok(data.len())
    }

    fn utf16(&mut self, data: &[u8], last: bool, out: &mut Vec<u8>) -> Result<usize, DecodeError> {
        let le = self.encoding == Some(Encoding::Utf16Le);
        let units = data.len() / 2;
        let mut i = 0;
        while i < units {
            let unit = |k: usize| {
                let (a, b) = (data[2 * k], data[2 * k + 1]);
                if le { u16::from_le_bytes([a, b]) } else { u16::from_be_bytes([a, b]) }
            };
            let u = unit(i);
            let bad = || DecodeError::BadUtf16 { offset: self.offset + 2 * i as u64 };
            // A high surrogate needs a low one after it; anything else is refused, not
            // guessed at (taking the next unit along could swallow a comma or a line end).
            let (c, used) = if (0xD800..0xDC00).contains(&u) {
                if i + 1 >= units {
                    break; // the low surrogate is in the next block
                }
                let low = unit(i + 1);
                if !(0xDC00..0xE000).contains(&low) {
                    return Err(bad());
                }
                let cp = 0x10000 + (((u as u32) - 0xD800) << 10) + ((low as u32) - 0xDC00);
                (char::from_u32(cp).ok_or_else(bad)?, 2)
            } else {
                (char::from_u32(u as u32).ok_or_else(bad)?, 1)
            };
            if c == '\0' {
                return Err(DecodeError::NotText { offset: self.offset + 2 * i as u64 });
            }
            push_char(out, c);
            i += used;
        }
        let consumed = 2 * i;
        if last && consumed < data.len() {
            return Err(DecodeError::TruncatedUtf16);
        }
        Ok(consumed)
    }
}

/// Whether `data` starts with a UTF-8 character that Windows-1252 text practically never
/// spells: a Latin letter with an accent (lead byte 0xC3-0xC5: `é` is `Ã©` read as
/// Windows-1252, a capital `Ã`, `Ä` or `Å` before a symbol), or general punctuation and the
/// euro sign (`’` `“` `–` `…` are 0xE2 0x80 .., `€` is 0xE2 0x82 0xAC: `â€` then a symbol),
/// or two Greek, Cyrillic, Hebrew or Arabic letters in a row (`Ан` read as Windows-1252 is
/// `Ð`, a control, `Ð½`: an accented capital before a symbol, twice). Anything else can be
/// real Windows-1252 (a lowercase accent before two symbols, `é»»`, `é` before two no-break
/// spaces; an accented capital before `’`, once) and is not taken as UTF-8. `None`: such a
/// character may be cut at the end of `data`.
fn utf8_in_legacy(data: &[u8]) -> Option<bool> {
    let script;
    let pattern: &[std::ops::RangeInclusive<u8>] = match data[0] {
        0xC3..=0xC5 => &[0x80..=0xBF],
        0xE2 if data.get(1) == Some(&0x82) => &[0x82..=0x82, 0xAC..=0xAC],
        0xE2 => &[0x80..=0x80, 0x80..=0xBF],
        lead @ (0xCE..=0xD1 | 0xD7..=0xDB) => {
            let leads = match lead {
                0xCE..=0xCF => 0xCE..=0xCF,
                0xD0..=0xD1 => 0xD0..=0xD1,
                0xD7 => 0xD7..=0xD7,
                _ => 0xD8..=0xDB,
            };
            script = [0x80..=0xBF, leads, 0x80..=0xBF];
            &script
        }
        _ => return Some(false),
    };
    for (i, allowed) in pattern.iter().enumerate() {
        match data.get(i + 1) {
            None => return None,
            Some(b) if allowed.contains(b) => {}
            Some(_) => return Some(false),
        }
    }
    Some(true)
}

fn has_utf8_in_legacy(data: &[u8]) -> bool {
    (0..data.len()).any(|i| data[i] >= 0xC3 && utf8_in_legacy(&data[i..]) == Some(true))
}

fn detect(data: &[u8]) -> (Encoding, usize) {
    if data.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return (Encoding::Utf8Bom, 3);
    }
    if data.starts_with(&[0xFF, 0xFE]) {
        return (Encoding::Utf16Le, 2);
    }
    if data.starts_with(&[0xFE, 0xFF]) {
        return (Encoding::Utf16Be, 2);
    }
    match std::str::from_utf8(data) {
        Ok(_) => (Encoding::Utf8, 0),
        // Invalid only because a character is cut at the end of the block: still UTF-8.
        Err(e) if e.error_len().is_none() => (Encoding::Utf8, 0),
        // UTF-8 characters before the first byte that is not (ones Windows-1252 practically
        // never spells): UTF-8 mixed with another encoding, refused at that byte as it would
        // be in a later block.
        Err(e) if has_utf8_in_legacy(&data[..e.valid_up_to()]) => (Encoding::Utf8, 0),
        Err(_) => (Encoding::Windows1252, 0),
    }
}

fn memchr0(data: &[u8]) -> Option<usize> {
    data.iter().position(|&b| b == 0)
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// Windows-1252 to Unicode; the five undefined bytes map to the C1 controls, as in ISO-8859-1.
fn windows_1252(b: u8) -> char {
    const HIGH: [u16; 32] = [
        0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152,
        0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122,
        0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
    ];
    match b {
        0x80..=0x9F => char::from_u32(HIGH[(b - 0x80) as usize] as u32).unwrap_or('\u{FFFD}'),
        _ => b as char,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8], block: usize) -> Result<(String, Encoding), DecodeError> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = bytes.chunks(block.max(1)).collect();
        for (i, c) in chunks.iter().enumerate() {
            d.decode(c, i + 1 == chunks.len(), &mut out)?;
        }
        if chunks.is_empty() {
            d.decode(&[], true, &mut out)?;
        }
        Ok((String::from_utf8(out).unwrap(), d.encoding().unwrap()))
    }

    #[test]
    fn detects_each_encoding_across_block_boundaries() {
        for block in [1, 2, 3, 7, 4096] {
            assert_eq!(
                decode_all(b"id,name\n1,Ann\n", block).unwrap(),
                ("id,name\n1,Ann\n".into(), Encoding::Ascii)
            );
            assert_eq!(decode_all("id,name\n1,Zoë\n".as_bytes(), block).unwrap().1, Encoding::Utf8);
            let bom = [&[0xEF, 0xBB, 0xBF][..], "a,é\n".as_bytes()].concat();
            assert_eq!(decode_all(&bom, block).unwrap(), ("a,é\n".into(), Encoding::Utf8Bom));
            let mut le = vec![0xFF, 0xFE];
            for u in "a,é😀\n".encode_utf16() {
                le.extend_from_slice(&u.to_le_bytes());
            }
            assert_eq!(decode_all(&le, block).unwrap(), ("a,é😀\n".into(), Encoding::Utf16Le));
            let mut be = vec![0xFE, 0xFF];
            for u in "a,b\n".encode_utf16() {
                be.extend_from_slice(&u.to_be_bytes());
            }
            assert_eq!(decode_all(&be, block).unwrap(), ("a,b\n".into(), Encoding::Utf16Be));
        }
        // Latin-1 / Windows-1252 bytes that are not UTF-8.
        let (text, enc) = decode_all(b"name\nJos\xe9 \x80\n", 4096).unwrap();
        assert_eq!((text.as_str(), enc), ("name\nJosé €\n", Encoding::Windows1252));
    }

    #[test]
    fn a_windows_1252_file_whose_first_blocks_are_ascii_switches_at_its_first_accent() {
        // Excel's "CSV (Comma delimited)": a sorted roster reaches its first accent late.
        let mut file = b"sisId,firstName,lastName\r\n".to_vec();
        for i in 1..=4000 {
            file.extend_from_slice(format!("S{i},First{i},Last{i}\r\n").as_bytes());
        }
        assert!(file.len() > 64 * 1024);
        file.extend_from_slice(b"S4001,Jos\xe9,Garc\xeda\r\n");
        for block in [64 * 1024, 4096, 7] {
            let (text, enc) = decode_all(&file, block).unwrap();
            assert_eq!(enc, Encoding::Windows1252, "block {block}");
            assert!(text.ends_with("\r\nS4001,José,García\r\n"), "block {block}");
            assert!(text.starts_with("sisId,firstName,lastName\r\nS1,First1,Last1\r\n"));
        }
        // A lone accented byte as the very last byte of a file.
        let mut last = "a\n".repeat(40_000).into_bytes();
        last.push(0xe9);
        assert_eq!(decode_all(&last, 64 * 1024).unwrap().1, Encoding::Windows1252);
    }

    #[test]
    fn binary_and_mixed_files_are_rejected() {
        assert!(matches!(
            decode_all(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 4096),
            Err(DecodeError::NotText { .. })
        ));
        assert!(matches!(decode_all(b"a,b\n1,\0\n", 4096), Err(DecodeError::NotText { offset: 6 })));
        // Starts as UTF-8, later a Latin-1 byte.
        let mut mixed = "name\nZoë\n".repeat(2000).into_bytes();
        mixed.extend_from_slice(b"Jos\xe9\n");
        assert!(matches!(decode_all(&mixed, 4096), Err(DecodeError::MixedEncoding { .. })));
        assert_eq!(decode_all(&[0xFF, 0xFE, 0x41], 4096), Err(DecodeError::TruncatedUtf16));
        // The same within the first block: refused at the byte that is not UTF-8 (it was read
        // as Windows-1252 whole, every UTF-8 accent garbled: `Ã‰lodie`).
        let first = b"name\n\xc3\x89lodie\nFran\xe7ois\n";
        for block in [4096, 7, 1] {
            assert_eq!(
                decode_all(first, block),
                Err(DecodeError::MixedEncoding { offset: 17 }),
                "block {block}"
            );
        }
        // Windows-1252 first, UTF-8 later (an accent, a smart quote, a euro sign), across any
        // block boundary: refused at the first UTF-8 character.
        for (utf8, at) in [("Ren\u{e9}e", 17), ("O\u{2019}Brien", 15), ("5 \u{20ac}", 16)] {
            let mut legacy = b"name\nFran\xe7ois\n".to_vec();
            legacy.extend_from_slice(utf8.as_bytes());
            legacy.push(b'\n');
            for block in [4096, 16, 17, 1] {
                assert_eq!(
                    decode_all(&legacy, block),
                    Err(DecodeError::Utf8AfterLegacy { offset: at }),
                    "{utf8} block {block}"
                );
            }
        }
        // Windows-1252 punctuation after a lowercase accent spells valid three-byte UTF-8
        // (`« Café »` with no-break spaces, `“Touché…”`, `cliché—”`, `André` and two no-break
        // spaces): still Windows-1252, in any block.
        let french = b"name\nFran\xe7ois\n\xab Caf\xe9\xa0\xbb\n\x93Touch\xe9\x85\x94\nclich\xe9\x97\x94\nAndr\xe9\xa0\xa0\n";
        for block in [4096, 5, 1] {
            let (text, enc) = decode_all(french, block).unwrap();
            assert_eq!(enc, Encoding::Windows1252, "block {block}");
            assert!(
                text.contains("\u{ab} Caf\u{e9}\u{a0}\u{bb}\n\u{201c}Touch\u{e9}\u{2026}\u{201d}\n"),
                "{text}"
            );
        }
        // Names in another script (Cyrillic, Greek, Hebrew, Arabic) before a Windows-1252
        // byte, in the first block or across blocks: refused too (read as Windows-1252, every
        // name was garbled, `Анна` stored as `Ð\u{90}Ð½Ð½Ð°`); a Windows-1252 file that goes
        // on in them likewise.
        for name in [
            "\u{410}\u{43d}\u{43d}\u{430}",
            "\u{395}\u{3bb}\u{3ad}\u{3bd}\u{3b7}",
            "\u{5e9}\u{5e8}\u{5d4}",
            "\u{633}\u{627}\u{631}\u{627}",
        ] {
            let mut mixed = format!("name\n{name}\n").into_bytes();
            let at = mixed.len() as u64 + 4;
            mixed.extend_from_slice(b"Fran\xe7ois\n");
            for block in [4096, 7, 1] {
                assert_eq!(
                    decode_all(&mixed, block),
                    Err(DecodeError::MixedEncoding { offset: at }),
                    "{name} {block}"
                );
            }
            let mut legacy = b"name\nFran\xe7ois\n".to_vec();
            let at = legacy.len() as u64;
            legacy.extend_from_slice(name.as_bytes());
            for block in [4096, 16, 1] {
                assert_eq!(
                    decode_all(&legacy, block),
                    Err(DecodeError::Utf8AfterLegacy { offset: at }),
                    "{name} {block}"
                );
            }
        }
        // ...but one such capital before a symbol is Windows-1252 (`PEÑº`, `Ø©`, `Ð°`, once each),
        // when the first block holds the byte that is not UTF-8.
        for block in [4096, 40] {
            let (text, enc) =
                decode_all(b"name\nPE\xd1\xba 1\n\xd8\xa9 Ltd \xd0\xb0\nFran\xe7ois\n", block).unwrap();
            assert_eq!(
                (text.as_str(), enc),
                (
                    "name\nPE\u{d1}\u{ba} 1\n\u{d8}\u{a9} Ltd \u{d0}\u{b0}\nFran\u{e7}ois\n",
                    Encoding::Windows1252
                ),
                "block {block}"
            );
        }
        // Windows-1252 that only looks like two bytes of UTF-8 elsewhere (an accented capital
        // before a smart quote, `É’`; `Ã` before a letter) stays Windows-1252, whether the
        // first block holds it or a later one (after the first byte that is not UTF-8).
        let (text, enc) = decode_all(b"name\nANDR\xc9\x92S\nJO\xc3O\n", 4096).unwrap();
        assert_eq!((text.as_str(), enc), ("name\nANDR\u{c9}\u{2019}S\nJO\u{c3}O\n", Encoding::Windows1252));
        let (text, enc) = decode_all(b"name\nJO\xc3O\nANDR\xc9\x92S\n", 3).unwrap();
        assert_eq!((text.as_str(), enc), ("name\nJO\u{c3}O\nANDR\u{c9}\u{2019}S\n", Encoding::Windows1252));
        // A high surrogate before a comma, and a low surrogate alone: refused, not guessed.
        let utf16 = |units: &[u16]| {
            let mut v = vec![0xFF, 0xFE];
            for u in units {
                v.extend_from_slice(&u.to_le_bytes());
            }
            v
        };
        for block in [2, 3, 4096] {
            let high_then_comma = utf16(&[b'a' as u16, 0xD83D, b',' as u16, b'b' as u16, b'\n' as u16]);
            assert_eq!(decode_all(&high_then_comma, block), Err(DecodeError::BadUtf16 { offset: 4 }));
            let lone_low = utf16(&[b'a' as u16, 0xDE00, b'\n' as u16]);
            assert_eq!(decode_all(&lone_low, block), Err(DecodeError::BadUtf16 { offset: 4 }));
        }
    }
}
