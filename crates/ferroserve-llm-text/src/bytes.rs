//! The GPT-2 byte-to-character table that byte-level BPE vocabularies are written in.

use std::sync::OnceLock;

/// Byte → the character byte-level BPE writes for it.
pub(crate) fn byte_to_char() -> &'static [char; 256] {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = ['\0'; 256];
        let mut n = 0u32;
        for b in 0..256u32 {
            let printable = (0x21..=0x7E).contains(&b)
                || (0xA1..=0xAC).contains(&b)
                || (0xAE..=0xFF).contains(&b);
            let c = if printable {
                b
            } else {
                n += 1;
                255 + n
            };
            table[b as usize] = char::from_u32(c).unwrap_or('\u{FFFD}');
        }
        table
    })
}

fn char_to_byte(c: char) -> Option<u8> {
    static INV: OnceLock<std::collections::HashMap<char, u8>> = OnceLock::new();
    INV.get_or_init(|| {
        byte_to_char()
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect()
    })
    .get(&c)
    .copied()
}

/// A byte-level BPE token string → its bytes. A token holding a character
/// outside the table (an added token's literal text) stands for its own UTF-8,
/// as in HuggingFace's ByteLevel decoder.
pub(crate) fn byte_level_decode(token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len());
    for c in token.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => return token.as_bytes().to_vec(),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_gpt2() {
        let t = byte_to_char();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(byte_level_decode("Ġhello"), b" hello".to_vec());
        let all: String = t.iter().collect();
        assert_eq!(byte_level_decode(&all), (0..=255u8).collect::<Vec<_>>());
        assert_eq!(byte_level_decode("<|im_end|>"), b"<|im_end|>".to_vec());
        assert_eq!(
            byte_level_decode("\u{4e2d}"),
            "\u{4e2d}".as_bytes().to_vec()
        );
    }
}
