//! sha256 of downloaded adapter files against the catalog's hash (Civitai publishes upper-case
//! hex; comparison is case-insensitive).

use sha2::{Digest, Sha256};

use crate::Error;

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks `bytes` against an expected sha256 (64 hex digits, any case).
pub fn verify_sha256(bytes: &[u8], expected_hex: &str) -> Result<(), Error> {
    let expected = expected_hex.trim();
    if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::BadHash(expected_hex.to_string()));
    }
    let actual = sha256_hex(bytes);
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(Error::HashMismatch { expected: expected.to_ascii_lowercase(), actual })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn known_vector_any_case() {
        assert_eq!(sha256_hex(b"abc"), ABC);
        verify_sha256(b"abc", ABC).unwrap();
        verify_sha256(b"abc", &ABC.to_uppercase()).unwrap();
        assert!(matches!(verify_sha256(b"abd", ABC), Err(Error::HashMismatch { .. })));
        assert!(matches!(verify_sha256(b"abc", "ba7816bf"), Err(Error::BadHash(_))));
        assert!(matches!(verify_sha256(b"abc", &"g".repeat(64)), Err(Error::BadHash(_))));
    }
}
