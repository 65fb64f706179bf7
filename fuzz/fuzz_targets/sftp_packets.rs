//! SFTP packet framing and decoding: arbitrary bytes, cut into arbitrary channel messages,
//! through `PacketSplitter`, then `Request::decode` on every packet.
//!
//! Input: byte 0 is a count `c` (mod 8) of chunk-size bytes that follow (each gives a
//! message of 1 + 16·b bytes, cycled; none: the stream arrives in one message); the rest is
//! the stream as a client would send it on the channel.
//!
//! Invariants: no panic; each packet's payload is exactly the bytes its 4-byte header
//! announces, in stream order; a packet keeps alive at least its payload and never more than
//! its message or its own size plus the splitter's 4 KiB slack; at most one packet is
//! pending; the packets (and the error, if any) do not depend on how the stream was cut.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_sftp::protocol::{DecodeError, MAX_PACKET, PacketSplitter, Request, SplitPacket};

/// The payloads in order and the error that ended the stream, if one did.
fn split(stream: &[u8], sizes: &[usize]) -> (Vec<Bytes>, Option<DecodeError>) {
    let mut splitter = PacketSplitter::default();
    let mut payloads = Vec::new();
    let mut at = 0;
    let mut sizes = sizes.iter().copied().cycle();
    while at < stream.len() {
        let n = sizes.next().unwrap_or(stream.len()).min(stream.len() - at);
        let message = Bytes::copy_from_slice(&stream[at..at + n]);
        at += n;
        let mut out: Vec<SplitPacket> = Vec::new();
        let result = splitter.feed(message, &mut out);
        for p in out {
            assert!(p.retained >= p.payload.len(), "retained {} < payload {}", p.retained, p.payload.len());
            assert!(
                p.retained <= n.max(4 + p.payload.len() + 4096),
                "a packet of {} bytes from a message of {n} keeps {} alive",
                p.payload.len(),
                p.retained
            );
            payloads.push(p.payload);
        }
        if let Err(e) = result {
            return (payloads, Some(e));
        }
        assert!(splitter.pending_len() <= 4 + MAX_PACKET as usize, "more than one packet pending");
    }
    (payloads, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&c, rest)) = data.split_first() else { return };
    let c = usize::from(c % 8).min(rest.len());
    let (sizes, stream) = rest.split_at(c);
    let sizes: Vec<usize> = sizes.iter().map(|&b| 1 + 16 * usize::from(b)).collect();

    let (payloads, error) = split(stream, &sizes);
    // Each payload is what its header announced, read straight from the stream.
    let mut at = 0;
    for p in &payloads {
        let header = u32::from_be_bytes(stream[at..at + 4].try_into().unwrap()) as usize;
        assert_eq!(p.len(), header, "payload length differs from its header");
        assert_eq!(&p[..], &stream[at + 4..at + 4 + header]);
        at += 4 + header;
    }
    // The same stream in one message splits the same way.
    if !sizes.is_empty() {
        assert_eq!((payloads.clone(), error), split(stream, &[]), "the chunking changed the packets");
    }
    for p in payloads {
        let len = p.len();
        if let Ok(request) = Request::decode(p) {
            let _ = request.id();
            if let Request::Write { data, .. } = &request {
                assert!(data.len() < len);
            }
        }
    }
});
