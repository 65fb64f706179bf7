//! Who owns a file in a spool that several servers may share (one data directory on a shared
//! filesystem): each name starts with its process's tag, `p{pid}-{host}-{nonce}.`, so that a
//! starting server removes what dead processes of its own host left, and nothing of a live
//! server's. The nonce (random per process) keeps tags apart where pid and host repeat: a
//! container restarted as pid 1 under the same host name, containers sharing the host's name.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// This process's tag: `p{pid}-{host}-{nonce}` (the host name's letters and digits only; the
/// nonce 8 random hex digits).
pub fn owner_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| format!("p{}-{}-{}", std::process::id(), host(), nonce()))
}

fn host() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = raw.trim().chars().filter(char::is_ascii_alphanumeric).take(64).collect();
    if host.is_empty() { "localhost".to_owned() } else { host }
}

fn nonce() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 4];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // No randomness: the clock's nanoseconds are still unlikely to repeat.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        bytes = nanos.subsec_nanos().to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The (pid, host) of a name that starts with a tag and a dot.
fn owner_of(name: &str) -> Option<(u32, &str)> {
    let (tag, _) = name.strip_prefix('p')?.split_once('.')?;
    let mut parts = tag.splitn(3, '-');
    let (pid, host, _nonce) = (parts.next()?, parts.next()?, parts.next()?);
    Some((pid.parse().ok()?, host))
}

/// Whether a spool file was left by a process that has ended: one of this host's (by its tag)
/// whose process is gone, or anyone's (another host's, or a name without a tag) untouched for
/// `stale` (a transfer in progress writes; no session lasts that long idle).
pub fn is_leftover(path: &Path, stale: Duration) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mine = owner_of(&format!("{}.", owner_tag())).map(|(_, host)| host.to_owned());
    if let Some((pid, host)) = owner_of(&name)
        && Some(host) == mine.as_deref()
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
        let host = owner_of(&format!("{}.", owner_tag())).unwrap().1.to_owned();
        assert_eq!(owner_tag().rsplit('-').next().map(str::len), Some(8), "a nonce: {}", owner_tag());
        let mine = dir.join(format!("{}.acme-1.upload", owner_tag()));
        // Process 0 is never a process of ours; /proc/0 does not exist.
        let dead = dir.join(format!("p0-{host}-0badcafe.acme-2.upload"));
        let elsewhere = dir.join("p1-otherhost-0badcafe.acme-3.upload");
        let untagged = dir.join(".pull-123");
        for f in [&mine, &dead, &elsewhere, &untagged] {
            std::fs::write(f, "x").unwrap();
        }
        let day = Duration::from_secs(86_400);
        assert!(!is_leftover(&mine, day), "this live process's");
        assert!(is_leftover(&dead, day), "a dead process of this host");
        assert!(!is_leftover(&elsewhere, day), "another host's, recently written");
        assert!(!is_leftover(&untagged, day));
        std::thread::sleep(Duration::from_millis(5));
        let moment = Duration::from_millis(1);
        assert!(is_leftover(&elsewhere, moment) && is_leftover(&untagged, moment), "long untouched");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
