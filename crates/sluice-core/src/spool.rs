//! Who owns a file in a spool that several servers may share (one data directory on a shared
//! filesystem): each name starts with its process's tag, `p{pid}-{host}.`, so that a starting
//! server removes what dead processes of its own host left, and nothing of a live server's.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// This process's tag: `p{pid}-{host}` (the host name's letters and digits only).
pub fn owner_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| format!("p{}-{}", std::process::id(), host()))
}

fn host() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = raw.trim().chars().filter(char::is_ascii_alphanumeric).take(64).collect();
    if host.is_empty() { "localhost".to_owned() } else { host }
}

/// Whether a spool file was left by a process that has ended: one of this host's (by its tag)
/// whose process is gone, or anyone's (another host's, or a name without a tag) untouched for
/// `stale` (a transfer in progress writes; no session lasts that long idle).
pub fn is_leftover(path: &Path, stale: Duration) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mine = owner_tag().split_once('-').map(|(_, host)| host);
    if let Some((pid, host)) =
        name.strip_prefix('p').and_then(|r| r.split_once('.')).and_then(|(tag, _)| tag.split_once('-'))
        && Some(host) == mine
        && let Ok(pid) = pid.parse::<u32>()
    {
        return !Path::new("/proc").join(pid.to_string()).exists();
    }
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > stale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spool_file_is_a_leftover_once_its_process_is_gone_or_it_is_long_untouched() {
        let dir = std::env::temp_dir().join(format!("sluice-spool-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let host = owner_tag().split_once('-').unwrap().1.to_owned();
        let mine = dir.join(format!("{}.acme-1.upload", owner_tag()));
        // Process 0 is never a process of ours; /proc/0 does not exist.
        let dead = dir.join(format!("p0-{host}.acme-2.upload"));
        let elsewhere = dir.join("p1-otherhost.acme-3.upload");
        let untagged = dir.join(".pull-123");
        for f in [&mine, &dead, &elsewhere, &untagged] {
            std::fs::write(f, "x").unwrap();
        }
        let day = Duration::from_secs(86_400);
        assert!(!is_leftover(&mine, day), "this live process's");
        assert!(is_leftover(&dead, day), "a dead process of this host");
        assert!(!is_leftover(&elsewhere, day), "another host's, recently written");
        assert!(!is_leftover(&untagged, day));
        assert!(
            is_leftover(&elsewhere, Duration::ZERO) && is_leftover(&untagged, Duration::ZERO),
            "long untouched"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
