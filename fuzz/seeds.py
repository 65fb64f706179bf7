#!/usr/bin/env python3
"""Writes the seed corpora in corpus/<target>/seed-* (committed). Run from anywhere:
`python3 fuzz/seeds.py`. Seeds are small, real-looking inputs: SFTP sessions as OpenSSH's
sftp and paramiko send them, CSV exports as SIS and spreadsheets write them, `.done`
manifests like the Campus Labs protocol's, and OneRoster packages (honest and crafted)."""
import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent / "corpus"


def write(target, name, data):
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)


# ---------------------------------------------------------------- SFTP
def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


def s(b):
    if isinstance(b, str):
        b = b.encode()
    return u32(len(b)) + b


def pkt(kind, body):
    return u32(1 + len(body)) + bytes([kind]) + body


def req(kind, rid, body=b""):
    return pkt(kind, u32(rid) + body)


INIT, OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT, SETSTAT, FSETSTAT = 1, 3, 4, 5, 6, 7, 8, 9, 10
OPENDIR, READDIR, REMOVE, MKDIR, RMDIR, REALPATH, STAT, RENAME, READLINK, SYMLINK = range(11, 21)
EXTENDED = 200
READ_F, WRITE_F, APPEND_F, CREAT_F, TRUNC_F, EXCL_F = 1, 2, 4, 8, 16, 32
A_SIZE, A_UIDGID, A_PERM, A_TIME, A_EXT = 1, 2, 4, 8, 0x80000000


def attrs(size=None, perm=None, times=None, uidgid=None, ext=None):
    flags, body = 0, b""
    if size is not None:
        flags |= A_SIZE
        body += u64(size)
    if uidgid is not None:
        flags |= A_UIDGID
        body += u32(uidgid[0]) + u32(uidgid[1])
    if perm is not None:
        flags |= A_PERM
        body += u32(perm)
    if times is not None:
        flags |= A_TIME
        body += u32(times[0]) + u32(times[1])
    if ext is not None:
        flags |= A_EXT
        body += u32(len(ext)) + b"".join(s(k) + s(v) for k, v in ext)
    return u32(flags) + body


CSV = b"student_number,last_name,first_name,grade_level\r\n10001,Garcia,Ana,9\r\n10002,Nguyen,Bao,10\r\n"


def session(chunks, *packets):
    """Chunk header (see sftp_packets.rs): count, then one byte per message size (1 + 16*b)."""
    return bytes([len(chunks)]) + bytes(chunks) + b"".join(packets)


