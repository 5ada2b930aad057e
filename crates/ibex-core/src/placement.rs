//! Where a model's weights go when a run has several device handles: consecutive decoder layers per handle
//! (embeddings with the first, final norm and LM head with the last), as accelerate's `infer_auto_device_map` lays a
//! `device_map="auto"` model out under `max_memory`, balanced like its `get_balanced_memory`; and, when the model
//! fits on fewer handles than given, replicas over the rest. Pure arithmetic on the model's shape and each handle's
//! memory budget, so the dry run prints it before any weight loads; the backend measures the budgets and follows it.

use crate::settings::{human_bytes, DeviceSpec, MaxMemory};
use std::fmt;
use std::ops::Range;

/// Share of each handle's budget kept free for activations, the KV cache and the logits block (accelerate keeps a
/// similar margin; ibex's scoring holds at most a 512 MiB logits block beside a batch's activations).
pub const ACTIVATION_RESERVE_PERCENT: u64 = 10;

/// A decoder-only model's weights in bytes, as the backend will hold them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelShape {
    /// Decoder layers.
    pub layers: usize,
    /// One decoder layer's weights.
    pub layer_bytes: u64,
    /// The embedding table (on the first handle).
    pub embed_bytes: u64,
    /// The LM head (on the last handle): a second copy of the embedding there when the weights are tied and the
    /// model spans several handles, nothing more when tied on one.
    pub lm_head_bytes: u64,
    /// Whether the LM head reuses the embedding matrix (`tie_word_embeddings`).
    pub tied: bool,
    /// The final norm (on the last handle).
    pub norm_bytes: u64,
    /// What every handle holds besides its layers (the rotary tables).
    pub per_handle_bytes: u64,
}

impl ModelShape {
    /// Every weight of one copy on one handle.
    pub fn total_bytes(&self) -> u64 {
        self.fixed_bytes(true, true) + self.layers as u64 * self.layer_bytes
    }

    /// What a handle holds besides its layers, holding the embedding (`first`) and/or the head (`last`).
    fn fixed_bytes(&self, first: bool, last: bool) -> u64 {
        let head = match (last, self.tied && first) {
            (false, _) => 0,
            (true, true) => self.norm_bytes,
            (true, false) => self.lm_head_bytes + self.norm_bytes,
        };
        self.per_handle_bytes + if first { self.embed_bytes } else { 0 } + head
    }
}

/// One handle's share of one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    /// The handle's index in the run's device list.
    pub handle: usize,
    /// The device.
    pub device: DeviceSpec,
    /// The decoder layers it runs.
    pub layers: Range<usize>,
    /// Whether it holds the embedding (the replica's first stage).
    pub embed: bool,
    /// Whether it holds the final norm and the LM head (the replica's last stage).
    pub head: bool,
    /// The weights it holds.
    pub bytes: u64,
    /// The handle's budget (its free memory, or `--max-memory`), the reserve included.
    pub budget: u64,
}

/// The model laid over a run's device handles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Each replica's stages, in layer order. Every replica holds the whole model; batches go to them in turn.
    pub replicas: Vec<Vec<Stage>>,
    /// Handles left over: fewer than a replica needs, or too small to hold one with their neighbours.
    pub unused: Vec<DeviceSpec>,
}

impl fmt::Display for Placement {
    /// One line, as results record it: `cuda:0[0-23]+cuda:1[24-47] | cuda:2[0-23]+cuda:3[24-47]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let replicas: Vec<String> = self
            .replicas
            .iter()
            .map(|stages| {
                let stages: Vec<String> = stages
                    .iter()
                    .map(|s| format!("{}[{}-{}]", s.device, s.layers.start, s.layers.end.saturating_sub(1)))
                    .collect();
                stages.join("+")
            })
            .collect();
        f.write_str(&replicas.join(" | "))
    }
}

