//! The instances of a chaos run, each a child process (see `instance.rs`): started, stopped with SIGSTOP and
//! resumed with SIGCONT (a hung machine: its connections stay open and nothing answers), killed and started
//! again (a crash and a restart, on a new port). Every child is killed when the fleet is dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::instance::{READY, Spec};

/// One child.
struct Member {
    spec: Spec,
    child: Child,
    address: String,
}

/// The running instances, by index.
pub(crate) struct Fleet {
    members: Vec<Member>,
}

impl Fleet {
    /// Starts one instance per spec and waits until each is serving and registered.
    pub(crate) fn start(specs: &[Spec]) -> Result<Fleet, String> {
        let mut members = Vec::with_capacity(specs.len());
        for spec in specs {
            members.push(spawn(spec)?);
        }
        Ok(Fleet { members })
    }

    /// The addresses of the instances now, by index.
    pub(crate) fn addresses(&self) -> Vec<String> {
        self.members.iter().map(|m| m.address.clone()).collect()
    }

    /// The largest peak resident memory of the instances so far, in MiB (`VmHWM` of /proc/PID/status).
    pub(crate) fn peak_memory_mib(&self) -> f64 {
        self.members
            .iter()
            .filter_map(|m| {
                let status =
                    std::fs::read_to_string(format!("/proc/{}/status", m.child.id())).ok()?;
                let kib = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()?;
                Some(kib / 1024.0)
            })
            .fold(0.0, f64::max)
    }

    fn signal(&self, index: usize, signal: Signal) -> Result<(), String> {
        let pid = Pid::from_raw(self.members[index].child.id() as i32);
        kill(pid, signal).map_err(|e| format!("cannot send {signal} to instance {index}: {e}"))
    }

    /// Stops instance `index` (SIGSTOP): it holds its connections and answers nothing.
    pub(crate) fn stop(&self, index: usize) -> Result<(), String> {
        self.signal(index, Signal::SIGSTOP)
    }

    /// Resumes instance `index` (SIGCONT).
    pub(crate) fn resume(&self, index: usize) -> Result<(), String> {
        self.signal(index, Signal::SIGCONT)
    }

    /// Kills instance `index` (SIGKILL), as a crash would.
    pub(crate) fn kill(&mut self, index: usize) {
        let member = &mut self.members[index];
        let _ = member.child.kill();
        let _ = member.child.wait();
    }

    /// Starts instance `index` again with its spec (on a new port), after [`Fleet::kill`].
    pub(crate) fn restart(&mut self, index: usize) -> Result<(), String> {
        let spec = self.members[index].spec.clone();
        self.members[index] = spawn(&spec)?;
        Ok(())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for member in &mut self.members {
            // A stopped child must be resumed to die of anything but SIGKILL; SIGKILL works either way.
            let _ = member.child.kill();
            let _ = member.child.wait();
        }
    }
}

fn spawn(spec: &Spec) -> Result<Member, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let mut child = Command::new(exe)
        .args(spec.args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start an instance: {e}"))?;
    let stdout = child.stdout.take().ok_or("the instance has no stdout")?;
    let mut line = String::new();
    let read = BufReader::new(stdout).read_line(&mut line);
    match (read, line.trim().strip_prefix(READY)) {
        (Ok(_), Some(address)) => Ok(Member {
            spec: spec.clone(),
            child,
            address: address.trim().to_owned(),
        }),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "the instance said {line:?}, expected `{READY} ADDRESS`"
            ))
        }
    }
}
