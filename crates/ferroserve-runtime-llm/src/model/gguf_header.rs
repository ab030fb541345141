//! A cheap validation pass over a GGUF header before candle reads it.
//!
//! candle's reader checks most lengths against the file size, but it divides
//! by `general.alignment` (a zero panics), multiplies tensor dimensions
//! without overflow checks (a wrapped element count yields a tensor whose
//! shape does not match its data), and only finds a tensor that runs past
//! the end of the file when that tensor is read. This pass walks the header
//! once, without allocating more than a key's length, and refuses such
//! files with [`ModelError::BadGguf`]: every count, string and array length
//! must fit in the bytes left, nesting is bounded, every tensor's dimensions,
//! type and data range must be consistent and inside the file.

use std::io::{BufReader, Read, Seek, SeekFrom};

use super::error::ModelError;

/// Deepest nesting of arrays in a metadata value.
const MAX_DEPTH: usize = 8;
/// Most dimensions of a tensor (ggml's `GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;

/// (elements per block, bytes per block) of a ggml type code candle reads.
fn ggml_block(code: u32) -> Option<(u64, u64)> {
    Some(match code {
        0 => (1, 4),     // F32
        1 => (1, 2),     // F16
        2 => (32, 18),   // Q4_0
        3 => (32, 20),   // Q4_1
        6 => (32, 22),   // Q5_0
        7 => (32, 24),   // Q5_1
        8 => (32, 34),   // Q8_0
        9 => (32, 36),   // Q8_1
        10 => (256, 84), // Q2_K
        11 => (256, 110),
        12 => (256, 144),
        13 => (256, 176),
        14 => (256, 210),
        15 => (256, 292),
        30 => (1, 2), // BF16
        _ => return None,
    })
}

struct Walker<R> {
    r: BufReader<R>,
    pos: u64,
    len: u64,
    /// Version 1 writes lengths and dimensions as u32.
    v1: bool,
}

fn bad(msg: impl Into<String>) -> ModelError {
    ModelError::BadGguf(msg.into())
}

