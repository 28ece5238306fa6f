//! The local ET-like HTTP server: the corpus files at ET's paths, fault switches, a request log.

use super::*;

/// A fault served instead of (or on top of) the normal answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and a small HTML body.
    Status(u16),
    /// Answer with this status and `Retry-After: secs`.
    RetryAfter(u16, u64),
    /// Send the headers with the full Content-Length, then only this many body bytes, then reset.
    Reset(usize),
    /// Send the body in `chunk`-byte pieces with `delay` between them.
    Drip { chunk: usize, delay: Duration },
    /// Answer with this redirect status and `Location`.
    Redirect(u16, String),
    /// 200 without Content-Length, then zeros until the client hangs up (or `limit` bytes).
    Endless { limit: u64 },
    /// 200 announcing `Content-Length: n` (HEAD too), then up to `n` zeros, generated on the fly.
    Huge(u64),
    /// 304 Not Modified whatever the request asked.
    NotModified,
    /// This status with a raw `Retry-After` value.
    RetryAfterRaw(u16, String),
    /// The body gzip-compressed again, with `Content-Encoding: gzip`.
    GzipEncoded,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub body_bytes: usize,
    pub headers: Vec<(String, String)>,
}

#[derive(Default)]
struct Inner {
    files: HashMap<String, Vec<u8>>,
    /// Per path: faults to serve, each with a remaining count.
    faults: HashMap<String, Vec<(Fault, usize)>>,
    log: Vec<Logged>,
    /// Requests per target as they arrive (the log has them only once answered).
    started: HashMap<String, usize>,
}

/// The ET-like upstream.
#[derive(Clone)]
pub struct Server {
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

pub fn md5_hex(b: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(b))
}

