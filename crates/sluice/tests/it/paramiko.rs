//! Python paramiko, the library behind many home-grown export scripts. Its `get` prefetches
//! every block of a file at once, which is what deadlocks naive SFTP servers.

use crate::common::*;
use std::process::Command;
use std::time::Duration;

const SCRIPT: &str = r#"
import json, sys, paramiko
port, workdir = int(sys.argv[1]), sys.argv[2]
t = paramiko.Transport(("127.0.0.1", port))
t.connect(username="acme", password="pw-paramiko-for-tests")
s = paramiko.SFTPClient.from_transport(t)
out = {}
s.put(workdir + "/up.csv", "/visitors/visitors.csv")
out["listing"] = sorted(a.filename for a in s.listdir_attr("/visitors"))
out["size"] = s.stat("/visitors/visitors.csv").st_size
s.get("/visitors/big.csv", workdir + "/big-back.csv")
s.rename("/visitors/visitors.csv", "/visitors/v2.csv")
s.posix_rename("/visitors/v2.csv", "/visitors/v3.csv")
refused = {}
for name, op in [
    ("mkdir", lambda: s.mkdir("/new")),
    ("rmdir", lambda: s.rmdir("/visitors")),
    ("symlink", lambda: s.symlink("/visitors/v3.csv", "/visitors/l")),
    ("root", lambda: s.put(workdir + "/up.csv", "/up.csv")),
    ("exports", lambda: s.put(workdir + "/up.csv", "/exports/up.csv")),
]:
    try:
        op()
        refused[name] = "allowed"
    except PermissionError as e:
        refused[name] = "denied: " + str(e)
    except IOError as e:
        refused[name] = "error: " + str(e)
out["refused"] = refused
s.remove("/visitors/v3.csv")
out["after_remove"] = s.listdir("/visitors")
s.close(); t.close()
print(json.dumps(out))
"#;

#[test]
fn paramiko_put_get_50mb_rename_and_refusals() {
    if !have_python_module("paramiko", "paramiko (pip)") {
        return;
    }
    let server = Server::start();
    server.tenant("acme", "pw-paramiko-for-tests");
    let up = pseudo_random(2_000_000, 41);
    let big = pseudo_random(50 * 1024 * 1024, 42);
    write_file(server.dir.path(), "up.csv", &up);
    std::fs::write(server.tenant_dir("acme").join("visitors/big.csv"), &big).unwrap();
    let script = write_file(server.dir.path(), "client.py", SCRIPT.as_bytes());
    let out = run_with_timeout(
        Command::new("python3").arg(&script).arg(server.port.to_string()).arg(server.dir.path()),
        Duration::from_secs(180),
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["listing"], serde_json::json!(["big.csv", "visitors.csv"]));
    assert_eq!(v["size"], up.len() as u64);
    for (op, result) in v["refused"].as_object().unwrap() {
        assert!(result.as_str().unwrap().starts_with("denied"), "{op}: {result}");
    }
    assert_eq!(v["after_remove"], serde_json::json!(["big.csv"]));
    assert!(std::fs::read(server.dir.path().join("big-back.csv")).unwrap() == big, "50 MB get differs");
    let uploads = server.uploads("acme");
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0]["sha256"], sha256_hex(&up));
}