def sftp_seeds():
    init = pkt(INIT, u32(3))
    h = s(b"\x00\x00\x00\x01")
    openssh_put = [
        init,
        req(EXTENDED, 1, s("limits@openssh.com")),
        req(REALPATH, 2, s(".")),
        req(STAT, 3, s("/uploads/students.csv")),
        req(OPEN, 4, s("/uploads/students.csv") + u32(WRITE_F | CREAT_F | TRUNC_F) + attrs(perm=0o100644)),
        req(WRITE, 5, h + u64(0) + s(CSV)),
        req(FSETSTAT, 6, h + attrs(perm=0o644, times=(1785000000, 1785000000))),
        req(CLOSE, 7, h),
    ]
    write("sftp_packets", "openssh-put", session([], *openssh_put))
    write("sftp_packets", "openssh-put-cut", session([0, 3, 1, 40], *openssh_put))
    openssh_get = [
        init,
        req(REALPATH, 1, s(".")),
        req(STAT, 2, s("/reports/import-42.csv")),
        req(OPEN, 3, s("/reports/import-42.csv") + u32(READ_F) + attrs()),
        req(FSTAT, 4, h),
        req(READ, 5, h + u64(0) + u32(32768)),
        req(READ, 6, h + u64(32768) + u32(32768)),
        req(READ, 7, h + u64(65536) + u32(32768)),
        req(CLOSE, 8, h),
    ]
    write("sftp_packets", "openssh-get", session([], *openssh_get))
    write("sftp_packets", "openssh-get-bytewise", session([0], *openssh_get))
    write("sftp_packets", "openssh-ls", session([2], init,
        req(REALPATH, 1, s(".")),
        req(STAT, 2, s("/")),
        req(OPENDIR, 3, s("/")),
        req(READDIR, 4, h),
        req(READDIR, 5, h),
        req(CLOSE, 6, h),
        req(LSTAT, 7, s("/uploads"))))
    write("sftp_packets", "openssh-rename-mkdir", session([], init,
        req(MKDIR, 1, s("/uploads/2026") + attrs(perm=0o777)),
        req(EXTENDED, 2, s("posix-rename@openssh.com") + s("/uploads/a.csv") + s("/uploads/b.csv")),
        req(RENAME, 3, s("/uploads/b.csv") + s("/uploads/c.csv")),
        req(REMOVE, 4, s("/uploads/c.csv")),
        req(RMDIR, 5, s("/uploads/2026")),
        req(SETSTAT, 6, s("/uploads/x.csv") + attrs(times=(1785000000, 1785000001))),
        req(EXTENDED, 7, s("fsync@openssh.com") + h),
        req(SYMLINK, 8, s("target.csv") + s("/uploads/link.csv")),
        req(READLINK, 9, s("/uploads/link.csv"))))
    write("sftp_packets", "openssh-resume-append", session([], init,
        req(OPEN, 1, s("/uploads/big.csv") + u32(WRITE_F | APPEND_F) + attrs()),
        req(WRITE, 2, h + u64(4096) + s(CSV[:40])),
        req(CLOSE, 3, h)))
    data = (CSV * 30)[:2500]
    paramiko_put = [
        init,
        req(OPEN, 0, s("uploads/roster.csv") + u32(WRITE_F | CREAT_F | TRUNC_F) + attrs()),
        req(WRITE, 1, h + u64(0) + s(data)),
        req(WRITE, 2, h + u64(len(data)) + s(CSV)),
        req(CLOSE, 3, h),
        req(STAT, 4, s("uploads/roster.csv")),
    ]
    write("sftp_packets", "paramiko-put", session([], *paramiko_put))
    write("sftp_packets", "paramiko-put-windows", session([255, 7, 200], *paramiko_put))
    write("sftp_packets", "paramiko-listdir", session([], init,
        req(REALPATH, 0, s(".")),
        req(OPENDIR, 1, s("uploads")),
        req(READDIR, 2, h), req(READDIR, 3, h), req(CLOSE, 4, h)))
    write("sftp_packets", "paramiko-excl-create", session([], init,
        req(OPEN, 0, s("uploads/new.csv") + u32(WRITE_F | CREAT_F | EXCL_F) + attrs(size=0, uidgid=(1000, 1000), perm=0o600)),
        req(CLOSE, 1, h)))
    write("sftp_packets", "attrs-extended", session([], init,
        req(SETSTAT, 1, s("f") + attrs(ext=[(b"acl@vendor", b"x"), (b"k", b"")]))))
    write("sftp_packets", "unknown-extension", session([], init,
        req(EXTENDED, 1, s("statvfs@openssh.com") + s("/")),
        req(EXTENDED, 2, s("hardlink@openssh.com") + s("a") + s("b")),
        req(99, 3, b"")))
    # Hostile framing: a zero length, a length past the limit, truncation, READ padding.
    write("sftp_packets", "zero-length", session([], init, u32(0)))
    write("sftp_packets", "too-large", session([], init, u32(256 * 1024 + 1) + b"\x06"))
    write("sftp_packets", "max-length-header", session([1], u32(256 * 1024) + b"\x06\x00\x00\x00\x01"))
    write("sftp_packets", "truncated-open", session([], init, req(OPEN, 1, s("/uploads/x.csv"))[:-3]))
    write("sftp_packets", "string-overflow", session([], req(OPEN, 1, u32(0xFFFFFFF0) + b"abc")))
    padded = req(READ, 1, h + u64(0) + u32(32768) + b"\x00" * 1200)
    write("sftp_packets", "read-padding", session([10, 10, 10], padded, padded, padded))
    write("sftp_packets", "empty", b"")


