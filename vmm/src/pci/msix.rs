//! MSI-X (PCI Local Bus 3.0, 6.8.2): the vector table and pending bit
//! array a device exposes in a BAR, and the message control bits of its
//! capability. Pure state: the transport turns entries into KVM routes.

/// MSI-X capability ID.
pub const CAP_ID: u8 = 0x11;
/// Bytes per table entry.
pub const ENTRY_SIZE: u64 = 16;
/// Message control: MSI-X enable.
pub const CONTROL_ENABLE: u16 = 1 << 15;
/// Message control: function mask.
pub const CONTROL_FUNCTION_MASK: u16 = 1 << 14;
/// Vector control: the entry is masked.
const VECTOR_MASKED: u32 = 1;

/// One table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixEntry {
    /// Message address, low dword.
    pub addr_lo: u32,
    /// Message address, high dword.
    pub addr_hi: u32,
    /// Message data.
    pub data: u32,
    /// Vector control (bit 0: masked).
    pub control: u32,
}

impl Default for MsixEntry {
    fn default() -> Self {
        // Entries start masked (6.8.2.9).
        MsixEntry {
            addr_lo: 0,
            addr_hi: 0,
            data: 0,
            control: VECTOR_MASKED,
        }
    }
}

impl MsixEntry {
    /// Whether the entry's own mask bit is set.
    pub fn masked(&self) -> bool {
        self.control & VECTOR_MASKED != 0
    }
}

/// What a table or control write changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MsixChange {
    /// The routes must be rebuilt (an address or data word changed).
    pub reroute: bool,
    /// Vectors that were pending and are now deliverable: send them.
    pub fire: Vec<u16>,
}

/// The table, PBA and control state of one function.
#[derive(Debug, Clone)]
pub struct MsixTable {
    entries: Vec<MsixEntry>,
    pending: Vec<u64>,
    control: u16,
}

impl MsixTable {
    /// A table of `vectors` entries (1..=2048).
    pub fn new(vectors: u16) -> Self {
        let n = usize::from(vectors.clamp(1, 2048));
        MsixTable {
            entries: vec![MsixEntry::default(); n],
            pending: vec![0; n.div_ceil(64)],
            control: 0,
        }
    }

    /// Number of vectors.
    pub fn len(&self) -> u16 {
        u16::try_from(self.entries.len()).unwrap_or(u16::MAX)
    }

    /// Never true: a table has at least one vector.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Table size in bytes.
    pub fn table_bytes(&self) -> u64 {
        self.entries.len() as u64 * ENTRY_SIZE
    }

    /// PBA size in bytes.
    pub fn pba_bytes(&self) -> u64 {
        self.pending.len() as u64 * 8
    }

    /// The message control word (table size field included).
    pub fn control(&self) -> u16 {
        self.control | (self.len() - 1)
    }

    /// Whether MSI-X is enabled for the function.
    pub fn enabled(&self) -> bool {
        self.control & CONTROL_ENABLE != 0
    }

    /// Entry `vector`.
    pub fn entry(&self, vector: u16) -> Option<MsixEntry> {
        self.entries.get(usize::from(vector)).copied()
    }

    /// Every entry.
    pub fn entries(&self) -> &[MsixEntry] {
        &self.entries
    }

    fn masked(&self, vector: u16) -> bool {
        self.control & CONTROL_FUNCTION_MASK != 0 || self.entry(vector).is_none_or(|e| e.masked())
    }

    fn is_pending(&self, vector: u16) -> bool {
        let v = usize::from(vector);
        self.pending
            .get(v / 64)
            .is_some_and(|w| w >> (v % 64) & 1 != 0)
    }

    fn set_pending(&mut self, vector: u16, on: bool) {
        let v = usize::from(vector);
        if let Some(w) = self.pending.get_mut(v / 64) {
            if on {
                *w |= 1 << (v % 64);
            } else {
                *w &= !(1 << (v % 64));
            }
        }
    }

    /// A device wants to send `vector`: true when it may go out now; a
    /// masked vector is marked pending instead.
    pub fn trigger(&mut self, vector: u16) -> bool {
        if usize::from(vector) >= self.entries.len() {
            return false;
        }
        if self.masked(vector) {
            self.set_pending(vector, true);
            false
        } else {
            true
        }
    }

    fn unmasked_pending(&mut self) -> Vec<u16> {
        let mut fire = Vec::new();
        for v in 0..self.len() {
            if self.is_pending(v) && !self.masked(v) {
                self.set_pending(v, false);
                fire.push(v);
            }
        }
        fire
    }

