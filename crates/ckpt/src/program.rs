//! A program of the user's outside sweeps (`ckpt migrate` and `ckpt
//! export` with `--image IMG --cmd TEMPLATE`): its command and patterns
//! parsed, started, waited for until ready, loaded by --setup-cmd and
//! checked by --check-cmd, as a sweep's trial does.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::engine::{Container, Engine};
use crate::model::{ImageSpec, Point, RunSpec};
use crate::run::Stop;
use crate::workload::{UserWorkload, Workload};

/// How long --setup-cmd and --check-cmd may take.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the program may take to close the connection its check
/// closed (CRIU cannot dump a half-closed socket).
pub(crate) const CLOSE_WAIT_LIMIT: Duration = Duration::from_secs(5);

/// The user's program, its command and patterns parsed.
#[derive(Debug, Clone)]
pub struct UserProgram {
    pub user: UserWorkload,
    workload: Workload,
}

impl UserProgram {
    /// Parses the template and the patterns; creates nothing.
    pub fn new(user: UserWorkload) -> Result<UserProgram> {
        let workload = Workload::new(Some(&user), &[])?;
        Ok(UserProgram { user, workload })
    }

    /// The image to run, looked up (Docker, Podman) or unpacked (runc).
    pub fn image_spec(&self) -> ImageSpec {
        ImageSpec {
            user_image: Some(self.user.image.clone()),
            ..Default::default()
        }
    }

    pub(crate) fn run_spec(&self, name: &str, point: &Point) -> RunSpec {
        self.workload
            .run_spec(name.to_string(), point, 0, Default::default())
    }

    /// Waits until the program is ready (its pattern, or the delay), runs
    /// --setup-cmd, and counts its processes.
    pub(crate) async fn ready<E: Engine>(
        &self,
        engine: &E,
        container: &Container,
        point: &Point,
        stop: &Stop,
    ) -> Result<usize> {
        let Workload::User {
            ready,
            delay,
            timeout,
            setup,
            ..
        } = &self.workload
        else {
            bail!("not a program of the user's");
        };
        match ready {
            Some(p) => {
                let wanted = |l: &str| p.is_match(l);
                let wait = engine.wait_for_line(container, 0, &wanted, *timeout);
                stop.unless_stopped(wait)
                    .await
                    .with_context(|| format!("waiting for a log line matching '{p}'"))?;
            }
            None => stop.unless_stopped(sleep(*delay)).await?,
        }
        stop.check()?;
        if let Some(setup) = setup {
            let argv = setup.render(point);
            crate::engine::exec_checked(engine, container, &argv, COMMAND_TIMEOUT)
                .await
                .context("--setup-cmd")?;
        }
        Ok(engine.processes(container).await?.len())
    }

    /// The program's check (--check-cmd), rendered, when it has one.
    pub(crate) fn check_argv(&self, point: &Point) -> Option<Vec<String>> {
        match &self.workload {
            Workload::User {
                state: Some(state), ..
            } => Some(state.cmd.render(point)),
            _ => None,
        }
    }

    /// Runs the check inside the container (None without one); then waits
    /// for the program to close the connection the check closed, so that
    /// a dump right after finds none half closed.
    pub(crate) async fn check<E: Engine>(
        &self,
        engine: &E,
        container: &Container,
        point: &Point,
    ) -> Result<Option<String>> {
        let Some(argv) = self.check_argv(point) else {
            return Ok(None);
        };
        let output = run_check(engine, container, &argv).await?;
        let pid = engine.root_pid(container).await?;
        crate::engine::os::sockets::wait_for_closed(pid, CLOSE_WAIT_LIMIT).await;
        Ok(Some(output))
    }

    /// Whether the state after the restore is the state before it (None
    /// without a check), and what differed.
    pub fn state_verdict(
        &self,
        before: Option<&str>,
        after: Option<&str>,
    ) -> (Option<bool>, Option<String>) {
        let Workload::User {
            state: Some(state), ..
        } = &self.workload
        else {
            return (None, None);
        };
        let Some(after) = after else {
            return (
                Some(false),
                Some("the check did not run after the restore".into()),
            );
        };
        match state.compare(before.unwrap_or_default(), after) {
            Ok(()) => (Some(true), None),
            Err(problem) => (Some(false), Some(problem)),
        }
    }
}

/// Runs a rendered --check-cmd inside the container.
pub(crate) async fn run_check<E: Engine>(
    engine: &E,
    container: &Container,
    argv: &[String],
) -> Result<String> {
    crate::engine::exec_checked(engine, container, argv, COMMAND_TIMEOUT)
        .await
        .context("--check-cmd")
}

async fn sleep(delay: Duration) -> Result<()> {
    tokio::time::sleep(delay).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(check: Option<&str>, expect: Option<&str>) -> UserProgram {
        UserProgram::new(UserWorkload {
            image: "img".into(),
            cmd: "redis-server --port 6379".into(),
            ready_pattern: Some("Ready".into()),
            ready_delay_ms: 0,
            ready_timeout_ms: 1000,
            check_pattern: None,
            setup_cmd: None,
            check_cmd: check.map(String::from),
            check_expect: expect.map(String::from),
        })
        .unwrap()
    }

    #[test]
    fn the_state_is_ok_when_the_check_prints_the_same_after_the_restore() {
        let p = program(Some("redis-cli debug digest"), None);
        assert_eq!(
            p.state_verdict(Some("abc\n"), Some("abc\n")),
            (Some(true), None)
        );
        let (ok, problem) = p.state_verdict(Some("abc"), Some("def"));
        assert_eq!(ok, Some(false));
        assert!(problem.unwrap().contains("def"));
        assert_eq!(p.state_verdict(Some("abc"), None).0, Some(false));
        assert_eq!(program(None, None).state_verdict(None, None), (None, None));
        let p = program(Some("cat /x"), Some("^ok"));
        assert_eq!(p.state_verdict(Some("no"), Some("ok")).0, Some(true));
    }

    #[test]
    fn a_bad_template_or_pattern_is_refused() {
        let mut user = program(None, None).user;
        user.cmd = "redis-server 'unclosed".into();
        assert!(UserProgram::new(user.clone()).is_err());
        user.cmd = "redis-server".into();
        user.ready_pattern = Some("(".into());
        assert!(UserProgram::new(user.clone()).is_err());
        user.ready_pattern = None;
        user.check_expect = Some("x".into());
        assert!(UserProgram::new(user).is_err());
    }
}
