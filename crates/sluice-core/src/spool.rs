//! Who owns a file in a spool that several servers may share (one data directory on a shared
//! filesystem): each name starts with its process's tag, `p{pid}-{host}-{nonce}.` (the nonce
//! random per process: pid and host name repeat across containers and restarts), and a
//! server holds a lock on its owner file (`spool/owners/TAG.owner`) for as long as it runs,
//! so that a starting server removes what ended processes left and nothing of a running
//! one's, whatever pid namespace either runs in.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// This process's tag: `p{pid}-{host}-{nonce}` (the host name's letters and digits only; the
/// nonce 8 random hex digits).
pub fn owner_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| format!("p{}-{}-{}", std::process::id(), host(), nonce()))
}

/// Locks this process's owner file in `dir` for the rest of its life (the OS lets go when it
/// ends, however it ends).
pub fn hold_owner(dir: &Path) -> std::io::Result<()> {
    static HELD: OnceLock<std::fs::File> = OnceLock::new();
    if HELD.get().is_some() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    // Locked under a name no sweep looks at, then renamed into place (the lock goes with the
    // file): a server sweeping meanwhile never finds it unlocked and removes it.
    let path = dir.join(format!("{}.owner", owner_tag()));
    let partial = dir.join(format!("{}.owner-new", owner_tag()));
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&partial)?;
    file.lock()?;
    std::fs::rename(&partial, &path)?;
    let _ = HELD.set(file);
    let _ = OWNERS.set(dir.to_path_buf());
    Ok(())
}

/// The owners' directory of this process's owner file (set by [`hold_owner`]).
static OWNERS: OnceLock<std::path::PathBuf> = OnceLock::new();

/// Marks this process's owner file as written now: its age then tells, once the process
/// ended, how long ago that was (see [`sweep_owners`]). A server calls it hourly.
pub fn refresh_owner() {
    if let Some(owners) = OWNERS.get() {
        let path = owners.join(format!("{}.owner", owner_tag()));
        if let Ok(file) = std::fs::OpenOptions::new().write(true).open(path) {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
    }
}

/// Whether the process `tag` names is known to have ended, asked by a process that holds an
/// owner file (a server), to take over its work: its owner file is there and unlocked. A
/// process without one (a command, a server whose file is elsewhere) is not known to have
/// ended, and a process that holds none itself (a command, a test) takes over nothing.
pub fn other_ended(tag: &str) -> bool {
    OWNERS.get().is_some_and(|owners| tag != owner_tag() && owner_state(owners, tag) == Some(true))
}

/// How long an ended process's owner file is kept: while others may still take over its
/// work (a scheduled run is asked for for a day).
pub const ENDED_OWNER_KEPT: std::time::Duration = std::time::Duration::from_secs(2 * 86_400);

/// Creates `path` (it must not exist: `AlreadyExists` otherwise) with mode 0600 holding
/// `data`: written whole under a name of this process's, synced, then linked into place, so
/// that servers starting together on one data directory never read half a file and the first
/// one made is everyone's (the host key, the secret key).
pub fn create_whole_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let partial = path.with_extension(format!("{}.partial", owner_tag()));
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&partial)?;
    let written = file.write_all(data).and_then(|()| file.sync_all());
    let linked = written.and_then(|()| std::fs::hard_link(&partial, path));
    let _ = std::fs::remove_file(&partial);
    linked
}

/// Removes the owner files in `dir` of processes that ended (their lock is free) and were
/// last written more than `kept` ago (see [`ENDED_OWNER_KEPT`]; a running server writes its
/// own hourly, [`refresh_owner`]), and files a process left half-made (`.owner-new`, a minute
/// old and unlocked).
pub fn sweep_owners(dir: &Path, kept: Duration) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let kept = match () {
            _ if name.ends_with(".owner") => kept,
            _ if name.ends_with(".owner-new") => Duration::from_secs(60),
            _ => continue,
        };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|a| a > kept);
        let ended = old && std::fs::File::open(entry.path()).is_ok_and(|f| f.try_lock().is_ok());
        if ended {
            let _ = std::fs::remove_file(entry.path());
        }
    }
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

/// The tag a spool name starts with (before its first dot), if it has one.
fn tag_of(name: &str) -> Option<&str> {
    let (tag, _) = name.split_once('.')?;
    let mut parts = tag.strip_prefix('p')?.splitn(3, '-');
    let (pid, _host, nonce) = (parts.next()?, parts.next()?, parts.next()?);
    (pid.parse::<u32>().is_ok() && !nonce.is_empty()).then_some(tag)
}