impl<R: Read + Seek> Walker<R> {
    fn left(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], ModelError> {
        let mut b = [0u8; N];
        self.r
            .read_exact(&mut b)
            .map_err(|_| bad(format!("truncated header at byte {}", self.pos)))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, ModelError> {
        Ok(u32::from_le_bytes(self.bytes::<4>()?))
    }

    fn u64(&mut self) -> Result<u64, ModelError> {
        Ok(u64::from_le_bytes(self.bytes::<8>()?))
    }

    fn length(&mut self) -> Result<u64, ModelError> {
        if self.v1 {
            self.u32().map(u64::from)
        } else {
            self.u64()
        }
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), ModelError> {
        if n > self.left() {
            return Err(bad(format!(
                "{what} of {n} bytes at byte {} runs past the end of the file ({} bytes)",
                self.pos, self.len
            )));
        }
        let step = i64::try_from(n).map_err(|_| bad(format!("{what} too long")))?;
        self.r
            .seek_relative(step)
            .map_err(|e| bad(format!("cannot skip {what}: {e}")))?;
        self.pos += n;
        Ok(())
    }

    /// Skips a string; returns it when it is `general.alignment`'s key length
    /// (the only key this pass needs to read).
    fn string(&mut self, what: &str) -> Result<Option<Vec<u8>>, ModelError> {
        let n = self.length()?;
        if n > self.left() {
            return Err(bad(format!(
                "{what} of {n} bytes at byte {} runs past the end of the file ({} bytes)",
                self.pos, self.len
            )));
        }
        if n == KEY_ALIGNMENT.len() as u64 {
            let mut b = vec![0u8; KEY_ALIGNMENT.len()];
            self.r
                .read_exact(&mut b)
                .map_err(|_| bad(format!("truncated header at byte {}", self.pos)))?;
            self.pos += n;
            return Ok(Some(b));
        }
        self.skip(n, what)?;
        Ok(None)
    }

    /// Fixed size of a value type, or None for strings and arrays.
    fn fixed_size(ty: u32) -> Result<Option<u64>, ModelError> {
        Ok(match ty {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            8 | 9 => None,
            other => return Err(bad(format!("unknown metadata value type {other}"))),
        })
    }

    /// Skips a value; returns it as an integer when it is a scalar integer.
    fn value(&mut self, ty: u32, depth: usize) -> Result<Option<u64>, ModelError> {
        if depth > MAX_DEPTH {
            return Err(bad(format!(
                "metadata arrays nested deeper than {MAX_DEPTH}"
            )));
        }
        match (ty, Self::fixed_size(ty)?) {
            (0 | 1 | 7, _) => Ok(Some(u64::from(self.bytes::<1>()?[0]))),
            (2 | 3, _) => Ok(Some(u64::from(u16::from_le_bytes(self.bytes::<2>()?)))),
            (4 | 5, _) => Ok(Some(u64::from(self.u32()?))),
            (10 | 11, _) => Ok(Some(self.u64()?)),
            (_, Some(n)) => self.skip(n, "metadata value").map(|()| None),
            (8, None) => self.string("metadata string").map(|_| None),
            _ => {
                let elem = self.u32()?;
                let count = self.length()?;
                match Self::fixed_size(elem)? {
                    Some(size) => {
                        let bytes = count
                            .checked_mul(size)
                            .ok_or_else(|| bad(format!("array of {count} elements")))?;
                        self.skip(bytes, "metadata array")?;
                    }
                    None => {
                        // Each string or array element takes at least its
                        // length prefix.
                        let min = if self.v1 { 4 } else { 8 };
                        if count > self.left() / min {
                            return Err(bad(format!(
                                "array of {count} elements at byte {} cannot fit in the {} bytes left",
                                self.pos,
                                self.left()
                            )));
                        }
                        for _ in 0..count {
                            self.value(elem, depth + 1)?;
                        }
                    }
                }
                Ok(None)
            }
        }
    }
}

const KEY_ALIGNMENT: &[u8] = b"general.alignment";

/// Checks the GGUF header read from `r` (a file of `len` bytes) and leaves
/// `r` at its start again.
pub(crate) fn check<R: Read + Seek>(r: &mut R, len: u64) -> Result<(), ModelError> {
    r.seek(SeekFrom::Start(0))
        .map_err(|e| bad(format!("cannot read: {e}")))?;
    let mut w = Walker {
        r: BufReader::new(&mut *r),
        pos: 0,
        len,
        v1: false,
    };
    let magic = w.bytes::<4>()?;
    if &magic != b"GGUF" && &magic != b"FUGG" {
        return Err(bad("no GGUF magic"));
    }
    w.v1 = match w.u32()? {
        1 => true,
        2 | 3 => false,
        v => return Err(bad(format!("unsupported GGUF version {v}"))),
    };
    let tensors = w.length()?;
    let kvs = w.length()?;
    // A key-value pair takes at least 13 bytes, a tensor info 24.
    if kvs
        .saturating_mul(13)
        .saturating_add(tensors.saturating_mul(24))
        > w.left()
    {
        return Err(bad(format!(
            "header declares {tensors} tensors and {kvs} metadata entries, more than its {} bytes hold",
            len
        )));
    }
    let mut alignment = 32u64;
    for _ in 0..kvs {
        let key = w.string("metadata key")?;
        let ty = w.u32()?;
        let v = w.value(ty, 0)?;
        if key.as_deref() == Some(KEY_ALIGNMENT) {
            // candle reads the alignment from the integer types only.
            if let (Some(a), 0..=5) = (v, ty) {
                if a == 0 || !a.is_power_of_two() {
                    return Err(bad(format!("general.alignment {a} is not a power of two")));
                }
                alignment = a;
            }
        }
    }
    let mut extents = Vec::new();
    for _ in 0..tensors {
        w.string("tensor name")?;
        let n_dims = w.u32()?;
        if n_dims > MAX_DIMS {
            return Err(bad(format!(
                "a tensor has {n_dims} dimensions (most: {MAX_DIMS})"
            )));
        }
        let mut elems = 1u64;
        for _ in 0..n_dims {
            let d = w.length()?;
            elems = elems
                .checked_mul(d)
                .ok_or_else(|| bad("a tensor's element count overflows"))?;
        }
        let code = w.u32()?;
        let (block, size) =
            ggml_block(code).ok_or_else(|| bad(format!("unknown tensor type {code}")))?;
        if !elems.is_multiple_of(block) {
            return Err(bad(format!(
                "a tensor of {elems} elements is not a whole number of {block}-element blocks"
            )));
        }
        let bytes = (elems / block)
            .checked_mul(size)
            .ok_or_else(|| bad("a tensor's size overflows"))?;
        let offset = w.u64()?;
        extents.push((offset, bytes));
    }
    let data_start = w
        .pos
        .div_ceil(alignment)
        .checked_mul(alignment)
        .ok_or_else(|| bad("tensor data offset overflows"))?;
    for (offset, bytes) in extents {
        let end = data_start
            .checked_add(offset)
            .and_then(|s| s.checked_add(bytes));
        if end.is_none_or(|e| e > len) {
            return Err(bad(format!(
                "a tensor of {bytes} bytes at data offset {offset} runs past the end of the file ({len} bytes)"
            )));
        }
    }
    drop(w);
    r.seek(SeekFrom::Start(0))
        .map_err(|e| bad(format!("cannot read: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn header(version: u32, tensors: u64, kvs: u64) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&tensors.to_le_bytes());
        b.extend_from_slice(&kvs.to_le_bytes());
        b
    }

    fn kv_u32(b: &mut Vec<u8>, key: &str, v: u32) {
        b.extend_from_slice(&(key.len() as u64).to_le_bytes());
        b.extend_from_slice(key.as_bytes());
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&v.to_le_bytes());
    }

    fn tensor(b: &mut Vec<u8>, name: &str, dims: &[u64], ty: u32, offset: u64) {
        b.extend_from_slice(&(name.len() as u64).to_le_bytes());
        b.extend_from_slice(name.as_bytes());
        b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            b.extend_from_slice(&d.to_le_bytes());
        }
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&offset.to_le_bytes());
    }