impl Server {
    /// Start a server holding the ET-like tree built from the corpus.
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}/", listener.local_addr().unwrap());
        let s = Server {
            base,
            inner: Arc::new(Mutex::new(Inner::default())),
        };
        // Suricata flavour: the real 2017 archive and its real .md5; Snort: the real 2020 archive
        // with an md5 derived from it (SOURCES.md: none was published with that copy).
        let suri = corpus("et-open-suricata-1.3-enhanced-2017-03-10/emerging.rules.tar.gz");
        let suri_md5 = corpus("et-open-suricata-1.3-enhanced-2017-03-10/emerging.rules.tar.gz.md5");
        s.put(SURI, suri);
        s.put(&format!("{SURI}.md5"), suri_md5);
        s.put("/open/suricata-5.0/version.txt", b"4548\n".to_vec());
        let snort = corpus("et-open-snort-2.9.0-2020-03-27/emerging.rules.tar.gz");
        s.put_archive(SNORT, snort);
        s.put("/open/snort-2.9.0/version.txt", b"5685\n".to_vec());
        s.put(
            "/blockrules/emerging-botcc.rules",
            corpus("et-blocklists/blockrules-2019-10-04/emerging-botcc.rules"),
        );
        s.put(
            "/blockrules/compromised-ips.txt",
            corpus("et-blocklists/blockrules-2019-10-04/compromised-ips.txt"),
        );
        s.put(
            "/fwrules/emerging-Block-IPs.txt",
            corpus("et-blocklists/fwrules-2020-rev5793/emerging-Block-IPs.txt"),
        );
        let srv = s.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let srv = srv.clone();
                std::thread::spawn(move || srv.handle(conn));
            }
        });
        s
    }

    pub fn put(&self, path: &str, body: Vec<u8>) {
        self.inner
            .lock()
            .unwrap()
            .files
            .insert(path.to_string(), body);
    }

    pub fn remove(&self, path: &str) {
        self.inner.lock().unwrap().files.remove(path);
    }

    /// Serve an archive and its matching `.md5`.
    pub fn put_archive(&self, path: &str, body: Vec<u8>) {
        self.put(
            &format!("{path}.md5"),
            format!("{}\n", md5_hex(&body)).into_bytes(),
        );
        self.put(path, body);
    }

    pub fn get(&self, path: &str) -> Vec<u8> {
        self.inner.lock().unwrap().files[path].clone()
    }

    /// Serve `fault` for the next `times` requests of `path`.
    pub fn fault(&self, path: &str, fault: Fault, times: usize) {
        self.inner
            .lock()
            .unwrap()
            .faults
            .entry(path.to_string())
            .or_default()
            .push((fault, times));
    }

    pub fn log(&self) -> Vec<Logged> {
        self.inner.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.inner.lock().unwrap().log.clear();
    }

    /// Body bytes sent for archive / rule-list paths (everything but version.txt and .md5).
    pub fn archive_bytes_sent(&self) -> usize {
        self.log()
            .iter()
            .filter(|l| !l.path.ends_with(".md5") && !l.path.ends_with("version.txt"))
            .map(|l| l.body_bytes)
            .sum()
    }

    /// Requests of `path` that arrived, answered or not (a drip feed is logged only at its end).
    pub fn started(&self, path: &str) -> usize {
        self.inner
            .lock()
            .unwrap()
            .started
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn requests_for(&self, path: &str) -> usize {
        self.log().iter().filter(|l| l.path == path).count()
    }

    fn handle(&self, mut conn: TcpStream) {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        // A TLS ClientHello (record type 0x16) on this plain-http port: answer as a plain http
        // server (nginx, Apache) does, with an http 400.
        let mut first = [0u8; 1];
        if conn.peek(&mut first).is_ok() && first[0] == 0x16 {
            let _ = conn.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
        let Some((method, target, headers)) = read_head(&mut conn) else {
            return;
        };
        let path = match target.find("://") {
            Some(i) => {
                let rest = &target[i + 3..];
                rest.find('/')
                    .map(|j| rest[j..].to_string())
                    .unwrap_or("/".into())
            }
            None => target.clone(),
        };
        *self
            .inner
            .lock()
            .unwrap()
            .started
            .entry(path.clone())
            .or_default() += 1;
        let hdr = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let (fault, body) = {
            let mut g = self.inner.lock().unwrap();
            let fault = match g.faults.get_mut(&path) {
                Some(list) => {
                    list.retain(|(_, n)| *n > 0);
                    list.first_mut().map(|(f, n)| {
                        *n -= 1;
                        f.clone()
                    })
                }
                None => None,
            };
            (fault, g.files.get(&path).cloned())
        };
        let log = |status: u16, body_bytes: usize| {
            self.inner.lock().unwrap().log.push(Logged {
                method: method.clone(),
                path: path.clone(),
                status,
                body_bytes,
                headers: headers.clone(),
            });
        };
        match (fault, body) {
            (Some(Fault::Status(code)), _) => {
                let b = format!("<html><body><h1>{code}</h1></body></html>\n");
                log(code, b.len());
                respond(&mut conn, code, &[], b.as_bytes());
            }
            (Some(Fault::RetryAfter(code, secs)), _) => {
                log(code, 0);
                respond(&mut conn, code, &[("Retry-After", secs.to_string())], b"");
            }
            (Some(Fault::RetryAfterRaw(code, v)), _) => {
                log(code, 0);
                respond(&mut conn, code, &[("Retry-After", v)], b"");
            }
            (Some(Fault::Redirect(code, location)), _) => {
                log(code, 0);
                respond(&mut conn, code, &[("Location", location)], b"");
            }
            (Some(Fault::NotModified), _) => {
                log(304, 0);
                respond(&mut conn, 304, &[], b"");
            }
            (Some(Fault::Endless { limit }), _) => {
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
                let sent = stream_zeros(&mut conn, limit);
                log(200, sent as usize);
            }
            (Some(Fault::Huge(n)), _) => {
                let head =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n");
                let _ = conn.write_all(head.as_bytes());
                let sent = if method == "HEAD" {
                    0
                } else {
                    stream_zeros(&mut conn, n)
                };
                log(200, sent as usize);
            }
            (Some(Fault::GzipEncoded), Some(body)) => {
                use std::io::Write as _;
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&body).unwrap();
                let b = gz.finish().unwrap();
                log(200, b.len());
                respond(&mut conn, 200, &[("Content-Encoding", "gzip".into())], &b);
            }
            (_, None) => {
                let b = b"<html><body>404 Not Found</body></html>\n";
                log(404, b.len());
                respond(&mut conn, 404, &[], b);
            }
            (Some(Fault::Reset(n)), Some(body)) => {
                log(200, n);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&body[..n.min(body.len())]);
                let _ = conn.flush();
                // SO_LINGER 0 would send RST; dropping mid-body is enough for "connection broke".
                drop(conn);
            }
            (Some(Fault::Drip { chunk, delay }), Some(body)) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let mut sent = 0;
                for c in body.chunks(chunk) {
                    if conn.write_all(c).is_err() {
                        break;
                    }
                    sent += c.len();
                    std::thread::sleep(delay);
                }
                log(200, sent);
            }
            (None, Some(body)) => {
                let etag = format!("\"{}\"", md5_hex(&body));
                let lm = "Fri, 27 Mar 2020 22:57:00 GMT".to_string();
                if hdr("If-None-Match").as_deref() == Some(etag.as_str()) {
                    log(304, 0);
                    respond(&mut conn, 304, &[("ETag", etag)], b"");
                    return;
                }
                if method == "HEAD" {
                    // Headers only: the size without the body.
                    log(200, 0);
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\nETag: {etag}\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(head.as_bytes());
                    return;
                }
                log(200, body.len());
                respond(
                    &mut conn,
                    200,
                    &[("ETag", etag), ("Last-Modified", lm)],
                    &body,
                );
            }
        }
    }
}

/// Write up to `limit` zero bytes in 64 KiB pieces until the peer hangs up; returns bytes sent.
fn stream_zeros(conn: &mut TcpStream, limit: u64) -> u64 {
    let chunk = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    while sent < limit {
        let n = chunk.len().min((limit - sent) as usize);
        if conn.write_all(&chunk[..n]).is_err() {
            break;
        }
        sent += n as u64;
    }
    sent
}

/// Method, request target and headers of a request.
type Head = (String, String, Vec<(String, String)>);

pub(super) fn read_head(conn: &mut TcpStream) -> Option<Head> {
    let mut r = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let method = line.split_whitespace().next()?.to_string();
    let target = line.split_whitespace().nth(1)?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).ok()? == 0 {
            break;
        }
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Some((method, target, headers))
}

pub(super) fn respond(conn: &mut TcpStream, code: u16, extra: &[(&str, String)], body: &[u8]) {
    let reason = match code {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        404 => "Not Found",
        407 => "Proxy Authentication Required",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {code} {reason}\r\nConnection: close\r\n");
    if code != 304 {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
    let _ = conn.flush();
}
