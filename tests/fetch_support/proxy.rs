//! A tiny forward proxy that wants basic credentials.

use super::server::{read_head, respond};
use super::*;

/// A tiny HTTP forward proxy (absolute-form requests, no CONNECT) that wants basic credentials.
pub struct Proxy {
    pub url_with_credentials: String,
    pub url_without_credentials: String,
    pub forwarded: Arc<Mutex<usize>>,
}

impl Proxy {
    pub fn start(user: &str, password: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let want = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
        let forwarded = Arc::new(Mutex::new(0usize));
        let fw = forwarded.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let want = want.clone();
                let fw = fw.clone();
                std::thread::spawn(move || {
                    let Some((_, target, headers)) = read_head(&mut conn) else {
                        return;
                    };
                    let auth = headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("Proxy-Authorization"))
                        .map(|(_, v)| v.clone());
                    if auth.as_deref() != Some(want.as_str()) {
                        respond(
                            &mut conn,
                            407,
                            &[("Proxy-Authenticate", "Basic realm=\"test\"".into())],
                            b"proxy authentication required\n",
                        );
                        return;
                    }
                    let Some(rest) = target.strip_prefix("http://") else {
                        respond(&mut conn, 400, &[], b"absolute-form only\n");
                        return;
                    };
                    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                    let Ok(mut up) = TcpStream::connect(host) else {
                        respond(&mut conn, 502, &[], b"bad gateway\n");
                        return;
                    };
                    *fw.lock().unwrap() += 1;
                    let mut req = format!("GET {path} HTTP/1.1\r\n");
                    for (k, v) in &headers {
                        if !k.to_ascii_lowercase().starts_with("proxy-")
                            && !k.eq_ignore_ascii_case("connection")
                        {
                            req.push_str(&format!("{k}: {v}\r\n"));
                        }
                    }
                    req.push_str("Connection: close\r\n\r\n");
                    let _ = up.write_all(req.as_bytes());
                    let mut buf = Vec::new();
                    let _ = up.read_to_end(&mut buf);
                    let _ = conn.write_all(&buf);
                });
            }
        });
        Proxy {
            url_with_credentials: format!("http://{user}:{password}@{addr}"),
            url_without_credentials: format!("http://{addr}"),
            forwarded,
        }
    }
}

fn base64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
