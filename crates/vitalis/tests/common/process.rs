//! Runs the real `vitalis` binary as a child process (for crash and multi-node tests).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct ServerProcess {
    pub child: Child,
    pub base_url: String,
    pub stdout_lines: Vec<String>,
}

impl ServerProcess {
    /// Starts `vitalis serve --listen 127.0.0.1:0` with `envs` and waits for "listening on".
    // The child is owned by the returned value, which kills and reaps it on drop.
    #[allow(clippy::zombie_processes)]
    pub fn start(data_dir: &Path, extra_args: &[&str], envs: &[(&str, String)], log: &Path) -> Self {
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_vitalis"));
        command.arg("--data-dir").arg(data_dir).args(["serve", "--listen", "127.0.0.1:0"]).args(extra_args);
        command.env_remove("VITALIS_MASTER_KEY").env("RUST_LOG", "info");
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.stdout(Stdio::piped()).stderr(stderr).spawn().expect("start vitalis");
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut stdout_lines = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                let status = child.wait();
                panic!("server exited early ({status:?}); log: {}", std::fs::read_to_string(log).unwrap_or_default());
            }
            let line = line.trim_end().to_owned();
            let listening = line.strip_prefix("listening on ").map(|rest| rest.split(' ').next().unwrap().to_owned());
            stdout_lines.push(line);
            if let Some(base_url) = listening {
                std::thread::spawn(move || for _ in reader.lines() {});
                return Self { child, base_url, stdout_lines };
            }
        }
    }

    pub fn field(&self, name: &str) -> Option<String> {
        self.stdout_lines.iter().find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
    }

    /// SIGKILL: no graceful anything.
    pub fn kill_hard(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
