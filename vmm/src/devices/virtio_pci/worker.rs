//! The thread that serves a device's queue notifications: it waits on the
//! queues' ioeventfds and calls `process_queue` for each one signalled,
//! and re-asserts INTx after an EOI while a cause is pending.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use virtio_blk::Block;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::interrupt::PciInterrupt;
use crate::error::{Error, Result};

/// A running worker; [`Worker::stop`] ends and joins it.
#[derive(Debug)]
pub struct Worker {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts serving `notify[i]` as queue i of `device`.
    pub fn spawn(
        device: Arc<Block<GuestMemoryMmap>>,
        interrupt: Arc<PciInterrupt>,
        notify: &[EventFd],
    ) -> Result<Self> {
        let os = |what| move |e: std::io::Error| Error::Os(what, e);
        let stop = EventFd::new(libc::EFD_NONBLOCK).map_err(os("the worker stop eventfd"))?;
        let epoll = Epoll::new().map_err(os("the worker epoll"))?;
        let mut fds = Vec::with_capacity(notify.len());
        for (i, fd) in notify.iter().enumerate() {
            let fd = fd.try_clone().map_err(os("an ioeventfd"))?;
            epoll
                .ctl(
                    ControlOperation::Add,
                    fd.as_raw_fd(),
                    EpollEvent::new(EventSet::IN, i as u64),
                )
                .map_err(os("the worker epoll"))?;
            fds.push(fd);
        }
        let stop_key = notify.len() as u64;
        let resample_key = stop_key + 1;
        epoll
            .ctl(
                ControlOperation::Add,
                interrupt.resample_fd().as_raw_fd(),
                EpollEvent::new(EventSet::IN, resample_key),
            )
            .map_err(os("the worker epoll"))?;
        let stop_fd = stop.try_clone().map_err(os("the worker stop eventfd"))?;
        epoll
            .ctl(
                ControlOperation::Add,
                stop_fd.as_raw_fd(),
                EpollEvent::new(EventSet::IN, stop_key),
            )
            .map_err(os("the worker epoll"))?;
        let thread = std::thread::Builder::new()
            .name("virtio-blk".into())
            .spawn(move || serve(&device, &interrupt, &epoll, &fds, stop_key))
            .map_err(os("the virtio-blk worker thread"))?;
        Ok(Worker {
            stop,
            thread: Some(thread),
        })
    }

    /// Ends the thread and waits for it.
    pub fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            if let Err(e) = self.stop.write(1) {
                log::warn!("virtio-blk worker: cannot signal stop: {e}");
                return;
            }
            if t.join().is_err() {
                log::warn!("virtio-blk worker panicked");
            }
        }
    }
}

fn serve(
    device: &Block<GuestMemoryMmap>,
    interrupt: &PciInterrupt,
    epoll: &Epoll,
    fds: &[EventFd],
    stop_key: u64,
) {
    let mut events = vec![EpollEvent::default(); fds.len() + 2];
    loop {
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error!("virtio-blk worker: epoll failed: {e}");
                return;
            }
        };
        for ev in events.iter().take(n) {
            let key = ev.data();
            if key == stop_key {
                return;
            }
            if key == stop_key + 1 {
                interrupt.resample();
                continue;
            }
            let Some(fd) = usize::try_from(key).ok().and_then(|k| fds.get(k)) else {
                continue;
            };
            // Clear the counter before serving, so a notification that
            // arrives while serving wakes us again.
            let _ = fd.read();
            let index = u16::try_from(key).unwrap_or(u16::MAX);
            match device.process_queue(index) {
                Ok(()) => {}
                // A notification before DRIVER_OK or after a reset: nothing
                // to serve.
                Err(virtio_blk::Error::NotActive { .. }) => {}
                Err(e) => {
                    log::warn!("virtio-blk queue {index}: {e}; the device needs a reset");
                    interrupt.device_broken();
                }
            }
        }
    }
}
