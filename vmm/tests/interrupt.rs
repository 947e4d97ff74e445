//! SIGINT (Ctrl-C) stops a running VM: the fixture guest spins forever
//! with `fixture.hang`; raising SIGINT in this process must end the run with
//! `VmExit::Interrupted` and stop every vCPU thread. A test binary of its
//! own, because the signal goes to the whole process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vmm::{SerialConfig, Vm, VmConfig, VmExit};

fn fixture(image: &str) -> PathBuf {
    assert!(
        Path::new("/dev/kvm").exists(),
        "/dev/kvm does not exist: this test boots a guest under KVM; load the kvm module"
    );
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixture-guest-interrupt");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/guest/build.sh");
    let result = Command::new("sh")
        .arg(&script)
        .arg(&out)
        .output()
        .expect("run sh");
    assert!(
        result.status.success(),
        "building the fixture guest failed (it needs gcc, ld and objcopy; install gcc and binutils):\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    out.join(image)
}

#[test]
fn sigint_stops_a_running_vm() {
    let tmp = tempfile::tempdir().unwrap();
    let console = tmp.path().join("console");
    let mut config = VmConfig::new(fixture("fixture.pvh.elf"));
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
