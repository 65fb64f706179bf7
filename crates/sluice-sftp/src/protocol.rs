//! SFTP version 3 wire format (draft-ietf-secsh-filexfer-02) plus the OpenSSH extensions
//! sluice answers: `limits@openssh.com`, `posix-rename@openssh.com`, `fsync@openssh.com`.
//!
//! Decoding never panics on client input: every read is bounds-checked and a malformed
//! packet becomes [`DecodeError`].

use bytes::{BufMut, Bytes, BytesMut};

pub const VERSION: u32 = 3;

/// Largest packet we accept or send (the same figure OpenSSH's sftp-server uses).
pub const MAX_PACKET: u32 = 256 * 1024;
/// Largest READ or WRITE payload, leaving room for the packet header.
pub const MAX_DATA: u32 = MAX_PACKET - 1024;

pub mod msg {
    pub const INIT: u8 = 1;
    pub const VERSION: u8 = 2;
    pub const OPEN: u8 = 3;
    pub const CLOSE: u8 = 4;
    pub const READ: u8 = 5;
    pub const WRITE: u8 = 6;
    pub const LSTAT: u8 = 7;
    pub const FSTAT: u8 = 8;
    pub const SETSTAT: u8 = 9;
    pub const FSETSTAT: u8 = 10;
    pub const OPENDIR: u8 = 11;
    pub const READDIR: u8 = 12;
    pub const REMOVE: u8 = 13;
    pub const MKDIR: u8 = 14;
    pub const RMDIR: u8 = 15;
    pub const REALPATH: u8 = 16;
    pub const STAT: u8 = 17;
    pub const RENAME: u8 = 18;
    pub const READLINK: u8 = 19;
    pub const SYMLINK: u8 = 20;
    pub const STATUS: u8 = 101;
    pub const HANDLE: u8 = 102;
    pub const DATA: u8 = 103;
    pub const NAME: u8 = 104;
    pub const ATTRS: u8 = 105;
    pub const EXTENDED: u8 = 200;
    pub const EXTENDED_REPLY: u8 = 201;
}

pub mod open_flags {
    pub const READ: u32 = 0x01;
    pub const WRITE: u32 = 0x02;
    pub const APPEND: u32 = 0x04;
    pub const CREAT: u32 = 0x08;
    pub const TRUNC: u32 = 0x10;
    pub const EXCL: u32 = 0x20;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum StatusCode {
    Ok = 0,
    Eof = 1,
    NoSuchFile = 2,
    PermissionDenied = 3,
    Failure = 4,
    BadMessage = 5,
    OpUnsupported = 8,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    pub size: Option<u64>,
    pub uid_gid: Option<(u32, u32)>,
    pub permissions: Option<u32>,
    pub atime_mtime: Option<(u32, u32)>,
}

const ATTR_SIZE: u32 = 0x1;
const ATTR_UIDGID: u32 = 0x2;
const ATTR_PERMISSIONS: u32 = 0x4;
const ATTR_ACMODTIME: u32 = 0x8;
const ATTR_EXTENDED: u32 = 0x8000_0000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Init {
        version: u32,
    },
    Open {
        id: u32,
        path: Bytes,
        flags: u32,
        attrs: Attrs,
    },
    Close {
        id: u32,
        handle: Bytes,
    },
    Read {
        id: u32,
        handle: Bytes,
        offset: u64,
        len: u32,
    },
    Write {
        id: u32,
        handle: Bytes,
        offset: u64,
        data: Bytes,
    },
    Lstat {
        id: u32,
        path: Bytes,
    },
    Fstat {
        id: u32,
        handle: Bytes,
    },
    Setstat {
        id: u32,
        path: Bytes,
        attrs: Attrs,
    },
    Fsetstat {
        id: u32,
        handle: Bytes,
        attrs: Attrs,
    },
    Opendir {
        id: u32,
        path: Bytes,
    },
    Readdir {
        id: u32,
        handle: Bytes,
    },
    Remove {
        id: u32,
        path: Bytes,
    },
    Mkdir {
        id: u32,
        path: Bytes,
    },
    Rmdir {
        id: u32,
        path: Bytes,
    },
    Realpath {
        id: u32,
        path: Bytes,
    },
    Stat {
        id: u32,
        path: Bytes,
    },
    Rename {
        id: u32,
        from: Bytes,
        to: Bytes,
    },
    Readlink {
        id: u32,
        path: Bytes,
    },
    Symlink {
        id: u32,
        link: Bytes,
        target: Bytes,
    },
    Limits {
        id: u32,
    },
    PosixRename {
        id: u32,
        from: Bytes,
        to: Bytes,
    },
    Fsync {
        id: u32,
        handle: Bytes,
    },
    /// A request type or extension sluice does not implement; answered OP_UNSUPPORTED.
    Unsupported {
        id: u32,
        what: String,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("packet is truncated")]
    Truncated,
    #[error("packet of {0} bytes exceeds the {MAX_PACKET}-byte limit")]
    TooLarge(u32),
    #[error("empty packet")]
    Empty,
}

