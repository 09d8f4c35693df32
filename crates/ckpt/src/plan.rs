//! The grid of trials: which parameter values, how many repetitions, which
//! warm-up trials, and in which order they run.

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// The seed's grid: 1, 5, 10, ..., 50 child processes.
pub const DEFAULT_CHILDREN: &str = "1,5..50:5";

/// Parses a list of values and ranges: `1,5..50:5` is 1, 5, 10, ..., 50.
/// `A..B` includes both ends and steps by 1; `A..B:S` steps by S. The result
/// is sorted and free of duplicates. Zero, empty and descending ranges are
/// refused, because they are always a typing mistake.
pub fn parse_values(spec: &str) -> Result<Vec<u32>> {
    let mut values = Vec::new();
    for item in spec.split(',').map(str::trim) {
        if item.is_empty() {
            bail!("'{spec}' has an empty item: write values such as 1,5..50:5");
        }
        values.extend(parse_item(item).with_context(|| format!("in '{spec}'"))?);
    }
    if values.contains(&0) {
        bail!("'{spec}' contains 0: every value must be at least 1");
    }
    values.sort_unstable();
    values.dedup();
    Ok(values)
}

fn parse_item(item: &str) -> Result<Vec<u32>> {
    let number = |text: &str| -> Result<u32> {
        text.trim()
            .parse()
            .with_context(|| format!("'{text}' is not a whole number"))
    };
    let Some((start, rest)) = item.split_once("..") else {
        return Ok(vec![number(item)?]);
    };
    let (end, step) = match rest.split_once(':') {
        Some((end, step)) => (number(end)?, number(step)?),
        None => (number(rest)?, 1),
    };
    let start = number(start)?;
    if step == 0 {
        bail!("the step of '{item}' is 0");
    }
    if end < start {
        bail!("'{item}' is descending: write the smaller value first");
    }
    Ok((start..=end).step_by(step as usize).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Point after point, as the seed did.
    Sequential,
    /// Interleaved at random, so that drift over time cannot pose as a trend.
    Shuffled,
}

/// Everything that defines a sweep; saved as plan.json so `--resume` can
/// rebuild the very same list of trials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPlan {
    /// Engines compared in this sweep; their trials are interleaved.
    pub engines: Vec<String>,
    pub children: Vec<u32>,
    pub repeat: u32,
    pub warmup: u32,
    pub order: Order,
    /// Seed of the shuffle, so a resumed sweep keeps the same order.
    pub seed: u64,
}

/// One trial of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrialSpec {
    /// Position in the plan; identifies the trial on resume.
    pub index: usize,
    /// Index into the plan's engines.
    pub engine: usize,
    pub children: u32,
    /// Repetition number within the point (warm-ups count separately).
    pub repetition: u32,
    pub warmup: bool,
}

impl SweepPlan {
    pub fn validate(&self) -> Result<()> {
        if self.children.is_empty() {
            bail!("the grid is empty: give at least one value to --children");
        }
        if self.repeat == 0 {
            bail!("--repeat must be at least 1");
        }
        if self.engines.is_empty() {
            bail!("no engine: give at least one to --engine");
        }
        Ok(())
    }

    /// Every (point, repetition, engine) of one kind (warm-up or measured),
    /// engines interleaved within each repetition.
    fn grid(&self, warmup: bool) -> Vec<TrialSpec> {
        let reps = if warmup { self.warmup } else { self.repeat };
        let mut out = Vec::new();
        for &children in &self.children {
            for repetition in 0..reps {
                for engine in 0..self.engines.len() {
                    out.push(TrialSpec {
                        index: 0,
                        engine,
                        children,
                        repetition,
                        warmup,
                    });
                }
            }
        }
        out
    }

