//! Traffic between lab namespaces: a thread enters a pod's namespace with
//! setns and uses ordinary sockets there, or a traffic tool (iperf3, qperf)
//! runs there under `ip netns exec`. Nothing leaves the lab.

use std::{
    fs::File,
    io,
    net::{SocketAddrV4, UdpSocket},
    os::fd::AsRawFd,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// A traffic tool's server (`iperf3 -s`, `qperf`) in a namespace, ended by
/// its PID when dropped.
pub struct Server(Child);

impl Server {
    /// Starts `argv` in `netns`, and gives it `settle` to start listening.
    pub fn start(netns: &str, argv: &[&str], settle: Duration) -> Server {
        let child = Command::new("ip")
            .args(["netns", "exec", netns])
            .args(argv)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{argv:?}: {e} (cargo xtask setup installs it)"));
        std::thread::sleep(settle);
        Server(child)
    }

    /// Waits for a server that ends by itself (`iperf3 -s -1`).
    pub fn wait(mut self) {
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs a traffic tool's client in `netns` to completion: its stdout.
pub fn client(netns: &str, argv: &[&str]) -> Result<String, String> {
    crate::run("ip", &[&["netns", "exec", netns][..], argv].concat())
}

fn enter(netns: &str) -> io::Result<()> {
    let f = File::open(format!("/run/netns/{netns}"))?;
    // SAFETY: plain syscall; affects only this (fresh) thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets a socket's SO_RCVBUF (the kernel doubles it and caps the request at
/// net.core.rmem_max).
pub fn set_rcvbuf(sock: &UdpSocket, bytes: libc::c_int) -> io::Result<()> {
    // SAFETY: valid fd and option value.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &bytes as *const _ as *const libc::c_void,
            std::mem::size_of_val(&bytes) as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread to one CPU.
pub fn pin_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs `f` on a new thread inside `netns` and returns its result.
pub fn in_netns<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let netns = netns.to_string();
    std::thread::spawn(move || enter(&netns).map(|_| f()))
        .join()
        .map_err(|_| io::Error::other("thread panicked"))?
}

/// Sends `count` UDP datagrams of `payload_len` bytes from inside `netns` to
/// `dst`, pausing briefly every `burst` datagrams so no queue on the way
/// overflows. Returns how many were sent.
pub fn send_udp(
    netns: &str,
    dst: SocketAddrV4,
    count: u64,
    payload_len: usize,
    burst: u64,
) -> io::Result<u64> {
    in_netns(netns, move || -> io::Result<u64> {
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        let payload = vec![0x5a; payload_len];
        for i in 0..count {
            sock.send_to(&payload, dst)?;
            if burst > 0 && (i + 1) % burst == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(count)
    })?
}

/// A UDP receiver in a namespace that counts datagrams until stopped.
pub struct UdpSink {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    handle: Option<JoinHandle<io::Result<()>>>,
}

impl UdpSink {
    /// Binds `0.0.0.0:port` inside `netns` (returns once bound).
    pub fn start(netns: &str, port: u16) -> io::Result<UdpSink> {
        let (stop, received) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (tx, rx) = mpsc::channel();
        let netns = netns.to_string();
        let (s, r) = (Arc::clone(&stop), Arc::clone(&received));
        let handle = std::thread::spawn(move || -> io::Result<()> {
            let bound = enter(&netns).and_then(|_| {
                let sock = UdpSocket::bind(("0.0.0.0", port))?;
                sock.set_read_timeout(Some(Duration::from_millis(50)))?;
                // Room for a burst while this thread waits for a CPU (tests
                // run in parallel): 4 MiB asked, capped by net.core.rmem_max.
                set_rcvbuf(&sock, 4 << 20)?;
                Ok(sock)
            });
            let sock = match bound {
                Ok(sock) => {
                    let _ = tx.send(Ok(()));
                    sock
                }
                Err(e) => {
                    let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
            };
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                match sock.recv(&mut buf) {
                    Ok(_) => {
                        r.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        });
        rx.recv()
            .map_err(|_| io::Error::other("sink thread died"))??;
        Ok(UdpSink {
            stop,
            received,
            handle: Some(handle),
        })
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until `expected` datagrams arrived or `timeout` passed, stops,
    /// and returns the count.
    pub fn finish(mut self, expected: u64, timeout: Duration) -> u64 {
        let start = Instant::now();
        while self.received() < expected && start.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.received()
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