/// A bounds-checked reader over one packet's payload.
struct Reader {
    buf: Bytes,
}

impl Reader {
    fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.buf.is_empty() {
            return Err(DecodeError::Truncated);
        }
        let b = self.buf[0];
        self.buf = self.buf.slice(1..);
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }

    fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        Ok(self.buf.split_to(n))
    }

    fn string(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn attrs(&mut self) -> Result<Attrs, DecodeError> {
        let flags = self.u32()?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            a.uid_gid = Some((self.u32()?, self.u32()?));
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.permissions = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            a.atime_mtime = Some((self.u32()?, self.u32()?));
        }
        if flags & ATTR_EXTENDED != 0 {
            let count = self.u32()?;
            for _ in 0..count {
                self.string()?;
                self.string()?;
            }
        }
        Ok(a)
    }
}

impl Request {
    /// Decodes one packet payload (the bytes after the 4-byte length).
    pub fn decode(payload: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader { buf: payload };
        let kind = r.u8().map_err(|_| DecodeError::Empty)?;
        if kind == msg::INIT {
            return Ok(Request::Init { version: r.u32()? });
        }
        let id = r.u32()?;
        Ok(match kind {
            msg::OPEN => Request::Open { id, path: r.string()?, flags: r.u32()?, attrs: r.attrs()? },
            msg::CLOSE => Request::Close { id, handle: r.string()? },
            msg::READ => Request::Read { id, handle: r.string()?, offset: r.u64()?, len: r.u32()? },
            msg::WRITE => Request::Write { id, handle: r.string()?, offset: r.u64()?, data: r.string()? },
            msg::LSTAT => Request::Lstat { id, path: r.string()? },
            msg::FSTAT => Request::Fstat { id, handle: r.string()? },
            msg::SETSTAT => Request::Setstat { id, path: r.string()?, attrs: r.attrs()? },
            msg::FSETSTAT => Request::Fsetstat { id, handle: r.string()?, attrs: r.attrs()? },
            msg::OPENDIR => Request::Opendir { id, path: r.string()? },
            msg::READDIR => Request::Readdir { id, handle: r.string()? },
            msg::REMOVE => Request::Remove { id, path: r.string()? },
            msg::MKDIR => Request::Mkdir { id, path: r.string()? },
            msg::RMDIR => Request::Rmdir { id, path: r.string()? },
            msg::REALPATH => Request::Realpath { id, path: r.string()? },
            msg::STAT => Request::Stat { id, path: r.string()? },
            msg::RENAME => Request::Rename { id, from: r.string()?, to: r.string()? },
            msg::READLINK => Request::Readlink { id, path: r.string()? },
            // OpenSSH sends SYMLINK's arguments as (target, link), reversed from the draft.
            msg::SYMLINK => Request::Symlink { id, target: r.string()?, link: r.string()? },
            msg::EXTENDED => {
                let name = r.string()?;
                match &name[..] {
                    b"limits@openssh.com" => Request::Limits { id },
                    b"posix-rename@openssh.com" => {
                        Request::PosixRename { id, from: r.string()?, to: r.string()? }
                    }
                    b"fsync@openssh.com" => Request::Fsync { id, handle: r.string()? },
                    other => Request::Unsupported { id, what: String::from_utf8_lossy(other).into_owned() },
                }
            }
            other => Request::Unsupported { id, what: format!("request type {other}") },
        })
    }

    /// The request id to answer, if the request has one.
    pub fn id(&self) -> Option<u32> {
        use Request::*;
        match self {
            Init { .. } => None,
            Open { id, .. }
            | Close { id, .. }
            | Read { id, .. }
            | Write { id, .. }
            | Lstat { id, .. }
            | Fstat { id, .. }
            | Setstat { id, .. }
            | Fsetstat { id, .. }
            | Opendir { id, .. }
            | Readdir { id, .. }
            | Remove { id, .. }
            | Mkdir { id, .. }
            | Rmdir { id, .. }
            | Realpath { id, .. }
            | Stat { id, .. }
            | Rename { id, .. }
            | Readlink { id, .. }
            | Symlink { id, .. }
            | Limits { id }
            | PosixRename { id, .. }
            | Fsync { id, .. }
            | Unsupported { id, .. } => Some(*id),
        }
    }
}

