//! Lexical resolution of client paths against a tenant's root.
//!
//! Every path a client sends is resolved here exactly once, before any policy check or disk
//! access. Resolution is purely lexical: the tenant's root is `/`, `..` never climbs above it,
//! absolute paths are taken relative to it, and names that could be misread later (NUL,
//! control characters, over-long names) are refused. Nothing here follows symlinks: the
//! tenant tree on disk never contains any that sluice created, and the SFTP layer refuses
//! to create them.

use std::fmt;

/// A normalised path inside a tenant's tree: zero or more components, none of them empty,
/// `.`, `..`, or containing `/`, NUL or control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct VirtualPath {
    components: Vec<String>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("path is not valid UTF-8")]
    NotUtf8,
    #[error("path contains a NUL byte")]
    Nul,
    #[error("path contains a control character")]
    ControlCharacter,
    #[error("path is longer than {max} bytes")]
    TooLong { max: usize },
    #[error("a name in the path is longer than {max} bytes")]
    NameTooLong { max: usize },
}

impl VirtualPath {
    pub const MAX_PATH: usize = 4096;
    pub const MAX_NAME: usize = 255;

    /// The tenant's root, `/`.
    pub fn root() -> Self {
        Self::default()
    }

    /// Resolves raw client bytes. Relative paths are resolved against `/`, which is every
    /// session's working directory.
    pub fn resolve(raw: &[u8]) -> Result<Self, PathError> {
        Self::root().join(raw)
    }

    /// Resolves raw client bytes relative to `self`.
    pub fn join(&self, raw: &[u8]) -> Result<Self, PathError> {
        if raw.len() > Self::MAX_PATH {
            return Err(PathError::TooLong { max: Self::MAX_PATH });
        }
        if raw.contains(&0) {
            return Err(PathError::Nul);
        }
        let text = std::str::from_utf8(raw).map_err(|_| PathError::NotUtf8)?;
        if text.chars().any(char::is_control) {
            return Err(PathError::ControlCharacter);
        }
        let mut components = if text.starts_with('/') { Vec::new() } else { self.components.clone() };
        for part in text.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    components.pop();
                }
                name => {
                    if name.len() > Self::MAX_NAME {
                        return Err(PathError::NameTooLong { max: Self::MAX_NAME });
                    }
                    components.push(name.to_owned());
                }
            }
        }
        Ok(Self { components })
    }

    pub fn components(&self) -> &[String] {
        &self.components
    }

    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The last component, if any.
    pub fn file_name(&self) -> Option<&str> {
        self.components.last().map(String::as_str)
    }
}

/// A file's name where a name alone may stand (a line of a `.done` manifest names a file
/// in the manifest's own folder). Parsed by the one resolution clients' paths go through,
/// [`VirtualPath::resolve`], and then required to be exactly one component, written as
/// is: no `/` or `\`, not empty, `.` or `..`, and nothing a path refuses (NUL, control
/// characters, non-UTF-8, over-long). So joining it under a folder stays in that folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileName(String);

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FileNameError {
    #[error("{0}")]
    Path(#[from] PathError),
    #[error("it contains a path separator ('/' or '\\')")]
    Separator,
    #[error("it is not a file name (empty, \".\" or \"..\")")]
    NotAName,
}

impl FileName {
    pub fn parse(raw: &str) -> Result<Self, FileNameError> {
        let path = VirtualPath::resolve(raw.as_bytes())?;
        if raw.contains(['/', '\\']) {
            return Err(FileNameError::Separator);
        }
        match path.components() {
            [one] if one == raw => Ok(Self(path.components[0].clone())),
            _ => Err(FileNameError::NotAName),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for VirtualPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.components.is_empty() {
            return f.write_str("/");
        }
        for c in &self.components {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        VirtualPath::resolve(s.as_bytes()).unwrap().to_string()
    }

    #[test]
    fn normalises_ordinary_paths() {
        assert_eq!(r(""), "/");
        assert_eq!(r("."), "/");
        assert_eq!(r("/"), "/");
        assert_eq!(r("students"), "/students");
        assert_eq!(r("/students/a.csv"), "/students/a.csv");
        assert_eq!(r("students/./a.csv"), "/students/a.csv");
        assert_eq!(r("students/"), "/students");
    }

    #[test]
    fn dot_dot_never_climbs_above_the_root() {
        assert_eq!(r(".."), "/");
        assert_eq!(r("../../../etc/passwd"), "/etc/passwd");
        assert_eq!(r("/students/../../.."), "/");
        assert_eq!(r("students/../errors/x"), "/errors/x");
    }

    #[test]
    fn double_slashes_collapse() {
        assert_eq!(r("//students//a.csv"), "/students/a.csv");
        assert_eq!(r("////"), "/");
    }

    #[test]
    fn join_resolves_relative_to_a_directory() {
        let dir = VirtualPath::resolve(b"/students").unwrap();
        assert_eq!(dir.join(b"a.csv").unwrap().to_string(), "/students/a.csv");
        assert_eq!(dir.join(b"/errors").unwrap().to_string(), "/errors");
        assert_eq!(dir.join(b"../..").unwrap().to_string(), "/");
    }

    #[test]
    fn refuses_hostile_bytes() {
        assert_eq!(VirtualPath::resolve(b"a\0b"), Err(PathError::Nul));
        assert_eq!(VirtualPath::resolve(b"/students/\xff.csv"), Err(PathError::NotUtf8));
        assert_eq!(VirtualPath::resolve(b"a\nb"), Err(PathError::ControlCharacter));
        assert!(matches!(VirtualPath::resolve(&vec![b'a'; 5000]), Err(PathError::TooLong { .. })));
        assert!(matches!(
            VirtualPath::resolve(format!("/students/{}", "x".repeat(300)).as_bytes()),
            Err(PathError::NameTooLong { .. })
        ));
    }

    #[test]
    fn a_file_name_is_one_component_written_as_is() {
        assert_eq!(FileName::parse("a.csv").unwrap().as_str(), "a.csv");
        assert_eq!(FileName::parse("report..2024.csv").unwrap().as_str(), "report..2024.csv");
        for raw in
            ["../../../ssh_host_ed25519_key", "sub/x.csv", "..\\x.csv", "/etc/passwd", "./a.csv", "a.csv/"]
        {
            assert_eq!(FileName::parse(raw), Err(FileNameError::Separator), "{raw}");
        }
        for raw in ["", ".", ".."] {
            assert_eq!(FileName::parse(raw), Err(FileNameError::NotAName), "{raw:?}");
        }
        assert_eq!(FileName::parse("a\0b"), Err(FileNameError::Path(PathError::Nul)));
        assert_eq!(FileName::parse("a\u{1b}b"), Err(FileNameError::Path(PathError::ControlCharacter)));
        assert!(matches!(
            FileName::parse(&"x".repeat(300)),
            Err(FileNameError::Path(PathError::NameTooLong { .. }))
        ));
    }
}
