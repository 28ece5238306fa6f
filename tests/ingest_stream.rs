//! Rows are written while the payload is still being parsed: a payload that turns out bad after
//! some of its rules files were already diffed and written must leave the store exactly as it
//! was, and a large payload streamed through the bounded reader must store what a small one does.

mod ingest_support;

use ingest_support::*;

/// `n` rules files of `per` rules each, sids from `first`, every rev `rev`.
fn files(first: u32, n: u32, per: u32, rev: u32) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|f| {
            let text: String = (0..per)
                .map(|i| {
                    let sid = first + f * per + i;
                    format!(
                        "alert tcp $HOME_NET any -> $EXTERNAL_NET {} (msg:\"ET TEST stream rule {sid} {}\"; flow:established,to_server; content:\"stream-{sid}\"; classtype:trojan-activity; sid:{sid}; rev:{rev};)\n",
                        1000 + i % 60000,
                        "x".repeat(200)
                    )
                })
                .collect();
            (format!("rules/emerging-stream-{f:02}.rules"), text.into_bytes())
        })
        .collect()
}

#[test]
fn archive_that_breaks_after_rows_were_written_leaves_the_store_as_it_was() {
    let env = Env::new();
    // Day 1: 12 files, 1,000 rules each (about 3 MB of rules: several reads of the stream).
    let day1 = files(3_000_000, 12, 1_000, 1);
    let b1 = env.bundle(
        "et-open",
        1,
        &[("emerging.rules.tar.gz".into(), targz(&day1))],
    );
    assert_eq!(env.ingest(&b1).code, Some(0));
    let before = env.dump();
    assert!(before.len() > 12_000, "{}", before.len());

    // Day 2: every rule modified (rev 2), but the gzip stream is cut short near its end, so the
    // first files are parsed, diffed and written before the archive is found broken.
    let day2 = files(3_000_000, 12, 1_000, 2);
    let mut gz = targz(&day2);
    gz.truncate(gz.len() - gz.len() / 20);
    let b2 = env.bundle("et-open", 2, &[("emerging.rules.tar.gz".into(), gz)]);
    let o = env.ingest(&b2);
    assert_eq!(o.code, Some(4), "{o:?}");
    let reason =
        std::fs::read_to_string(env.path("spool/failed/et-open-00000002.reason.txt")).unwrap();
    assert!(reason.contains("emerging.rules.tar.gz"), "{reason}");
    assert!(
        reason.contains("truncated") || reason.contains("corrupt"),
        "{reason}"
    );
    // Nothing of day 2 is visible: rows, history, indicators, sequence (its only trace is its
    // own journal row, `rejected`), and no payload or report of it.
    let after = env.dump();
    let of_day2: Vec<&String> = after.iter().filter(|l| l.contains("00000002")).collect();
    assert_eq!(of_day2.len(), 1, "{of_day2:?}");
    assert!(of_day2[0].contains("rejected"), "{of_day2:?}");
    let after: Vec<String> = after
        .into_iter()
        .filter(|l| !l.contains("00000002"))
        .collect();
    assert!(after == before, "the store changed after a rejected bundle");
    let c = rusqlite::Connection::open(env.store_path()).unwrap();
    let count = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT COUNT(*) FROM payload_files WHERE bundle != 'et-open-00000001'"),
        0
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM reports WHERE bundle = 'et-open-00000002'"),
        0
    );
    let s = env.source_status("et-open");
    assert_eq!(s["last_sequence"], 1, "{s}");

    // The same change, whole, is then stored in full.
    let b3 = env.bundle(
        "et-open",
        3,
        &[("emerging.rules.tar.gz".into(), targz(&day2))],
    );
    let o = env.ingest(&b3);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.contains("modified 12000"), "{o:?}");
}

#[test]
fn a_payload_streamed_in_many_reads_stores_what_one_file_does() {
    // The same 24,000 rules as 24 files (streamed, several in flight) and as one file.
    let many = files(4_000_000, 24, 1_000, 3);
    let one: Vec<u8> = many.iter().flat_map(|(_, d)| d.clone()).collect();
    let a = Env::new();
    let ba = a.bundle(
        "et-open",
        1,
        &[("emerging.rules.tar.gz".into(), targz(&many))],
    );
    assert_eq!(a.ingest(&ba).code, Some(0));
    let b = Env::new();
    let bb = b.bundle(
        "et-open",
        1,
        &[(
            "emerging.rules.tar.gz".into(),
            targz(&[("rules/emerging-stream-00.rules".to_string(), one)]),
        )],
    );
    assert_eq!(b.ingest(&bb).code, Some(0));
    let rows = |env: &Env| -> Vec<(u32, u32, u32, String, String, bool)> {
        let c = rusqlite::Connection::open(env.store_path()).unwrap();
        let mut st = c
            .prepare("SELECT gid, sid, rev, msg, text_hash, enabled FROM rules ORDER BY gid, sid")
            .unwrap();
        st.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    let (ra, rb) = (rows(&a), rows(&b));
    assert_eq!(ra.len(), 24_000);
    assert!(ra == rb, "streamed rows differ from the one-file rows");
}
