//! OneRoster packages (`sluice-ingest`): arbitrary bytes as the uploaded zip, through every
//! check made before inflating (central directory read from the bytes, local headers,
//! names, count, sizes, ratios, overlaps), then the manifest and each listed file, checked
//! row by row as an import does, without a store.
//!
//! Invariants: no panic; no entry inflates past the size its directory record declares;
//! nothing is written outside the temporary folder that holds the package (and nothing but
//! the package is in it afterwards).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let base = if Path::new("/dev/shm").is_dir() { Path::new("/dev/shm") } else { &std::env::temp_dir() };
    let dir = tempfile::tempdir_in(base).expect("a temporary folder");
    let path = dir.path().join("package.zip");
    std::fs::write(&path, data).expect("writing the package");
    if let Ok(files) = sluice_ingest::fuzzing::read_package(&path) {
        for f in files {
            assert!(
                f.inflated <= f.declared,
                "{} inflated {} bytes, declared {}",
                f.name,
                f.inflated,
                f.declared
            );
        }
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["package.zip"], "the package's folder holds more than the package");
});
