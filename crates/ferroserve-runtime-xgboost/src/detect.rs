//! Finding an XGBoost model file in a folder and telling its encoding from
//! its first bytes (never from the extension alone: XGBoost ≥ 2.1 writes
//! UBJSON into `model.bst`, and LightGBM uses `model.bst` for its text
//! models too).

use std::fs;
use std::io::Read;
use std::path::Path;

/// File names looked for first, in this order (KServe's xgbserver names).
pub const MODEL_FILE_NAMES: [&str; 3] = ["model.json", "model.ubj", "model.bst"];

/// Extensions of the files a folder may hold a single one of.
const EXTENSIONS: [&str; 3] = ["json", "ubj", "bst"];

/// How a file encodes an XGBoost model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON text (`{"learner": …}`).
    Json,
    /// UBJSON, XGBoost's binary JSON (`{L…learner…`).
    Ubjson,
    /// The binary format of XGBoost < 1.0 (deprecated, removed in 3.x):
    /// recognised only to explain how to convert it.
    LegacyBinary,
}

/// How many leading bytes [`sniff`] needs.
pub const SNIFF_BYTES: usize = 4096;

/// Tells whether `head` (the first bytes of a file) is an XGBoost model, and
/// in which encoding. `None` for anything else, LightGBM text included.
pub fn sniff(head: &[u8]) -> Option<Encoding> {
    if head.starts_with(b"binf") {
        return Some(Encoding::LegacyBinary);
    }
    let start = head.iter().position(|b| !b" \t\r\n".contains(b))?;
    let body = &head[start..];
    if body.first() == Some(&b'{') {
        let after = body[1..].iter().position(|b| !b" \t\r\n".contains(b));
        let next = after.and_then(|i| body.get(1 + i)).copied();
        return match next {
            Some(b'"') if contains(body, b"\"learner\"") => Some(Encoding::Json),
            // A UBJSON object key: its length's integer marker, then the name.
            Some(b'i' | b'U' | b'I' | b'l' | b'L' | b'$' | b'#') if contains(body, b"learner") => {
                Some(Encoding::Ubjson)
            }
            _ => None,
        };
    }
    if looks_legacy_binary(head) {
        return Some(Encoding::LegacyBinary);
    }
    None
}

/// The pre-1.0 binary layout: a 136-byte parameter block (base_score,
/// num_feature, …) followed by the objective and booster names as
/// length-prefixed strings.
fn looks_legacy_binary(head: &[u8]) -> bool {
    let Some(len) = head.get(136..144) else {
        return false;
    };
    let mut n = [0u8; 8];
    n.copy_from_slice(len);
    let n = u64::from_le_bytes(n) as usize;
    let Some(name) = head.get(144..144usize.saturating_add(n.min(64))) else {
        return false;
    };
    let name = String::from_utf8_lossy(name);
    (1..=64).contains(&n)
        && ["reg:", "binary:", "multi:", "rank:", "count:", "survival:"]
            .iter()
            .any(|p| name.starts_with(p))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Reads the first [`SNIFF_BYTES`] of a file.
pub fn read_head(path: &Path) -> Option<Vec<u8>> {
    let mut f = fs::File::open(path).ok()?;
    let mut buf = vec![0u8; SNIFF_BYTES];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    buf.truncate(n);
    Some(buf)
}

fn is_xgboost_file(path: &Path) -> bool {
    path.is_file() && read_head(path).as_deref().and_then(sniff).is_some()
}

/// The XGBoost model file in `dir`: the first of [`MODEL_FILE_NAMES`] whose
/// content is an XGBoost model, else the folder's only `*.json`, `*.ubj` or
/// `*.bst` file holding one. Never recurses.
pub fn find_model_file(dir: &Path) -> Option<String> {
    for name in MODEL_FILE_NAMES {
        if is_xgboost_file(&dir.join(name)) {
            return Some(name.to_string());
        }
    }
    let mut found = fs::read_dir(dir).ok()?.filter_map(|e| {
        let e = e.ok()?;
        let name = e.file_name().into_string().ok()?;
        let ext = Path::new(&name).extension()?.to_str()?.to_ascii_lowercase();
        (EXTENSIONS.contains(&ext.as_str()) && is_xgboost_file(&e.path())).then_some(name)
    });
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_encodings() {
        assert_eq!(
            sniff(b"{\"learner\":{\"attributes\":{}}}"),
            Some(Encoding::Json)
        );
        assert_eq!(sniff(b"  {\n  \"learner\": {}}"), Some(Encoding::Json));
        assert_eq!(
            sniff(b"{L\0\0\0\0\0\0\0\x07learner{"),
            Some(Encoding::Ubjson)
        );
        assert_eq!(sniff(b"binf\0\0\0?"), Some(Encoding::LegacyBinary));
        // LightGBM text, other JSON, nothing.
        assert_eq!(sniff(b"tree\nversion=v4\nnum_class=1\n"), None);
        assert_eq!(sniff(b"{\"name\": \"x\"}"), None);
        assert_eq!(sniff(b""), None);
        let mut legacy = vec![0u8; 136];
        legacy.extend_from_slice(&15u64.to_le_bytes());
        legacy.extend_from_slice(b"binary:logistic");
        assert_eq!(sniff(&legacy), Some(Encoding::LegacyBinary));
    }
}
