//! Photos in and out: zips of images as a district, a PowerSchool export or a school
//! photographer makes them, matched to records, checked by their headers, stored once, and
//! exported one file per record; hostile zips refused before anything is inflated.

use crate::common::*;
use crate::openssh::sftp_batch;
use serde_json::Value;
use std::io::Write;
use std::time::Duration;

/// A real grayscale baseline JPEG of `width` x `height` (multiples of 8): every block a flat
/// gray (DC 0, end of block at once), as any browser or viewer decodes it.
pub fn jpeg(width: u16, height: u16) -> Vec<u8> {
    let mut b = vec![0xFF, 0xD8];
    b.extend([0xFF, 0xDB, 0x00, 0x43, 0x00]);
    b.extend([1u8; 64]);
    b.extend([0xFF, 0xC0, 0x00, 0x0B, 8]);
    b.extend(height.to_be_bytes());
    b.extend(width.to_be_bytes());
    b.extend([1, 1, 0x11, 0]);
    for class in [0x00, 0x10] {
        // One code of one bit ("0"): category 0 for DC, end of block for AC.
        b.extend([0xFF, 0xC4, 0x00, 0x14, class, 1]);
        b.extend([0u8; 15]);
        b.push(0);
    }
    b.extend([0xFF, 0xDA, 0x00, 0x08, 1, 1, 0x00, 0, 63, 0]);
    let blocks = (usize::from(width) / 8) * (usize::from(height) / 8);
    let bits = blocks * 2;
    // All zero bits, the last byte padded with ones.
    b.extend(std::iter::repeat_n(0u8, bits / 8));
    if bits % 8 != 0 {
        b.push(0xFF >> (bits % 8));
    }
    b.extend([0xFF, 0xD9]);
    b
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A real grayscale PNG of `width` x `height`, filled with `shade` (zlib stored blocks).
pub fn png(width: u32, height: u32, shade: u8) -> Vec<u8> {
    let mut raw = Vec::new();
    for _ in 0..height {
        raw.push(0);
        raw.extend(std::iter::repeat_n(shade, width as usize));
    }
    let mut z = vec![0x78, 0x01];
    let chunks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        z.push(u8::from(i + 1 == chunks.len()));
        let len = chunk.len() as u16;
        z.extend(len.to_le_bytes());
        z.extend((!len).to_le_bytes());
        z.extend(*chunk);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend(((b << 16) | a).to_be_bytes());
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    };
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &z);
    chunk(b"IEND", &[]);
    out
}

pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// acme with students and a /photos folder; imports run on upload.
fn school(server: &Server) {
    server.importing_tenant("acme", "pw-for-tests");
    server.cli_ok(&["tenant", "set", "acme", "folders=students,photos"]);
    let file = write_file(
        server.dir.path(),
        "students.csv",
        b"sisId,firstName,lastName\n000123,Ann,Lee\nS-12,Bob,Ray\n777,Cy,Day\n888,Di,Fox\n",
    );
    server.cli_ok(&["import", "--tenant", "acme", "--type", "students", file.to_str().unwrap()]);
}

fn newest_import(server: &Server, count: usize) -> Value {
    assert!(
        // The import is listed once it starts ("running"); wait for it to finish.
        server.wait_until(Duration::from_secs(20), |s| {
            let imports = s.imports("acme");
            imports.len() >= count && imports[0]["status"] != "running"
        }),
        "no finished import: {}",
        server.log()
    );
    server.imports("acme")[0].clone()
}

fn errors_of(server: &Server, import: &Value) -> String {
    server.cli_ok(&["import", "show", &import["id"].to_string(), "--errors"])
}

