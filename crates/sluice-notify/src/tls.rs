//! TLS for the notifier's connections (SMTP STARTTLS or TLS through lettre, https webhooks):
//! rustls with the Mozilla roots, plus an operator's own CA file for private relays.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

/// What the notifier's TLS connections trust: the public roots and the operator's own CA
/// certificates, read once from `[notifications] ca_file`. SMTP (lettre) is given the extra
/// roots, webhooks the client configuration built from the same certificates.
#[derive(Debug, Clone)]
pub struct Trust {
    pub client: Arc<ClientConfig>,
    pub extra_roots: Vec<CertificateDer<'static>>,
}

/// The trust of the public roots and, if given, the certificates in `extra_ca` (PEM).
pub fn trust(extra_ca: Option<&Path>) -> Result<Trust, String> {
    let mut extra_roots = Vec::new();
    if let Some(path) = extra_ca {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for cert in certs {
            extra_roots.push(cert.map_err(|e| format!("{}: {e}", path.display()))?);
        }
        if extra_roots.is_empty() {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
    }
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in &extra_roots {
        roots
            .add(cert.clone())
            .map_err(|e| format!("{}: {e}", extra_ca.map(|p| p.display().to_string()).unwrap_or_default()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Trust { client: Arc::new(client), extra_roots })
}

/// A connection, plain or TLS, read and written the same way.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    /// Starts TLS on `tcp` for `host` (its certificate must name it).
    pub fn tls(config: &Arc<ClientConfig>, host: &str, tcp: TcpStream) -> Result<Conn, String> {
        let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("{host:?}: {e}"))?;
        let connection = ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
        let mut stream = StreamOwned::new(connection, tcp);
        // Complete the handshake now, so that a bad certificate is reported as such.
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).map_err(|e| format!("TLS with {host} failed: {e}"))?;
        }
        Ok(Conn::Tls(Box::new(stream)))
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}
