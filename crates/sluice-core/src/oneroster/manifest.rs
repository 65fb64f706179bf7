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
    /// Files whose line leaves the mode blank (`file.scoreScales,`): read as absent here;
    /// whoever reads the package decides whether that may stand (its strictness, and whether
    /// the package carries the file). (line, file)
    pub blank: Vec<(u64, String)>,
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
        match Self::read(bytes) {
            (Some(m), problems) if problems.is_empty() => Ok(m),
            (_, problems) => Err(problems),
        }
    }

    /// Reads `manifest.csv` as far as it can: the manifest whenever its version is known
    /// (files whose line is wrong read as absent), and every problem found. A package
    /// refused for its manifest still has every file's header checked against the version.
    pub fn read(bytes: &[u8]) -> (Option<Self>, Vec<ManifestProblem>) {
        let mut problems = Vec::new();
        let mut problem = |line: u64, p: String| problems.push(ManifestProblem { line, problem: p });
        let mut csv = CsvReader::comma(bytes, 64 << 10, 16);
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
        if csv.sep_line().is_some() {
            problem(1, "starts with an Excel sep= line; a manifest starts with propertyName,value".into());
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
        let mut blank = Vec::new();
        if let Some(version) = version {
            for f in files(version) {
                match get(&format!("file.{}", f.name)) {
                    Some((line, _, v)) if v.trim().is_empty() => {
                        blank.push((*line, f.name.clone()));
                        modes.push((f.name.clone(), FileMode::Absent));
                    }
                    Some((line, name, v)) => match FileMode::parse(v) {
                        Some(m) => modes.push((f.name.clone(), m)),
                        None => {
                            problem(*line, format!("{name} is {v:?}; it must be bulk, delta or absent"));
                            modes.push((f.name.clone(), FileMode::Absent));
                        }
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
            for (line, name, value) in &props {
                let known =
                    matches!(
                        name.as_str(),
                        "manifest.version" | "oneroster.version" | "source.systemName" | "source.systemCode"
                    ) || name.strip_prefix("file.").is_some_and(|f| files(version).any(|s| s.name == f));
                // A blank line for a file of the other version (`file.scoreScales,` in a 1.1
                // package, as exports written for both versions carry): for the caller too.
                let other_version = name
                    .strip_prefix("file.")
                    .filter(|f| value.trim().is_empty() && super::is_file_name(f))
                    .filter(|_| !known);
                if let Some(f) = other_version {
                    blank.push((*line, f.to_owned()));
                } else if !known {
                    problem(
                        *line,
                        format!("{name} is not a OneRoster {} manifest property", version.as_str()),
                    );
                }
            }
        }
        let manifest = version.map(|version| Manifest {
            version,
            files: modes,
            source_system: get("source.systemName").map(|(_, _, v)| v.clone()),
            blank,
        });
        (manifest, problems)
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
        // A blank mode is not decided here: it reads as absent and is listed for the caller.
        let blank = Manifest::parse(good.replace("file.orgs,absent", "file.orgs,").as_bytes()).unwrap();
        assert_eq!(blank.mode("orgs"), FileMode::Absent);
        let line = good.lines().position(|l| l == "file.orgs,absent").unwrap() as u64 + 1;
        assert_eq!(blank.blank, [(line, "orgs".to_owned())]);
        // Read as far as it goes: the version and the other files survive a bad line.
        let (partial, problems) =
            Manifest::read(good.replace("file.orgs,absent", "file.orgs,full").as_bytes());
        assert_eq!(problems.len(), 1);
        assert_eq!(partial.unwrap().mode("users"), FileMode::Bulk);
        let other = Manifest::parse(format!("{good}file.scoreScales,\n").as_bytes()).unwrap();
        assert_eq!(other.blank.last().map(|b| b.1.as_str()), Some("scoreScales"));
        assert!(text(&format!("{good}file.scoreScales,bulk\n")).contains("not a OneRoster 1.1"));
        assert!(text(&good.replace("file.orgs,absent\n", "")).contains("file.orgs is missing"));
        assert!(text(&format!("{good}file.roles,bulk\n")).contains("file.roles is not a OneRoster 1.1"));
        assert!(text(&format!("{good}file.users,delta\n")).contains("given twice"));
        assert!(text(&good.replace("propertyName,value", "name,value")).contains("propertyName,value"));
        assert!(text("").contains("empty"));
    }
}
