//! The PROXY protocol (HAProxy's, versions 1 and 2): a TCP load balancer in front of several
//! nodes sends it before the client's first byte, naming the client's address, which the
//! connection then counts as (the defender's limits and bans, the logs, the audit trail).
//! Read only from the balancers the operator names (`[sftp] proxy_protocol_from`): from them
//! it is required, from anyone else it is never looked for (a client cannot claim another
//! address by sending one).

use ppp::HeaderResult;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest header read: a v1 header is at most 107 bytes, a v2 one 16 bytes and its
/// addresses (216 at most) and TLVs (HAProxy sends a few dozen bytes of them).
const MAX_HEADER: usize = 1024;
/// A v1 header's longest line, `\r\n` included (the protocol's own limit).
const MAX_V1: usize = 107;
/// The start of a v2 header, and of a v1 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8; 6] = b"PROXY ";

#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("no PROXY protocol header within {0:?}")]
    Timeout(Duration),
    #[error("the connection closed before its PROXY protocol header")]
    Closed,
    #[error(
        "not a PROXY protocol header (the balancer must send one: HAProxy's send-proxy or send-proxy-v2)"
    )]
    Invalid,
    #[error("reading the PROXY protocol header: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for ProxyHeaderError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ProxyHeaderError::Closed
        } else {
            ProxyHeaderError::Io(e)
        }
    }
}

/// Reads the PROXY protocol header at the start of `socket` (from a balancer), consuming it
/// and nothing after it, within `within`. Returns the client it names, or `None` when it
/// names none (a v1 `UNKNOWN`, a v2 `LOCAL` command: the balancer's own health check, or an
/// address family other than IPv4 and IPv6): the connection is then the balancer's own.
pub async fn read_header(
    socket: &mut TcpStream,
    within: Duration,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    tokio::time::timeout(within, read(socket)).await.map_err(|_| ProxyHeaderError::Timeout(within))?
}

/// Exact reads only (the header says its own length), so what follows it stays unread.
async fn read(socket: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut header = vec![0u8; V1_PREFIX.len()];
    socket.read_exact(&mut header).await?;
    if header == V1_PREFIX {
        // To the end of the line, a byte at a time: at most 107 reads, from a balancer only.
        while !header.ends_with(b"\r\n") {
            if header.len() == MAX_V1 {
                return Err(ProxyHeaderError::Invalid);
            }
            let mut byte = [0u8; 1];
            socket.read_exact(&mut byte).await?;
            header.push(byte[0]);
        }
    } else if V2_SIGNATURE.starts_with(&header) {
        header.resize(16, 0);
        socket.read_exact(&mut header[V1_PREFIX.len()..]).await?;
        let length = usize::from(u16::from_be_bytes([header[14], header[15]]));
        if header[..12] != V2_SIGNATURE[..] || 16 + length > MAX_HEADER {
            return Err(ProxyHeaderError::Invalid);
        }
        header.resize(16 + length, 0);
        socket.read_exact(&mut header[16..]).await?;
    } else {
        return Err(ProxyHeaderError::Invalid);
    }
    match HeaderResult::parse(&header) {
        HeaderResult::V1(Ok(h)) if h.header.len() == header.len() => Ok(v1_client(&h.addresses)),
        HeaderResult::V2(Ok(h)) if h.len() == header.len() => Ok(v2_client(&h)),
        _ => Err(ProxyHeaderError::Invalid),
    }
}

fn v1_client(addresses: &ppp::v1::Addresses) -> Option<SocketAddr> {
    match addresses {
        ppp::v1::Addresses::Tcp4(a) => Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)),
        ppp::v1::Addresses::Tcp6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address).to_canonical(), a.source_port))
        }
        ppp::v1::Addresses::Unknown => None,
    }
}

