#!/usr/bin/env python3
"""SFTP throughput of sluice beside OpenSSH's sshd (internal-sftp, chrooted), same client,
same cipher, same disk, in one run. Prints sluice/OpenSSH ratios.

Run as root (sshd needs it):  bench/sftp_vs_openssh.sh [--size-mib 512] [--files 1000]

The servers are pinned to CPU 0 and the client to CPU 1 (taskset), which keeps run-to-run
spread near 5% on a 2-core machine. Each figure is the best of --repeat runs.
"""
import argparse, os, shutil, signal, subprocess, sys, time, hashlib, pathlib

ROOT = pathlib.Path("/var/lib/sluice-bench")  # sshd's ChrootDirectory may not live under /tmp
# Both servers store files here. By default a tmpfs, so that the figures measure SSH/SFTP and
# not this VM's disk writeback (which made runs of the same server vary by 2x); --disk keeps
# the real disk.
STORE = ROOT / "store"
REPO = pathlib.Path(__file__).resolve().parent.parent


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def cpu_seconds(pid):
    """User+system CPU time of a process and its children that have been waited for."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    # utime, stime, cutime, cstime are fields 14-17 (1-based) => indexes 11..14 after the comm
    return sum(int(x) for x in fields[11:15]) / tick


def tree_cpu(pid):
    """CPU seconds of the server: its own plus those of its reaped children (sshd forks a
    process per connection; it reaps them right after the client exits, hence the pause)."""
    time.sleep(0.3)
    return cpu_seconds(pid)


def sftp(port, key, batch, cipher, user):
    path = ROOT / "batch.txt"
    path.write_text(batch)
    cmd = ["taskset", "-c", "1", "sftp", "-q", "-b", str(path), "-P", str(port), "-i", str(key),
           "-c", cipher, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
           "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", f"{user}@127.0.0.1"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT / "client", stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


class Peer:
    def __init__(self, name, port, user, folder, pid_fn, cleanup):
        self.name, self.port, self.user, self.folder = name, port, user, folder
        self.pid_fn, self.cleanup = pid_fn, cleanup


def start_sshd(key_pub):
    d = ROOT / "sshd"
    d.mkdir(parents=True, exist_ok=True)
    chroot = STORE / "chroot"
    (chroot / "students").mkdir(parents=True, exist_ok=True)
    os.chmod(ROOT, 0o755)
    os.chmod(chroot, 0o755)
    hostkey = d / "ssh_host_ed25519_key"
    if not hostkey.exists():
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hostkey))
    (d / "authorized_keys").write_text(key_pub.read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = 2223
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
ChrootDirectory {chroot}
ForceCommand internal-sftp
PidFile {d}/sshd.pid
MaxStartups 200:30:400
MaxSessions 200
""")
    os.makedirs("/run/sshd", exist_ok=True)
    proc = subprocess.Popen(["taskset", "-c", "0", "/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
                            stderr=open(d / "sshd.log", "w"))
    wait_port(port)
    return Peer("OpenSSH", port, "root", chroot / "students", lambda: proc.pid, proc.terminate), proc


def start_sluice(binary, key_pub):
    data = STORE / "sluice-data"
    if data.exists():
        shutil.rmtree(data)
    env = dict(os.environ, RUST_LOG="warn")
    sh(binary, "--data-dir", str(data), "tenant", "add", "bench", "--folders", "students", stdout=subprocess.DEVNULL)
    sh(binary, "--data-dir", str(data), "key", "add", "bench", str(key_pub), stdout=subprocess.DEVNULL)
    # The benchmark measures SFTP: uploads stay where they land (an importing folder would take
    # big.bin in, and the download after it would find nothing).
    sh(binary, "--data-dir", str(data), "tenant", "set", "bench", "trigger=manual", stdout=subprocess.DEVNULL)
    port = 2224
    proc = subprocess.Popen(["taskset", "-c", "0", binary, "--data-dir", str(data), "serve",
                             "--sftp-listen", f"127.0.0.1:{port}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(ROOT / "sluice.log", "w"))
    wait_port(port)
    return Peer("sluice", port, "bench", data / "tenants/bench/students", lambda: proc.pid, proc.terminate), proc


def wait_port(port):
    import socket
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"server on port {port} did not start")


def measure(peer, key, args, big, small_dir):
    results = {}
    pid = peer.pid_fn()
    size_mib = big.stat().st_size / (1 << 20)

    def best(fn):
        runs = []
        for _ in range(args.repeat):
            os.sync()  # earlier runs' dirty pages must not be written back during this one
            runs.append(fn())
        print(f"  {peer.name} {fn.__name__}: " + " ".join(f"{r[0]:.3f}s" for r in runs), file=sys.stderr)
        return min(runs, key=lambda r: r[0])

    def logins():
        start = time.perf_counter()
        for _ in range(args.logins):
            sftp(peer.port, key, "bye\n", args.cipher, peer.user)
        return time.perf_counter() - start, 0
    t, _ = best(logins)
    results["logins/s"] = args.logins / t
    # Transfer figures exclude the connection set-up, measured just above.
    login = t / args.logins

    def upload():
        before = tree_cpu(pid)
        t = sftp(peer.port, key, f"put {big.name} /students/big.bin\n", args.cipher, peer.user)
        return t - login, tree_cpu(pid) - before
    def download():
        before = tree_cpu(pid)
        t = sftp(peer.port, key, "get /students/big.bin /dev/null\n", args.cipher, peer.user)
        return t - login, tree_cpu(pid) - before
    t, cpu = best(upload)
    results["upload MiB/s"] = size_mib / t
    results["upload server CPU ms/MiB"] = 1000 * cpu / size_mib
    t, cpu = best(download)
    results["download MiB/s"] = size_mib / t
    results["download server CPU ms/MiB"] = 1000 * cpu / size_mib
    sftp(peer.port, key, "get /students/big.bin big.back\n", args.cipher, peer.user)
    if hashlib.sha256((ROOT / "client/big.back").read_bytes()).digest() != hashlib.sha256(big.read_bytes()).digest():
        sys.exit(f"{peer.name}: downloaded file differs")
    (ROOT / "client/big.back").unlink()
    batch = "".join(f"put {small_dir.name}/{n} /students/{n}\n" for n in sorted(os.listdir(small_dir)))
    def small_files():
        return sftp(peer.port, key, batch, args.cipher, peer.user) - login, 0
    t, _ = best(small_files)
    results["small files/s"] = args.files / t
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--file-bytes", type=int, default=4096)
    ap.add_argument("--logins", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cipher", default="aes128-gcm@openssh.com")
    ap.add_argument("--binary", default=str(REPO / "target/release/sluice"))
    ap.add_argument("--disk", action="store_true", help="store files on the real disk instead of a tmpfs")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: sshd must start its own privilege separation")
    for tool in ["sftp", "/usr/sbin/sshd", "taskset", "ssh-keygen"]:
        if not shutil.which(tool):
            sys.exit(f"missing {tool}: apt-get install openssh-client openssh-server util-linux")
    if not os.path.exists(args.binary):
        sys.exit(f"missing {args.binary}: cargo build --release")

    STORE.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mountpoint", "-q", str(STORE)]).returncode == 0
    if not args.disk and not mounted:
        sh("mount", "-t", "tmpfs", "-o", f"size={args.size_mib * 3 + 512}m,mode=755", "tmpfs", str(STORE))
    elif args.disk and mounted:
        sh("umount", str(STORE))
    client = ROOT / "client"
    if client.exists():
        shutil.rmtree(client)
    client.mkdir(parents=True)
    key = client / "id_ed25519"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    big = client / "big.bin"
    with open(big, "wb") as f:
        for _ in range(args.size_mib):
            f.write(os.urandom(1 << 20))
    small = client / "small"
    small.mkdir()
    for i in range(args.files):
        (small / f"f{i:05}.csv").write_bytes(os.urandom(args.file_bytes))

    table = {}
    for starter in (start_sshd, start_sluice):
        peer, proc = starter(key.with_suffix(".pub")) if starter is start_sshd else starter(args.binary, key.with_suffix(".pub"))
        try:
            table[peer.name] = measure(peer, key, args, big, small)
        finally:
            proc.terminate()
            proc.wait()
        for f in peer.folder.iterdir():
            f.unlink()

    storage = "real disk" if args.disk else "tmpfs"
    print(f"\nSFTP benchmark ({storage}, downloads to /dev/null): {args.size_mib} MiB file, {args.files} x {args.file_bytes} B files, "
          f"{args.logins} logins, cipher {args.cipher}, best of {args.repeat}; servers on CPU 0, client on CPU 1")
    print(f"{'figure':<30} {'OpenSSH':>10} {'sluice':>10} {'ratio':>8}")
    for figure in table["OpenSSH"]:
        o, s = table["OpenSSH"][figure], table["sluice"][figure]
        lower_is_better = "CPU" in figure
        ratio = (o / s) if lower_is_better else (s / o)
        note = " (OpenSSH/sluice: >1 means sluice uses less)" if lower_is_better else ""
        print(f"{figure:<30} {o:>10.1f} {s:>10.1f} {ratio:>7.2f}x{note}")


if __name__ == "__main__":
    main()
