//! Runtime: one thread per vCPU, and an event loop on the calling thread
//! that waits for the first vCPU to end the VM (or for Ctrl-C), then stops
//! the others by signalling their threads out of `KVM_RUN`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use vmm_sys_util::signal::{Killable, SIGRTMIN, register_signal_handler};

use crate::error::{Error, Result};
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

/// Runs the vCPUs until the VM ends; returns how it ended.
pub fn run_vcpus(vcpus: Vec<Vcpu>) -> Result<VmExit> {
    install_kick_handler()?;
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
    stop_threads(threads);
    outcome
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
/// hence the repetition), then joins it.
fn stop_threads(threads: Vec<JoinHandle<Vcpu>>) {
    for handle in threads {
        while !handle.is_finished() {
            if let Err(e) = handle.kill(kick_signal()) {
                log::warn!("cannot signal a vcpu thread: {e}");
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if handle.join().is_err() {
            log::warn!("a vcpu thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
