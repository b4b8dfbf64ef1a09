//! A network's named tensors: fresh initialization, inheritance from a parent by name and
//! shape, and the optimizer's view of which tensors train.

use crate::error::Result;
use crate::morph;
use candle_core::{DType, Device, Tensor, Var};
use genome::{Invalidated, TensorInit, TensorRole, TensorSpec};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::collections::{BTreeMap, HashMap};

/// One named tensor of a network.
#[derive(Debug)]
pub struct Param {
    /// The values.
    pub var: Var,
    /// What the tensor is for.
    pub role: TensorRole,
}

impl Param {
    /// Whether the optimizer updates this tensor (running statistics are not).
    pub fn trains(&self) -> bool {
        !matches!(
            self.role,
            TensorRole::BnRunningMean | TensorRole::BnRunningVar
        )
    }
}

/// How a child's tensors were initialized.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Inheritance {
    /// Tensors copied from the parent (same name, same shape, not invalidated).
    pub inherited: usize,
    /// Tensors freshly initialized.
    pub fresh: usize,
}

/// All tensors of one network, by stable name.
#[derive(Debug)]
pub struct Weights {
    params: BTreeMap<String, Param>,
}

fn fresh_values(spec: &TensorSpec, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n: usize = spec.shape.iter().product();
    let normal = |std: f64, rng: &mut ChaCha8Rng| -> Vec<f32> {
        (0..n)
            .map(|_| {
                let z: f64 = StandardNormal.sample(rng);
                (z * std) as f32
            })
            .collect()
    };
    match spec.role {
        // He initialization: std = sqrt(2 / fan_in).
        TensorRole::ConvKernel => {
            let fan_in: usize = spec.shape[1..].iter().product();
            normal((2.0 / fan_in.max(1) as f64).sqrt(), rng)
        }
        // The head has no ReLU after it: std = sqrt(1 / fan_in).
        TensorRole::HeadWeight => {
            let fan_in = spec.shape.get(1).copied().unwrap_or(1);
            normal((1.0 / fan_in.max(1) as f64).sqrt(), rng)
        }
        TensorRole::BnScale | TensorRole::BnRunningVar => vec![1.0; n],
        TensorRole::BnShift | TensorRole::BnRunningMean | TensorRole::HeadBias => vec![0.0; n],
    }
}

impl Weights {
    /// Creates the tensors of `specs` on `device`: each one whose name and shape match a
    /// tensor of `parent` and that `invalidated` does not name is copied from the parent;
    /// the others are freshly initialized from `seed`.
    pub fn build(
        specs: &[TensorSpec],
        device: &Device,
        parent: Option<&HashMap<String, Tensor>>,
        invalidated: &Invalidated,
        seed: u64,
    ) -> Result<(Weights, Inheritance)> {
        Weights::build_with_inits(specs, device, parent, invalidated, &[], seed)
    }

    /// [`Weights::build`], with the special initializations of a function-preserving
    /// mutation (`inits`) taking precedence for the tensors they name.
    pub fn build_with_inits(
        specs: &[TensorSpec],
        device: &Device,
        parent: Option<&HashMap<String, Tensor>>,
        invalidated: &Invalidated,
        inits: &[TensorInit],
        seed: u64,
    ) -> Result<(Weights, Inheritance)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut params = BTreeMap::new();
        let mut report = Inheritance::default();
        for spec in specs {
            let inherited = parent
                .and_then(|p| p.get(&spec.name))
                .filter(|t| t.dims() == spec.shape.as_slice() && !invalidated.contains(&spec.name));
            let special = match (inherited, morph::init_for(&spec.name, inits)) {
                (None, Some(init)) => {
                    let fresh = fresh_values(spec, &mut rng);
                    let from_parent = match parent.and_then(|p| p.get(&spec.name)) {
                        Some(t) => Some((
                            t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
                            t.dims().to_vec(),
                        )),
                        None => None,
                    };
                    morph::initialize(spec, init, from_parent.as_ref(), fresh)
                }
                _ => None,
            };
            let tensor = match (special, inherited) {
                (Some((values, from_parent)), _) => {
                    if from_parent {
                        report.inherited += 1;
                    } else {
                        report.fresh += 1;
                    }
                    Tensor::from_vec(values, spec.shape.as_slice(), device)?
                }
                (None, Some(t)) => {
                    report.inherited += 1;
                    t.to_dtype(DType::F32)?.to_device(device)?.copy()?
                }
                (None, None) => {
                    report.fresh += 1;
                    Tensor::from_vec(fresh_values(spec, &mut rng), spec.shape.as_slice(), device)?
                }
            };
            params.insert(
                spec.name.clone(),
                Param {
                    var: Var::from_tensor(&tensor)?,
                    role: spec.role,
                },
            );
        }
        Ok((Weights { params }, report))
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Result<&Var> {
        self.params.get(name).map(|p| &p.var).ok_or_else(|| {
            crate::error::TrainError::Mismatch(format!("the network has no tensor {name}"))
        })
    }