/// Reassembles SFTP packets from channel data.
///
/// A packet that arrives whole inside one channel message and makes up at least half of it
/// is sliced out without copying (the usual WRITE); it then keeps the whole message alive.
/// Smaller packets (a READ among padding, say) are copied out, so that a few bytes kept in
/// a queue never pin a large message. Each packet comes with the bytes it keeps alive, which
/// is what a queue must be charged for it.
#[derive(Default)]
pub struct PacketSplitter {
    pending: BytesMut,
}

/// One reassembled packet payload and the bytes of memory it holds on to.
#[derive(Debug)]
pub struct SplitPacket {
    pub payload: Bytes,
    pub retained: usize,
}

impl PacketSplitter {
    pub fn feed(&mut self, mut data: Bytes, out: &mut Vec<SplitPacket>) -> Result<(), DecodeError> {
        let message_len = data.len();
        loop {
            if self.pending.is_empty() {
                if data.len() < 4 {
                    break;
                }
                let len = packet_len(&data)? as usize;
                if data.len() < 4 + len {
                    break;
                }
                let packet = if 2 * (4 + len) >= message_len {
                    SplitPacket { payload: data.slice(4..4 + len), retained: message_len }
                } else {
                    SplitPacket { payload: Bytes::copy_from_slice(&data[4..4 + len]), retained: len }
                };
                out.push(packet);
                let _ = data.split_to(4 + len);
                continue;
            }
            if self.pending.len() < 4 {
                let take = (4 - self.pending.len()).min(data.len());
                self.pending.extend_from_slice(&data.split_to(take));
                if self.pending.len() < 4 {
                    return Ok(());
                }
            }
            let total = 4 + packet_len(&self.pending)? as usize;
            if self.pending.capacity() < total || self.pending.capacity() > total + 4096 {
                // Exactly one packet's room, so that the packet taken out below owns all of it.
                let mut exact = BytesMut::with_capacity(total);
                exact.extend_from_slice(&self.pending);
                self.pending = exact;
            }
            let take = (total - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data.split_to(take));
            if self.pending.len() < total {
                return Ok(());
            }
            let retained = self.pending.capacity();
            let packet = self.pending.split().freeze();
            out.push(SplitPacket { retained, payload: packet.slice(4..) });
        }
        self.pending.extend_from_slice(&data);
        Ok(())
    }

    /// Bytes held for a packet that has not arrived whole yet (at most one packet's worth).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

fn packet_len(buf: &[u8]) -> Result<u32, DecodeError> {
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len > MAX_PACKET {
        return Err(DecodeError::TooLarge(len));
    }
    if len == 0 {
        return Err(DecodeError::Empty);
    }
    Ok(len)
}

/// Builds one response packet; the length prefix is filled in by [`Packet::finish`].
pub struct Packet(BytesMut);

impl Packet {
    pub fn new(kind: u8, id: Option<u32>, capacity: usize) -> Self {
        let mut b = BytesMut::with_capacity(9 + capacity);
        b.put_u32(0);
        b.put_u8(kind);
        if let Some(id) = id {
            b.put_u32(id);
        }
        Self(b)
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.put_u32(v);
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.put_u64(v);
        self
    }

    pub fn string(&mut self, s: &[u8]) -> &mut Self {
        self.0.put_u32(s.len() as u32);
        self.0.put_slice(s);
        self
    }

    pub fn attrs(&mut self, a: &Attrs) -> &mut Self {
        let mut flags = 0;
        if a.size.is_some() {
            flags |= ATTR_SIZE;
        }
        if a.uid_gid.is_some() {
            flags |= ATTR_UIDGID;
        }
        if a.permissions.is_some() {
            flags |= ATTR_PERMISSIONS;
        }
        if a.atime_mtime.is_some() {
            flags |= ATTR_ACMODTIME;
        }
        self.0.put_u32(flags);
        if let Some(s) = a.size {
            self.0.put_u64(s);
        }
        if let Some((u, g)) = a.uid_gid {
            self.0.put_u32(u);
            self.0.put_u32(g);
        }
        if let Some(p) = a.permissions {
            self.0.put_u32(p);
        }
        if let Some((at, mt)) = a.atime_mtime {
            self.0.put_u32(at);
            self.0.put_u32(mt);
        }
        self
    }

    /// Appends `len` bytes filled by `fill` (which returns how many it wrote) as an SFTP
    /// string, so file data is read straight into the outgoing packet without a copy.
    pub fn string_with<E>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        let len_at = self.0.len();
        self.0.put_u32(0);
        let start = self.0.len();
        self.0.resize(start + len, 0);
        let n = fill(&mut self.0[start..])?;
        self.0.truncate(start + n);
        self.0[len_at..len_at + 4].copy_from_slice(&(n as u32).to_be_bytes());
        Ok(n)
    }

