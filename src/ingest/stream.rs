//! The payload's rules files as a stream: decompressed on one thread, parsed on the rayon pool,
//! and handed to the caller one file at a time, in payload order, while later files are still
//! being read. The caller (the store writer) works in parallel with both, and memory holds only
//! the files in flight, not the whole decompressed payload or every parsed rule.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};

use super::payload::{self, Limits, PayloadError};
use crate::archive::Pick;
use crate::payload::for_each_member;
use crate::store::NewRule;
use crate::timing::{self, Activity};

/// Decompressed bytes of rules files read but not yet consumed. The reader makes room for a
/// file before it decompresses it, waiting while the allowance is taken (a single larger file
/// is still let through alone), so a slow consumer bounds memory instead of the archive piling
/// up decompressed. 3 MiB keeps both parser threads fed (ET's files are mostly well under
/// 1 MiB); 2 MiB measured slower, 4 MiB no faster.
const IN_FLIGHT_BYTES: u64 = 3 << 20;

/// One payload member the pipeline uses, in payload order.
#[derive(Debug)]
pub enum Item {
    /// A rules file, parsed: its rules in file order (text hashed, not kept) and its errors.
    Rules {
        path: Arc<str>,
        rules: Vec<NewRule>,
        errors: Vec<String>,
    },
    /// A plain IP list, as read (small; parsed by the caller).
    IpList { path: String, data: Vec<u8> },
}

enum Msg {
    Item(usize, Item, u64),
    End(Result<usize, PayloadError>),
}

/// Bytes in flight, with a wait for room.
struct Budget {
    used: Mutex<u64>,
    room: Condvar,
    cancelled: AtomicBool,
}

impl Budget {
    fn acquire(&self, n: u64) {
        let Ok(mut used) = self.used.lock() else {
            return;
        };
        while *used > 0 && *used + n > IN_FLIGHT_BYTES && !self.cancelled.load(Ordering::SeqCst) {
            used = match self.room.wait(used) {
                Ok(u) => u,
                Err(_) => return,
            };
        }
        *used += n;
    }

    fn release(&self, n: u64) {
        if let Ok(mut used) = self.used.lock() {
            *used = used.saturating_sub(n);
        }
        self.room.notify_all();
    }

    fn cancel(&self) {
        // Set under the lock: a reader about to wait has either seen the flag or is waiting,
        // and then hears the notification (no lost wake-up, no reader left waiting forever).
        let guard = self.used.lock();
        self.cancelled.store(true, Ordering::SeqCst);
        drop(guard);
        self.room.notify_all();
    }
}

/// The members of a payload, in order ([`with_members`]).
pub struct Members<'a> {
    rx: mpsc::Receiver<Msg>,
    budget: &'a Budget,
    next: usize,
    waiting: BTreeMap<usize, (Item, u64)>,
    end: Option<Result<usize, PayloadError>>,
    done: bool,
}

impl Iterator for Members<'_> {
    type Item = Result<Item, PayloadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            if let Some((item, bytes)) = self.waiting.remove(&self.next) {
                self.next += 1;
                // Consumed as far as memory goes once the caller has it: the caller drops it
                // before asking for the next.
                self.budget.release(bytes);
                return Some(Ok(item));
            }
            if let Some(end) = &self.end {
                // Everything before the end marker has arrived (the count says how many).
                self.done = true;
                return match end {
                    Ok(n) if *n == self.next => None,
                    Ok(_) => Some(Err(PayloadError("a parser thread stopped early".into()))),
                    Err(e) => Some(Err(PayloadError(e.0.clone()))),
                };
            }
            let wait = timing::Span::new(Activity::WaitParsed);
            let msg = self.rx.recv();
            drop(wait);
            match msg {
                Ok(Msg::Item(i, item, bytes)) => {
                    self.waiting.insert(i, (item, bytes));
                }
                Ok(Msg::End(r)) => self.end = Some(r),
                Err(_) => {
                    self.done = true;
                    return Some(Err(PayloadError("a parser thread panicked".into())));
                }
            }
        }
    }
}

