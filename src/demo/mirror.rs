//! A tiny read-only HTTP mirror on 127.0.0.1 for `etferry demo`: serves an in-memory tree the way
//! rules.emergingthreats.net lays it out, so the demo runs the real fetch code with no network.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A running mirror; stopped when dropped.
pub struct Mirror {
    base_url: String,
    stop: Arc<AtomicBool>,
    bytes_served: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
    addr: std::net::SocketAddr,
}

impl Mirror {
    /// Serve `files` (URL path without leading `/` → bytes) on an ephemeral loopback port.
    pub fn start(files: BTreeMap<String, Vec<u8>>) -> std::io::Result<Mirror> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let bytes_served = Arc::new(AtomicU64::new(0));
        let files = Arc::new(files);
        let (s, b) = (stop.clone(), bytes_served.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = serve(stream, &files, &b);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
        });
        Ok(Mirror {
            base_url: format!("http://{addr}/"),
            stop,
            bytes_served,
            handle: Some(handle),
            addr,
        })
    }

    /// `http://127.0.0.1:PORT/`
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Body bytes sent so far (the demo shows that an unchanged run downloads no archive).
    pub fn bytes_served(&self) -> u64 {
        self.bytes_served.load(Ordering::Relaxed)
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop in case it is between sleeps.
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    files: &BTreeMap<String, Vec<u8>>,
    served: &AtomicU64,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut if_none_match = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("if-none-match") {
                    if_none_match = Some(v.trim().to_string());
                }
            }
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("");
        let path = parts
            .next()
            .unwrap_or("/")
            .trim_start_matches('/')
            .split('?')
            .next()
            .unwrap_or("");
        match files.get(path) {
            Some(body) if method == "GET" || method == "HEAD" => {
                let etag = format!("\"{}\"", hex::encode(sha2_8(body)));
                if if_none_match.as_deref() == Some(etag.as_str()) {
                    write!(
                        out,
                        "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nContent-Length: 0\r\n\r\n"
                    )?;
                } else {
                    write!(
                        out,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: {etag}\r\nContent-Type: application/octet-stream\r\n\r\n",
                        body.len()
                    )?;
                    if method == "GET" {
                        out.write_all(body)?;
                        served.fetch_add(body.len() as u64, Ordering::Relaxed);
                    }
                }
            }
            _ => {
                let msg = b"not found\n";
                write!(
                    out,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n",
                    msg.len()
                )?;
                out.write_all(msg)?;
            }
        }
        out.flush()?;
    }
}

fn sha2_8(body: &[u8]) -> [u8; 8] {
    use sha2::Digest;
    let d = sha2::Sha256::digest(body);
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}
