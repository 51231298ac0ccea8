//! Learning-rate schedules.

use crate::bail;
use crate::error::Result;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// The same rate throughout.
    Constant,
    /// Per epoch: lr · gamma^⌊epoch / every⌋ (`torch.optim.lr_scheduler.StepLR`).
    Step { every: u64, gamma: f64 },
    /// Per step: lr · ½(1 + cos(π·t/T)) over the T steps of the run, after a linear
    /// warm-up over the first `warmup` steps.
    Cosine { warmup: u64 },
    /// Per step: up linearly from lr/10 to lr over the first 25% of the steps, then down
    /// to lr/1000 with a cosine (a one-cycle policy, for short training runs).
    OneCycle,
    /// Per epoch: lr, multiplied by `factor` each time the validation loss has not
    /// improved for `patience` epochs (the trainer's monitor holds the product).
    Plateau { patience: u64, factor: f64 },
}

impl Schedule {
    /// `constant`, `step:EVERY:GAMMA` (e.g. `step:2:0.5`), `cosine`, `cosine:WARMUP`, `onecycle`.
    pub fn parse(s: &str) -> Result<Schedule> {
        let parts: Vec<&str> = s.split(':').collect();
        Ok(match parts.as_slice() {
            ["constant"] => Schedule::Constant,
            ["cosine"] => Schedule::Cosine { warmup: 0 },
            ["cosine", w] => match w.parse() {
                Ok(warmup) => Schedule::Cosine { warmup },
                Err(_) => bail!("--schedule cosine:WARMUP needs a step count, found `{w}`"),
            },
            ["onecycle"] => Schedule::OneCycle,
            ["plateau", patience, factor] => match (patience.parse::<u64>(), factor.parse::<f64>()) {
                (Ok(patience), Ok(factor)) if patience > 0 && factor > 0.0 && factor < 1.0 => {
                    Schedule::Plateau { patience, factor }
                }
                _ => bail!(
                    "--schedule plateau:PATIENCE:FACTOR needs a positive epoch count and a factor between 0 and 1, \
                     like plateau:2:0.5"
                ),
            },
            ["step", every, gamma] => match (every.parse::<u64>(), gamma.parse::<f64>()) {
                (Ok(every), Ok(gamma)) if every > 0 => Schedule::Step { every, gamma },
                _ => bail!("--schedule step:EVERY:GAMMA needs a positive epoch count and a factor, like step:2:0.5"),
            },
            _ => bail!(
                "unknown schedule `{s}`; use constant, step:EVERY:GAMMA, cosine[:WARMUP], onecycle or \
                 plateau:PATIENCE:FACTOR"
            ),
        })
    }

    /// The rate for a step. `step` counts from 0 over the whole run of `total` steps.
    pub fn lr(&self, base: f64, epoch: u64, step: u64, total: u64) -> f64 {
        let t = step as f64;
        let total = total.max(1) as f64;
        match *self {
            Schedule::Constant | Schedule::Plateau { .. } => base,
            Schedule::Step { every, gamma } => base * gamma.powi((epoch / every) as i32),
            Schedule::Cosine { warmup } if step < warmup => base * (step + 1) as f64 / warmup as f64,
            Schedule::Cosine { warmup } => {
                let w = warmup as f64;
                base * 0.5 * (1.0 + (std::f64::consts::PI * (t - w) / (total - w).max(1.0)).cos())
            }
            Schedule::OneCycle => {
                let peak = 0.25 * total;
                if t < peak {
                    base * (0.1 + 0.9 * t / peak)
                } else {
                    let p = (t - peak) / (total - peak).max(1.0);
                    let floor = base / 1000.0;
                    floor + (base - floor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
                }
            }
        }
    }

    /// Whether the rate changes per step (else per epoch, or never).
    pub fn per_step(&self) -> bool {
        matches!(self, Schedule::Cosine { .. } | Schedule::OneCycle)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Constant => f.write_str("constant"),
            Schedule::Step { every, gamma } => write!(f, "step:{every}:{gamma}"),
            Schedule::Cosine { warmup: 0 } => f.write_str("cosine"),
            Schedule::Cosine { warmup } => write!(f, "cosine:{warmup}"),
            Schedule::OneCycle => f.write_str("onecycle"),
            Schedule::Plateau { patience, factor } => write!(f, "plateau:{patience}:{factor}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(Schedule::parse("step:2:0.5").unwrap().lr(1.0, 5, 0, 10), 0.25);
        let c = Schedule::parse("cosine").unwrap();
        assert_eq!(c.lr(1.0, 0, 0, 100), 1.0);
        assert!((c.lr(1.0, 0, 50, 100) - 0.5).abs() < 1e-12);
        assert!(c.lr(1.0, 0, 99, 100) < 0.01);
        let o = Schedule::OneCycle;
        assert!((o.lr(1.0, 0, 0, 100) - 0.1).abs() < 1e-12);
        assert!((o.lr(1.0, 0, 25, 100) - 1.0).abs() < 1e-12);
        assert!(o.lr(1.0, 0, 100, 100) < 0.002);
        for s in ["constant", "step:3:0.1", "cosine", "cosine:100", "onecycle"] {
            assert_eq!(Schedule::parse(s).unwrap().to_string(), s);
        }
        assert!(Schedule::parse("linear").is_err());
    }
}
