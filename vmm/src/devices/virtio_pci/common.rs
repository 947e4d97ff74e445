//! The common configuration structure of the virtio-pci modern transport
//! (virtio 1.2, 4.1.4.3) as a state machine: feature windows, device
//! status, queue selection and per-queue configuration. Queue
//! configuration is frozen once the queue is enabled or DRIVER_OK is set;
//! writes after that are ignored (a driver, or an attacker, cannot move a
//! ring the device is serving).

/// Device status: ACKNOWLEDGE.
pub const STATUS_ACKNOWLEDGE: u8 = 1;
/// Device status: DRIVER.
pub const STATUS_DRIVER: u8 = 2;
/// Device status: DRIVER_OK.
pub const STATUS_DRIVER_OK: u8 = 4;
/// Device status: FEATURES_OK.
pub const STATUS_FEATURES_OK: u8 = 8;
/// Device status: DEVICE_NEEDS_RESET.
pub const STATUS_NEEDS_RESET: u8 = 0x40;
/// Device status: FAILED.
pub const STATUS_FAILED: u8 = 0x80;
/// "No MSI-X vector".
pub const NO_VECTOR: u16 = 0xffff;
/// Size of the structure.
pub const COMMON_CONFIG_SIZE: u64 = 0x38;

/// One queue's configuration as the driver wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Largest size the device accepts.
    pub max_size: u16,
    /// Size the driver chose.
    pub size: u16,
    /// MSI-X vector for used-buffer notifications.
    pub msix_vector: u16,
    /// queue_enable.
    pub enabled: bool,
    /// Descriptor table address.
    pub desc: u64,
    /// Driver (available) ring address.
    pub driver: u64,
    /// Device (used) ring address.
    pub device: u64,
}

impl QueueConfig {
    fn new(max_size: u16) -> Self {
        QueueConfig {
            max_size,
            size: max_size,
            msix_vector: NO_VECTOR,
            enabled: false,
            desc: 0,
            driver: 0,
            device: 0,
        }
    }
}

/// What the transport must do after a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// The driver wrote 0 to device_status: reset the device.
    Reset,
    /// The driver set FEATURES_OK with these features: negotiate, then
    /// call [`CommonConfig::features_result`].
    Negotiate(u64),
    /// The driver set DRIVER_OK: activate the device's queues.
    Activate,
}

/// The common configuration state.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    device_features: u64,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    /// config_msix_vector.
    pub config_msix_vector: u16,
    status: u8,
    config_generation: u8,
    queue_select: u16,
    queues: Vec<QueueConfig>,
}

fn put(data: &mut [u8], value: u64) {
    let bytes = value.to_le_bytes();
    for (d, s) in data.iter_mut().zip(bytes.iter()) {
        *d = *s;
    }
}

fn get(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(data.iter()) {
        *d = *s;
    }
    u64::from_le_bytes(b)
}

fn low32(v: u64) -> u64 {
    v & 0xffff_ffff
}

impl CommonConfig {
    /// State for a device offering `device_features` with `queues` queues
    /// of at most `max_size` entries.
    pub fn new(device_features: u64, queues: u16, max_size: u16) -> Self {
        CommonConfig {
            device_features,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            config_msix_vector: NO_VECTOR,
            status: 0,
            config_generation: 0,
            queue_select: 0,
            queues: vec![QueueConfig::new(max_size); usize::from(queues)],
        }
    }

    /// device_status.
    pub fn status(&self) -> u8 {
        self.status
    }

    /// The queues' configuration.
    pub fn queues(&self) -> &[QueueConfig] {
        &self.queues
    }

    /// Features the driver accepted.
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    /// Back to the reset state (after the device itself was reset).
    pub fn reset(&mut self) {
        let max = self.queues.first().map_or(0, |q| q.max_size);
        *self = CommonConfig {
            config_generation: self.config_generation,
            ..CommonConfig::new(
                self.device_features,
                u16::try_from(self.queues.len()).unwrap_or(0),
                max,
            )
        };
    }

    /// Outcome of [`Action::Negotiate`]: FEATURES_OK stays set only if the
    /// device accepted the features.
    pub fn features_result(&mut self, accepted: bool) {
        if !accepted {
            self.status &= !STATUS_FEATURES_OK;
        }
    }

    /// Outcome of [`Action::Activate`]: a device that could not start
    /// asks for a reset.
    pub fn activate_result(&mut self, ok: bool) {
        if !ok {
            self.status |= STATUS_NEEDS_RESET;
        }
    }

    /// The device hit an error it cannot continue from.
    pub fn set_needs_reset(&mut self) {
        self.status |= STATUS_NEEDS_RESET;
    }

    fn selected(&self) -> Option<&QueueConfig> {
        self.queues.get(usize::from(self.queue_select))
    }

    /// Whether the selected queue may still be configured.
    fn queue_writable(&self) -> bool {
        self.status & STATUS_DRIVER_OK == 0 && self.selected().is_some_and(|q| !q.enabled)
    }

