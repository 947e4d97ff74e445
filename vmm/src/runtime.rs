//! Runtime: one thread per vCPU, and an event loop on the calling thread
//! that waits for the first vCPU to end the VM (or for Ctrl-C), then stops
//! the others by signalling their threads out of `KVM_RUN`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use vmm_sys_util::signal::{Killable, SIGRTMIN, register_signal_handler};

use crate::error::{Error, Result};
use crate::exit_stats::ExitStats;
use crate::vcpu::Vcpu;

/// How a VM ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmExit {
    /// The guest reset the machine (i8042 reset, ACPI reset register or
    /// a KVM reset event): a clean end for a VMM without reboot.
    Reset,
    /// The guest powered off.
    PowerOff,
    /// The guest wrote this byte to the debug-exit port.
    DebugExit(u8),
    /// A vCPU triple-faulted: the guest crashed.
    TripleFault,
    /// A vCPU halted with no interrupt controller to wake it.
    Halted,
    /// The VMM was interrupted (Ctrl-C).
    Interrupted,
}

impl VmExit {
    /// True for the ways a guest ends on purpose.
    pub fn is_clean(self) -> bool {
        matches!(
            self,
            VmExit::Reset | VmExit::PowerOff | VmExit::DebugExit(0)
        )
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    INTERRUPTED.store(true, Ordering::Release);
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// The signal that kicks vCPU threads out of `KVM_RUN`.
fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

/// Makes SIGINT (Ctrl-C) stop a running VM with [`VmExit::Interrupted`]
/// instead of killing the process.
pub fn install_interrupt_handler() -> Result<()> {
    register_signal_handler(libc::SIGINT, on_sigint)
        .map_err(|e| Error::Os("the SIGINT handler", e.into()))
}

fn install_kick_handler() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = register_signal_handler(kick_signal(), on_kick)
            .map_err(|e| Error::Os("the vcpu kick signal handler", e.into()));
    });
    result
}

type Report = (u8, Result<Option<VmExit>>);

/// Runs the vCPUs until the VM ends; returns how it ended, and the exit
/// counts of the vCPUs whose threads ended normally.
pub fn run_vcpus(vcpus: Vec<Vcpu>) -> (Result<VmExit>, ExitStats) {
    if let Err(e) = install_kick_handler() {
        return (Err(e), ExitStats::default());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Report>();
    let mut threads: Vec<JoinHandle<Vcpu>> = Vec::with_capacity(vcpus.len());
    let mut spawn_error = None;
    for mut vcpu in vcpus {
        let index = vcpu.index;
        let stop = stop.clone();
        let tx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("vcpu{index}"))
            .spawn(move || {
                let result = vcpu.run(&stop);
                if !matches!(result, Ok(None)) {
                    // The receiver may be gone once the VM is stopping.
                    let _ = tx.send((index, result));
                }
                vcpu
            });
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                spawn_error = Some(Error::Thread(index, e));
                break;
            }
        }
    }
    drop(tx);

    let outcome = match spawn_error {
        Some(e) => Err(e),
        None => wait_for_exit(&rx),
    };
    stop.store(true, Ordering::Release);
    let mut stats = ExitStats::default();
    for vcpu in stop_threads(threads) {
        stats.add_vcpu(vcpu.userspace_exits(), vcpu.kvm_stats());
    }
    (outcome, stats)
}

fn wait_for_exit(rx: &mpsc::Receiver<Report>) -> Result<VmExit> {
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok((index, Ok(Some(exit)))) => {
                log::debug!("vcpu {index} ended the vm: {exit:?}");
                return Ok(exit);
            }
            Ok((_, Ok(None))) => {}
            Ok((_, Err(e))) => return Err(e),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if INTERRUPTED.swap(false, Ordering::AcqRel) {
                    return Ok(VmExit::Interrupted);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(Error::VcpuThreadsEnded),
        }
    }
}

/// Signals each thread until it leaves `KVM_RUN` and sees the stop flag
/// (a signal that lands just before `KVM_RUN` is entered would be lost,
/// hence the repetition), then joins it. Returns the vCPUs of the threads
/// that did not panic.
fn stop_threads(threads: Vec<JoinHandle<Vcpu>>) -> Vec<Vcpu> {
    let mut vcpus = Vec::with_capacity(threads.len());
    for handle in threads {
        while !handle.is_finished() {
            if let Err(e) = handle.kill(kick_signal()) {
                log::warn!("cannot signal a vcpu thread: {e}");
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        match handle.join() {
            Ok(vcpu) => vcpus.push(vcpu),
            Err(_) => log::warn!("a vcpu thread panicked"),
        }
    }
    vcpus
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::devices::Bus;
    use crate::devices::debug_exit::{DEBUG_EXIT_PORT, DebugExit};

    /// A real-mode guest that writes port 0x10 three times, then 7 to the
    /// debug-exit port: the run's exit counts show the four port writes.
    #[test]
    fn a_run_counts_its_exits() {
        // mov al, 7; out 0x10, al (three times); out 0xf4, al
        let code = [
            0xb0, 0x07, 0xe6, 0x10, 0xe6, 0x10, 0xe6, 0x10, 0xe6, 0xf4, 0xf4,
        ];
        // The VM and its memory stay alive until the run is over.
        let crate::test_guest::RealModeGuest {
            vm: _vm,
            mem: _mem,
            vcpu: fd,
        } = crate::test_guest::real_mode_guest(&code);
        let mut pio = Bus::new("pio");
        pio.insert(
            DEBUG_EXIT_PORT,
            1,
            "debug-exit",
            Arc::new(Mutex::new(DebugExit)),
        )
        .unwrap();
        let vcpu = Vcpu::new(0, fd, Arc::new(pio), Arc::new(Bus::new("mmio")));

        let (exit, stats) = run_vcpus(vec![vcpu]);
        assert_eq!(exit.unwrap(), VmExit::DebugExit(7));
        assert_eq!(stats.vcpus, 1);
        assert_eq!(stats.userspace.pio, 4);
        assert!(stats.userspace.total >= 4);
        assert_eq!(stats.userspace.mmio, 0);
        assert!(
            stats.kvm_unavailable.is_none(),
            "{:?}",
            stats.kvm_unavailable
        );
        assert!(stats.kvm("exits").unwrap() >= 4);
        for name in ExitStats::MAIN_KVM_COUNTERS {
            assert!(stats.kvm(name).is_some(), "no {name}");
        }
    }

    #[test]
    fn clean_exits() {
        assert!(VmExit::Reset.is_clean());
        assert!(VmExit::PowerOff.is_clean());
        assert!(VmExit::DebugExit(0).is_clean());
        assert!(!VmExit::DebugExit(1).is_clean());
        assert!(!VmExit::TripleFault.is_clean());
        assert!(!VmExit::Interrupted.is_clean());
    }
}
