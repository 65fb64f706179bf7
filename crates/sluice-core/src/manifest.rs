//! `.done` manifests, the Campus Labs Import Automation protocol (shared/seeds/001):
//!
//! ```xml
//! <?xml version="1.0" encoding="utf-8"?>
//! <manifest>
//!   <file name="accounts.csv" checksum="0cc175b9c0f1b6a831c399e269772661" checksumhashtype="md5"/>
//!   <file name="photos.csv" checksum="" checksumhashtype="none"/>
//! </manifest>
//! ```
//!
//! Any root element name is accepted; `<file>` elements are its children. Attribute names
//! and the hash type are case-insensitive. Parsing is bounded and refuses DTDs, so neither
//! entity expansion ("billion laughs") nor external entities can happen.

use crate::{FileName, FileNameError};
use md5::Digest;
use quick_xml::events::Event;
use quick_xml::reader::Reader;

/// Manifests larger than this are rejected unread.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;
/// At most this many `<file>` lines.
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The name as the line writes it (for messages).
    pub name: String,
    /// The name parsed like an SFTP path in the manifest's folder: a file of that folder,
    /// or why the line cannot name one (the line is invalid; nothing is looked up).
    pub file: Result<FileName, FileNameError>,
    /// Lowercase hex MD5, when the line gives one.
    pub md5: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub entries: Vec<ManifestEntry>,
}

/// Why a manifest is `INVALIDSCHEMA`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest is larger than {MAX_MANIFEST_BYTES} bytes")]
    TooLarge,
    #[error("the manifest is not well-formed XML: {0}")]
    Malformed(String),
    #[error("DTDs and entity declarations are not allowed in a manifest")]
    Dtd,
    #[error("the manifest lists no <file> element; list at least one file")]
    NoFiles,
    #[error("the manifest lists more than {MAX_ENTRIES} files")]
    TooManyFiles,
    #[error("<file> number {line}: {problem}")]
    BadLine { line: usize, problem: String },
}

impl Manifest {
    pub fn parse(xml: &[u8]) -> Result<Self, ManifestError> {
        Ok(Self { entries: scan(xml)?.into_iter().map(|line| line.entry).collect() })
    }
}

/// One `<file>` line and where `mark_invalid` edits its tag.
struct Line {
    entry: ManifestEntry,
    /// Where an attribute can be inserted (before `/>` or `>`).
    insert_at: usize,
    /// The `INVALID` attributes the line already carries (each with the space before it).
    old_marks: Vec<std::ops::Range<usize>>,
}

