//! Local APIC set-up: LINT0 delivers ExtINT (the legacy PIC's output) and
//! LINT1 delivers NMI, the virtual-wire mode the MP specification describes.

use kvm_bindings::kvm_lapic_state;

/// Offset of the LVT LINT0 register.
pub const APIC_LVT0: usize = 0x350;
/// Offset of the LVT LINT1 register.
pub const APIC_LVT1: usize = 0x360;
/// Delivery mode ExtINT.
pub const APIC_MODE_EXTINT: u32 = 0x7;
/// Delivery mode NMI.
pub const APIC_MODE_NMI: u32 = 0x4;

fn read_reg(state: &kvm_lapic_state, offset: usize) -> u32 {
    let mut b = [0u8; 4];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = state.regs[offset + i].to_ne_bytes()[0];
    }
    u32::from_le_bytes(b)
}

fn write_reg(state: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (i, byte) in value.to_le_bytes().into_iter().enumerate() {
        state.regs[offset + i] = std::ffi::c_char::from_ne_bytes([byte]);
    }
}

fn with_delivery_mode(reg: u32, mode: u32) -> u32 {
    (reg & !0x700) | (mode << 8)
}

/// Sets LINT0 to ExtINT and LINT1 to NMI, keeping the other bits.
pub fn set_lint(state: &mut kvm_lapic_state) {
    let lvt0 = read_reg(state, APIC_LVT0);
    write_reg(state, APIC_LVT0, with_delivery_mode(lvt0, APIC_MODE_EXTINT));
    let lvt1 = read_reg(state, APIC_LVT1);
    write_reg(state, APIC_LVT1, with_delivery_mode(lvt1, APIC_MODE_NMI));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_delivery_modes() {
        let mut s = kvm_lapic_state::default();
        write_reg(&mut s, APIC_LVT0, 0x0001_0000);
        write_reg(&mut s, APIC_LVT1, 0x0001_0000);
        set_lint(&mut s);
        assert_eq!(read_reg(&s, APIC_LVT0), 0x0001_0700);
        assert_eq!(read_reg(&s, APIC_LVT1), 0x0001_0400);
    }
}
