//! The tenant's virtual tree and what a client may do where.
//!
//! ```text
//! /                 read-only root
//! /<import folder>  one per import type: upload, download, rename within, remove
//! /exports          read-only: data sluice produces for the tenant
//! /exports/photos   read-only: records' photos, one KEY.jpg|png per record
//! /errors           read-only: error reports and rejected manifests
//! ```
//!
//! Files live directly in a folder; the one subfolder is sluice's `/exports/photos`, and
//! clients cannot create, remove or rename folders. This module only decides; it never
//! touches a disk.

use crate::VirtualPath;
use std::fmt;

pub const EXPORTS: &str = "exports";
pub const ERRORS: &str = "errors";
/// The folder under `/exports` that records' photos are exported to.
pub const EXPORT_PHOTOS: &str = "photos";
/// `/exports/photos` as a folder's name (its path under the tenant's root).
pub const EXPORT_PHOTOS_FOLDER: &str = "exports/photos";

/// The name of a folder in a tenant's root: lowercase letters, digits, `-`, `_`; 1 to 64
/// characters, starting with a letter; not one of the reserved read-only folders.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FolderName(String);

impl FolderName {
    pub fn parse(raw: &str) -> Result<Self, PolicyError> {
        let valid = !raw.is_empty()
            && raw.len() <= 64
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !valid {
            return Err(PolicyError::BadFolderName(raw.to_owned()));
        }
        if raw == EXPORTS || raw == ERRORS {
            return Err(PolicyError::ReservedFolderName(raw.to_owned()));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Parses a comma-separated list such as `students,employees`, refusing duplicates.
    pub fn parse_list(raw: &str) -> Result<Vec<Self>, PolicyError> {
        let mut out: Vec<Self> = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let name = Self::parse(part)?;
            if out.contains(&name) {
                return Err(PolicyError::DuplicateFolder(part.to_owned()));
            }
            out.push(name);
        }
        Ok(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FolderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a resolved path lands in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node<'a> {
    Root,
    Folder {
        name: &'a str,
        writable: bool,
    },
    /// Something directly inside a folder (it may or may not exist on disk).
    Entry {
        folder: &'a str,
        name: &'a str,
        writable: bool,
    },
    /// A name at the root that is not a folder, or anything nested deeper than a file.
    Outside,
}

/// What a client asks to do with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Open a file for writing (create or overwrite).
    Write,
    Remove,
    MakeDir,
    RemoveDir,
    Symlink,
    SetAttributes,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("the root folder is read-only: put files into one of {0}")]
    RootReadOnly(String),
    #[error("{name} is not a file name this server takes at /: upload one of {accepted}{folders}")]
    RootName { name: String, accepted: String, folders: String },
    #[error("/{0} is read-only: sluice writes there and you can download from it")]
    ReadOnlyFolder(String),
    #[error("folders cannot be created, removed or renamed; your folders are {0}")]
    FoldersAreFixed(String),
    #[error("symbolic links are not supported")]
    NoSymlinks,
    #[error("there is no folder {path}; your folders are {folders}")]
    NoSuchFolder { path: String, folders: String },
    #[error("files live directly in a folder (such as /{0}/file.csv); subfolders are not supported")]
    TooDeep(String),
    #[error("a file can only be renamed within its own folder")]
    AcrossFolders,
    #[error("folder attributes cannot be changed")]
    FolderAttributes,
    #[error("{0} is a folder, not a file")]
    IsAFolder(String),
    #[error(
        "folder name {0:?} is not allowed: use lowercase letters, digits, '-' and '_', starting with a letter"
    )]
    BadFolderName(String),
    #[error("folder name {0:?} is reserved for sluice's read-only folders")]
    ReservedFolderName(String),
    #[error("folder {0:?} is listed twice")]
    DuplicateFolder(String),
}

/// The folders of one tenant, and the files it may upload at its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeLayout {
    import_folders: Vec<FolderName>,
    /// The required file names accepted at the root (routing `root` or `both`), lower-case.
    root_files: Vec<String>,
    /// Routing `root`: the import folders whose types are taken at the root by name are not
    /// shown (uploads go at the root); the others (`/photos`, `/oneroster`) stay.
    hidden: Vec<FolderName>,
}

/// Where a file uploaded at the root lives: the root's own folder name (`Node::Entry`'s
/// `folder` for a file at `/`).
pub const ROOT: &str = "";

impl TreeLayout {
    pub fn new(import_folders: Vec<FolderName>) -> Self {
        Self { import_folders, root_files: Vec::new(), hidden: Vec::new() }
    }

