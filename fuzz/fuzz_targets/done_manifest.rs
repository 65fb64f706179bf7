//! `.done` manifests (`sluice_core::manifest`): parsing arbitrary bytes, and the rewrite that
//! marks lines INVALID for `.CONTAINSINVALIDFILES`.
//!
//! Invariants: no panic; a parsed manifest has between one and `MAX_ENTRIES` lines, each with
//! a name and at most a 32-digit lowercase MD5; a name that parses as a file name has no
//! separator or `..`; the rewrite of a parsed manifest, with every line marked or with none,
//! parses again to the same lines; rewriting the rewrite with the same marks changes nothing
//! (old `INVALID` marks are replaced, never doubled).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::manifest::{MAX_ENTRIES, Manifest, mark_invalid};

/// Reasons as sluice writes them, with every character XML needs escaped.
const REASONS: [&str; 3] = [
    "no such file in this folder",
    "checksum mismatch: the file's MD5 is 0cc175b9c0f1b6a831c399e269772661 & not <\"that\">",
    "le nom « ../x » n'est pas un fichier; 'quote'",
];

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = Manifest::parse(data) else {
        assert!(mark_invalid(data, &[(0, "x".into())]).is_err(), "a rewrite of what does not parse");
        return;
    };
    assert!(!manifest.entries.is_empty() && manifest.entries.len() <= MAX_ENTRIES);
    for entry in &manifest.entries {
        assert!(!entry.name.is_empty());
        if let Some(md5) = &entry.md5 {
            assert!(md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
        if let Ok(file) = &entry.file {
            let name = file.as_str();
            assert!(!name.contains(['/', '\\']) && name != ".." && name != ".", "{name:?} is a file name");
        }
    }
    let unmarked = mark_invalid(data, &[]).expect("marking nothing");
    assert_eq!(Manifest::parse(&unmarked).as_ref(), Ok(&manifest), "clearing the marks changed the lines");
    let invalid: Vec<(usize, String)> =
        (0..manifest.entries.len()).map(|i| (i, REASONS[i % REASONS.len()].to_owned())).collect();
    let rewritten = mark_invalid(data, &invalid).expect("the rewrite of a manifest that parsed");
    let again = Manifest::parse(&rewritten).unwrap_or_else(|e| {
        panic!("the rewrite does not parse: {e}\n{}", String::from_utf8_lossy(&rewritten))
    });
    assert_eq!(again, manifest, "the rewrite changed the lines");
    assert_eq!(mark_invalid(&rewritten, &invalid).expect("a rewrite of the rewrite"), rewritten);
});
