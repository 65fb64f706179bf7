//! What a notification says: an email (MIME, with the error report attached) and a webhook's
//! JSON body.

use sluice_core::saved_export::{ExportRun, RunOutcome};
use sluice_core::views::{ExportFailedEvent, ImportFinishedEvent};
use sluice_store::{ImportRecord, StoredError};

fn summary(r: &ImportRecord) -> String {
    let c = r.counts;
    format!(
        "{} rows: {} added, {} updated, {} unchanged, {} deleted, {} rejected",
        c.rows, c.added, c.updated, c.unchanged, c.deleted, c.rejected
    )
}

/// The whole message, headers included, with CRLF line ends.
pub fn email(
    from: &str,
    to: &str,
    r: &ImportRecord,
    errors: &[StoredError],
    report: Option<&[u8]>,
) -> String {
    let subject =
        format!("[sluice] {}: {} import {} ({})", r.tenant, r.file_name, r.status.as_str(), summary(r));
    let mut body = format!(
        "Import #{} of {} for tenant {} ended: {}.\r\n\r\n{}\r\n",
        r.id,
        r.file_name,
        r.tenant,
        r.status.as_str(),
        summary(r)
    );
    if let Some(m) = &r.message {
        body.push_str(&format!("\r\n{m}\r\n"));
    }
    // What else the import did that a reader must know (held imports it superseded,
    // records referring to ones it deleted).
    for w in &r.warnings {
        body.push_str(&format!("\r\nNote: {w}\r\n"));
    }
    if !errors.is_empty() {
        body.push_str("\r\nFirst rejected rows:\r\n");
        for e in errors {
            let record = [e.key.as_str(), e.name.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>();
            let record =
                if record.is_empty() { String::new() } else { format!(" (record {})", record.join(" ")) };
            body.push_str(&format!(
                "  line {}, {}: {} ({}) value {:?}{record}\r\n",
                e.line, e.column, e.reason, e.code, e.value
            ));
        }
    }
    if report.is_some() {
        body.push_str("\r\nEvery rejected row is in the attached error report.\r\n");
    }
    let boundary = format!("sluice-{}-{}", r.id, sluice_store::now_ms());
    let mut m = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {}\r\nDate: {}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        encode_header(&subject),
        rfc2822_now(),
        base64_lines(body.as_bytes())
    );
    if let Some(report) = report {
        let name = r.error_report_name();
        m.push_str(&format!(
            "--{boundary}\r\nContent-Type: text/csv; charset=utf-8; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            base64_lines(report)
        ));
    }
    m.push_str(&format!("--{boundary}--\r\n"));
    m
}

/// The message telling of a saved export's failed run, headers included, with CRLF line ends.
pub fn export_failed_email(from: &str, to: &str, run: &ExportRun) -> String {
    let why = match &run.outcome {
        Some(RunOutcome::Failed(why)) => why.as_str(),
        _ => "it did not finish",
    };
    let subject = format!("[sluice] {}: export {} failed", run.tenant, run.export);
    let body = format!(
        "Run #{} of the saved export {} for tenant {} ({}) failed:\r\n\r\n{why}\r\n\r\n\
         Nothing was written: the last good file stays in /exports. `sluice export runs {} {}` lists every run.\r\n",
        run.id,
        run.export,
        run.tenant,
        run.cause.as_str(),
        run.tenant,
        run.export
    );
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {}\r\nDate: {}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        encode_header(&subject),
        rfc2822_now(),
        base64_lines(body.as_bytes())
    )
}

/// The webhook body of a saved export's failed run: the run as the API shows it.
pub fn export_failed_body(delivery: i64, run: &ExportRun) -> String {
    let event = ExportFailedEvent::new(delivery, &run.tenant, run.into());
    serde_json::to_string(&event).unwrap_or_else(|_| "null".into())
}

/// A plain text email (a password reset's): `from`, `to`, a subject and a body.
pub fn plain_email(from: &str, to: &str, subject: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {}\r\nDate: {}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        encode_header(subject),
        rfc2822_now(),
        base64_lines(body.as_bytes())
    )
}

/// A header value as RFC 2047 UTF-8 base64 when it is not plain ASCII.
fn encode_header(v: &str) -> String {
    if v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        v.to_owned()
    } else {
        format!("=?utf-8?B?{}?=", base64(v.as_bytes()))
    }
}

