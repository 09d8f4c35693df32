//! `ckpt gc`: removes what killed runs left behind, engine by engine (only
//! ckpt's own objects, and only those of runs whose process is gone).

use anyhow::Result;

use ckpt::engine::{any, criu_stats};
use ckpt::model::EngineKind;

pub(super) async fn run() -> Result<u8> {
    let mut removed = 0;
    let mut default_unreachable = false;
    for kind in EngineKind::ALL {
        match any::remove_orphans(kind).await {
            Ok(n) => removed += n,
            // An engine that is not installed or not running holds nothing
            // to remove; only the default engine's absence fails gc.
            Err(e) => {
                eprintln!("ckpt gc: skipping {kind}: {e:#}");
                default_unreachable |= kind == EngineKind::ALL[0];
            }
        }
    }
    // The host's CRIU configuration belongs to no engine: always cleaned.
    removed += criu_stats::remove_orphans()?;
    // Throwaway destination hosts of migrations: their second daemons
    // first (they live in the hosts' namespaces), then the namespaces, the
    // credentials and what a killed `ckpt serve` received.
    removed += ckpt::engine::moby::second::remove_orphans()?;
    removed += ckpt::engine::os::netns::remove_orphans()?;
    removed += ckpt::migrate::remove_orphans()?;
    ckpt::stdout::println(&format!(
        "ckpt gc: removed {removed} object(s) left by ckpt runs that are no longer alive"
    ))?;
    Ok(u8::from(default_unreachable))
}
