//! SIGINT (Ctrl-C) stops a running VM: the fixture guest spins forever
//! with `fixture.hang`; raising SIGINT in this process must end the run with
//! `VmExit::Interrupted` and stop every vCPU thread. A test binary of its
//! own, because the signal goes to the whole process.

mod common;

use std::time::{Duration, Instant};

use vmm::{SerialConfig, Vm, VmConfig, VmExit};

#[test]
fn sigint_stops_a_running_vm() {
    let tmp = tempfile::tempdir().unwrap();
    let console = tmp.path().join("console");
    let mut config = VmConfig::new(common::fixture_dir().join("fixture.pvh.elf"));
    config.cpus = 2;
    config.memory = 32 << 20;
    config.boot.cmdline = "fixture.hang".into();
    config.serial = SerialConfig::File(console.clone());
    vmm::install_interrupt_handler().unwrap();
    let mut vm = Vm::build(&config).unwrap();
    let console_probe = console.clone();
    std::thread::spawn(move || {
        // Wait until the guest has finished its report and is spinning.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(&console_probe).unwrap_or_default();
            if text.contains("fixture: report-end") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: kill(2) with our own pid and a valid signal number.
        unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
    });
    let exit = vm.run().unwrap();
    assert_eq!(exit, VmExit::Interrupted);
    let text = std::fs::read_to_string(&console).unwrap();
    assert!(text.contains("fixture: cpus-up=2"), "{text}");
    assert!(matches!(vm.run(), Err(vmm::Error::AlreadyRan)));
}
