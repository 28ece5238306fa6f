//! The stored payload: rule texts read back from each source's verified payload files, checked
//! against the hashes the rows record.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::{text_hash, Store};

impl Store {
    /// Texts of rules whose rows the caller already read (`text` NULL): from the source's stored
    /// payload, each checked against its row's hash.
    pub fn payload_texts(
        &self,
        source: &str,
        want: &[TextRef],
    ) -> anyhow::Result<HashMap<(u32, u32), String>> {
        payload_texts(&self.conn, source, want)
    }

    /// The texts of `wants`: each source's payload is parsed once.
    pub fn read_texts(&self, wants: TextWants) -> anyhow::Result<Texts> {
        let mut texts = HashMap::new();
        for (source, refs) in wants.0 {
            let t = payload_texts(&self.conn, &source, &refs)?;
            texts.insert(source, t);
        }
        Ok(Texts(texts))
    }

    /// Rule texts of one source: a current rule's from the source's stored payload (checked
    /// against its text hash), a removed rule's from its row. Keys the store does not hold are
    /// left out.
    pub fn texts(
        &self,
        source: &str,
        keys: &[(u32, u32)],
    ) -> anyhow::Result<HashMap<(u32, u32), String>> {
        let mut out = HashMap::new();
        if keys.is_empty() {
            return Ok(out);
        }
        let mut st = self.conn.prepare_cached(
            "SELECT text, text_hash, file FROM rules WHERE source = ?1 AND gid = ?2 AND sid = ?3",
        )?;
        let mut want = Vec::new();
        for &(gid, sid) in keys {
            let row = st
                .query_row(params![source, gid, sid], |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, super::TextHash>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .optional()?;
            match row {
                Some((Some(text), _, _)) => {
                    out.insert((gid, sid), text);
                }
                Some((None, hash, file)) => want.push(TextRef {
                    key: (gid, sid),
                    hash,
                    file,
                }),
                None => {}
            }
        }
        out.extend(payload_texts(&self.conn, source, &want)?);
        Ok(out)
    }
}

/// A rule whose text is to be read back from its source's payload: its key, the hash its row
/// records, and its rules file (parsed first).
#[derive(Debug, Clone)]
pub struct TextRef {
    pub key: (u32, u32),
    pub hash: super::TextHash,
    pub file: String,
}

/// Rules whose texts are to be read back, by source ([`Store::read_texts`]).
#[derive(Debug, Default)]
pub struct TextWants(HashMap<String, Vec<TextRef>>);

impl TextWants {
    pub fn push(&mut self, source: &str, r: TextRef) {
        match self.0.get_mut(source) {
            Some(v) => v.push(r),
            None => {
                self.0.insert(source.to_string(), vec![r]);
            }
        }
    }
}

/// Texts read back by [`Store::read_texts`], by source and (gid, sid).
#[derive(Debug, Default)]
pub struct Texts(HashMap<String, HashMap<(u32, u32), String>>);

impl Texts {
    /// The text of one rule (once).
    pub fn take(&mut self, source: &str, key: (u32, u32)) -> Option<String> {
        self.0.get_mut(source)?.remove(&key)
    }
}

/// Read rule texts back from a source's stored payload, parsing only the rules files named in
/// `want` first, and every file if that does not give each text with its recorded hash.
pub(super) fn payload_texts(
    conn: &Connection,
    source: &str,
    want: &[TextRef],
) -> anyhow::Result<HashMap<(u32, u32), String>> {
    payload_texts_but(conn, source, None, want)
}

/// [`payload_texts`] from the files not written by bundle `new` (the payload a bundle being
/// stored replaces, while both are in the store).
pub(super) fn payload_texts_but(
    conn: &Connection,
    source: &str,
    new: Option<&str>,
    want: &[TextRef],
) -> anyhow::Result<HashMap<(u32, u32), String>> {
    if want.is_empty() {
        return Ok(HashMap::new());
    }
    // Each file read straight into a buffer of its size (incremental blob I/O): a SELECT of
    // the column would hold a second whole copy in SQLite while it is handed over.
    let mut st = conn.prepare_cached(
        "SELECT name, rowid FROM payload_files WHERE source = ?1 AND bundle IS NOT ?2 ORDER BY seq",
    )?;
    let rows: Vec<(String, i64)> = st
        .query_map(rusqlite::params![source, new], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut files = Vec::with_capacity(rows.len());
    for (name, row) in rows {
        let blob = conn.blob_open(rusqlite::MAIN_DB, "payload_files", "data", row, true)?;
        let mut data = vec![0u8; blob.len()];
        blob.read_at_exact(&mut data, 0)?;
        files.push((name, data));
    }
    let keys: std::collections::HashSet<(u32, u32)> = want.iter().map(|w| w.key).collect();
    let names: std::collections::HashSet<String> = want.iter().map(|w| w.file.clone()).collect();
    let complete = |got: &HashMap<(u32, u32), String>| {
        want.iter()
            .all(|w| got.get(&w.key).is_some_and(|t| text_hash(t) == w.hash))
    };
    let mut got = crate::payload::rule_texts(&files, &keys, Some(&names))?;
    if !complete(&got) {
        got = crate::payload::rule_texts(&files, &keys, None)?;
    }
    if let Some(w) = want
        .iter()
        .find(|w| got.get(&w.key).is_none_or(|t| text_hash(t) != w.hash))
    {
        anyhow::bail!(
            "the store is damaged: the text of rule {}:{} of source {source} (file {}) cannot be \
             read back from the stored payload with its recorded hash",
            w.key.0,
            w.key.1,
            w.file
        );
    }
    Ok(got)
}