fn v2_client(h: &ppp::v2::Header<'_>) -> Option<SocketAddr> {
    if h.command == ppp::v2::Command::Local {
        return None;
    }
    match h.addresses {
        ppp::v2::Addresses::IPv4(a) => Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)),
        ppp::v2::Addresses::IPv6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address).to_canonical(), a.source_port))
        }
        ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// Sends `parts` (with a pause between them) and reads the header on the other side:
    /// what it names, and the bytes after it.
    async fn exchange(parts: Vec<Vec<u8>>) -> (Result<Option<SocketAddr>, ProxyHeaderError>, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sender = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            for p in parts {
                c.write_all(&p).await.unwrap();
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        });
        let (mut s, _) = listener.accept().await.unwrap();
        let got = read_header(&mut s, Duration::from_millis(500)).await;
        let mut rest = Vec::new();
        if got.is_ok() {
            sender.await.unwrap();
            s.read_to_end(&mut rest).await.unwrap();
        }
        (got, rest)
    }

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        h.extend_from_slice(addresses);
        h
    }

    #[tokio::test]
    async fn a_header_names_the_client_and_leaves_what_follows() {
        let (got, rest) =
            exchange(vec![b"PROXY TCP4 203.0.113.7 10.0.0.5 51234 22\r\nSSH-2.0-OpenSSH_9.2\r\n".to_vec()])
                .await;
        assert_eq!(got.unwrap(), Some("203.0.113.7:51234".parse().unwrap()));
        assert_eq!(rest, b"SSH-2.0-OpenSSH_9.2\r\n");
        // v2, IPv6, split over two segments.
        let mut addresses = "2001:db8::7".parse::<std::net::Ipv6Addr>().unwrap().octets().to_vec();
        addresses.extend_from_slice(&"2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        addresses.extend_from_slice(&[0xc8, 0x1f, 0, 22]);
        let header = v2(1, 0x21, &addresses);
        let (first, second) = header.split_at(20);
        let (got, rest) = exchange(vec![first.to_vec(), [second, b"SSH-2.0-x\r\n"].concat()]).await;
        assert_eq!(got.unwrap(), Some("[2001:db8::7]:51231".parse().unwrap()));
        assert_eq!(rest, b"SSH-2.0-x\r\n");
    }

    #[tokio::test]
    async fn a_balancers_own_check_names_no_client() {
        let (got, rest) = exchange(vec![[v2(0, 0x00, &[]), b"x".to_vec()].concat()]).await;
        assert_eq!(got.unwrap(), None);
        assert_eq!(rest, b"x");
        let (got, _) = exchange(vec![b"PROXY UNKNOWN\r\n".to_vec()]).await;
        assert_eq!(got.unwrap(), None);
    }

    /// What a client sends instead, or a header cut short, or one that never ends: refused.
    #[tokio::test]
    async fn anything_else_is_refused() {
        let (got, _) = exchange(vec![b"SSH-2.0-OpenSSH_9.2\r\n".to_vec()]).await;
        assert!(matches!(got, Err(ProxyHeaderError::Invalid)), "{got:?}");
        let (got, _) = exchange(vec![b"PROXY TCP4 999.0.113.7 10.0.0.5 1 22\r\n".to_vec()]).await;
        assert!(matches!(got, Err(ProxyHeaderError::Invalid)), "{got:?}");
        let (got, _) = exchange(vec![b"PROXY TCP4 203.0.113.7".to_vec()]).await;
        assert!(matches!(got, Err(ProxyHeaderError::Timeout(_) | ProxyHeaderError::Closed)), "{got:?}");
        let (got, _) = exchange(vec![[b"PROXY TCP4 ".to_vec(), vec![b'1'; 2000]].concat()]).await;
        assert!(matches!(got, Err(ProxyHeaderError::Invalid)), "{got:?}");
        // A v2 header that claims more address bytes than any header has.
        let (got, _) = exchange(vec![v2(1, 0x11, &[0u8; 2000])]).await;
        assert!(matches!(got, Err(ProxyHeaderError::Invalid)), "{got:?}");
    }
}