fn images_stored(server: &Server) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(server.data_dir().join("photos").join("acme"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[test]
fn a_zip_of_photos_uploaded_over_sftp_matches_records_by_file_name_and_exports_one_file_each() {
    let server = Server::start();
    school(&server);
    let ann = jpeg(64, 80);
    let bob = png(40, 50, 90);
    // A PNG declaring 100,000 x 100,000 pixels in a few bytes: refused by its header.
    let mut huge = png(1, 1, 0);
    huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let zip = zip_of(&[
        ("123.JPG", &ann),               // 000123: leading zeros and case do not matter
        ("class/s-12.png", &bob),        // in a folder, another case
        ("__MACOSX/._123.JPG", b"junk"), // what a Mac adds: skipped silently
        ("unknown.jpg", &jpeg(8, 8)),    // no such record
        ("777.jpg", b"not an image at all"),
        ("notes.docx", b"PK..."),
        ("888.png", &huge),
    ]);
    let local = write_file(server.dir.path(), "photos.zip", &zip);
    let key = server.key("acme");
    let out = sftp_batch(&server, &key, &format!("put {} /photos/\n", local.display()), &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let import = newest_import(&server, 2);
    assert_eq!(import["type"], "photos", "{import}");
    assert_eq!(import["status"], "incomplete", "{import}");
    assert_eq!(import["counts"]["added"], 2, "{import}");
    assert_eq!(import["counts"]["rejected"], 4, "{import}");
    let errors = errors_of(&server, &import);
    for code in ["no_such_record", "not_a_photo", "too_many_pixels"] {
        assert!(errors.contains(code), "{code}: {errors}");
    }
    assert!(
        errors.contains("notes.docx") && errors.contains("unknown.jpg") && errors.contains("777.jpg"),
        "{errors}"
    );
    assert!(!errors.contains("MACOSX"), "{errors}");
    assert_eq!(images_stored(&server).len(), 2, "each image stored once");

    // Before any photo export, /exports/photos is there and empty (a recursive download of
    // /exports by rclone or lftp lists it).
    let out = sftp_batch(&server, &key, "ls /exports\nls /exports/photos\n", &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    // A type without photos has none to export.
    let refused = server.cli(&["export", "--tenant", "acme", "--type", "employees", "--photos"]);
    assert!(
        !refused.status.success() && output_text(&refused).contains("takes no photos"),
        "{}",
        output_text(&refused)
    );
    // Out: one file per record, named by its key, fetched as the district fetches them.
    let said = server.cli_ok(&["export", "--tenant", "acme", "--type", "students", "--photos"]);
    assert!(said.contains("2 written, 0 unchanged, 0 removed"), "{said}");
    let out = sftp_batch(
        &server,
        &key,
        "ls /exports\nls /exports/photos\nget /exports/photos/000123.jpg ann.jpg\nget /exports/photos/S-12.png bob.png\n",
        &[],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let listing = output_text(&out);
    assert!(listing.contains("photos"), "{listing}");
    assert_eq!(std::fs::read(server.dir.path().join("ann.jpg")).unwrap(), ann);
    assert_eq!(std::fs::read(server.dir.path().join("bob.png")).unwrap(), bob);
    // Through the API: the image itself, typed by what it is (a PNG is not served as a JPEG).
    let token = server.api_key(Some("acme"));
    let (status, content_type, _) =
        server.http("GET", "/api/v1/tenants/acme/records/students/S-12/photo", Some(&token));
    assert_eq!((status, content_type.as_str()), (200, "image/png"));
    let (status, _, _) = server.http("GET", "/api/v1/tenants/acme/records/students/777/photo", Some(&token));
    assert_eq!(status, 404, "777 has no photo");
    let other = server.api_key(None);
    let (status, _, _) = server.http("GET", "/api/v1/tenants/acme/records/students/S-12/photo", Some(&other));
    assert_eq!(status, 200, "the operator's key sees every tenant");
    // /exports/photos is read-only like /exports.
    let out = sftp_batch(
        &server,
        &key,
        &format!("-put {} /exports/photos/x.jpg\nrm /exports/photos/000123.jpg\n", local.display()),
        &[],
    );
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(server.tenant_dir("acme").join("exports/photos/000123.jpg").exists());

    // A new photo replaces the old one; the old image leaves the store.
    let ann2 = jpeg(72, 96);
    let zip = zip_of(&[("000123.jpg", &ann2), ("S-12.png", &bob)]);
    let local = write_file(server.dir.path(), "photos2.zip", &zip);
    let out = sftp_batch(&server, &key, &format!("put {} /photos/photos.zip\n", local.display()), &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    let import = newest_import(&server, 3);
    assert_eq!(import["status"], "complete", "{import}");
    assert_eq!(
        (import["counts"]["updated"].as_u64(), import["counts"]["unchanged"].as_u64()),
        (Some(1), Some(1)),
        "{import}"
    );
    assert_eq!(
        images_stored(&server).len(),
        2,
        "the replaced image is removed: {:?}",
        images_stored(&server)
    );

    // Bob leaves the school: his photo goes with his record, and the export removes his file.
    let file = write_file(
        server.dir.path(),
        "students2.csv",
        b"sisId,firstName,lastName\n000123,Ann,Lee\n777,Cy,Day\n",
    );
    let _ = server.cli(&["import", "--tenant", "acme", "--type", "students", file.to_str().unwrap()]);
    let held = server.imports("acme")[0].clone();
    assert_eq!(held["status"], "held", "half the students leave: {held}");
    server.cli_ok(&["approve", &held["id"].to_string()]);
    let said = server.cli_ok(&["export", "--tenant", "acme", "--type", "students", "--photos"]);
    assert!(said.contains("1 written, 0 unchanged, 1 removed"), "{said}");
    let folder = server.tenant_dir("acme").join("exports/photos");
    let files = files_in(&folder);
    assert_eq!(files, vec!["000123.jpg"]);
    assert_eq!(std::fs::read(folder.join("000123.jpg")).unwrap(), ann2);
    // The next photo import clears images no record shows any more.
    let zip = zip_of(&[("777.jpg", &jpeg(8, 16))]);
    let local = write_file(server.dir.path(), "photos3.zip", &zip);
    server.cli_ok(&["import", "--tenant", "acme", "--type", "photos", local.to_str().unwrap()]);
    assert_eq!(images_stored(&server).len(), 2, "{:?}", images_stored(&server));
}

#[test]
fn mapping_files_as_powerschool_a_district_and_a_photographer_write_them() {
    let server = Server::start();
    school(&server);
    let import = |name: &str, zip: Vec<u8>| -> Value {
        let local = write_file(server.dir.path(), name, &zip);
        let out = server.cli(&["import", "--tenant", "acme", "--type", "photos", local.to_str().unwrap()]);
        let _ = out;
        server.imports("acme")[0].clone()
    };
    // map.csv from Excel: a BOM, semicolons, a header naming the type's key column.
    let v = import(
        "map.zip",
        zip_of(&[
            ("map.csv", "\u{feff}sisId;Photo\r\n000123;IMG_0001.jpg\r\nS-12;IMG_0002.jpg\r\n".as_bytes()),
            ("IMG_0001.jpg", &jpeg(16, 16)),
            ("IMG_0002.jpg", &jpeg(16, 24)),
            ("IMG_0003.jpg", &jpeg(16, 32)),
        ]),
    );
    assert_eq!(v["counts"]["added"], 2, "{v}");
    assert_eq!(v["counts"]["rejected"], 1, "{v}");
    assert!(errors_of(&server, &v).contains("not_mapped"), "{}", errors_of(&server, &v));
    // PowerSchool's export: Student_Number<TAB>file, no header, ids without leading zeros.
    let v = import(
        "ps.zip",
        zip_of(&[
            ("photos.txt", b"123\tp123.png\n777\tp777.png\n999\tp999.png\n"),
            ("p123.png", &png(8, 8, 10)),
            ("p777.png", &png(8, 8, 20)),
            ("p999.png", &png(8, 8, 30)),
        ]),
    );
    assert_eq!((v["counts"]["updated"].as_u64(), v["counts"]["added"].as_u64()), (Some(1), Some(1)), "{v}");
    assert!(errors_of(&server, &v).contains("no_such_record"), "{}", errors_of(&server, &v));
    // A photographer's PSPA disc: INDEX.TXT (volume, folder, file, names, grade, teacher,
    // id; no header) beside an Images folder.
    let v = import(
        "pspa.zip",
        zip_of(&[
            ("INDEX.TXT", b"FALL26\tImages\t00000001.jpg\tAnn\tLee\t05\tSmith\t000123\r\nFALL26\tImages\t00000002.jpg\tBob\tRay\t05\tSmith\tS-12\r\nFALL26\tImages\t00000003.jpg\tCy\tDay\t05\tSmith\t777\r\n"),
            ("Images/00000001.jpg", &jpeg(8, 8)),
            ("Images/00000002.jpg", &jpeg(8, 16)),
            ("Images/00000003.jpg", &jpeg(16, 8)),
            ("README.TXT", b"PSPA 2.0 disc"),
        ]),
    );
    assert_eq!(v["status"], "complete", "{v} {}", errors_of(&server, &v));
    assert_eq!(v["counts"]["updated"], 3, "{v}");
    // Each student shows the photographer's picture now (one image each).
    let exported = server.cli_ok(&["export", "--tenant", "acme", "--type", "photos", "--photos"]);
    assert!(exported.contains("3 written"), "{exported}");
    assert_eq!(std::fs::read(server.tenant_dir("acme").join("exports/photos/777.jpg")).unwrap(), jpeg(16, 8));
}

#[test]
fn hostile_zips_are_refused_before_an_image_is_inflated() {
    let server = Server::start();
    school(&server);
    let refuse = |name: &str, zip: Vec<u8>, code: &str| -> (Value, String) {
        let local = write_file(server.dir.path(), name, &zip);
        let out = server.cli(&["import", "--tenant", "acme", "--type", "photos", local.to_str().unwrap()]);
        assert!(!out.status.success(), "{name}: {}", output_text(&out));
        let v = server.imports("acme")[0].clone();
        assert_eq!(v["status"], "failed", "{name}: {v}");
        // Its report is in /errors, as a rejected CSV file's is (a walk found none).
        let prefix = format!("{:08}-", v["id"].as_i64().unwrap());
        let report = std::fs::read_dir(server.tenant_dir("acme").join("errors"))
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| std::fs::read_to_string(e.path()).unwrap());
        let errors = errors_of(&server, &v);
        assert!(report.as_deref().is_some_and(|r| r.contains(&format!(",{code},"))), "{name}: {report:?}");
        (v.clone(), errors)
    };
    // A bomb: 200 MiB of zeros that deflate to a fraction of a megabyte.
    let zeros = vec![0u8; 200 << 20];
    let (_, errors) = refuse("bomb.zip", zip_of(&[("000123.jpg", &zeros)]), "zip_bomb");
    assert!(errors.contains("zip_bomb"), "{errors}");
    // A name that climbs out of the zip.
    let (_, errors) = refuse("climb.zip", zip_of(&[("../../000123.jpg", &jpeg(8, 8))]), "path_in_name");
    assert!(errors.contains("path_in_name"), "{errors}");
    // A name that is a payload rather than a path.
    let long = format!("{}.jpg", "d/".repeat(1000));
    let (_, errors) = refuse("long.zip", zip_of(&[(long.as_str(), &jpeg(8, 8))]), "path_in_name");
    assert!(errors.contains("at most 1024"), "{errors}");
    // Not a zip.
    let (v, _) = refuse("text.zip", b"sisId,photo\n".to_vec(), "not_a_zip");
    assert!(v["message"].as_str().unwrap().contains("not a readable zip"), "{v}");
    // A zip with no image in it (a readme only; an empty one): failed, saying so (it was
    // "complete" with nothing in it; found by a newcomer's walk).
    let nothing: &[(&str, &[u8])] = &[];
    for (name, zip) in
        [("readme.zip", zip_of(&[("readme.txt", &b"hello"[..])])), ("empty.zip", zip_of(nothing))]
    {
        let local = write_file(server.dir.path(), name, &zip);
        let out = server.cli(&["import", "--tenant", "acme", "--type", "photos", local.to_str().unwrap()]);
        assert!(!out.status.success(), "{name}: {}", output_text(&out));
        let v = server.imports("acme")[0].clone();
        assert_eq!(v["status"], "failed", "{name}: {v}");
        assert!(v["message"].as_str().unwrap().contains("holds no image"), "{name}: {v}");
    }
    // Nothing was stored.
    assert!(images_stored(&server).is_empty());
}

/// Badge's records are keyed by ID and Campus: a zip in the badge folder names an ID, and a
/// card with one ID at two campuses is named in a map.csv with both columns.
#[test]
fn photos_in_a_types_own_folder_match_a_key_of_two_columns_through_the_map_or_the_exports_names() {
    let server = Server::start();
    server.importing_tenant("acme", "pw-for-tests");
    server.cli_ok(&["tenant", "set", "acme", "folders=badge"]);
    let file = write_file(
        server.dir.path(),
        "badge.csv",
        b"ID,Campus,FirstName,LastName\n77,North,Ann,Lee\n77,South,Ann,Lee\n88,North,Bob,Ray\n",
    );
    server.cli_ok(&["import", "--tenant", "acme", "--type", "badge", file.to_str().unwrap()]);
    let import = |name: &str, zip: Vec<u8>| -> Value {
        let local = write_file(server.dir.path(), name, &zip);
        let _ = server.cli(&["import", "--tenant", "acme", "--type", "badge", local.to_str().unwrap()]);
        server.imports("acme")[0].clone()
    };
    let v = import("cards.zip", zip_of(&[("88.jpg", &jpeg(8, 8)), ("77.jpg", &jpeg(8, 16))]));
    assert_eq!((v["status"].as_str(), v["counts"]["added"].as_u64()), (Some("incomplete"), Some(1)), "{v}");
    let errors = errors_of(&server, &v);
    assert!(errors.contains("ambiguous_key") && errors.contains("77+North, 77+South"), "{errors}");
    let v = import(
        "map.zip",
        zip_of(&[
            ("map.csv", b"Campus,ID,Photo\nSouth,77,south.jpg\nNorth,077,north.jpg\n"),
            ("south.jpg", &jpeg(16, 16)),
            ("north.jpg", &jpeg(16, 24)),
        ]),
    );
    assert_eq!((v["status"].as_str(), v["counts"]["added"].as_u64()), (Some("complete"), Some(2)), "{v}");
    let said = server.cli_ok(&["export", "--tenant", "acme", "--type", "badge", "--photos"]);
    assert!(said.contains("3 written"), "{said}");
    let folder = server.tenant_dir("acme").join("exports/photos");
    assert_eq!(std::fs::read(folder.join("77+South.jpg")).unwrap(), jpeg(16, 16));
    assert_eq!(std::fs::read(folder.join("77+North.jpg")).unwrap(), jpeg(16, 24));
    // The export's own names come back in: a zip of `77+North.jpg` names that card alone, as
    // the ambiguous image's error says (it asked for the exact key, which no name could give).
    assert!(
        errors.contains("name the image after one of them as the photo export does (`77+North.jpg`)"),
        "{errors}"
    );
    let v = import("back.zip", zip_of(&[("77+North.jpg", &jpeg(24, 24)), ("88+North.jpg", &jpeg(8, 8))]));
    assert_eq!((v["status"].as_str(), v["counts"]["updated"].as_u64()), (Some("complete"), Some(1)), "{v}");
    server.cli_ok(&["export", "--tenant", "acme", "--type", "badge", "--photos"]);
    assert_eq!(std::fs::read(folder.join("77+North.jpg")).unwrap(), jpeg(24, 24));
    assert_eq!(std::fs::read(folder.join("77+South.jpg")).unwrap(), jpeg(16, 16));
    // An ID with a `+` of its own still matches by its first column.
    let more = write_file(server.dir.path(), "more.csv", b"ID,Campus,FirstName,LastName\n9+9,North,Cy,Day\n");
    server.cli_ok(&["import", "--tenant", "acme", "--type", "badge", more.to_str().unwrap()]);
    let v = import("plus.zip", zip_of(&[("9+9.jpg", &jpeg(8, 24))]));
    assert_eq!((v["status"].as_str(), v["counts"]["added"].as_u64()), (Some("complete"), Some(1)), "{v}");
}

/// Two types with photos share /exports/photos: a student and an account both keyed 000123
/// would both be 000123.jpg, and each type's export replaced the other's image (a district
/// got the wrong person's photo; found by a newcomer's walk). Neither is exported now, and
/// the file already there is removed; each export names the record and why; the others are
/// exported as before.
#[test]
fn records_of_two_types_with_one_key_do_not_export_each_others_photos() {
    let server = Server::start();
    school(&server);
    server.cli_ok(&["tenant", "set", "acme", "folders=students,photos,accounts"]);
    let import = |name: &str, type_name: &str, bytes: &[u8]| {
        let local = write_file(server.dir.path(), name, bytes);
        let out = server.cli(&["import", "--tenant", "acme", "--type", type_name, local.to_str().unwrap()]);
        assert!(out.status.success(), "{name}: {}", output_text(&out));
    };
    import(
        "accounts.csv",
        "accounts",
        b"Username,FirstName,LastName,CampusEmail\n000123,Al,Ng,al@x.org\nu2,Bo,Li,bo@x.org\n",
    );
    import("kids.zip", "photos", &zip_of(&[("000123.jpg", &jpeg(8, 8)), ("777.jpg", &jpeg(8, 16))]));
    let folder = server.tenant_dir("acme").join("exports/photos");
    let said = server.cli_ok(&["export", "--tenant", "acme", "--type", "students", "--photos"]);
    assert!(said.contains("2 written"), "{said}");
    assert_eq!(std::fs::read(folder.join("000123.jpg")).unwrap(), jpeg(8, 8));
    import("staff.zip", "accounts", &zip_of(&[("000123.jpg", &jpeg(16, 8)), ("u2.jpg", &jpeg(16, 16))]));
    let said = server.cli_ok(&["export", "--tenant", "acme", "--type", "accounts", "--photos"]);
    assert!(
        said.contains("1 written")
            && said.contains("not exported: 1 photos: 000123 (a record of students has a photo that would be 000123.jpg too: neither is exported)"),
        "{said}"
    );
    let said = server.cli_ok(&["export", "--tenant", "acme", "--type", "students", "--photos"]);
    assert!(said.contains("000123 (a record of accounts has a photo that would be 000123.jpg too"), "{said}");
    let files = files_in(&folder);
    assert_eq!(files, ["777.jpg", "u2.jpg"], "no one's 000123.jpg");
}

/// Two students' photos swapped, images of one size stored by one import: the exported files
/// were links to the stored images and carried their time, so each changed file kept its
/// size and time, and rclone and lftp (which compare those) kept the old photos (found by a
/// newcomer's walk). A file that changes gets a new time.
#[test]
fn a_swapped_photo_of_the_same_size_is_exported_with_a_new_time() {
    let server = Server::start();
    school(&server);
    let import = |name: &str, zip: Vec<u8>| {
        let local = write_file(server.dir.path(), name, &zip);
        server.cli_ok(&["import", "--tenant", "acme", "--type", "photos", local.to_str().unwrap()]);
    };
    let (tall, wide) = (jpeg(8, 16), jpeg(16, 8));
    assert_eq!(tall.len(), wide.len(), "two images of one size");
    import("first.zip", zip_of(&[("000123.jpg", &tall), ("777.jpg", &wide)]));
    server.cli_ok(&["export", "--tenant", "acme", "--type", "students", "--photos"]);
    let file = server.tenant_dir("acme").join("exports/photos/000123.jpg");
    let seconds = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let before = seconds(&file);
    std::thread::sleep(Duration::from_millis(1100));
    import("swapped.zip", zip_of(&[("000123.jpg", &wide), ("777.jpg", &tall)]));
    let said = server.cli_ok(&["export", "--tenant", "acme", "--type", "students", "--photos"]);
    assert!(said.contains("2 written"), "{said}");
    assert_eq!(std::fs::read(&file).unwrap(), wide);
    assert!(seconds(&file) > before, "same size, same time: a sync client keeps the old photo");
}

/// A saved photo export after imports keeps /exports/photos current both ways: a new photo zip
/// adds its images, a student leaving removes theirs.
#[test]
fn an_after_import_photo_export_follows_photo_zips_and_leaving_students() {
    let server = Server::start();
    school(&server);
    server.cli_ok(&[
        "export",
        "add",
        "acme",
        "cards",
        "--type",
        "students",
        "--format",
        "photos",
        "--after-import",
    ]);
    let folder = server.tenant_dir("acme").join("exports/photos");
    let zip = zip_of(&[("777.jpg", &jpeg(8, 8))]);
    let local = write_file(server.dir.path(), "p.zip", &zip);
    server.cli_ok(&["import", "--tenant", "acme", "--type", "photos", local.to_str().unwrap()]);
    assert!(
        server.wait_until(Duration::from_secs(30), |_| folder.join("777.jpg").is_file()),
        "the photo import ran the export: {:?}",
        server.cli_ok(&["export", "runs", "acme"])
    );
}
