//! Child processes of the test control plane that never outlive the test process.
//!
//! Every child is spawned from one long-lived supervisor thread with `PR_SET_PDEATHSIG =
//! SIGKILL` (the signal fires when the *thread* that forked dies, so it must be a thread that
//! lives as long as the process) in its own process group. When the test process exits, panics
//! or is killed, the kernel kills the children. `ChildProcess` also kills its process group on
//! drop, for clusters that are not shared.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

fn supervisor() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SUPERVISOR: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SUPERVISOR.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testkit-supervisor".into())
            .spawn(move || {
                // Lives until the process exits: the children's parent-death signal is tied to it.
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                loop {
                    std::thread::park();
                }
            })
            .expect("starting the testkit supervisor thread");
        Mutex::new(tx)
    })
}

/// A running child; killed (with its process group) on drop.
#[derive(Debug)]
pub struct ChildProcess {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    /// How it was started, to start it again (`respawn`).
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl ChildProcess {
    /// Spawn `program args` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> std::io::Result<Self> {
        Self::spawn_with_env(name, program, args, &[], log)
    }

    /// Spawn `program args` with exactly `env` as its environment (nothing inherited from the
    /// test process) when `env` is not empty.
    pub fn spawn_with_env(name: &str, program: &Path, args: &[String], env: &[(String, String)], log: &Path) -> std::io::Result<Self> {
        let out = File::create(log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(program);
        if !env.is_empty() {
            cmd.env_clear();
        }
        cmd.args(args).envs(env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null()).stdout(Stdio::from(out)).stderr(Stdio::from(err));
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe libc calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let (tx, rx) = mpsc::channel();
        supervisor()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send((cmd, tx))
            .map_err(|_| std::io::Error::other("testkit supervisor thread is gone"))?;
        let child = rx.recv().map_err(|_| std::io::Error::other("testkit supervisor thread did not answer"))??;
        Ok(Self {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            program: program.to_path_buf(),
            args: args.to_vec(),
            env: env.to_vec(),
        })
    }

    /// The same program with the same arguments and environment, logging to `log`.
    pub fn respawn(&self, log: &Path) -> std::io::Result<Self> {
        Self::spawn_with_env(&self.name, &self.program, &self.args, &self.env, log)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send `signal` to the process (not its group).
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: plain syscall on our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    /// `Some(status)` if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last `lines` lines of the process's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        // The flag dump at start-up says nothing about why a process failed.
        let all: Vec<&str> = text.lines().filter(|l| !l.contains("] FLAG: --")).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // SAFETY: plain syscall; the process group id is the child's pid (setpgid(0, 0)).
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for a test control plane,
/// whose start is retried on a clash).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
