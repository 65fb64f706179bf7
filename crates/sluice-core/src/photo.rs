//! Photos: images in a zip matched to records (Badge: "Images must be imported as zip files";
//! Campus Labs: the accounts folder "will also accept bulk photos"). Pure: what an image is,
//! read from its first bytes without decoding a pixel; how a file name or a mapping file's
//! cell names a record; what a mapping file says.

use crate::import::{CsvReader, Record};

/// The image formats sluice keeps. What a photo's header says it is, not its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
}

impl ImageFormat {
    /// The extension exported files get: `jpg`, `png`.
    pub fn ext(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Png => "png",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
        }
    }

    /// The stored name (`jpg`, `png`) read back.
    pub fn from_ext(ext: &str) -> Option<Self> {
        match ext {
            "jpg" => Some(ImageFormat::Jpeg),
            "png" => Some(ImageFormat::Png),
            _ => None,
        }
    }
}

/// An image's format and size in pixels, as its header declares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

/// A record's photo: the image (stored once per tenant by its SHA-256) and what its header
/// says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Photo {
    /// The record's key.
    pub key: String,
    /// Lower-case hex SHA-256 of the image's bytes: its name in the tenant's image store.
    pub sha256: String,
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    /// The import that set it.
    pub import_id: i64,
}

impl Photo {
    /// The image's file name in the tenant's image store: `SHA256.jpg`.
    pub fn stored_name(&self) -> String {
        format!("{}.{}", self.sha256, self.format.ext())
    }

    /// The name an export gives the image: `KEY.jpg` (a key of several columns joined by
    /// `+`); `None` when the key cannot be one file name (a `/`, a control character, ...).
    pub fn export_name(&self) -> Option<String> {
        let name = format!("{}.{}", self.key.replace('\u{1f}', "+"), self.format.ext());
        crate::FileName::parse(&name).ok().map(|n| n.as_str().to_owned())
    }
}

/// A tenant's image store: `PHOTOS_DIR/TENANT` (`DATA_DIR/photos/acme`), where each image is
/// one file named by its SHA-256 ([`Photo::stored_name`]).
pub fn image_store(photos_dir: &std::path::Path, tenant: &str) -> std::path::PathBuf {
    photos_dir.join(tenant)
}

/// The extensions an image entry of a zip may have (a name decides only which entries are
/// looked at; the bytes decide what they are).
pub fn has_image_extension(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".jpg", ".jpeg", ".jpe", ".jfif", ".png"].iter().any(|e| lower.ends_with(e))
}

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// What an image is, from its bytes: the format by its signature, the size from its header
/// (PNG's `IHDR`; JPEG's start-of-frame marker, walking the segments before it). No pixel is
/// decoded. `Err`: why this is not an image sluice keeps, in words for a report.
pub fn sniff(bytes: &[u8]) -> Result<ImageInfo, String> {
    if bytes.starts_with(&PNG_SIGNATURE) {
        // Signature, then the IHDR chunk first: length (4), "IHDR", width (4), height (4).
        if bytes.len() < 24 || &bytes[12..16] != b"IHDR" {
            return Err("is a PNG without its IHDR header (damaged or cut short)".into());
        }
        let width = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
        let height = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
        return sized(ImageFormat::Png, width, height);
    }
    if bytes.starts_with(&[0xFF, 0xD8]) {
        return jpeg_size(bytes);
    }
    let what = match bytes {
        [b'G', b'I', b'F', ..] => "a GIF image",
        [b'B', b'M', ..] => "a BMP image",
        [b'I', b'I', 42, 0, ..] | [b'M', b'M', 0, 42, ..] => "a TIFF image",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => "a WebP image",
        [_, _, _, _, b'f', b't', b'y', b'p', b'h', b'e', b'i', b'c', ..] => "a HEIC image",
        _ => "not an image",
    };
    Err(format!("is {what}; photos must be JPEG or PNG files"))
}

fn sized(format: ImageFormat, width: u32, height: u32) -> Result<ImageInfo, String> {
    // PNG allows at most 2^31 - 1 per side; JPEG's fields are 16 bits.
    if width == 0 || height == 0 || width > i32::MAX as u32 || height > i32::MAX as u32 {
        return Err(format!("declares an impossible size of {width} x {height} pixels"));
    }
    Ok(ImageInfo { format, width, height })
}