/// Each `<file>` line.
fn scan(xml: &[u8]) -> Result<Vec<Line>, ManifestError> {
    if xml.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge);
    }
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().check_end_names = true;
    let mut entries = Vec::new();
    let mut depth = 0usize;
    let mut saw_root = false;
    loop {
        let event = reader.read_event().map_err(|e| ManifestError::Malformed(e.to_string()))?;
        match event {
            Event::DocType(_) => return Err(ManifestError::Dtd),
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                if depth == 0 {
                    if saw_root {
                        return Err(ManifestError::Malformed("more than one root element".into()));
                    }
                    saw_root = true;
                } else if depth == 1 && e.local_name().as_ref().eq_ignore_ascii_case("file") {
                    let line = entries.len() + 1;
                    if line > MAX_ENTRIES {
                        return Err(ManifestError::TooManyFiles);
                    }
                    let entry = file_entry(e, line)?;
                    // Insert before `/>` or `>`: right after the name and attributes, which
                    // the event borrows from `xml` (quick-xml's own positions skip a leading
                    // byte-order mark, so they are not offsets in `xml`).
                    let insert_at = offset_in(xml, e.as_bytes()).map(|at| at + e.len()).ok_or_else(|| {
                        ManifestError::Malformed(format!("<file> number {line} cannot be located"))
                    })?;
                    let old_marks = invalid_attrs(xml, e);
                    entries.push(Line { entry, insert_at, old_marks });
                }
                if !empty {
                    depth += 1;
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            // Without a DTD only the predefined entities and character references exist.
            Event::GeneralRef(r)
                if !r.is_char_ref() && !["amp", "lt", "gt", "quot", "apos"].contains(&&*r) =>
            {
                return Err(ManifestError::Malformed(format!("unknown entity &{};", &*r)));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root {
        return Err(ManifestError::Malformed("the manifest is empty".into()));
    }
    if entries.is_empty() {
        return Err(ManifestError::NoFiles);
    }
    Ok(entries)
}

fn file_entry(e: &quick_xml::events::BytesStart<'_>, line: usize) -> Result<ManifestEntry, ManifestError> {
    let bad = |problem: String| ManifestError::BadLine { line, problem };
    let (mut name, mut checksum, mut hash_type) = (None, String::new(), String::new());
    for attr in e.attributes() {
        let attr = attr.map_err(|e| bad(format!("bad attribute: {e}")))?;
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| bad(format!("bad attribute value: {e}")))?
            .trim()
            .to_owned();
        match attr.key.local_name().as_ref().to_ascii_lowercase().as_str() {
            "name" => name = Some(value),
            "checksum" => checksum = value,
            "checksumhashtype" => hash_type = value.to_ascii_lowercase(),
            _ => {}
        }
    }
    let name = name.filter(|n| !n.is_empty()).ok_or_else(|| bad("has no name attribute".into()))?;
    let md5 = match hash_type.as_str() {
        "md5" => {
            if checksum.len() != 32 || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!("checksum {checksum:?} is not a 32-digit MD5 hex string")));
            }
            Some(checksum.to_ascii_lowercase())
        }
        "" | "none" => {
            if !checksum.is_empty() {
                return Err(bad("gives a checksum but checksumhashtype is not \"md5\"".into()));
            }
            None
        }
        other => {
            return Err(bad(format!("checksumhashtype {other:?} is not supported; use \"md5\" or \"none\"")));
        }
    };
    Ok(ManifestEntry { file: FileName::parse(&name), name, md5 })
}

/// The manifest's text with `INVALID="reason"` added to the listed `<file>` lines
/// (`(index, reason)`, index counting `<file>` elements from 0), for `.CONTAINSINVALIDFILES`.
/// `INVALID` attributes the manifest already carries (one sent back after a failed run) are
/// removed first: the result says what is wrong now, and stays well-formed XML.
pub fn mark_invalid(xml: &[u8], invalid: &[(usize, String)]) -> Result<Vec<u8>, ManifestError> {
    let lines = scan(xml)?;
    // (bytes to replace, text to put there): old marks go, new ones are inserted.
    let mut edits: Vec<(std::ops::Range<usize>, String)> =
        lines.iter().flat_map(|line| line.old_marks.iter().map(|r| (r.clone(), String::new()))).collect();
    edits.extend(invalid.iter().filter_map(|(i, reason)| {
        lines
            .get(*i)
            .map(|line| (line.insert_at..line.insert_at, format!(" INVALID=\"{}\"", xml_attr(reason))))
    }));
    edits.sort_by_key(|(r, _)| (r.start, r.end));
    let mut out = Vec::with_capacity(xml.len() + edits.iter().map(|(_, s)| s.len()).sum::<usize>());
    let mut last = 0;
    for (range, text) in edits {
        out.extend_from_slice(&xml[last..range.start]);
        out.extend_from_slice(text.as_bytes());
        last = range.end;
    }
    out.extend_from_slice(&xml[last..]);
    Ok(out)
}

