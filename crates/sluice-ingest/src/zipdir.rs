//! A zip's central directory, read from its bytes. The zip library keeps one entry per name
//! (a later record of the same name silently replaces the earlier one), reads only as many
//! records as the end record claims, and reads an entry's data without comparing its local
//! header's name with the directory's. So it cannot tell a package that says two things
//! from an honest one; these functions read what is really there.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

const CENTRAL_SIGNATURE: [u8; 4] = 0x0201_4b50u32.to_le_bytes();
const LOCAL_SIGNATURE: [u8; 4] = 0x0403_4b50u32.to_le_bytes();
/// Fixed part of a central directory record (APPNOTE 4.3.12).
const CENTRAL_FIXED: u64 = 46;
/// Fixed part of a local file header (APPNOTE 4.3.7).
const LOCAL_FIXED: u64 = 30;

fn u16_at(bytes: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

/// The raw names of the central directory records that follow one another from `start` (an
/// offset in the file), in order: every record there, whatever the end record counts, up to
/// `max` of them (the rest is not read).
pub(crate) fn central_names(file: &File, start: u64, max: usize) -> io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    let mut at = start;
    let mut fixed = [0u8; CENTRAL_FIXED as usize];
    while names.len() < max {
        match file.read_exact_at(&mut fixed, at) {
            Ok(()) => {}
            // The end record (or anything else) is shorter than a record: the directory ended.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        if fixed[..4] != CENTRAL_SIGNATURE {
            break;
        }
        let (name_len, extra_len, comment_len) = (u16_at(&fixed, 28), u16_at(&fixed, 30), u16_at(&fixed, 32));
        let mut name = vec![0u8; name_len as usize];
        file.read_exact_at(&mut name, at + CENTRAL_FIXED)?;
        names.push(name);
        at += CENTRAL_FIXED + name_len + extra_len + comment_len;
    }
    Ok(names)
}

/// The raw name that the local file header at `at` gives its entry.
pub(crate) fn local_name(file: &File, at: u64) -> io::Result<Vec<u8>> {
    let mut fixed = [0u8; LOCAL_FIXED as usize];
    file.read_exact_at(&mut fixed, at)?;
    if fixed[..4] != LOCAL_SIGNATURE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no local file header at offset {at}, where the central directory points"),
        ));
    }
    let mut name = vec![0u8; u16_at(&fixed, 26) as usize];
    file.read_exact_at(&mut name, at + LOCAL_FIXED)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(names: &[&str]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for name in names {
            w.start_file(*name, opts).unwrap();
            w.write_all(b"a,b\n1,2\n").unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn reads_the_names_a_zip_writer_wrote() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&zip_of(&["manifest.csv", "users.csv", "orgs.csv"])).unwrap();
        let mut zip = zip::ZipArchive::new(f.try_clone().unwrap()).unwrap();
        let names = central_names(&f, zip.central_directory_start(), 64).unwrap();
        assert_eq!(names, [b"manifest.csv".to_vec(), b"users.csv".to_vec(), b"orgs.csv".to_vec()]);
        assert_eq!(central_names(&f, zip.central_directory_start(), 2).unwrap().len(), 2, "bounded");
        assert_eq!(zip.len(), names.len());
        for (i, name) in names.iter().enumerate() {
            let at = zip.by_index_raw(i).unwrap().header_start();
            assert_eq!(&local_name(&f, at).unwrap(), name);
        }
        assert!(local_name(&f, zip.central_directory_start()).is_err(), "not a local header");
        assert!(central_names(&f, 0, 64).unwrap().is_empty(), "a local header is not a record");
    }
}