/// Run `f` over the members of `files` (archives opened with `limits`) as they are parsed. An
/// archive error comes as the last item, after every member read before it. If `f` returns
/// early, the reader stops handing out work and the call returns once it has wound down.
pub fn with_members<T>(
    files: &[(String, Vec<u8>)],
    limits: &Limits,
    f: impl FnOnce(&mut Members<'_>) -> T,
) -> T {
    let budget = Budget {
        used: Mutex::new(0),
        room: Condvar::new(),
        cancelled: AtomicBool::new(false),
    };
    let (tx, rx) = mpsc::channel::<Msg>();
    std::thread::scope(|s| {
        let budget = &budget;
        s.spawn(move || read(files, limits, budget, tx));
        let mut members = Members {
            rx,
            budget,
            next: 0,
            waiting: BTreeMap::new(),
            end: None,
            done: false,
        };
        let out = f(&mut members);
        // The reader may still be decompressing (the caller stopped early): let it skip the
        // rest; the scope joins it.
        budget.cancel();
        drop(members);
        out
    })
}

/// The reader thread: decompress, and parse each rules file on the pool.
fn read(files: &[(String, Vec<u8>)], limits: &Limits, budget: &Budget, tx: mpsc::Sender<Msg>) {
    let opts = crate::rules::ParseOptions::default();
    // Decompressed bytes parsed; the total is unknown until the archive is read to its end.
    let bar = crate::progress::bytes(None, "parsing rules");
    let mut n = 0usize;
    // Room is made for a rules file before it is decompressed (`pick` is told its size), so at
    // most the allowance is in memory, or one larger file alone.
    let acquired = std::cell::Cell::new(0u64);
    // Decompressing since; the wait for room is not decompression.
    let started = std::cell::Cell::new(std::time::Instant::now());
    let mut pick = |path: &str, size: u64| {
        if budget.cancelled.load(Ordering::SeqCst) {
            Pick::Stop
        } else if path.ends_with(".rules") {
            timing::add(Activity::Decompress, started.get().elapsed());
            budget.acquire(size);
            started.set(std::time::Instant::now());
            acquired.set(size);
            Pick::Read
        } else if payload::is_ip_list(path) {
            Pick::Read
        } else {
            Pick::Skip
        }
    };
    // In place: the decompression stays on this thread, the pool's threads parse.
    let result = rayon::in_place_scope(|scope| {
        let r = for_each_member(files, limits, &mut pick, &mut |path, data| {
            timing::add(Activity::Decompress, started.get().elapsed());
            if path.ends_with(".rules") {
                let (i, tx, opts, bar, bytes) = (n, tx.clone(), &opts, &bar, acquired.get());
                n += 1;
                scope.spawn(move |_| {
                    let _parse = timing::Span::new(Activity::Parse);
                    let file: Arc<str> = Arc::from(path.as_str());
                    let (parts, errors, _) = crate::rules::fold_lean(
                        &path,
                        &data,
                        opts,
                        payload::Chunk::default,
                        |c, r| c.push(&r, &file),
                    );
                    bar.inc(data.len() as u64);
                    drop(data);
                    let rules = concat(parts.into_iter().map(|c| c.rules).collect());
                    let errors = errors.iter().map(|e| e.to_string()).collect();
                    let item = Item::Rules {
                        path: file,
                        rules,
                        errors,
                    };
                    // A closed channel: the consumer is gone, nothing to do.
                    let _ = tx.send(Msg::Item(i, item, bytes));
                });
            } else {
                let _ = tx.send(Msg::Item(
                    n,
                    Item::IpList {
                        path,
                        data: data.into_owned(),
                    },
                    0,
                ));
                n += 1;
            }
            started.set(std::time::Instant::now());
        });
        timing::add(Activity::Decompress, started.get().elapsed());
        r
    });
    let _ = tx.send(Msg::End(result.map(|()| n)));
}

/// The rules of a file's chunks in one vector: the first chunk's, extended in place (most files
/// are one chunk). A collect through `flat_map` cannot know the total and grows by doubling,
/// copying every rule again and touching fresh pages at each step.
fn concat(parts: Vec<Vec<NewRule>>) -> Vec<NewRule> {
    let total: usize = parts.iter().map(Vec::len).sum();
    let mut parts = parts.into_iter();
    let mut all = parts.next().unwrap_or_default();
    all.reserve_exact(total - all.len());
    for p in parts {
        all.extend(p);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `.tar.gz` of `n` rules files of about `size` bytes each.
    fn archive(n: usize, size: usize) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for f in 0..n {
            let mut data = String::new();
            let mut sid = 1_000_000 + f * 100_000;
            while data.len() < size {
                data.push_str(&format!(
                    "alert tcp any any -> any any (msg:\"ET TEST {sid}\"; content:\"{}\"; sid:{sid}; rev:1;)\n",
                    "x".repeat(200)
                ));
                sid += 1;
            }
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, format!("rules/f{f:02}.rules"), data.as_bytes())
                .unwrap();
        }
        let tar = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    fn limits() -> Limits {
        Limits {
            max_members: 1000,
            max_member_size: 1 << 30,
            max_total_size: 1 << 31,
        }
    }

    #[test]
    fn members_come_in_payload_order_and_a_caller_can_stop_early() {
        // 24 files of 1 MB: several times the bytes allowed in flight, so the reader waits.
        let files = vec![("emerging.rules.tar.gz".to_string(), archive(24, 1 << 20))];
        let paths: Vec<String> = with_members(&files, &limits(), |m| {
            m.map(|i| match i.unwrap() {
                Item::Rules { path, .. } => path.to_string(),
                Item::IpList { path, .. } => path,
            })
            .collect()
        });
        let want: Vec<String> = (0..24).map(|f| format!("rules/f{f:02}.rules")).collect();
        assert_eq!(paths, want);
        // Stopping after the first file, with the reader waiting for room, returns.
        for _ in 0..20 {
            let first = with_members(&files, &limits(), |m| m.next().map(|i| i.is_ok()));
            assert_eq!(first, Some(true));
        }
    }
}
