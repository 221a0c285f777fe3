//! Learning-rate schedules: a plain function of the epoch (or step) number.

use super::Optimizer;

/// How the learning rate changes over time. [`Schedule::at`] gives the rate for a base rate and
/// an epoch (or step) count; [`Schedule::apply`] sets it on every parameter group of an
/// optimiser, each from its own base rate.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// Always the base rate.
    Constant,
    /// Multiplied by `gamma` every `every` epochs (PyTorch's `StepLR`).
    Step {
        /// Epochs between decays.
        every: usize,
        /// Factor per decay.
        gamma: f64,
    },
    /// Cosine annealing from the base rate to `min_lr` over `total` epochs (`CosineAnnealingLR`).
    Cosine {
        /// Length of the half cosine.
        total: usize,
        /// Final rate.
        min_lr: f64,
    },
    /// Linear warm-up from `base / warmup` to the base rate over `warmup` epochs, then `then`
    /// (counted from the end of the warm-up).
    Warmup {
        /// Warm-up length.
        warmup: usize,
        /// The schedule after it.
        then: Box<Schedule>,
    },
}

impl Schedule {
    /// The learning rate at `epoch` (0-based) for base rate `base`.
    pub fn at(&self, base: f64, epoch: usize) -> f64 {
        match self {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => base * gamma.powi((epoch / (*every).max(1)) as i32),
            Schedule::Cosine { total, min_lr } => {
                let t = epoch.min(*total) as f64 / (*total).max(1) as f64;
                min_lr + (base - min_lr) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
            }
            Schedule::Warmup { warmup, then } => {
                if epoch < *warmup {
                    base * (epoch + 1) as f64 / *warmup as f64
                } else {
                    then.at(base, epoch - warmup)
                }
            }
        }
    }

    /// Sets every parameter group's learning rate to the schedule's rate at `epoch` for that
    /// group's base rate ([`Optimizer::base_learning_rate`]), as PyTorch's schedulers treat each
    /// group from its `initial_lr` (the floor of [`Schedule::Cosine`], `min_lr`, is the same
    /// for every group, as `eta_min` is).
    pub fn apply<O: Optimizer + ?Sized>(&self, opt: &mut O, epoch: usize) {
        for g in 0..opt.num_groups() {
            let rate = self.at(opt.base_learning_rate(g), epoch);
            opt.set_group_learning_rate(g, rate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Schedule;

    #[test]
    fn schedules_follow_their_formulas() {
        let step = Schedule::Step {
            every: 2,
            gamma: 0.1,
        };
        assert_eq!(step.at(1.0, 1), 1.0);
        assert!((step.at(1.0, 2) - 0.1).abs() < 1e-12);
        assert!((step.at(1.0, 5) - 0.01).abs() < 1e-12);
        let cos = Schedule::Cosine {
            total: 10,
            min_lr: 0.0,
        };
        assert_eq!(cos.at(2.0, 0), 2.0);
        assert!((cos.at(2.0, 5) - 1.0).abs() < 1e-12);
        assert!(cos.at(2.0, 10).abs() < 1e-12);
        let warm = Schedule::Warmup {
            warmup: 4,
            then: Box::new(Schedule::Constant),
        };
        assert_eq!(warm.at(1.0, 0), 0.25);
        assert_eq!(warm.at(1.0, 3), 1.0);
        assert_eq!(warm.at(1.0, 9), 1.0);
    }
}
