//! A real Redis (Debian's `redis-server`) and real `sigyard` processes as cluster nodes, on
//! free loopback ports, each killed when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `redis-server` on a free port, without persistence.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    /// Extra `redis-server` arguments (TLS, a password).
    args: Vec<String>,
    tls: bool,
}

impl Redis {
    /// `None` (and a SKIPPED line) when `redis-server` is not installed and `SIGYARD_TEST_SKIP`
    /// lists `redis`; otherwise a missing server fails the test.
    pub fn start() -> Option<Redis> {
        Redis::start_with(&[], false)
    }

    /// With a password (`requirepass`).
    pub fn start_with_password(password: &str) -> Option<Redis> {
        Redis::start_with(&["--requirepass", password], false)
    }

    /// With these `redis-server` arguments.
    pub fn start_args(args: &[&str]) -> Option<Redis> {
        Redis::start_with(args, false)
    }

    /// TLS only, with the development certificate (certs/), clients not authenticated.
    pub fn start_tls() -> Option<Redis> {
        let cert = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-cert.pem");
        let key = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-key.pem");
        Redis::start_with(
            &[
                "--tls-cert-file",
                cert,
                "--tls-key-file",
                key,
                "--tls-ca-cert-file",
                cert,
                "--tls-auth-clients",
                "no",
            ],
            true,
        )
    }

    fn start_with(args: &[&str], tls: bool) -> Option<Redis> {
        if super::skipped("redis") {
            return None;
        }
        let port = free_port();
        let mut r = Redis {
            port,
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
            tls,
        };
        r.restart();
        Some(r)
    }

    /// Start (again, on the same port) and wait until it answers.
    pub fn restart(&mut self) {
        let port = self.port.to_string();
        let ports: &[&str] = match self.tls {
            false => &["--port", &port],
            true => &["--port", "0", "--tls-port", &port],
        };
        let child = Command::new("redis-server")
            .args(ports)
            .args(["--bind", "127.0.0.1"])
            .args(&self.args)
            .args(["--save", "", "--appendonly", "no", "--logfile", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (installed by ./run-tests)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // (A TLS or password-protected server is ready once it accepts.)
            let ready = match self.tls || !self.args.is_empty() {
                true => TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
                false => self.ping(),
            };
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not answer on port {}", self.port);
    }

    pub fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut b = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut b).is_ok() && &b == b"+PONG\r\n"
    }

    /// Run one command given inline (`SET k v`); the raw reply.
    pub fn command(&self, cmd: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        let mut b = vec![0u8; 1 << 16];
        let mut n = s.read(&mut b).unwrap_or(0);
        // A bulk string (CLIENT LIST) may come in several reads.
        let whole = |b: &[u8]| {
            let text = String::from_utf8_lossy(b);
            let Some(head) = text.strip_prefix('$').and_then(|t| t.split_once("\r\n")) else {
                return true;
            };
            let len: usize = head.0.parse().unwrap_or(0);
            b.len() >= 1 + head.0.len() + 2 + len + 2
        };
        while n > 0 && n < b.len() && !whole(&b[..n]) {
            match s.read(&mut b[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        String::from_utf8_lossy(&b[..n]).into_owned()
    }

    /// `PUBLISH channel payload` (binary-safe); the number of subscribers that got it.
    pub fn publish(&self, channel: &str, payload: &[u8]) -> i64 {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut req = Vec::new();
        req.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n");
        for part in [channel.as_bytes(), payload] {
            req.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
            req.extend_from_slice(part);
            req.extend_from_slice(b"\r\n");
        }
        s.write_all(&req).unwrap();
        let mut b = [0u8; 64];
        let n = s.read(&mut b).unwrap_or(0);
        let reply = String::from_utf8_lossy(&b[..n]);
        reply.trim().trim_start_matches(':').parse().unwrap_or(-1)
    }

    /// Stop it hard (the cluster loses its Redis).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `sigyard` process, a node of the cluster at `url`.
pub struct Node {
    pub addr: SocketAddr,
    child: Child,
    /// Its log so far.
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Node {
    pub fn start(url: &str, extra: &[&str]) -> Node {
        Node::start_env(url, extra, &[])
    }

    /// With environment variables (a password).
    pub fn start_env(url: &str, extra: &[&str], env: &[(&str, &str)]) -> Node {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sigyard"))
            .args([
                "--cluster",
                url,
                "--listen",
                &addr.to_string(),
                "--threads",
                "2",
            ])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sigyard runs");
        // Ready once it says it listens; its log then goes on to the test's stderr.
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut line = String::new();
        loop {
            line.clear();
            if err.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("sigyard node exited before listening");
            }
            eprint!("[node {port}] {line}");
            log.lock().unwrap().push_str(&line);
            if line.contains("listening on") {
                break;
            }
        }
        let kept = log.clone();
        std::thread::spawn(move || {
            for l in err.lines().map_while(Result::ok) {
                eprintln!("[node {port}] {l}");
                let mut log = kept.lock().unwrap();
                log.push_str(&l);
                log.push('\n');
            }
        });
        Node { addr, child, log }
    }

    /// Whether a line of its log so far contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log.lock().unwrap().lines().any(|l| l.contains(text))
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (a graceful stop); [`Node::wait`] for the exit.
    pub fn term(&mut self) {
        self.signal(libc::SIGTERM);
    }

    /// Send the process a signal (SIGSTOP and SIGCONT freeze and resume it).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// The local ports of its TCP connections to `port` (its connections to Redis).
    pub fn ports_to(&self, port: u16) -> Vec<u16> {
        let pid = self.child.id();
        let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter_map(|l| {
                let l = l.to_string_lossy().into_owned();
                Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
            })
            .collect();
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let port_of = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
        table
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let (local, remote, inode) = (f.get(1)?, f.get(2)?, f.get(9)?);
                (port_of(remote)? == port && inodes.iter().any(|i| i == inode))
                    .then(|| port_of(local))?
            })
            .collect()
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// Its exit status, if it exited within `within`.
    pub fn exited(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A TCP relay to Redis that can stop moving bytes, both ways, on every connection it carries
/// and on those it accepts meanwhile, as a network partition does (nothing is closed or reset;
/// what was sent waits), and move them again.
pub struct Partition {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Partition {
    /// In front of Redis at `to`.
    pub fn new(to: u16) -> Partition {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let held = cut.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                for (from, into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let held = held.clone();
                    std::thread::spawn(move || {
                        let (mut from, mut into) = (from, into);
                        from.set_read_timeout(Some(Duration::from_millis(20)))
                            .unwrap();
                        let mut buf = [0u8; 16384];
                        loop {
                            if held.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(20));
                                continue;
                            }
                            match from.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) if into.write_all(&buf[..n]).is_ok() => {}
                                Ok(_) => break,
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                                Err(_) => break,
                            }
                        }
                        let _ = into.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Partition { port, cut }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stop (`true`) or resume (`false`) moving bytes.
    pub fn cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
    }
}
