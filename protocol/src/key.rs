//! The experiment's pre-shared key as its key file holds it: 64 hex digits (32 bytes) on
//! the file's last non-empty line, so that comment lines may come first. Whatever bytes
//! the file holds, [`parse_key`] answers with the key or a [`KeyError`], never a panic.

use thiserror::Error;

/// Why a key file holds no key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// The file is not UTF-8 text.
    #[error("it is not text (64 hex digits expected)")]
    NotText,
    /// Its key line has another length.
    #[error("its key line has {0} characters (64 hex digits expected)")]
    Length(usize),
    /// A character of its key line is not a hex digit.
    #[error("character {position} of its key line is not a hex digit (64 hex digits expected)")]
    NotHex {
        /// Where, from 1.
        position: usize,
    },
}

/// The key in the bytes of a key file.
pub fn parse_key(bytes: &[u8]) -> Result<[u8; 32], KeyError> {
    let text = std::str::from_utf8(bytes).map_err(|_| KeyError::NotText)?;
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("");
    let chars: Vec<char> = line.chars().collect();
    if chars.len() != 64 {
        return Err(KeyError::Length(chars.len()));
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        let digit = |j: usize| {
            chars[j]
                .to_digit(16)
                .ok_or(KeyError::NotHex { position: j + 1 })
        };
        *byte = (digit(2 * i)? * 16 + digit(2 * i + 1)?) as u8;
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_key_is_read_from_the_last_non_empty_line() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let key = parse_key(format!("# a comment\n{hex}\n\n").as_bytes()).unwrap();
        assert_eq!(key[0], 0x00);
        assert_eq!(key[1], 0x11);
        assert_eq!(key[15], 0xff);
        assert_eq!(key[31], 0xff);
    }

    #[test]
    fn what_is_not_a_key_is_named() {
        assert_eq!(parse_key(b""), Err(KeyError::Length(0)));
        assert_eq!(parse_key(b"abc"), Err(KeyError::Length(3)));
        assert_eq!(parse_key(&[0xff; 64]), Err(KeyError::NotText));
        let mut line = "0".repeat(63);
        line.push('g');
        assert_eq!(
            parse_key(line.as_bytes()),
            Err(KeyError::NotHex { position: 64 })
        );
        // 64 bytes, but not 64 characters: a multi-byte character counts once.
        let mut line = "0".repeat(62);
        line.push('é');
        assert_eq!(line.len(), 64);
        assert_eq!(parse_key(line.as_bytes()), Err(KeyError::Length(63)));
        let mut line = "0".repeat(60);
        line.push_str("éé");
        assert_eq!(parse_key(line.as_bytes()), Err(KeyError::Length(62)));
    }

    proptest! {
        #[test]
        fn any_bytes_give_a_key_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_key(&bytes);
        }

        #[test]
        fn any_key_written_in_hex_reads_back(key in proptest::array::uniform32(any::<u8>())) {
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            prop_assert_eq!(parse_key(hex.as_bytes()), Ok(key));
        }
    }
}
