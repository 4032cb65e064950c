//! `counterpoint-serve CONFIG` as a child process, for tests that need a real server process
//! (killed or stopped by signal, or installing a process-wide tracing subscriber): started and
//! waited for until it listens, its stderr kept for failure messages, killed when dropped so a
//! failing test leaves no server behind.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct ServeProcess {
    child: Option<Child>,
    /// Where it listens.
    pub address: SocketAddr,
    /// Everything it wrote on stderr.
    log: Arc<Mutex<String>>,
}

impl ServeProcess {
    /// Starts the server on `config` and waits (up to 2 minutes) until it listens.
    pub fn start(config: &Path) -> ServeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_counterpoint-serve"))
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start counterpoint-serve");
        let (log, stderr) = (Arc::new(Mutex::new(String::new())), child.stderr.take().unwrap());
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("counterpoint serving on http://") {
                    let _ = address_tx.send(address.parse::<SocketAddr>().expect("the address it listens on"));
                }
                kept.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let Ok(address) = address_rx.recv_timeout(Duration::from_secs(120)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("counterpoint-serve did not start: {}", log.lock().unwrap());
        };
        ServeProcess { child: Some(child), address, log }
    }

    /// What it wrote on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends `signal` and waits for the process to end.
    pub fn signal(&mut self, signal: i32) -> ExitStatus {
        let mut child = self.child.take().expect("a running server");
        // SAFETY: a plain kill(2) on our own child, which has not been waited for yet.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0, "kill counterpoint-serve");
        child.wait().unwrap()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
