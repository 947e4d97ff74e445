//! Firmware tables that announce the CPUs, the interrupt wiring and the PCI
//! host bridge to the guest: the Intel MP table and the ACPI tables, whose
//! DSDT is AML built by [`aml`].

pub mod acpi;
pub mod aml;
#[cfg(test)]
mod aml_walk;
pub mod dsdt;
pub mod mptable;

/// The byte that makes `bytes` sum to zero (mod 256) when added.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |s, b| s.wrapping_add(*b))
        .wrapping_neg()
}

/// Little-endian append helpers for building tables field by field.
pub(crate) trait PutLe {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
}

impl PutLe for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_balances() {
        let mut v = vec![1u8, 2, 250, 7];
        let c = checksum(&v);
        v.push(c);
        assert_eq!(v.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
        assert_eq!(checksum(&[]), 0);
    }
}
