//! Model files: sniffs joblib's compressions by their magic bytes,
//! decompresses with a bound on the output size, and hands the bytes to
//! the pickle reader; skops files go to [`crate::skops`].

use std::io::Read;
use std::path::Path;

use crate::value::Value;

/// Compressions joblib writes, by their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed (a pickle stream).
    None,
    /// `compress=('zlib', n)` or `compress=n` (joblib's default).
    Zlib,
    /// `compress='gzip'`.
    Gzip,
    /// `compress='bz2'`.
    Bz2,
    /// `compress='xz'`.
    Xz,
    /// `compress='lzma'` (legacy .lzma container).
    Lzma,
    /// `compress='lz4'` (LZ4 frame).
    Lz4,
}

/// Identifies a compression by the first bytes of a file.
pub fn sniff(head: &[u8]) -> Compression {
    match head {
        [0x78, ..] => Compression::Zlib,
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [b'B', b'Z', b'h', ..] => Compression::Bz2,
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Compression::Xz,
        [0x5d, 0x00, 0x00, ..] => Compression::Lzma,
        [0x04, 0x22, 0x4d, 0x18, ..] => Compression::Lz4,
        _ => Compression::None,
    }
}

/// True when the first bytes look like a pickle: PROTO 2–5, or a protocol
/// 0/1 stream starting with a MARK, EMPTY_DICT/LIST or GLOBAL.
pub fn looks_like_pickle(head: &[u8]) -> bool {
    match head {
        [0x80, p, ..] => (2..=5).contains(p),
        [b'(' | b'}' | b']', ..] => true,
        [b'c', rest @ ..] => rest.iter().take(64).any(|&b| b == b'\n'),
        _ => false,
    }
}

/// True when the first bytes are a pickle, possibly compressed by joblib.
pub fn looks_like_joblib(head: &[u8]) -> bool {
    sniff(head) != Compression::None || looks_like_pickle(head)
}

/// Largest decompressed size for a compressed file of `len` bytes: every
/// supported compressor's ratio on real models stays far below this, while
/// a few-KB malicious file cannot expand into gigabytes.
pub fn decompressed_limit(len: usize) -> u64 {
    (len as u64)
        .saturating_mul(2000)
        .saturating_add(64 << 20)
        .min(32 << 30)
}

fn read_bounded(mut r: impl Read, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    r.by_ref()
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("corrupt {what} data: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!(
            "{what} data expands beyond {limit} bytes; refusing (decompression bomb?)"
        ));
    }
    Ok(out)
}

/// Decompresses a joblib file's bytes (no-op when not compressed).
pub fn decompress(data: Vec<u8>) -> Result<Vec<u8>, String> {
    let limit = decompressed_limit(data.len());
    let kind = sniff(&data);
    let src = data.as_slice();
    match kind {
        Compression::None => Ok(data),
        Compression::Zlib => read_bounded(flate2::read::ZlibDecoder::new(src), limit, "zlib"),
        Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(src), limit, "gzip"),
        Compression::Bz2 => read_bounded(bzip2::read::MultiBzDecoder::new(src), limit, "bz2"),
        Compression::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(src), limit, "lz4"),
        Compression::Xz | Compression::Lzma => {
            let mut out = Bounded {
                buf: Vec::new(),
                limit,
            };
            let mut input = src;
            let r = if kind == Compression::Xz {
                lzma_rs::xz_decompress(&mut input, &mut out)
            } else {
                lzma_rs::lzma_decompress(&mut input, &mut out)
            };
            r.map_err(|e| format!("corrupt {kind:?} data: {e}"))?;
            Ok(out.buf)
        }
    }
}

/// A writer that refuses to grow past `limit` bytes.
struct Bounded {
    buf: Vec<u8>,
    limit: u64,
}

impl std::io::Write for Bounded {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() as u64 + b.len() as u64 > self.limit {
            return Err(std::io::Error::other(format!(
                "data expands beyond {} bytes; refusing (decompression bomb?)",
                self.limit
            )));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads a joblib or pickle file into a value tree.
pub fn read_pickle_file(path: &Path) -> Result<Value, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if data.starts_with(b"ZF") {
        return Err("joblib < 0.10 compressed format ('ZF' header) is not supported; re-save the model with a current joblib".into());
    }
    let data = decompress(data)?;
    if !looks_like_pickle(&data) {
        return Err("not a pickle stream (expected a pickle or a joblib file)".into());
    }
    crate::pickle::load(&data, true)
}