/// The current time as an RFC 2822 `Date:` header value, in UTC.
fn rfc2822_now() -> String {
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    // Printing a UTC time cannot fail; the epoch is a valid stand-in if it ever did.
    jiff::fmt::rfc2822::to_string(&now).unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".into())
}

fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Base64 in lines of 76 characters (RFC 2045).
fn base64_lines(data: &[u8]) -> String {
    let text = base64(data);
    text.as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// The webhook's body: the same import and row-error views the API answers with.
pub fn webhook_body(delivery: i64, r: &ImportRecord, errors: &[StoredError]) -> String {
    let event = ImportFinishedEvent::new(delivery, r.into(), errors.to_vec());
    // Plain fields (strings, numbers) always serialise; `null` is never sent in practice.
    serde_json::to_string(&event).unwrap_or_else(|_| "null".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(plain.as_bytes()), encoded);
        }
    }

    /// The notification of an import that superseded a held one says so (mail and webhook).
    #[test]
    fn an_import_that_superseded_a_held_one_says_so() {
        let r = sluice_store::ImportRecord {
            acknowledged_by: None,
            acknowledged_ms: None,
            id: 9,
            tenant: "acme".into(),
            type_name: "students".into(),
            file_name: "students.csv".into(),
            source: "upload".into(),
            upload_id: None,
            status: sluice_store::ImportStatus::Complete,
            encoding: None,
            delimiter: None,
            counts: sluice_store::Counts::default(),
            message: None,
            warnings: vec!["supersedes held import 7 (students.csv): it is older than this one".into()],
            held_file: None,
            report_file: None,
            created_ms: 0,
            finished_ms: None,
            decided_by: None,
            decided_ms: None,
            superseded_by: None,
        };
        let mail = super::email("sluice@example.org", "ops@example.org", &r, &[], None);
        let body64: String = mail
            .split("Content-Transfer-Encoding: base64\r\n\r\n")
            .nth(1)
            .unwrap()
            .split("--sluice")
            .next()
            .unwrap()
            .replace("\r\n", "");
        let body = decode64(&body64);
        assert!(body.contains("Note: supersedes held import 7 (students.csv)"), "{body}");
        let hook: serde_json::Value = serde_json::from_str(&super::webhook_body(1, &r, &[])).unwrap();
        assert_eq!(hook["import"]["warnings"][0], r.warnings[0]);
    }

    fn decode64(s: &str) -> String {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = Vec::new();
        for c in s.bytes().filter(|c| *c != b'=') {
            bits = (bits << 6) | alphabet.iter().position(|a| *a == c).unwrap() as u32;
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
                bits &= (1 << n) - 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    /// A failed export run's mail names the tenant, export and why; its webhook carries the run.
    #[test]
    fn a_failed_export_run_says_which_and_why() {
        use sluice_core::saved_export::{ExportRun, RunCause, RunOutcome};
        let run = ExportRun {
            id: 4,
            tenant: "acme".into(),
            export: "roster".into(),
            cause: RunCause::Schedule,
            started_ms: 0,
            finished_ms: Some(1),
            outcome: Some(RunOutcome::Failed("cannot write the export: No space left on device".into())),
        };
        let mail = super::export_failed_email("sluice@example.org", "ops@example.org", &run);
        assert!(mail.contains("Subject: [sluice] acme: export roster failed\r\n"), "{mail}");
        let body = decode64(&mail.split("\r\n\r\n").nth(1).unwrap().replace("\r\n", ""));
        assert!(
            body.contains("Run #4 of the saved export roster for tenant acme (schedule) failed"),
            "{body}"
        );
        assert!(body.contains("No space left on device") && body.contains("last good file stays"), "{body}");
        let hook: serde_json::Value = serde_json::from_str(&super::export_failed_body(7, &run)).unwrap();
        assert_eq!((hook["event"].as_str(), hook["delivery"].as_i64()), (Some("export.failed"), Some(7)));
        assert_eq!(hook["run"]["error"], "cannot write the export: No space left on device");
    }

    #[test]
    fn dates_are_rfc_2822() {
        let d = super::rfc2822_now();
        assert!(d.ends_with(" +0000") && d.len() >= 30, "{d}");
        let read = jiff::fmt::rfc2822::parse(&d).unwrap();
        let age = jiff::Timestamp::now().duration_since(read.timestamp());
        assert!(age.as_secs() < 5, "{d} is now");
    }
}
