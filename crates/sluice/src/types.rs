//! The import types this binary knows: the presets compiled in, plus any TOML files in the
//! configured `[imports] types_dir`.

use anyhow::{Context, Result};
use sluice_core::import::ImportTypes;
use std::path::Path;

const PRESETS: &[(&str, &str)] = &[
    ("presets/visitor-aware.toml", include_str!("../../../presets/visitor-aware.toml")),
    ("presets/classtag-guardians.toml", include_str!("../../../presets/classtag-guardians.toml")),
    ("presets/badge.toml", include_str!("../../../presets/badge.toml")),
    ("presets/campus-labs.toml", include_str!("../../../presets/campus-labs.toml")),
    ("presets/oneroster.toml", include_str!("../../../presets/oneroster.toml")),
    ("presets/clever.toml", include_str!("../../../presets/clever.toml")),
    ("presets/photos.toml", include_str!("../../../presets/photos.toml")),
];

pub fn load(extra_dir: Option<&Path>) -> Result<ImportTypes> {
    let mut files: Vec<(String, String)> =
        PRESETS.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
    if let Some(dir) = extra_dir {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read types_dir {}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        for p in paths {
            let text = std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
            files.push((p.display().to_string(), text));
        }
    }
    Ok(ImportTypes::parse(&files)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn presets_parse() {
        let types = super::load(None).unwrap();
        for name in [
            "students",
            "students_ascender",
            "employees",
            "visitors",
            "visitors_powerschool",
            "visitors_ascender",
            "volunteers",
            "users",
            "court_orders",
            "bus_schedule",
            "guardians",
            "badge",
            "accounts",
        ] {
            assert!(types.get(name).is_some(), "{name}");
        }
    }
}