/// A JPEG's size: the segments after SOI are walked (each `FF xx` marker with a big-endian
/// length) up to the first start-of-frame marker, whose body holds height and width.
fn jpeg_size(bytes: &[u8]) -> Result<ImageInfo, String> {
    let cut = || "is a JPEG cut short before its size (damaged or incomplete)".to_owned();
    let mut at = 2usize;
    loop {
        // Fill bytes (0xFF repeated) may precede a marker.
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (bytes.get(at), bytes.get(at + 1)) else {
            return Err(cut());
        };
        at += 2;
        match marker {
            // Markers without a length.
            0x01 | 0xD0..=0xD7 => continue,
            0xD9 | 0xDA => return Err("is a JPEG without a frame header before its image data".into()),
            _ => {}
        }
        let len = match (bytes.get(at), bytes.get(at + 1)) {
            (Some(&h), Some(&l)) => usize::from(u16::from_be_bytes([h, l])),
            _ => return Err(cut()),
        };
        if len < 2 {
            return Err("is a JPEG with a damaged segment".into());
        }
        // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC).
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            let body = bytes.get(at + 2..at + 7).ok_or_else(cut)?;
            let height = u32::from(u16::from_be_bytes([body[1], body[2]]));
            let width = u32::from(u16::from_be_bytes([body[3], body[4]]));
            return sized(ImageFormat::Jpeg, width, height);
        }
        at += len;
    }
}

/// How a file name, or a mapping file's cell, is compared with record keys. SIS ids come
/// with and without leading zeros (`000123` in the SIS, `123` from the photographer) and in
/// any case (`s-12` and `S-12`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyMatching {
    pub ignore_case: bool,
    pub ignore_leading_zeros: bool,
}

impl Default for KeyMatching {
    fn default() -> Self {
        Self { ignore_case: true, ignore_leading_zeros: true }
    }
}

impl KeyMatching {
    /// The form two keys are compared in: trimmed, then lower-cased and without leading zeros
    /// as configured (`0` stays `0`).
    pub fn normal(&self, key: &str) -> String {
        let mut k = key.trim();
        if self.ignore_leading_zeros {
            let stripped = k.trim_start_matches('0');
            k = if stripped.is_empty() && !k.is_empty() { "0" } else { stripped };
        }
        if self.ignore_case { k.to_lowercase() } else { k.to_owned() }
    }
}

/// The record key a photo's file name stands for: its base name without the extension
/// (`photos/2026/000123.JPG` is `000123`).
pub fn key_of_file_name(name: &str) -> &str {
    let base = base_name(name);
    base.rsplit_once('.').map_or(base, |(stem, _)| stem)
}