    /// The layout a tenant with `routing` sees: at the root, the required file names of its
    /// types (`root_files`) may be uploaded; with `Routing::Root` its import folders are not
    /// shown. (The folders stay the tenant's: they say which types it imports.)
    pub fn routed(mut self, routing: crate::Routing, root_files: &[(FolderName, String)]) -> Self {
        use crate::Routing;
        self.hidden = match routing {
            Routing::Root => root_files.iter().map(|(f, _)| f.clone()).collect(),
            Routing::Folders | Routing::Both => Vec::new(),
        };
        self.root_files = match routing {
            Routing::Folders => Vec::new(),
            Routing::Root | Routing::Both => {
                let mut names: Vec<String> = root_files.iter().map(|(_, n)| n.to_ascii_lowercase()).collect();
                // Two types of the tenant with one name: the first takes it, as the import does.
                names.sort();
                names.dedup();
                names
            }
        };
        self
    }

    /// Whether `name` may be uploaded at the root: a required file name, or a client's
    /// temporary name for one (`students.csv.filepart`, renamed when whole).
    pub fn root_accepts(&self, name: &str) -> bool {
        // ASCII case only, as the import matches a required name (a Kelvin sign is no `k`).
        let lower = name.to_ascii_lowercase();
        let accepted = |n: &str| self.root_files.iter().any(|f| f == n);
        accepted(&lower)
            || (crate::is_transfer_temp_name(&lower)
                && lower.rsplit_once('.').is_some_and(|(stem, _)| accepted(stem)))
    }

    /// The file names accepted at the root (lower-case), for messages and the dashboard.
    pub fn root_files(&self) -> &[String] {
        &self.root_files
    }

    pub fn import_folders(&self) -> &[FolderName] {
        &self.import_folders
    }

    /// Every folder at the root, in listing order, with whether the tenant may write there.
    pub fn folders(&self) -> impl Iterator<Item = (&str, bool)> {
        self.import_folders
            .iter()
            .filter(|f| !self.hidden.contains(f))
            .map(|f| (f.as_str(), true))
            .chain([(EXPORTS, false), (ERRORS, false)])
    }

    /// The subfolders of a folder (name, as listed in it): `photos` in `exports`.
    pub fn subfolders(&self, folder: &str) -> &'static [&'static str] {
        if folder == EXPORTS { &[EXPORT_PHOTOS] } else { &[] }
    }

    pub fn classify<'a>(&'a self, path: &'a VirtualPath) -> Node<'a> {
        let folder_of = |name: &str| self.folders().find(|(f, _)| *f == name);
        match path.components() {
            [] => Node::Root,
            [top, sub] if top == EXPORTS && sub == EXPORT_PHOTOS => {
                Node::Folder { name: EXPORT_PHOTOS_FOLDER, writable: false }
            }
            [top, sub, name] if top == EXPORTS && sub == EXPORT_PHOTOS => {
                Node::Entry { folder: EXPORT_PHOTOS_FOLDER, name, writable: false }
            }
            [top] => match folder_of(top) {
                Some((name, writable)) => Node::Folder { name, writable },
                None if self.root_accepts(top) => Node::Entry { folder: ROOT, name: top, writable: true },
                None => Node::Outside,
            },
            [top, name] => match folder_of(top) {
                Some((folder, writable)) => Node::Entry { folder, name, writable },
                None => Node::Outside,
            },
            _ => Node::Outside,
        }
    }

    /// Decides whether `op` may touch `path`; on success returns the folder and file name.
    pub fn check<'a>(
        &'a self,
        op: Operation,
        path: &'a VirtualPath,
    ) -> Result<(&'a str, &'a str), PolicyError> {
        match op {
            Operation::MakeDir | Operation::RemoveDir => {
                return Err(PolicyError::FoldersAreFixed(self.folder_list()));
            }
            Operation::Symlink => return Err(PolicyError::NoSymlinks),
            Operation::Write | Operation::Remove | Operation::SetAttributes => {}
        }
        match self.classify(path) {
            Node::Root | Node::Folder { .. } if op == Operation::SetAttributes => {
                Err(PolicyError::FolderAttributes)
            }
            Node::Root | Node::Folder { .. } if op == Operation::Remove => {
                Err(PolicyError::FoldersAreFixed(self.folder_list()))
            }
            Node::Root | Node::Folder { .. } => Err(PolicyError::IsAFolder(path.to_string())),
            Node::Entry { folder, name, writable: true } => Ok((folder, name)),
            Node::Entry { folder, .. } => Err(PolicyError::ReadOnlyFolder(folder.to_owned())),
            Node::Outside => Err(self.outside_error(path)),
        }
    }

    /// Decides a rename: both ends in the same writable folder.
    pub fn check_rename<'a>(
        &'a self,
        from: &'a VirtualPath,
        to: &'a VirtualPath,
    ) -> Result<(&'a str, &'a str, &'a str), PolicyError> {
        if matches!(self.classify(from), Node::Folder { .. } | Node::Root)
            || matches!(self.classify(to), Node::Folder { .. } | Node::Root)
        {
            return Err(PolicyError::FoldersAreFixed(self.folder_list()));
        }
        let (from_folder, from_name) = self.check(Operation::Write, from)?;
        let (to_folder, to_name) = self.check(Operation::Write, to)?;
        if from_folder != to_folder {
            return Err(PolicyError::AcrossFolders);
        }
        Ok((from_folder, from_name, to_name))
    }

    fn outside_error(&self, path: &VirtualPath) -> PolicyError {
        match path.components() {
            [name] if !self.root_files.is_empty() => PolicyError::RootName {
                name: name.clone(),
                accepted: self.root_files.join(", "),
                folders: if self.import_folders.iter().all(|f| self.hidden.contains(f)) {
                    String::new()
                } else {
                    format!(", or into one of {}", self.writable_list())
                },
            },
            [_] => PolicyError::RootReadOnly(self.writable_list()),
            [top, ..] if self.folders().any(|(f, _)| f == top) => PolicyError::TooDeep(top.clone()),
            [top, ..] => PolicyError::NoSuchFolder { path: format!("/{top}"), folders: self.folder_list() },
            [] => PolicyError::RootReadOnly(self.writable_list()),
        }
    }

    fn writable_list(&self) -> String {
        let names: Vec<String> = self
            .import_folders
            .iter()
            .filter(|f| !self.hidden.contains(f))
            .map(|f| format!("/{f}"))
            .collect();
        if names.is_empty() { "(no folders are configured for you)".to_owned() } else { names.join(", ") }
    }

    fn folder_list(&self) -> String {
        self.folders().map(|(f, _)| format!("/{f}")).collect::<Vec<_>>().join(", ")
    }
}