/// The model does not fit, or the budgets do not match the handles.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlacementError {
    /// Even every handle together is too small.
    #[error(
        "the model needs {needed} of weights, and {devices} can hold {usable} once {reserve}% of each is kept for \
         activations; add devices, raise --max-memory, or use a smaller --dtype"
    )]
    DoesNotFit {
        /// The model's weights.
        needed: String,
        /// The handles, comma-separated.
        devices: String,
        /// What they hold after the reserve.
        usable: String,
        /// [`ACTIVATION_RESERVE_PERCENT`].
        reserve: u64,
    },
    /// Together the handles are large enough, but not piece by piece: a handle cannot hold the embedding or the head
    /// beside a layer, or there are more handles than layers.
    #[error(
        "{devices} hold the model's size in total but not piece by piece: in order, each handle takes at least one \
         decoder layer ({layer} each), the first also the embedding ({embed}), the last the LM head ({head}); \
         name fewer or larger devices first in --device, or raise --max-memory"
    )]
    Pieces {
        /// The handles, comma-separated.
        devices: String,
        /// One layer's weights.
        layer: String,
        /// The embedding's.
        embed: String,
        /// The LM head's.
        head: String,
    },
    /// `--max-memory` gives a different number of sizes than `--device` names handles.
    #[error(
        "--max-memory gives {sizes} sizes for {handles} device(s); give one size per --device entry, or one for all"
    )]
    Count {
        /// Sizes given.
        sizes: usize,
        /// Handles named.
        handles: usize,
    },
    /// `--max-memory` names a device `--device` does not.
    #[error("--max-memory names {0}, which --device does not")]
    Unknown(DeviceSpec),
}

/// Each handle's budget in bytes: `--max-memory`'s, else `free(device)` (asked only for devices `--max-memory`
/// leaves out) shared equally by that device's handles.
pub fn budgets<E: From<PlacementError>>(
    handles: &[DeviceSpec],
    max_memory: &MaxMemory,
    mut free: impl FnMut(DeviceSpec) -> Result<u64, E>,
) -> Result<Vec<u64>, E> {
    let count = |device: DeviceSpec| handles.iter().filter(|&&d| d == device).count() as u64;
    if let MaxMemory::PerDevice(pairs) = max_memory {
        if let Some((unknown, _)) = pairs.iter().find(|(device, _)| !handles.contains(device)) {
            return Err(PlacementError::Unknown(*unknown).into());
        }
    }
    handles
        .iter()
        .enumerate()
        .map(|(i, &device)| {
            Ok(match max_memory {
                MaxMemory::Each(size) => *size,
                MaxMemory::Positional(sizes) if sizes.len() == handles.len() => sizes[i],
                MaxMemory::Positional(sizes) => {
                    return Err(PlacementError::Count { sizes: sizes.len(), handles: handles.len() }.into())
                }
                MaxMemory::PerDevice(pairs) => match pairs.iter().find(|(d, _)| *d == device) {
                    Some((_, size)) => size / count(device),
                    None => free(device)? / count(device),
                },
                MaxMemory::Free => free(device)? / count(device),
            })
        })
        .collect()
}

/// Lays `shape` over `handles` with `budgets` (bytes, reserve included): one replica over the fewest leading handles
/// that hold the model (so `--device` order matters: name the largest first), then as many more over the following
/// groups of as many handles as fit.
pub fn place(shape: &ModelShape, handles: &[DeviceSpec], budgets: &[u64]) -> Result<Placement, PlacementError> {
    let usable: Vec<u64> = budgets.iter().map(|b| b / 100 * (100 - ACTIVATION_RESERVE_PERCENT)).collect();
    let Some(span) = (1..=handles.len()).find(|&k| split(shape, &usable[..k]).is_some()) else {
        let devices = handles.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        if usable.iter().sum::<u64>() >= shape.total_bytes() {
            return Err(PlacementError::Pieces {
                devices,
                layer: human_bytes(shape.layer_bytes),
                embed: human_bytes(shape.embed_bytes),
                head: human_bytes(shape.lm_head_bytes),
            });
        }
        return Err(PlacementError::DoesNotFit {
            needed: human_bytes(shape.total_bytes()),
            devices,
            usable: human_bytes(usable.iter().sum()),
            reserve: ACTIVATION_RESERVE_PERCENT,
        });
    };
    let mut replicas = Vec::new();
    let mut unused = Vec::new();
    let mut next = 0;
    while next + span <= handles.len() {
        let Some(layers) = split(shape, &usable[next..next + span]) else {
            // Too small a group: leave its first handle out and try the next group.
            unused.push(handles[next]);
            next += 1;
            continue;
        };
        let mut start = 0;
        let stages = layers
            .iter()
            .enumerate()
            .map(|(i, &count)| {
                let (first, last) = (i == 0, i + 1 == span);
                let handle = next + i;
                let stage = Stage {
                    handle,
                    device: handles[handle],
                    layers: start..start + count,
                    embed: first,
                    head: last,
                    bytes: shape.fixed_bytes(first, last) + count as u64 * shape.layer_bytes,
                    budget: budgets[handle],
                };
                start += count;
                stage
            })
            .collect();
        replicas.push(stages);
        next += span;
    }
    unused.extend_from_slice(&handles[next..]);
    Ok(Placement { replicas, unused })
}

