//! Results directories written by earlier versions of ckpt (docs/results)
//! still report and still resume: their plan.json and records keep reading.
//! Needs no engine, so it runs in a plain `cargo test`.

mod common;

use common::{copy_dir, shipped_results};

use ckpt::model::EngineKind;
use ckpt::sweep::results::{ResultFile, ResultsDir};

#[test]
fn shipped_results_still_report() {
    for dir in shipped_results() {
        // A private copy: the report rewrites its outputs.
        let copy = copy_dir(&dir);
        let results = ResultsDir::new(copy.path());
        std::fs::remove_file(results.file(ResultFile::ReportMd)).unwrap();
        let analysis = ckpt::output::write_outputs(&results).unwrap();
        assert!(!analysis.points.is_empty(), "{}", dir.display());
        for point in &analysis.points {
            assert!(
                EngineKind::from_name(&point.engine).is_some(),
                "{}: engine {}",
                dir.display(),
                point.engine
            );
        }
        let report = std::fs::read_to_string(results.file(ResultFile::ReportMd)).unwrap();
        assert!(report.contains("Checkpoint"), "{}", dir.display());
    }
}

#[test]
fn shipped_plans_resume_with_every_trial_done() {
    for dir in shipped_results() {
        let copy = copy_dir(&dir);
        let prepared = ckpt::sweep::prepare_resume(copy.path()).unwrap();
        assert!(!prepared.plan.engines.is_empty());
        assert!(prepared.repaired_lines.is_empty(), "{}", dir.display());
        let left = ckpt::sweep::remaining(&prepared.plan, &prepared.done, false);
        assert!(
            left.is_empty(),
            "{}: {} trial(s) left",
            dir.display(),
            left.len()
        );
    }
}