/// The byte ranges in `xml` of the `INVALID` attributes (any case, any prefix) of one start
/// tag, each from the whitespace character before its name to its closing quote. The
/// attributes are quick-xml's own (the same parse as the line's), located by where their
/// borrowed bytes lie in `xml` (`offset_in`).
fn invalid_attrs(xml: &[u8], tag: &quick_xml::events::BytesStart<'_>) -> Vec<std::ops::Range<usize>> {
    let offset = |s: &[u8]| offset_in(xml, s);
    tag.attributes()
        .flatten()
        .filter(|a| a.key.local_name().as_ref().eq_ignore_ascii_case("invalid"))
        .filter_map(|a| {
            let std::borrow::Cow::Borrowed(value) = a.value else { return None };
            let key_at = offset(a.key.as_ref().as_bytes())?;
            let end = offset(value.as_bytes())? + value.len() + 1; // past the closing quote
            xml.get(end - 1).filter(|q| matches!(q, b'"' | b'\''))?;
            // With the one space that separates it: the rest is the author's layout, and a
            // mark inserted later brings its own (so marking twice gives the same text).
            let space = key_at > 0 && matches!(xml[key_at - 1], b' ' | b'\t' | b'\r' | b'\n');
            Some(if space { key_at - 1 } else { key_at }..end)
        })
        .collect()
}

/// Where `part`, a slice borrowed from `xml`, starts in it.
fn offset_in(xml: &[u8], part: &[u8]) -> Option<usize> {
    (part.as_ptr() as usize).checked_sub(xml.as_ptr() as usize).filter(|at| at + part.len() <= xml.len())
}