    pub fn finish(mut self) -> Bytes {
        let len = (self.0.len() - 4) as u32;
        self.0[..4].copy_from_slice(&len.to_be_bytes());
        self.0.freeze()
    }
}

pub fn status(id: u32, code: StatusCode, message: &str) -> Bytes {
    let mut p = Packet::new(msg::STATUS, Some(id), 16 + message.len());
    p.u32(code as u32).string(message.as_bytes()).string(b"en");
    p.finish()
}

pub fn version_reply() -> Bytes {
    let mut p = Packet::new(msg::VERSION, None, 128);
    p.u32(VERSION);
    for (name, version) in
        [("posix-rename@openssh.com", "1"), ("limits@openssh.com", "1"), ("fsync@openssh.com", "1")]
    {
        p.string(name.as_bytes()).string(version.as_bytes());
    }
    p.finish()
}

pub fn limits_reply(id: u32, max_handles: u64) -> Bytes {
    let mut p = Packet::new(msg::EXTENDED_REPLY, Some(id), 32);
    p.u64(u64::from(MAX_PACKET)).u64(u64::from(MAX_DATA)).u64(u64::from(MAX_DATA)).u64(max_handles);
    p.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_an_open_request() {
        let mut p = Packet::new(msg::OPEN, Some(7), 0);
        p.string(b"/students/a.csv").u32(open_flags::WRITE | open_flags::CREAT).attrs(&Attrs::default());
        let mut out = Vec::new();
        PacketSplitter::default().feed(p.finish(), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        let req = Request::decode(out.remove(0).payload).unwrap();
        assert_eq!(
            req,
            Request::Open {
                id: 7,
                path: Bytes::from_static(b"/students/a.csv"),
                flags: open_flags::WRITE | open_flags::CREAT,
                attrs: Attrs::default()
            }
        );
        assert_eq!(req.id(), Some(7));
    }

    #[test]
    fn splitter_reassembles_packets_across_any_boundaries() {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for i in 0..50u32 {
            let payload: Vec<u8> = (0..(i * 37 % 300 + 1)).map(|b| b as u8).collect();
            stream.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            stream.extend_from_slice(&payload);
            expected.push(payload);
        }
        for chunk in [1, 2, 3, 5, 64, 1000, stream.len()] {
            let mut splitter = PacketSplitter::default();
            let mut out = Vec::new();
            for piece in stream.chunks(chunk) {
                splitter.feed(Bytes::copy_from_slice(piece), &mut out).unwrap();
            }
            let got: Vec<Vec<u8>> = out.iter().map(|p| p.payload.to_vec()).collect();
            assert_eq!(got, expected, "chunk size {chunk}");
        }
        let mut splitter = PacketSplitter::default();
        let mut out = Vec::new();
        assert_eq!(
            splitter.feed(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]), &mut out),
            Err(DecodeError::TooLarge(u32::MAX))
        );
        let mut splitter = PacketSplitter::default();
        splitter.feed(Bytes::from_static(&[0, 0]), &mut out).unwrap();
        assert_eq!(splitter.feed(Bytes::from_static(&[0, 0, 1]), &mut out), Err(DecodeError::Empty));
    }

    #[test]
    fn hostile_packets_are_errors_not_panics() {
        // A string whose length runs past the end of the packet.
        let truncated = Bytes::from_static(&[msg::OPEN, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, b'a']);
        assert_eq!(Request::decode(truncated), Err(DecodeError::Truncated));
        // Attributes that claim extended pairs that are not there.
        let mut p = Packet::new(msg::SETSTAT, Some(1), 0);
        p.string(b"x").u32(ATTR_EXTENDED).u32(1_000_000);
        let payload = p.finish().slice(4..);
        assert_eq!(Request::decode(payload), Err(DecodeError::Truncated));
        for kind in 0..=255u8 {
            let _ = Request::decode(Bytes::from(vec![kind, 0, 0]));
        }
    }

    #[test]
    fn unknown_extensions_are_unsupported_not_errors() {
        let mut p = Packet::new(msg::EXTENDED, Some(3), 0);
        p.string(b"statvfs@openssh.com").string(b"/");
        let req = Request::decode(p.finish().slice(4..)).unwrap();
        assert!(matches!(req, Request::Unsupported { id: 3, .. }));
    }

    #[test]
    fn string_with_reads_into_the_packet() {
        let mut p = Packet::new(msg::DATA, Some(1), 8);
        let n = p
            .string_with(8, |buf| {
                buf[..3].copy_from_slice(b"abc");
                Ok::<_, ()>(3)
            })
            .unwrap();
        assert_eq!(n, 3);
        let bytes = p.finish();
        assert_eq!(&bytes[..], &[0, 0, 0, 12, msg::DATA, 0, 0, 0, 1, 0, 0, 0, 3, b'a', b'b', b'c']);
    }
}
