//! Random identifiers: 128 bits from the operating system, as 32 lowercase
//! hex digits. Kill-switch entries and the broker's decisions are named by
//! them, so two must never share one: without randomness there is no id,
//! and the caller refuses what it was asked to do.

use ring::rand::{SecureRandom, SystemRandom};

/// The operating system gave no randomness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system has no randomness for an identifier")]
pub struct RandomnessError;

/// A fresh identifier: 128 random bits, 32 lowercase hex digits.
pub fn random_id() -> Result<String, RandomnessError> {
    id_from(|bytes| SystemRandom::new().fill(bytes).map_err(|_| RandomnessError))
}

/// The identifier `fill` draws; apart from [`random_id`] so the refusal
/// can be tested (ring's generator cannot be made to fail).
fn id_from(
    fill: impl FnOnce(&mut [u8]) -> Result<(), RandomnessError>,
) -> Result<String, RandomnessError> {
    let mut bytes = [0u8; 16];
    fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_32_lowercase_hex_digits_and_fresh_each_time() {
        let (a, b) = (random_id().unwrap(), random_id().unwrap());
        for id in [&a, &b] {
            assert_eq!(id.len(), 32, "{id}");
            assert!(
                id.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
                "{id}"
            );
        }
        assert_ne!(a, b);
    }

    #[test]
    fn no_randomness_is_no_id() {
        assert_eq!(id_from(|_| Err(RandomnessError)), Err(RandomnessError));
        assert_eq!(
            id_from(|b| {
                b.fill(0xa5);
                Ok(())
            })
            .unwrap(),
            "a5".repeat(16)
        );
    }
}
