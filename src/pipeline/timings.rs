//! Where a study's seconds go: wall-clock seconds summed per stage (`decode`, `classify`,
//! `explain.<method>` with its quality checks, `render`, `write`, `parametric-map`,
//! `summary`, `structured-report`), kept in report.json under `timings` and printed by
//! `run --timings`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

/// Seconds per stage, added to from wherever the stage runs.
#[derive(Debug, Default)]
pub struct StageTimes {
    seconds: Mutex<BTreeMap<String, f64>>,
}

impl StageTimes {
    /// Runs `work`, adding its wall-clock seconds to `stage`.
    pub fn time<T>(&self, stage: &str, work: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let result = work();
        self.add(stage, started.elapsed().as_secs_f64());
        result
    }

    /// Adds `seconds` to `stage`.
    pub fn add(&self, stage: &str, seconds: f64) {
        // a poisoned lock only means a panic elsewhere; the sums stay usable
        let mut sums = self
            .seconds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *sums.entry(stage.to_string()).or_insert(0.0) += seconds;
    }

    /// The sums, by stage name.
    pub fn into_map(self) -> BTreeMap<String, f64> {
        self.seconds
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Adds every stage of `from` to `into`.
pub fn accumulate(into: &mut BTreeMap<String, f64>, from: &BTreeMap<String, f64>) {
    for (stage, seconds) in from {
        *into.entry(stage.clone()).or_insert(0.0) += seconds;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_add_up() {
        let times = StageTimes::default();
        let answer = times.time("decode", || 42);
        times.add("decode", 1.5);
        times.add("render", 0.25);
        assert_eq!(answer, 42);
        let sums = times.into_map();
        assert!(sums["decode"] >= 1.5 && sums["decode"] < 2.0, "{sums:?}");
        let mut total = BTreeMap::from([("render".to_string(), 1.0)]);
        accumulate(&mut total, &sums);
        assert_eq!(total["render"], 1.25);
        assert!(total.contains_key("decode"));
    }
}