    /// A read of `data.len()` bytes at `offset`.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        let q = self.selected();
        let value = match offset {
            0x00 => u64::from(self.device_feature_select),
            0x04 => match self.device_feature_select {
                0 => low32(self.device_features),
                1 => self.device_features >> 32,
                _ => 0,
            },
            0x08 => u64::from(self.driver_feature_select),
            0x0c => match self.driver_feature_select {
                0 => low32(self.driver_features),
                1 => self.driver_features >> 32,
                _ => 0,
            },
            0x10 => u64::from(self.config_msix_vector),
            0x12 => self.queues.len() as u64,
            0x14 => u64::from(self.status),
            0x15 => u64::from(self.config_generation),
            0x16 => u64::from(self.queue_select),
            0x18 => q.map_or(0, |q| u64::from(q.size)),
            0x1a => q.map_or(u64::from(NO_VECTOR), |q| u64::from(q.msix_vector)),
            0x1c => q.map_or(0, |q| u64::from(q.enabled)),
            0x1e => u64::from(self.queue_select),
            0x20 => q.map_or(0, |q| low32(q.desc)),
            0x24 => q.map_or(0, |q| q.desc >> 32),
            0x28 => q.map_or(0, |q| low32(q.driver)),
            0x2c => q.map_or(0, |q| q.driver >> 32),
            0x30 => q.map_or(0, |q| low32(q.device)),
            0x34 => q.map_or(0, |q| q.device >> 32),
            _ => 0,
        };
        put(data, value);
    }

    /// A write of `data` at `offset`; `vectors` is the MSI-X table size
    /// (vector numbers beyond it read back as [`NO_VECTOR`]).
    pub fn write(&mut self, offset: u64, data: &[u8], vectors: u16) -> Action {
        let v = get(data);
        let v32 = u32::try_from(low32(v)).unwrap_or(0);
        let v16 = u16::try_from(v & 0xffff).unwrap_or(0);
        let features_open = self.status & (STATUS_FEATURES_OK | STATUS_DRIVER_OK) == 0;
        let writable = self.queue_writable();
        let vector = if v16 < vectors { v16 } else { NO_VECTOR };
        match offset {
            0x00 => self.device_feature_select = v32,
            0x08 => self.driver_feature_select = v32,
            0x0c if features_open => match self.driver_feature_select {
                0 => self.driver_features = (self.driver_features & !0xffff_ffff) | low32(v),
                1 => self.driver_features = low32(self.driver_features) | (low32(v) << 32),
                _ => {}
            },
            0x10 => self.config_msix_vector = vector,
            0x14 => return self.write_status(u8::try_from(v & 0xff).unwrap_or(0)),
            0x16 => self.queue_select = v16,
            _ => {
                if !writable {
                    return Action::None;
                }
                let idx = usize::from(self.queue_select);
                let Some(q) = self.queues.get_mut(idx) else {
                    return Action::None;
                };
                match offset {
                    // A size that is not a power of two up to the maximum
                    // is refused (the split ring requires one).
                    0x18 if v16.is_power_of_two() && v16 <= q.max_size => q.size = v16,
                    0x1a => q.msix_vector = vector,
                    // Only 1 may be written (4.1.4.3.2).
                    0x1c if v16 == 1 => q.enabled = true,
                    0x20 => q.desc = (q.desc & !0xffff_ffff) | low32(v),
                    0x24 => q.desc = low32(q.desc) | (low32(v) << 32),
                    0x28 => q.driver = (q.driver & !0xffff_ffff) | low32(v),
                    0x2c => q.driver = low32(q.driver) | (low32(v) << 32),
                    0x30 => q.device = (q.device & !0xffff_ffff) | low32(v),
                    0x34 => q.device = low32(q.device) | (low32(v) << 32),
                    _ => {}
                }
                if data.len() == 8 && matches!(offset, 0x20 | 0x28 | 0x30) {
                    match offset {
                        0x20 => q.desc = v,
                        0x28 => q.driver = v,
                        _ => q.device = v,
                    }
                }
            }
        }
        Action::None
    }

    fn write_status(&mut self, new: u8) -> Action {
        if new == 0 {
            return Action::Reset;
        }
        let old = self.status;
        // Bits are only ever added; clearing needs a reset.
        let set = new & !old;
        self.status = old | new;
        if set & STATUS_FEATURES_OK != 0 && old & STATUS_DRIVER_OK == 0 {
            return Action::Negotiate(self.driver_features);
        }
        if set & STATUS_DRIVER_OK != 0 {
            if self.status & STATUS_FEATURES_OK == 0 {
                self.status |= STATUS_NEEDS_RESET;
                return Action::None;
            }
            return Action::Activate;
        }
        Action::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w32(c: &mut CommonConfig, off: u64, v: u32) -> Action {
        c.write(off, &v.to_le_bytes(), 2)
    }
    fn w16(c: &mut CommonConfig, off: u64, v: u16) -> Action {
        c.write(off, &v.to_le_bytes(), 2)
    }
    fn r32(c: &CommonConfig, off: u64) -> u32 {
        let mut b = [0u8; 4];
        c.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn feature_windows_and_status_sequence() {
        let mut c = CommonConfig::new((1 << 32) | (1 << 9) | (1 << 6), 1, 128);
        assert_eq!(r32(&c, 0x12) & 0xffff, 1);
        assert_eq!(r32(&c, 0x04), (1 << 9) | (1 << 6));
        w32(&mut c, 0x00, 1);
        assert_eq!(r32(&c, 0x04), 1);
        w32(&mut c, 0x00, 7);
        assert_eq!(r32(&c, 0x04), 0);
        c.write(0x14, &[STATUS_ACKNOWLEDGE], 2);
        c.write(0x14, &[STATUS_ACKNOWLEDGE | STATUS_DRIVER], 2);
        w32(&mut c, 0x08, 0);
        w32(&mut c, 0x0c, 1 << 9);
        w32(&mut c, 0x08, 1);
        w32(&mut c, 0x0c, 1);
        assert_eq!(c.driver_features(), (1 << 32) | (1 << 9));
        let a = c.write(
            0x14,
            &[STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK],
            2,
        );
        assert_eq!(a, Action::Negotiate((1 << 32) | (1 << 9)));
        // Features are frozen after FEATURES_OK.
        w32(&mut c, 0x08, 0);
        w32(&mut c, 0x0c, 0);
        assert_eq!(c.driver_features(), (1 << 32) | (1 << 9));
        // A refused negotiation clears FEATURES_OK again.
        c.features_result(false);
        assert_eq!(c.status() & STATUS_FEATURES_OK, 0);
        // DRIVER_OK without FEATURES_OK asks for a reset.
        assert_eq!(c.write(0x14, &[STATUS_DRIVER_OK], 2), Action::None);
        assert_ne!(c.status() & STATUS_NEEDS_RESET, 0);
        assert_eq!(c.write(0x14, &[0], 2), Action::Reset);
        c.reset();
        assert_eq!(c.status(), 0);
        assert_eq!(c.driver_features(), 0);
    }

    #[test]
    fn queue_configuration_freezes() {
        let mut c = CommonConfig::new(1 << 32, 2, 128);
        w16(&mut c, 0x16, 1);
        w16(&mut c, 0x18, 100); // not a power of two
        assert_eq!(c.queues()[1].size, 128);
        w16(&mut c, 0x18, 256); // above the maximum
        assert_eq!(c.queues()[1].size, 128);
        w16(&mut c, 0x18, 16);
        w16(&mut c, 0x1a, 1);
        w32(&mut c, 0x20, 0x1000);
        w32(&mut c, 0x24, 0x1);
        c.write(0x28, &0x2000u64.to_le_bytes(), 2);
        w32(&mut c, 0x30, 0x3000);
        let q = c.queues()[1];
        assert_eq!((q.size, q.msix_vector), (16, 1));
        assert_eq!(
            (q.desc, q.driver, q.device),
            (0x1_0000_1000, 0x2000, 0x3000)
        );
        w16(&mut c, 0x1a, 9); // beyond the table: no vector
        assert_eq!(c.queues()[1].msix_vector, NO_VECTOR);
        w16(&mut c, 0x1a, 1);
        w16(&mut c, 0x1c, 0); // only 1 may be written
        assert!(!c.queues()[1].enabled);
        w16(&mut c, 0x1c, 1);
        assert!(c.queues()[1].enabled);
        // An enabled queue cannot be moved.
        w32(&mut c, 0x20, 0x9000);
        w16(&mut c, 0x18, 8);
        assert_eq!(c.queues()[1].desc, 0x1_0000_1000);
        assert_eq!(c.queues()[1].size, 16);
        // After DRIVER_OK no queue can be changed, enabled or not.
        c.write(0x14, &[STATUS_FEATURES_OK], 2);
        assert_eq!(
            c.write(0x14, &[STATUS_FEATURES_OK | STATUS_DRIVER_OK], 2),
            Action::Activate
        );
        w16(&mut c, 0x16, 0);
        w32(&mut c, 0x20, 0x5000);
        w16(&mut c, 0x1c, 1);
        assert_eq!(c.queues()[0].desc, 0);
        assert!(!c.queues()[0].enabled);
        // Selecting a queue that does not exist reads zeros.
        w16(&mut c, 0x16, 5);
        assert_eq!(r32(&c, 0x18) & 0xffff, 0);
        // Status bits cannot be cleared without a reset.
        c.write(0x14, &[STATUS_ACKNOWLEDGE], 2);
        assert_ne!(c.status() & STATUS_DRIVER_OK, 0);
    }
}
