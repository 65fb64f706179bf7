//! `manifest.csv`: which version a package is, and how each file is to be read.

use super::spec::{Version, files};
use crate::import::{CsvReader, Record};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMode {
    Bulk,
    Delta,
    Absent,
}

impl FileMode {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "bulk" => Some(FileMode::Bulk),
            "delta" => Some(FileMode::Delta),
            "absent" => Some(FileMode::Absent),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FileMode::Bulk => "bulk",
            FileMode::Delta => "delta",
            FileMode::Absent => "absent",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub version: Version,
    /// Every file of the version, with its mode.
    pub files: Vec<(String, FileMode)>,
    pub source_system: Option<String>,
}

/// One thing wrong with a manifest, with the line it is on (0: the manifest as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestProblem {
    pub line: u64,
    pub problem: String,
}

impl Manifest {
    pub fn mode(&self, file: &str) -> FileMode {
        self.files.iter().find(|(f, _)| f == file).map_or(FileMode::Absent, |(_, m)| *m)
    }

    /// Reads `manifest.csv`; every problem is reported, not just the first.
    pub fn parse(bytes: &[u8]) -> Result<Self, Vec<ManifestProblem>> {
        let mut problems = Vec::new();
        let mut problem = |line: u64, p: String| problems.push(ManifestProblem { line, problem: p });
        let mut csv = CsvReader::new(bytes, 64 << 10, 16);
        let mut rec = Record::default();
        let mut props: Vec<(u64, String, String)> = Vec::new();
        match csv.read(&mut rec) {
            Ok(true) if rec.iter().collect::<Vec<_>>() == ["propertyName", "value"] => {}
            Ok(true) => problem(
                1,
                format!(
                    "the header is {:?}; it must be exactly propertyName,value",
                    rec.iter().collect::<Vec<_>>().join(",")
                ),
            ),
            Ok(false) => problem(0, "manifest.csv is empty".into()),
            Err(e) => problem(0, format!("manifest.csv cannot be read as CSV: {e}")),
        }
        loop {
            match csv.read(&mut rec) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    problem(rec.line, format!("cannot be read as CSV: {e}"));
                    break;
                }
            }
            if rec.len() != 2 {
                problem(rec.line, format!("has {} fields; each line is propertyName,value", rec.len()));
                continue;
            }
            let (name, value) = (rec.get(0).unwrap_or(""), rec.get(1).unwrap_or(""));
            if let Some((first, ..)) = props.iter().find(|(_, n, _)| n == name) {
                problem(rec.line, format!("{name} is given twice (first on line {first})"));
                continue;
            }
            props.push((rec.line, name.to_owned(), value.to_owned()));
        }
        let get = |name: &str| props.iter().find(|(_, n, _)| n == name);
        match get("manifest.version") {
            Some((_, _, v)) if v == "1.0" => {}
            Some((line, _, v)) => problem(*line, format!("manifest.version is {v:?}; it must be 1.0")),
            None => problem(0, "manifest.version is missing; add the line manifest.version,1.0".into()),
        }
        let version = match get("oneroster.version") {
            Some((line, _, v)) => match Version::parse(v) {
                Some(v) => Some(v),
                None => {
                    problem(*line, format!("oneroster.version is {v:?}; sluice reads 1.1 and 1.2"));
                    None
                }
            },
            None => {
                problem(
                    0,
                    "oneroster.version is missing; add the line oneroster.version,1.2 (or 1.1)".into(),
                );
                None
            }
        };
        let mut modes = Vec::new();
        if let Some(version) = version {
            for f in files(version) {
                match get(&format!("file.{}", f.name)) {
                    Some((line, name, v)) => match FileMode::parse(v) {
                        Some(m) => modes.push((f.name.clone(), m)),
                        None => problem(*line, format!("{name} is {v:?}; it must be bulk, delta or absent")),
                    },
                    None => problem(
                        0,
                        format!(
                            "file.{} is missing; OneRoster {} needs one line per file (bulk, delta or absent)",
                            f.name,
                            version.as_str()
                        ),
                    ),
                }
            }
            for (line, name, _) in &props {
                let known =
                    matches!(
                        name.as_str(),
                        "manifest.version" | "oneroster.version" | "source.systemName" | "source.systemCode"
                    ) || name.strip_prefix("file.").is_some_and(|f| files(version).any(|s| s.name == f));
                if !known {
                    problem(
                        *line,
                        format!("{name} is not a OneRoster {} manifest property", version.as_str()),
                    );
                }
            }
        }
        match version {
            Some(version) if problems.is_empty() => Ok(Manifest {
                version,
                files: modes,
                source_system: get("source.systemName").map(|(_, _, v)| v.clone()),
            }),
            _ => Err(problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn manifest(version: &str, modes: &[(&str, &str)]) -> String {
        let mut s = format!("propertyName,value\nmanifest.version,1.0\noneroster.version,{version}\n");
        let v = Version::parse(version).unwrap();
        for f in files(v) {
            let mode = modes.iter().find(|(n, _)| *n == f.name).map_or("absent", |(_, m)| m);
            s.push_str(&format!("file.{},{mode}\n", f.name));
        }
        s.push_str("source.systemName,SIS\n");
        s
    }

    #[test]
    fn reads_a_manifest_and_explains_every_mistake() {
        let m = Manifest::parse(manifest("1.2", &[("users", "bulk"), ("orgs", "delta")]).as_bytes()).unwrap();
        assert_eq!(m.version, Version::V1_2);
        assert_eq!(m.mode("users"), FileMode::Bulk);
        assert_eq!(m.mode("orgs"), FileMode::Delta);
        assert_eq!(m.mode("roles"), FileMode::Absent);
        assert_eq!(m.source_system.as_deref(), Some("SIS"));

        let text = |m: &str| {
            Manifest::parse(m.as_bytes())
                .unwrap_err()
                .iter()
                .map(|p| format!("{}: {}", p.line, p.problem))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let good = manifest("1.1", &[("users", "bulk")]);
        assert!(text(&good.replace("oneroster.version,1.1\n", "")).contains("oneroster.version is missing"));
        assert!(
            text(&good.replace("oneroster.version,1.1", "oneroster.version,1.0"))
                .contains("reads 1.1 and 1.2")
        );
        assert!(text(&good.replace("file.users,bulk", "file.users,full")).contains("bulk, delta or absent"));
        assert!(text(&good.replace("file.orgs,absent\n", "")).contains("file.orgs is missing"));
        assert!(text(&format!("{good}file.roles,bulk\n")).contains("file.roles is not a OneRoster 1.1"));
        assert!(text(&format!("{good}file.users,delta\n")).contains("given twice"));
        assert!(text(&good.replace("propertyName,value", "name,value")).contains("propertyName,value"));
        assert!(text("").contains("empty"));
    }
}