    fn run(b: &[u8]) -> Result<(), ModelError> {
        check(&mut Cursor::new(b), b.len() as u64)
    }

    #[test]
    fn a_small_valid_file_passes() {
        let mut b = header(3, 1, 1);
        kv_u32(&mut b, "general.alignment", 32);
        tensor(&mut b, "t", &[4, 2], 0, 0);
        let pad = b.len().div_ceil(32) * 32 - b.len();
        b.extend(std::iter::repeat_n(0u8, pad + 32));
        run(&b).expect("valid");
    }

    #[test]
    fn zero_alignment_is_refused() {
        let mut b = header(3, 0, 1);
        kv_u32(&mut b, "general.alignment", 0);
        assert!(matches!(run(&b), Err(ModelError::BadGguf(_))));
    }

    #[test]
    fn huge_counts_and_lengths_are_refused() {
        assert!(run(&header(3, u64::MAX, 0)).is_err());
        assert!(run(&header(3, 0, 1 << 40)).is_err());
        let mut b = header(3, 0, 1);
        b.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(run(&b).is_err());
        // An array of 2^40 strings.
        let mut b = header(3, 0, 1);
        b.extend_from_slice(&1u64.to_le_bytes());
        b.push(b'k');
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(run(&b).is_err());
    }

    #[test]
    fn overflowing_or_out_of_file_tensors_are_refused() {
        let mut b = header(3, 1, 0);
        tensor(&mut b, "t", &[1 << 32, 1 << 32, 16], 0, 0);
        assert!(run(&b).is_err());
        let mut b = header(3, 1, 0);
        tensor(&mut b, "t", &[1024, 1024], 0, 0);
        b.extend(std::iter::repeat_n(0u8, 64));
        assert!(run(&b).is_err());
        let mut b = header(3, 1, 0);
        tensor(&mut b, "t", &[4], 0, u64::MAX - 8);
        b.extend(std::iter::repeat_n(0u8, 64));
        assert!(run(&b).is_err());
    }
}
