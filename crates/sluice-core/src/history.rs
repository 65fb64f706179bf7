//! The import history: what sluice keeps about each import run (one file of a type, or one
//! package), whatever stores it. Not to be confused with [`crate::import`], which reads the
//! files: an [`ImportRecord`] is the row in the history that says how one run went.

/// Where an import run is: `running` until it ends, then one of the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ImportStatus {
    Running,
    Complete,
    Incomplete,
    Failed,
    Held,
    Discarded,
    /// Was held, and a newer import of the same type (for a package: carrying any of the same
    /// files) was applied after it: approving it would put older data over newer, so it can
    /// no longer be approved. Its file is kept for download.
    Superseded,
}

impl ImportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportStatus::Running => "running",
            ImportStatus::Complete => "complete",
            ImportStatus::Incomplete => "incomplete",
            ImportStatus::Failed => "failed",
            ImportStatus::Held => "held",
            ImportStatus::Discarded => "discarded",
            ImportStatus::Superseded => "superseded",
        }
    }

    /// The status named by [`ImportStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => ImportStatus::Running,
            "complete" => ImportStatus::Complete,
            "incomplete" => ImportStatus::Incomplete,
            "failed" => ImportStatus::Failed,
            "held" => ImportStatus::Held,
            "discarded" => ImportStatus::Discarded,
            "superseded" => ImportStatus::Superseded,
            _ => return None,
        })
    }
}

/// What an import did (or, planned and held, would do) to the records it loads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Counts {
    pub rows: u64,
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub deleted: u64,
    pub rejected: u64,
}

/// One import run in a tenant's import history: which file (or package) of which type, where
/// it came from, how it ended (status, counts, message, warnings), and, for a held import,
/// the decision about it. Its row errors are [`StoredError`]s. Created `running` when the run
/// starts, written once more, with everything it did, in the transaction that applies it.
#[derive(Debug, Clone)]
pub struct ImportRecord {
    pub id: i64,
    pub tenant: String,
    pub type_name: String,
    pub file_name: String,
    pub source: String,
    pub upload_id: Option<i64>,
    pub status: ImportStatus,
    pub encoding: Option<String>,
    /// The delimiter the file was read with (`comma`, `tab`, `semicolon`, `pipe`).
    pub delimiter: Option<String>,
    pub counts: Counts,
    pub message: Option<String>,
    pub warnings: Vec<String>,
    pub held_file: Option<String>,
    pub report_file: Option<String>,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    /// Who approved or discarded the import when it was held (`ann@acme.org (dashboard)`,
    /// `API key "sis-sync"`), and when.
    pub decided_by: Option<String>,
    pub decided_ms: Option<i64>,
    /// The newer applied import that superseded this held one.
    pub superseded_by: Option<i64>,
    /// A failed (or incomplete) import someone has looked at: who, and when. It no longer
    /// counts among what the operator has to look at.
    pub acknowledged_by: Option<String>,
    pub acknowledged_ms: Option<i64>,
}

/// The name of import `id`'s error report in its tenant's `/errors` (of the file `file_name`).
pub fn error_report_name(id: i64, file_name: &str) -> String {
    let stem = file_name.rsplit_once('.').map_or(file_name, |(s, _)| s);
    let stem: String = stem.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect();
    format!("{id:08}-{stem}-errors.csv")
}

impl ImportRecord {
    /// The name of the import's error report in the tenant's `/errors` (and as an email's
    /// attachment): the id zero-padded so that a listing sorts by age (`00000017-students-errors.csv`),
    /// then the file's stem, kept to letters, digits, `-`, `_` and `.`.
    pub fn error_report_name(&self) -> String {
        error_report_name(self.id, &self.file_name)
    }

    /// What was decided about the import when it was held, by whom and when:
    /// (`"approved"` or `"discarded"`, who, milliseconds since the epoch).
    pub fn decision(&self) -> Option<(&'static str, &str, i64)> {
        if matches!(self.status, ImportStatus::Held | ImportStatus::Superseded) {
            // Approved, but held again: nothing is decided yet.
            return None;
        }
        let what = if self.status == ImportStatus::Discarded { "discarded" } else { "approved" };
        Some((what, self.decided_by.as_deref()?, self.decided_ms?))
    }
}

/// One row error an import run kept (at most a bound per run; its report file has them all):
/// where it is, whose it is, and why. Also its own JSON view (API, `--json`, webhooks).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = RowError))]
pub struct StoredError {
    /// The line in the file (1 is the header).
    pub line: u64,
    /// The record's key and name, where the row had them.
    pub key: String,
    pub name: String,
    pub column: String,
    /// A stable code (`required`, `bad_date`, `duplicate_key`...).
    pub code: String,
    pub reason: String,
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_from_its_name() {
        use ImportStatus::*;
        for s in [Running, Complete, Incomplete, Failed, Held, Discarded, Superseded] {
            assert_eq!(ImportStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ImportStatus::parse("approved"), None);
    }
}