    /// Every trial in run order. Sequential: each point's warm-ups, then
    /// its repetitions, the engines taking turns. Shuffled: all warm-ups
    /// first, then every measured trial in a random order fixed by `seed`.
    pub fn trials(&self) -> Vec<TrialSpec> {
        let mut trials: Vec<TrialSpec> = match self.order {
            Order::Sequential => {
                let (warm, measured) = (self.grid(true), self.grid(false));
                self.children
                    .iter()
                    .flat_map(|&n| {
                        let w = warm.iter().filter(move |t| t.children == n);
                        w.chain(measured.iter().filter(move |t| t.children == n))
                            .copied()
                    })
                    .collect()
            }
            Order::Shuffled => {
                let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
                let mut warm = self.grid(true);
                let mut measured = self.grid(false);
                warm.shuffle(&mut rng);
                measured.shuffle(&mut rng);
                warm.into_iter().chain(measured).collect()
            }
        };
        for (index, trial) in trials.iter_mut().enumerate() {
            trial.index = index;
        }
        trials
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_grid() {
        assert_eq!(
            parse_values(DEFAULT_CHILDREN).unwrap(),
            vec![1, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
        );
        assert_eq!(parse_values("3").unwrap(), vec![3]);
        assert_eq!(parse_values("1..3").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_values("10,1,10").unwrap(), vec![1, 10]);
        // A step that does not land on the end stops before it.
        assert_eq!(parse_values("1..10:4").unwrap(), vec![1, 5, 9]);
    }

    #[test]
    fn refuses_bad_grids() {
        for bad in ["", "1,,2", "0", "0..5", "5..1", "1..5:0", "x", "1..y", "-3"] {
            assert!(parse_values(bad).is_err(), "'{bad}' should be refused");
        }
        let err = format!("{:#}", parse_values("5..1").unwrap_err());
        assert!(err.contains("descending"), "{err}");
    }

    fn plan(order: Order) -> SweepPlan {
        SweepPlan {
            engines: vec!["docker".into()],
            children: vec![1, 5, 10],
            repeat: 3,
            warmup: 1,
            order,
            seed: 7,
        }
    }

    #[test]
    fn sequential_plan_runs_point_after_point() {
        let trials = plan(Order::Sequential).trials();
        assert_eq!(trials.len(), 12);
        assert!(trials[0].warmup && trials[0].children == 1);
        assert!(!trials[1].warmup && trials[1].children == 1);
        assert!(trials[4].warmup && trials[4].children == 5);
        assert!(trials.iter().enumerate().all(|(i, t)| t.index == i));
    }

    #[test]
    fn shuffled_plan_is_a_stable_permutation_with_warmups_first() {
        let a = plan(Order::Shuffled).trials();
        let b = plan(Order::Shuffled).trials();
        assert_eq!(a, b, "the same seed gives the same order");
        assert!(a[..3].iter().all(|t| t.warmup));
        assert!(a[3..].iter().all(|t| !t.warmup));
        let mut seq: Vec<_> = plan(Order::Sequential)
            .trials()
            .iter()
            .map(|t| (t.children, t.repetition, t.warmup))
            .collect();
        let mut shuf: Vec<_> = a
            .iter()
            .map(|t| (t.children, t.repetition, t.warmup))
            .collect();
        seq.sort_unstable();
        shuf.sort_unstable();
        assert_eq!(seq, shuf, "shuffling neither adds nor drops trials");
        let children: Vec<u32> = a[3..].iter().map(|t| t.children).collect();
        assert_ne!(children, {
            let mut sorted = children.clone();
            sorted.sort_unstable();
            sorted
        });
    }

    #[test]
    fn engines_take_turns_within_a_point() {
        let mut p = plan(Order::Sequential);
        p.engines = vec!["docker".into(), "runc".into(), "criu".into()];
        let trials = p.trials();
        assert_eq!(trials.len(), 36);
        let first: Vec<(usize, bool)> = trials[..6].iter().map(|t| (t.engine, t.warmup)).collect();
        assert_eq!(
            first,
            vec![
                (0, true),
                (1, true),
                (2, true),
                (0, false),
                (1, false),
                (2, false)
            ]
        );
        for e in 0..3 {
            assert_eq!(trials.iter().filter(|t| t.engine == e).count(), 12);
        }
    }

    #[test]
    fn validation() {
        let mut p = plan(Order::Sequential);
        p.repeat = 0;
        assert!(p.validate().is_err());
        p.repeat = 1;
        p.engines.clear();
        assert!(p.validate().is_err());
        p.engines.push("docker".into());
        p.children.clear();
        assert!(p.validate().is_err());
    }
}