/// The last component of a zip entry's name (`/` or `\` separated).
pub fn base_name(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

/// Whether a zip entry is a text file that may map photos to records: `map.csv`, a PSPA
/// `index.txt`, PowerSchool's tab-delimited export (`.txt`, `.tsv`, `.tab`, `.csv`).
pub fn is_mapping_name(name: &str) -> bool {
    let lower = base_name(name).to_ascii_lowercase();
    [".csv", ".txt", ".tsv", ".tab"].iter().any(|e| lower.ends_with(e))
        && !lower.starts_with("readme")
        && !lower.starts_with('.')
}

/// A readme beside the photos (a PSPA disc's `README.TXT`): not read.
pub fn is_readme(name: &str) -> bool {
    base_name(name).to_ascii_lowercase().starts_with("readme")
}

/// Entries a zip made on a Mac or by Windows Explorer carries besides the photos: skipped
/// without a word.
pub fn is_system_entry(name: &str) -> bool {
    let base = base_name(name);
    name.starts_with("__MACOSX/")
        || base.starts_with("._")
        || base.eq_ignore_ascii_case(".DS_Store")
        || base.eq_ignore_ascii_case("Thumbs.db")
        || base.eq_ignore_ascii_case("desktop.ini")
}

/// Header names that say a column holds the record's id (compared without case, spaces and
/// `_`), besides the target type's own key column names.
const ID_HEADERS: [&str; 12] = [
    "id",
    "key",
    "studentid",
    "studentnumber",
    "studentno",
    "sisid",
    "personalid",
    "personid",
    "idnumber",
    "localid",
    "stateid",
    "sourcedid",
];
const FILE_HEADERS: [&str; 8] =
    ["file", "filename", "image", "imagefile", "imagefilename", "photo", "photofile", "picture"];

fn header_word(s: &str) -> String {
    s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// A mapping file read: which column names the image and, if its header says so, which the
/// record (`None`: the caller picks the column whose values match the most records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub rows: Vec<MappingRow>,
    /// Index of the column holding image file names.
    pub file_column: usize,
    /// Index of the column holding record keys, when a header names it.
    pub key_column: Option<usize>,
    /// A type keyed by several columns whose header names each of them (Badge's ID and
    /// Campus): their indexes, in the key's order; the record key is the cells joined.
    pub key_columns: Vec<usize>,
    /// The number of columns of the widest row.
    pub columns: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingRow {
    pub line: u64,
    pub cells: Vec<String>,
}

/// Reads a mapping file (any delimiter and encoding a CSV import reads; a header row or
/// none). `key_names`: the target type's key column names, which a header may use. `Err`:
/// why it maps nothing, for the report.
pub fn read_mapping(bytes: &[u8], key_names: &[&str]) -> Result<Mapping, String> {
    let mut reader = CsvReader::new(bytes, 64 << 10, 256);
    let mut rows: Vec<MappingRow> = Vec::new();
    let mut rec = Record::default();
    loop {
        match reader.read(&mut rec) {
            Ok(true) => rows.push(MappingRow {
                line: rec.line,
                cells: rec.iter().map(|c| c.trim().to_owned()).collect(),
            }),
            Ok(false) => break,
            Err(e) => return Err(format!("cannot be read: {e}")),
        }
    }
    let columns = rows.iter().map(|r| r.cells.len()).max().unwrap_or(0);
    // The image column: the one most of whose values have an image's extension.
    let file_column = (0..columns)
        .map(|c| (c, rows.iter().filter(|r| r.cells.get(c).is_some_and(|v| has_image_extension(v))).count()))
        .filter(|(_, n)| *n > 0)
        .max_by_key(|(c, n)| (*n, std::cmp::Reverse(*c)))
        .map(|(c, _)| c);
    let header = rows.first().filter(|first| {
        file_column.is_none_or(|c| first.cells.get(c).is_none_or(|v| !has_image_extension(v)))
    });
    let words: Vec<String> =
        header.map(|h| h.cells.iter().map(|c| header_word(c)).collect()).unwrap_or_default();
    let named = |list: &[String]| words.iter().position(|w| list.iter().any(|n| n == w));
    let file_column = match file_column
        .or_else(|| named(&FILE_HEADERS.iter().map(|s| s.to_string()).collect::<Vec<_>>()))
    {
        Some(c) => c,
        None => return Err("names no image file (no column of .jpg or .png names)".into()),
    };
    let mut key_words: Vec<String> = key_names.iter().map(|k| header_word(k)).collect();
    key_words.extend(ID_HEADERS.iter().map(|s| s.to_string()));
    let key_column = named(&key_words).filter(|c| *c != file_column);
    let key_columns: Vec<usize> = if key_names.len() > 1 {
        let each: Vec<Option<usize>> =
            key_names.iter().map(|k| words.iter().position(|w| *w == header_word(k))).collect();
        if each.iter().all(Option::is_some) { each.into_iter().flatten().collect() } else { Vec::new() }
    } else {
        Vec::new()
    };
    if header.is_some() {
        rows.remove(0);
    }
    Ok(Mapping { rows, file_column, key_column, key_columns, columns })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut b = PNG_SIGNATURE.to_vec();
        b.extend(13u32.to_be_bytes());
        b.extend(b"IHDR");
        b.extend(width.to_be_bytes());
        b.extend(height.to_be_bytes());
        b.extend([8, 2, 0, 0, 0, 0, 0, 0, 0]);
        b
    }

    /// A JPEG's first segments as a camera writes them: SOI, an APP1 (EXIF) segment, a
    /// quantisation table, then SOF0.
    fn jpeg(width: u16, height: u16) -> Vec<u8> {
        let mut b = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x08, b'E', b'x', b'i', b'f', 0, 0];
        b.extend([0xFF, 0xDB, 0x00, 0x04, 0, 0]);
        b.extend([0xFF, 0xFF, 0xC0, 0x00, 0x11, 8]);
        b.extend(height.to_be_bytes());
        b.extend(width.to_be_bytes());
        b.extend([3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        b.extend([0xFF, 0xDA, 0x00, 0x02, 0xFF, 0xD9]);
        b
    }

    #[test]
    fn sizes_are_read_from_headers_without_decoding() {
        assert_eq!(
            sniff(&png(600, 800)),
            Ok(ImageInfo { format: ImageFormat::Png, width: 600, height: 800 })
        );
        assert_eq!(
            sniff(&jpeg(480, 640)),
            Ok(ImageInfo { format: ImageFormat::Jpeg, width: 480, height: 640 })
        );
        // A PNG declaring 100,000 x 100,000 pixels is read as such (the caller refuses it).
        assert_eq!(
            sniff(&png(100_000, 100_000)).map(|i| u64::from(i.width) * u64::from(i.height)),
            Ok(10_000_000_000)
        );
    }

    #[test]
    fn what_is_not_a_kept_image_says_what_it_is() {
        assert!(sniff(b"GIF89a....").unwrap_err().contains("GIF"));
        assert!(sniff(b"hello").unwrap_err().contains("not an image"));
        assert!(sniff(&png(0, 10)).unwrap_err().contains("impossible"));
        assert!(sniff(&png(1 << 31, 10)).unwrap_err().contains("impossible"));
        assert!(sniff(&PNG_SIGNATURE).unwrap_err().contains("IHDR"));
        let mut cut = jpeg(10, 10);
        cut.truncate(14);
        assert!(sniff(&cut).unwrap_err().contains("cut short"));
        // Image data before any frame header.
        assert!(sniff(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]).unwrap_err().contains("frame"));
        // A segment length that points past the end, or loops, ends instead of spinning.
        assert!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0xFF, 0xFF]).is_err());
        assert!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x00]).is_err());
        assert!(sniff(&[0xFF, 0xD8]).is_err());
    }

    #[test]
    fn keys_match_without_case_and_leading_zeros_unless_told() {
        let m = KeyMatching::default();
        assert_eq!(m.normal(" 000123 "), "123");
        assert_eq!(m.normal("S-12"), "s-12");
        assert_eq!(m.normal("000"), "0");
        let exact = KeyMatching { ignore_case: false, ignore_leading_zeros: false };
        assert_eq!(exact.normal("00S"), "00S");
        assert_eq!(key_of_file_name("photos/2026/000123.JPG"), "000123");
        assert_eq!(key_of_file_name("Images\\a.b.png"), "a.b");
        assert!(is_system_entry("__MACOSX/._123.jpg"));
        assert!(is_system_entry("x/Thumbs.db"));
        assert!(!is_system_entry("123.jpg"));
    }

    #[test]
    fn mapping_files_as_their_makers_write_them() {
        // map.csv with a header.
        let m = read_mapping(b"student_id,file\r\n1001,ann.jpg\r\n1002,bob.png\r\n", &["sisId"]).unwrap();
        assert_eq!((m.file_column, m.key_column, m.rows.len()), (1, Some(0), 2));
        // PowerSchool: Student_Number<TAB>file, no header.
        let m = read_mapping(b"1001\t1001.jpg\n1002\t1002.jpg\n", &["sisId"]).unwrap();
        assert_eq!((m.file_column, m.key_column, m.rows.len()), (1, None, 2));
        assert_eq!(m.rows[0].cells, vec!["1001", "1001.jpg"]);
        // A PSPA index.txt: volume, folder, file, names, grade, teacher, id; no header.
        let pspa = b"SCHOOL24\tImages\t00000001.jpg\tAnn\tLee\t05\tSmith\t1001\r\nSCHOOL24\tImages\t00000002.jpg\tBob\tRay\t05\tSmith\t1002\r\n";
        let m = read_mapping(pspa, &["sisId"]).unwrap();
        assert_eq!((m.file_column, m.key_column, m.columns), (2, None, 8));
        // A header naming the type's own key column; a BOM and semicolons from Excel.
        let m = read_mapping("\u{feff}sisId;Photo\n1001;a.jpg\n".as_bytes(), &["sisId"]).unwrap();
        assert_eq!((m.file_column, m.key_column), (1, Some(0)));
        assert!(read_mapping(b"a,b\n1,2\n", &[]).unwrap_err().contains("no image"));
        // Badge's key of two columns, each named by the header.
        let m = read_mapping(b"Photo,Campus,ID\na.jpg,North,77\n", &["ID", "Campus"]).unwrap();
        assert_eq!(m.key_columns, vec![2, 1]);
    }
}
