//! `ckpt doctor`: every check of the environment, with the fix for each.

use anyhow::Result;

use ckpt::host::doctor;

pub(super) async fn run(json: bool) -> Result<u8> {
    let checks = doctor::run_all().await;
    if json {
        ckpt::stdout::println(&serde_json::to_string_pretty(&checks)?)?;
    } else {
        ckpt::stdout::print(&doctor::render(&checks))?;
    }
    let failed = checks.iter().any(|c| c.status == doctor::Status::Fail);
    Ok(u8::from(failed))
}