# ---------------------------------------------------------------- CSV
def csv_seeds():
    w = lambda name, data: write("csv_reader", name, data)
    w("powerschool-tab", b"Student_Number\tLast_Name\tFirst_Name\tGrade_Level\tSchoolID\n"
      b"10001\tGarcia\tAna\t9\t101\n10002\tO'Brien\tLiam\t10\t101\n10003\tNguyen\tBao\t11\t102\n")
    w("powerschool-tab-crlf-quoted", b"Student_Number\tHome_Room\tGuardian\r\n"
      b"10001\t\"Rm 12, North\"\t\"Smith, \"\"Jo\"\"\"\r\n")
    excel = "Nom;Prénom;Classe;Date de naissance\r\nDupont;Élodie;6e A;12/03/2014\r\nMüller;Jörg;5e B;01/11/2013\r\n"
    w("excel-semicolon-bom-crlf", b"\xef\xbb\xbf" + excel.encode())
    w("excel-semicolon-1252", excel.encode("cp1252"))
    w("excel-comma-bom", b"\xef\xbb\xbf" + "id,name,email\r\n1,Zoë Ämter,zoe@example.org\r\n2,\"Lee, Ann\",\r\n".encode())
    u16 = "id\tname\tgrade\r\n1\tZoë\t9\r\n2\t李雷\t10\r\n3\t😀 emoji\t11\r\n"
    w("excel-unicode-text-utf16le", b"\xff\xfe" + u16.encode("utf-16-le"))
    w("utf16be", b"\xfe\xff" + "id,name\n1,Ana\n2,Bao\n".encode("utf-16-be"))
    w("utf16le-odd-length", b"\xff\xfe" + "id,name\n1,A".encode("utf-16-le") + b"\x00")
    w("utf16le-lone-surrogate", b"\xff\xfe" + "id,name\n1,".encode("utf-16-le") + b"\x00\xd8,\x00")
    w("rfc4180-quoted-newlines", b'id,comment,notes\r\n1,"line one\r\nline two","say ""hi"""\r\n2,,"a,b,c"\r\n')
    w("lf-blank-lines", b"\n\nid,name\n\n1,Ann\n\n\n2,Bo\n")
    w("lone-cr-mac", b"id,name\r1,Ann\r2,Bo\r")
    w("no-final-newline", b"id,name\n1,Ann")
    w("unquoted-inch-mark", b'item,size\npipe,5" wide\nbolt,"3"" long"\n')
    w("unclosed-quote", b'id,name\n1,"Ann\n2,Bo\n')
    w("text-after-quote", b'id,name\n1,"Ann"x,2\n')
    w("many-fields", b",".join([b"f"] * 40) + b"\n" + b",".join([b"1"] * 40) + b"\n")
    w("long-row", b"id,blob\n1," + b"x" * 3000 + b"\n")
    w("nul-binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    w("mixed-encoding", b"id,name\n1,Zo\xc3\xab\n2,Jos\xe9\n")
    w("utf8-cut-multibyte", "id,name\n1,日本語テキスト\n".encode())
    w("bom-only", b"\xef\xbb\xbf")
    w("empty", b"")
    w("infinite-campus", b'"personID","studentNumber","lastName","firstName","grade","startDate"\r\n'
      b'"1234","000123","Smith","John","09","08/15/2026"\r\n"1235","000124","Doe","Jane","10",""\r\n')
    w("skyward-pipe", b"OTHER-ID|NAME-ID|LAST-NAME|FIRST-NAME\n123|45|Lopez|Maria\n")
    # Crash reproducers (see README.md): 9 fields at the end of the file, bound 8.
    w("crash-field-bound-at-eof", b",,,,,,,,")
    w("windows-1252-smart-quotes", b"id,quote\n1,\x93hello\x94 \x96 \x80 5\n")


# ---------------------------------------------------------------- .done
def done_seeds():
    w = lambda name, text: write("done_manifest", name, text if isinstance(text, bytes) else text.encode())
    w("campus-labs", '<?xml version="1.0" encoding="utf-8"?>\n<manifest>\n'
      '  <file name="accounts.csv" checksum="0cc175b9c0f1b6a831c399e269772661" checksumhashtype="md5"/>\n'
      '  <file name="photos.csv" checksum="" checksumhashtype="none"/>\n</manifest>\n')
    w("campus-labs-blank-type", '<manifest><file name="accounts.csv" checksum="" checksumhashtype=""/></manifest>')
    w("uppercase-md5-and-attrs", '<?xml version="1.0"?>\r\n<Manifest>\r\n'
      '<FILE NAME="Students.csv" CHECKSUM="900150983CD24FB0D6963F7D28E17F72" CHECKSUMHASHTYPE="MD5" />\r\n</Manifest>\r\n')
    w("contains-invalid-files", '<?xml version="1.0" encoding="utf-8"?>\n<manifest>\n'
      '  <file name="accounts.csv" checksum="0cc175b9c0f1b6a831c399e269772661" checksumhashtype="md5" INVALID="checksum mismatch: the file&apos;s MD5 is 92eb5ffee6ae2fec3ad71c777531578f"/>\n'
      '  <file name="missing.csv" checksum="" checksumhashtype="none" INVALID="no such file in this folder"/>\n</manifest>\n')
    w("open-close-tags", '<manifest><file name="a.csv" checksum="" checksumhashtype="none"></file>'
      '<file name="b.csv"></file></manifest>')
    w("other-root-comments-cdata", '<?xml version="1.0"?><!-- nightly export --><import>'
      '<![CDATA[ignored]]><file name="courses.csv"/><note>text &amp; more</note>'
      '<file name="sections.csv" checksum="d41d8cd98f00b204e9800998ecf8427e" checksumhashtype="md5"/></import>')
    w("entities-in-name", '<manifest><file name="R&amp;D &#233;l&#xe8;ves.csv" checksum="" checksumhashtype="none"/></manifest>')
    w("traversal-names", '<manifest><file name="../../../ssh_host_ed25519_key"/><file name="a/b.csv"/>'
      '<file name="..\\sluice.db"/><file name=".."/><file name="/etc/passwd"/></manifest>')
    w("namespaced", '<m:manifest xmlns:m="urn:x"><m:file m:name="x.csv" checksumhashtype="none"/></m:manifest>')
    w("doctype-billion-laughs", '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
      '<manifest><file name="&lol2;"/></manifest>')
    w("unknown-entity", '<manifest><file name="&nbsp;x.csv"/></manifest>')
    w("nested-file-ignored", '<manifest><group><file name="deep.csv"/></group><file name="top.csv"/></manifest>')
    w("bad-checksum", '<manifest><file name="a.csv" checksum="abc" checksumhashtype="md5"/></manifest>')
    w("sha1-type", '<manifest><file name="a.csv" checksum="da39a3ee5e6b4b0d3255bfef95601890afd80709" checksumhashtype="sha1"/></manifest>')
    w("single-quotes-whitespace", "<manifest >\n\t<file\n name = 'a b.csv'\n checksum=' ' checksumhashtype='NONE' />\n</manifest >")
    w("two-roots", '<manifest><file name="a.csv"/></manifest><manifest/>')
    w("unclosed", '<manifest><file name="a.csv"/>')
    w("mismatched-end", '<manifest><file name="a.csv"></manifest></file>')
    w("bom-utf8", b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8"?><manifest><file name="a.csv"/></manifest>')
    w("utf16", '<?xml version="1.0" encoding="utf-16"?><manifest><file name="a.csv"/></manifest>'.encode("utf-16"))
    w("no-files", '<manifest></manifest>')
    w("empty", b"")
    w("many-files", "<manifest>" + "".join(f'<file name="f{i}.csv" checksum="" checksumhashtype="none"/>' for i in range(60)) + "</manifest>")
    w("gt-in-attr", '<manifest><file name="a>b.csv" checksum="" checksumhashtype="none"/></manifest>')
    # Crash reproducer: a manifest sent back with its INVALID marks (see contains-invalid-files).
    w("crash-invalid-marked-twice", '<m><file name="a" INVALID=""/></m>')
    w("crash-two-boms", b'\xef\xbb\xbf\xef\xbb\xbf<m><file name="a.csv"/></m>')
    w("crash-slash-in-attribute-name", '<m><file name="a.csv" che/ksum="" INVALID="old"/></m>')
    w("crash-space-before-slash", "<m><file name='a.csv' checksumhashtype='NONE' />\n</m>")
    w("processing-instruction", '<?xml version="1.0"?><?pi x?><manifest><file name="a.csv"/><?pi y?></manifest>')


# ---------------------------------------------------------------- OneRoster
FILES_1_2 = ["academicSessions", "categories", "classes", "classResources", "courses", "courseResources",
             "demographics", "enrollments", "lineItemLearningObjectiveIds", "lineItems", "lineItemScoreScales",
             "orgs", "resources", "resultLearningObjectiveIds", "results", "resultScoreScales", "roles",
             "scoreScales", "userProfiles", "userResources", "users"]
FILES_1_1 = ["academicSessions", "categories", "classes", "classResources", "courses", "courseResources",
             "demographics", "enrollments", "lineItems", "orgs", "resources", "results", "users"]
ORGS = "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\n"
SESSIONS = "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear\n"
USERS_1_2 = ("sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,middleName,"
             "identifier,email,sms,phone,agentSourcedIds,grades,password,userMasterIdentifier,preferredGivenName,"
             "preferredMiddleName,preferredFamilyName,primaryOrgSourcedId,pronouns\n")
USERS_1_1 = ("sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,"
             "familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password\n")
ROLES = "sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,orgSourcedId,userProfileSourcedId\n"


def manifest(version, files):
    allf = FILES_1_1 if version == "1.1" else FILES_1_2
    out = f"propertyName,value\nmanifest.version,1.0\noneroster.version,{version}\n"
    for f in allf:
        out += f"file.{f},{dict(files).get(f, 'absent')}\n"
    return out + "source.systemName,Test SIS\n"


def zip_of(entries, method=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in entries:
            z.writestr(zipfile.ZipInfo(name, (2026, 8, 15, 0, 0, 0)), data, compress_type=method)
    return buf.getvalue()


def raw_zip(entries, shared=False, eocd_count=None, local_names=None):
    """Stored or deflated entries written by hand, so that directory and data can disagree."""
    out, central = b"", b""
    first_offset = None
    for i, (name, data, method) in enumerate(entries):
        name = name.encode()
        comp = zlib.compress(data)[2:-4] if method == 8 else data
        crc = zlib.crc32(data)
        offset = len(out)
        if shared and first_offset is not None:
            offset = first_offset
        else:
            local = (local_names or {}).get(i, name)
            out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, crc, len(comp), len(data),
                               len(local), 0) + local + comp
        if first_offset is None:
            first_offset = offset
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0, crc, len(comp),
                               len(data), len(name), 0, 0, 0, 0, 0, offset) + name
    n = len(entries) if eocd_count is None else eocd_count
    return out + central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central), len(out), 0)


