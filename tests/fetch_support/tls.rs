//! An https server on 127.0.0.1 (rustls, the test CA of `tests/fixtures/tls`) that answers every
//! request with a redirect: a mirror or a ThreatQ that points an https client somewhere else.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");

/// The CA that signed the server certificate (for `ca_bundle`).
pub fn ca_pem() -> PathBuf {
    PathBuf::from(DIR).join("ca.pem")
}

pub struct TlsRedirect {
    /// `https://127.0.0.1:PORT` (no trailing slash).
    pub url: String,
    /// Request paths received.
    pub paths: Arc<Mutex<Vec<String>>>,
}

impl TlsRedirect {
    /// Answer every request with `code` and `Location: {target}{request path}`.
    pub fn start(code: u16, target: &str) -> TlsRedirect {
        let pem = std::fs::read(format!("{DIR}/server.pem")).unwrap();
        let certs: Vec<CertificateDer> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .unwrap();
        let key =
            PrivateKeyDer::from_pem_slice(&std::fs::read(format!("{DIR}/server.key")).unwrap())
                .unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
        );
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", l.local_addr().unwrap());
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (seen, target) = (paths.clone(), target.to_string());
        std::thread::spawn(move || {
            for tcp in l.incoming() {
                let Ok(tcp) = tcp else { continue };
                let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                // The head, then any body (a token POST), so that closing does not reset.
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break None,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(i + 4);
                    }
                };
                let Some(head_end) = head_end else { continue };
                let head = String::from_utf8_lossy(&got[..head_end]).to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while got.len() < head_end + length {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                seen.lock().unwrap().push(path.clone());
                let answer = format!(
                    "HTTP/1.1 {code} Redirect\r\nLocation: {target}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = tls.write_all(answer.as_bytes());
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        TlsRedirect { url, paths }
    }
}
