//! Flowbit resolution as suricata-update 1.3 does it (`resolve_flowbits` in `main.py`,
//! `FlowbitResolver` in `rule.py`): a disabled rule that sets, unsets or toggles a flowbit that
//! an enabled rule checks (`isset`, `isnotset`) is enabled with `noalert`, repeated until no rule
//! changes. Flowbit values are compared as written after the first comma, like suricata-update
//! (`set,a|b` is the one name `a|b`).

use std::collections::HashSet;

use super::parse::SuRule;

const SETTERS: [&str; 4] = ["set", "setx", "unset", "toggle"];
const GETTERS: [&str; 2] = ["isset", "isnotset"];

/// `parse_flowbit`: `(option, value)` split at the first comma, neither trimmed.
fn split(fb: &str) -> (&str, Option<&str>) {
    match fb.split_once(',') {
        Some((o, v)) => (o, Some(v)),
        None => (fb, None),
    }
}

/// Enable what enabled rules need; returns how many rules were enabled for flowbits.
pub fn resolve(rules: &mut [SuRule]) -> usize {
    let mut enabled_for_flowbits = HashSet::new();
    loop {
        let required: HashSet<Option<String>> = rules
            .iter()
            .filter(|r| r.enabled)
            .flat_map(|r| r.flowbits.iter().flatten())
            .map(|fb| split(fb))
            .filter(|(o, _)| GETTERS.contains(o))
            .map(|(_, v)| v.map(str::to_string))
            .collect();
        let mut changed = 0;
        for (i, r) in rules.iter_mut().enumerate() {
            if r.enabled {
                continue;
            }
            let sets = r.flowbits.iter().flatten().any(|fb| {
                let (o, v) = split(fb);
                SETTERS.contains(&o) && required.contains(&v.map(str::to_string))
            });
            if sets {
                r.enabled = true;
                r.noalert = true;
                enabled_for_flowbits.insert(i);
                changed += 1;
            }
        }
        if changed == 0 {
            return enabled_for_flowbits.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;

    fn r(text: &str) -> SuRule {
        parse(text, None).unwrap().unwrap()
    }

    #[test]
    fn a_chain_of_setters_is_enabled_with_noalert_until_stable() {
        let mut rules = vec![
            r("alert tcp any any -> any any (msg:\"c\"; flowbits:isset,b; sid:3; rev:1;)"),
            r("# alert tcp any any -> any any (msg:\"b\"; flowbits:isset,a; flowbits:set,b; sid:2; rev:1;)"),
            r("# alert tcp any any -> any any (msg:\"a\"; flowbits:set,a; sid:1; rev:1;)"),
            r("# alert tcp any any -> any any (msg:\"z\"; flowbits:set,z; sid:4; rev:1;)"),
        ];
        assert_eq!(resolve(&mut rules), 2);
        assert!(rules[1].enabled && rules[1].noalert);
        assert!(rules[2].enabled && rules[2].noalert);
        assert!(!rules[3].enabled);
        assert!(!rules[0].noalert);
        assert_eq!(
            rules[2].format(),
            "alert tcp any any -> any any (msg:\"a\"; flowbits:set,a; noalert; sid:1; rev:1;)"
        );
    }
}