/// Whether the process a tag names is known to be running (`Some(false)`: its owner file is
/// locked), to have ended (`Some(true)`: the file is there, unlocked), or neither (`None`: no
/// owner file, a command's or one swept already).
fn owner_state(owners: &Path, tag: &str) -> Option<bool> {
    let owner = std::fs::File::open(owners.join(format!("{tag}.owner"))).ok()?;
    match owner.try_lock() {
        Ok(()) => Some(true),
        Err(std::fs::TryLockError::WouldBlock) => Some(false),
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

/// Whether the process a tag names has ended, as far as a starting server can tell: it holds
/// no owner file lock (a server's would be held while it runs).
pub fn owner_ended(owners: &Path, tag: &str) -> bool {
    owner_state(owners, tag) != Some(false)
}

/// Whether a spool file was left by a process that has ended: its owner file in `owners` is
/// there and no longer locked, or (no owner file: a command's, an older server's, another
/// kind of name) it was untouched for `stale` (a transfer in progress writes).
pub fn is_leftover(owners: &Path, path: &Path, stale: Duration) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if let Some(ended) = tag_of(&name).and_then(|tag| owner_state(owners, tag)) {
        return ended;
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
    fn a_spool_file_is_a_leftover_once_its_owner_has_ended_or_it_is_long_untouched() {
        let dir = std::env::temp_dir().join(format!("sluice-spool-test-{}", std::process::id()));
        let owners = dir.join("owners");
        std::fs::create_dir_all(&owners).unwrap();
        assert_eq!(owner_tag().rsplit('-').next().map(str::len), Some(8), "a nonce: {}", owner_tag());
        hold_owner(&owners).unwrap();
        let mine = dir.join(format!("{}.acme-1.upload", owner_tag()));
        // An ended process: its owner file is there, unlocked (same pid and host as this one:
        // a restarted container's pid 1, say; only the nonce differs).
        let (pid, host) = (std::process::id(), owner_tag().split('-').nth(1).unwrap().to_owned());
        let ended_tag = format!("p{pid}-{host}-0badcafe");
        std::fs::write(owners.join(format!("{ended_tag}.owner")), "").unwrap();
        let ended = dir.join(format!("{ended_tag}.acme-2.upload"));
        // A running process elsewhere (another pid namespace, another machine): its owner file
        // is locked.
        let running_tag = "p1-otherhost-feedf00d";
        let running_owner = std::fs::File::create(owners.join(format!("{running_tag}.owner"))).unwrap();
        running_owner.lock().unwrap();
        let running = dir.join(format!("{running_tag}.acme-3.upload"));
        let untagged = dir.join(".pull-123");
        for f in [&mine, &ended, &running, &untagged] {
            std::fs::write(f, "x").unwrap();
        }
        let day = Duration::from_secs(86_400);
        assert!(!is_leftover(&owners, &mine, day), "this running process's");
        assert!(is_leftover(&owners, &ended, day), "an ended process's, same pid and host");
        // (Locks within one process conflict only between open files: flock.)
        assert!(!is_leftover(&owners, &running, day), "a running process's, whatever its pid");
        assert!(!is_leftover(&owners, &untagged, day), "no owner: written recently");
        std::thread::sleep(Duration::from_millis(5));
        assert!(is_leftover(&owners, &untagged, Duration::from_millis(1)), "no owner: long untouched");
        assert!(!is_leftover(&owners, &running, Duration::ZERO), "an owner's lock decides, not age");
        assert!(owner_ended(&owners, &ended_tag) && !owner_ended(&owners, running_tag));
        assert!(!owner_ended(&owners, owner_tag()) && owner_ended(&owners, "p9-nowhere-00000000"));
        // Asked without the directory by a process that holds an owner file (a server), to
        // take over its work: only a process whose file is there and unlocked has ended.
        assert!(other_ended(&ended_tag) && !other_ended(running_tag) && !other_ended(owner_tag()));
        assert!(!other_ended("p9-nowhere-00000000"), "no owner file: not known to have ended");
        assert!(!owners.join(format!("{}.owner-new", owner_tag())).exists(), "locked, then renamed");
        // A half-made owner file a killed process left goes after a minute; a running
        // server's file is written hourly, so its age counts from its end.
        let half = owners.join("p5-gone-00000005.owner-new");
        std::fs::write(&half, "").unwrap();
        let aged = |p: &Path, by: Duration| {
            let f = std::fs::File::options().write(true).open(p).unwrap();
            f.set_modified(std::time::SystemTime::now() - by).unwrap();
        };
        aged(&half, Duration::from_secs(120));
        let own = owners.join(format!("{}.owner", owner_tag()));
        aged(&own, 3 * ENDED_OWNER_KEPT);
        refresh_owner();
        let age = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap().elapsed().unwrap();
        assert!(age(&own) < Duration::from_secs(60));
        sweep_owners(&owners, ENDED_OWNER_KEPT);
        assert!(owners.join(format!("{ended_tag}.owner")).exists(), "kept while its work may be taken over");
        assert!(!half.exists());
        sweep_owners(&owners, Duration::ZERO);
        assert!(!owners.join(format!("{ended_tag}.owner")).exists(), "an ended owner's file goes");
        assert!(
            owners.join(format!("{running_tag}.owner")).exists()
                && owners.join(format!("{}.owner", owner_tag())).exists()
        );
        drop(running_owner);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_made_whole_is_private_made_once_and_leaves_no_partial() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sluice-whole-test-{}", std::process::id()));
        let key = dir.join("keys").join("secret.key");
        create_whole_private(&key, b"first\n").unwrap();
        let again = create_whole_private(&key, b"second\n").unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&key).unwrap(), b"first\n", "the first one made stays");
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(key.parent().unwrap()).unwrap().count(), 1, "no partial file left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