/// The UTC time that names a folder set aside in `DATA_DIR/archive` (`20261129T024800Z`): a
/// removed tenant's, exports moved into a bucket, a bucket's leftovers.
pub fn archive_stamp() -> String {
    jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> TreeLayout {
        TreeLayout::new(FolderName::parse_list("students,employees").unwrap())
    }

    fn p(s: &str) -> VirtualPath {
        VirtualPath::resolve(s.as_bytes()).unwrap()
    }

    #[test]
    fn classifies_the_tree() {
        let l = layout();
        assert_eq!(l.classify(&p("/")), Node::Root);
        assert_eq!(l.classify(&p("/students")), Node::Folder { name: "students", writable: true });
        assert_eq!(l.classify(&p("/exports")), Node::Folder { name: "exports", writable: false });
        let x = p("/errors/r.csv");
        assert_eq!(l.classify(&x), Node::Entry { folder: "errors", name: "r.csv", writable: false });
        assert_eq!(l.classify(&p("/nope")), Node::Outside);
        assert_eq!(l.classify(&p("/students/a/b")), Node::Outside);
        // sluice's one subfolder: read-only photos under /exports.
        assert_eq!(
            l.classify(&p("/exports/photos")),
            Node::Folder { name: "exports/photos", writable: false }
        );
        let photo = p("/exports/photos/1001.jpg");
        assert_eq!(
            l.classify(&photo),
            Node::Entry { folder: "exports/photos", name: "1001.jpg", writable: false }
        );
        assert_eq!(
            l.check(Operation::Write, &photo),
            Err(PolicyError::ReadOnlyFolder("exports/photos".into()))
        );
        assert_eq!(
            l.check(Operation::Remove, &photo),
            Err(PolicyError::ReadOnlyFolder("exports/photos".into()))
        );
        assert_eq!(l.classify(&p("/exports/photos/a/b.jpg")), Node::Outside);
        assert_eq!(l.classify(&p("/students/photos/a.jpg")), Node::Outside);
    }

    #[test]
    fn root_routing_takes_required_file_names_at_the_root() {
        let names = vec![
            (FolderName::parse("students").unwrap(), "students.csv".to_owned()),
            (FolderName::parse("employees").unwrap(), "guardians.csv".to_owned()),
        ];
        let both = layout().routed(crate::Routing::Both, &names);
        let file = p("/Students.CSV");
        assert_eq!(both.check(Operation::Write, &file), Ok((ROOT, "Students.CSV")));
        // WinSCP's temporary name, renamed when whole.
        assert_eq!(
            both.check_rename(&p("/students.csv.filepart"), &p("/students.csv")),
            Ok((ROOT, "students.csv.filepart", "students.csv"))
        );
        let refused = both.check(Operation::Write, &p("/grades.csv")).unwrap_err().to_string();
        assert!(
            refused.contains("guardians.csv, students.csv") && refused.contains("/students"),
            "{refused}"
        );
        assert!(both.folders().any(|(f, _)| f == "students"));
        // Root alone: the import folders are not shown; the names say where files go.
        let root = layout().routed(crate::Routing::Root, &names);
        assert_eq!(root.classify(&p("/students")), Node::Outside);
        assert_eq!(root.folders().map(|(f, _)| f).collect::<Vec<_>>(), vec!["exports", "errors"]);
        assert_eq!(root.import_folders().len(), 2, "the folders still say which types it imports");
        let refused = root.check(Operation::Write, &p("/notes.txt")).unwrap_err().to_string();
        assert!(!refused.contains("/students"), "{refused}");
        // Folders only: the root stays read-only.
        let folders = layout().routed(crate::Routing::Folders, &names);
        assert!(matches!(folders.check(Operation::Write, &file), Err(PolicyError::RootReadOnly(_))));
    }

    #[test]
    fn writes_only_inside_import_folders() {
        let l = layout();
        let ok = p("/students/s.csv");
        assert_eq!(l.check(Operation::Write, &ok), Ok(("students", "s.csv")));
        assert!(
            matches!(l.check(Operation::Write, &p("/s.csv")), Err(PolicyError::RootReadOnly(m)) if m.contains("/students"))
        );
        assert_eq!(
            l.check(Operation::Write, &p("/exports/x.csv")),
            Err(PolicyError::ReadOnlyFolder("exports".into()))
        );
        assert_eq!(
            l.check(Operation::Remove, &p("/errors/x.csv")),
            Err(PolicyError::ReadOnlyFolder("errors".into()))
        );
        assert!(matches!(l.check(Operation::Write, &p("/students/a/b.csv")), Err(PolicyError::TooDeep(_))));
        assert!(matches!(
            l.check(Operation::Write, &p("/other/b.csv")),
            Err(PolicyError::NoSuchFolder { .. })
        ));
        assert!(matches!(l.check(Operation::Write, &p("/students")), Err(PolicyError::IsAFolder(_))));
    }

    #[test]
    fn folders_are_fixed_and_symlinks_refused() {
        let l = layout();
        for path in ["/new", "/students", "/students/sub"] {
            assert!(matches!(l.check(Operation::MakeDir, &p(path)), Err(PolicyError::FoldersAreFixed(_))));
            assert!(matches!(l.check(Operation::RemoveDir, &p(path)), Err(PolicyError::FoldersAreFixed(_))));
        }
        assert!(matches!(l.check(Operation::Remove, &p("/students")), Err(PolicyError::FoldersAreFixed(_))));
        assert_eq!(l.check(Operation::Symlink, &p("/students/l")), Err(PolicyError::NoSymlinks));
        assert_eq!(l.check(Operation::SetAttributes, &p("/students")), Err(PolicyError::FolderAttributes));
        assert_eq!(l.check(Operation::SetAttributes, &p("/")), Err(PolicyError::FolderAttributes));
    }

    #[test]
    fn renames_stay_within_one_writable_folder() {
        let l = layout();
        let (a, b) = (p("/students/a.filepart"), p("/students/a.csv"));
        assert_eq!(l.check_rename(&a, &b), Ok(("students", "a.filepart", "a.csv")));
        assert_eq!(l.check_rename(&a, &p("/employees/a.csv")), Err(PolicyError::AcrossFolders));
        assert!(l.check_rename(&p("/students"), &p("/pupils")).is_err());
        assert!(l.check_rename(&a, &p("/exports/a.csv")).is_err());
        assert!(l.check_rename(&p("/errors/r.csv"), &p("/errors/s.csv")).is_err());
    }

    #[test]
    fn folder_names_are_validated() {
        assert!(FolderName::parse("exports").is_err());
        assert!(FolderName::parse("../x").is_err());
        assert!(FolderName::parse("").is_err());
        assert!(FolderName::parse_list("a,a").is_err());
        assert_eq!(FolderName::parse_list(" a , b ,").unwrap().len(), 2);
    }
}
