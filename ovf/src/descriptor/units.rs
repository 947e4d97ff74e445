//! Allocation units: DSP0004 programmatic units with base `byte`
//! (`byte * 2^20`, `byte*2^30`, `byte * 1024`, `byte * 10^6`) and the
//! names producers write instead (`MegaBytes`, `MB`, `GigaBytes`, `KiloBytes`,
//! `MiB` ...).
//!
//! The short and spelled-out names (`KB`, `MB`, `MegaBytes` ...) are taken as
//! binary multiples: every producer that writes them means 2^10, 2^20, 2^30.
//! Decimal multiples are only what the programmatic form says (`byte * 10^6`).

use thiserror::Error;

/// Why an allocation-units string was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnitsError {
    /// The string is empty.
    #[error("allocation units are empty")]
    Empty,
    /// The base unit is not byte.
    #[error("base unit {0:?} is not byte")]
    NotBytes(String),
    /// A modifier is not `N` or `N^M`.
    #[error("unit modifier {0:?} is not a positive integer or power")]
    BadModifier(String),
    /// The multiplier overflows 128 bits.
    #[error("unit multiplier is too large")]
    Overflow,
}

/// The number of bytes one unit of `units` stands for.
///
/// `None`-like absence of units is the caller's business (capacity defaults to
/// bytes; memory to MiB in practice, see the VM mapping).
pub fn byte_multiplier(units: &str) -> Result<u128, UnitsError> {
    let compact: String = units.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err(UnitsError::Empty);
    }
    if let Some(m) = named_unit(&compact.to_ascii_lowercase()) {
        return Ok(m);
    }
    let mut terms = compact.split('*');
    let base = terms.next().unwrap_or_default();
    let mut multiplier: u128 = match base.to_ascii_lowercase().as_str() {
        "byte" | "bytes" | "b" => 1,
        other => match named_unit(other) {
            Some(m) => m,
            None => return Err(UnitsError::NotBytes(base.to_owned())),
        },
    };
    for term in terms {
        let factor = modifier(term)?;
        multiplier = multiplier.checked_mul(factor).ok_or(UnitsError::Overflow)?;
    }
    Ok(multiplier)
}

fn named_unit(lower: &str) -> Option<u128> {
    let shift = match lower {
        "byte" | "bytes" | "b" => 0,
        "kb" | "kib" | "kbyte" | "kbytes" | "kilobyte" | "kilobytes" => 10,
        "mb" | "mib" | "mbyte" | "mbytes" | "megabyte" | "megabytes" => 20,
        "gb" | "gib" | "gbyte" | "gbytes" | "gigabyte" | "gigabytes" => 30,
        "tb" | "tib" | "tbyte" | "tbytes" | "terabyte" | "terabytes" => 40,
        "pb" | "pib" | "petabyte" | "petabytes" => 50,
        _ => return None,
    };
    Some(1u128 << shift)
}

fn modifier(term: &str) -> Result<u128, UnitsError> {
    let bad = || UnitsError::BadModifier(term.to_owned());
    let digits = |s: &str| !s.is_empty() && s.len() <= 39 && s.bytes().all(|b| b.is_ascii_digit());
    match term.split_once('^') {
        Some((base, exp)) => {
            if !digits(base) || !digits(exp) {
                return Err(bad());
            }
            let base: u128 = base.parse().map_err(|_| bad())?;
            let exp: u32 = exp.parse().map_err(|_| UnitsError::Overflow)?;
            if base == 0 {
                return Err(bad());
            }
            base.checked_pow(exp).ok_or(UnitsError::Overflow)
        }
        None => {
            if !digits(term) {
                return Err(bad());
            }
            match term.parse::<u128>() {
                Ok(0) | Err(_) => Err(bad()),
                Ok(v) => Ok(v),
            }
        }
    }
}

/// Multiplies `value` by the unit multiplier, in 128 bits.
pub fn scale(value: u64, multiplier: u128) -> Option<u128> {
    u128::from(value).checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programmatic_units() {
        assert_eq!(byte_multiplier("byte * 2^20"), Ok(1 << 20));
        assert_eq!(byte_multiplier("byte*2^30"), Ok(1 << 30));
        assert_eq!(byte_multiplier("byte * 1024"), Ok(1024));
        assert_eq!(byte_multiplier("byte * 10^6"), Ok(1_000_000));
        assert_eq!(byte_multiplier("bytes * 2^10 * 2^10"), Ok(1 << 20));
        assert_eq!(byte_multiplier("byte"), Ok(1));
        assert_eq!(byte_multiplier("byte * 2^70"), Ok(1 << 70));
    }

    #[test]
    fn named_units() {
        for (s, m) in [
            ("MegaBytes", 1u128 << 20),
            ("MB", 1 << 20),
            ("GigaBytes", 1 << 30),
            ("KiloBytes", 1 << 10),
            ("GB", 1 << 30),
            ("MiB", 1 << 20),
            ("megabytes", 1 << 20),
        ] {
            assert_eq!(byte_multiplier(s), Ok(m), "{s}");
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(byte_multiplier(""), Err(UnitsError::Empty));
        assert!(matches!(
            byte_multiplier("hertz * 10^6"),
            Err(UnitsError::NotBytes(_))
        ));
        assert_eq!(byte_multiplier("byte * 2^200"), Err(UnitsError::Overflow));
        assert_eq!(
            byte_multiplier("byte * 2^99999999999"),
            Err(UnitsError::Overflow)
        );
        assert!(matches!(
            byte_multiplier("byte * 2^-3"),
            Err(UnitsError::BadModifier(_))
        ));
        assert!(matches!(
            byte_multiplier("byte * 0"),
            Err(UnitsError::BadModifier(_))
        ));
    }
}
