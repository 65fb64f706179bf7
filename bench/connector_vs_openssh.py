#!/usr/bin/env python3
"""A connector's push and pull of one large file beside OpenSSH's own sftp client, against the
same OpenSSH sshd (the district's server), in one run. Prints sluice/OpenSSH throughput ratios.

Run as root (sshd needs it):  bench/connector_vs_openssh.sh [--size-mib 512] [--runs 3]

sshd is pinned to CPU 0, the clients (OpenSSH's sftp, sluice) to CPU 1 (taskset). Files live
in /dev/shm (tmpfs), so the figures measure SSH/SFTP, not this VM's disk. Both clients run on
their defaults (cipher, window, requests in flight). Each figure is the median of --runs
paired runs (sluice and OpenSSH alternately).

sluice's pull does more than `sftp get`: it lists the folder twice (the settle time is set to 0
here, `SLUICE_CONNECTORS_SETTLE_SECS=0`; a real pull waits `[connectors] settle_secs`, 2 s),
hashes the file (SHA-256, for the upload event), and records it as an upload.
"""
import argparse, os, shutil, statistics, subprocess, sys, time, pathlib

ROOT = pathlib.Path("/dev/shm/sluice-connector-bench")
REPO = pathlib.Path(__file__).resolve().parent.parent


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def wait_port(port):
    import socket
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def start_sshd(d, port, key_pub):
    d.mkdir(parents=True, exist_ok=True)
    hostkey = d / "host_key"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hostkey))
    (d / "authorized_keys").write_text(key_pub.read_text())
    (d / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {hostkey}
AuthorizedKeysFile {d}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
PidFile {d}/sshd.pid
""")
    os.makedirs("/run/sshd", exist_ok=True)
    proc = subprocess.Popen(["taskset", "-c", "0", "/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
                            stderr=open(d / "sshd.log", "w"))
    wait_port(port)
    return proc


def timed(cmd, env=None):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--binary", default=str(REPO / "target/release/sluice"))
    ap.add_argument("--port", type=int, default=2224)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: sshd must start its own privilege separation")
    if ROOT.exists():
        shutil.rmtree(ROOT)
    remote = ROOT / "remote"
    (remote / "students").mkdir(parents=True)
    local = ROOT / "local"
    local.mkdir()
    key = ROOT / "client_key"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    sshd = start_sshd(ROOT / "sshd", args.port, key.with_suffix(".pub"))
    try:
        source = local / "source.bin"
        with open(source, "wb") as f:
            chunk = os.urandom(1 << 20)
            for i in range(args.size_mib):
                f.write(chunk[i % 7:] + chunk[:i % 7])
        size = source.stat().st_size
        data = ROOT / "sluice-data"
        env = dict(os.environ, SLUICE_CONNECTORS_SETTLE_SECS="0", SLUICE_LOG_LEVEL="warn")
        sluice = ["taskset", "-c", "1", args.binary, "--data-dir", str(data)]
        sh(*sluice, "tenant", "add", "bench", "--folders", "students", stdout=subprocess.DEVNULL, env=env)
        url = f"sftp://root@127.0.0.1:{args.port}{remote}"
        sh(*sluice, "connector", "add", "bench", "district", "--url", url, "--key", str(key), "--pull",
           "--after-pull", "remove", stdout=subprocess.DEVNULL, env=env)
        sh(*sluice, "connector", "test", "bench", "district", "--accept", stdout=subprocess.DEVNULL, env=env)
        sftp = ["taskset", "-c", "1", "sftp", "-q", "-P", str(args.port), "-i", str(key), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-b", str(ROOT / "batch.txt"), "root@127.0.0.1"]

        def openssh_push():
            (ROOT / "batch.txt").write_text(f"put {source} {remote}/openssh.bin\n")
            return timed(sftp)

        def sluice_push():
            return timed(sluice + ["connector", "push", "bench", "district", str(source), "--as", "sluice.bin"], env)

        def openssh_pull():
            shutil.copy(source, remote / "students" / "pull.bin")
            (ROOT / "batch.txt").write_text(f"get {remote}/students/pull.bin {local}/openssh-pulled.bin\n")
            t = timed(sftp)
            os.remove(remote / "students" / "pull.bin")
            return t

        def sluice_pull():
            shutil.copy(source, remote / "students" / "pull.bin")
            landed = data / "tenants" / "bench" / "students" / "pull.bin"
            t = timed(sluice + ["connector", "pull", "bench", "district"], env)
            assert landed.stat().st_size == size, "pulled whole"
            os.remove(landed)
            return t

        results = {}
        for name, ours, theirs in [("push", sluice_push, openssh_push), ("pull", sluice_pull, openssh_pull)]:
            s_times, o_times = [], []
            for _ in range(args.runs):
                o_times.append(theirs())
                s_times.append(ours())
            assert (remote / "sluice.bin").stat().st_size == size if name == "push" else True
            results[name] = (statistics.median(s_times), statistics.median(o_times))
        mib = size / (1 << 20)
        print(f"{args.size_mib} MiB, median of {args.runs} paired runs, sshd on CPU 0, clients on CPU 1")
        for name, (s, o) in results.items():
            print(f"{name}: sluice {s:.2f} s ({mib / s:.0f} MiB/s), OpenSSH sftp {o:.2f} s ({mib / o:.0f} MiB/s), "
                  f"sluice/OpenSSH throughput {o / s:.2f}x")
    finally:
        sshd.terminate()
        sshd.wait()
        shutil.rmtree(ROOT, ignore_errors=True)


if __name__ == "__main__":
    main()