    /// All tensors with their names.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Param)> {
        self.params.iter().map(|(n, p)| (n.as_str(), p))
    }

    /// A copy of every tensor's current values, by name (later updates, which happen in
    /// place, do not show in it).
    pub fn snapshot(&self) -> Result<HashMap<String, Tensor>> {
        self.params
            .iter()
            .map(|(n, p)| Ok((n.clone(), p.var.as_tensor().copy()?.detach())))
            .collect()
    }

    /// Sets every tensor to its values in `snapshot` (as [`Weights::snapshot`] took
    /// them); a tensor it lacks, or one of another shape, is an error.
    pub fn restore(&self, snapshot: &HashMap<String, Tensor>) -> Result<()> {
        for (name, p) in &self.params {
            let t = snapshot.get(name).ok_or_else(|| {
                crate::error::TrainError::Mismatch(format!("the snapshot has no tensor {name}"))
            })?;
            if t.dims() != p.var.as_tensor().dims() {
                return Err(crate::error::TrainError::Mismatch(format!(
                    "the snapshot's {name} is {:?}, the network's {:?}",
                    t.dims(),
                    p.var.as_tensor().dims()
                )));
            }
            p.var.set(t)?;
        }
        Ok(())
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use crate::network::Network;
    use candle_core::Device;
    use genome::{apply, seeded_rng, InputShape, Invalidated, Limits, Mutation, ReferenceNet};

    #[test]
    fn a_snapshot_restores_the_values_it_took_and_refuses_another_network() {
        let genome = ReferenceNet::Small.genome(InputShape::CIFAR, 10);
        let (net, _) = Network::new(&genome, &Device::Cpu, None, &Invalidated::none(), 1).unwrap();
        let values = |net: &Network| -> Vec<Vec<f32>> {
            net.weights()
                .iter()
                .map(|(_, p)| p.var.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
                .collect()
        };
        let before = values(&net);
        let snapshot = net.weights().snapshot().unwrap();
        for (_, p) in net.weights().iter() {
            let t = p.var.as_tensor();
            p.var.set(&(t + 0.5).unwrap()).unwrap();
        }
        assert_ne!(values(&net), before);
        net.weights().restore(&snapshot).unwrap();
        assert_eq!(values(&net), before);
        // Another network's snapshot lacks tensors or has other shapes.
        let other = ReferenceNet::Linear.genome(InputShape::CIFAR, 10);
        let (other, _) = Network::new(&other, &Device::Cpu, None, &Invalidated::none(), 1).unwrap();
        assert!(net
            .weights()
            .restore(&other.weights().snapshot().unwrap())
            .is_err());
    }

    /// Trains nothing: perturbs the parent's tensors so inherited values are recognizable,
    /// then checks the child copied exactly the tensors whose names and shapes match.
    #[test]
    fn inheritance_copies_exactly_the_matching_tensors() {
        let parent_genome = ReferenceNet::Small.genome(InputShape::CIFAR, 10);
        let (parent, _) =
            Network::new(&parent_genome, &Device::Cpu, None, &Invalidated::none(), 1).unwrap();
        for (_, p) in parent.weights().iter() {
            let t = p.var.as_tensor();
            p.var.set(&(t + 0.5).unwrap()).unwrap();
        }
        let parent_tensors = parent.weights().snapshot().unwrap();
        for (m, seed) in [
            (Mutation::AlterNumberOfChannels, 3),
            (Mutation::InsertConvolution, 4),
            (Mutation::FilterSize, 5),
            (Mutation::ResetWeights, 6),
            (Mutation::AlterStride, 7),
        ] {
            let (child_genome, _, applied) =
                apply(&parent_genome, m, &mut seeded_rng(seed), &Limits::default()).unwrap();
            let (child, report) = Network::new(
                &child_genome,
                &Device::Cpu,
                Some(&parent_tensors),
                &applied.invalidated,
                2,
            )
            .unwrap();
            let mut inherited = 0;
            for (name, p) in child.weights().iter() {
                let child_values: Vec<f32> =
                    p.var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
                let matching = parent_tensors
                    .get(name)
                    .filter(|t| t.dims() == p.var.as_tensor().dims())
                    .filter(|_| !applied.invalidated.contains(name));
                match matching {
                    Some(t) => {
                        let parent_values: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
                        assert_eq!(child_values, parent_values, "{m}: {name} not copied");
                        inherited += 1;
                    }
                    None => {
                        if let Some(t) = parent_tensors.get(name) {
                            if t.dims() == p.var.as_tensor().dims() {
                                let pv: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
                                assert_ne!(child_values, pv, "{m}: {name} wrongly copied");
                            }
                        }
                    }
                }
            }
            assert_eq!(report.inherited, inherited, "{m}");
            assert_eq!(report.inherited + report.fresh, child.weights().len());
            match m {
                Mutation::ResetWeights => assert_eq!(report.inherited, 0),
                _ => assert!(report.inherited > 0, "{m} inherited nothing"),
            }
        }
    }
}