fn xml_attr(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Lowercase hex MD5 of everything `reader` yields.
pub fn md5_of(mut reader: impl std::io::Read) -> std::io::Result<String> {
    let mut hasher = md5::Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<manifest>
  <file name="accounts.csv" checksum="0CC175B9C0F1B6A831C399E269772661" checksumhashtype="MD5"/>
  <file name="photos.csv" checksum="" checksumhashtype="none"/>
  <!-- a comment -->
  <FILE NAME="terms.csv" CHECKSUM="" CHECKSUMHASHTYPE=""></FILE>
</manifest>"#;

    #[test]
    fn parses_the_documented_layout_in_any_case() {
        let m = Manifest::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(m.entries.len(), 3);
        assert_eq!(
            m.entries[0],
            ManifestEntry {
                name: "accounts.csv".into(),
                file: FileName::parse("accounts.csv"),
                md5: Some("0cc175b9c0f1b6a831c399e269772661".into())
            }
        );
        assert_eq!(m.entries[1].md5, None);
        assert_eq!(m.entries[2].name, "terms.csv");
        for root in ["files", "filelist", "ImportManifest"] {
            let xml = format!("<{root}><file name=\"a.csv\" checksum=\"\" checksumhashtype=\"\"/></{root}>");
            assert_eq!(Manifest::parse(xml.as_bytes()).unwrap().entries.len(), 1, "{root}");
        }
        assert_eq!(md5_of(&b"a"[..]).unwrap(), "0cc175b9c0f1b6a831c399e269772661");
    }

    #[test]
    fn invalid_schemas_say_why() {
        let e = |xml: &str| Manifest::parse(xml.as_bytes()).unwrap_err();
        assert!(matches!(e("<manifest><file name='a.csv'"), ManifestError::Malformed(_)));
        assert_eq!(e("<manifest></manifest>"), ManifestError::NoFiles);
        assert!(matches!(e(""), ManifestError::Malformed(_)));
        assert!(matches!(
            e("<m><file name='a' checksum='x' checksumhashtype='sha1'/></m>"),
            ManifestError::BadLine { line: 1, .. }
        ));
        assert!(matches!(
            e("<m><file name='a' checksum='abc' checksumhashtype='md5'/></m>"),
            ManifestError::BadLine { .. }
        ));
        assert!(matches!(
            e("<m><file name='a' checksum='0cc175b9c0f1b6a831c399e269772661' checksumhashtype=''/></m>"),
            ManifestError::BadLine { .. }
        ));
        assert!(matches!(e("<m><file checksum='' checksumhashtype=''/></m>"), ManifestError::BadLine { .. }));
        assert!(matches!(e("<m><file name='a'/></m><m2/>"), ManifestError::Malformed(_)));
        let huge = format!("<m>{}</m>", " ".repeat(MAX_MANIFEST_BYTES));
        assert_eq!(e(&huge), ManifestError::TooLarge);
        let many =
            format!("<m>{}</m>", "<file name='a' checksum='' checksumhashtype=''/>".repeat(MAX_ENTRIES + 1));
        assert_eq!(e(&many), ManifestError::TooManyFiles);
    }

    #[test]
    fn no_entity_expansion_and_no_external_entities() {
        let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<manifest><file name="&lol2;" checksum="" checksumhashtype=""/></manifest>"#;
        assert_eq!(Manifest::parse(laughs.as_bytes()), Err(ManifestError::Dtd));
        let xxe = r#"<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]><m><file name="&x;"/></m>"#;
        assert_eq!(Manifest::parse(xxe.as_bytes()), Err(ManifestError::Dtd));
        // An undeclared entity (no DTD) is an error, never expanded.
        assert!(Manifest::parse(b"<m><file name='&x;' checksum='' checksumhashtype=''/></m>").is_err());
        // The predefined ones are fine.
        let ok =
            Manifest::parse(b"<m><file name='a&amp;b.csv' checksum='' checksumhashtype=''/></m>").unwrap();
        assert_eq!(ok.entries[0].name, "a&b.csv");
    }

    #[test]
    fn names_are_parsed_as_file_names_of_the_folder() {
        let xml = br#"<m><file name="../../../ssh_host_ed25519_key"/><file name="a&#47;b"/><file name="..\x.csv"/><file name=" ok.csv "/></m>"#;
        let m = Manifest::parse(xml).unwrap();
        assert_eq!(m.entries[0].file, Err(FileNameError::Separator));
        assert_eq!(m.entries[0].name, "../../../ssh_host_ed25519_key");
        assert_eq!(m.entries[1].file, Err(FileNameError::Separator), "a character reference is still a '/'");
        assert_eq!(m.entries[2].file, Err(FileNameError::Separator));
        assert_eq!(m.entries[3].file.as_ref().map(FileName::as_str), Ok("ok.csv"));
        let control = Manifest::parse(b"<m><file name='a&#1;b'/></m>").unwrap();
        assert_eq!(control.entries[0].file, Err(FileNameError::Path(crate::PathError::ControlCharacter)));
    }

    #[test]
    fn invalid_lines_are_marked_in_place() {
        let out = mark_invalid(
            GOOD.as_bytes(),
            &[(0, "checksum mismatch: file is \"x\"".into()), (2, "no such file".into())],
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(r#"checksumhashtype="MD5" INVALID="checksum mismatch: file is &quot;x&quot;"/>"#),
            "{text}"
        );
        assert!(text.contains(r#"CHECKSUMHASHTYPE="" INVALID="no such file"></FILE>"#), "{text}");
        assert!(text.contains(r#"<file name="photos.csv" checksum="" checksumhashtype="none"/>"#));
        // The result is still a valid manifest.
        assert_eq!(Manifest::parse(text.as_bytes()).unwrap().entries.len(), 3);
    }

    /// Found by the `done_manifest` fuzz target (its `contains-invalid-files` seed): a
    /// `.CONTAINSINVALIDFILES` manifest sent back as `.done` got a second `INVALID` attribute,
    /// and the rewrite was no longer XML.
    #[test]
    fn a_manifest_sent_back_with_its_invalid_marks_is_rewritten_with_only_the_new_ones() {
        let returned = br#"<manifest>
  <file name="a.csv" checksum="" checksumhashtype="none" INVALID="no such file in this folder"/>
  <file name="b.csv" invalid = 'old &amp; stale' checksum="" checksumhashtype="none"></file>
  <file name="c.csv" checksum="" checksumhashtype="none"/>
</manifest>"#;
        let before = Manifest::parse(returned).unwrap();
        let out =
            mark_invalid(returned, &[(0, "checksum mismatch".into()), (2, "no such file".into())]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(Manifest::parse(text.as_bytes()).unwrap(), before, "{text}");
        assert!(
            text.contains(
                r#"<file name="a.csv" checksum="" checksumhashtype="none" INVALID="checksum mismatch"/>"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"<file name="b.csv" checksum="" checksumhashtype="none"></file>"#), "{text}");
        assert!(
            text.contains(
                r#"<file name="c.csv" checksum="" checksumhashtype="none" INVALID="no such file"/>"#
            )
        );
        assert_eq!(text.matches("INVALID").count(), 2, "{text}");
        // Found by the fuzz target too: an attribute name quick-xml accepts with a `/` in it
        // (`che/ksum`) hid the old mark from a hand-written tag scanner.
        let odd = br#"<m><file name="a.csv" che/ksum="" INVALID="old"/></m>"#;
        let out = String::from_utf8(mark_invalid(odd, &[(0, "new".into())]).unwrap()).unwrap();
        assert_eq!(out, r#"<m><file name="a.csv" che/ksum="" INVALID="new"/></m>"#);
        // Marking nothing clears the old marks.
        let cleared = String::from_utf8(mark_invalid(returned, &[]).unwrap()).unwrap();
        assert!(!cleared.to_ascii_lowercase().contains("invalid"), "{cleared}");
    }

    /// Found by the `done_manifest` fuzz target: a manifest saved with a UTF-8 byte-order mark
    /// (as Windows Notepad saves) had its INVALID marks written three bytes early, into the
    /// tag before the line (or into the middle of an attribute).
    #[test]
    fn a_manifest_with_a_byte_order_mark_is_marked_on_the_right_line() {
        let xml = "\u{feff}<?xml version=\"1.0\"?><manifest><file name=\"a.csv\"/><file name=\"bcd.csv\"></file></manifest>";
        let out =
            String::from_utf8(mark_invalid(xml.as_bytes(), &[(0, "x".into()), (1, "y".into())]).unwrap())
                .unwrap();
        assert_eq!(
            out,
            "\u{feff}<?xml version=\"1.0\"?><manifest><file name=\"a.csv\" INVALID=\"x\"/><file name=\"bcd.csv\" INVALID=\"y\"></file></manifest>"
        );
        let returned = "\u{feff}<m><file name=\"a.csv\" INVALID=\"old\"/></m>";
        let out = String::from_utf8(mark_invalid(returned.as_bytes(), &[]).unwrap()).unwrap();
        assert_eq!(out, "\u{feff}<m><file name=\"a.csv\"/></m>");
        // Two marks: quick-xml skips only the first, and a scan that assumed so went wrong.
        let twice = "\u{feff}\u{feff}<m><file name=\"a.csv\"/></m>";
        let out = String::from_utf8(mark_invalid(twice.as_bytes(), &[(0, "x".into())]).unwrap()).unwrap();
        assert_eq!(out, "\u{feff}\u{feff}<m><file name=\"a.csv\" INVALID=\"x\"/></m>");
    }

    /// Found by the `done_manifest` fuzz target: a line ending in ` />` gained a space each
    /// time it was marked again; sent back any number of times, it reads the same.
    #[test]
    fn marking_a_marked_manifest_again_gives_the_same_text() {
        let xml = b"<manifest >\n\t<file\n name = 'a b.csv'\n checksum=' ' checksumhashtype='NONE' />\n</manifest >";
        let marks = [(0, "no such file in this folder".to_owned())];
        let once = mark_invalid(xml, &marks).unwrap();
        assert_eq!(mark_invalid(&once, &marks).unwrap(), once, "{}", String::from_utf8_lossy(&once));
        assert_eq!(mark_invalid(&once, &[]).unwrap(), xml, "clearing the mark gives back the original");
    }
}