def oneroster_seeds():
    w = lambda name, data: write("oneroster_zip", name, data)
    orgs = ORGS + "s1,,,Lincoln High,school,LHS,d1\nd1,,,Springfield District,district,SD,\n"
    sessions = SESSIONS + "y2027,,,2026-2027,schoolYear,2026-08-15,2027-06-15,,2027\nfall,,,Fall 2026,term,2026-08-15,2027-01-10,y2027,2027\n"
    users = USERS_1_2 + "t1,,,true,t1,,Tess,Teacher,,,tess@example.org,,,,,,,,,,s1,\nst1,,,true,st1,,Stu,Dent,,,,,,,09,,,,,,s1,\n"
    roles = ROLES + "r-t1,,,t1,primary,teacher,,,s1,\nr-st1,,,st1,primary,student,,,s1,\n"
    m = manifest("1.2", [("orgs", "bulk"), ("academicSessions", "bulk"), ("users", "bulk"), ("roles", "bulk")])
    pkg = [("manifest.csv", m), ("orgs.csv", orgs), ("academicSessions.csv", sessions), ("users.csv", users), ("roles.csv", roles)]
    w("bulk-1.2", zip_of(pkg))
    w("bulk-1.2-stored", zip_of(pkg, zipfile.ZIP_STORED))
    md = manifest("1.2", [("users", "delta")])
    w("delta-1.2-tobedeleted", zip_of([("manifest.csv", md), ("users.csv", USERS_1_2 + "st1,tobedeleted,2026-09-01T00:00:00Z,,,,,,,,,,,,,,,,,,,\n")]))
    m11 = manifest("1.1", [("orgs", "bulk"), ("users", "bulk")])
    w("bulk-1.1", zip_of([("manifest.csv", m11), ("orgs.csv", orgs),
                          ("users.csv", USERS_1_1 + "t1,active,2026-08-01,true,s1,teacher,t1,,Tess,Teacher,,,,,,,,\n")]))
    w("bom-crlf", zip_of([("manifest.csv", "\ufeff" + m.replace("\n", "\r\n")), ("orgs.csv", orgs.replace("\n", "\r\n")),
                          ("academicSessions.csv", sessions), ("users.csv", users), ("roles.csv", roles)]))
    w("bad-header", zip_of([("manifest.csv", manifest("1.2", [("orgs", "bulk")])), ("orgs.csv", "id,name\n1,x\n")]))
    w("bad-rows", zip_of([("manifest.csv", manifest("1.2", [("orgs", "bulk")])),
                          ("orgs.csv", ORGS + "s1,weird,notadate,X,planet,,nowhere\n,,,\"unclosed\n")]))
    w("no-manifest", zip_of([("orgs.csv", orgs)]))
    w("missing-file", zip_of([("manifest.csv", m), ("orgs.csv", orgs)]))
    w("unexpected-file", zip_of([("manifest.csv", manifest("1.2", [("orgs", "bulk")])), ("orgs.csv", orgs), ("notes.txt", "hi")]))
    w("path-in-name", zip_of([("manifest.csv", manifest("1.2", [("users", "bulk")])), ("../users.csv", users)]))
    w("folder", zip_of([("data/", ""), ("data/manifest.csv", m)]))
    w("nested-zip", zip_of([("manifest.csv", manifest("1.2", [("users", "bulk")])), ("users.zip", zip_of([("users.csv", users)]))]))
    w("csv-that-is-a-zip", zip_of([("manifest.csv", manifest("1.2", [("users", "bulk")])), ("users.csv", zip_of([("a", "b")]))]))
    w("bomb-small", zip_of([("manifest.csv", manifest("1.2", [("users", "bulk")])), ("users.csv", USERS_1_2 + "," * 4000)]))
    mo = manifest("1.2", [("orgs", "bulk")])
    w("crafted-stored", raw_zip([("manifest.csv", mo.encode(), 0), ("orgs.csv", orgs.encode(), 0)]))
    w("crafted-deflated", raw_zip([("manifest.csv", mo.encode(), 8), ("orgs.csv", orgs.encode(), 8)]))
    w("crafted-duplicate-name", raw_zip([("manifest.csv", mo.encode(), 0), ("orgs.csv", orgs.encode(), 0), ("orgs.csv", b"x", 0)]))
    w("crafted-shared-data", raw_zip([("manifest.csv", mo.encode(), 0), ("orgs.csv", mo.encode(), 0)], shared=True))
    w("crafted-eocd-undercount", raw_zip([("manifest.csv", mo.encode(), 0), ("orgs.csv", orgs.encode(), 0)], eocd_count=1))
    w("crafted-local-name-differs", raw_zip([("manifest.csv", mo.encode(), 0), ("orgs.csv", orgs.encode(), 0)], local_names={1: b"evil.csv"}))
    w("crafted-bzip2-method", raw_zip([("manifest.csv", mo.encode(), 12)]))
    w("case-duplicate", zip_of([("manifest.csv", mo), ("orgs.csv", orgs), ("ORGS.csv", orgs)]))
    w("empty-zip", zip_of([]))
    w("not-a-zip", b"sourcedId,status\n")


if __name__ == "__main__":
    sftp_seeds()
    csv_seeds()
    done_seeds()
    oneroster_seeds()
    for t in sorted(ROOT.iterdir()):
        files = sorted(t.glob("seed-*"))
        print(f"{t.name}: {len(files)} seeds, largest {max(f.stat().st_size for f in files)} bytes")
