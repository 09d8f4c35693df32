//! The options that describe a program of the user's to `ckpt migrate`
//! and `ckpt export` (with their own --image): its command, when it is
//! ready, how to load it and how to check it.

use std::time::Duration;

use anyhow::{bail, Result};

use ckpt::program::UserProgram;
use ckpt::workload::{StateCheck, UserWorkload};

use super::positive_duration;

#[derive(clap::Args, Debug)]
pub(super) struct ProgramArgs {
    /// With --image: the program to run, split like a shell would (no shell); {children}, {memory_mib}, ... are replaced by the options' values (`ckpt migrate --engine criu`: without --image, a process tree on the host)
    #[arg(long, value_name = "TEMPLATE")]
    cmd: Option<String>,
    /// Regular expression: the program is ready when a log line matches it
    #[arg(long, requires = "cmd", value_name = "REGEX")]
    ready_pattern: Option<String>,
    /// Without --ready-pattern: how long to wait before the checkpoint
    #[arg(long, requires = "cmd", value_parser = positive_duration, default_value = "2s")]
    ready_delay: Duration,
    /// With --ready-pattern: how long to wait for it
    #[arg(long, requires = "ready_pattern", value_parser = positive_duration, default_value = "60s")]
    ready_timeout: Duration,
    /// Run inside the container once it is ready, before the checkpoint (to load data); must exit 0
    #[arg(long, requires = "cmd", value_name = "CMD")]
    setup_cmd: Option<String>,
    /// The program's own check of its state: run inside the container before the checkpoint and after the restore; the two outputs must be identical (state_ok)
    #[arg(long, value_name = "CMD")]
    check_cmd: Option<String>,
    /// Regular expression the after-restore output of --check-cmd must match, instead of equalling the output before
    #[arg(long, requires = "check_cmd", value_name = "REGEX")]
    check_expect: Option<String>,
}

impl ProgramArgs {
    /// The program `image` runs, parsed (None without --cmd).
    /// `on_host`: the engine runs --cmd on the host, without an image (the
    /// criu engine's process tree).
    pub(super) fn program(
        &self,
        image: Option<&str>,
        on_host: bool,
    ) -> Result<Option<UserProgram>> {
        if let (None, Some(_), false) = (image, &self.cmd, on_host) {
            bail!("--cmd runs in your image: give --image too (only `--engine criu` runs --cmd on the host)");
        }
        let image = image.or(on_host.then_some(""));
        let (Some(image), Some(cmd)) = (image, &self.cmd) else {
            if self.check_cmd.is_some() {
                bail!("--check-cmd checks a program ckpt runs: give --image and --cmd too (or, to ckpt migrate, --container)");
            }
            return Ok(None);
        };
        UserProgram::new(UserWorkload {
            image: image.to_string(),
            cmd: cmd.clone(),
            ready_pattern: self.ready_pattern.clone(),
            ready_delay_ms: self.ready_delay.as_millis() as u64,
            ready_timeout_ms: self.ready_timeout.as_millis() as u64,
            check_pattern: None,
            setup_cmd: self.setup_cmd.clone(),
            check_cmd: self.check_cmd.clone(),
            check_expect: self.check_expect.clone(),
        })
        .map(Some)
    }

    /// The check of a container of the user's (`migrate --container`).
    pub(super) fn container_check(&self) -> Result<Option<StateCheck>> {
        self.check_cmd
            .as_deref()
            .map(|cmd| StateCheck::new(cmd, self.check_expect.as_deref()))
            .transpose()
    }
}