    /// The guest wrote the message control word (only enable and function
    /// mask are writable).
    pub fn write_control(&mut self, value: u16) -> MsixChange {
        let before = self.control;
        self.control = value & (CONTROL_ENABLE | CONTROL_FUNCTION_MASK);
        MsixChange {
            reroute: before & CONTROL_ENABLE != self.control & CONTROL_ENABLE,
            fire: if self.enabled() {
                self.unmasked_pending()
            } else {
                Vec::new()
            },
        }
    }

    /// Reads the table at `offset`; out-of-range reads return zeros.
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i as u64)
                .and_then(|o| {
                    let e = self.entries.get(usize::try_from(o / ENTRY_SIZE).ok()?)?;
                    let word = match o % ENTRY_SIZE / 4 {
                        0 => e.addr_lo,
                        1 => e.addr_hi,
                        2 => e.data,
                        _ => e.control,
                    };
                    Some(word.to_le_bytes()[usize::try_from(o % 4).ok()?])
                })
                .unwrap_or(0);
        }
    }

    /// Writes the table at `offset` (dword or qword accesses; others are
    /// applied byte by byte the same way).
    pub fn write_table(&mut self, offset: u64, data: &[u8]) -> MsixChange {
        let mut change = MsixChange::default();
        for (i, value) in data.iter().enumerate() {
            let Some(o) = offset.checked_add(i as u64) else {
                continue;
            };
            let Some(e) = usize::try_from(o / ENTRY_SIZE)
                .ok()
                .and_then(|n| self.entries.get_mut(n))
            else {
                continue;
            };
            let word = match o % ENTRY_SIZE / 4 {
                0 => &mut e.addr_lo,
                1 => &mut e.addr_hi,
                2 => &mut e.data,
                _ => &mut e.control,
            };
            let shift = (o % 4) * 8;
            let new = (*word & !(0xff << shift)) | (u32::from(*value) << shift);
            if new != *word {
                *word = new;
                if o % ENTRY_SIZE < 12 {
                    change.reroute = true;
                }
            }
        }
        if self.enabled() {
            change.fire = self.unmasked_pending();
        }
        change
    }

    /// Reads the pending bit array (read-only to the guest).
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i as u64)
                .and_then(|o| {
                    let w = self.pending.get(usize::try_from(o / 8).ok()?)?;
                    Some(w.to_le_bytes()[usize::try_from(o % 8).ok()?])
                })
                .unwrap_or(0);
        }
    }

    /// Back to the power-on state: disabled, every entry masked.
    pub fn reset(&mut self) {
        self.entries.fill(MsixEntry::default());
        self.pending.fill(0);
        self.control = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_layout_and_masking() {
        let mut t = MsixTable::new(3);
        assert_eq!(t.control(), 2);
        assert_eq!(t.table_bytes(), 48);
        assert_eq!(t.pba_bytes(), 8);
        // Entry 1: address, data, then unmask.
        let c = t.write_table(16, &0xfee0_0000u32.to_le_bytes());
        assert!(c.reroute);
        t.write_table(24, &0x41u32.to_le_bytes());
        let mut b = [0u8; 16];
        t.read_table(16, &mut b);
        assert_eq!(&b[..4], &0xfee0_0000u32.to_le_bytes());
        assert_eq!(&b[8..12], &0x41u32.to_le_bytes());
        assert_eq!(&b[12..], &1u32.to_le_bytes(), "entries start masked");
        // Disabled function: still masked entry, so the vector is pending.
        assert!(!t.trigger(1));
        let mut p = [0u8; 8];
        t.read_pba(0, &mut p);
        assert_eq!(p[0], 0b10);
        // Enabling MSI-X with the entry still masked fires nothing.
        assert_eq!(t.write_control(CONTROL_ENABLE).fire, Vec::<u16>::new());
        // Unmasking the entry delivers the pending vector once.
        let c = t.write_table(28, &0u32.to_le_bytes());
        assert!(!c.reroute);
        assert_eq!(c.fire, vec![1]);
        t.read_pba(0, &mut p);
        assert_eq!(p[0], 0);
        assert!(t.trigger(1));
        // Function mask holds every vector back.
        t.write_control(CONTROL_ENABLE | CONTROL_FUNCTION_MASK);
        assert!(!t.trigger(1));
        assert_eq!(t.write_control(CONTROL_ENABLE).fire, vec![1]);
        // Out-of-range vectors and offsets are ignored.
        assert!(!t.trigger(7));
        t.write_table(4096, &[1, 2, 3, 4]);
        t.read_table(4096, &mut b[..4]);
        assert_eq!(&b[..4], &[0; 4]);
        t.reset();
        assert!(!t.enabled());
        assert!(t.entry(1).unwrap().masked());
    }
}