/// Layers per handle for one replica over handles with `usable` bytes each, every handle running at least one layer
/// (a single handle: all of them), or `None` when they cannot hold the model. After one layer each, layers go one at
/// a time to the handle whose share of its own memory stays lowest, so handles fill in proportion to their size.
fn split(shape: &ModelShape, usable: &[u64]) -> Option<Vec<usize>> {
    let n = usable.len();
    if shape.layers < n {
        return None;
    }
    let fixed: Vec<u64> = (0..n).map(|i| shape.fixed_bytes(i == 0, i + 1 == n)).collect();
    // Every handle runs at least one layer; the rest go where they fill their handle least.
    let mut counts = vec![1usize; n];
    let load = |i: usize, layers: usize| fixed[i] + layers as u64 * shape.layer_bytes;
    if (0..n).any(|i| load(i, 1) > usable[i]) {
        return None;
    }
    for _ in n..shape.layers {
        let best = (0..n).filter(|&i| load(i, counts[i] + 1) <= usable[i]).min_by(|&a, &b| {
            let share = |i: usize| load(i, counts[i] + 1) as f64 / usable[i].max(1) as f64;
            share(a).total_cmp(&share(b))
        })?;
        counts[best] += 1;
    }
    Some(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ALIA-40B in bf16 (config.json: hidden 8192, intermediate 24576, 48 layers, 64 heads of 128, 8 KV heads,
    /// vocabulary 256000, untied, 32768 positions).
    fn alia_40b() -> ModelShape {
        let (hidden, inter, heads, kv, head_dim, vocab): (u64, u64, u64, u64, u64, u64) =
            (8192, 24576, 64, 8, 128, 256_000);
        let attention = hidden * heads * head_dim * 2 + hidden * kv * head_dim * 2;
        ModelShape {
            layers: 48,
            layer_bytes: 2 * (attention + 3 * hidden * inter + 2 * hidden),
            embed_bytes: 2 * vocab * hidden,
            lm_head_bytes: 2 * vocab * hidden,
            tied: false,
            norm_bytes: 2 * hidden,
            per_handle_bytes: 2 * 32768 * head_dim,
        }
    }

    #[test]
    fn alia_40b_spans_two_64_gb_gpus_and_runs_two_replicas_on_four() {
        let shape = alia_40b();
        assert_eq!(shape.total_bytes() / 1_000_000_000, 80);
        let handles: Vec<DeviceSpec> = (0..4).map(DeviceSpec::Cuda).collect();
        let placement = place(&shape, &handles, &[64 << 30; 4]).unwrap();
        assert_eq!(placement.to_string(), "cuda:0[0-23]+cuda:1[24-47] | cuda:2[0-23]+cuda:3[24-47]");
        assert!(placement.unused.is_empty());
        let stages = &placement.replicas[0];
        assert!(stages[0].embed && !stages[0].head && stages[1].head && !stages[1].embed);
        assert_eq!(stages[0].bytes + stages[1].bytes, shape.total_bytes() + shape.per_handle_bytes);
    }

    #[test]
    fn alia_40b_fits_one_141_gb_gpu() {
        let placement = place(&alia_40b(), &[DeviceSpec::Cuda(0)], &[141 << 30]).unwrap();
        assert_eq!(placement.to_string(), "cuda:0[0-47]");
        assert_eq!(placement.replicas[0][0].bytes, alia_40b().total_bytes());
    }

    #[test]
    fn unequal_handles_take_layers_in_proportion_and_leftovers_are_reported() {
        let shape = alia_40b();
        let handles: Vec<DeviceSpec> = (0..3).map(DeviceSpec::Cuda).collect();
        let placement = place(&shape, &handles, &[80 << 30, 40 << 30, 40 << 30]).unwrap();
        let layers: Vec<usize> = placement.replicas[0].iter().map(|s| s.layers.len()).collect();
        assert_eq!(layers.len(), 2);
        assert_eq!(layers.iter().sum::<usize>(), 48);
        assert!(layers[0] > layers[1], "{layers:?}");
        for stage in &placement.replicas[0] {
            assert!(stage.bytes <= stage.budget / 100 * 90, "{stage:?}");
        }
        assert_eq!(placement.replicas.len(), 1);
        assert_eq!(placement.unused, vec![DeviceSpec::Cuda(2)]);
        let two = place(&shape, &handles[..2], &[141 << 30, 20 << 30]).unwrap();
        assert_eq!(two.replicas.len(), 1);
        assert_eq!(two.unused, vec![DeviceSpec::Cuda(1)]);
    }

    #[test]
    fn a_model_too_large_for_every_handle_is_refused_with_the_sizes() {
        let error = place(&alia_40b(), &[DeviceSpec::Cuda(0), DeviceSpec::Cuda(1)], &[40 << 30; 2]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the model needs 75.32 GiB of weights, and cuda:0,cuda:1 can hold 72.00 GiB once 10% of each is kept \
             for activations; add devices, raise --max-memory, or use a smaller --dtype"
        );
    }

    #[test]
    fn a_last_handle_with_room_for_one_layer_still_gets_one() {
        let shape = alia_40b();
        // The second handle holds the head and exactly one layer (plus a little): a greedy fill without a first
        // layer each would give every layer to the first handle and then refuse.
        let second = (shape.fixed_bytes(false, true) + shape.layer_bytes + 1000) / 90 * 100;
        let placement = place(&shape, &[DeviceSpec::Cuda(0), DeviceSpec::Cuda(1)], &[79 << 30, second]).unwrap();
        assert_eq!(placement.to_string(), "cuda:0[0-46]+cuda:1[47-47]");
    }

    #[test]
    fn handles_that_hold_the_size_but_not_the_pieces_are_told_why() {
        let shape = alia_40b();
        let error = place(&shape, &[DeviceSpec::Cuda(0); 60], &[2 << 30; 60]).unwrap_err();
        assert!(matches!(error, PlacementError::Pieces { .. }), "{error}");
        assert!(error.to_string().contains("the last the LM head (3.91 GiB)"), "{error}");
    }

    #[test]
    fn tied_embeddings_are_held_once_on_one_handle_and_copied_to_the_last_of_several() {
        let shape = ModelShape { tied: true, ..alia_40b() };
        let one = place(&shape, &[DeviceSpec::Cpu], &[200 << 30]).unwrap();
        assert_eq!(one.replicas[0][0].bytes, shape.total_bytes());
        assert_eq!(shape.total_bytes(), alia_40b().total_bytes() - alia_40b().lm_head_bytes);
        let two = place(&shape, &[DeviceSpec::Cuda(0), DeviceSpec::Cuda(1)], &[50 << 30; 2]).unwrap();
        let last = two.replicas[0].last().unwrap();
        assert!(last.bytes >= shape.lm_head_bytes + last.layers.len() as u64 * shape.layer_bytes);
    }

    #[test]
    fn handles_of_one_device_share_its_memory() {
        let handles = [DeviceSpec::Cuda(0), DeviceSpec::Cuda(0), DeviceSpec::Cpu];
        let free = |d: DeviceSpec| Ok::<u64, PlacementError>(if d == DeviceSpec::Cpu { 100 } else { 80 });
        assert_eq!(budgets(&handles, &MaxMemory::Free, free), Ok(vec![40, 40, 100]));
        assert_eq!(budgets(&handles, &MaxMemory::Each(7), free), Ok(vec![7, 7, 7]));
        let per_device = MaxMemory::PerDevice(vec![(DeviceSpec::Cuda(0), 60)]);
        assert_eq!(budgets(&handles, &per_device, free), Ok(vec![30, 30, 100]));
        assert_eq!(
            budgets(&handles, &MaxMemory::Positional(vec![1, 2]), free),
            Err(PlacementError::Count { sizes: 2, handles: 3 })
        );
        let unknown = MaxMemory::PerDevice(vec![(DeviceSpec::Cuda(3), 60)]);
        assert_eq!(budgets(&handles, &unknown, free), Err(PlacementError::Unknown(DeviceSpec::Cuda(3))));
    }
}
