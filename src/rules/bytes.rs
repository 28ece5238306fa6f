//! Byte scans for the short strings of one rule (option segments, quoted values): 8 bytes at a
//! time with exact bit masks, where `memchr`'s set-up costs more than it saves.

/// Bytes allowed in an option name: ASCII letters and digits, `_`, `.`, `-` (a table: names are
/// checked for every option of every rule).
pub(super) static NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-';
        i += 1;
    }
    t
};

const LO: u64 = u64::from_ne_bytes([1; 8]);
const HI7: u64 = u64::from_ne_bytes([0x7f; 8]);

/// The high bit of each byte of `w` that equals `b` (exact: no false positives).
#[inline(always)]
pub(super) fn eq_mask(w: u64, b: u8) -> u64 {
    let x = w ^ (LO * u64::from(b));
    !(((x & HI7).wrapping_add(HI7)) | x | HI7)
}

/// The index of the first byte in `b[from..end]` that `hit` marks (8 bytes at a time, then one
/// by one), or `end`. Option segments are a few dozen bytes: too short for `memchr`'s set-up to
/// pay, long enough for a byte loop to dominate the parse.
#[inline(always)]
pub(super) fn find_word(
    b: &[u8],
    mut i: usize,
    end: usize,
    hit: impl Fn(u64) -> u64,
    one: impl Fn(u8) -> bool,
) -> usize {
    while i + 8 <= end {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i..i + 8]);
        // Little-endian order makes the lowest set bit the first byte.
        let m = hit(u64::from_le_bytes(a));
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < end {
        if one(b[i]) {
            return i;
        }
        i += 1;
    }
    end
}

/// The first `;` or `:` in `b[from..end]`, or `end`.
pub(super) fn find_semi_or_colon(b: &[u8], from: usize, end: usize) -> usize {
    find_word(
        b,
        from,
        end,
        |w| eq_mask(w, b';') | eq_mask(w, b':'),
        |c| c == b';' || c == b':',
    )
}

/// The first `c` in `b[from..end]`, or `end`.
pub(super) fn find_byte(b: &[u8], c: u8, from: usize, end: usize) -> usize {
    find_word(b, from, end, |w| eq_mask(w, c), |x| x == c)
}
