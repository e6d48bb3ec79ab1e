//! A test-owned `NOTIFY_SOCKET`: the datagram socket systemd gives a `Type=notify` service, so
//! that a test reads what qpoold tells the service manager (`READY=1`, `STATUS=…`,
//! `RELOADING=1`, `STOPPING=1`) in the order it was sent.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A bound datagram socket in a short temporary directory.
pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
    /// Every message received so far, in order.
    received: std::cell::RefCell<Vec<String>>,
}

impl NotifySocket {
    /// Binds a new socket (under /tmp, so the path fits `sun_path`).
    pub fn new() -> NotifySocket {
        let dir = tempfile::Builder::new()
            .prefix("qpool-notify-")
            .tempdir_in("/tmp")
            .expect("notify socket directory");
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        NotifySocket {
            socket,
            path,
            _dir: dir,
            received: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// The path to give qpoold as `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every message received so far, without waiting for more.
    pub fn received(&self) -> Vec<String> {
        self.socket.set_nonblocking(true).expect("non-blocking");
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            self.received
                .borrow_mut()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        self.received.borrow().clone()
    }

    /// Waits until a message with the line `line` (such as `READY=1`) arrived after the
    /// first `after` messages; returns its index. Fails the test after `within`.
    pub fn wait_for(&self, line: &str, after: usize, within: Duration) -> usize {
        let start = Instant::now();
        loop {
            if let Some(i) = self
                .received()
                .iter()
                .enumerate()
                .skip(after)
                .find(|(_, m)| m.lines().any(|l| l == line))
                .map(|(i, _)| i)
            {
                return i;
            }
            let left = within.checked_sub(start.elapsed()).unwrap_or_else(|| {
                panic!(
                    "no {line} on NOTIFY_SOCKET within {within:?}; received: {:?}",
                    self.received.borrow()
                )
            });
            // Blocks until the next datagram (or the deadline); no polling loop.
            self.socket.set_nonblocking(false).expect("blocking");
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("read timeout");
            let mut buf = vec![0u8; 4096];
            if let Ok(n) = self.socket.recv(&mut buf) {
                self.received
                    .borrow_mut()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }
}
