//! What a careful reader of the human output notices: `report` without arguments shows every
//! bundle of the last run, `rules --status` is case-insensitive and an empty result says so,
//! times are shown to the second and counts in the right number.

mod ingest_support;

use ingest_support::*;

fn rules(rel: &str) -> Vec<(String, Vec<u8>)> {
    let name = rel.rsplit('/').next().unwrap().to_string();
    vec![(name, read(rel))]
}

const DNS: &str = "et-open-suricata-5.0-2024-04-21/rules/emerging-dns.rules";
const RPC: &str = "et-open-suricata-5.0-2024-04-21/rules/emerging-rpc.rules";

#[test]
fn report_without_arguments_shows_every_bundle_of_the_last_run() {
    let env = Env::new();
    let first = env.bundle("et-open", 1, &rules(DNS));
    assert_eq!(env.ingest(&first).code, Some(0));
    // The next run takes two sources at once.
    for (src, seq, f) in [("et-open", 2, RPC), ("et-pro", 1, DNS)] {
        let b = env.bundle(src, seq, &rules(f));
        copy_dir(&b, &env.inbox().join(format!("{src}-{seq:08}")));
    }
    let o = env.run(&["ingest"]);
    assert_eq!(o.code, Some(0), "{o:?}");

    let o = env.run(&["report", "--limit", "1"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.contains("et-open-00000002"), "{o:?}");
    assert!(o.stdout.contains("et-pro-00000001"), "{o:?}");
    assert!(
        !o.stdout.contains("et-open-00000001"),
        "an earlier run: {o:?}"
    );
    // --last is the same thing; --json gives one object per bundle.
    let last = env.run(&["report", "--last", "--limit", "1"]);
    assert_eq!(last.stdout, o.stdout);
    let j: serde_json::Value =
        serde_json::from_str(&env.run(&["report", "--json"]).stdout).unwrap();
    assert_eq!(j.as_array().map(|a| a.len()), Some(2), "{j}");
    // One bundle by id, as before.
    let one = env.run(&["report", "et-open-00000001", "--json"]);
    let j: serde_json::Value = serde_json::from_str(&one.stdout).unwrap();
    assert_eq!(j["bundle"], "et-open-00000001");
}

#[test]
fn rules_status_is_case_insensitive_and_an_empty_result_says_so() {
    let env = Env::with_config("include_non_standard: true\n");
    let b = env.bundle("et-open", 1, &rules(DNS));
    assert_eq!(env.ingest(&b).code, Some(0));
    let upper = env.run(&["rules", "--status", "Inactive"]);
    let lower = env.run(&["rules", "--status", "inactive"]);
    assert_eq!(lower.code, Some(0), "{lower:?}");
    assert!(
        !upper.stdout.is_empty(),
        "the DNS file has disabled rules: {upper:?}"
    );
    assert_eq!(upper.stdout, lower.stdout);
    assert_eq!(env.run(&["rules", "--status", "sometimes"]).code, Some(2));

    let none = env.run(&["rules", "--grep", "no-such-text-anywhere-xyz"]);
    assert_eq!(none.code, Some(0), "{none:?}");
    assert!(none.stdout.is_empty());
    assert!(
        none.stderr
            .contains("no rule matches --grep \"no-such-text-anywhere-xyz\""),
        "{none:?}"
    );
}

#[test]
fn verify_and_status_show_times_to_the_second_and_one_file_as_one_file() {
    let env = Env::new();
    let b = env.bundle("et-open", 1, &rules(DNS));
    let o = env.run(&[
        "verify",
        "--key",
        env.path("keys/bundle.pub").to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.contains(", 1 file, "), "{o:?}");
    assert!(!o.stdout.contains("1 files"), "{o:?}");
    // `expires 2026-12-15 10:32:22 UTC`: no fraction of a second.
    let expires = o.stdout.split("expires ").nth(1).unwrap().trim();
    assert_eq!(expires.len(), "2026-12-15 10:32:22 UTC".len(), "{expires}");
    assert!(
        expires.ends_with(" UTC") && !expires.contains('.'),
        "{expires}"
    );

    assert_eq!(env.ingest(&b).code, Some(0));
    let s = env.run(&["status"]);
    let at = s.stdout.split(") at ").nth(1).unwrap();
    let at: String = at.chars().take("2026-12-15 10:32:22 UTC".len()).collect();
    assert!(at.ends_with(" UTC") && !at.contains('.'), "{}", s.stdout);
}
