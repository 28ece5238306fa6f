//! Property tests (issue 16, fuzzing): arbitrary and mutated bytes fed to the archive reader, the
//! manifest and signature loader, and the bare-archive attribution never panic, stay within the
//! limits, and end in a typed error. Case counts are small so each runs in a few seconds.

mod ingest_support;

use chrono::Utc;
use etferry::archive::{read_archive, Limits, Member};
use etferry::bare::{archive_version, attribute, ArchiveSource};
use etferry::bundle::{self, BundleError, Manifest, SourceInfo, VerifyOptions};
use ingest_support::*;
use proptest::prelude::*;

fn limits() -> Limits {
    Limits {
        max_members: 50,
        max_member_size: 1 << 20,
        max_total_size: 4 << 20,
    }
}

fn seed_targz() -> Vec<u8> {
    targz(&[
        (
            "rules/emerging-test.rules".into(),
            small_rules(2_000_000, 20),
        ),
        ("rules/suricata-5.0-enhanced-open.txt".into(), Vec::new()),
        ("rules/classification.config".into(), b"config x\n".to_vec()),
    ])
}

fn seed_zip() -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("rules/a.rules", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut w, &small_rules(2_100_000, 10)).unwrap();
    w.finish().unwrap().into_inner()
}

/// Flip, overwrite, cut or append bytes of `seed` as `ops` say.
fn mutate(seed: &[u8], ops: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for &(op, at, byte) in ops {
        if v.is_empty() {
            v.push(byte);
            continue;
        }
        let i = at % v.len();
        match op % 4 {
            0 => v[i] ^= byte | 1,
            1 => v[i] = byte,
            2 => v.truncate(i),
            _ => v.extend(std::iter::repeat_n(byte, (at % 64) + 1)),
        }
    }
    v
}

fn check_members(members: &[Member]) {
    let l = limits();
    assert!(members.len() <= l.max_members);
    let total: u64 = members.iter().map(|m| m.data.len() as u64).sum();
    assert!(total <= l.max_total_size);
    for m in members {
        assert!(m.data.len() as u64 <= l.max_member_size);
        assert!(!m.path.starts_with('/') && !m.path.split('/').any(|p| p == ".."));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn archive_reader_survives_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..4096),
                                               name in prop::sample::select(vec!["x.tar.gz", "x.zip", "x.rules", "x.tgz"])) {
        match read_archive(name, &data, &limits()) {
            Ok(m) => check_members(&m),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn archive_reader_survives_mutated_archives(ops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..6),
                                                zip in any::<bool>()) {
        let seed = if zip { seed_zip() } else { seed_targz() };
        let data = mutate(&seed, &ops);
        let name = if zip { "m.zip" } else { "m.tar.gz" };
        match read_archive(name, &data, &limits()) {
            Ok(m) => check_members(&m),
            Err(e) => prop_assert!(e.to_string().contains(name)),
        }
    }

    #[test]
    fn bare_attribution_and_version_survive_arbitrary_members(
        files in proptest::collection::vec((prop::sample::select(vec![
            "rules/emerging-x.rules", "rules/suricata-5.0-enhanced-open.txt", "rules/x.txt",
            "emerging.rules", "rules/snort-2.9.0-open.txt", "a/b/c"]),
            proptest::collection::vec(any::<u8>(), 0..512)), 0..6),
        name in "[a-z.*-]{0,16}",
        dated in proptest::collection::vec("(updated|created)_at [0-9_]{10}", 0..3),
    ) {
        let mut members: Vec<Member> = files.into_iter().map(|(p, d)| Member {
            path: p.to_string(), data: d, mtime: Some(1_600_000_000),
        }).collect();
        if let Some(m) = members.first_mut() {
            m.data.extend(dated.join(", ").into_bytes());
        }
        let sources = vec![ArchiveSource {
            pattern: "hand-*".into(), ruleset: "et-open".into(), engine: None, name: Some("hand".into()),
        }];
        match attribute(&name, &members, &sources) {
            Ok(a) => prop_assert!(!a.name.is_empty() && !a.how.is_empty()),
            Err(e) => prop_assert!(!e.is_empty()),
        }
        let _ = archive_version(&members);
    }
}

struct SignedSeed {
    env: Env,
    manifest: Vec<u8>,
    sig: Vec<u8>,
}

fn signed_seed() -> SignedSeed {
    let env = Env::new();
    let m = Manifest::new(
        SourceInfo {
            name: "et-open".into(),
            ruleset: "et-open".into(),
            engine: None,
            url: "https://example.org/x".into(),
        },
        1,
        Utc::now(),
        std::time::Duration::from_secs(86400),
    );
    let dir = bundle::publish(
        &env.path("spool/outbox"),
        m,
        &[("x.rules".into(), small_rules(2_000_000, 3))],
        &env.key,
    )
    .unwrap();
    SignedSeed {
        manifest: std::fs::read(dir.join(bundle::MANIFEST)).unwrap(),
        sig: std::fs::read(dir.join(bundle::SIGNATURE)).unwrap(),
        env,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Mutated manifests and signatures are refused with a typed error naming the bundle; only
    /// the untouched pair verifies.
    #[test]
    fn manifest_and_signature_loader_survives_mutation(
        mops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 0..4),
        sops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 0..4),
    ) {
        let s = signed_seed();
        let pk = etferry::bundle::PublicKey::load(&s.env.path("keys/bundle.pub")).unwrap();
        let dir = s.env.path("spool/outbox/et-open-00000001");
        let m = mutate(&s.manifest, &mops);
        let g = mutate(&s.sig, &sops);
        std::fs::write(dir.join(bundle::MANIFEST), &m).unwrap();
        std::fs::write(dir.join(bundle::SIGNATURE), &g).unwrap();
        let r = bundle::verify_with(&dir, std::slice::from_ref(&pk), &VerifyOptions::at(Utc::now()));
        match r {
            Ok(v) => {
                prop_assert_eq!(&v.manifest_bytes, &s.manifest);
            }
            Err(e) => {
                prop_assert!(e.to_string().contains("et-open-00000001"), "{}", e);
                let incomplete = matches!(e, BundleError::Incomplete { .. });
                prop_assert!(!incomplete, "{}", e);
            }
        }
    }

    #[test]
    fn arbitrary_signature_files_are_refused(sig in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let s = signed_seed();
        let pk = etferry::bundle::PublicKey::load(&s.env.path("keys/bundle.pub")).unwrap();
        let dir = s.env.path("spool/outbox/et-open-00000001");
        std::fs::write(dir.join(bundle::SIGNATURE), &sig).unwrap();
        let r = bundle::verify_with(&dir, std::slice::from_ref(&pk), &VerifyOptions::at(Utc::now()));
        prop_assert!(r.is_err());
    }
}
